//! The configuration file's shape, as written by the operator. Each component owns the table
//! it reads (`sources::*::config`, `sinks::config`, `pipeline::config`, `http`); this file only
//! assembles them. Defaults live with each component; checks live in `validate`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::cloud::Cloud;
use crate::http::HttpConfig;
use crate::pipeline::config::SpoolConfig;
use crate::sinks::config::SinkConfig;
use crate::sources::audit_query::config::AuditQueryConfig;
use crate::sources::graph::config::GraphConfig;
use crate::sources::management::config::ManagementActivityConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the SQLite database lives. Defaults to systemd's `$STATE_DIRECTORY`, else
    /// `/var/lib/auditkeeper`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Present (even empty): serve /metrics, /healthz and /readyz.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    /// Keys every tenant takes unless it sets them itself: a table shaped like `[[tenants]]`.
    #[serde(default)]
    pub tenant_defaults: Option<serde_json::Value>,
    /// A folder of `*.toml` files, one tenant each (the file name is its default name).
    #[serde(default)]
    pub tenants_dir: Option<PathBuf>,
    /// `[[tenants]]` as written; `validate` applies the defaults and checks each.
    #[serde(default)]
    pub tenants: Vec<serde_json::Value>,
    /// The tables of `tenants_dir`, read by `config::load`: file name and table.
    #[serde(skip)]
    pub dir_tenants: Vec<(String, serde_json::Value)>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "default_log_format")]
    pub format: String,
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: default_log_format(), level: default_log_level() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `host:port` of /metrics, /healthz and /readyz; default 127.0.0.1:9898.
    pub listen: Option<String>,
    /// The older name of `listen`.
    pub metrics_listen: Option<String>,
    /// A stream is not ready when its last success is older than this many poll intervals.
    pub stale_after_polls: Option<u32>,
    /// A sink with a backlog is not ready when its last delivery is older than this.
    #[serde(default, with = "humantime_serde")]
    pub sink_stale_after: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: Option<String>,
    pub tenant_id: Option<String>,
    /// `secret`, `certificate`, `managed_identity` or `workload_identity`; without it, the
    /// secret or certificate key that is set says which.
    pub credential: Option<String>,
    /// The app registration (`secret`, `certificate`, `workload_identity`), or the client id of
    /// a user-assigned managed identity.
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    /// PEM with the app's certificate and its RSA private key, instead of a client secret.
    pub client_certificate_file: Option<PathBuf>,
    /// `managed_identity`: the user-assigned identity's Azure resource id.
    pub resource_id: Option<String>,
    /// `workload_identity`: the federated token file (default `AZURE_FEDERATED_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
    pub publisher_identifier: Option<String>,
    #[serde(default)]
    pub cloud: Cloud,
    #[serde(default)]
    pub endpoints: EndpointOverrides,
    #[serde(default)]
    pub management_activity: ManagementActivityConfig,
    #[serde(default)]
    pub graph: GraphConfig,
    /// Backfill through the audit log query API; on by default in the global service.
    #[serde(default)]
    pub audit_query: Option<AuditQueryConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointOverrides {
    pub authority: Option<String>,
    pub management: Option<String>,
    pub management_resource: Option<String>,
    pub graph: Option<String>,
    pub arm: Option<String>,
}

fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}

//! The configuration file's shape, as written by the operator. Defaults live here; checks that
//! relate fields to each other live in `validate`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::cloud::Cloud;

pub const CONTENT_TYPES: [&str; 5] =
    ["Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"];

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
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
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
pub struct HttpConfig {
    /// Extra CA certificate (PEM) trusted for every Microsoft call: TLS-inspecting proxies, the simulator.
    pub ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(default, deserialize_with = "opt_size")]
    pub max_bytes: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub seen_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub prune_interval: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `host:port` for the Prometheus `/metrics` endpoint; off when absent.
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    /// PEM with the app's certificate and its RSA private key, instead of a client secret.
    pub client_certificate_file: Option<PathBuf>,
    pub publisher_identifier: Option<String>,
    #[serde(default)]
    pub cloud: Cloud,
    #[serde(default)]
    pub endpoints: EndpointOverrides,
    #[serde(default)]
    pub management_activity: ManagementActivityConfig,
    #[serde(default)]
    pub graph: GraphConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    pub enabled: Option<bool>,
    /// Streams to collect; default: every stream marked default-on.
    pub streams: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// Applies to every stream unless overridden; default per stream (2h sign-ins, 1h audits).
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    /// Do not query closer to now than this.
    #[serde(default, with = "humantime_serde")]
    pub lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backfill: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub recheck_unavailable: Option<Duration>,
    /// Client-side pacing of `auditLogs/*` calls (Microsoft allows 5 per 10 s per app per tenant).
    pub reports_requests_per_10s: Option<u32>,
    /// Azure subscriptions whose activity log is collected (one `azure_activity` stream each).
    #[serde(default)]
    pub azure_subscriptions: Vec<String>,
    #[serde(default)]
    pub overrides: std::collections::BTreeMap<String, GraphStreamOverride>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphStreamOverride {
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backfill: Option<Duration>,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementActivityConfig {
    pub enabled: Option<bool>,
    pub content_types: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backfill: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retention_margin: Option<Duration>,
    pub fetch_concurrency: Option<usize>,
    pub requests_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    File(FileSinkConfig),
    /// The file sink as evidence: daily gzip files with a hash-chained manifest and retention.
    Archive(FileSinkConfig),
    Http(crate::sinks::http::config::HttpSinkConfig),
    Syslog(crate::sinks::syslog::config::SyslogSinkConfig),
    Eventhubs(crate::sinks::eventhubs::config::EventHubsSinkConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub name: Option<String>,
    pub path: Option<PathBuf>,
    #[serde(default, deserialize_with = "opt_size")]
    pub rotate_bytes: Option<u64>,
    #[serde(default)]
    pub envelope: bool,
    /// Archive only: delete whole days older than this many days (recorded in the manifest).
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub streams: Vec<String>,
    #[serde(default)]
    pub batch: BatchConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max_records: Option<usize>,
    #[serde(default, deserialize_with = "opt_size")]
    pub max_bytes: Option<u64>,
    /// How long a partial batch waits for more records.
    #[serde(default, with = "humantime_serde")]
    pub linger: Option<Duration>,
}

fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}

pub(crate) fn opt_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    super::size::deserialize(d).map(Some)
}

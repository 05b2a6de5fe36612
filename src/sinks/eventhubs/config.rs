//! `type = "eventhubs"`: where the hub is, how the collector proves it may send, how events are
//! partitioned and how large one AMQP message may be.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::common::{Issues, SecretSource};
use crate::sinks::common::BatchDefaults;

/// The largest message a Standard, Premium or Dedicated hub accepts; Basic takes 256 KB.
pub const STANDARD_MAX_MESSAGE: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHubsSinkConfig {
    /// Fully qualified namespace, e.g. `contoso-soc.servicebus.windows.net`.
    pub namespace: Option<String>,
    pub event_hub: Option<String>,
    /// `connection_string`, `tenant`, `managed_identity` or `workload_identity`.
    pub auth: Option<String>,
    pub connection_string_file: Option<PathBuf>,
    pub connection_string_env: Option<String>,
    /// `auth = "tenant"`: the configured tenant whose app registration signs in.
    pub tenant: Option<String>,
    /// `managed_identity`: a user-assigned identity; `workload_identity`: the app's client ID.
    pub client_id: Option<String>,
    /// `workload_identity`: the Entra tenant ID (default: `AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// `workload_identity`: the federated token file (default: `AZURE_FEDERATED_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
    /// `none` (round robin), `tenant`, `stream` or `tenant_stream`.
    pub partitioning: Option<String>,
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_message_bytes: Option<u64>,
    /// `amqp` (TCP 5671, default) or `websockets` (443).
    pub transport: Option<String>,
    /// Dial this address instead of the namespace (private endpoint, proxy, tests).
    pub custom_endpoint: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    None,
    Tenant,
    Stream,
    TenantStream,
}

#[derive(Debug, Clone)]
pub enum HubAuth {
    /// Key name and key: the client signs and renews SAS tokens itself.
    ConnectionString(SecretSource),
    /// The tenant's app registration from `[[tenants]]`.
    Tenant(String),
    ManagedIdentity {
        client_id: Option<String>,
    },
    WorkloadIdentity {
        tenant_id: Option<String>,
        client_id: Option<String>,
        token_file: Option<PathBuf>,
    },
}

impl HubAuth {
    pub fn describe(&self) -> String {
        match self {
            HubAuth::ConnectionString(_) => "connection string (SAS)".into(),
            HubAuth::Tenant(t) => format!("app registration of tenant {t}"),
            HubAuth::ManagedIdentity { client_id: Some(c) } => format!("user-assigned managed identity {c}"),
            HubAuth::ManagedIdentity { client_id: None } => "system-assigned managed identity".into(),
            HubAuth::WorkloadIdentity { .. } => "workload identity".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventHubsSinkSettings {
    /// Taken from the connection string's `Endpoint` when not configured.
    pub namespace: Option<String>,
    /// Taken from the connection string's `EntityPath` when not configured.
    pub event_hub: Option<String>,
    pub auth: HubAuth,
    pub partitioning: Partitioning,
    pub max_message_bytes: u64,
    pub websockets: bool,
    pub custom_endpoint: Option<url::Url>,
    pub timeout: Duration,
}

/// A forwarder batch may span several AMQP messages; they are sent in order and a retry
/// resumes after the ones the hub accepted, so a larger batch only costs memory.
pub const BATCH: BatchDefaults =
    BatchDefaults { records: 4000, bytes: 8 << 20, hard_bytes: 256 << 20, linger: Duration::from_millis(200) };

pub fn validate(
    is: &mut Issues,
    prefix: &str,
    c: &EventHubsSinkConfig,
    tenants: &[String],
) -> Option<EventHubsSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let conn =
        SecretSource::from_keys(is, prefix, "connection_string", &c.connection_string_file, &c.connection_string_env);
    let kind = c.auth.as_deref().unwrap_or(if conn.is_some() { "connection_string" } else { "" });
    let auth = match kind {
        "connection_string" => {
            if conn.is_none() {
                is.add(
                    p("connection_string_file"),
                    "auth = \"connection_string\" needs connection_string_file or connection_string_env",
                );
            }
            conn.clone().map(HubAuth::ConnectionString)
        }
        "tenant" => {
            let t = is.required(&c.tenant, p("tenant"));
            if let Some(t) = &t
                && !tenants.contains(t)
            {
                is.add(p("tenant"), format!("unknown tenant {t:?}: its app registration signs in to Event Hubs"));
            }
            t.map(HubAuth::Tenant)
        }
        "managed_identity" => Some(HubAuth::ManagedIdentity { client_id: c.client_id.clone() }),
        "workload_identity" => Some(HubAuth::WorkloadIdentity {
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            token_file: c.token_file.clone(),
        }),
        "" => {
            is.add(
                p("auth"),
                "is required: connection_string (with connection_string_file or _env), tenant, managed_identity or workload_identity",
            );
            None
        }
        o => {
            is.add(p("auth"), format!("{o:?}: use connection_string, tenant, managed_identity or workload_identity"));
            None
        }
    };
    // A key for another way of signing in is a mistake, not something to ignore.
    let stray: [(&str, bool, &[&str]); 4] = [
        ("tenant", c.tenant.is_some(), &["tenant"]),
        ("client_id", c.client_id.is_some(), &["managed_identity", "workload_identity"]),
        ("tenant_id", c.tenant_id.is_some(), &["workload_identity"]),
        ("token_file", c.token_file.is_some(), &["workload_identity"]),
    ];
    for (key, set, allowed) in stray {
        if set && !kind.is_empty() && !allowed.contains(&kind) {
            is.add(p(key), format!("is only used with auth = {}, not {kind:?}", allowed.join(" or ")));
        }
    }
    if conn.is_some() && kind != "connection_string" {
        is.add(p("connection_string_file"), format!("is only used with auth = \"connection_string\", not {kind:?}"));
    }
    let is_conn = matches!(auth, Some(HubAuth::ConnectionString(_)));
    if !is_conn {
        if c.namespace.is_none() {
            is.add(
                p("namespace"),
                "is required (e.g. contoso-soc.servicebus.windows.net) unless a connection string names it",
            );
        }
        if c.event_hub.is_none() {
            is.add(p("event_hub"), "is required unless the connection string has EntityPath");
        }
    }
    if let Some(ns) = &c.namespace
        && (ns.contains("://") || ns.contains('/') || !ns.contains('.'))
    {
        is.add(
            p("namespace"),
            format!("{ns:?}: give the fully qualified host name, e.g. contoso-soc.servicebus.windows.net"),
        );
    }
    if let Some(h) = &c.event_hub
        && (h.is_empty() || h.len() > 256 || h.contains('/'))
    {
        is.add(p("event_hub"), format!("{h:?} is not an event hub name"));
    }
    let partitioning = match c.partitioning.as_deref() {
        None | Some("none") => Partitioning::None,
        Some("tenant") => Partitioning::Tenant,
        Some("stream") => Partitioning::Stream,
        Some("tenant_stream") => Partitioning::TenantStream,
        Some(o) => {
            is.add(p("partitioning"), format!("{o:?}: use none, tenant, stream or tenant_stream"));
            Partitioning::None
        }
    };
    let max_message_bytes = c.max_message_bytes.unwrap_or(STANDARD_MAX_MESSAGE);
    if !(1024..=STANDARD_MAX_MESSAGE).contains(&max_message_bytes) {
        is.add(
            p("max_message_bytes"),
            format!("must be between 1KiB and 1MiB (Standard and above: 1MiB, Basic: 256KB), not {max_message_bytes}"),
        );
    }
    let websockets = match c.transport.as_deref() {
        None | Some("amqp") => false,
        Some("websockets") => true,
        Some(o) => {
            is.add(p("transport"), format!("{o:?}: use amqp (port 5671) or websockets (port 443)"));
            false
        }
    };
    let custom_endpoint = c.custom_endpoint.as_deref().and_then(|e| endpoint(is, &p("custom_endpoint"), e));
    let timeout = c.timeout.unwrap_or(Duration::from_secs(30));
    is.within(p("timeout"), timeout, Duration::from_secs(1), Duration::from_secs(3600));
    Some(EventHubsSinkSettings {
        namespace: c.namespace.clone(),
        event_hub: c.event_hub.clone(),
        auth: auth?,
        partitioning,
        max_message_bytes,
        websockets,
        custom_endpoint,
        timeout,
    })
}

/// `amqps://host[:port]`, `wss://…`, or plain `amqp://` to a loopback address only: a token
/// must never cross a network in clear text.
fn endpoint(is: &mut Issues, path: &str, e: &str) -> Option<url::Url> {
    let u = match url::Url::parse(e) {
        Ok(u) => u,
        Err(err) => {
            is.add(path, format!("{e:?} is not a URL: {err}"));
            return None;
        }
    };
    let loopback = match u.host() {
        // amqp:// is not a "special" scheme to the URL parser, so an IP arrives as a domain.
        Some(url::Host::Domain(d)) => {
            d == "localhost" || d.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        }
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "amqps" | "wss" | "https" => Some(u),
        "amqp" | "ws" if loopback => Some(u),
        "amqp" | "ws" => {
            is.add(path, "plain amqp:// is only allowed to a loopback address; use amqps://");
            None
        }
        s => {
            is.add(path, format!("scheme {s:?}: use amqps://host:port"));
            None
        }
    }
}

impl EventHubsSinkSettings {
    /// The environment check: the connection string is readable and well formed, or the
    /// workload identity has its tenant, client and token file.
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        let p = |k: &str| format!("{prefix}.{k}");
        match &self.auth {
            HubAuth::ConnectionString(src) => {
                let key = match src {
                    SecretSource::File(_) => p("connection_string_file"),
                    SecretSource::Env(_) => p("connection_string_env"),
                };
                match super::credential::connection_string(src) {
                    Err(e) => is.add(key, e.to_string()),
                    Ok((cs, _)) => {
                        if let SecretSource::File(f) = src {
                            let f = crate::common::secret::expand_credentials_dir(f);
                            crate::common::secret::warn_if_world_readable(is, &key, &f);
                        }
                        if self.event_hub.is_none() && super::credential::names(&cs).1.is_none() {
                            is.add(p("event_hub"), "is required: the connection string has no EntityPath")
                        }
                    }
                }
            }
            HubAuth::WorkloadIdentity { token_file, tenant_id, client_id } => {
                for (key, set, var) in [
                    ("tenant_id", tenant_id.is_some(), "AZURE_TENANT_ID"),
                    ("client_id", client_id.is_some(), "AZURE_CLIENT_ID"),
                ] {
                    if !set && std::env::var(var).map(|v| v.trim().is_empty()).unwrap_or(true) {
                        is.add(p(key), format!("is required when {var} is not set"));
                    }
                }
                let file =
                    token_file.clone().or_else(|| std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").map(Into::into));
                match file {
                    None => is.add(p("token_file"), "is required when AZURE_FEDERATED_TOKEN_FILE is not set"),
                    Some(f) => {
                        if let Err(x) = std::fs::metadata(&f) {
                            is.add(p("token_file"), format!("cannot read {}: {x}", f.display()));
                        }
                    }
                }
            }
            HubAuth::Tenant(_) | HubAuth::ManagedIdentity { .. } => {}
        }
    }
}

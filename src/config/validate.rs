//! Pure validation: raw config in, typed settings or every problem out. No disk, network or
//! secrets here (see `environment` for those), so it is cheap to run anywhere.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::cloud::Endpoints;
use super::schema::*;

const DAY: Duration = Duration::from_secs(86_400);
/// How far back the Management Activity API lets a listing start.
pub const MAA_RETENTION: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub log: LogConfig,
    pub http: HttpSettings,
    pub spool: SpoolSettings,
    pub metrics_listen: Option<SocketAddr>,
    pub shutdown_timeout: Duration,
    pub tenants: Vec<TenantSettings>,
    pub sinks: Vec<SinkSettings>,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub seen_ttl: Duration,
    pub prune_interval: Duration,
}

/// How a tenant's app proves who it is: what `secret` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Secret,
    /// A PEM with the certificate registered on the app and its RSA private key; the collector
    /// signs a client assertion (PS256 JWT) with it.
    Certificate,
}

#[derive(Debug, Clone)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    /// Where the client secret, or the certificate PEM, is read from.
    pub secret: SecretSource,
    pub credential: CredentialKind,
    pub publisher_identifier: String,
    pub endpoints: Endpoints,
    pub management: Option<ManagementSettings>,
    pub graph: Option<GraphSettings>,
}

#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// (spec, settings, Azure subscription for `azure_activity`).
    pub streams: Vec<(
        &'static crate::sources::graph::StreamSpec,
        crate::sources::graph::stream::GraphStreamSettings,
        Option<String>,
    )>,
    pub reports_requests_per_10s: u32,
}

#[derive(Debug, Clone)]
pub struct ManagementSettings {
    pub content_types: Vec<String>,
    pub poll_interval: Duration,
    pub overlap: Duration,
    pub backfill: Duration,
    pub retention_margin: Duration,
    pub fetch_concurrency: usize,
    pub requests_per_minute: u32,
}

pub use super::sinks::{FileSinkSettings, SinkSettings};

pub(crate) struct Issues(pub(crate) Vec<ConfigIssue>);

impl Issues {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue { path: path.into(), message: message.into() });
    }
    pub(crate) fn required<T: Clone>(&mut self, v: &Option<T>, path: String) -> Option<T> {
        if v.is_none() {
            self.add(path, "is required");
        }
        v.clone()
    }
}

pub fn validate(raw: &RawConfig) -> Result<Settings, Vec<ConfigIssue>> {
    let mut is = Issues(Vec::new());
    let state_dir = raw.state_dir.clone().unwrap_or_else(default_state_dir);

    if !matches!(raw.log.format.as_str(), "text" | "json") {
        is.add("log.format", format!("must be \"text\" or \"json\", not {:?}", raw.log.format));
    }
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        is.add("log.level", format!("{:?} is not a valid level or filter", raw.log.level));
    }

    let spool = SpoolSettings {
        max_bytes: raw.spool.max_bytes.unwrap_or(10 << 30),
        max_age: raw.spool.max_age.unwrap_or(30 * DAY),
        seen_ttl: raw.spool.seen_ttl.unwrap_or(8 * DAY),
        prune_interval: raw.spool.prune_interval.unwrap_or(Duration::from_secs(60)),
    };
    if spool.max_bytes < (1 << 20) {
        is.add("spool.max_bytes", "must be at least 1MiB");
    }
    if spool.seen_ttl <= MAA_RETENTION {
        is.add(
            "spool.seen_ttl",
            "must be longer than the API's 7-day window (Microsoft re-delivers records days later); default 8d",
        );
    }
    if spool.max_age < Duration::from_secs(3600) {
        is.add("spool.max_age", "must be at least 1h");
    }

    let metrics_listen = raw.telemetry.metrics_listen.as_ref().and_then(|s| match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            is.add("telemetry.metrics_listen", format!("{s:?} is not an address like 127.0.0.1:9898"));
            None
        }
    });

    if raw.tenants.is_empty() {
        is.add("tenants", "at least one [[tenants]] entry is required");
    }
    let mut tenants = Vec::new();
    for (i, t) in raw.tenants.iter().enumerate() {
        if let Some(ts) = tenant(&mut is, i, t) {
            if tenants.iter().any(|o: &TenantSettings| o.name == ts.name) {
                is.add(format!("tenants[{i}].name"), format!("duplicate tenant name {:?}", ts.name));
            }
            tenants.push(ts);
        }
    }

    let tenant_names: Vec<String> = tenants.iter().map(|t| t.name.clone()).collect();
    let sinks = super::sinks::validate(&mut is, &raw.sinks, &tenant_names);

    if !is.0.is_empty() {
        return Err(is.0);
    }
    Ok(Settings {
        state_dir,
        log: raw.log.clone(),
        http: HttpSettings {
            ca_file: raw.http.ca_file.clone(),
            timeout: raw.http.timeout.unwrap_or(Duration::from_secs(120)),
        },
        spool,
        metrics_listen,
        shutdown_timeout: raw.shutdown_timeout.unwrap_or(Duration::from_secs(30)),
        tenants,
        sinks,
    })
}

fn default_state_dir() -> PathBuf {
    // systemd's StateDirectory= exports the path it created.
    std::env::var_os("STATE_DIRECTORY")
        .map(|v| PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or("").to_string()))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/var/lib/auditkeeper"))
}

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn tenant(is: &mut Issues, i: usize, t: &TenantConfig) -> Option<TenantSettings> {
    let p = |k: &str| format!("tenants[{i}].{k}");
    let name = is.required(&t.name, p("name"));
    if let Some(n) = &name
        && !valid_name(n)
    {
        is.add(p("name"), "use 1-64 characters from A-Z a-z 0-9 - _ . (it names files and streams)");
    }
    let tenant_id = is.required(&t.tenant_id, p("tenant_id"));
    if let Some(id) = &tenant_id
        && uuid::Uuid::parse_str(id).is_err()
    {
        is.add(p("tenant_id"), format!("{id:?} is not a GUID (the Management Activity API needs the directory id)"));
    }
    let client_id = is.required(&t.client_id, p("client_id"));
    if let Some(c) = &client_id
        && c.trim().is_empty()
    {
        is.add(p("client_id"), "must not be empty");
    }
    let secret = match (&t.client_secret_file, &t.client_secret_env, &t.client_certificate_file) {
        (Some(f), None, None) => Some(SecretSource::File(f.clone())),
        (None, Some(e), None) if !e.is_empty() => Some(SecretSource::Env(e.clone())),
        (None, None, Some(c)) => Some(SecretSource::File(c.clone())),
        (None, Some(_), None) => {
            is.add(p("client_secret_env"), "must name an environment variable");
            None
        }
        (None, None, None) => {
            is.add(
                p("client_secret_file"),
                "a credential is required: client_secret_file (e.g. a systemd credential), client_secret_env or client_certificate_file",
            );
            None
        }
        _ => {
            is.add(
                p("client_secret_file"),
                "set one of client_secret_file, client_secret_env or client_certificate_file",
            );
            None
        }
    };
    let credential =
        if t.client_certificate_file.is_some() { CredentialKind::Certificate } else { CredentialKind::Secret };
    let publisher_identifier = t.publisher_identifier.clone().or_else(|| tenant_id.clone());
    if let Some(pi) = &t.publisher_identifier
        && uuid::Uuid::parse_str(pi).is_err()
    {
        is.add(p("publisher_identifier"), format!("{pi:?} is not a GUID"));
    }

    let mut endpoints = t.cloud.endpoints();
    let o = &t.endpoints;
    for (key, value, slot) in [
        ("authority", &o.authority, &mut endpoints.authority),
        ("management", &o.management, &mut endpoints.management),
        ("management_resource", &o.management_resource, &mut endpoints.management_resource),
        ("graph", &o.graph, &mut endpoints.graph),
        ("arm", &o.arm, &mut endpoints.arm),
    ] {
        if let Some(v) = value {
            match reqwest::Url::parse(v) {
                Ok(u) if u.scheme() == "https" => *slot = v.trim_end_matches('/').to_string(),
                Ok(_) => is.add(p(&format!("endpoints.{key}")), format!("{v:?} must be an https:// URL")),
                Err(e) => is.add(p(&format!("endpoints.{key}")), format!("{v:?} is not a URL: {e}")),
            }
        }
    }
    // The token audience follows an overridden management host unless set on its own.
    if o.management.is_some() && o.management_resource.is_none() {
        endpoints.management_resource = endpoints.management.clone();
    }

    let management = management(is, i, &t.management_activity);
    let graph = graph(is, i, &t.graph);
    Some(TenantSettings {
        name: name?,
        tenant_id: tenant_id?,
        client_id: client_id?,
        secret: secret?,
        credential,
        publisher_identifier: publisher_identifier?,
        endpoints,
        management,
        graph,
    })
}

fn graph(is: &mut Issues, i: usize, g: &GraphConfig) -> Option<GraphSettings> {
    use crate::sources::graph::{SPECS, spec, stream::GraphStreamSettings};
    let p = |k: &str| format!("tenants[{i}].graph.{k}");
    if g.enabled == Some(false) {
        return None;
    }
    let names: Vec<String> = g.streams.clone().unwrap_or_else(|| {
        let mut v: Vec<String> = SPECS.iter().filter(|s| s.default_on).map(|s| s.name.to_string()).collect();
        if !g.azure_subscriptions.is_empty() {
            v.push("azure_activity".into());
        }
        v
    });
    for (j, sub) in g.azure_subscriptions.iter().enumerate() {
        if uuid::Uuid::parse_str(sub).is_err() {
            is.add(
                format!("tenants[{i}].graph.azure_subscriptions[{j}]"),
                format!("{sub:?} is not a subscription GUID"),
            );
        }
    }
    if names.iter().any(|n| n == "azure_activity") && g.azure_subscriptions.is_empty() {
        is.add(p("azure_subscriptions"), "azure_activity needs at least one subscription id");
    }
    let known = SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
    for k in g.overrides.keys() {
        if !names.contains(k) {
            is.add(
                p(&format!("overrides.{k}")),
                format!("{k:?} is not an enabled stream (enabled: {})", names.join(", ")),
            );
        }
    }
    let mut streams = Vec::new();
    for (j, n) in names.iter().enumerate() {
        let Some(sp) = spec::find(n) else {
            is.add(format!("tenants[{i}].graph.streams[{j}]"), format!("{n:?} is not one of {known}"));
            continue;
        };
        let o = g.overrides.get(n).cloned().unwrap_or_default();
        let st = GraphStreamSettings {
            poll_interval: g.poll_interval.unwrap_or(Duration::from_secs(300)),
            overlap: o.overlap.or(g.overlap).unwrap_or(sp.default_overlap),
            lag: o.lag.or(g.lag).unwrap_or(Duration::from_secs(300)),
            backfill: o.backfill.or(g.backfill).unwrap_or(MAA_RETENTION),
            recheck_unavailable: g.recheck_unavailable.unwrap_or(crate::sources::graph::stream::RECHECK_UNAVAILABLE),
        };
        if st.backfill > sp.retention {
            is.add(
                p(&format!("overrides.{n}.backfill")),
                format!("must be at most {} (the API's retention)", humantime::format_duration(sp.retention)),
            );
        }
        if st.overlap > sp.retention {
            is.add(p(&format!("overrides.{n}.overlap")), "must be shorter than the API's retention");
        }
        if sp.name == "azure_activity" {
            for sub in &g.azure_subscriptions {
                streams.push((sp, st.clone(), Some(sub.clone())));
            }
        } else {
            streams.push((sp, st, None));
        }
    }
    if streams.is_empty() && g.streams.is_some() {
        is.add(p("streams"), "lists no stream; set enabled = false instead");
    }
    if g.poll_interval.is_some_and(|d| d < Duration::from_secs(1)) {
        is.add(p("poll_interval"), "must be at least 1s");
    }
    let rate = g.reports_requests_per_10s.unwrap_or(4);
    if !(1..=5).contains(&rate) {
        is.add(p("reports_requests_per_10s"), "must be 1 to 5: Microsoft allows 5 per 10 s per app per tenant");
    }
    Some(GraphSettings { streams, reports_requests_per_10s: rate })
}

fn management(is: &mut Issues, i: usize, m: &ManagementActivityConfig) -> Option<ManagementSettings> {
    let p = |k: &str| format!("tenants[{i}].management_activity.{k}");
    if m.enabled == Some(false) {
        return None;
    }
    let content_types =
        m.content_types.clone().unwrap_or_else(|| CONTENT_TYPES[..4].iter().map(|s| s.to_string()).collect());
    if content_types.is_empty() {
        is.add(p("content_types"), "must list at least one content type, or set enabled = false");
    }
    for (j, ct) in content_types.iter().enumerate() {
        if !CONTENT_TYPES.contains(&ct.as_str()) {
            is.add(
                format!("tenants[{i}].management_activity.content_types[{j}]"),
                format!("{ct:?} is not one of {}", CONTENT_TYPES.join(", ")),
            );
        }
    }
    let s = ManagementSettings {
        content_types,
        poll_interval: m.poll_interval.unwrap_or(Duration::from_secs(300)),
        overlap: m.overlap.unwrap_or(Duration::from_secs(24 * 3600)),
        backfill: m.backfill.unwrap_or(MAA_RETENTION),
        retention_margin: m.retention_margin.unwrap_or(Duration::from_secs(300)),
        fetch_concurrency: m.fetch_concurrency.unwrap_or(8),
        requests_per_minute: m.requests_per_minute.unwrap_or(1800),
    };
    if s.poll_interval < Duration::from_secs(1) {
        is.add(p("poll_interval"), "must be at least 1s");
    }
    if s.overlap > MAA_RETENTION {
        is.add(p("overlap"), "must be at most 7d, the API's listing window");
    }
    if s.backfill > MAA_RETENTION {
        is.add(p("backfill"), "must be at most 7d: the API keeps content for 7 days");
    }
    if s.retention_margin < Duration::from_secs(60) || s.retention_margin > Duration::from_secs(6 * 3600) {
        is.add(p("retention_margin"), "must be between 1m and 6h");
    }
    if !(1..=64).contains(&s.fetch_concurrency) {
        is.add(p("fetch_concurrency"), "must be between 1 and 64");
    }
    if s.requests_per_minute == 0 {
        is.add(p("requests_per_minute"), "must be above 0");
    }
    Some(s)
}

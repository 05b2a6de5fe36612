//! Pure validation: raw config in, typed settings or every problem out. No disk, network or
//! secrets here (see `environment` for those), so it is cheap to run anywhere. Each component
//! validates its own table; this file assembles them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::schema::*;
use super::tenant::{self, TenantSettings};
use crate::common::{ConfigIssue, Issues};
use crate::http::HttpSettings;
use crate::pipeline::config::SpoolSettings;
use crate::sinks::config::SinkSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub log: LogConfig,
    pub http: HttpSettings,
    pub spool: SpoolSettings,
    pub telemetry: Option<TelemetrySettings>,
    pub shutdown_timeout: Duration,
    pub tenants: Vec<TenantSettings>,
    pub sinks: Vec<SinkSettings>,
}

impl Settings {
    pub fn stream_count(&self) -> usize {
        self.tenants.iter().map(TenantSettings::stream_count).sum()
    }
}

/// The validated settings and the warnings to show at every start, or every error.
pub fn validate(raw: &RawConfig) -> Result<(Settings, Vec<String>), Vec<ConfigIssue>> {
    let mut is = Issues::new();
    let state_dir = raw.state_dir.clone().unwrap_or_else(default_state_dir);

    if !matches!(raw.log.format.as_str(), "text" | "json") {
        is.add("log.format", format!("must be \"text\" or \"json\", not {:?}", raw.log.format));
    }
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        is.add("log.level", format!("{:?} is not a valid level or filter", raw.log.level));
    }
    let spool = crate::pipeline::config::validate(&mut is, &raw.spool);
    let http = crate::http::validate(&mut is, &raw.http);
    let telemetry = raw.telemetry.as_ref().and_then(|t| telemetry(&mut is, t));
    let shutdown_timeout = raw.shutdown_timeout.unwrap_or(Duration::from_secs(30));
    if shutdown_timeout > Duration::from_secs(3600) {
        is.add("shutdown_timeout", "must be at most 1h");
    }

    if raw.tenants.is_empty() && raw.dir_tenants.is_empty() {
        let more = if raw.tenants_dir.is_some() { " (tenants_dir holds no *.toml file)" } else { "" };
        is.add("tenants", format!("at least one [[tenants]] entry is required{more}"));
    }
    let mut tenants: Vec<TenantSettings> = Vec::new();
    for (prefix, t) in super::defaults::tenant_tables(&mut is, raw) {
        if let Some(ts) = tenant::validate(&mut is, &prefix, &t) {
            if tenants.iter().any(|o| o.name == ts.name) {
                is.add(format!("{prefix}.name"), format!("duplicate tenant name {:?}", ts.name));
            }
            tenants.push(ts);
        }
    }
    let tenant_names: Vec<String> = tenants.iter().map(|t| t.name.clone()).collect();
    let sinks = crate::sinks::config::validate(&mut is, &raw.sinks, &tenant_names);

    if !is.is_empty() {
        return Err(is.errors);
    }
    let settings =
        Settings { state_dir, log: raw.log.clone(), http, spool, telemetry, shutdown_timeout, tenants, sinks };
    Ok((settings, is.warnings))
}

/// Where the telemetry endpoints listen and what readiness tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetrySettings {
    pub listen: SocketAddr,
    pub stale_after_polls: u32,
    pub sink_stale_after: Duration,
}

fn telemetry(is: &mut Issues, t: &TelemetryConfig) -> Option<TelemetrySettings> {
    let (key, text) = match (&t.listen, &t.metrics_listen) {
        (Some(_), Some(_)) => {
            is.add("telemetry.metrics_listen", "set listen only (metrics_listen is its older name)");
            return None;
        }
        (None, Some(m)) => ("telemetry.metrics_listen", m.as_str()),
        (Some(l), None) => ("telemetry.listen", l.as_str()),
        (None, None) => ("telemetry.listen", "127.0.0.1:9898"),
    };
    let listen: Option<SocketAddr> = text.parse().ok();
    if listen.is_none() {
        is.add(key, format!("{text:?} is not an address like 127.0.0.1:9898"));
    }
    if let Some(a) = listen
        && !a.ip().is_loopback()
    {
        is.warn(
            key,
            format!("{a} is reachable beyond this host: metrics and readiness texts name tenants and streams"),
        );
    }
    let stale_after_polls = t.stale_after_polls.unwrap_or(3);
    if !(1..=1000).contains(&stale_after_polls) {
        is.add("telemetry.stale_after_polls", "must be between 1 and 1000");
    }
    let sink_stale_after = t.sink_stale_after.unwrap_or(Duration::from_secs(600));
    is.within("telemetry.sink_stale_after", sink_stale_after, Duration::from_secs(1), Duration::from_secs(7 * 86_400));
    Some(TelemetrySettings { listen: listen?, stale_after_polls, sink_stale_after })
}

fn default_state_dir() -> PathBuf {
    // systemd's StateDirectory= exports the path it created.
    std::env::var_os("STATE_DIRECTORY")
        .map(|v| PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or("").to_string()))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/var/lib/auditkeeper"))
}

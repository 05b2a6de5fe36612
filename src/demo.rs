//! `auditkeeper demo`: the simulated tenant and the collector in one process, writing into
//! `./demo-output`, ending with a one-line completeness summary checked against ground truth.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::simulator::{Scenario, Simulator};

/// Extra TOML lines for the config `write_config` produces (tests tune these).
#[derive(Debug, Default, Clone)]
pub struct ConfigExtras {
    /// Lines appended to `[tenants.management_activity]`.
    pub management: String,
    /// Lines appended to the file sink's `[[sinks]]` table.
    pub sink: String,
    /// Lines appended to `[spool]`.
    pub spool: String,
    /// Lines of `[tenants.graph]`; empty means Graph is off.
    pub graph: String,
    /// Further `[[sinks]]` tables, appended at the end.
    pub extra_sinks: String,
    /// Lines of `[telemetry]`; empty means no listener.
    pub telemetry: String,
    /// Lines of `[tenants.audit_query]`; empty leaves the table out (backfill on, no job).
    pub audit_query: String,
    /// Lines appended to `[http]`.
    pub http: String,
    /// The tenant's sign-in lines in place of `client_id` and `client_secret_file`.
    pub credential: String,
}

/// Writes a config that points every endpoint at the simulator.
pub fn write_config(dir: &Path, sim: &Simulator, extras: &ConfigExtras) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join("client-secret");
    std::fs::write(&secret, &sim.tenant.scenario.client_secret)?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let s = &sim.tenant.scenario;
    let text = format!(
        r#"# Written by auditkeeper demo: every Microsoft endpoint points at the simulated tenant.
state_dir = "{state}"
shutdown_timeout = "10s"

[http]
ca_file = "{ca}"
{http}

[log]
level = "warn"

{telemetry}

[spool]
# A demo or test run needs little room; do not pause on a cramped disk.
min_free_bytes = "8MiB"
{spool}

[[tenants]]
name = "contoso"
tenant_id = "{tenant_id}"
{credential}

[tenants.endpoints]
authority = "{base}"
management = "{base}"
graph = "{base}"
arm = "{base}"

[tenants.management_activity]
content_types = [{cts}]
poll_interval = "1s"
overlap = "1h"
{management}

[tenants.graph]
{graph}
{audit_query}

[[sinks]]
type = "file"
name = "archive"
path = "{records}"
{sink}

{extra_sinks}
"#,
        state = dir.join("state").display(),
        ca = sim.ca_file.display(),
        tenant_id = s.tenant_id,
        credential = if extras.credential.is_empty() {
            format!("client_id = \"{}\"\nclient_secret_file = \"{}\"", s.client_id, secret.display())
        } else {
            extras.credential.clone()
        },
        base = sim.base_url(),
        cts = s.content_types.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", "),
        records = dir.join("records").display(),
        management = extras.management,
        sink = extras.sink,
        extra_sinks = extras.extra_sinks,
        spool = extras.spool,
        telemetry =
            if extras.telemetry.is_empty() { String::new() } else { format!("[telemetry]\n{}", extras.telemetry) },
        http = extras.http,
        audit_query = if extras.audit_query.is_empty() {
            String::new()
        } else {
            format!("[tenants.audit_query]\n{}", extras.audit_query)
        },
        graph = if extras.graph.is_empty() { "enabled = false" } else { extras.graph.as_str() },
    );
    let path = dir.join("auditkeeper.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Counts delivered lines by record Id.
pub fn delivered_ids(records_dir: &Path) -> std::io::Result<HashMap<String, u32>> {
    let mut m = HashMap::new();
    for line in crate::sinks::file::read::read_lines(records_dir)? {
        if let Some(id) = crate::sinks::file::read::record_id(&line) {
            *m.entry(id).or_insert(0) += 1;
        }
    }
    Ok(m)
}

pub async fn run(out: &Path, records: u64) -> ExitCode {
    crate::telemetry::init_logging("text", "warn");
    match run_inner(out, records).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_inner(out: &Path, records: u64) -> Result<bool, Box<dyn std::error::Error>> {
    // Only our own sub-directories are reset, so a re-run starts clean.
    for sub in ["state", "records"] {
        let _ = std::fs::remove_dir_all(out.join(sub));
    }
    std::fs::create_dir_all(out)?;
    let scenario = Scenario {
        history_days: 3.0,
        history_records: records,
        live_records_per_sec: 300.0,
        page_size: 25,
        duplicate_fraction: 0.02,
        late_listing_fraction: 0.05,
        late_listing_max: Duration::from_secs(2),
        old_events_fraction: 0.05,
        throttle_every: 97,
        throttle_burst: 2,
        error_every: 131,
        error_burst: 1,
        expired_fraction: 0.01,
        subscriptions_enabled: false,
        ..Scenario::default()
    };
    let sim = Simulator::start(scenario, "127.0.0.1:0".parse()?, &out.join("simulator-ca.pem")).await?;
    println!("demo: simulated tenant at {} with {} records over 3 days (+300 records/s live)", sim.base_url(), records);
    println!(
        "demo: quirks on: paging, AF429-as-403 throttling, 5xx, duplicate Ids, late blobs, expired blobs, disabled subscriptions"
    );
    let cfg = write_config(out, &sim, &ConfigExtras::default())?;
    let (settings, _) = crate::config::load_settings(&cfg)?;
    let daemon = crate::daemon::Daemon::start(&settings).await?;
    let started = Instant::now();
    let live_for = Duration::from_secs(8);
    let deadline = Duration::from_secs(240);
    let mut frozen = false;
    let ok = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !frozen && started.elapsed() > live_for {
            sim.tenant.freeze();
            frozen = true;
        }
        let store = daemon.pipeline.store.clone();
        let (streams, backlogs) =
            tokio::task::spawn_blocking(move || (store.stream_status(), store.backlogs())).await?;
        let (streams, backlogs) = (streams?, backlogs?);
        let ingested: i64 = streams.iter().map(|s| s.counters.records_total).sum();
        let dups: i64 = streams.iter().map(|s| s.counters.duplicates_total).sum();
        let pending: i64 = streams.iter().map(|s| s.ledger.listed).sum();
        let delivered: i64 = backlogs.iter().map(|b| b.delivered_total).sum();
        let backlog: i64 = backlogs.iter().map(|b| b.records).sum();
        println!(
            "demo: {:>3}s  ingested {ingested:>7}  duplicates dropped {dups:>5}  blobs pending {pending:>4}  delivered {delivered:>7}  backlog {backlog:>6}",
            started.elapsed().as_secs()
        );
        if frozen {
            let truth = sim.tenant.truth();
            let visible = sim.tenant.last_visible_at().is_none_or(|t| t < sim.tenant.now());
            if visible && pending == 0 && backlog == 0 && delivered as usize >= truth.ids.len() {
                break true;
            }
        }
        if started.elapsed() > deadline {
            break false;
        }
    };
    daemon.stop().await?;
    let truth = sim.tenant.truth();
    let got = delivered_ids(&out.join("records"))?;
    let missing = truth.ids.iter().filter(|i| !got.contains_key(*i)).count();
    let duplicates: u32 = got.values().map(|n| n - 1).sum();
    let status = crate::status::render(&out.join("state"))?;
    let expired_reported: i64 = crate::store::Store::open_read_only(&out.join("state"))?
        .streams()?
        .iter()
        .map(|s| s.counters.blobs_expired)
        .sum();
    let stats = sim.tenant.stats();
    println!("{status}");
    println!(
        "demo: generated {} records ({} unique ids, {} only in {} expired blobs), delivered {}, duplicates {}, missing {}, expired blobs reported {}, throttled {} times, output in {}",
        truth.records_served,
        truth.ids.len(),
        truth.expired_only_ids.len(),
        truth.expired_blobs,
        got.len(),
        duplicates,
        missing,
        expired_reported,
        stats.throttled,
        out.join("records").display()
    );
    Ok(ok && missing == 0 && duplicates == 0)
}

/// `auditkeeper simulate`: the simulated tenant alone, until Ctrl-C.
pub async fn simulate(
    listen: std::net::SocketAddr,
    ca_out: std::path::PathBuf,
    scenario: Option<std::path::PathBuf>,
    hostile: bool,
) -> ExitCode {
    crate::telemetry::init_logging("text", "info");
    let mut sc = if hostile { Scenario::hostile() } else { Scenario::default() };
    if let Some(p) = scenario {
        let parsed = std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|text| crate::config::from_toml_str::<Scenario>(&text).map_err(|e| e.to_string()));
        sc = match parsed {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::from(2);
            }
        };
    }
    let sim = match Simulator::start(sc, listen, &ca_out).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let s = &sim.tenant.scenario;
    println!("simulated tenant listening on {}", sim.base_url());
    println!("  CA certificate: {}   (set [http] ca_file to it)", ca_out.display());
    println!("  tenant_id: {}   client_id: {}", s.tenant_id, s.client_id);
    println!("  client secret: in the scenario (default \"sim-secret-do-not-use\")");
    println!("  endpoints: authority = management = {}", sim.base_url());
    println!("  ground truth: {}/_sim/truth   request stats: {}/_sim/stats", sim.base_url(), sim.base_url());
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}

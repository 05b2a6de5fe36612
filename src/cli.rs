//! Command line: `run`, `validate`, `status`, `backfill`, `dead-letter`, `archive`, `demo`, `simulate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, ConfigError};

#[derive(Parser)]
#[command(
    name = "auditkeeper",
    version,
    about = "Collects Microsoft 365 / Entra / Azure audit records before Microsoft ages them out, and forwards them to your SIEM."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the collector daemon.
    Run {
        #[arg(long, short, env = "AUDITKEEPER_CONFIG")]
        config: PathBuf,
    },
    /// Check a configuration file; exit status 0 when it is usable.
    Validate {
        #[arg(long, short, env = "AUDITKEEPER_CONFIG")]
        config: PathBuf,
    },
    /// Show per-stream cursors, lag and errors, and per-sink backlog (safe while the daemon runs).
    Status {
        #[arg(long, short, env = "AUDITKEEPER_CONFIG")]
        config: PathBuf,
        /// The same report as JSON, for scripts (the shape is documented in the README).
        #[arg(long)]
        json: bool,
    },
    /// Ask a running daemon's /healthz; exit 0 when healthy (for container HEALTHCHECKs).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9898/healthz")]
        url: String,
    },
    /// Release the spool rows kept for a sink removed from the config (stop the daemon first).
    ForgetSink {
        #[arg(long, short, env = "AUDITKEEPER_CONFIG")]
        config: PathBuf,
        /// The sink's name, as `status` shows it.
        name: String,
    },
    /// Delete the state kept for a tenant removed from the config (cursors, ledger, backfill
    /// jobs, spooled records); refused while any of its records is undelivered, unless --force.
    ForgetTenant {
        #[arg(long, short, env = "AUDITKEEPER_CONFIG")]
        config: PathBuf,
        /// The tenant's name, as `status` shows it.
        name: String,
        /// Delete its records even if a sink has not received them.
        #[arg(long)]
        force: bool,
    },
    /// Backfill a tenant from the unified audit log (up to 180 days; a year with Audit Premium).
    /// The running daemon does the work; this registers the job and shows its progress.
    Backfill(crate::backfill_cmd::Args),
    /// Records a receiver refused for good: list them, queue them for redelivery, or delete them.
    DeadLetter {
        #[command(subcommand)]
        action: DeadLetterCmd,
    },
    /// Checks on a tamper-evident archive.
    Archive {
        #[command(subcommand)]
        action: ArchiveCmd,
    },
    /// Run the collector against the built-in simulated tenant into ./demo-output.
    #[cfg(feature = "simulator")]
    Demo {
        #[arg(long, default_value = "demo-output")]
        output: PathBuf,
        /// Records of history the simulated tenant starts with.
        #[arg(long, default_value_t = 30_000)]
        records: u64,
    },
    /// Serve the simulated tenant over HTTPS, e.g. to test a SIEM pipeline.
    #[cfg(feature = "simulator")]
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Where to write the simulator's CA certificate (PEM).
        #[arg(long, default_value = "auditkeeper-sim-ca.pem")]
        ca_out: PathBuf,
        /// TOML file of scenario knobs (see src/simulator/scenario.rs).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Turn every quirk on (throttling, 5xx, duplicates, late blobs, expiry, skew).
        #[arg(long)]
        hostile: bool,
    },
}

#[derive(clap::Args)]
struct Selection {
    #[arg(long, short, env = "AUDITKEEPER_CONFIG")]
    config: PathBuf,
    /// Only this sink's dead letters.
    #[arg(long)]
    sink: Option<String>,
    /// Only these dead-letter numbers (as shown by `list`).
    #[arg(long = "id", value_delimiter = ',')]
    ids: Vec<i64>,
    /// Only dead letters older than this (e.g. 30d).
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: Option<std::time::Duration>,
    /// Act on every dead letter matching the other options (required without --id).
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand)]
enum DeadLetterCmd {
    /// Show dead letters and why the receiver refused them.
    List {
        #[command(flatten)]
        sel: Selection,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print each record's JSON too.
        #[arg(long)]
        records: bool,
    },
    /// Queue dead letters for redelivery by their sink (after fixing the receiver or the config).
    Retry {
        #[command(flatten)]
        sel: Selection,
    },
    /// Delete dead letters for good.
    Purge {
        #[command(flatten)]
        sel: Selection,
    },
}

#[derive(Subcommand)]
enum ArchiveCmd {
    /// Check every file hash and the manifest chain; report the first break precisely.
    Verify { dir: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Validate { config } => validate(&config),
        Cmd::Status { config, json } => status(&config, json),
        Cmd::Healthcheck { url } => healthcheck(&url),
        Cmd::Run { config } => crate::service::run(&config),
        Cmd::DeadLetter { action } => dead_letter(action),
        Cmd::Backfill(args) => match settings(&args.config) {
            Ok(s) => crate::backfill_cmd::main(&s, &args),
            Err(code) => code,
        },
        Cmd::ForgetSink { config, name } => forget_sink(&config, &name),
        Cmd::ForgetTenant { config, name, force } => forget_tenant(&config, &name, force),
        Cmd::Archive { action: ArchiveCmd::Verify { dir } } => archive_verify(&dir),
        #[cfg(feature = "simulator")]
        Cmd::Demo { output, records } => runtime().block_on(crate::demo::run(&output, records)),
        #[cfg(feature = "simulator")]
        Cmd::Simulate { listen, ca_out, scenario, hostile } => {
            runtime().block_on(crate::demo::simulate(listen, ca_out, scenario, hostile))
        }
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

/// Tenants one async worker carries. At Microsoft's full pace (1,800 requests a minute) a
/// tenant's calls, TLS and parsing take 1-2% of a core, so a worker has room for a reload
/// that adds tenants several times over.
const TENANTS_PER_WORKER: usize = 16;

/// Async workers for a daemon of `tenants` tenants: one per `TENANTS_PER_WORKER`, at least
/// one, at most the cores.
pub(crate) fn daemon_workers(tenants: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tenants.div_ceil(TENANTS_PER_WORKER).clamp(1, cores)
}

/// The daemon's runtime, sized by `daemon_workers` (`TOKIO_WORKER_THREADS` overrides).
///
/// Not one worker per core: a tenant's tasks hand work to each other all the time (its
/// HTTP/2 connection task, its streams, the committer, the forwarders), and each hand-off
/// woke an idle second worker to look for work that was not there. On the small-blob
/// benchmark one worker cost 23.4 and 23.1 CPU-us a record against 26.4 and 25.2 for two,
/// system time down by a third; end to end on big pages, 104k against 113k records/s
/// (medians of five, within the machine's spread). One worker is not one core for the
/// daemon: SQLite runs on the blocking pool, and the file sink hands its worker on while it
/// writes and syncs (`block_in_place`).
pub(crate) fn daemon_runtime(tenants: usize) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        b.worker_threads(daemon_workers(tenants));
    }
    b.enable_all().build().expect("tokio runtime")
}

fn validate(path: &std::path::Path) -> ExitCode {
    match config::load_settings(path) {
        Ok((s, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let streams = s.stream_count();
            println!(
                "{}: OK ({} tenants, {} streams, {} sinks)",
                path.display(),
                s.tenants.len(),
                streams,
                s.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// The settings a config names (validation only: secrets are not needed to read state).
fn settings(path: &std::path::Path) -> Result<config::Settings, ExitCode> {
    let raw = config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    config::validate(&raw).map(|(s, _)| s).map_err(|issues| {
        eprintln!("{}", ConfigError::Invalid(issues));
        ExitCode::from(2)
    })
}

fn state_dir(path: &std::path::Path) -> Result<PathBuf, ExitCode> {
    settings(path).map(|s| s.state_dir)
}

fn sink_names(s: &config::Settings) -> Vec<String> {
    s.sinks.iter().map(|x| x.common.name.clone()).collect()
}

fn forget_sink(path: &std::path::Path, name: &str) -> ExitCode {
    let s = match settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match crate::admin::forget_sink(&s.state_dir, name, &sink_names(&s)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("forget-sink: {e}");
            ExitCode::from(1)
        }
    }
}

fn forget_tenant(path: &std::path::Path, name: &str, force: bool) -> ExitCode {
    let s = match settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let configured: Vec<String> = s.tenants.iter().map(|t| t.name.clone()).collect();
    match crate::admin::forget_tenant(&s.state_dir, name, &configured, force) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("forget-tenant: {e}");
            ExitCode::from(1)
        }
    }
}

fn dead_letter(action: DeadLetterCmd) -> ExitCode {
    let (sel, verb) = match &action {
        DeadLetterCmd::List { sel, .. } => (sel, "list"),
        DeadLetterCmd::Retry { sel } => (sel, "retry"),
        DeadLetterCmd::Purge { sel } => (sel, "purge"),
    };
    let dir = match state_dir(&sel.config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    if verb != "list" && sel.ids.is_empty() && !sel.all {
        eprintln!("dead-letter {verb}: name the records with --id N[,M...] or confirm with --all");
        return ExitCode::from(2);
    }
    let selector = crate::store::DeadLetterSelector {
        sink: sel.sink.clone(),
        ids: sel.ids.clone(),
        before_ms: sel.older_than.map(|d| chrono::Utc::now().timestamp_millis() - d.as_millis() as i64),
    };
    let result = match action {
        DeadLetterCmd::List { limit, records, .. } => crate::admin::list(&dir, &selector, limit, records),
        DeadLetterCmd::Retry { .. } => crate::admin::retry(&dir, &selector)
            .map(|n| format!("{n} dead letter(s) queued for redelivery; the daemon sends them within seconds\n")),
        DeadLetterCmd::Purge { .. } => {
            crate::admin::purge(&dir, &selector).map(|n| format!("{n} dead letter(s) deleted\n"))
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read state in {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

fn archive_verify(dir: &std::path::Path) -> ExitCode {
    match crate::sinks::file::manifest::verify(dir) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

fn healthcheck(url: &str) -> ExitCode {
    let r = runtime().block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
        let resp = client.get(url).send().await?;
        let ok = resp.status().is_success();
        Ok::<_, reqwest::Error>((ok, resp.text().await.unwrap_or_default()))
    });
    match r {
        Ok((true, _)) => ExitCode::SUCCESS,
        Ok((false, body)) => {
            eprintln!("{}", body.trim());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{url}: {}", crate::http::error_chain(&e));
            ExitCode::from(1)
        }
    }
}

fn status(path: &std::path::Path, json: bool) -> ExitCode {
    let s = match settings(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let dir = s.state_dir.clone();
    let names = sink_names(&s);
    let report =
        if json { crate::status::json(&dir, Some(&names)) } else { crate::status::render_for(&dir, Some(&names)) };
    match report {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read state in {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    /// One worker for a tenant or a few; one more per 16 tenants, up to the cores.
    #[test]
    fn a_daemon_gets_one_worker_per_sixteen_tenants_up_to_the_cores() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(super::daemon_workers(0), 1);
        assert_eq!(super::daemon_workers(1), 1);
        assert_eq!(super::daemon_workers(16), 1);
        assert_eq!(super::daemon_workers(17), 2.min(cores));
        assert_eq!(super::daemon_workers(100_000), cores);
    }
}

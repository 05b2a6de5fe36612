//! Command line: `run`, `validate`, `status`, `demo`, `simulate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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
    },
    /// Run the collector against the built-in simulated tenant into ./demo-output.
    Demo {
        #[arg(long, default_value = "demo-output")]
        output: PathBuf,
        /// Records of history the simulated tenant starts with.
        #[arg(long, default_value_t = 30_000)]
        records: u64,
    },
    /// Serve the simulated tenant over HTTPS, e.g. to test a SIEM pipeline.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Validate { config } => validate(&config),
        Cmd::Status { config } => status(&config),
        Cmd::Run { config } => run(&config),
        Cmd::Demo { output, records } => runtime().block_on(crate::demo::run(&output, records)),
        Cmd::Simulate { listen, ca_out, scenario, hostile } => simulate(listen, ca_out, scenario, hostile),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn validate(path: &std::path::Path) -> ExitCode {
    match config::load_settings(path) {
        Ok((s, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let streams: usize = s
                .tenants
                .iter()
                .map(|t| {
                    t.management.as_ref().map_or(0, |m| m.content_types.len())
                        + t.graph.as_ref().map_or(0, |g| g.streams.len())
                })
                .sum();
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

fn status(path: &std::path::Path) -> ExitCode {
    let raw = match config::load(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let settings = match config::validate(&raw) {
        Ok(s) => s,
        Err(issues) => {
            eprintln!("{}", ConfigError::Invalid(issues));
            return ExitCode::from(2);
        }
    };
    match crate::status::render(&settings.state_dir) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read state in {}: {e}", settings.state_dir.display());
            ExitCode::from(1)
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let (settings, warnings) = match config::load_settings(path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init_logging(&settings.log.format, &settings.log.level);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let rt = runtime();
    rt.block_on(async move {
        if let Err(e) = crate::telemetry::init_metrics(settings.metrics_listen) {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
        let daemon = match crate::daemon::Daemon::start(&settings).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::from(1);
            }
        };
        spawn_signal_handler(daemon.shutdown.clone());
        tracing::info!(state_dir = %settings.state_dir.display(), "auditkeeper running");
        daemon.wait().await;
        ExitCode::SUCCESS
    })
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
}

fn simulate(listen: SocketAddr, ca_out: PathBuf, scenario: Option<PathBuf>, hostile: bool) -> ExitCode {
    crate::telemetry::init_logging("text", "info");
    let mut sc = if hostile { crate::simulator::Scenario::hostile() } else { crate::simulator::Scenario::default() };
    if let Some(p) = scenario {
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::from(2);
            }
        };
        sc = match toml_from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::from(2);
            }
        };
    }
    runtime().block_on(async move {
        let sim = match crate::simulator::Simulator::start(sc, listen, &ca_out).await {
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
    })
}

fn toml_from_str(text: &str) -> Result<crate::simulator::Scenario, String> {
    config::from_toml_str(text)
}

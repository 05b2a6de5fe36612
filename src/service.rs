//! `auditkeeper run`: the daemon as a service. Loads and checks the config, starts the daemon
//! and its telemetry endpoints, tells systemd when it is ready, and turns signals into a stop
//! (SIGTERM, SIGINT) or a reload (SIGHUP).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config;

pub fn run(path: &std::path::Path) -> ExitCode {
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
    let rt = crate::cli::daemon_runtime(settings.tenants.len());
    rt.block_on(async move {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        tracing::debug!(workers, tenants = settings.tenants.len(), "async workers");
        // Counters count from the start, whether or not anyone scrapes them.
        if let Err(e) = crate::telemetry::server::install_recorder() {
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
        if let Some(t) = settings.telemetry {
            match crate::telemetry::server::serve(t.listen, daemon.health.clone()).await {
                Ok(addr) => tracing::info!(%addr, "serving /metrics, /healthz and /readyz"),
                Err(e) => {
                    tracing::error!("{e}");
                    let _ = daemon.stop().await;
                    return ExitCode::from(1);
                }
            }
        }
        // READY=1 now: the config is valid, the store open, sources and forwarders started.
        tokio::spawn(crate::health::notify_systemd(daemon.health.clone(), daemon.shutdown.stop_token().clone()));
        spawn_signal_handler(daemon.shutdown.clone(), daemon.reloader(), path.to_path_buf());
        tracing::info!(state_dir = %settings.state_dir.display(), "auditkeeper running");
        match daemon.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        }
    })
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP (`systemctl reload`) reads the config again and
/// hands it to the daemon if it is valid, or logs why not and keeps the running one.
fn spawn_signal_handler(
    shutdown: crate::pipeline::shutdown::Shutdown,
    reloader: tokio::sync::mpsc::UnboundedSender<config::Settings>,
    path: PathBuf,
) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); break }
                _ = int.recv() => { tracing::info!("SIGINT received"); break }
                _ = hup.recv() => {
                    tracing::info!(config = %path.display(), "SIGHUP received: reading the configuration again");
                    let p = path.clone();
                    match tokio::task::spawn_blocking(move || config::load_settings(&p)).await {
                        Ok(Ok((settings, warnings))) => {
                            for w in warnings {
                                tracing::warn!("{w}");
                            }
                            let (wanted, workers) = (
                                crate::cli::daemon_workers(settings.tenants.len()),
                                tokio::runtime::Handle::current().metrics().num_workers(),
                            );
                            if wanted > workers && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
                                tracing::warn!(tenants = settings.tenants.len(), workers, wanted,
                                    "the daemon started with fewer async workers than these tenants would get; \
                                     they are all collected, and a restart lets them use more cores");
                            }
                            let _ = reloader.send(settings);
                        }
                        Ok(Err(e)) => crate::telemetry::events::ReloadRefused { error: &e }.emit(),
                        Err(e) => crate::telemetry::events::ReloadRefused { error: &e }.emit(),
                    }
                }
            }
        }
        shutdown.stop();
    });
}

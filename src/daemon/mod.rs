//! Wires a running collector together: store, pipeline, forwarders, each tenant's sources,
//! maintenance, a reload of the tenants (`reload`), and the orderly shutdown (stop polling, let
//! forwarders drain within a timeout).
//!
//! Every task runs until the daemon stops it. One that ends on its own (a panic, a bug) is a
//! fatal failure: it is logged with its result, the daemon shuts down in order, and `wait`
//! returns the failure so the process exits non-zero and the service manager restarts it.

mod reload;
mod tasks;
mod tenant;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use tasks::TaskFailure;

use crate::auth::TenantAuth;
use crate::config::Settings;
use crate::health::DaemonHealth;
use crate::pipeline::shutdown::Shutdown;
use crate::pipeline::{Pipeline, forwarder::Forwarder, maintenance};
use crate::sinks;
use crate::store::lock::StateLock;
use crate::store::{Store, StoreError};
use tasks::Tasks;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Locked(#[from] crate::store::lock::LockError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpSetupError),
    #[error(transparent)]
    Sink(#[from] sinks::SinkBuildError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

/// A started collector. Call `shutdown.stop()` (or `stop`) to end it.
pub struct Daemon {
    pub health: Arc<DaemonHealth>,
    pub shutdown: Shutdown,
    pub pipeline: Arc<Pipeline>,
    shared: tenant::Shared,
    /// The configuration running now; a reload is compared with it.
    settings: Settings,
    tenants: BTreeMap<String, tenant::Running>,
    /// One supervisor task per tenant (`tenant::supervise`).
    supervisors: JoinSet<tenant::Ended>,
    forwarders: Tasks,
    maintenance: Tasks,
    reloads: mpsc::UnboundedReceiver<Settings>,
    reloader: mpsc::UnboundedSender<Settings>,
    /// Released when the daemon is dropped, after the last write.
    _lock: StateLock,
}

impl Daemon {
    pub async fn start(settings: &Settings) -> Result<Daemon, DaemonError> {
        crate::http::install_crypto_provider();
        // Before the database is opened: a second daemon must not touch it at all.
        let lock = StateLock::acquire(&settings.state_dir)?;
        let store = Arc::new(tokio::task::block_in_place(|| Store::open(&settings.state_dir))?);
        let pipeline = Pipeline::new(store.clone(), settings.spool.clone());
        let shutdown = Shutdown::new();

        let names: Vec<String> = settings.sinks.iter().map(|s| s.common.name.clone()).collect();
        let orphans = tokio::task::block_in_place(|| store.ensure_sinks(&names))?;
        for d in orphans {
            tracing::warn!(sink = %d, "sink no longer configured: its offset is kept, so the spool keeps the records it has not received; `auditkeeper forget-sink {d}` releases them");
        }
        let clients = crate::http::clients(&settings.http)?;
        // One credential per tenant: its token cache serves every API audience, and sinks that
        // sign their calls as the tenant's app (Azure Monitor) borrow it.
        let mut ctx = sinks::BuildContext { http: Some(clients.clone()), ..Default::default() };
        for t in &settings.tenants {
            ctx.auth.insert(t.name.clone(), Arc::new(TenantAuth::new(&t.sign_in, clients.clone())));
        }
        let mut forwarders = Tasks::default();
        for s in &settings.sinks {
            let built = sinks::build(s, &ctx)?;
            tracing::info!(sink = %built.name(), "forwarder started");
            let name = format!("forwarder {}", built.name());
            forwarders.spawn(name, Forwarder::new(pipeline.clone(), built).run(shutdown.clone()));
        }

        let shared = tenant::Shared { pipeline: pipeline.clone(), clients, limits: settings.http.body_limits() };
        let mut supervisors = JoinSet::new();
        let mut tenants = BTreeMap::new();
        for t in &settings.tenants {
            let auth = ctx.auth[&t.name].clone();
            let r = tenant::start(&shared, t, auth, shutdown.stop_token(), &mut supervisors).await?;
            tenants.insert(t.name.clone(), r);
        }
        mark_removed(&pipeline, settings).await?;
        tracing::info!(
            tenants = tenants.len(),
            streams = settings.stream_count(),
            sinks = settings.sinks.len(),
            "collector started"
        );
        let t = settings.telemetry;
        let health = Arc::new(DaemonHealth {
            pipeline: pipeline.clone(),
            streams: std::sync::RwLock::new(tenants.values().flat_map(|r| r.expected.clone()).collect()),
            sinks: names.clone(),
            stale_after_polls: t.map_or(3, |t| t.stale_after_polls),
            sink_stale_after: t.map_or(std::time::Duration::from_secs(600), |t| t.sink_stale_after),
            probe: Default::default(),
        });
        let mut maintenance = Tasks::default();
        maintenance.spawn("maintenance".into(), maintenance::run(pipeline.clone(), shutdown.clone()));
        let (reloader, reloads) = mpsc::unbounded_channel();
        Ok(Daemon {
            health,
            shutdown,
            pipeline,
            shared,
            settings: settings.clone(),
            tenants,
            supervisors,
            forwarders,
            maintenance,
            reloads,
            reloader,
            _lock: lock,
        })
    }

    /// Where to send a new, already validated configuration: `wait` applies it (see `reload`).
    pub fn reloader(&self) -> mpsc::UnboundedSender<Settings> {
        self.reloader.clone()
    }

    /// Runs until a stop is asked (or a task fails), applying reloads meanwhile, then stops
    /// polling and drains the forwarders within the timeout. Returns the failure that ended
    /// the daemon, if any.
    pub async fn wait(mut self) -> Result<(), TaskFailure> {
        let mut failure = None;
        while failure.is_none() {
            // A task ending after the stop was asked is expected, whichever branch sees it first.
            tokio::select! {
                biased;
                _ = self.shutdown.stop_token().cancelled() => break,
                Some(r) = self.supervisors.join_next() => failure = self.tenant_ended(r),
                Some(r) = self.forwarders.set.join_next_with_id() => {
                    let expected = self.shutdown.is_stopping();
                    failure = self.forwarders.ended(r, expected);
                }
                Some(r) = self.maintenance.set.join_next_with_id() => {
                    let expected = self.shutdown.is_stopping();
                    failure = self.maintenance.ended(r, expected);
                }
                Some(new) = self.reloads.recv() => failure = self.reload(new).await,
            }
        }
        self.shutdown.stop();
        tracing::info!("shutting down: polling stopped, forwarders draining");
        while let Some(r) = self.supervisors.join_next().await {
            let f = self.tenant_ended(r);
            failure = failure.or(f);
        }
        // What the sources handed over is written before the forwarders drain it.
        self.pipeline.flush().await;
        let timeout = self.settings.shutdown_timeout;
        self.shutdown.begin_drain(timeout);
        let hard = tokio::time::sleep(timeout + std::time::Duration::from_secs(5));
        tokio::pin!(hard);
        loop {
            tokio::select! {
                r = self.forwarders.set.join_next_with_id() => match r {
                    None => break,
                    Some(r) => { let f = self.forwarders.ended(r, true); failure = failure.or(f); }
                },
                _ = &mut hard => {
                    tracing::warn!("forwarders did not finish within the shutdown timeout; undelivered records stay in the spool");
                    self.forwarders.set.abort_all();
                    while self.forwarders.set.join_next().await.is_some() {}
                    break;
                }
            }
        }
        failure = failure.or(self.maintenance.join_all().await);
        let _ = self.pipeline.store.checkpoint_wal();
        match &failure {
            None => tracing::info!("stopped"),
            Some(f) => tracing::error!(error = %f, "stopped after a task failure"),
        }
        failure.map_or(Ok(()), Err)
    }

    /// A tenant's supervisor returned: expected when the tenant was stopped (a reload, or the
    /// daemon's stop), a failure otherwise.
    fn tenant_ended(&mut self, r: Result<tenant::Ended, tokio::task::JoinError>) -> Option<TaskFailure> {
        match r {
            Err(e) => tasks::ended("a tenant's supervisor".into(), Some(tasks::describe(e)), false),
            Ok((name, failure)) => {
                let asked = self.tenants.get(&name).is_none_or(|t| t.stop.is_cancelled());
                match failure {
                    Some(f) => Some(f),
                    None => tasks::ended(format!("tenant {name}"), None, asked),
                }
            }
        }
    }

    pub async fn stop(self) -> Result<(), TaskFailure> {
        self.shutdown.stop();
        self.wait().await
    }
}

/// Marks the streams of tenants no longer configured as `removed` in the store.
async fn mark_removed(pipeline: &Arc<Pipeline>, settings: &Settings) -> Result<(), DaemonError> {
    let names: Vec<String> = settings.tenants.iter().map(|t| t.name.clone()).collect();
    let gone = pipeline.blocking(move |s| s.mark_removed_tenants(&names)).await?;
    for t in gone {
        tracing::warn!(tenant = %t, "tenant no longer configured: its state is kept (status shows it as removed); `auditkeeper forget-tenant {t}` deletes it");
    }
    Ok(())
}

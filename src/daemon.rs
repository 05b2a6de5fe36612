//! Wires a running collector together: store, pipeline, forwarders, sources, maintenance,
//! and the orderly shutdown (stop polling, let forwarders drain within a timeout).
//!
//! Every task runs until the daemon stops it. One that ends on its own (a panic, a bug) is a
//! fatal failure: it is logged with its result, the daemon shuts down in order, and `wait`
//! returns the failure so the process exits non-zero and the service manager restarts it.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::{JoinError, JoinSet};

use crate::auth::{AuthError, TenantAuth};
use crate::config::Settings;
use crate::health::{DaemonHealth, Expected};
use crate::pipeline::shutdown::Shutdown;
use crate::pipeline::{Pipeline, StreamKey, forwarder::Forwarder, maintenance};
use crate::sinks;
use crate::sources::audit_query::{self, AuditQueryClient, AuditQueryStream};
use crate::sources::driver::{self, Pacing};
use crate::sources::graph::config::RECHECK_UNAVAILABLE;
use crate::sources::graph::{GraphClient, GraphStream};
use crate::sources::management::{ManagementClient, ManagementStream};
use crate::store::lock::StateLock;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Locked(#[from] crate::store::lock::LockError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpSetupError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Sink(#[from] sinks::SinkBuildError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

/// Audit (Standard) keeps the unified audit log 180 days.
const AUDIT_LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(180 * 86_400);

/// A task that ended before the daemon asked it to.
#[derive(Debug, thiserror::Error)]
#[error("{task} ended unexpectedly: {how}")]
pub struct TaskFailure {
    pub task: String,
    pub how: String,
}

/// Tasks of one kind, with the name each one is logged under.
#[derive(Default)]
struct Tasks {
    set: JoinSet<()>,
    names: HashMap<tokio::task::Id, String>,
}

impl Tasks {
    fn spawn(&mut self, name: String, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let id = self.set.spawn(f).id();
        self.names.insert(id, name);
    }

    /// Logs the end of a task; returns the failure if it panicked or was not expected to end.
    fn ended(&mut self, r: Result<(tokio::task::Id, ()), JoinError>, expected: bool) -> Option<TaskFailure> {
        let (id, how) = match r {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), Some(describe(e))),
        };
        let task = self.names.remove(&id).unwrap_or_else(|| format!("task {id}"));
        match (how, expected) {
            (None, true) => {
                tracing::debug!(task = %task, "task ended");
                None
            }
            (None, false) => {
                tracing::error!(task = %task, "task ended on its own; shutting down so the service manager restarts the daemon");
                Some(TaskFailure { task, how: "returned".into() })
            }
            (Some(how), _) => {
                tracing::error!(task = %task, error = %how, "task failed; shutting down so the service manager restarts the daemon");
                Some(TaskFailure { task, how })
            }
        }
    }

    /// Waits for every task, logging each; returns the first failure.
    async fn join_all(&mut self) -> Option<TaskFailure> {
        let mut first = None;
        while let Some(r) = self.set.join_next_with_id().await {
            let f = self.ended(r, true);
            first = first.or(f);
        }
        first
    }
}

fn describe(e: JoinError) -> String {
    if e.is_cancelled() {
        return "cancelled".into();
    }
    let p = e.into_panic();
    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
    format!("panicked: {}", msg.unwrap_or_else(|| "(no message)".into()))
}

/// A started collector. Call `shutdown.stop()` (or `stop`) to end it.
pub struct Daemon {
    pub health: Arc<DaemonHealth>,
    pub shutdown: Shutdown,
    pub pipeline: Arc<Pipeline>,
    sources: Tasks,
    forwarders: Tasks,
    maintenance: Tasks,
    shutdown_timeout: std::time::Duration,
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
        let http = clients.api.clone();
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

        let mut sources = Tasks::default();
        let mut expected = Vec::new();
        for t in &settings.tenants {
            let auth = ctx.auth[&t.name].clone();
            if let Some(m) = &t.management {
                let client = Arc::new(ManagementClient::new(
                    http.clone(),
                    auth.clone(),
                    &t.endpoints.management,
                    &t.endpoints.management_resource,
                    &t.tenant_id,
                    &t.publisher_identifier,
                    m.requests_per_minute,
                    m.fetch_concurrency,
                    settings.http.body_limits(),
                ));
                let pacing = Pacing::new(m.poll_interval, RECHECK_UNAVAILABLE);
                for ct in &m.content_types {
                    let key = StreamKey::new(&t.name, "management", ct);
                    let handle = pipeline.stream(key, crate::sources::management::protocol::RETENTION).await?;
                    expected.push(Expected { stream: handle.key.id.clone(), poll_interval: m.poll_interval });
                    let s = ManagementStream::new(client.clone(), handle.clone(), ct.clone(), m.clone());
                    let name = format!("stream {}", handle.key.id);
                    sources.spawn(name, driver::run(s, handle, pacing, shutdown.stop_token().clone()));
                }
            }
            if let Some(g) = &t.graph {
                let client = Arc::new(GraphClient::new(
                    http.clone(),
                    auth.clone(),
                    &t.endpoints.graph,
                    &t.endpoints.arm,
                    g.reports_requests_per_10s,
                    settings.http.body_limits(),
                ));
                for (spec, st, subscription) in &g.streams {
                    let name = match subscription {
                        Some(sub) => format!("{}-{sub}", spec.name),
                        None => spec.name.to_string(),
                    };
                    let handle =
                        pipeline.stream(StreamKey::new(&t.name, "graph", &name), spec.guaranteed_retention()).await?;
                    expected.push(Expected { stream: handle.key.id.clone(), poll_interval: st.poll_interval });
                    let s = GraphStream {
                        client: client.clone(),
                        handle: handle.clone(),
                        spec,
                        settings: st.clone(),
                        subscription: subscription.clone(),
                        rejected_cycles: 0,
                    };
                    let pacing = Pacing::new(st.poll_interval, st.recheck_unavailable);
                    let name = format!("stream {}", handle.key.id);
                    sources.spawn(name, driver::run(s, handle, pacing, shutdown.stop_token().clone()));
                }
            }
        }
        for t in &settings.tenants {
            let Some(a) = &t.audit_query else { continue };
            let client = Arc::new(AuditQueryClient::new(
                http.clone(),
                ctx.auth[&t.name].clone(),
                &t.endpoints.graph,
                a.api_version,
                a.requests_per_second,
                settings.http.body_limits(),
            ));
            let key = StreamKey::new(&t.name, audit_query::SOURCE, audit_query::NAME);
            let handle = pipeline.stream(key, AUDIT_LOG_RETENTION).await?;
            // Not in `expected`: a backfill waiting hours on Microsoft is no reason to be unready.
            let pacing = Pacing::new(a.poll_interval, RECHECK_UNAVAILABLE);
            let s = AuditQueryStream::new(client, handle.clone(), a.clone());
            let name = format!("stream {}", handle.key.id);
            sources.spawn(name, driver::run(s, handle, pacing, shutdown.stop_token().clone()));
        }
        tracing::info!(streams = sources.set.len(), sinks = settings.sinks.len(), "collector started");
        let t = settings.telemetry;
        let health = Arc::new(DaemonHealth {
            pipeline: pipeline.clone(),
            streams: expected,
            sinks: names.clone(),
            stale_after_polls: t.map_or(3, |t| t.stale_after_polls),
            sink_stale_after: t.map_or(std::time::Duration::from_secs(600), |t| t.sink_stale_after),
            probe: Default::default(),
        });
        let mut maintenance = Tasks::default();
        maintenance.spawn("maintenance".into(), maintenance::run(pipeline.clone(), shutdown.clone()));
        Ok(Daemon {
            health,
            shutdown,
            pipeline,
            sources,
            forwarders,
            maintenance,
            shutdown_timeout: settings.shutdown_timeout,
            _lock: lock,
        })
    }

    /// Runs until a stop is asked (or a task fails), then stops polling and drains the
    /// forwarders within the timeout. Returns the failure that ended the daemon, if any.
    pub async fn wait(mut self) -> Result<(), TaskFailure> {
        // A task ending after the stop was asked is expected, whichever branch sees it first.
        let mut failure = tokio::select! {
            biased;
            _ = self.shutdown.stop_token().cancelled() => None,
            Some(r) = self.sources.set.join_next_with_id() => {
                let expected = self.shutdown.is_stopping();
                self.sources.ended(r, expected)
            }
            Some(r) = self.forwarders.set.join_next_with_id() => {
                let expected = self.shutdown.is_stopping();
                self.forwarders.ended(r, expected)
            }
            Some(r) = self.maintenance.set.join_next_with_id() => {
                let expected = self.shutdown.is_stopping();
                self.maintenance.ended(r, expected)
            }
        };
        self.shutdown.stop();
        tracing::info!("shutting down: polling stopped, forwarders draining");
        failure = failure.or(self.sources.join_all().await);
        // What the sources handed over is written before the forwarders drain it.
        self.pipeline.flush().await;
        self.shutdown.begin_drain(self.shutdown_timeout);
        let hard = tokio::time::sleep(self.shutdown_timeout + std::time::Duration::from_secs(5));
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

    pub async fn stop(self) -> Result<(), TaskFailure> {
        self.shutdown.stop();
        self.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_on_its_own_is_a_failure_named_after_it() {
        let mut t = Tasks::default();
        t.spawn("stream t/graph/x".into(), async { panic!("boom") });
        let r = t.set.join_next_with_id().await.unwrap();
        let f = t.ended(r, false).expect("a panic is a failure");
        assert_eq!((f.task.as_str(), f.how.as_str()), ("stream t/graph/x", "panicked: boom"));
        t.spawn("forwarder s".into(), async {});
        let r = t.set.join_next_with_id().await.unwrap();
        let f = t.ended(r, false).expect("an early return is a failure");
        assert_eq!(f.to_string(), "forwarder s ended unexpectedly: returned");
        t.spawn("forwarder s".into(), async {});
        let r = t.set.join_next_with_id().await.unwrap();
        assert!(t.ended(r, true).is_none(), "an asked-for end is not");
        t.spawn("maintenance".into(), async { panic!("{}", String::from("disk")) });
        assert_eq!(t.join_all().await.map(|f| f.how), Some("panicked: disk".into()));
    }
}

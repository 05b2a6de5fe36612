//! Wires a running collector together: store, pipeline, forwarders, sources, maintenance,
//! and the orderly shutdown (stop polling, let forwarders drain within a timeout).

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, TenantAuth};
use crate::config::Settings;
use crate::pipeline::{Pipeline, StreamKey, forwarder::Forwarder, maintenance};
use crate::sinks;
use crate::sources::graph::{GraphClient, GraphStream};
use crate::sources::management::{ManagementClient, ManagementStream};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpSetupError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Sink(#[from] sinks::SinkBuildError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

/// A started collector. Cancel `shutdown` (or call `stop`) to end it.
pub struct Daemon {
    pub shutdown: CancellationToken,
    pub pipeline: Arc<Pipeline>,
    sources: JoinSet<()>,
    forwarders: JoinSet<()>,
    maintenance: tokio::task::JoinHandle<()>,
    drain: CancellationToken,
    deadline: Arc<std::sync::Mutex<Option<Instant>>>,
    shutdown_timeout: std::time::Duration,
}

impl Daemon {
    pub async fn start(settings: &Settings) -> Result<Daemon, DaemonError> {
        crate::http::install_crypto_provider();
        let store = Arc::new(tokio::task::block_in_place(|| Store::open(&settings.state_dir))?);
        let pipeline = Pipeline::new(store.clone(), settings.spool.clone());
        let shutdown = CancellationToken::new();
        let drain = CancellationToken::new();
        let deadline = Arc::new(std::sync::Mutex::new(None));

        let names: Vec<String> = settings.sinks.iter().map(|s| s.name().to_string()).collect();
        let dropped = tokio::task::block_in_place(|| store.ensure_sinks(&names))?;
        for d in dropped {
            tracing::warn!(sink = %d, "sink no longer configured: its delivery offset was removed");
        }
        let http = crate::http::client(&settings.http)?;
        // One credential per tenant: its token cache serves every API audience, and sinks that
        // sign their calls as the tenant's app (Azure Monitor) borrow it.
        let mut ctx = sinks::BuildContext { http: Some(http.clone()), ..Default::default() };
        for t in &settings.tenants {
            ctx.auth.insert(t.name.clone(), Arc::new(TenantAuth::new(t, http.clone())?));
        }
        let mut forwarders = JoinSet::new();
        for s in &settings.sinks {
            let built = sinks::build(s, &ctx)?;
            tracing::info!(sink = %built.name(), "forwarder started");
            forwarders.spawn(Forwarder::new(pipeline.clone(), built).run(drain.clone(), deadline.clone()));
        }

        let mut sources = JoinSet::new();
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
                ));
                for ct in &m.content_types {
                    let handle = pipeline.stream(StreamKey::new(&t.name, "management", ct)).await?;
                    let s = ManagementStream::new(client.clone(), handle, ct.clone(), m.clone());
                    sources.spawn(s.run(shutdown.clone()));
                }
            }
            if let Some(g) = &t.graph {
                let client = Arc::new(GraphClient::new(
                    http.clone(),
                    auth.clone(),
                    &t.endpoints.graph,
                    &t.endpoints.arm,
                    g.reports_requests_per_10s,
                ));
                for (spec, st, subscription) in &g.streams {
                    let name = match subscription {
                        Some(sub) => format!("{}-{sub}", spec.name),
                        None => spec.name.to_string(),
                    };
                    let handle = pipeline.stream(StreamKey::new(&t.name, "graph", &name)).await?;
                    let s = GraphStream {
                        client: client.clone(),
                        handle,
                        spec,
                        settings: st.clone(),
                        subscription: subscription.clone(),
                    };
                    sources.spawn(s.run(shutdown.clone()));
                }
            }
        }
        tracing::info!(streams = sources.len(), sinks = settings.sinks.len(), "collector started");
        let maintenance = tokio::spawn(maintenance::run(pipeline.clone(), drain.clone()));
        Ok(Daemon {
            shutdown,
            pipeline,
            sources,
            forwarders,
            maintenance,
            drain,
            deadline,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    /// Waits for `shutdown`, then stops polling and drains the forwarders within the timeout.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        tracing::info!("shutting down: polling stopped, forwarders draining");
        while self.sources.join_next().await.is_some() {}
        *self.deadline.lock().expect("deadline") = Some(Instant::now() + self.shutdown_timeout);
        self.drain.cancel();
        let hard = tokio::time::sleep(self.shutdown_timeout + std::time::Duration::from_secs(5));
        tokio::pin!(hard);
        loop {
            tokio::select! {
                r = self.forwarders.join_next() => if r.is_none() { break },
                _ = &mut hard => {
                    tracing::warn!("forwarders did not finish within the shutdown timeout; undelivered records stay in the spool");
                    self.forwarders.abort_all();
                    break;
                }
            }
        }
        let _ = self.maintenance.await;
        let _ = self.pipeline.store.checkpoint_wal();
        tracing::info!("stopped");
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

//! The telemetry listener: `/metrics` (Prometheus text), `/healthz` (the process is alive: the
//! runtime answers and the store can be written) and `/readyz` (collecting as it should: every
//! stream recent, polling not paused, every sink delivering). A non-2xx body names what is wrong.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// What the endpoints ask the daemon.
#[async_trait::async_trait]
pub trait Health: Send + Sync {
    /// Liveness: `Err` says why the process should be restarted.
    async fn alive(&self) -> Result<(), NotAlive>;
    /// Readiness: every reason the collector is not collecting as it should.
    async fn ready(&self) -> Result<(), NotReady>;
}

/// Why the process should be restarted; the daemon's own error, carried as is.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct NotAlive(pub Box<dyn std::error::Error + Send + Sync>);

/// Every reason, one sentence each, the collector is not collecting as it should.
#[derive(Debug, thiserror::Error)]
#[error("not ready: {}", .0.join("; "))]
pub struct NotReady(pub Vec<String>);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(#[from] metrics_exporter_prometheus::BuildError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Installs the process-wide metrics recorder (once) and returns its handle.
pub fn install_recorder() -> Result<PrometheusHandle, ServerError> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let h = PrometheusBuilder::new().install_recorder()?;
    super::metrics::describe();
    Ok(HANDLE.get_or_init(|| h).clone())
}

#[derive(Clone)]
struct Ctx {
    metrics: PrometheusHandle,
    health: Arc<dyn Health>,
}

/// Serves the endpoints on `listen` until the process ends.
pub async fn serve(listen: SocketAddr, health: Arc<dyn Health>) -> Result<SocketAddr, ServerError> {
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "telemetry listens beyond loopback: anyone who reaches it sees stream names, tenants and error texts");
    }
    let ctx = Ctx { metrics: install_recorder()?, health };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ctx);
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| ServerError::Bind { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: listen, source })?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "telemetry listener stopped");
        }
    });
    Ok(addr)
}

async fn metrics(State(c): State<Ctx>) -> impl IntoResponse {
    c.metrics.run_upkeep();
    ([("content-type", "text/plain; version=0.0.4")], c.metrics.render())
}

async fn healthz(State(c): State<Ctx>) -> impl IntoResponse {
    match c.health.alive().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not healthy: {why}\n")),
    }
}

async fn readyz(State(c): State<Ctx>) -> impl IntoResponse {
    match c.health.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(NotReady(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", why.iter().map(|w| format!("- {w}")).collect::<Vec<_>>().join("\n")),
        ),
    }
}

//! Logging (text or JSON via `tracing`) and the optional Prometheus `/metrics` endpoint.

use std::net::SocketAddr;

pub fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITKEEPER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" { b.json().try_init() } else { b.try_init() };
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start metrics endpoint on {addr}: {source}")]
pub struct MetricsError {
    addr: SocketAddr,
    #[source]
    source: metrics_exporter_prometheus::BuildError,
}

pub fn init_metrics(listen: Option<SocketAddr>) -> Result<(), MetricsError> {
    let Some(addr) = listen else { return Ok(()) };
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|source| MetricsError { addr, source })
}

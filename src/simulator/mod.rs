//! The simulated Microsoft tenant: an HTTPS server that behaves like the token endpoint and the
//! Management Activity API, quirks included, with records generated deterministically from a
//! seed and a ground truth that tests compare deliveries against.
//!
//! Used by `auditkeeper demo`, `auditkeeper simulate --listen ADDR`, the tests and the benchmark.

mod assertion;
pub mod audit_log;
mod audit_log_routes;
pub mod graph;
mod graph_routes;
pub mod hostile;
pub mod records;
pub mod routes;
pub mod scenario;
pub mod tenant;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use scenario::Scenario;
pub use tenant::{Stats, Tenant, Truth};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("certificate generation failed: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write CA file {path}: {source}")]
    WriteCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Simulator {
    pub addr: SocketAddr,
    pub tenant: Arc<Tenant>,
    pub ca_file: PathBuf,
    handle: axum_server::Handle<SocketAddr>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Starts serving HTTPS on `listen` (port 0 picks one) and writes the CA to `ca_file`.
    pub async fn start(scenario: Scenario, listen: SocketAddr, ca_file: &Path) -> Result<Simulator, SimError> {
        crate::http::install_crypto_provider();
        let tls = tls::generate().map_err(|e| SimError::Tls(e.to_string()))?;
        std::fs::write(ca_file, &tls.ca_pem)
            .map_err(|source| SimError::WriteCa { path: ca_file.to_path_buf(), source })?;
        let config =
            axum_server::tls_rustls::RustlsConfig::from_pem(tls.cert_pem.into_bytes(), tls.key_pem.into_bytes())
                .await
                .map_err(|e| SimError::Tls(e.to_string()))?;
        let tenant = Arc::new(Tenant::new(scenario));
        let listener = std::net::TcpListener::bind(listen).map_err(|source| SimError::Bind { addr: listen, source })?;
        listener.set_nonblocking(true).map_err(|source| SimError::Bind { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind { addr: listen, source })?;
        let handle = axum_server::Handle::new();
        let app = routes::router(tenant.clone());
        let server = axum_server::from_tcp_rustls(listener, config)
            .map_err(|source| SimError::Bind { addr: listen, source })?
            .handle(handle.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "simulator server stopped");
            }
        });
        let t = tenant.clone();
        let ticker = tokio::spawn(async move {
            let mut last = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = std::time::Instant::now();
                t.tick(now - last);
                last = now;
            }
        });
        Ok(Simulator { addr, tenant, ca_file: ca_file.to_path_buf(), handle, ticker })
    }

    /// Base URL to use as every endpoint override (authority, management).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn shutdown(&self) {
        self.ticker.abort();
        self.handle.shutdown();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

//! The one HTTP client for every Microsoft call, carrying the operator's extra CA if any.
//!
//! The same client is handed to `azure_identity` as its transport, so token requests trust the
//! same CA (TLS-inspecting proxies, the simulator) as the API calls.

use std::time::Duration;

use crate::config::validate::HttpSettings;

#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("http.ca_file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("cannot build HTTP client: {0}")]
    Build(String),
}

pub fn client(settings: &HttpSettings) -> Result<reqwest::Client, HttpSetupError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("auditkeeper/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout)
        .connect_timeout(Duration::from_secs(20))
        .pool_idle_timeout(Duration::from_secs(60))
        .gzip(true);
    if let Some(ca) = &settings.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| HttpSetupError::Ca { path: ca.display().to_string(), message: e.to_string() })?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| HttpSetupError::Ca { path: ca.display().to_string(), message: e.to_string() })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| HttpSetupError::Build(e.to_string()))
}

/// Installs the process-wide rustls crypto provider once; several crates in the tree enable
/// different providers, and rustls refuses to guess.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// An error and its causes on one line ("error sending request" alone says nothing).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

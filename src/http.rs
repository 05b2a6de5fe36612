//! The one HTTP client for every Microsoft call, carrying the operator's extra CA if any.
//!
//! The same client is handed to `azure_identity` as its transport, so token requests trust the
//! same CA (TLS-inspecting proxies, the simulator) as the API calls.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::common::Issues;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Extra CA certificate (PEM) trusted for every Microsoft call: TLS-inspecting proxies, the simulator.
    pub ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Largest content blob accepted, once decoded (a blob over it is refused and counted).
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_blob_bytes: Option<u64>,
    /// Largest other response accepted, once decoded.
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_response_bytes: Option<u64>,
    /// Largest decoded-to-compressed ratio accepted for a gzip body (a compression bomb).
    pub max_gzip_ratio: Option<u64>,
    /// Most pages one listing window may take before it stops with an error (a looping link).
    pub max_pages_per_window: Option<u32>,
    /// Forward proxy for every Microsoft call and token request, e.g. `http://proxy:3128`.
    /// Without it, `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` from the environment apply.
    pub proxy: Option<String>,
    /// `user:password` for the proxy (basic auth), in a file readable by the daemon only.
    pub proxy_credentials_file: Option<PathBuf>,
    /// Hosts reached without the configured proxy (as `NO_PROXY`: `.contoso.com,10.0.0.0/8`).
    pub no_proxy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub max_blob_bytes: u64,
    pub max_response_bytes: u64,
    pub max_gzip_ratio: u64,
    pub max_pages_per_window: u32,
    pub proxy: Option<ProxySettings>,
}

pub use crate::common::proxy::ProxySettings;

pub fn validate(is: &mut Issues, raw: &HttpConfig) -> HttpSettings {
    let timeout = raw.timeout.unwrap_or(Duration::from_secs(120));
    if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(3600) {
        is.add("http.timeout", "must be between 1s and 1h");
    }
    let s = HttpSettings {
        ca_file: raw.ca_file.clone(),
        timeout,
        max_blob_bytes: raw.max_blob_bytes.unwrap_or(512 << 20),
        max_response_bytes: raw.max_response_bytes.unwrap_or(64 << 20),
        max_gzip_ratio: raw.max_gzip_ratio.unwrap_or(100),
        max_pages_per_window: raw.max_pages_per_window.unwrap_or(crate::sources::window::MAX_PAGES),
        proxy: proxy(is, raw),
    };
    for (key, v) in [("http.max_blob_bytes", s.max_blob_bytes), ("http.max_response_bytes", s.max_response_bytes)] {
        if !((1 << 20)..=(16 << 30)).contains(&v) {
            is.add(key, "must be between 1MiB and 16GiB");
        }
    }
    if !(10..=100_000).contains(&s.max_gzip_ratio) {
        is.add("http.max_gzip_ratio", "must be between 10 and 100000 (audit JSON compresses about 10:1)");
    }
    if !(10..=10_000_000).contains(&s.max_pages_per_window) {
        is.add("http.max_pages_per_window", "must be between 10 and 10000000");
    }
    s
}

fn proxy(is: &mut Issues, raw: &HttpConfig) -> Option<ProxySettings> {
    crate::common::proxy::validate(is, "http", &raw.proxy, &raw.proxy_credentials_file, &raw.no_proxy)
}

impl HttpSettings {
    pub fn body_limits(&self) -> crate::sources::boundary::BodyLimits {
        crate::sources::boundary::BodyLimits::new(
            self.max_response_bytes,
            self.max_blob_bytes,
            self.max_gzip_ratio,
            self.max_pages_per_window,
        )
    }
}

impl HttpSettings {
    /// The environment check: the extra CA parses, the proxy credentials are readable.
    pub fn check(&self, is: &mut Issues) {
        if let Some(p) = &self.proxy {
            p.check(is, "http");
        }
        if let Some(ca) = &self.ca_file {
            match std::fs::read(ca) {
                Err(e) => is.add("http.ca_file", format!("cannot read {}: {e}", ca.display())),
                Ok(b)
                    if reqwest::Certificate::from_pem_bundle(&b).is_ok_and(|c| !c.is_empty())
                        && b.starts_with(b"-----BEGIN") => {}
                Ok(_) => is.add("http.ca_file", format!("{} is not a PEM certificate (or bundle)", ca.display())),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("http.ca_file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("cannot build HTTP client: {0}")]
    Build(String),
    #[error("http.proxy: {0}")]
    Proxy(#[from] crate::common::proxy::ProxyError),
}

/// The clients the daemon talks to Microsoft with.
#[derive(Clone)]
pub struct Clients {
    /// Every API call and token request: through the configured or environment proxy.
    pub api: reqwest::Client,
    /// The managed identity endpoint (IMDS at 169.254.169.254, or the App Service / Arc one
    /// on localhost): a link-local or local address that no proxy can reach, so never proxied.
    /// Built on first use: each client loads and parses the system's CA certificates, a few
    /// milliseconds of CPU that a daemon without a managed identity need not spend.
    identity: std::sync::Arc<(HttpSettings, std::sync::OnceLock<reqwest::Client>)>,
}

impl Clients {
    /// The client for the managed identity endpoint (see the field).
    pub fn identity(&self) -> Result<reqwest::Client, HttpSetupError> {
        let (settings, client) = &*self.identity;
        if let Some(c) = client.get() {
            return Ok(c.clone());
        }
        let built = builder(settings)?.no_proxy().build().map_err(|e| HttpSetupError::Build(e.to_string()))?;
        // Two first uses at once may both build; either client serves.
        Ok(client.get_or_init(|| built).clone())
    }
}

pub fn clients(settings: &HttpSettings) -> Result<Clients, HttpSetupError> {
    Ok(Clients {
        api: client(settings)?,
        identity: std::sync::Arc::new((settings.clone(), std::sync::OnceLock::new())),
    })
}

/// What every client shares: user agent, timeouts, the extra CA, no redirects, no inflating.
fn builder(settings: &HttpSettings) -> Result<reqwest::ClientBuilder, HttpSetupError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("auditkeeper/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout)
        .connect_timeout(Duration::from_secs(20))
        .pool_idle_timeout(Duration::from_secs(60))
        // API bodies are decoded by `sources::caller` under a size and ratio cap; the client
        // must not inflate them unbounded first.
        .no_gzip()
        // Every link Microsoft returns is checked against the configured endpoint before the
        // token goes out; a redirect would bypass that check.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &settings.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| HttpSetupError::Ca { path: ca.display().to_string(), message: e.to_string() })?;
        // A bundle: a TLS-inspecting proxy's chain, or several simulated tenants.
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| HttpSetupError::Ca { path: ca.display().to_string(), message: e.to_string() })?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b)
}

pub fn client(settings: &HttpSettings) -> Result<reqwest::Client, HttpSetupError> {
    let mut b = builder(settings)?;
    if let Some(p) = &settings.proxy {
        b = p.apply(b)?;
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

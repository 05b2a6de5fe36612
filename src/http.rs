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

#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub url: String,
    /// Read when the client is built; never kept in the settings.
    pub credentials_file: Option<PathBuf>,
    pub no_proxy: Option<String>,
}

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
    let Some(url) = &raw.proxy else {
        for (k, set) in
            [("proxy_credentials_file", raw.proxy_credentials_file.is_some()), ("no_proxy", raw.no_proxy.is_some())]
        {
            if set {
                is.add(format!("http.{k}"), "only applies with http.proxy");
            }
        }
        return None;
    };
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() => {
            is.add("http.proxy", format!("{url:?} must be an http:// or https:// URL of the proxy"));
        }
        // Never a password in the config file (it is shown by errors and read by many).
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            is.add("http.proxy", "must not carry credentials; put user:password in http.proxy_credentials_file");
        }
        Ok(_) => {}
        Err(e) => is.add("http.proxy", format!("is not a URL: {e}")),
    }
    Some(ProxySettings {
        url: url.clone(),
        credentials_file: raw.proxy_credentials_file.clone(),
        no_proxy: raw.no_proxy.clone(),
    })
}

/// `user:password` from the credentials file; the error names the file, never its content.
fn proxy_credentials(path: &std::path::Path) -> Result<(String, String), HttpSetupError> {
    let err = |message: String| HttpSetupError::Proxy { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let line = text.trim_end_matches(['\r', '\n']);
    match line.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(err("must hold user:password on one line".into())),
    }
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
        if let Some(f) = self.proxy.as_ref().and_then(|p| p.credentials_file.as_ref())
            && let Err(e) = proxy_credentials(f)
        {
            is.add("http.proxy_credentials_file", e.to_string());
        }
        if let Some(ca) = &self.ca_file {
            match std::fs::read(ca) {
                Err(e) => is.add("http.ca_file", format!("cannot read {}: {e}", ca.display())),
                Ok(b) if reqwest::Certificate::from_pem(&b).is_err() || !b.starts_with(b"-----BEGIN") => {
                    is.add("http.ca_file", format!("{} is not a PEM certificate", ca.display()))
                }
                Ok(_) => {}
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
    #[error("http.proxy_credentials_file {path}: {message}")]
    Proxy { path: String, message: String },
}

/// The clients the daemon talks to Microsoft with.
#[derive(Clone)]
pub struct Clients {
    /// Every API call and token request: through the configured or environment proxy.
    pub api: reqwest::Client,
    /// The managed identity endpoint (IMDS at 169.254.169.254, or the App Service / Arc one
    /// on localhost): a link-local or local address that no proxy can reach, so never proxied.
    pub identity: reqwest::Client,
}

pub fn clients(settings: &HttpSettings) -> Result<Clients, HttpSetupError> {
    Ok(Clients {
        api: client(settings)?,
        identity: builder(settings)?.no_proxy().build().map_err(|e| HttpSetupError::Build(e.to_string()))?,
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
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| HttpSetupError::Ca { path: ca.display().to_string(), message: e.to_string() })?;
        b = b.add_root_certificate(cert);
    }
    Ok(b)
}

pub fn client(settings: &HttpSettings) -> Result<reqwest::Client, HttpSetupError> {
    let mut b = builder(settings)?;
    if let Some(p) = &settings.proxy {
        let mut proxy = reqwest::Proxy::all(&p.url).map_err(|e| HttpSetupError::Build(format!("http.proxy: {e}")))?;
        if let Some(f) = &p.credentials_file {
            let (user, password) = proxy_credentials(f)?;
            proxy = proxy.basic_auth(&user, &password);
        }
        proxy = proxy.no_proxy(p.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string));
        b = b.proxy(proxy);
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

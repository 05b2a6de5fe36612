//! A forward proxy for outbound HTTP(S): where it is, the file holding its credentials, and the
//! hosts reached around it. Used by `[http]` (every Microsoft call) and by each HTTP sink.
//!
//! A password never goes in the URL (the config file is read by many, and URLs end up in
//! errors): it comes from a file, read when the client is built; an error names the file only.

use std::path::{Path, PathBuf};

use super::Issues;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub url: String,
    /// `user:password` on one line.
    pub credentials_file: Option<PathBuf>,
    /// `NO_PROXY` syntax: `.contoso.com,10.0.0.0/8`.
    pub no_proxy: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy credentials file {path}: {message}")]
    Credentials { path: String, message: String },
    #[error("proxy URL: {0}")]
    Url(String),
}

/// Checks the proxy keys of the table `prefix`; `None` when no proxy is set (and then the
/// other keys are errors).
pub fn validate(
    is: &mut Issues,
    prefix: &str,
    url: &Option<String>,
    credentials_file: &Option<PathBuf>,
    no_proxy: &Option<String>,
) -> Option<ProxySettings> {
    let Some(url) = url else {
        for (k, set) in [("proxy_credentials_file", credentials_file.is_some()), ("no_proxy", no_proxy.is_some())] {
            if set {
                is.add(format!("{prefix}.{k}"), format!("only applies with {prefix}.proxy"));
            }
        }
        return None;
    };
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() => {
            is.add(format!("{prefix}.proxy"), format!("{url:?} must be an http:// or https:// URL of the proxy"));
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            is.add(
                format!("{prefix}.proxy"),
                format!("must not carry credentials; put user:password in {prefix}.proxy_credentials_file"),
            );
        }
        Ok(_) => {}
        Err(e) => is.add(format!("{prefix}.proxy"), format!("is not a URL: {e}")),
    }
    Some(ProxySettings { url: url.clone(), credentials_file: credentials_file.clone(), no_proxy: no_proxy.clone() })
}

/// `user:password` from the credentials file; the error names the file, never its content.
pub fn credentials(path: &Path) -> Result<(String, String), ProxyError> {
    let err = |message: String| ProxyError::Credentials { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let line = text.trim_end_matches(['\r', '\n']);
    match line.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(err("must hold user:password on one line".into())),
    }
}

impl ProxySettings {
    /// The environment check: the credentials file is there and well formed.
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        if let Some(f) = &self.credentials_file
            && let Err(e) = credentials(f)
        {
            is.add(format!("{prefix}.proxy_credentials_file"), e.to_string());
        }
    }

    /// Sends every request of `b` through this proxy.
    pub fn apply(&self, b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, ProxyError> {
        let mut proxy = reqwest::Proxy::all(&self.url).map_err(|e| ProxyError::Url(e.to_string()))?;
        if let Some(f) = &self.credentials_file {
            let (user, password) = credentials(f)?;
            proxy = proxy.basic_auth(&user, &password);
        }
        proxy = proxy.no_proxy(self.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string));
        Ok(b.proxy(proxy))
    }
}

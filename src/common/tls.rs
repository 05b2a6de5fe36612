//! TLS client settings a sink may carry: an extra CA and a client certificate (mTLS). The
//! files are read and checked at `validate` and at start, so a bad file stops the daemon
//! before it starts rather than failing at the first send.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Issues;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientSettings {
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and its private key, both PEM.
    pub identity: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ca_file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("client_cert_file {path}: {message}")]
    Cert { path: String, message: String },
    #[error("client_key_file {path}: {message}")]
    Key { path: String, message: String },
    #[error("client certificate and key do not go together: {0}")]
    Identity(String),
}

impl TlsError {
    /// The config key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Ca { .. } => "ca_file",
            TlsError::Cert { .. } | TlsError::Identity(_) => "client_cert_file",
            TlsError::Key { .. } => "client_key_file",
        }
    }
}

impl TlsClientSettings {
    pub fn from_keys(
        is: &mut Issues,
        prefix: &str,
        ca_file: &Option<PathBuf>,
        cert: &Option<PathBuf>,
        key: &Option<PathBuf>,
    ) -> TlsClientSettings {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                is.add(format!("{prefix}.client_cert_file"), "client_cert_file and client_key_file go together");
                None
            }
        };
        TlsClientSettings { ca_file: ca_file.clone(), identity }
    }

    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.identity.is_some()
    }

    /// The environment check: every file parses, and a key readable by everyone draws a warning.
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        if let Err(e) = self.rustls_config() {
            is.add(format!("{prefix}.{}", e.key()), e.to_string());
        }
        if let Some((_, key)) = &self.identity {
            super::secret::warn_if_world_readable(is, &format!("{prefix}.client_key_file"), key);
        }
    }

    fn ca_certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let Some(ca) = &self.ca_file else { return Ok(Vec::new()) };
        let err = |message: String| TlsError::Ca { path: ca.display().to_string(), message };
        let certs: Vec<_> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in it".into()));
        }
        Ok(certs)
    }

    fn client_identity(&self) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        let Some((cert, key)) = &self.identity else { return Ok(None) };
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| TlsError::Cert { path: cert.display().to_string(), message: e.to_string() })?;
        if chain.is_empty() {
            return Err(TlsError::Cert { path: cert.display().to_string(), message: "no certificate in it".into() });
        }
        let k = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError::Key { path: key.display().to_string(), message: e.to_string() })?;
        Ok(Some((chain, k)))
    }

    /// A rustls client configuration: the system's roots plus `ca_file`, and the client
    /// certificate if any.
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        for c in self.ca_certs()? {
            roots.add(c).map_err(|e| TlsError::Ca {
                path: self.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                message: e.to_string(),
            })?;
        }
        // An explicit provider, so this works before (or without) a process-wide default.
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Identity(e.to_string()))?
            .with_root_certificates(roots);
        match self.client_identity()? {
            None => Ok(b.with_no_client_auth()),
            Some((chain, key)) => b.with_client_auth_cert(chain, key).map_err(|e| TlsError::Identity(e.to_string())),
        }
    }

    /// The same settings applied to a reqwest client.
    pub fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, TlsError> {
        for c in self.ca_certs()? {
            b = b.add_root_certificate(reqwest::Certificate::from_der(&c).map_err(|e| TlsError::Ca {
                path: self.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                message: e.to_string(),
            })?);
        }
        if let Some((cert, key)) = &self.identity {
            // Checked through rustls first, so a mismatch names the file.
            self.client_identity()?;
            let read = |p: &PathBuf| std::fs::read(p);
            let mut pem =
                read(cert).map_err(|e| TlsError::Cert { path: cert.display().to_string(), message: e.to_string() })?;
            pem.push(b'\n');
            pem.extend(
                read(key).map_err(|e| TlsError::Key { path: key.display().to_string(), message: e.to_string() })?,
            );
            b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| TlsError::Identity(e.to_string()))?);
        }
        Ok(b)
    }
}

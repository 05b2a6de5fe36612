//! Credentials and access tokens per tenant, through `azure_identity`.
//!
//! One credential per tenant serves every audience (Management API, Graph, ARM): the scope picks
//! the audience. Secrets are loaded here and never appear in a log line, error or status.

use std::sync::{Arc, RwLock};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};

pub mod certificate;

use crate::common::{Issues, SecretError, SecretSource};

/// How a tenant's app proves who it is: what its secret holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Secret,
    /// A PEM with the certificate registered on the app and its RSA private key; the collector
    /// signs a client assertion (PS256 JWT) with it.
    Certificate,
}

/// Everything needed to sign in as one tenant's app registration.
#[derive(Debug, Clone)]
pub struct AppCredential {
    /// The configured tenant name, for messages.
    pub tenant: String,
    pub tenant_id: String,
    pub client_id: String,
    /// Where the client secret, or the certificate PEM, is read from.
    pub secret: SecretSource,
    pub kind: CredentialKind,
    /// OAuth authority host, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
}

impl AppCredential {
    /// The environment check: the secret or certificate is there, readable and usable.
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        let key = match (&self.secret, self.kind) {
            (SecretSource::Env(_), _) => format!("{prefix}.client_secret_env"),
            (SecretSource::File(_), CredentialKind::Certificate) => format!("{prefix}.client_certificate_file"),
            (SecretSource::File(_), CredentialKind::Secret) => format!("{prefix}.client_secret_file"),
        };
        // A missing file is the commonest mistake; name it plainly.
        if let SecretSource::File(f) = &self.secret {
            let f = crate::common::secret::expand_credentials_dir(f);
            match std::fs::metadata(&f) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return is.add(key, format!("file not found: {}", f.display()));
                }
                Ok(m) if !m.is_file() => return is.add(key, format!("{} is not a regular file", f.display())),
                _ => {}
            }
        }
        match &self.secret {
            SecretSource::Env(v) if std::env::var(v).map(|x| x.trim().is_empty()).unwrap_or(true) => {
                is.add(key, format!("environment variable {v} is not set or empty"));
            }
            src => {
                src.check(is, &key);
                if self.kind == CredentialKind::Certificate
                    && let Ok(pem) = src.read()
                    && let Err(e) = certificate::AppCertificate::from_pem(&pem)
                {
                    is.add(key, e.to_string());
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("tenant {tenant}: cannot load the client secret or certificate: {source}")]
    Secret {
        tenant: String,
        #[source]
        source: SecretError,
    },
    #[error("tenant {tenant}: cannot build credential: {message}")]
    Setup { tenant: String, message: String },
    #[error("tenant {tenant}: token request for {audience} failed: {message}")]
    Token { tenant: String, audience: String, message: String },
}

impl AuthError {
    /// The authority answered and refused (AADSTS error), as opposed to being unreachable.
    pub fn is_rejection(&self) -> bool {
        match self {
            AuthError::Token { message, .. } => message.contains("AADSTS") || message.contains("invalid_client"),
            _ => true,
        }
    }
}

pub struct TenantAuth {
    tenant: String,
    tenant_id: String,
    client_id: String,
    source: SecretSource,
    kind: CredentialKind,
    /// The client secret, or the certificate PEM.
    secret: RwLock<String>,
    authority: String,
    http: reqwest::Client,
    credential: RwLock<Arc<dyn TokenCredential>>,
}

impl std::fmt::Debug for TenantAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantAuth")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub fn load_secret(tenant: &str, source: &SecretSource) -> Result<String, AuthError> {
    source.read().map_err(|source| AuthError::Secret { tenant: tenant.to_string(), source })
}

impl TenantAuth {
    pub fn new(t: &AppCredential, http: reqwest::Client) -> Result<TenantAuth, AuthError> {
        let secret = load_secret(&t.tenant, &t.secret)?;
        let credential = build_raw(&t.tenant, t.kind, &t.tenant_id, &t.authority, &t.client_id, &secret, &http)?;
        Ok(TenantAuth {
            tenant: t.tenant.clone(),
            tenant_id: t.tenant_id.clone(),
            client_id: t.client_id.clone(),
            source: t.secret.clone(),
            kind: t.kind,
            authority: t.authority.clone(),
            credential: RwLock::new(credential),
            secret: RwLock::new(secret),
            http,
        })
    }

    fn secret(&self) -> String {
        self.secret.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A bearer token for `resource` (e.g. `https://manage.office.com`), cached until near expiry.
    pub async fn token(&self, resource: &str) -> Result<String, AuthError> {
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        let cred = self.credential.read().unwrap_or_else(|p| p.into_inner()).clone();
        let t = cred.get_token(&[&scope], None).await.map_err(|e| AuthError::Token {
            tenant: self.tenant.clone(),
            audience: resource.to_string(),
            message: redact(&crate::http::error_chain(&e), &self.secret()),
        })?;
        Ok(t.token.secret().to_string())
    }

    /// The credential as it stands now (it is rebuilt by `invalidate`); for clients such as
    /// the Event Hubs producer that ask for tokens themselves.
    pub fn current_credential(&self) -> Arc<dyn TokenCredential> {
        self.credential.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `text` with this tenant's secret removed, for errors that came back from a library.
    pub fn scrub(&self, text: &str) -> String {
        redact(text, &self.secret())
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Drops every cached token (after a 401 or a refused token request) and re-reads the
    /// secret, so a rotated systemd credential is picked up without a restart.
    pub fn invalidate(&self) {
        match load_secret(&self.tenant, &self.source) {
            Ok(s) => *self.secret.write().unwrap_or_else(|p| p.into_inner()) = s,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "could not re-read the client secret; keeping the old one")
            }
        }
        let fresh = build_raw(
            &self.tenant,
            self.kind,
            &self.tenant_id,
            &self.authority,
            &self.client_id,
            &self.secret(),
            &self.http,
        );
        match fresh {
            Ok(c) => *self.credential.write().unwrap_or_else(|p| p.into_inner()) = c,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "could not rebuild credential")
            }
        }
    }
}

fn build_raw(
    tenant: &str,
    kind: CredentialKind,
    tenant_id: &str,
    authority: &str,
    client_id: &str,
    secret: &str,
    http: &reqwest::Client,
) -> Result<Arc<dyn TokenCredential>, AuthError> {
    // Both option structs are #[non_exhaustive]: they can only be built from `default()`.
    #[allow(clippy::field_reassign_with_default)]
    let client_options = {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = authority.to_string();
        let mut o = ClientOptions::default();
        o.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
        o.transport = Some(Transport::new(Arc::new(http.clone())));
        o
    };
    let setup = |message: String| AuthError::Setup { tenant: tenant.to_string(), message: redact(&message, secret) };
    match kind {
        CredentialKind::Certificate => certificate::credential(secret, tenant_id, client_id, authority, client_options)
            .map_err(|e| setup(e.to_string())),
        CredentialKind::Secret => {
            let options = ClientSecretCredentialOptions { client_options };
            let cred = ClientSecretCredential::new(
                tenant_id,
                client_id.to_string(),
                Secret::new(secret.to_string()),
                Some(options),
            )
            .map_err(|e| setup(e.to_string()))?;
            Ok(cred)
        }
    }
}

/// Belt and braces: an error text from a library must never carry the secret.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() >= 4 { text.replace(secret, "<redacted>") } else { text.to_string() }
}

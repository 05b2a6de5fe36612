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

use crate::config::environment::expand_credentials_dir;
use crate::config::validate::{CredentialKind, SecretSource, TenantSettings};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("tenant {tenant}: cannot load the client secret or certificate: {message}")]
    Secret { tenant: String, message: String },
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
    read_secret(source).map_err(|message| AuthError::Secret { tenant: tenant.to_string(), message })
}

/// Reads a secret from its file (systemd credentials directory aware) or variable, trimmed.
/// The error names where it looked, never the value.
pub fn read_secret(source: &SecretSource) -> Result<String, String> {
    let value = match source {
        SecretSource::File(p) => {
            let p = expand_credentials_dir(p);
            std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?
        }
        SecretSource::Env(v) => std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))?,
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(value)
}

impl TenantAuth {
    pub fn new(t: &TenantSettings, http: reqwest::Client) -> Result<TenantAuth, AuthError> {
        let secret = load_secret(&t.name, &t.secret)?;
        let credential =
            build_raw(&t.name, t.credential, &t.tenant_id, &t.endpoints.authority, &t.client_id, &secret, &http)?;
        Ok(TenantAuth {
            tenant: t.name.clone(),
            tenant_id: t.tenant_id.clone(),
            client_id: t.client_id.clone(),
            source: t.secret.clone(),
            kind: t.credential,
            authority: t.endpoints.authority.clone(),
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
    let mut custom = CustomConfiguration::default();
    custom.authority_host = authority.to_string();
    let mut client_options = ClientOptions::default();
    client_options.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
    client_options.transport = Some(Transport::new(Arc::new(http.clone())));
    let setup = |message: String| AuthError::Setup { tenant: tenant.to_string(), message: redact(&message, secret) };
    match kind {
        CredentialKind::Certificate => {
            certificate::credential(secret, tenant_id, client_id, authority, client_options).map_err(setup)
        }
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

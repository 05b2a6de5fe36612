//! Signing in to Entra ID, per tenant: which identity (`credential`), and one access token per
//! audience (Management API, Graph, ARM, Event Hubs, Monitor), kept ahead of expiry (`tokens`).
//!
//! Secrets are loaded here and never appear in a log line, error or status.

use std::sync::{Arc, RwLock};

use azure_core::credentials::TokenCredential;

pub mod certificate;
pub mod credential;
pub mod tokens;

pub use credential::{Credential, SignIn, UserAssigned};

use crate::common::{Issues, SecretError, SecretSource};

impl SignIn {
    /// The environment check: the secret, certificate or federated token is there, readable
    /// and usable. `prefix` is the config table (`tenants[0]`).
    pub fn check(&self, is: &mut Issues, prefix: &str) {
        match &self.credential {
            Credential::Secret { secret, .. } => check_secret(is, prefix, secret, false),
            Credential::Certificate { pem, .. } => check_secret(is, prefix, pem, true),
            Credential::ManagedIdentity(_) => {}
            Credential::WorkloadIdentity { client_id, token_file } => {
                let env_set = |v: &str| std::env::var(v).is_ok_and(|x| !x.trim().is_empty());
                if client_id.is_none() && !env_set("AZURE_CLIENT_ID") {
                    is.add(format!("{prefix}.client_id"), "is required: set it, or AZURE_CLIENT_ID in the environment");
                }
                match token_file.clone().or_else(|| std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").map(Into::into)) {
                    None => is.add(
                        format!("{prefix}.token_file"),
                        "is required: set it, or AZURE_FEDERATED_TOKEN_FILE in the environment",
                    ),
                    Some(f) => {
                        if let Err(e) = std::fs::metadata(&f) {
                            is.add(format!("{prefix}.token_file"), format!("{}: {e}", f.display()));
                        }
                    }
                }
            }
        }
    }
}

fn check_secret(is: &mut Issues, prefix: &str, src: &SecretSource, certificate: bool) {
    let key = match (src, certificate) {
        (SecretSource::Env(_), _) => format!("{prefix}.client_secret_env"),
        (SecretSource::File(_), true) => format!("{prefix}.client_certificate_file"),
        (SecretSource::File(_), false) => format!("{prefix}.client_secret_file"),
    };
    // A missing file is the commonest mistake; name it plainly.
    if let SecretSource::File(f) = src {
        let f = crate::common::secret::expand_credentials_dir(f);
        match std::fs::metadata(&f) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return is.add(key, format!("file not found: {}", f.display()));
            }
            Ok(m) if !m.is_file() => return is.add(key, format!("{} is not a regular file", f.display())),
            _ => {}
        }
    }
    match src {
        SecretSource::Env(v) if std::env::var(v).map(|x| x.trim().is_empty()).unwrap_or(true) => {
            is.add(key, format!("environment variable {v} is not set or empty"));
        }
        src => {
            src.check(is, &key);
            if certificate
                && let Ok(pem) = src.read()
                && let Err(e) = certificate::AppCertificate::from_pem(&pem)
            {
                is.add(key, e.to_string());
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
    #[error("{tenant}: cannot build the credential: {message}")]
    Setup { tenant: String, message: String },
    #[error("tenant {tenant}: token request for {audience} as {who} failed: {message}")]
    Token { tenant: String, audience: String, who: String, message: String, refused: bool },
}

impl AuthError {
    /// The authority answered and refused (AADSTS error), as opposed to being unreachable.
    pub fn is_rejection(&self) -> bool {
        match self {
            AuthError::Token { refused, .. } => *refused,
            _ => true,
        }
    }
}

pub struct TenantAuth {
    sign_in: SignIn,
    /// The client secret or certificate PEM, for the kinds that have one.
    secret: RwLock<Option<String>>,
    http: crate::http::Clients,
    /// The credential, or why it could not be built (shown by every token request, so only
    /// this tenant's streams fail, and tried again by `invalidate`).
    credential: RwLock<Result<Arc<dyn TokenCredential>, String>>,
    tokens: tokens::Tokens,
}

impl std::fmt::Debug for TenantAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantAuth")
            .field("tenant", &self.sign_in.name)
            .field("credential", &self.sign_in.credential.describe())
            .finish_non_exhaustive()
    }
}

pub fn load_secret(tenant: &str, source: &SecretSource) -> Result<String, AuthError> {
    source.read().map_err(|source| AuthError::Secret { tenant: tenant.to_string(), source })
}

impl TenantAuth {
    /// Never fails: a secret that cannot be read or a credential that cannot be built fails
    /// this tenant's token requests (and is tried again), not the daemon.
    pub fn new(s: &SignIn, http: crate::http::Clients) -> TenantAuth {
        let a = TenantAuth {
            sign_in: s.clone(),
            secret: RwLock::new(None),
            http,
            credential: RwLock::new(Err(String::new())),
            tokens: tokens::Tokens::default(),
        };
        a.rebuild();
        if let Err(e) = &*a.credential.read().unwrap_or_else(|p| p.into_inner()) {
            tracing::error!(tenant = %s.name, error = %e, "cannot sign in; this tenant's streams fail until it can");
        }
        a
    }

    /// (Re-)reads the secret and builds the credential.
    fn rebuild(&self) {
        let name = &self.sign_in.name;
        if let Some(src) = self.sign_in.credential.secret_source() {
            match load_secret(name, src) {
                Ok(s) => *self.secret.write().unwrap_or_else(|p| p.into_inner()) = Some(s),
                Err(e) => {
                    let held = self.secret.read().unwrap_or_else(|p| p.into_inner()).is_some();
                    if !held {
                        let why = match e {
                            AuthError::Secret { source, .. } => format!("cannot read the secret: {source}"),
                            e => e.to_string(),
                        };
                        *self.credential.write().unwrap_or_else(|p| p.into_inner()) = Err(why);
                        return;
                    }
                    tracing::warn!(tenant = %name, error = %e, "could not re-read the client secret; keeping the old one");
                }
            }
        }
        let secret = self.secret.read().unwrap_or_else(|p| p.into_inner()).clone();
        let built = credential::build(&self.sign_in, secret.as_deref(), Some(&self.http));
        let mut slot = self.credential.write().unwrap_or_else(|p| p.into_inner());
        match built {
            Ok(c) => *slot = Ok(c),
            // A working credential is kept over one that no longer builds.
            Err(e) if slot.is_ok() => tracing::warn!(tenant = %name, error = %e, "could not rebuild credential"),
            Err(e) => *slot = Err(e.to_string()),
        }
    }

    fn secret(&self) -> String {
        self.secret.read().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
    }

    /// A bearer token for `resource` (e.g. `https://manage.office.com`), from memory while it
    /// is good; see `tokens` for when it is fetched.
    pub async fn token(&self, resource: &str) -> Result<String, AuthError> {
        let cred = self.current_credential()?;
        // Built only when a token is fetched: most calls find one held.
        let fetch = || {
            let cred = cred.clone();
            let scope = format!("{}/.default", resource.trim_end_matches('/'));
            let secret = self.secret();
            let (tenant, audience) = (self.sign_in.name.clone(), resource.to_string());
            let who = self.sign_in.credential.describe();
            async move {
                let t = cred.get_token(&[&scope], None).await.map_err(|e| AuthError::Token {
                    tenant,
                    audience,
                    who,
                    message: redact(&crate::http::error_chain(&e), &secret),
                    refused: refused(&e),
                })?;
                Ok::<_, AuthError>(tokens::Held::new(t.token.secret().to_string(), t.expires_on.into()))
            }
        };
        self.tokens.get(resource, fetch).await
    }

    /// The credential as it stands now (it is rebuilt by `invalidate`); for clients such as
    /// the Event Hubs producer that ask for tokens themselves.
    pub fn current_credential(&self) -> Result<Arc<dyn TokenCredential>, AuthError> {
        let c = self.credential.read().unwrap_or_else(|p| p.into_inner()).clone();
        c.map_err(|message| AuthError::Setup { tenant: self.sign_in.name.clone(), message })
    }

    /// `text` with this tenant's secret removed, for errors that came back from a library.
    pub fn scrub(&self, text: &str) -> String {
        redact(text, &self.secret())
    }

    pub fn tenant(&self) -> &str {
        &self.sign_in.name
    }

    /// Drops every held token (after a 401 or a refused token request) and re-reads the
    /// secret, so a rotated systemd credential is picked up without a restart.
    pub fn invalidate(&self) {
        self.rebuild();
        self.tokens.clear();
    }
}

/// The authority or identity endpoint answered and said no (an AADSTS error, or a 4xx other
/// than 404, 408, 410 and 429, which IMDS answers while it is busy or updating), as opposed to
/// being unreachable or busy.
fn refused(e: &azure_core::Error) -> bool {
    let text = crate::http::error_chain(e);
    if text.contains("AADSTS") || text.contains("invalid_client") {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(status) = x.downcast_ref::<azure_core::Error>().and_then(|a| a.http_status()) {
            let s = u16::from(status);
            return (400..500).contains(&s) && ![404, 408, 410, 429].contains(&s);
        }
        cur = x.source();
    }
    false
}

/// Belt and braces: an error text from a library must never carry the secret.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() >= 4 { text.replace(secret, "<redacted>") } else { text.to_string() }
}

//! Who the Event Hubs producer signs in as: a SAS connection string, a configured tenant's app
//! registration, a managed identity or a workload identity. Every Entra path needs the
//! "Azure Event Hubs Data Sender" role on the hub or namespace.
//!
//! Secrets are read when a connection is opened (so a rotated file is picked up on the next
//! reconnect) and are scrubbed from every error this module or the library returns.

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

use super::config::HubAuth;
use crate::auth::{Credential, SignIn, TenantAuth, UserAssigned};
use crate::common::{SecretError, SecretSource};
use crate::sinks::{BuildContext, BuildError};

const SHAPE: &str =
    "expected Endpoint=sb://<namespace>/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>[;EntityPath=<hub>]";

/// What is wrong with a connection string, without echoing any of it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("connection string: {0}")]
    Read(#[from] SecretError),
    #[error("connection string has no Endpoint ({SHAPE})")]
    NoEndpoint,
    #[error("connection string has neither SharedAccessKeyName+SharedAccessKey nor SharedAccessSignature ({SHAPE})")]
    NoKey,
}

/// What `ProducerClient` is opened with.
pub enum Opener {
    /// The connection string is re-read from its source at every open.
    ConnectionString(SecretSource),
    Token {
        credential: Arc<dyn TokenCredential>,
        tenant: Option<Arc<TenantAuth>>,
    },
}

pub fn opener(name: &str, auth: &HubAuth, ctx: &BuildContext) -> Result<Opener, BuildError> {
    let identity = |credential: Credential, tenant_id: Option<String>| {
        let s = SignIn { name: format!("sink {name}"), tenant_id, authority: None, credential };
        let c = crate::auth::credential::build(&s, None, ctx.http.as_ref())
            .map_err(|e| BuildError::Client(e.to_string()))?;
        Ok::<_, BuildError>(Opener::Token { credential: c, tenant: None })
    };
    match auth {
        HubAuth::ConnectionString(src) => Ok(Opener::ConnectionString(src.clone())),
        HubAuth::Tenant(t) => {
            let a = ctx.auth.get(t).cloned().ok_or_else(|| BuildError::UnknownTenant(t.clone()))?;
            Ok(Opener::Token { credential: Arc::new(TenantCredential(a.clone())), tenant: Some(a) })
        }
        HubAuth::ManagedIdentity { client_id } => {
            identity(Credential::ManagedIdentity(client_id.clone().map(UserAssigned::ClientId)), None)
        }
        HubAuth::WorkloadIdentity { tenant_id, client_id, token_file } => identity(
            Credential::WorkloadIdentity { client_id: client_id.clone(), token_file: token_file.clone() },
            tenant_id.clone(),
        ),
    }
}

/// Reads the connection string and the secrets in it that errors must never show.
pub fn connection_string(src: &SecretSource) -> Result<(String, Vec<String>), ConnectionStringError> {
    let cs = src.read()?;
    let mut secrets = vec![cs.clone()];
    for part in cs.split(';') {
        if let Some((k, v)) = part.split_once('=')
            && (k.trim().eq_ignore_ascii_case("SharedAccessKey")
                || k.trim().eq_ignore_ascii_case("SharedAccessSignature"))
            && v.len() >= 4
        {
            secrets.push(v.trim().to_string());
        }
    }
    check_connection_string(&cs)?;
    Ok((cs, secrets))
}

/// The namespace host and `EntityPath` a connection string names (neither is secret).
pub fn names(cs: &str) -> (Option<String>, Option<String>) {
    let value = |key: &str| {
        cs.split(';')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim().to_string())
    };
    let ns = value("Endpoint").and_then(|e| url::Url::parse(&e).ok()).and_then(|u| u.host_str().map(str::to_string));
    (ns, value("EntityPath").filter(|h| !h.is_empty()))
}

/// Names what is missing from a connection string without echoing any of it.
pub fn check_connection_string(cs: &str) -> Result<(), ConnectionStringError> {
    let keys: Vec<String> =
        cs.split(';').filter_map(|p| p.split_once('=')).map(|(k, _)| k.trim().to_ascii_lowercase()).collect();
    let has = |k: &str| keys.iter().any(|x| x == k);
    if !has("endpoint") {
        return Err(ConnectionStringError::NoEndpoint);
    }
    let key_pair = has("sharedaccesskey") && has("sharedaccesskeyname");
    if !key_pair && !has("sharedaccesssignature") {
        return Err(ConnectionStringError::NoKey);
    }
    Ok(())
}

/// A configured tenant's app registration as an azure_core credential. It asks the tenant's
/// current credential each time, so a secret rotated through `TenantAuth::invalidate` is used
/// by an open producer at its next token renewal.
#[derive(Debug)]
struct TenantCredential(Arc<TenantAuth>);

#[async_trait::async_trait]
impl TokenCredential for TenantCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let cred = self
            .0
            .current_credential()
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string()))?;
        let r = cred.get_token(scopes, options).await;
        if r.is_err() {
            // The authority refused or was unreachable: re-read the secret for the next try.
            self.0.invalidate();
        }
        r
    }
}

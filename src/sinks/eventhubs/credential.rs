//! Who the Event Hubs producer signs in as: a SAS connection string, a configured tenant's app
//! registration, a managed identity or a workload identity. Every Entra path needs the
//! "Azure Event Hubs Data Sender" role on the hub or namespace.
//!
//! Secrets are read when a connection is opened (so a rotated file is picked up on the next
//! reconnect) and are scrubbed from every error this module or the library returns.

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::config::HubAuth;
use crate::auth::TenantAuth;
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

pub fn opener(auth: &HubAuth, ctx: &BuildContext) -> Result<Opener, BuildError> {
    let client_options = || {
        let mut o = ClientOptions::default();
        if let Some(http) = &ctx.http {
            // The daemon's HTTP client: its CA bundle and timeouts also serve identity calls.
            o.transport = Some(Transport::new(Arc::new(http.clone())));
        }
        o
    };
    Ok(match auth {
        HubAuth::ConnectionString(src) => Opener::ConnectionString(src.clone()),
        HubAuth::Tenant(t) => {
            let a = ctx.auth.get(t).cloned().ok_or_else(|| BuildError::UnknownTenant(t.clone()))?;
            Opener::Token { credential: Arc::new(TenantCredential(a.clone())), tenant: Some(a) }
        }
        HubAuth::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: client_options(),
            };
            let c = ManagedIdentityCredential::new(Some(options))
                .map_err(|e| BuildError::Client(format!("managed identity: {}", crate::http::error_chain(&e))))?;
            Opener::Token { credential: c, tenant: None }
        }
        HubAuth::WorkloadIdentity { tenant_id, client_id, token_file } => {
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: client_options() },
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                token_file_path: token_file.clone(),
                ..Default::default()
            };
            let c = WorkloadIdentityCredential::new(Some(options))
                .map_err(|e| BuildError::Client(format!("workload identity: {}", crate::http::error_chain(&e))))?;
            Opener::Token { credential: c, tenant: None }
        }
    })
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
        let r = self.0.current_credential().get_token(scopes, options).await;
        if r.is_err() {
            // The authority refused or was unreachable: re-read the secret for the next try.
            self.0.invalidate();
        }
        r
    }
}

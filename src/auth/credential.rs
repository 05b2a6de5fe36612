//! The four ways the collector signs in to Entra ID, for a tenant's sources and for sinks that
//! sign in (Event Hubs, Logs Ingestion), and building the `azure_identity` credential for each.
//! This is the one place that knows them.

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::{AuthError, certificate, redact};
use crate::common::SecretSource;

/// Which identity signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An app registration and its client secret.
    Secret { client_id: String, secret: SecretSource },
    /// An app registration and a PEM with its certificate and RSA private key: the collector
    /// signs a client assertion (PS256 JWT) with it.
    Certificate { client_id: String, pem: SecretSource },
    /// The identity of the Azure host the collector runs on (VM, App Service, Arc):
    /// system-assigned, or the user-assigned one named here.
    ManagedIdentity(Option<UserAssigned>),
    /// A federated token file (AKS workload identity) exchanged for the app's token. What is
    /// not set here comes from `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity { client_id: Option<String>, token_file: Option<PathBuf> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAssigned {
    ClientId(String),
    /// `/subscriptions/…/resourceGroups/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/…`
    ResourceId(String),
}

impl Credential {
    /// The `credential = "…"` word for it.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Secret { .. } => "secret",
            Credential::Certificate { .. } => "certificate",
            Credential::ManagedIdentity(_) => "managed_identity",
            Credential::WorkloadIdentity { .. } => "workload_identity",
        }
    }

    /// Where the secret or certificate is read from, for the kinds that have one.
    pub fn secret_source(&self) -> Option<&SecretSource> {
        match self {
            Credential::Secret { secret, .. } => Some(secret),
            Credential::Certificate { pem, .. } => Some(pem),
            _ => None,
        }
    }

    /// For messages and `status`: what signs in, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Credential::Secret { client_id, .. } => format!("app {client_id} with a client secret"),
            Credential::Certificate { client_id, .. } => format!("app {client_id} with a certificate"),
            Credential::ManagedIdentity(None) => "system-assigned managed identity".into(),
            Credential::ManagedIdentity(Some(UserAssigned::ClientId(c))) => {
                format!("user-assigned managed identity {c}")
            }
            Credential::ManagedIdentity(Some(UserAssigned::ResourceId(r))) => {
                format!("user-assigned managed identity {r}")
            }
            Credential::WorkloadIdentity { client_id: Some(c), .. } => format!("workload identity of app {c}"),
            Credential::WorkloadIdentity { client_id: None, .. } => "workload identity (AZURE_CLIENT_ID)".into(),
        }
    }
}

/// Everything needed to sign in as one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    /// Who this is for (`contoso`, or `sink hub`), for messages.
    pub name: String,
    /// The directory; `None` takes `AZURE_TENANT_ID` (workload identity) or does not apply
    /// (managed identity).
    pub tenant_id: Option<String>,
    /// OAuth authority host, e.g. `https://login.microsoftonline.com`; `None` takes the
    /// library's default (or `AZURE_AUTHORITY_HOST`).
    pub authority: Option<String>,
    pub credential: Credential,
}

/// Builds the credential. `secret` is the client secret or certificate PEM, read by the caller
/// (so it can re-read a rotated one), for the kinds that have one.
pub fn build(
    s: &SignIn,
    secret: Option<&str>,
    http: Option<&crate::http::Clients>,
) -> Result<Arc<dyn TokenCredential>, AuthError> {
    let setup = |message: String| AuthError::Setup {
        tenant: s.name.clone(),
        message: redact(&message, secret.unwrap_or_default()),
    };
    let http = match (http, &s.credential) {
        (Some(c), Credential::ManagedIdentity(_)) => Some(c.identity().map_err(|e| setup(e.to_string()))?),
        (Some(c), _) => Some(c.api.clone()),
        (None, _) => None,
    };
    #[allow(clippy::field_reassign_with_default)] // azure's option structs are #[non_exhaustive]
    let client_options = {
        let mut o = ClientOptions::default();
        if let Some(a) = &s.authority {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = a.clone();
            o.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
        }
        // The daemon's client: its CA bundle, timeouts and proxy also serve identity calls.
        if let Some(http) = http {
            o.transport = Some(Transport::new(Arc::new(http)));
        }
        o
    };
    let tenant_id = || s.tenant_id.clone().ok_or_else(|| setup("no tenant_id".into()));
    match &s.credential {
        Credential::Secret { client_id, .. } => {
            let options = ClientSecretCredentialOptions { client_options };
            let secret = Secret::new(secret.unwrap_or_default().to_string());
            ClientSecretCredential::new(&tenant_id()?, client_id.clone(), secret, Some(options))
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| setup(e.to_string()))
        }
        Credential::Certificate { client_id, .. } => {
            // The assertion is addressed to the token endpoint, so the authority must be known.
            let authority = s.authority.as_deref().ok_or_else(|| setup("no authority host".into()))?;
            certificate::credential(secret.unwrap_or_default(), &tenant_id()?, client_id, authority, client_options)
                .map_err(|e| setup(e.to_string()))
        }
        Credential::ManagedIdentity(id) => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: id.as_ref().map(|u| match u {
                    UserAssigned::ClientId(c) => UserAssignedId::ClientId(c.clone()),
                    UserAssigned::ResourceId(r) => UserAssignedId::ResourceId(r.clone()),
                }),
                client_options,
            };
            ManagedIdentityCredential::new(Some(options))
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| setup(format!("managed identity: {}", crate::http::error_chain(&e))))
        }
        Credential::WorkloadIdentity { client_id, token_file } => {
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options },
                client_id: client_id.clone(),
                tenant_id: s.tenant_id.clone(),
                token_file_path: token_file.clone(),
                ..Default::default()
            };
            WorkloadIdentityCredential::new(Some(options))
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| setup(format!("workload identity: {}", crate::http::error_chain(&e))))
        }
    }
}

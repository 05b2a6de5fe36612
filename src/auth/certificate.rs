//! Certificate credentials: the app's certificate and RSA private key (one PEM file) sign a
//! client assertion, a PS256 JWT (RSA-PSS with SHA-256, as Entra ID's documentation asks for
//! today) that Entra ID accepts in place of a client secret.
//!
//! The assertion names the certificate by its SHA-256 thumbprint (`x5t#S256`), is addressed to
//! the tenant's token endpoint (`aud`), and lives ten minutes. The private key never leaves this
//! module; errors name what is wrong with the file, never its content.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::ClientMethodOptions;
use azure_identity::{ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::SigningKey;
use sha2::{Digest, Sha256};

const LIFETIME_SECS: i64 = 600;

/// What is wrong with a certificate file, never what is in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("no CERTIFICATE block: the file must hold the certificate and its private key")]
    NoCertificate,
    #[error("the CERTIFICATE block is not valid PEM")]
    BadCertificate,
    #[error("no PRIVATE KEY block: the file must hold the certificate and its private key")]
    NoKey,
    #[error("the private key cannot be read (use an unencrypted PKCS#8 or PKCS#1 RSA key)")]
    UnreadableKey,
    #[error("the private key is not RSA; Entra ID signs in apps with RSA certificates only")]
    NotRsa,
    #[error("the key cannot sign PS256")]
    NoPs256,
    #[error("signing the client assertion: {0}")]
    Sign(String),
    #[error("building the assertion credential: {0}")]
    Setup(String),
}

/// A parsed certificate PEM: the thumbprint Entra knows the certificate by, and the signing key.
#[derive(Clone)]
pub struct AppCertificate {
    thumbprint_s256: String,
    key: Arc<dyn SigningKey>,
}

impl std::fmt::Debug for AppCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCertificate").field("x5t#S256", &self.thumbprint_s256).finish_non_exhaustive()
    }
}

impl AppCertificate {
    pub fn from_pem(pem: &str) -> Result<AppCertificate, CertificateError> {
        let cert = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or(CertificateError::NoCertificate)?
            .map_err(|_| CertificateError::BadCertificate)?;
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| CertificateError::NoKey)?;
        let key =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|_| CertificateError::UnreadableKey)?;
        if key.algorithm() != rustls::SignatureAlgorithm::RSA {
            return Err(CertificateError::NotRsa);
        }
        Ok(AppCertificate { thumbprint_s256: B64.encode(Sha256::digest(cert.as_ref())), key })
    }

    /// A signed assertion for `client_id` at `token_url`, valid from now for ten minutes.
    pub fn assertion(&self, client_id: &str, token_url: &str, now: i64) -> Result<String, CertificateError> {
        let header = serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint_s256});
        let claims = serde_json::json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME_SECS,
        });
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let signer =
            self.key.choose_scheme(&[rustls::SignatureScheme::RSA_PSS_SHA256]).ok_or(CertificateError::NoPs256)?;
        let sig = signer.sign(input.as_bytes()).map_err(|e| CertificateError::Sign(e.to_string()))?;
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

/// Hands azure_identity a fresh assertion whenever it needs a token.
#[derive(Debug)]
struct Assertion {
    cert: AppCertificate,
    client_id: String,
    token_url: String,
}

#[async_trait::async_trait]
impl ClientAssertion for Assertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.cert
            .assertion(&self.client_id, &self.token_url, chrono::Utc::now().timestamp())
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string()))
    }
}

/// A credential that signs in as `client_id` with the certificate in `pem`.
pub fn credential(
    pem: &str,
    tenant_id: &str,
    client_id: &str,
    authority: &str,
    client_options: azure_core::http::ClientOptions,
) -> Result<Arc<dyn TokenCredential>, CertificateError> {
    let cert = AppCertificate::from_pem(pem)?;
    let token_url = format!("{}/{tenant_id}/oauth2/v2.0/token", authority.trim_end_matches('/'));
    let assertion = Assertion { cert, client_id: client_id.to_string(), token_url };
    let options = ClientAssertionCredentialOptions { client_options };
    let c = ClientAssertionCredential::new(tenant_id.to_string(), client_id.to_string(), assertion, Some(options))
        .map_err(|e| CertificateError::Setup(e.to_string()))?;
    Ok(c)
}

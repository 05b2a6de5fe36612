//! Checks a client assertion the way Entra ID does for an app with a registered certificate:
//! a PS256 (or legacy RS256) signature by that certificate's key, `x5t#S256` naming it,
//! `aud` = the token endpoint, `iss` = `sub` = the client id, and a current `nbf`..`exp` window.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

pub fn verify(jwt: &str, cert_pem: &str, client_id: &str, audience: &str, now: i64) -> Result<(), String> {
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| "registered certificate")?;
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("AADSTS50027: not a JWT".into());
    };
    let json = |p: &str| -> Result<serde_json::Value, String> {
        let bytes = B64.decode(p).map_err(|_| "AADSTS50027: bad base64url")?;
        serde_json::from_slice(&bytes).map_err(|_| "AADSTS50027: bad JSON".to_string())
    };
    let (header, claims) = (json(h)?, json(c)?);
    let alg = match header["alg"].as_str() {
        Some("PS256") => webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        Some("RS256") => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err("AADSTS5002738: only PS256 and RS256 assertions are accepted".into()),
    };
    if header["x5t#S256"] != B64.encode(Sha256::digest(cert.as_ref())) {
        return Err("AADSTS700027: the certificate is not registered on the app".into());
    }
    let signature = B64.decode(sig).map_err(|_| "AADSTS50027: bad signature encoding")?;
    let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| format!("registered certificate: {e:?}"))?;
    ee.verify_signature(alg, format!("{h}.{c}").as_bytes(), &signature)
        .map_err(|_| "AADSTS700027: the assertion's signature does not verify")?;
    if claims["aud"] != audience {
        return Err(format!("AADSTS700016: aud {} is not {audience}", claims["aud"].as_str().unwrap_or("missing")));
    }
    if claims["iss"] != client_id || claims["sub"] != client_id {
        return Err("AADSTS700021: iss and sub must be the client id".into());
    }
    let (nbf, exp) = (claims["nbf"].as_i64().unwrap_or(i64::MAX), claims["exp"].as_i64().unwrap_or(0));
    if now + 300 < nbf || now - 300 > exp {
        return Err("AADSTS700024: the assertion is not within its valid time range".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::certificate::AppCertificate;

    const PEM: &str = include_str!("../../tests/data/test-app-certificate.pem");
    const AUD: &str = "https://login.example/tid/oauth2/v2.0/token";

    #[test]
    fn a_signed_assertion_verifies_and_any_change_is_refused() {
        let cert = AppCertificate::from_pem(PEM).unwrap();
        let now = 1_800_000_000;
        let jwt = cert.assertion("app", AUD, now).unwrap();
        verify(&jwt, PEM, "app", AUD, now).unwrap();
        assert!(verify(&jwt, PEM, "other-app", AUD, now).is_err(), "iss/sub checked");
        assert!(verify(&jwt, PEM, "app", "https://elsewhere/tid/oauth2/v2.0/token", now).is_err(), "aud checked");
        assert!(verify(&jwt, PEM, "app", AUD, now + 3600).is_err(), "expiry checked");
        let mut parts: Vec<String> = jwt.split('.').map(str::to_string).collect();
        let claims = String::from_utf8(B64.decode(&parts[1]).unwrap()).unwrap().replace("\"app\"", "\"evil\"");
        parts[1] = B64.encode(claims);
        assert!(verify(&parts.join("."), PEM, "evil", AUD, now).is_err(), "signature covers the claims");
    }
}

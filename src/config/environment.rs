//! Checks that look at the machine: secret files and variables, CA files, writable directories.
//! They never print a secret's value.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::validate::{ConfigIssue, SecretSource, Settings, SinkSettings};

#[derive(Debug, Default)]
pub struct EnvReport {
    pub errors: Vec<ConfigIssue>,
    pub warnings: Vec<String>,
}

/// Expands a leading `$CREDENTIALS_DIRECTORY` (set by systemd's LoadCredential=).
pub fn expand_credentials_dir(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    for prefix in ["$CREDENTIALS_DIRECTORY", "${CREDENTIALS_DIRECTORY}", "%d"] {
        if let Some(rest) = s.strip_prefix(prefix)
            && let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY")
        {
            return PathBuf::from(format!("{}{}", dir.to_string_lossy(), rest));
        }
    }
    p.to_path_buf()
}

pub fn check(s: &Settings) -> EnvReport {
    let mut r = EnvReport::default();
    let mut err = |path: String, message: String| r.errors.push(ConfigIssue { path, message });
    let mut warnings = Vec::new();
    for (i, t) in s.tenants.iter().enumerate() {
        match &t.secret {
            SecretSource::File(f) => {
                let certificate = t.credential == super::validate::CredentialKind::Certificate;
                let key = format!(
                    "tenants[{i}].{}",
                    if certificate { "client_certificate_file" } else { "client_secret_file" }
                );
                let f = expand_credentials_dir(f);
                match std::fs::metadata(&f) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        err(key, format!("file not found: {}", f.display()))
                    }
                    Err(e) => err(key, format!("cannot read {}: {e}", f.display())),
                    Ok(m) if !m.is_file() => err(key, format!("{} is not a regular file", f.display())),
                    Ok(m) => {
                        if m.permissions().mode() & 0o004 != 0 {
                            warnings.push(format!(
                                "{key}: {} is world-readable; restrict it (chmod 600) or use a systemd credential",
                                f.display()
                            ));
                        }
                        match std::fs::read_to_string(&f) {
                            Ok(v) if v.trim().is_empty() => err(key, format!("{} is empty", f.display())),
                            Ok(v) if certificate => {
                                if let Err(e) = crate::auth::certificate::AppCertificate::from_pem(&v) {
                                    err(key, format!("{}: {e}", f.display()));
                                }
                            }
                            Ok(_) => {}
                            Err(e) => err(key, format!("cannot read {}: {e}", f.display())),
                        }
                    }
                }
            }
            SecretSource::Env(v) => {
                if std::env::var(v).map(|x| x.trim().is_empty()).unwrap_or(true) {
                    err(
                        format!("tenants[{i}].client_secret_env"),
                        format!("environment variable {v} is not set or empty"),
                    );
                }
            }
        }
    }
    if let Some(ca) = &s.http.ca_file {
        match std::fs::read(ca) {
            Err(e) => err("http.ca_file".into(), format!("cannot read {}: {e}", ca.display())),
            Ok(b) if reqwest::Certificate::from_pem(&b).is_err() || !b.starts_with(b"-----BEGIN") => {
                err("http.ca_file".into(), format!("{} is not a PEM certificate", ca.display()))
            }
            Ok(_) => {}
        }
    }
    if let Err(e) = writable_dir(&s.state_dir) {
        err("state_dir".into(), e);
    }
    for (i, sink) in s.sinks.iter().enumerate() {
        match sink {
            SinkSettings::File(f) => {
                if let Err(e) = writable_dir(&f.path) {
                    err(format!("sinks[{i}].path"), e);
                }
            }
            SinkSettings::Http(h) => {
                use crate::sinks::http::config::{GenericAuth, Preset, UrlSource};
                let mut secrets: Vec<(&str, &SecretSource)> = Vec::new();
                if let UrlSource::Secret(src) = &h.url {
                    secrets.push(("url", src));
                }
                match &h.preset {
                    Preset::Splunk { token, .. } | Preset::Generic { auth: GenericAuth::Bearer(token), .. } => {
                        secrets.push(("token", token))
                    }
                    Preset::Generic { auth: GenericAuth::Basic { password, .. }, .. } => {
                        secrets.push(("password", password))
                    }
                    _ => {}
                }
                for (key, src) in secrets {
                    if let Err(e) = crate::auth::read_secret(src) {
                        err(format!("sinks[{i}].{key}"), e);
                    }
                }
                let files = [("ca_file", h.ca_file.as_ref())].into_iter().chain(
                    h.client_identity
                        .iter()
                        .flat_map(|(c, k)| [("client_cert_file", Some(c)), ("client_key_file", Some(k))]),
                );
                for (key, f) in files {
                    if let Some(f) = f
                        && let Err(e) = std::fs::metadata(f)
                    {
                        err(format!("sinks[{i}].{key}"), format!("cannot read {}: {e}", f.display()));
                    }
                }
            }
            SinkSettings::Syslog(y) => {
                if y.transport == crate::sinks::syslog::config::Transport::Tls
                    && let Err(e) = crate::sinks::syslog::transport::tls_config(y)
                {
                    err(format!("sinks[{i}]"), e);
                }
            }
            SinkSettings::EventHubs(e) => {
                use crate::sinks::eventhubs::config::HubAuth;
                match &e.auth {
                    HubAuth::ConnectionString(src) => {
                        let key = match src {
                            SecretSource::File(_) => "connection_string_file",
                            SecretSource::Env(_) => "connection_string_env",
                        };
                        match crate::sinks::eventhubs::credential::connection_string(src) {
                            Err(m) => err(format!("sinks[{i}].{key}"), m),
                            Ok((cs, _))
                                if e.event_hub.is_none() && !cs.to_ascii_lowercase().contains("entitypath=") =>
                            {
                                err(
                                    format!("sinks[{i}].event_hub"),
                                    "is required: the connection string has no EntityPath".into(),
                                )
                            }
                            Ok(_) => {}
                        }
                    }
                    HubAuth::WorkloadIdentity { token_file, tenant_id, client_id } => {
                        for (key, set, var) in [
                            ("tenant_id", tenant_id.is_some(), "AZURE_TENANT_ID"),
                            ("client_id", client_id.is_some(), "AZURE_CLIENT_ID"),
                        ] {
                            if !set && std::env::var(var).map(|v| v.trim().is_empty()).unwrap_or(true) {
                                err(format!("sinks[{i}].{key}"), format!("is required when {var} is not set"));
                            }
                        }
                        let file = token_file
                            .clone()
                            .or_else(|| std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").map(Into::into));
                        match file {
                            None => err(
                                format!("sinks[{i}].token_file"),
                                "is required when AZURE_FEDERATED_TOKEN_FILE is not set".into(),
                            ),
                            Some(f) => {
                                if let Err(x) = std::fs::metadata(&f) {
                                    err(format!("sinks[{i}].token_file"), format!("cannot read {}: {x}", f.display()));
                                }
                            }
                        }
                    }
                    HubAuth::Tenant(_) | HubAuth::ManagedIdentity { .. } => {}
                }
            }
        }
    }
    r.warnings = warnings;
    r
}

fn writable_dir(p: &Path) -> Result<(), String> {
    // Walk up to the first existing ancestor: the daemon creates the rest.
    let mut cur = Some(p);
    while let Some(c) = cur {
        if c.exists() {
            if !c.is_dir() {
                return Err(format!("{} exists and is not a directory", c.display()));
            }
            let probe = c.join(format!(".auditkeeper-probe-{}", std::process::id()));
            return match std::fs::write(&probe, b"") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&probe);
                    Ok(())
                }
                Err(e) => Err(format!("{} is not writable: {e}", c.display())),
            };
        }
        cur = c.parent();
    }
    Err(format!("{} has no existing parent directory", p.display()))
}

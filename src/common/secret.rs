//! Where a secret lives (a file, such as a systemd credential, or an environment variable),
//! and reading it. An error names where it looked, never the value.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("the secret is empty")]
    Empty,
}

/// Expands a leading `$CREDENTIALS_DIRECTORY` (set by systemd's `LoadCredential=`).
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

impl SecretSource {
    /// `KEY_file` or `KEY_env`, never both; `None` when neither is set.
    pub fn from_keys(
        is: &mut super::Issues,
        prefix: &str,
        key: &str,
        file: &Option<PathBuf>,
        env: &Option<String>,
    ) -> Option<SecretSource> {
        match (file, env) {
            (Some(f), None) => Some(SecretSource::File(f.clone())),
            (None, Some(e)) if !e.trim().is_empty() => Some(SecretSource::Env(e.clone())),
            (None, Some(_)) => {
                is.add(format!("{prefix}.{key}_env"), "must name an environment variable");
                None
            }
            (Some(_), Some(_)) => {
                is.add(format!("{prefix}.{key}_file"), format!("set either {key}_file or {key}_env, not both"));
                None
            }
            (None, None) => None,
        }
    }

    /// Reads the secret, trimmed.
    pub fn read(&self) -> Result<String, SecretError> {
        let value = match self {
            SecretSource::File(p) => {
                let path = expand_credentials_dir(p);
                std::fs::read_to_string(&path).map_err(|source| SecretError::Read { path, source })?
            }
            SecretSource::Env(v) => std::env::var(v).map_err(|_| SecretError::Unset(v.clone()))?,
        };
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(value)
    }

    /// The environment check for `validate` and start: readable and not empty, with a warning
    /// when a secret file is readable by every user.
    pub fn check(&self, is: &mut super::Issues, key_path: &str) {
        match self.read() {
            Err(e) => is.add(key_path, e.to_string()),
            Ok(_) => {
                if let SecretSource::File(p) = self {
                    warn_if_world_readable(is, key_path, &expand_credentials_dir(p));
                }
            }
        }
    }
}

/// A secret or private key that any local user can read draws a warning at every start.
pub fn warn_if_world_readable(is: &mut super::Issues, key_path: &str, file: &Path) {
    if let Ok(m) = std::fs::metadata(file)
        && m.permissions().mode() & 0o004 != 0
    {
        is.warn(
            key_path,
            format!("{} is world-readable; restrict it (chmod 600) or use a systemd credential", file.display()),
        );
    }
}

//! Configuration: the TOML schema (`schema`), pure validation into typed settings (`validate`),
//! and the checks that touch the machine, such as secret files (`environment`).
//!
//! `auditkeeper validate` runs exactly these phases, so it is usable as `ExecStartPre=`.

pub mod cloud;
pub mod environment;
pub mod schema;
pub mod sinks;
pub mod size;
pub mod validate;

pub use schema::*;
pub use validate::{ConfigIssue, Settings, TenantSettings, validate};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Load { path: String, message: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// Loads the TOML file, applying `AUDITKEEPER__SECTION__KEY` environment overrides.
pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::Load { path: path.display().to_string(), message: "file not found".into() });
    }
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("AUDITKEEPER").prefix_separator("__").separator("__").try_parsing(true),
        )
        .build()
        .map_err(|e| ConfigError::Load { path: path.display().to_string(), message: e.to_string() })?;
    built.try_deserialize().map_err(|e| ConfigError::Load { path: path.display().to_string(), message: e.to_string() })
}

/// Load, validate and check the environment: everything `run` needs before it starts.
pub fn load_settings(path: &Path) -> Result<(Settings, Vec<String>), ConfigError> {
    let raw = load(path)?;
    let settings = validate(&raw).map_err(ConfigError::Invalid)?;
    let report = environment::check(&settings);
    if !report.errors.is_empty() {
        return Err(ConfigError::Invalid(report.errors));
    }
    Ok((settings, report.warnings))
}

/// Parses a TOML document into any deserialisable type through the `config` crate.
pub fn from_toml_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| e.to_string())
}

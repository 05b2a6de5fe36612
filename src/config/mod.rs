//! Configuration: the TOML schema (`schema`), pure validation into typed settings (`validate`),
//! and the checks that touch the machine, such as secret files (`environment`).
//!
//! This is the top of the module tree: it aggregates each component's own config table and
//! validation. No component imports anything from here.
//!
//! `auditkeeper validate` runs exactly these phases, so it is usable as `ExecStartPre=`.

pub mod cloud;
pub mod defaults;
pub mod environment;
pub mod schema;
pub mod tenant;
pub mod validate;

pub use crate::common::ConfigIssue;
pub use schema::*;
pub use tenant::TenantSettings;
pub use validate::{Settings, validate};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Load { path: String, message: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

fn builder() -> config::ConfigBuilder<config::builder::DefaultState> {
    config::Config::builder()
}

/// Loads the TOML file, applying `AUDITKEEPER__SECTION__KEY` environment overrides.
pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
    let load_err = |message: String| ConfigError::Load { path: path.display().to_string(), message };
    if !path.exists() {
        return Err(load_err("file not found".into()));
    }
    let built = builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("AUDITKEEPER").prefix_separator("__").separator("__").try_parsing(true),
        )
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let mut raw: RawConfig = built.try_deserialize().map_err(|e| load_err(e.to_string()))?;
    if let Some(dir) = &raw.tenants_dir {
        // Relative to the config file, as an operator reading it would expect.
        let dir = path.parent().map(|p| p.join(dir)).unwrap_or_else(|| dir.clone());
        raw.dir_tenants = defaults::read_dir(&dir)?;
    }
    Ok(raw)
}

/// Load, validate and check the environment: everything `run` needs before it starts.
/// Returns the settings and the warnings to log at start.
pub fn load_settings(path: &Path) -> Result<(Settings, Vec<String>), ConfigError> {
    let raw = load(path)?;
    let (settings, warnings) = validate(&raw).map_err(ConfigError::Invalid)?;
    let mut is = crate::common::Issues { errors: Vec::new(), warnings };
    environment::check(&settings, &mut is);
    if !is.is_empty() {
        return Err(ConfigError::Invalid(is.errors));
    }
    Ok((settings, is.warnings))
}

/// Parses a TOML document into any deserialisable type through the `config` crate.
pub fn from_toml_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, config::ConfigError> {
    builder().add_source(config::File::from_str(text, config::FileFormat::Toml)).build()?.try_deserialize()
}

#[cfg(test)]
mod tests;

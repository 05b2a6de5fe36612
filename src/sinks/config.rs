//! Every `[[sinks]]` table: its common keys, then the keys of its `type`, validated by that
//! sink's own `config` module. The top-level config holds a list of these; this module is the
//! only place that knows every sink kind.

use serde::Deserialize;
use serde::de::Error as _;

use super::common::{self, CommonSinkConfig, CommonSinkSettings};
use super::eventhubs::config::{EventHubsSinkConfig, EventHubsSinkSettings};
use super::file::config::{FileSinkConfig, FileSinkSettings};
use super::http::config::{HttpSinkConfig, HttpSinkSettings};
use super::syslog::config::{SyslogSinkConfig, SyslogSinkSettings};
use crate::common::Issues;

/// One `[[sinks]]` table as written.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub common: CommonSinkConfig,
    pub kind: SinkKindConfig,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per config, read once
pub enum SinkKindConfig {
    File(FileSinkConfig),
    /// The file sink as evidence: daily gzip files with a hash-chained manifest and retention.
    Archive(FileSinkConfig),
    Http(HttpSinkConfig),
    Syslog(SyslogSinkConfig),
    Eventhubs(EventHubsSinkConfig),
}

const KINDS: &[&str] = &["file", "archive", "http", "syslog", "eventhubs"];

impl<'de> Deserialize<'de> for SinkConfig {
    /// The common keys are split off before the kind's own keys are read, so each kind's table
    /// still refuses unknown keys (serde's `flatten` cannot be combined with that).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let kind = match table.remove("type") {
            Some(serde_json::Value::String(s)) => s,
            Some(other) => return Err(D::Error::custom(format!("`type` must be a string, not {other}"))),
            None => return Err(D::Error::missing_field("type")),
        };
        let mut shared = serde_json::Map::new();
        for k in CommonSinkConfig::KEYS {
            if let Some(v) = table.remove(k) {
                shared.insert(k.to_string(), v);
            }
        }
        let common: CommonSinkConfig =
            serde_json::from_value(serde_json::Value::Object(shared)).map_err(D::Error::custom)?;
        fn own<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            t: serde_json::Map<String, serde_json::Value>,
        ) -> Result<T, E> {
            serde_json::from_value(serde_json::Value::Object(t)).map_err(E::custom)
        }
        let kind = match kind.as_str() {
            "file" => SinkKindConfig::File(own::<_, D::Error>(table)?),
            "archive" => SinkKindConfig::Archive(own::<_, D::Error>(table)?),
            "http" => SinkKindConfig::Http(own::<_, D::Error>(table)?),
            "syslog" => SinkKindConfig::Syslog(own::<_, D::Error>(table)?),
            "eventhubs" => SinkKindConfig::Eventhubs(own::<_, D::Error>(table)?),
            other => return Err(D::Error::unknown_variant(other, KINDS)),
        };
        Ok(SinkConfig { common, kind })
    }
}

/// A validated sink: routing and batching, and its kind's settings.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub common: CommonSinkSettings,
    pub kind: SinkKind,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    File(FileSinkSettings),
    /// Boxed: its settings are several times the size of the other kinds'.
    Http(Box<HttpSinkSettings>),
    Syslog(SyslogSinkSettings),
    EventHubs(EventHubsSinkSettings),
}

impl SinkSettings {
    pub fn name(&self) -> &str {
        &self.common.name
    }
}

/// Pure validation of every sink; `tenants` are the configured tenant names.
pub fn validate(is: &mut Issues, raw: &[SinkConfig], tenants: &[String]) -> Vec<SinkSettings> {
    if raw.is_empty() {
        is.add("sinks", "at least one [[sinks]] entry is required, or records would wait in the spool forever");
    }
    let mut sinks: Vec<SinkSettings> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let prefix = format!("sinks[{i}]");
        let p = prefix.as_str();
        let (defaults, kind) = match &s.kind {
            SinkKindConfig::File(f) => {
                (super::file::config::BATCH, super::file::config::validate(is, p, f, false).map(SinkKind::File))
            }
            SinkKindConfig::Archive(f) => {
                (super::file::config::BATCH, super::file::config::validate(is, p, f, true).map(SinkKind::File))
            }
            SinkKindConfig::Http(h) => (
                super::http::config::batch_defaults(h),
                super::http::config::validate(is, p, h, tenants).map(|h| SinkKind::Http(Box::new(h))),
            ),
            SinkKindConfig::Syslog(y) => {
                (super::syslog::config::BATCH, super::syslog::config::validate(is, p, y).map(SinkKind::Syslog))
            }
            SinkKindConfig::Eventhubs(e) => (
                super::eventhubs::config::BATCH,
                super::eventhubs::config::validate(is, p, e, tenants).map(SinkKind::EventHubs),
            ),
        };
        let common = common::validate(is, p, &s.common, defaults, tenants);
        if let (Some(common), Some(kind)) = (common, kind) {
            if sinks.iter().any(|o| o.name() == common.name) {
                is.add(format!("{prefix}.name"), format!("duplicate sink name {:?}", common.name));
            }
            sinks.push(SinkSettings { common, kind });
        }
    }
    sinks
}

/// The checks that look at the machine (files, secrets, certificates), for `validate` and start.
pub fn check_environment(is: &mut Issues, sinks: &[SinkSettings]) {
    for (i, s) in sinks.iter().enumerate() {
        let prefix = format!("sinks[{i}]");
        match &s.kind {
            SinkKind::File(f) => f.check(is, &prefix),
            SinkKind::Http(h) => h.check(is, &prefix),
            SinkKind::Syslog(y) => y.check(is, &prefix),
            SinkKind::EventHubs(e) => e.check(is, &prefix),
        }
    }
}

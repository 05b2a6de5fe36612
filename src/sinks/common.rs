//! What every sink shares: the common keys of a `[[sinks]]` table (`name`, `tenants`,
//! `streams`, `batch`), their validation, and the settings the forwarder reads from them.
//! Every sink kind imports this; it imports only leaf types.

use std::time::Duration;

use serde::Deserialize;

use super::SinkFilter;
use crate::common::Issues;
use crate::common::names::{NAME_RULE, valid_name};

/// The keys every sink table has, whatever its `type`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonSinkConfig {
    pub name: Option<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub streams: Vec<String>,
    #[serde(default)]
    pub batch: BatchConfig,
}

impl CommonSinkConfig {
    /// The keys taken out of a sink table before the kind's own keys are read.
    pub const KEYS: [&'static str; 4] = ["name", "tenants", "streams", "batch"];
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max_records: Option<usize>,
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_bytes: Option<u64>,
    /// How long a partial batch waits for more records.
    #[serde(default, with = "humantime_serde")]
    pub linger: Option<Duration>,
}

/// Batch limits a sink kind starts from; the operator may only lower `max_bytes` below `hard_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct BatchDefaults {
    pub records: usize,
    pub bytes: u64,
    pub hard_bytes: u64,
    pub linger: Duration,
}

/// Settings every sink shares: routing and batching.
#[derive(Debug, Clone)]
pub struct CommonSinkSettings {
    pub name: String,
    pub filter: SinkFilter,
    pub batch_records: usize,
    pub batch_bytes: u64,
    /// How long a partial batch may wait for more records before it is sent anyway.
    pub linger: Duration,
}

pub fn validate(
    is: &mut Issues,
    prefix: &str,
    raw: &CommonSinkConfig,
    d: BatchDefaults,
    known_tenants: &[String],
) -> Option<CommonSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let name = is.required(&raw.name, p("name"));
    if let Some(n) = &name
        && !valid_name(n)
    {
        is.add(p("name"), NAME_RULE);
    }
    for t in &raw.tenants {
        if !known_tenants.contains(t) {
            is.add(p("tenants"), format!("unknown tenant {t:?}; configured: {}", known_tenants.join(", ")));
        }
    }
    for s in &raw.streams {
        // Only a trailing `*` is a pattern; strip it by character, never by byte.
        let body = s.strip_suffix('*').unwrap_or(s);
        if body.is_empty() || body.contains('*') {
            is.add(p("streams"), format!("{s:?}: use a source, a stream name or source/name, optionally ending in *"));
        }
    }
    let batch_records = raw.batch.max_records.unwrap_or(d.records);
    if batch_records == 0 || batch_records > 1_000_000 {
        is.add(p("batch.max_records"), "must be between 1 and 1000000");
    }
    let batch_bytes = raw.batch.max_bytes.unwrap_or(d.bytes);
    if batch_bytes == 0 || batch_bytes > d.hard_bytes {
        is.add(p("batch.max_bytes"), format!("must be between 1 and {} bytes for this receiver", d.hard_bytes));
    }
    let linger = raw.batch.linger.unwrap_or(d.linger);
    if linger > Duration::from_secs(60) {
        is.add(p("batch.linger"), "must be at most 60s; records would sit in the spool longer than needed");
    }
    Some(CommonSinkSettings {
        name: name?,
        filter: SinkFilter { tenants: raw.tenants.clone(), streams: raw.streams.clone() },
        batch_records,
        batch_bytes,
        linger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_patterns_ending_in_non_ascii_do_not_panic() {
        let mut is = Issues::new();
        let raw = CommonSinkConfig {
            name: Some("s".into()),
            streams: vec!["é".into(), "signins_*".into(), "a*b".into(), "*".into()],
            ..Default::default()
        };
        let d = BatchDefaults { records: 1, bytes: 1, hard_bytes: 1, linger: Duration::ZERO };
        validate(&mut is, "sinks[0]", &raw, d, &[]);
        let bad: Vec<_> = is.errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].starts_with("\"a*b\"") && bad[1].starts_with("\"*\""), "{bad:?}");
    }
}

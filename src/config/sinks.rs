//! Sink settings: the validated form of every `[[sinks]]` entry, and the checks all sinks share
//! (name, routing, batching). Each sink kind validates its own fields in its `config` module.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{BatchConfig, FileSinkConfig, SinkConfig};
use super::validate::{Issues, valid_name};
use crate::sinks::eventhubs::config::EventHubsSinkSettings;
use crate::sinks::{CommonSinkSettings, SinkFilter};
use crate::sinks::{http::config::HttpSinkSettings, syslog::config::SyslogSinkSettings};

#[derive(Debug, Clone)]
pub enum SinkSettings {
    File(FileSinkSettings),
    Http(HttpSinkSettings),
    Syslog(SyslogSinkSettings),
    EventHubs(EventHubsSinkSettings),
}

impl SinkSettings {
    pub fn name(&self) -> &str {
        &self.common().name
    }
    pub fn common(&self) -> &CommonSinkSettings {
        match self {
            SinkSettings::File(f) => &f.common,
            SinkSettings::Http(h) => &h.common,
            SinkSettings::Syslog(s) => &s.common,
            SinkSettings::EventHubs(e) => &e.common,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileSinkSettings {
    pub common: CommonSinkSettings,
    pub path: PathBuf,
    pub rotate_bytes: u64,
    pub envelope: bool,
    /// Archive mode: a hash-chained manifest entry per closed file.
    pub archive: bool,
    pub retention_days: Option<u32>,
}

/// Batch limits a sink kind starts from; the operator may only lower `max_bytes` below `hard_bytes`.
pub(crate) struct BatchDefaults {
    pub records: usize,
    pub bytes: u64,
    pub hard_bytes: u64,
    pub linger: Duration,
}

/// Fields on every sink table; checked the same way for every kind.
pub(crate) struct CommonRaw<'a> {
    pub name: &'a Option<String>,
    pub tenants: &'a [String],
    pub streams: &'a [String],
    pub batch: &'a BatchConfig,
}

pub(crate) fn common(
    is: &mut Issues,
    prefix: &str,
    raw: CommonRaw<'_>,
    d: BatchDefaults,
    known_tenants: &[String],
) -> Option<CommonSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let name = is.required(raw.name, p("name"));
    if let Some(n) = &name
        && !valid_name(n)
    {
        is.add(p("name"), "use 1-64 characters from A-Z a-z 0-9 - _ .");
    }
    for t in raw.tenants {
        if !known_tenants.contains(t) {
            is.add(p("tenants"), format!("unknown tenant {t:?}; configured: {}", known_tenants.join(", ")));
        }
    }
    for s in raw.streams {
        if s.is_empty() || s == "*" || s[..s.len() - 1].contains('*') {
            is.add(p("streams"), format!("{s:?}: use a source, a stream name or source/name, optionally ending in *"));
        }
    }
    let batch_records = raw.batch.max_records.unwrap_or(d.records);
    if batch_records == 0 {
        is.add(p("batch.max_records"), "must be above 0");
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
        filter: SinkFilter { tenants: raw.tenants.to_vec(), streams: raw.streams.to_vec() },
        batch_records,
        batch_bytes,
        linger,
    })
}

pub(crate) fn validate(is: &mut Issues, raw: &[SinkConfig], tenants: &[String]) -> Vec<SinkSettings> {
    if raw.is_empty() {
        is.add("sinks", "at least one [[sinks]] entry is required, or records would wait in the spool forever");
    }
    let mut sinks: Vec<SinkSettings> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let prefix = format!("sinks[{i}]");
        let built = match s {
            SinkConfig::File(f) => file_sink(is, &prefix, f, false, tenants).map(SinkSettings::File),
            SinkConfig::Archive(f) => file_sink(is, &prefix, f, true, tenants).map(SinkSettings::File),
            SinkConfig::Http(h) => {
                crate::sinks::http::config::validate(is, &prefix, h, tenants).map(SinkSettings::Http)
            }
            SinkConfig::Syslog(y) => {
                crate::sinks::syslog::config::validate(is, &prefix, y, tenants).map(SinkSettings::Syslog)
            }
            SinkConfig::Eventhubs(e) => {
                crate::sinks::eventhubs::config::validate(is, &prefix, e, tenants).map(SinkSettings::EventHubs)
            }
        };
        if let Some(b) = built {
            if sinks.iter().any(|o| o.name() == b.name()) {
                is.add(format!("{prefix}.name"), format!("duplicate sink name {:?}", b.name()));
            }
            sinks.push(b);
        }
    }
    sinks
}

fn file_sink(
    is: &mut Issues,
    prefix: &str,
    f: &FileSinkConfig,
    archive: bool,
    tenants: &[String],
) -> Option<FileSinkSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    let raw = CommonRaw { name: &f.name, tenants: &f.tenants, streams: &f.streams, batch: &f.batch };
    let d = BatchDefaults { records: 5000, bytes: 16 << 20, hard_bytes: 1 << 30, linger: Duration::ZERO };
    let common = common(is, prefix, raw, d, tenants);
    let path = is.required(&f.path, p("path"));
    let rotate_bytes = f.rotate_bytes.unwrap_or(256 << 20);
    if rotate_bytes < (1 << 20) {
        is.add(p("rotate_bytes"), "must be at least 1MiB");
    }
    match f.retention_days {
        Some(_) if !archive => {
            is.add(p("retention_days"), "only an archive sink (type = \"archive\") deletes old days");
        }
        Some(0) => is.add(p("retention_days"), "must be at least 1 day"),
        _ => {}
    }
    Some(FileSinkSettings {
        common: common?,
        path: path?,
        rotate_bytes,
        envelope: f.envelope,
        archive,
        retention_days: f.retention_days,
    })
}

//! `[tenants.management_activity]`: which content types, how often, how far back.

use std::time::Duration;

use serde::Deserialize;

use super::protocol::RETENTION;
use crate::common::Issues;

pub const CONTENT_TYPES: [&str; 5] =
    ["Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementActivityConfig {
    pub enabled: Option<bool>,
    pub content_types: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backfill: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retention_margin: Option<Duration>,
    pub fetch_concurrency: Option<usize>,
    pub requests_per_minute: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ManagementSettings {
    pub content_types: Vec<String>,
    pub poll_interval: Duration,
    pub overlap: Duration,
    pub backfill: Duration,
    pub retention_margin: Duration,
    pub fetch_concurrency: usize,
    pub requests_per_minute: u32,
}

/// `prefix` is the table's key path, e.g. `tenants[0].management_activity`.
pub fn validate(is: &mut Issues, prefix: &str, m: &ManagementActivityConfig) -> Option<ManagementSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    if m.enabled == Some(false) {
        return None;
    }
    let content_types =
        m.content_types.clone().unwrap_or_else(|| CONTENT_TYPES[..4].iter().map(|s| s.to_string()).collect());
    if content_types.is_empty() {
        is.add(p("content_types"), "must list at least one content type, or set enabled = false");
    }
    for (j, ct) in content_types.iter().enumerate() {
        if !CONTENT_TYPES.contains(&ct.as_str()) {
            is.add(
                format!("{prefix}.content_types[{j}]"),
                format!("{ct:?} is not one of {}", CONTENT_TYPES.join(", ")),
            );
        }
    }
    let s = ManagementSettings {
        content_types,
        poll_interval: m.poll_interval.unwrap_or(Duration::from_secs(300)),
        overlap: m.overlap.unwrap_or(Duration::from_secs(24 * 3600)),
        backfill: m.backfill.unwrap_or(RETENTION),
        retention_margin: m.retention_margin.unwrap_or(Duration::from_secs(300)),
        fetch_concurrency: m.fetch_concurrency.unwrap_or(8),
        requests_per_minute: m.requests_per_minute.unwrap_or(1800),
    };
    if s.poll_interval < Duration::from_secs(1) || s.poll_interval > Duration::from_secs(24 * 3600) {
        is.add(p("poll_interval"), "must be between 1s and 24h");
    }
    if s.overlap > RETENTION {
        is.add(p("overlap"), "must be at most 7d, the API's listing window");
    }
    if s.backfill > RETENTION {
        is.add(p("backfill"), "must be at most 7d: the API keeps content for 7 days");
    }
    if s.retention_margin < Duration::from_secs(60) || s.retention_margin > Duration::from_secs(6 * 3600) {
        is.add(p("retention_margin"), "must be between 1m and 6h");
    }
    if !(1..=64).contains(&s.fetch_concurrency) {
        is.add(p("fetch_concurrency"), "must be between 1 and 64");
    }
    if s.requests_per_minute == 0 {
        is.add(p("requests_per_minute"), "must be above 0");
    }
    Some(s)
}

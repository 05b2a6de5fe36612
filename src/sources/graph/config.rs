//! `[tenants.graph]`: which Graph and ARM streams, how often, how far back, with per-stream
//! overrides.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::spec::{self, SPECS, StreamSpec};
use crate::common::Issues;

/// How often an unavailable stream (no licence, no permission) is checked again.
pub const RECHECK_UNAVAILABLE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    pub enabled: Option<bool>,
    /// Streams to collect; default: every stream marked default-on.
    pub streams: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// Applies to every stream unless overridden; default per stream (2h sign-ins, 1h audits).
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    /// Do not query closer to now than this.
    #[serde(default, with = "humantime_serde")]
    pub lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backfill: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub recheck_unavailable: Option<Duration>,
    /// Client-side pacing of `auditLogs/*` calls (Microsoft allows 5 per 10 s per app per tenant).
    pub reports_requests_per_10s: Option<u32>,
    /// Azure subscriptions whose activity log is collected (one `azure_activity` stream each).
    #[serde(default)]
    pub azure_subscriptions: Vec<String>,
    #[serde(default)]
    pub overrides: BTreeMap<String, GraphStreamOverride>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphStreamOverride {
    #[serde(default, with = "humantime_serde")]
    pub overlap: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backfill: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct GraphStreamSettings {
    pub poll_interval: Duration,
    pub overlap: Duration,
    pub lag: Duration,
    pub backfill: Duration,
    pub recheck_unavailable: Duration,
}

#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// (spec, settings, Azure subscription for `azure_activity`).
    pub streams: Vec<(&'static StreamSpec, GraphStreamSettings, Option<String>)>,
    pub reports_requests_per_10s: u32,
}

/// `prefix` is the table's key path, e.g. `tenants[0].graph`. `global`: the tenant's cloud is
/// the global service; a stream offered only there is left out of the default set elsewhere,
/// and refused when listed.
pub fn validate(is: &mut Issues, prefix: &str, g: &GraphConfig, global: bool) -> Option<GraphSettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    if g.enabled == Some(false) {
        return None;
    }
    let names: Vec<String> = g.streams.clone().unwrap_or_else(|| {
        let mut v: Vec<String> = SPECS
            .iter()
            .filter(|s| s.default_on && (global || s.global_only.is_none()))
            .map(|s| s.name.to_string())
            .collect();
        if !g.azure_subscriptions.is_empty() {
            v.push("azure_activity".into());
        }
        v
    });
    for (j, sub) in g.azure_subscriptions.iter().enumerate() {
        if uuid::Uuid::parse_str(sub).is_err() {
            is.add(format!("{prefix}.azure_subscriptions[{j}]"), format!("{sub:?} is not a subscription GUID"));
        }
    }
    if names.iter().any(|n| n == "azure_activity") && g.azure_subscriptions.is_empty() {
        is.add(p("azure_subscriptions"), "azure_activity needs at least one subscription id");
    }
    let known = SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
    for k in g.overrides.keys() {
        if !names.contains(k) {
            is.add(
                p(&format!("overrides.{k}")),
                format!("{k:?} is not an enabled stream (enabled: {})", names.join(", ")),
            );
        }
    }
    let poll_interval = g.poll_interval.unwrap_or(Duration::from_secs(300));
    if poll_interval < Duration::from_secs(1) || poll_interval > Duration::from_secs(24 * 3600) {
        is.add(p("poll_interval"), "must be between 1s and 24h");
    }
    let recheck_unavailable = g.recheck_unavailable.unwrap_or(RECHECK_UNAVAILABLE);
    if recheck_unavailable < Duration::from_secs(1) || recheck_unavailable > Duration::from_secs(7 * 86_400) {
        is.add(p("recheck_unavailable"), "must be between 1s and 7d");
    }
    let mut streams = Vec::new();
    for (j, n) in names.iter().enumerate() {
        let Some(sp) = spec::find(n) else {
            is.add(format!("{prefix}.streams[{j}]"), format!("{n:?} is not one of {known}"));
            continue;
        };
        if let (Some(why), false) = (sp.global_only, global) {
            is.add(format!("{prefix}.streams[{j}]"), format!("{n:?} is not offered in this cloud: {why}"));
            continue;
        }
        let o = g.overrides.get(n).cloned().unwrap_or_default();
        let st = GraphStreamSettings {
            poll_interval,
            overlap: o.overlap.or(g.overlap).unwrap_or(sp.default_overlap),
            lag: o.lag.or(g.lag).unwrap_or(Duration::from_secs(300)),
            backfill: o.backfill.or(g.backfill).unwrap_or(crate::sources::management::protocol::RETENTION),
            recheck_unavailable,
        };
        let key = |k: &str| {
            if o.backfill.is_some() || o.overlap.is_some() || o.lag.is_some() {
                p(&format!("overrides.{n}.{k}"))
            } else {
                p(k)
            }
        };
        if st.backfill > sp.retention {
            is.add(
                key("backfill"),
                format!("must be at most {} (the API's retention)", humantime::format_duration(sp.retention)),
            );
        }
        if st.overlap > sp.retention {
            is.add(key("overlap"), "must be shorter than the API's retention");
        }
        if st.lag > Duration::from_secs(7 * 86_400) {
            is.add(key("lag"), "must be at most 7d");
        }
        if sp.name == "azure_activity" {
            for sub in &g.azure_subscriptions {
                streams.push((sp, st.clone(), Some(sub.clone())));
            }
        } else {
            streams.push((sp, st, None));
        }
    }
    if streams.is_empty() && g.streams.is_some() {
        is.add(p("streams"), "lists no stream; set enabled = false instead");
    }
    let rate = g.reports_requests_per_10s.unwrap_or(4);
    if !(1..=5).contains(&rate) {
        is.add(p("reports_requests_per_10s"), "must be 1 to 5: Microsoft allows 5 per 10 s per app per tenant");
    }
    Some(GraphSettings { streams, reports_requests_per_10s: rate })
}

//! `[tenants.audit_query]`: backfill from the unified audit log through the Graph audit log
//! query API (`shared/reference/microsoft-apis.md` §5): which API version, how windows are cut
//! and split, how many queries may run and be submitted, and an optional first-start job.

use std::time::Duration;

use serde::Deserialize;

use crate::common::Issues;
use crate::store::BackfillFilters;

/// Microsoft documents "at least" 50 queued or running queries and 200 submissions per rolling
/// 24 h per tenant, without the exact allocation: the defaults stay well below both.
const DEFAULT_ACTIVE: u32 = 10;
const DEFAULT_SUBMISSIONS: u32 = 150;
/// Audit (Premium) keeps a year; Audit (Standard) 180 days.
pub const MAX_DAYS: u32 = 365;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQueryConfig {
    pub enabled: Option<bool>,
    /// On the first start, backfill this many days (0: only when asked by `auditkeeper backfill`).
    pub backfill_days: Option<u32>,
    /// `beta` (default; where Microsoft moved the API back in 2025, MC1052169) or `v1.0`.
    pub api_version: Option<String>,
    /// A job's period is cut into windows this long.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// A truncated or failing window is halved down to this length.
    #[serde(default, with = "humantime_serde")]
    pub min_window: Option<Duration>,
    pub max_active_queries: Option<u32>,
    pub max_submissions_per_day: Option<u32>,
    /// Client-side pacing of this tenant's audit log query calls (default 5 per second).
    pub requests_per_second: Option<u32>,
    /// Records one query returns at most (Microsoft: at least 1,000,000). A query the API does
    /// not say is truncated but that returned this many is treated as truncated and split.
    pub record_limit: Option<u64>,
    /// How often the stream looks at its queries; a query still running is polled with
    /// back-off from this up to `max_status_interval`.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_status_interval: Option<Duration>,
    /// Filters of the first-start job.
    #[serde(default)]
    pub record_types: Vec<String>,
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    Beta,
    V1,
}

impl ApiVersion {
    pub fn path(self) -> &'static str {
        match self {
            ApiVersion::Beta => "beta",
            ApiVersion::V1 => "v1.0",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditQuerySettings {
    pub api_version: ApiVersion,
    pub backfill_days: u32,
    pub window: Duration,
    pub min_window: Duration,
    pub max_active_queries: u32,
    pub max_submissions_per_day: u32,
    pub requests_per_second: u32,
    pub record_limit: u64,
    pub poll_interval: Duration,
    pub max_status_interval: Duration,
    pub filters: BackfillFilters,
}

/// `explicit`: the table was written (not defaulted). `global`: the tenant's cloud offers the
/// API, which is global-service only: not GCC High, DoD or China (reference §5; GCC High
/// answers "Resource not found for the segment 'auditLog'", coe-starter-kit #10118).
pub fn validate(
    is: &mut Issues,
    prefix: &str,
    c: &AuditQueryConfig,
    explicit: bool,
    global: bool,
    cloud: &str,
) -> Option<AuditQuerySettings> {
    let p = |k: &str| format!("{prefix}.{k}");
    if c.enabled == Some(false) {
        return None;
    }
    if !global {
        if explicit {
            is.add(
                p("enabled"),
                format!("the audit log query API (backfill) is offered in the global service only, not in {cloud}; remove the table or set enabled = false"),
            );
        }
        return None;
    }
    let api_version = match c.api_version.as_deref() {
        None | Some("beta") => ApiVersion::Beta,
        Some("v1.0") => ApiVersion::V1,
        Some(other) => {
            is.add(p("api_version"), format!("{other:?} is not \"beta\" or \"v1.0\""));
            ApiVersion::Beta
        }
    };
    let window = c.window.unwrap_or(Duration::from_secs(86_400));
    let min_window = c.min_window.unwrap_or(Duration::from_secs(900));
    if window < Duration::from_secs(60) || window > Duration::from_secs(31 * 86_400) {
        is.add(p("window"), "must be between 1m and 31d");
    }
    if min_window < Duration::from_secs(1) || min_window > window {
        is.add(p("min_window"), "must be at least 1s and at most `window`");
    }
    let backfill_days = c.backfill_days.unwrap_or(0);
    if backfill_days > MAX_DAYS {
        is.add(
            p("backfill_days"),
            format!("must be at most {MAX_DAYS}: Audit (Premium) keeps a year, Audit (Standard) 180 days"),
        );
    }
    let max_active_queries = c.max_active_queries.unwrap_or(DEFAULT_ACTIVE);
    if !(1..=50).contains(&max_active_queries) {
        is.add(p("max_active_queries"), "must be 1 to 50 (Microsoft allows at least 50 queued or running queries)");
    }
    let max_submissions_per_day = c.max_submissions_per_day.unwrap_or(DEFAULT_SUBMISSIONS);
    if max_submissions_per_day == 0 {
        is.add(p("max_submissions_per_day"), "must be at least 1");
    } else if max_submissions_per_day > 200 {
        is.warn(
            p("max_submissions_per_day"),
            "above 200: Microsoft guarantees only 200 per rolling 24 h; a tenant with more licences may get more, otherwise the API answers 429 and the backfill waits",
        );
    }
    let requests_per_second = c.requests_per_second.unwrap_or(5);
    if !(1..=100).contains(&requests_per_second) {
        is.add(p("requests_per_second"), "must be 1 to 100");
    }
    let record_limit = c.record_limit.unwrap_or(1_000_000);
    if record_limit == 0 {
        is.add(p("record_limit"), "must be at least 1");
    }
    let poll_interval = c.poll_interval.unwrap_or(Duration::from_secs(30));
    let max_status_interval = c.max_status_interval.unwrap_or(Duration::from_secs(300));
    if poll_interval < Duration::from_millis(50) || poll_interval > Duration::from_secs(3600) {
        is.add(p("poll_interval"), "must be between 50ms and 1h");
    }
    if max_status_interval < poll_interval {
        is.add(p("max_status_interval"), "must be at least poll_interval");
    }
    let filters = BackfillFilters {
        record_types: c.record_types.clone(),
        operations: c.operations.clone(),
        users: c.users.clone(),
    };
    check_filters(is, prefix, &filters);
    Some(AuditQuerySettings {
        api_version,
        backfill_days,
        window,
        min_window,
        max_active_queries,
        max_submissions_per_day,
        requests_per_second,
        record_limit,
        poll_interval,
        max_status_interval,
        filters,
    })
}

/// Filters are sent to Microsoft as given: an empty one would match nothing or everything,
/// depending on the field, so it is refused.
pub fn check_filters(is: &mut Issues, prefix: &str, f: &BackfillFilters) {
    for (key, list) in [("record_types", &f.record_types), ("operations", &f.operations), ("users", &f.users)] {
        if list.iter().any(|v| v.trim().is_empty()) {
            is.add(format!("{prefix}.{key}"), "holds an empty value");
        }
    }
}

//! `[spool]`: how much may wait for the sinks before polling pauses, and how long dedupe keys
//! are kept.

use std::time::Duration;

use serde::Deserialize;

use crate::common::Issues;

const DAY: Duration = Duration::from_secs(86_400);
/// Microsoft re-delivers records for as long as the Management Activity API keeps content.
const REDELIVERY_WINDOW: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_bytes: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub seen_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub prune_interval: Option<Duration>,
    /// Polling pauses when the state directory's filesystem has less free than this.
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub min_free_bytes: Option<u64>,
    /// The dead-letter table's cap; a sink that would add more waits until they are handled.
    #[serde(default, deserialize_with = "crate::common::size::opt")]
    pub max_dead_letter_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub seen_ttl: Duration,
    pub prune_interval: Duration,
    pub min_free_bytes: u64,
    pub max_dead_letter_bytes: u64,
}

pub fn validate(is: &mut Issues, raw: &SpoolConfig) -> SpoolSettings {
    let spool = SpoolSettings {
        max_bytes: raw.max_bytes.unwrap_or(10 << 30),
        max_age: raw.max_age.unwrap_or(30 * DAY),
        seen_ttl: raw.seen_ttl.unwrap_or(8 * DAY),
        // Each pass reads every dedupe key (8 days of them) to find the expired ones: every
        // minute, that grew with the tenant's size for nothing, as a key expires days after
        // it was written. Kept an hour longer, an expired key only dedupes an hour longer.
        prune_interval: raw.prune_interval.unwrap_or(Duration::from_secs(3600)),
        min_free_bytes: raw.min_free_bytes.unwrap_or(64 << 20),
        max_dead_letter_bytes: raw.max_dead_letter_bytes.unwrap_or(1 << 30),
    };
    if spool.min_free_bytes > (1 << 40) {
        is.add("spool.min_free_bytes", "must be at most 1TiB");
    }
    if spool.max_dead_letter_bytes < (1 << 20) {
        is.add("spool.max_dead_letter_bytes", "must be at least 1MiB");
    }
    if spool.max_bytes < (1 << 20) {
        is.add("spool.max_bytes", "must be at least 1MiB");
    }
    if spool.seen_ttl <= REDELIVERY_WINDOW {
        is.add(
            "spool.seen_ttl",
            "must be longer than the API's 7-day window (Microsoft re-delivers records days later); default 8d",
        );
    }
    if spool.seen_ttl > 3650 * DAY {
        is.add("spool.seen_ttl", "must be at most 3650d");
    }
    if spool.max_age < Duration::from_secs(3600) || spool.max_age > 3650 * DAY {
        is.add("spool.max_age", "must be between 1h and 3650d");
    }
    if spool.prune_interval < Duration::from_secs(1) || spool.prune_interval > DAY {
        is.add("spool.prune_interval", "must be between 1s and 1d");
    }
    spool
}

//! The one window planner: which time windows a polling cycle reads, for every source.
//!
//! Pure: a cursor, a clock reading and the source's limits in; windows and any gap out. Each
//! cycle starts `overlap` behind the stored cursor, because Microsoft publishes records late; a
//! first start reaches back `backfill`. Nothing is planned before the oldest instant the API
//! still serves (its retention, less a margin for the request's own latency), nor after
//! `now - lag`.
//!
//! INVARIANT: the windows are contiguous, each at most `max_window` long, and together cover
//! `[max(cursor - overlap, floor), now - lag)`. When the cursor itself is older than the floor,
//! the part in between can no longer be read: it is returned as the gap, never silently skipped.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// What one stream's API allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How far back the API keeps data.
    pub retention: Duration,
    /// Kept inside retention, so the oldest window is still served when the request lands.
    pub margin: Duration,
    /// The longest window one query may cover.
    pub max_window: Duration,
    /// How close to now a window may end.
    pub lag: Duration,
}

/// Where to start: what the stream was configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// How far back a first start reads.
    pub backfill: Duration,
    /// How far behind the cursor each cycle re-reads.
    pub overlap: Duration,
}

pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// Pages one window may take, by default (`http.max_pages_per_window`), before the source stops
/// it with an error: a next-page link that loops would otherwise keep a stream busy forever.
pub const MAX_PAGES: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub windows: Vec<Window>,
    /// `[cursor, floor)`: older than the API still serves; records there may be lost.
    pub gap: Option<Window>,
}

pub fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Whole seconds: the APIs' time formats have no fraction.
fn trunc_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn minus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(dur(d)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub fn plan(cursor: Option<DateTime<Utc>>, now: DateTime<Utc>, reach: Reach, limits: Limits) -> Plan {
    let floor = minus(now, limits.retention.saturating_sub(limits.margin));
    let wanted = match cursor {
        Some(c) => minus(c, reach.overlap),
        None => minus(now, reach.backfill),
    };
    let gap = match cursor {
        Some(c) if c < floor => Some((c, floor)),
        _ => None,
    };
    // A start truncated down could fall just before the floor; round it up instead.
    let start = wanted.max(floor);
    let start =
        if trunc_secs(start) < floor { trunc_secs(start) + chrono::Duration::seconds(1) } else { trunc_secs(start) };
    let end = trunc_secs(minus(now, limits.lag));
    let step = dur(limits.max_window.max(Duration::from_secs(1)));
    let mut windows = Vec::new();
    let mut s = start;
    while s < end {
        let e = s.checked_add_signed(step).map_or(end, |e| e.min(end));
        windows.push((s, e));
        s = e;
    }
    Plan { windows, gap }
}

/// Reads a stored cursor: RFC 3339, or the API's naive UTC form `2026-11-21T12:00:00`.
pub fn parse_cursor(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok().map(|n| n.and_utc()))
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;

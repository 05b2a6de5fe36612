//! The server's idea of "now", learned from each response's `Date` header.
//!
//! Listing windows must be legal by Microsoft's clock, not ours (AF20030/AF20055 otherwise), so
//! every window is computed from `ServerClock::now`. Only answers of the configured endpoint
//! reach here (see `boundary`), and a `Date` further than `MAX_SKEW` from the local clock is
//! ignored and logged: a wrong header must not push cursors into the future, where a window
//! would skip everything until the real clock caught up.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// The largest server-minus-local offset believed. Beyond it the local clock or the header is
/// wrong; windows then follow the local clock, and the operator is told.
pub const MAX_SKEW_MS: i64 = 3_600_000;

#[derive(Debug, Default)]
pub struct ServerClock {
    /// server time minus local time, in milliseconds.
    offset_ms: AtomicI64,
    warned: std::sync::atomic::AtomicBool,
    warned_absurd: std::sync::atomic::AtomicBool,
    /// The last `Date` read and when: the same value again within a second would teach
    /// nothing (it has one-second resolution), so it is not parsed again. At 30 calls a
    /// second, parsing every header was about 0.5% of the daemon's CPU.
    last: std::sync::Mutex<(String, Option<std::time::Instant>)>,
}

impl ServerClock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Learns the offset from an HTTP `Date` header value.
    pub fn observe(&self, date_header: &str) {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.0 == date_header && last.1.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
                return;
            }
            last.0.clear();
            last.0.push_str(date_header);
            last.1 = Some(std::time::Instant::now());
        }
        let Ok(server) = httpdate::parse_http_date(date_header) else {
            return;
        };
        let server: DateTime<Utc> = server.into();
        let offset = (server - Utc::now()).num_milliseconds();
        if offset.abs() > MAX_SKEW_MS {
            if !self.warned_absurd.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    skew_seconds = offset / 1000,
                    "ignoring a Date header more than an hour from the local clock; check the host's time (NTP)"
                );
            }
            return;
        }
        // `Date` has one-second resolution; ignore jitter below that.
        self.warned_absurd.store(false, Ordering::Relaxed);
        if (offset - self.offset_ms()).abs() >= 1500 {
            self.offset_ms.store(offset, Ordering::Relaxed);
            if offset.abs() > 300_000 && !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    skew_seconds = offset / 1000,
                    "local clock differs from Microsoft's by more than 5 minutes; windows follow the server clock"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(offset_secs: i64) -> String {
        httpdate::fmt_http_date((Utc::now() + chrono::Duration::seconds(offset_secs)).into())
    }

    #[test]
    fn a_skew_within_an_hour_is_learned_and_a_wilder_one_ignored() {
        let c = ServerClock::default();
        c.observe(&date(1800));
        assert!((c.offset_ms() - 1_800_000).abs() < 2_000, "{}", c.offset_ms());
        c.observe(&date(75 * 365 * 86_400));
        assert!((c.offset_ms() - 1_800_000).abs() < 2_000, "a Date decades ahead is ignored");
        c.observe(&date(-7200));
        assert!((c.offset_ms() - 1_800_000).abs() < 2_000, "and so is one two hours behind");
        c.observe("not a date");
        assert!((c.now() - Utc::now()).num_seconds() <= 1801);
    }
}

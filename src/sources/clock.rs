//! The server's idea of "now", learned from each response's `Date` header.
//!
//! Listing windows must be legal by Microsoft's clock, not ours (AF20030/AF20055 otherwise), so
//! every window is computed from `ServerClock::now`.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct ServerClock {
    /// server time minus local time, in milliseconds.
    offset_ms: AtomicI64,
    warned: std::sync::atomic::AtomicBool,
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
        let Ok(server) = httpdate::parse_http_date(date_header) else {
            return;
        };
        let server: DateTime<Utc> = server.into();
        let offset = (server - Utc::now()).num_milliseconds();
        // `Date` has one-second resolution; ignore jitter below that.
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

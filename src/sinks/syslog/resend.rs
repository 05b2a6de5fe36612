//! What a stream receiver may have dropped, and resending it.
//!
//! Syslog over TCP or TLS has no acknowledgement above TCP's: a batch is confirmed once the
//! receiver's kernel has acknowledged every byte, but a receiver that stops (rsyslog on SIGTERM,
//! a SIEM collector being upgraded) throws away what sits in its socket buffer and in its own
//! read buffers. Those records were confirmed, and their offset committed. So every stream
//! connection keeps the frames it confirmed recently, and when the receiver closes the
//! connection (or it fails), the frames confirmed within `window` before that moment are sent
//! again, first thing, on the next connection.
//!
//! *A confirmed frame stays here until a later connection has carried it again or it is older
//! than `window` at the moment its connection ended.* A connection that closes while idle for
//! longer than `window` (an idle timeout) resends nothing. The cost is duplicates, at most
//! `max_bytes` per connection loss; every message carries its record's `id` for the SIEM to
//! drop them. What is held lives in memory: a daemon killed in the same moment as its receiver
//! can still lose it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

struct Sent {
    at: Instant,
    bytes: Vec<u8>,
    records: usize,
}

/// Frames to send again before the next batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub bytes: Vec<u8>,
    pub records: usize,
}

pub struct Resend {
    window: Duration,
    max_bytes: usize,
    /// Confirmed on the current connection, oldest first, at most `max_bytes` in all.
    recent: VecDeque<Sent>,
    recent_bytes: usize,
    pending: Pending,
}

impl Resend {
    pub fn new(window: Duration, max_bytes: usize) -> Resend {
        Resend { window, max_bytes, recent: VecDeque::new(), recent_bytes: 0, pending: Pending::default() }
    }

    /// The receiver acknowledged `frames` (holding `records` messages) at `at`.
    pub fn confirmed(&mut self, frames: &[u8], records: usize, at: Instant) {
        if self.window.is_zero() {
            return;
        }
        if frames.len() > self.max_bytes {
            // Holding older frames but not this newer one would resend the wrong ones.
            self.clear_recent();
            return;
        }
        self.recent.push_back(Sent { at, bytes: frames.to_vec(), records });
        self.recent_bytes += frames.len();
        while self.recent_bytes > self.max_bytes {
            let old = self.recent.pop_front().expect("bytes counted are held");
            self.recent_bytes -= old.bytes.len();
        }
    }

    /// The connection ended at `closed_at`: what it confirmed within `window` before then is
    /// to be sent again.
    pub fn connection_lost(&mut self, closed_at: Instant) {
        let since = closed_at.checked_sub(self.window);
        for s in self.recent.drain(..) {
            if since.is_none_or(|t| s.at >= t) {
                self.pending.bytes.extend_from_slice(&s.bytes);
                self.pending.records += s.records;
            }
        }
        // Pending is filled only from one connection's `recent`, and emptied by the first
        // connection that confirms it, so it too stays within `max_bytes`.
        self.recent_bytes = 0;
    }

    /// Frames to write on a new connection before the batch, if any.
    pub fn pending(&self) -> &Pending {
        &self.pending
    }

    /// A new connection carried and confirmed the pending frames: they count as confirmed now.
    pub fn pending_delivered(&mut self, at: Instant) -> usize {
        let p = std::mem::take(&mut self.pending);
        if p.records > 0 {
            self.confirmed(&p.bytes, p.records, at);
        }
        p.records
    }

    fn clear_recent(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_confirmed_within_the_window_before_the_close_are_resent_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut r = Resend::new(Duration::from_secs(10), 1 << 20);
        r.confirmed(b"old", 1, t0);
        r.confirmed(b"a", 2, t0 + 20 * s);
        r.confirmed(b"b", 3, t0 + 25 * s);
        r.connection_lost(t0 + 29 * s);
        assert_eq!(r.pending(), &Pending { bytes: b"ab".to_vec(), records: 5 });
        // Resent and confirmed on the next connection: held as recent, no longer pending.
        assert_eq!(r.pending_delivered(t0 + 30 * s), 5);
        assert_eq!(r.pending(), &Pending::default());
        // That connection ends too, at once: they go again, with what it confirmed since.
        r.confirmed(b"c", 1, t0 + 31 * s);
        r.connection_lost(t0 + 32 * s);
        assert_eq!(r.pending(), &Pending { bytes: b"abc".to_vec(), records: 6 });
    }

    #[test]
    fn an_idle_close_resends_nothing_and_the_bytes_stay_bounded() {
        let t0 = Instant::now();
        let mut r = Resend::new(Duration::from_secs(10), 4);
        r.confirmed(b"12", 1, t0);
        r.confirmed(b"34", 1, t0);
        r.confirmed(b"56", 1, t0);
        assert_eq!(r.recent_bytes, 4, "the oldest frame made room");
        r.connection_lost(t0 + Duration::from_secs(600));
        assert_eq!(r.pending(), &Pending::default(), "an idle timeout is not a loss");
        // A batch larger than the allowance is not kept at all, and clears what was.
        r.confirmed(b"12", 1, t0);
        r.confirmed(b"123456", 3, t0);
        r.connection_lost(t0);
        assert_eq!(r.pending(), &Pending::default());
    }

    #[test]
    fn a_zero_window_keeps_nothing() {
        let t0 = Instant::now();
        let mut r = Resend::new(Duration::ZERO, 1 << 20);
        r.confirmed(b"a", 1, t0);
        r.connection_lost(t0);
        assert_eq!(r.pending_delivered(t0), 0);
    }
}

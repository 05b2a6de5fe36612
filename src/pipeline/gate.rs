//! The spool gate: closed while the state is over `max_bytes`, holds records older than
//! `max_age`, or the disk is (nearly) full. Sources wait at the gate before each request;
//! nothing is ever dropped.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the gate is decided on, measured once a second by maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Bytes the database uses: spool, dedupe keys, dead letters, ledger.
    pub db_bytes: u64,
    pub max_bytes: u64,
    pub oldest_undelivered: Duration,
    pub max_age: Duration,
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    /// A write failed for lack of space and no write has succeeded since.
    pub disk_full: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Close(String),
    Open,
    /// Between the close and the reopen thresholds: leave the gate as it is.
    Keep,
}

/// Closes on any limit, and opens only well inside all of them, so the gate does not flap.
pub fn decide(r: &Reading) -> Decision {
    let mb = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
    if r.disk_full {
        return Decision::Close(format!(
            "DISK FULL: the store could not write; {} free. Free space on the state directory's filesystem; polling resumes by itself",
            mb(r.free_bytes)
        ));
    }
    if r.free_bytes < r.min_free_bytes {
        return Decision::Close(format!(
            "disk almost full: {} free, under spool.min_free_bytes = {}; polling resumes when twice that is free",
            mb(r.free_bytes),
            mb(r.min_free_bytes)
        ));
    }
    if r.db_bytes > r.max_bytes {
        return Decision::Close(format!(
            "the state holds {} bytes (spool, dedupe keys, dead letters), over spool.max_bytes = {}: a sink is not keeping up",
            r.db_bytes, r.max_bytes
        ));
    }
    if r.oldest_undelivered > r.max_age {
        return Decision::Close(format!(
            "oldest undelivered record waited {}, over spool.max_age = {}: a sink is not delivering",
            humantime::format_duration(Duration::from_secs(r.oldest_undelivered.as_secs())),
            humantime::format_duration(r.max_age)
        ));
    }
    let roomy = r.free_bytes >= r.min_free_bytes.saturating_mul(2);
    if r.db_bytes < r.max_bytes / 10 * 9 && roomy { Decision::Open } else { Decision::Keep }
}

#[derive(Clone)]
pub struct SpoolGate {
    tx: watch::Sender<Option<String>>,
}

impl Default for SpoolGate {
    fn default() -> Self {
        SpoolGate { tx: watch::Sender::new(None) }
    }
}

impl SpoolGate {
    /// Closes the gate with a reason; returns true if it was open.
    pub fn close(&self, reason: String) -> bool {
        let mut was_open = false;
        self.tx.send_if_modified(|v| {
            was_open = v.is_none();
            let changed = v.as_deref() != Some(reason.as_str());
            *v = Some(reason.clone());
            changed
        });
        was_open
    }

    /// Opens the gate; returns true if it was closed.
    pub fn open(&self) -> bool {
        let mut was_closed = false;
        self.tx.send_if_modified(|v| {
            was_closed = v.is_some();
            v.take().is_some()
        });
        was_closed
    }

    pub fn reason(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    /// Waits until the gate is open (or shutdown). Returns false on shutdown.
    pub async fn wait_open(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.tx.subscribe();
        tokio::select! {
            r = rx.wait_for(|v| v.is_none()) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading {
            db_bytes: 100,
            max_bytes: 1000,
            oldest_undelivered: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            free_bytes: 10 << 30,
            min_free_bytes: 1 << 20,
            disk_full: false,
        }
    }

    #[test]
    fn the_gate_closes_on_any_limit_and_reopens_only_well_inside_them() {
        assert_eq!(decide(&reading()), Decision::Open);
        let close = |r: Reading| match decide(&r) {
            Decision::Close(why) => why,
            d => panic!("{d:?}"),
        };
        assert!(close(Reading { disk_full: true, ..reading() }).starts_with("DISK FULL"));
        assert!(close(Reading { free_bytes: 1000, ..reading() }).contains("spool.min_free_bytes"));
        assert!(close(Reading { db_bytes: 1001, ..reading() }).contains("spool.max_bytes"));
        assert!(
            close(Reading { oldest_undelivered: Duration::from_secs(7200), ..reading() }).contains("spool.max_age")
        );
        // Dedupe keys and dead letters count: the database's used bytes, not the spool alone.
        assert_eq!(decide(&Reading { db_bytes: 950, ..reading() }), Decision::Keep);
        assert_eq!(decide(&Reading { free_bytes: (1 << 20) + 1, ..reading() }), Decision::Keep);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_holds_sources_until_it_opens_and_says_why() {
        let gate = SpoolGate::default();
        let stop = CancellationToken::new();
        assert!(gate.wait_open(&stop).await, "open at start");
        assert!(gate.close("spool full".into()));
        assert!(!gate.close("spool still full".into()), "already closed");
        assert_eq!(gate.reason().as_deref(), Some("spool still full"));
        let g = gate.clone();
        let s = stop.clone();
        let waiter = tokio::spawn(async move { g.wait_open(&s).await });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished(), "a source waits as long as the gate is closed");
        assert!(gate.open());
        assert!(!gate.open(), "already open");
        assert!(waiter.await.unwrap(), "opening lets it through");
        assert_eq!(gate.reason(), None);
    }

    #[tokio::test]
    async fn shutdown_releases_a_waiting_source() {
        let gate = SpoolGate::default();
        gate.close("spool full".into());
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!gate.wait_open(&stop).await);
    }
}

//! The spool gate: closed while the spool is over `max_bytes` or holds records older than
//! `max_age`. Sources wait at the gate before each request; nothing is ever dropped.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    use std::time::Duration;

    use super::*;

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

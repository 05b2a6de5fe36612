//! The daemon's two-phase stop. First polling stops (every source finishes or abandons its
//! current step; each durable step is its own transaction, so nothing is half done). Then the
//! forwarders drain: they keep delivering until their sink has everything, or a deadline passes
//! and what is left simply stays in the spool for the next start.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

// tokio's clock, so tests with a paused clock see the deadline pass.
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stop: CancellationToken,
    drain: CancellationToken,
    /// Set once, when draining begins; never changes after, so no lock is needed to read it.
    deadline: OnceLock<Instant>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks the sources to stop polling (a signal, or a fatal task failure).
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// Cancelled when polling must stop; sources select on it.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.inner.stop
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Starts draining: forwarders deliver what they can until `timeout` from now.
    pub fn begin_drain(&self, timeout: Duration) {
        let _ = self.inner.deadline.set(Instant::now() + timeout);
        self.inner.drain.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.inner.drain.is_cancelled()
    }

    /// Resolves when draining begins.
    pub async fn draining(&self) {
        self.inner.drain.cancelled().await
    }

    /// True once draining began and its deadline has passed: stop retrying, keep the spool.
    pub fn past_deadline(&self) -> bool {
        self.inner.deadline.get().is_some_and(|d| Instant::now() > *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_follows_stop_and_the_deadline_only_counts_once_draining() {
        let s = Shutdown::new();
        assert!(!s.is_stopping() && !s.is_draining() && !s.past_deadline());
        s.stop();
        assert!(s.is_stopping() && !s.is_draining());
        s.begin_drain(Duration::ZERO);
        s.draining().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(s.past_deadline());
        // A second call does not move the deadline.
        s.begin_drain(Duration::from_secs(3600));
        assert!(s.past_deadline());
    }
}

//! The one retry policy: capped exponential backoff with jitter, honouring a server's
//! `Retry-After` up to a cap. Source calls and sink sends both use it, with their own limits.
//!
//! INVARIANT: no wait is ever longer than `max(max_delay, retry_after_cap)`, whatever a server
//! answers, so a hostile `Retry-After: 1000000000` cannot park a stream or a sink for decades.

use std::time::Duration;

use backon::ExponentialBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Attempts before the caller gives up and reports; `None` retries forever.
    pub max_attempts: Option<usize>,
    /// The longest wait a server's `Retry-After` may impose.
    pub retry_after_cap: Duration,
}

impl RetryPolicy {
    /// Microsoft API calls: a few quick retries inside one call, then the stream's driver
    /// records the failure and tries again next cycle.
    pub const SOURCE: RetryPolicy = RetryPolicy {
        min_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(60),
        max_attempts: Some(8),
        retry_after_cap: Duration::from_secs(15 * 60),
    };

    /// Backfill calls: fewer, shorter retries. A records page that keeps failing is cured by
    /// splitting its window (users report HTTP 500 past about 20,000 records of one query), not
    /// by minutes of retrying the same page.
    pub const BACKFILL: RetryPolicy = RetryPolicy {
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        max_attempts: Some(2),
        retry_after_cap: Duration::from_secs(15 * 60),
    };

    /// Sink sends: forever, because the records wait safely in the spool meanwhile.
    pub const SINK: RetryPolicy = RetryPolicy {
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(30),
        max_attempts: None,
        retry_after_cap: Duration::from_secs(300),
    };

    pub fn backoff(&self) -> ExponentialBuilder {
        let b =
            ExponentialBuilder::default().with_jitter().with_min_delay(self.min_delay).with_max_delay(self.max_delay);
        match self.max_attempts {
            Some(n) => b.with_max_times(n),
            None => b.without_max_times(),
        }
    }

    /// A server's `Retry-After`, capped.
    pub fn capped(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.retry_after_cap)
    }

    /// How long to wait before the next attempt: the backoff step, or the server's capped
    /// `Retry-After` when that is longer.
    pub fn delay(&self, backoff: Duration, retry_after: Option<Duration>) -> Duration {
        backoff.max(retry_after.map(|r| self.capped(r)).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let p = RetryPolicy::SOURCE;
        assert_eq!(p.delay(Duration::from_secs(1), Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(p.delay(Duration::from_secs(9), Some(Duration::from_secs(7))), Duration::from_secs(9));
        assert_eq!(p.delay(Duration::from_secs(1), Some(Duration::from_secs(1_000_000_000))), Duration::from_secs(900));
        assert_eq!(RetryPolicy::SINK.delay(Duration::ZERO, Some(Duration::MAX)), Duration::from_secs(300));
    }

    #[test]
    fn backoff_steps_stay_within_bounds_and_sources_give_up() {
        let steps: Vec<Duration> = RetryPolicy::SOURCE.backoff().build().collect();
        assert_eq!(steps.len(), 8);
        // Jitter adds up to one more step.
        assert!(steps.iter().all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_secs(120)), "{steps:?}");
        assert!(RetryPolicy::SINK.backoff().build().take(1000).count() == 1000, "sinks retry forever");
    }
}

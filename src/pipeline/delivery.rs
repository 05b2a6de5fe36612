//! Getting one batch to a sink: retry what is transient, bisect what is refused.
//!
//! INVARIANT: `deliver` returns only when every record of the batch was either confirmed by the
//! receiver or singled out as refused (the caller stores those in the dead-letter table before
//! moving the offset), or when the shutdown deadline passed, in which case nothing is committed
//! and the whole batch is resent next start. A poison record never blocks the stream and is never
//! dropped silently.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use super::ingest::Pipeline;
use crate::sinks::{Batch, BuiltSink, OutRecord, SinkError};

/// Outcome of sending one (sub-)batch until the receiver decides.
enum Decision {
    Sent,
    Refused(String),
    Poison(usize, String),
    Shutdown,
}

pub(super) struct Delivery<'a> {
    pub pipeline: &'a Arc<Pipeline>,
    pub sink: &'a mut BuiltSink,
    pub drain: &'a CancellationToken,
    pub past_deadline: &'a (dyn Fn() -> bool + Sync),
}

impl Delivery<'_> {
    /// Delivers `batch`; returns the records the receiver refused for good, by index, with its
    /// reason, or `None` if shutdown interrupted delivery.
    pub async fn deliver(&mut self, batch: &Batch) -> Option<Vec<(usize, String)>> {
        let mut refused = Vec::new();
        // Sub-batches as ranges of the original batch; a stack processed last-in first-out, with
        // the second half pushed first, keeps delivery in spool order.
        let mut todo: Vec<Range<usize>> = vec![0..batch.records.len()];
        let mut first = true;
        while let Some(r) = todo.pop() {
            if r.is_empty() {
                continue;
            }
            let decision = if first {
                first = false;
                self.send_until_decided(batch).await
            } else {
                let records: Vec<OutRecord> = batch.records[r.clone()].to_vec();
                let bytes = records.iter().map(|x| x.raw.len() as u64).sum();
                self.send_until_decided(&Batch { records, bytes }).await
            };
            // An index outside the batch would be a sink bug; treat it as a refusal and bisect.
            let decision = match decision {
                Decision::Poison(i, reason) if i >= r.len() => Decision::Refused(reason),
                d => d,
            };
            match decision {
                Decision::Sent => {}
                Decision::Shutdown => return None,
                Decision::Refused(reason) if r.len() == 1 => refused.push((r.start, reason)),
                Decision::Refused(reason) => {
                    tracing::warn!(sink = %self.sink.name(), records = r.len(), reason = %reason,
                        "receiver refused a batch; splitting it to find the poison record(s)");
                    let mid = r.start + r.len() / 2;
                    todo.push(mid..r.end);
                    todo.push(r.start..mid);
                }
                Decision::Poison(i, reason) => {
                    refused.push((r.start + i, reason));
                    todo.push(r.start + i + 1..r.end);
                    todo.push(r.start..r.start + i);
                }
            }
        }
        Some(refused)
    }

    /// Sends until the receiver accepts or refuses for good; transient failures are retried with
    /// exponential backoff and jitter, at least as long as the receiver's `Retry-After`.
    async fn send_until_decided(&mut self, batch: &Batch) -> Decision {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build();
        let mut failures = 0u32;
        let name = self.sink.name().to_string();
        loop {
            let err = match self.sink.sink.send(batch).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(sink = %name, failures, "sink recovered");
                    }
                    return Decision::Sent;
                }
                Err(SinkError::Rejected(reason)) => {
                    self.note_error(&format!("rejected: {reason}")).await;
                    return Decision::Refused(reason);
                }
                Err(SinkError::Poison { index, reason }) => return Decision::Poison(index, reason),
                Err(e) => e,
            };
            failures += 1;
            let label = if matches!(err, SinkError::Throttled { .. }) { "throttled" } else { "error" };
            metrics::counter!("auditkeeper_sink_errors_total", "sink" => name.clone(), "kind" => label).increment(1);
            if failures == 1 || failures.is_power_of_two() {
                tracing::error!(sink = %name, error = %err, failures, records = batch.records.len(),
                    "sink send failed; records stay in the spool and will be retried");
            }
            self.note_error(&err.to_string()).await;
            if self.drain.is_cancelled() && (self.past_deadline)() {
                return Decision::Shutdown;
            }
            let mut delay = backoff.next().unwrap_or(Duration::from_secs(30));
            if let SinkError::Throttled { after: Some(after), .. } = err {
                delay = delay.max(after.min(Duration::from_secs(300)));
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // During shutdown keep retrying until the deadline, but notice it promptly.
                _ = self.drain.cancelled(), if !self.drain.is_cancelled() => {}
            }
        }
    }

    async fn note_error(&self, message: &str) {
        let (n, msg) = (self.sink.name().to_string(), message.to_string());
        let _ = self.pipeline.blocking(move |s| s.record_sink_error(&n, &msg)).await;
    }
}

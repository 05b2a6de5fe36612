//! Getting one batch to a sink: retry what is transient, resend only what the receiver has not
//! confirmed, bisect what is refused.
//!
//! INVARIANT: `deliver` returns only when every record of the batch was either confirmed by the
//! receiver or singled out as refused (the caller stores those in the dead-letter table before
//! moving the offset), or when the shutdown deadline passed, in which case nothing is committed
//! and the whole batch is resent next start. A poison record never blocks the stream and is never
//! dropped silently.
//!
//! Progress within a batch lives here, not in each sink: a sink marks what the receiver took in
//! `Accepted`, and the next attempt carries only the rest, by index into the original batch.

use std::borrow::Cow;

use backon::BackoffBuilder;

use super::shutdown::Shutdown;
use crate::common::RetryPolicy;
use crate::sinks::{Accepted, Batch, Sink, SinkError};
use crate::telemetry::events;

/// Where delivery reports a failed attempt (the store, for `status`; a list, in tests).
#[async_trait::async_trait]
pub trait ErrorReport: Send + Sync {
    async fn sink_error(&self, message: &str);
}

/// Outcome of sending a part of the batch until the receiver decides.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Sent,
    /// The receiver refused every record still in `left`, all at once.
    Refused {
        left: Vec<usize>,
        reason: String,
    },
    /// Record `index` can never be delivered; `left` are the others still to send.
    Poison {
        index: usize,
        left: Vec<usize>,
        reason: String,
    },
    Shutdown,
}

pub struct Delivery<'a> {
    pub name: &'a str,
    pub sink: &'a mut dyn Sink,
    pub shutdown: &'a Shutdown,
    pub report: &'a dyn ErrorReport,
    pub policy: RetryPolicy,
}

impl Delivery<'_> {
    /// Delivers `batch`; returns the records the receiver refused for good, by index, with its
    /// reason, or `None` if shutdown interrupted delivery.
    pub async fn deliver(&mut self, batch: &Batch) -> Option<Vec<(usize, String)>> {
        let mut refused = Vec::new();
        // Parts as index lists into the batch; a stack processed last-in first-out, with the
        // second half pushed first, keeps delivery in spool order.
        let mut todo: Vec<Vec<usize>> = vec![(0..batch.records.len()).collect()];
        while let Some(part) = todo.pop() {
            if part.is_empty() {
                continue;
            }
            match self.send_until_decided(batch, part).await {
                Decision::Sent => {}
                Decision::Shutdown => return None,
                Decision::Refused { left, reason } if left.len() == 1 => refused.push((left[0], reason)),
                Decision::Refused { left, reason } => {
                    tracing::warn!(sink = %self.name, records = left.len(), reason = %reason,
                        "receiver refused a batch; splitting it to find the poison record(s)");
                    let mid = left.len() / 2;
                    todo.push(left[mid..].to_vec());
                    todo.push(left[..mid].to_vec());
                }
                Decision::Poison { index, left, reason } => {
                    refused.push((index, reason));
                    let (before, after): (Vec<usize>, Vec<usize>) = left.into_iter().partition(|i| *i < index);
                    todo.push(after);
                    todo.push(before);
                }
            }
        }
        refused.sort_by_key(|(i, _)| *i);
        Some(refused)
    }

    /// Sends `part` until the receiver accepts it all or refuses for good; transient failures
    /// are retried with the sink policy's backoff, at least as long as a capped `Retry-After`.
    async fn send_until_decided(&mut self, batch: &Batch, mut part: Vec<usize>) -> Decision {
        let mut backoff = self.policy.backoff().build();
        let mut failures = 0u32;
        loop {
            let view = view(batch, &part);
            let mut accepted = Accepted::default();
            let result = self.sink.send(&view, &mut accepted).await;
            // Map what the receiver confirmed back to batch indices, and drop it from the part.
            let poison_at = |index: usize| part.get(index).copied();
            let result = match result {
                Err(SinkError::Poison { index, reason }) => match poison_at(index) {
                    Some(orig) => Err((Some(orig), SinkError::Poison { index: orig, reason })),
                    // An index outside the batch would be a sink bug; treat it as a refusal.
                    None => Err((None, SinkError::Rejected(reason))),
                },
                Err(e) => Err((None, e)),
                Ok(()) => Ok(()),
            };
            drop(view);
            if !accepted.is_empty() {
                let mut done = vec![false; part.len()];
                for &i in accepted.indices() {
                    if let Some(d) = done.get_mut(i) {
                        *d = true;
                    }
                }
                let mut k = 0;
                part.retain(|_| {
                    k += 1;
                    !done[k - 1]
                });
            }
            let err = match result {
                Ok(()) => {
                    if failures > 0 {
                        events::SinkRecovered { sink: self.name, failures }.emit();
                    }
                    return Decision::Sent;
                }
                Err((_, SinkError::Rejected(reason))) => {
                    self.report.sink_error(&format!("rejected: {reason}")).await;
                    return Decision::Refused { left: part, reason };
                }
                Err((Some(index), SinkError::Poison { reason, .. })) => {
                    part.retain(|i| *i != index);
                    return Decision::Poison { index, left: part, reason };
                }
                Err((_, e)) => e,
            };
            if part.is_empty() {
                // Everything was confirmed before the failure.
                return Decision::Sent;
            }
            failures += 1;
            let kind = if matches!(err, SinkError::Throttled { .. }) { "throttled" } else { "error" };
            events::SinkSendFailed { sink: self.name, kind, error: &err, failures, records: part.len() }.emit();
            self.report.sink_error(&err.to_string()).await;
            if self.shutdown.is_draining() && self.shutdown.past_deadline() {
                return Decision::Shutdown;
            }
            let after = match &err {
                SinkError::Throttled { after, .. } => *after,
                _ => None,
            };
            let delay = self.policy.delay(backoff.next().unwrap_or(self.policy.max_delay), after);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // During shutdown keep retrying until the deadline, but notice it promptly.
                _ = self.shutdown.draining(), if !self.shutdown.is_draining() => {}
            }
        }
    }
}

/// The records of `part` as a batch; the whole batch is borrowed, not copied.
fn view<'b>(batch: &'b Batch, part: &[usize]) -> Cow<'b, Batch> {
    if part.len() == batch.records.len() {
        return Cow::Borrowed(batch);
    }
    let records: Vec<_> = part.iter().map(|&i| batch.records[i].clone()).collect();
    let bytes = records.iter().map(|r| r.raw.len() as u64).sum();
    Cow::Owned(Batch { records, bytes })
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;

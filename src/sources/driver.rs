//! The one stream driver: the run loop every source shares.
//!
//! A source writes only its protocol and a `cycle()` that reads what is new and hands it to
//! ingest. The driver owns everything around it: waiting at the spool gate, shutdown, the
//! stream's state in `status`, error recording, and how long to sleep before the next cycle.
//!
//! INVARIANT: a cycle can be abandoned at any await (shutdown): every durable step inside it is
//! a page whose records and checkpoint commit together (`pipeline::commit`), so a restart
//! repeats work but never skips any.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::pipeline::StreamHandle;
use crate::store::StreamState;
use crate::telemetry::events;

/// What one cycle of a source came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything planned was read.
    Done,
    /// Read, but the source has nothing yet for a known reason (a new subscription).
    WarmingUp(String),
    /// The tenant lacks a licence or the app a permission: check again much later.
    Unavailable { needs: String },
    /// Not finished; try again. `after` is set when Microsoft said how long to wait.
    Retry { after: Option<Duration>, why: String },
    /// Retrying soon cannot fix it (wrong tenant, revoked consent): try again much later.
    Fatal(String),
}

impl Outcome {
    /// The usual reading of a call that failed after its retries: throttling waits as long as
    /// Microsoft asked, a missing licence or permission is unavailable, a refusal retrying
    /// cannot fix fails the stream for now, and anything else retries next cycle. `hint` adds
    /// what the operator should check, per source.
    pub fn from_error(e: ApiError, hint: impl Fn(&ApiError) -> &'static str) -> Outcome {
        let h = hint(&e);
        match e {
            ApiError::Throttled { ref retry_after, .. } => Outcome::Retry { after: *retry_after, why: e.to_string() },
            ApiError::Unavailable(m) => Outcome::Unavailable { needs: format!("{m}{h}") },
            ApiError::Fatal { code, message } => Outcome::Fatal(format!("{code}: {message}{h}")),
            other => Outcome::Retry { after: None, why: format!("{other}{h}") },
        }
    }
}

pub trait Source: Send {
    /// One polling cycle. `shutdown` is cancelled when the daemon stops; a cycle should stop
    /// starting new work then (the driver also drops it at the next await).
    fn cycle(&mut self, shutdown: &CancellationToken) -> impl Future<Output = Outcome> + Send;

    /// How the source's calls go right now, shown while a cycle is still running.
    fn calls(&self) -> Option<std::sync::Arc<super::calls::CallHealth>> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub poll_interval: Duration,
    /// After `Unavailable`.
    pub recheck_unavailable: Duration,
    /// After `Fatal`.
    pub recheck_failed: Duration,
    /// The longest wait a `Retry { after }` may impose (Microsoft's `Retry-After`, capped).
    pub max_wait: Duration,
}

impl Pacing {
    pub fn new(poll_interval: Duration, recheck_unavailable: Duration) -> Pacing {
        Pacing {
            poll_interval,
            recheck_unavailable,
            recheck_failed: recheck_unavailable,
            max_wait: crate::common::RetryPolicy::SOURCE.retry_after_cap,
        }
    }
}

/// The state a cycle's outcome puts the stream in, and the pause before the next cycle.
pub fn next(outcome: &Outcome, pacing: &Pacing, now_ms: i64) -> (StreamState, Duration) {
    match outcome {
        Outcome::Done => (StreamState::Running, pacing.poll_interval),
        Outcome::WarmingUp(why) => (StreamState::WarmingUp(why.clone()), pacing.poll_interval),
        Outcome::Unavailable { needs } => (StreamState::Unavailable(needs.clone()), pacing.recheck_unavailable),
        Outcome::Retry { after: None, why } => (StreamState::Retrying(why.clone()), pacing.poll_interval),
        Outcome::Retry { after: Some(after), why } => {
            let wait = (*after).min(pacing.max_wait);
            (StreamState::Throttled { until_ms: now_ms + wait.as_millis() as i64, why: why.clone() }, wait)
        }
        Outcome::Fatal(why) => (StreamState::Failed(why.clone()), pacing.recheck_failed),
    }
}

/// Runs `source` until `shutdown`.
pub async fn run<S: Source>(mut source: S, handle: StreamHandle, pacing: Pacing, shutdown: CancellationToken) {
    handle.set_state(StreamState::Starting).await;
    loop {
        if !handle.wait_open(&shutdown).await {
            break;
        }
        let calls = source.calls();
        let Some(mut outcome) = watch(source.cycle(&shutdown), calls.as_deref(), &handle, &shutdown).await else {
            break;
        };
        // Ingest is group-committed: the cycle succeeded only once what it read is written.
        if let Err(e) = handle.flush().await
            && matches!(outcome, Outcome::Done | Outcome::WarmingUp(_))
        {
            outcome = Outcome::Retry { after: None, why: format!("what this cycle read could not be stored: {e}") };
        }
        let (state, pause) = next(&outcome, &pacing, crate::store::now_ms());
        let problem = problem_kind(&outcome, &state, calls.as_deref());
        events::StreamProblem { stream: handle.key.labels(), problem }.emit();
        let why = match &outcome {
            Outcome::Done | Outcome::WarmingUp(_) => None,
            Outcome::Unavailable { needs: w } | Outcome::Retry { why: w, .. } | Outcome::Fatal(w) => Some(w.as_str()),
        };
        events::CycleEnded { stream: handle.key.labels(), state: &state, why, pause }.emit();
        handle.record_outcome(state, why.map(str::to_string)).await;
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    handle.set_state(StreamState::Stopped("shut down".into())).await;
}

/// The kind of trouble a cycle ended in (`None`: it finished): what its calls last failed
/// with, else what its outcome says.
fn problem_kind(
    outcome: &Outcome,
    state: &StreamState,
    calls: Option<&super::calls::CallHealth>,
) -> Option<&'static str> {
    if matches!(outcome, Outcome::Done | Outcome::WarmingUp(_)) {
        return None;
    }
    let from_calls = calls.and_then(|c| c.problem(std::time::Instant::now(), super::calls::SLOW)).map(|p| p.kind);
    from_calls.or(Some(match state {
        StreamState::Throttled { .. } => "throttled",
        StreamState::Unavailable(_) => "unavailable",
        StreamState::Failed(_) => "fatal",
        _ => "error",
    }))
}

/// How often a running cycle's calls are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Runs a cycle to its end (`None`: shutdown came first). Meanwhile, a call that keeps failing
/// or does not answer shows the stream as retrying with the reason, at once, not when the
/// caller's retries have given up minutes later.
async fn watch(
    cycle: impl Future<Output = Outcome>,
    calls: Option<&super::calls::CallHealth>,
    handle: &StreamHandle,
    shutdown: &CancellationToken,
) -> Option<Outcome> {
    tokio::pin!(cycle);
    // Not at once: what the last cycle left is already shown, and a quick cycle needs no look.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + WATCH_EVERY, WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown: Option<String> = None;
    loop {
        tokio::select! {
            o = &mut cycle => return Some(o),
            _ = shutdown.cancelled() => return None,
            _ = tick.tick() => {
                let Some(c) = calls else { continue };
                let problem = c.problem(std::time::Instant::now(), super::calls::SLOW);
                if let Some(p) = problem.filter(|p| shown.as_ref() != Some(&p.text)) {
                    handle.record_outcome(StreamState::Retrying(p.text.clone()), Some(p.text.clone())).await;
                    events::StreamStateSet { stream: handle.key.labels(), state: "retrying" }.emit();
                    events::StreamProblem { stream: handle.key.labels(), problem: Some(p.kind) }.emit();
                    shown = Some(p.text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Pacing = Pacing {
        poll_interval: Duration::from_secs(300),
        recheck_unavailable: Duration::from_secs(3600),
        recheck_failed: Duration::from_secs(3600),
        max_wait: Duration::from_secs(900),
    };

    #[test]
    fn each_outcome_sets_a_state_and_a_pause() {
        assert_eq!(next(&Outcome::Done, &P, 0), (StreamState::Running, P.poll_interval));
        let (s, d) = next(&Outcome::Unavailable { needs: "P1".into() }, &P, 0);
        assert_eq!((s, d), (StreamState::Unavailable("P1".into()), Duration::from_secs(3600)));
        let (s, d) = next(&Outcome::Fatal("AF20010".into()), &P, 0);
        assert_eq!((s, d), (StreamState::Failed("AF20010".into()), Duration::from_secs(3600)));
        let (s, d) = next(&Outcome::Retry { after: None, why: "HTTP 503".into() }, &P, 0);
        assert_eq!((s, d), (StreamState::Retrying("HTTP 503".into()), P.poll_interval));
    }

    #[test]
    fn a_huge_retry_after_is_capped_and_shown_as_throttled_until() {
        let o = Outcome::Retry { after: Some(Duration::from_secs(1_000_000_000)), why: "AF429".into() };
        let (s, d) = next(&o, &P, 1_000);
        assert_eq!(d, Duration::from_secs(900));
        assert_eq!(s, StreamState::Throttled { until_ms: 1_000 + 900_000, why: "AF429".into() });
        // A short one is waited as asked, never less than asked.
        let o = Outcome::Retry { after: Some(Duration::from_secs(90)), why: "429".into() };
        assert_eq!(next(&o, &P, 0).1, Duration::from_secs(90));
    }
}

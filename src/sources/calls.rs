//! How one API client's calls are going right now, for a stream whose cycle has not ended yet.
//!
//! A cycle ends, and the driver records its outcome, only after the caller's retries give up:
//! minutes against a throttling or failing API, and up to the request timeout against one
//! that does not answer. Meanwhile the driver reads this (`driver::run`) and shows the stream
//! as retrying, with the reason, as soon as a call fails or hangs: what an operator of many
//! tenants needs to see which one is stuck and why.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A call in flight longer than this is shown as a problem.
pub const SLOW: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct CallHealth {
    inner: Mutex<Inner>,
}

/// What is wrong now, and its kind (one of `telemetry::events::PROBLEMS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: &'static str,
    pub text: String,
}

#[derive(Default)]
struct Inner {
    /// The last failure since the last success.
    failing: Option<Problem>,
    in_flight: BTreeMap<u64, (Instant, &'static str)>,
    next: u64,
}

/// Held while a request is in flight.
pub struct InFlight<'a> {
    health: &'a CallHealth,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.health.lock().in_flight.remove(&self.id);
    }
}

impl CallHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request to `api` starts; it counts as in flight until the guard drops.
    pub fn begin(&self, api: &'static str) -> InFlight<'_> {
        let mut i = self.lock();
        i.next += 1;
        let id = i.next;
        i.in_flight.insert(id, (Instant::now(), api));
        InFlight { health: self, id }
    }

    /// A call failed (and may be retried). Answers the protocol expects are not trouble.
    pub fn failed(&self, e: &super::error::ApiError) {
        if let Some(kind) = e.problem() {
            self.lock().failing = Some(Problem { kind, text: e.to_string() });
        }
    }

    pub fn succeeded(&self) {
        self.lock().failing = None;
    }

    /// What is wrong now: a call unanswered for longer than `slow`, or the last failure.
    pub fn problem(&self, now: Instant, slow: Duration) -> Option<Problem> {
        let i = self.lock();
        let hung = i.in_flight.values().min_by_key(|(at, _)| *at).filter(|(at, _)| now.duration_since(*at) > slow);
        match (hung, &i.failing) {
            // The same text while it lasts: the driver writes it once, not at every look.
            (Some((_, api)), _) => Some(Problem {
                kind: "no_answer",
                text: format!("no answer from the {api} API within {}s (still waiting)", slow.as_secs()),
            }),
            (None, Some(f)) => Some(Problem { kind: f.kind, text: format!("{} (retrying)", f.text) }),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::error::ApiError;

    #[test]
    fn a_failure_shows_until_a_success_and_a_hung_call_shows_after_it_is_slow() {
        let h = CallHealth::default();
        let t0 = Instant::now();
        assert_eq!(h.problem(t0, SLOW), None);
        h.failed(&ApiError::Gone { code: "AF20051".into(), message: "expired".into() });
        assert_eq!(h.problem(t0, SLOW), None, "an expired blob is the protocol, not trouble");
        h.failed(&ApiError::Throttled { code: "AF429".into(), retry_after: None });
        let p = h.problem(t0, SLOW).unwrap();
        assert_eq!((p.kind, p.text.as_str()), ("throttled", "throttled by Microsoft (AF429) (retrying)"));
        h.succeeded();
        assert_eq!(h.problem(t0, SLOW), None);
        let call = h.begin("management");
        assert_eq!(h.problem(Instant::now(), SLOW), None, "not slow yet");
        let later = Instant::now() + Duration::from_secs(45);
        let p = h.problem(later, SLOW).unwrap();
        assert_eq!(
            (p.kind, p.text.as_str()),
            ("no_answer", "no answer from the management API within 30s (still waiting)")
        );
        drop(call);
        assert_eq!(h.problem(later, SLOW), None, "answered");
    }
}

//! Delivery against a scripted sink: retries, partial acceptance, bisection and shutdown, with
//! tokio's paused clock so backoff costs no wall time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::sinks::{OutRecord, RowMeta};

/// A batch of `n` records whose ids are "r0", "r1", ...
fn batch(n: usize) -> Batch {
    let meta = Arc::new(RowMeta { tenant: "t".into(), source: "s".into(), name: "n".into(), collected_at_ms: 0 });
    let mut b = Batch::default();
    for i in 0..n {
        let id = format!("r{i}");
        let mut data = id.clone().into_bytes();
        data.extend_from_slice(b"{}");
        b.bytes += 2;
        b.records.push(OutRecord {
            meta: meta.clone(),
            id: 0..id.len(),
            raw: id.len()..id.len() + 2,
            data: Arc::new(data),
            event_time_ms: 0,
            envelope: None,
        });
    }
    b
}

/// What the scripted receiver does with each call.
#[derive(Default)]
struct Script {
    /// Calls that fail with a retryable error before anything is accepted.
    transient: usize,
    /// The receiver confirms at most this many records per call, then fails (0 = no limit).
    accept_per_call: usize,
    /// Ids the receiver refuses: a batch holding one is rejected whole.
    poison: Vec<String>,
    /// Ids the sink itself reports as undeliverable before sending.
    oversize: Vec<String>,
    /// Throttled answers with this Retry-After, before anything else.
    throttled: Vec<Duration>,
}

#[derive(Default)]
struct FakeSink {
    script: Script,
    calls: usize,
    /// Every id the receiver confirmed, with how often.
    delivered: HashMap<String, u32>,
    /// The ids of each call's batch.
    seen: Vec<Vec<String>>,
}

#[async_trait::async_trait]
impl Sink for FakeSink {
    async fn send(&mut self, batch: &Batch, accepted: &mut Accepted) -> Result<(), SinkError> {
        self.calls += 1;
        let ids: Vec<String> = batch.records.iter().map(|r| r.id().to_string()).collect();
        self.seen.push(ids.clone());
        if let Some(after) = self.script.throttled.pop() {
            return Err(SinkError::Throttled { message: "slow down".into(), after: Some(after) });
        }
        if self.script.transient > 0 {
            self.script.transient -= 1;
            return Err(SinkError::Retryable("connection reset".into()));
        }
        if let Some(i) = ids.iter().position(|id| self.script.oversize.contains(id)) {
            return Err(SinkError::Poison { index: i, reason: "too large".into() });
        }
        if ids.iter().any(|id| self.script.poison.contains(id)) {
            return Err(SinkError::Rejected("HTTP 400 bad record".into()));
        }
        let limit = if self.script.accept_per_call == 0 { ids.len() } else { self.script.accept_per_call };
        for (i, id) in ids.iter().enumerate().take(limit) {
            *self.delivered.entry(id.clone()).or_default() += 1;
            accepted.mark(i);
        }
        if limit < ids.len() { Err(SinkError::Retryable("request 2 of 2 failed".into())) } else { Ok(()) }
    }
}

#[derive(Default)]
struct Errors(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl ErrorReport for Errors {
    async fn sink_error(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

async fn run(sink: &mut FakeSink, b: &Batch, shutdown: &Shutdown) -> (Option<Vec<(usize, String)>>, Vec<String>) {
    let errors = Errors::default();
    let mut d = Delivery { name: "test", sink, shutdown, report: &errors, policy: RetryPolicy::SINK };
    let r = d.deliver(b).await;
    (r, errors.0.into_inner().unwrap())
}

fn exactly_once(sink: &FakeSink, n: usize, except: &[usize]) {
    for i in 0..n {
        let want = if except.contains(&i) { 0 } else { 1 };
        assert_eq!(sink.delivered.get(&format!("r{i}")).copied().unwrap_or(0), want, "record r{i}");
    }
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_until_delivered_and_reported() {
    let mut sink = FakeSink { script: Script { transient: 3, ..Script::default() }, ..FakeSink::default() };
    let (refused, errors) = run(&mut sink, &batch(10), &Shutdown::new()).await;
    assert_eq!(refused, Some(vec![]));
    assert_eq!(sink.calls, 4);
    assert_eq!(errors.len(), 3);
    exactly_once(&sink, 10, &[]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_resends_only_what_the_receiver_did_not_confirm() {
    let mut sink = FakeSink { script: Script { accept_per_call: 4, ..Script::default() }, ..FakeSink::default() };
    let (refused, _) = run(&mut sink, &batch(10), &Shutdown::new()).await;
    assert_eq!(refused, Some(vec![]));
    exactly_once(&sink, 10, &[]);
    assert_eq!(sink.seen.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 6, 2]);
    assert_eq!(sink.seen[1][0], "r4", "the retry starts after the confirmed records, in order");
}

#[tokio::test(start_paused = true)]
async fn poison_records_are_bisected_out_and_the_rest_delivered_once() {
    let script = Script { poison: vec!["r3".into(), "r11".into()], ..Script::default() };
    let mut sink = FakeSink { script, ..FakeSink::default() };
    let (refused, errors) = run(&mut sink, &batch(16), &Shutdown::new()).await;
    let refused = refused.unwrap();
    assert_eq!(refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![3, 11]);
    assert!(refused.iter().all(|(_, r)| r == "HTTP 400 bad record"));
    exactly_once(&sink, 16, &[3, 11]);
    assert!(errors.iter().all(|e| e.starts_with("rejected: ")), "{errors:?}");
    // Bisection, not one call per record.
    assert!(sink.calls < 16, "{} calls", sink.calls);
}

#[tokio::test(start_paused = true)]
async fn a_record_the_sink_cannot_encode_is_refused_without_a_receiver_round_trip() {
    let mut sink =
        FakeSink { script: Script { oversize: vec!["r5".into()], ..Script::default() }, ..FakeSink::default() };
    let (refused, _) = run(&mut sink, &batch(8), &Shutdown::new()).await;
    assert_eq!(refused, Some(vec![(5, "too large".to_string())]));
    exactly_once(&sink, 8, &[5]);
    assert_eq!(sink.seen[1], vec!["r0", "r1", "r2", "r3", "r4"], "the records before the poison one go first");
    assert_eq!(sink.seen[2], vec!["r6", "r7"], "then the ones after it, in spool order");
}

#[tokio::test(start_paused = true)]
async fn confirmed_records_are_not_resent_when_the_rest_is_refused() {
    let script = Script { accept_per_call: 3, poison: vec!["r6".into()], ..Script::default() };
    let mut sink = FakeSink { script, ..FakeSink::default() };
    let (refused, _) = run(&mut sink, &batch(6 + 1), &Shutdown::new()).await;
    // The poison record's presence rejects whole calls, so nothing of those is confirmed.
    assert_eq!(refused.unwrap().iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![6]);
    exactly_once(&sink, 7, &[6]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_but_capped() {
    let script = Script { throttled: vec![Duration::from_secs(1_000_000_000)], ..Script::default() };
    let mut sink = FakeSink { script, ..FakeSink::default() };
    let start = tokio::time::Instant::now();
    let (refused, _) = run(&mut sink, &batch(2), &Shutdown::new()).await;
    assert_eq!(refused, Some(vec![]));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(300) && waited < Duration::from_secs(301), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_past_its_deadline_abandons_the_batch_without_refusing_anything() {
    let mut sink = FakeSink { script: Script { transient: usize::MAX, ..Script::default() }, ..FakeSink::default() };
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        s.begin_drain(Duration::from_secs(5));
    });
    let (refused, errors) = run(&mut sink, &batch(3), &shutdown).await;
    assert_eq!(refused, None);
    assert!(sink.delivered.is_empty());
    assert!(errors.len() > 3);
}

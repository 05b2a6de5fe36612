//! Completeness against the simulator's ground truth, with every Microsoft quirk switched on.

#![cfg(feature = "simulator")]

mod common;

use std::time::Duration;

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{Harness, assert_exactly_once, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_across_paging_late_blobs_duplicates_throttling_and_5xx() {
    let scenario =
        Scenario { history_records: 8_000, records_per_blob: 50, live_records_per_sec: 400.0, ..Scenario::hostile() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");

    // Phase 1: history plus live records, until a good part has arrived.
    h.wait_lines(2_000, Duration::from_secs(60)).await;
    // Phase 2: an admin disables one subscription (AF20023) and every token is revoked (401).
    let exchange = h.sim.tenant.ct_index("Audit.Exchange").unwrap();
    let tokens_before = h.sim.tenant.stats().token_requests;
    h.sim.tenant.disable_subscription(exchange);
    h.sim.tenant.revoke_tokens();
    // Both must have been met and recovered from while records keep coming.
    wait_until("a fresh token and the subscription restarted", Duration::from_secs(60), || {
        h.sim.tenant.stats().token_requests > tokens_before
            && h.sim.tenant.subscriptions().iter().any(|(i, s)| *i == exchange && s.enabled)
    })
    .await;
    h.sim.tenant.freeze();
    let got = h.wait_complete(Duration::from_secs(120)).await;
    daemon.stop().await.expect("clean shutdown");

    let truth = h.sim.tenant.truth();
    assert!(truth.ids.len() > 8_000, "live records were generated");
    assert_exactly_once(&truth.ids, &got);
    let stats = h.sim.tenant.stats();
    assert_eq!(
        stats.requests_without_publisher, 0,
        "PublisherIdentifier must be on every call, blob downloads included"
    );
    assert!(stats.blobs_fetched_twice.is_empty(), "blobs fetched twice: {:?}", stats.blobs_fetched_twice);
    assert!(stats.throttled > 0 && stats.server_errors > 0, "the scenario must have thrown faults: {stats:?}");
    assert!(stats.token_requests >= 2, "a revoked token must be replaced");
    assert!(h.sim.tenant.subscriptions().iter().all(|(_, s)| s.enabled), "subscriptions were (re)started");
    // Expired blobs are counted per stream, never skipped silently.
    assert!(truth.expired_blobs > 0);
    assert_eq!(h.stream_sum(|s| s.counters.blobs_expired), truth.expired_blobs as i64);
    // Every re-delivered Id was dropped by dedupe, and only those.
    assert_eq!(h.stream_sum(|s| s.counters.records_total), truth.ids.len() as i64);
    assert_eq!(
        h.stream_sum(|s| s.counters.duplicates_total),
        (truth.records_in_fetchable_blobs - truth.ids.len() as u64) as i64
    );
    assert!(truth.records_in_fetchable_blobs > truth.ids.len() as u64, "the scenario re-delivered Ids");
    // Records that existed only in expired blobs never arrive: they cannot, and nothing invents them.
    assert!(!truth.expired_only_ids.is_empty(), "the scenario has records only in expired blobs");
    let invented: Vec<_> = truth.expired_only_ids.iter().filter(|id| got.contains_key(*id)).collect();
    assert!(invented.is_empty(), "{} records only in expired blobs were delivered: {invented:?}", invented.len());
    // The blob ledger holds nothing pending.
    assert_eq!(h.stream_sum(|s| s.ledger.listed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_clock_far_ahead_is_learned_from_the_date_header() {
    // Half an hour of skew would push a locally computed 7-day start out of the legal range
    // (a skew over an hour is not believed at all: see sources::clock).
    let scenario =
        Scenario { history_records: 1_500, history_days: 6.9, clock_skew_secs: 1_800, ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let got = h.wait_complete(Duration::from_secs(60)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subscription_reports_warming_up_not_an_error() {
    let scenario = Scenario { history_records: 100, warm_up: Duration::from_secs(3600), ..Scenario::default() };
    let (h, daemon) = start_warming_up(scenario).await;
    let status = h.status();
    daemon.stop().await.expect("clean shutdown");
    assert_eq!(status.matches("[warming_up] subscription started recently").count(), 5, "{status}");
    assert!(!status.contains("last error"), "warm-up is not an error:\n{status}");
    assert!(h.delivered().is_empty());
    assert!(h.sim.tenant.subscriptions().iter().all(|(_, s)| s.enabled));
}

/// Once content shows up, a stream that was warming up says running, and collects it. (A
/// stream stops checking its warm-up once past it; this is the check ending as it should.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_up_ends_when_the_first_content_is_published() {
    let scenario = Scenario {
        history_records: 0,
        live_records_per_sec: 100.0,
        records_per_blob: 20,
        warm_up: Duration::from_secs(6),
        ..Scenario::default()
    };
    let (h, daemon) = start_warming_up(scenario).await;
    wait_until("every stream past its warm-up", Duration::from_secs(60), || {
        let s = h.status();
        !s.contains("warming_up") && s.matches(" running ").count() >= 5
    })
    .await;
    h.wait_lines(1, Duration::from_secs(30)).await;
    let status = h.status();
    daemon.stop().await.expect("clean shutdown");
    assert!(!status.contains("warming_up") && !status.contains("last error"), "{status}");
}

/// A daemon on a tenant whose subscriptions it must start itself, once its five streams all
/// say they are warming up (read while it runs, as an operator would).
async fn start_warming_up(scenario: Scenario) -> (Harness, Daemon) {
    let h = Harness::new(Scenario { subscriptions_enabled: false, ..scenario }, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    wait_until("every stream warming up", Duration::from_secs(30), || {
        h.status().matches("[warming_up] subscription started recently").count() == 5
    })
    .await;
    (h, daemon)
}

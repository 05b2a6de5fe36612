//! Completeness against the simulator's ground truth, with every Microsoft quirk switched on.

mod common;

use std::time::Duration;

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{Harness, assert_exactly_once};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_across_paging_late_blobs_duplicates_throttling_and_5xx() {
    let scenario =
        Scenario { history_records: 8_000, records_per_blob: 50, live_records_per_sec: 400.0, ..Scenario::hostile() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");

    // Phase 1: history plus live records.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Phase 2: an admin disables one subscription (AF20023) and every token is revoked (401).
    let exchange = h.sim.tenant.ct_index("Audit.Exchange").unwrap();
    h.sim.tenant.disable_subscription(exchange);
    h.sim.tenant.revoke_tokens();
    tokio::time::sleep(Duration::from_secs(4)).await;
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
    for id in &truth.expired_only_ids {
        assert!(!got.contains_key(id));
    }
    // The blob ledger holds nothing pending.
    assert_eq!(h.stream_sum(|s| s.ledger.listed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_clock_far_ahead_is_learned_from_the_date_header() {
    // Two hours of skew would push a locally computed 7-day start out of the legal range.
    let scenario =
        Scenario { history_records: 1_500, history_days: 6.9, clock_skew_secs: 7_200, ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let got = h.wait_complete(Duration::from_secs(60)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subscription_reports_warming_up_not_an_error() {
    let scenario = Scenario {
        history_records: 100,
        subscriptions_enabled: false,
        warm_up: Duration::from_secs(3600),
        ..Scenario::default()
    };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Read while the daemon runs, as an operator would.
    let status = auditkeeper::status::render(&h.state_dir()).unwrap();
    daemon.stop().await.expect("clean shutdown");
    assert_eq!(status.matches("[warming_up] subscription started recently").count(), 5, "{status}");
    assert!(!status.contains("last error"), "warm-up is not an error:\n{status}");
    assert!(h.delivered().is_empty());
    assert!(h.sim.tenant.subscriptions().iter().all(|(_, s)| s.enabled));
}

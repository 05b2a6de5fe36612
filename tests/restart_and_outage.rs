//! Restart mid-backfill, and a sink outage while polling goes on.

#![cfg(feature = "simulator")]

mod common;

use std::time::Duration;

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{Harness, assert_exactly_once, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_mid_backfill_and_start_again_loses_and_doubles_nothing() {
    let scenario = Scenario {
        history_records: 15_000,
        history_days: 6.0,
        page_size: 10,
        duplicate_fraction: 0.03,
        latency: Duration::from_millis(5),
        ..Scenario::default()
    };
    // Delivered in small steps, so the stop comes with part of it delivered: the file sink's
    // default linger (5 s) would hold the first records until most of the history is in.
    let extras = ConfigExtras {
        management: "fetch_concurrency = 2".into(),
        sink: "batch = { linger = \"200ms\" }".into(),
        ..ConfigExtras::default()
    };
    let h = Harness::new(scenario, extras).await;
    let total = h.sim.tenant.truth().ids.len();

    let first = Daemon::start(&h.settings()).await.expect("daemon");
    // Stop once part of the backfill is delivered.
    h.wait_lines(total / 5, Duration::from_secs(60)).await;
    first.stop().await.expect("clean shutdown");
    let partial = h.delivered().len();
    assert!(partial < total, "stopped mid-backfill ({partial} of {total})");

    let second = Daemon::start(&h.settings()).await.expect("daemon");
    let got = h.wait_complete(Duration::from_secs(120)).await;
    second.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_sink_directory_spools_and_delivers_everything_after_recovery() {
    let scenario = Scenario { history_records: 2_000, live_records_per_sec: 600.0, ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    // Live records keep coming, so wait for the history rather than for a moving target.
    h.wait_lines(2_000, Duration::from_secs(60)).await;

    // The output directory disappears and a plain file takes its place: every write fails.
    let records = h.records_dir();
    let aside = h.dir.path().join("records.aside");
    std::fs::rename(&records, &aside).unwrap();
    std::fs::write(&records, b"not a directory").unwrap();
    let ingested_before = h.stream_sum(|s| s.counters.records_total);
    // Polling goes on while the sink is down, and the records wait in the spool.
    let sink_error = || {
        let store = auditkeeper::store::Store::open_read_only(&h.state_dir()).unwrap();
        store.backlogs().unwrap()[0].last_error.clone()
    };
    wait_until("ingest to go on, records to wait for the sink, its error to show", Duration::from_secs(60), || {
        h.stream_sum(|s| s.counters.records_total) > ingested_before + 500
            && h.backlog("archive") > 500
            && sink_error().is_some()
    })
    .await;
    let status = h.status();
    assert!(status.contains("last error: file sink"), "{status}");

    std::fs::remove_file(&records).unwrap();
    std::fs::rename(&aside, &records).unwrap();
    h.sim.tenant.freeze();
    let got = h.wait_complete(Duration::from_secs(60)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
    let backlog = auditkeeper::store::Store::open_read_only(&h.state_dir()).unwrap().backlogs().unwrap();
    assert_eq!(backlog[0].records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_pauses_polling_loudly_and_resumes() {
    let scenario = Scenario { history_records: 30_000, ..Scenario::default() };
    // A tiny spool limit and a dead sink: polling must pause, not drop.
    let extras = ConfigExtras {
        spool: "max_bytes = \"2MiB\"".into(),
        management: "fetch_concurrency = 2".into(),
        ..ConfigExtras::default()
    };
    let h = Harness::new(scenario, extras).await;
    let settings = h.settings();
    std::fs::write(h.records_dir(), b"sink is down").unwrap();
    let daemon = Daemon::start(&settings).await.expect("daemon");
    let start = std::time::Instant::now();
    let status = loop {
        let s = auditkeeper::status::render(&h.state_dir()).unwrap_or_default();
        if s.contains("POLLING PAUSED") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "polling never paused:\n{s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.contains("spool.max_bytes"), "{status}");
    let paused_at = h.stream_sum(|s| s.counters.records_total);
    // While paused the streams wait at the gate and no request goes out: once the requests
    // already in flight are answered, the simulator's request count stands still.
    let mut last = (h.sim.tenant.stats().api_requests, std::time::Instant::now());
    wait_until("the simulator to see no request for 2 poll intervals", Duration::from_secs(30), || {
        let n = h.sim.tenant.stats().api_requests;
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(2)
    })
    .await;
    let later = h.stream_sum(|s| s.counters.records_total);
    // The gate closes when a commit takes the spool over its limit, so what lands after it are
    // the blobs in flight (5 streams x 2 x 100 records) and the pages fetched during that
    // commit's linger (1 s at 1800 requests a minute: 30 blobs of 100).
    assert!(later - paused_at <= 1_000 + 3_000, "ingest went on while paused: {paused_at} -> {later}");
    assert!(later < 30_000);

    std::fs::remove_file(h.records_dir()).unwrap();
    let got = h.wait_complete(Duration::from_secs(120)).await;
    let status = auditkeeper::status::render(&h.state_dir()).unwrap();
    daemon.stop().await.expect("clean shutdown");
    assert!(!status.contains("POLLING PAUSED"), "{status}");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
}

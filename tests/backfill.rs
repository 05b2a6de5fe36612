//! Backfill from the simulated unified audit log (the Graph audit log query API): complete over
//! 180 days with truncated and failing windows, in both API versions; resumed after `kill -9`
//! without redoing windows or creating a second query for one; exactly once beside the live
//! feed, whose lag does not grow meanwhile; and within the submission limit.

#![cfg(feature = "simulator")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use auditkeeper::simulator::audit_log::AuditLogScenario;
use auditkeeper::store::{BackfillProgress, Store};
use common::{BinaryDaemon, Harness, assert_exactly_once, wait_until};

const FAST: &str = "poll_interval = \"100ms\"\nmax_status_interval = \"400ms\"\nmax_submissions_per_day = 1000\nrequests_per_second = 100\n";

fn jobs(h: &Harness) -> Vec<BackfillProgress> {
    Store::open_read_only(&h.state_dir()).and_then(|s| s.backfill_jobs()).unwrap_or_default()
}

fn finished(h: &Harness) -> Option<BackfillProgress> {
    jobs(h).into_iter().find(|j| j.state != "active")
}

/// Waits for the job to end; on a timeout, the panic shows the status report.
async fn wait_finished(h: &Harness, timeout: Duration) -> BackfillProgress {
    let start = std::time::Instant::now();
    loop {
        if let Some(j) = finished(h) {
            return j;
        }
        assert!(start.elapsed() < timeout, "the backfill did not finish in {timeout:?}\n{}", h.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every id of `truth` reached the sink; on a timeout, says how many are missing.
async fn wait_delivered(h: &Harness, truth: &[String], timeout: Duration) {
    let start = std::time::Instant::now();
    loop {
        let got = h.delivered();
        let missing: Vec<&String> = truth.iter().filter(|i| !got.contains_key(*i)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{} of {} records missing after {timeout:?}, e.g. {:?}\n{}",
            missing.len(),
            truth.len(),
            missing.first(),
            h.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(serde::Deserialize)]
struct Enveloped<'a> {
    #[serde(borrow)]
    record: &'a serde_json::value::RawValue,
    query: Option<serde_json::Value>,
}

/// 180 days of history, about 60 records a day, most of it beyond the Management API's 7 days.
fn long_history(audit_log: AuditLogScenario) -> Scenario {
    Scenario { history_days: 180.0, history_records: 10_800, records_per_blob: 30, audit_log, ..Scenario::default() }
}

async fn backfill_180_days(
    version: &str,
    audit_log: AuditLogScenario,
    extra: &str,
    sink: &str,
) -> (Harness, BackfillProgress) {
    let extras = ConfigExtras {
        management: "enabled = false".into(),
        sink: sink.into(),
        audit_query: format!("backfill_days = 180\napi_version = \"{version}\"\n{FAST}{extra}"),
        ..Default::default()
    };
    let h = Harness::new(long_history(audit_log), extras).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let job = wait_finished(&h, Duration::from_secs(180)).await;
    // The last window's records reach the sink within its linger.
    let truth = h.sim.tenant.audit_truth(job.since_ms, job.until_ms);
    wait_delivered(&h, &truth, Duration::from_secs(30)).await;
    daemon.stop().await.expect("clean shutdown");
    (h, job)
}

fn assert_complete_and_verbatim(h: &Harness, job: &BackfillProgress) {
    let truth = h.sim.tenant.audit_truth(job.since_ms, job.until_ms);
    assert!(truth.len() > 9_000, "the log holds 180 days: {}", truth.len());
    assert_exactly_once(&truth, &h.delivered());
    assert_eq!((job.state.as_str(), job.windows_failed), ("done", 0), "{job:?}");
    // Each record is the auditData object, byte for byte as the audit log served it; with the
    // envelope on, the query's own fields ride beside it.
    let raw = common::raw_by_id(h);
    for id in truth.iter().step_by(997) {
        let line = &raw[id];
        match serde_json::from_str::<Enveloped<'_>>(line) {
            Ok(e) => {
                assert_eq!(e.record.get(), h.sim.tenant.audit_raw(id).unwrap(), "record {id} differs");
                let q = e.query.expect("the query's fields");
                assert_eq!((q["id"].as_str(), q.get("auditData")), (Some(id.as_str()), None), "{q}");
                assert!(q["auditLogRecordType"].is_string() && q["operation"].is_string(), "{q}");
            }
            Err(_) => assert_eq!(line, &h.sim.tenant.audit_raw(id).unwrap(), "record {id} differs"),
        }
    }
    // The status report shows the finished job.
    let status = h.status();
    assert!(status.contains("BACKFILL JOBS") && status.contains("done"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_180_day_backfill_in_v1_splits_truncated_and_failing_windows_and_ends_with_the_ground_truth() {
    // About 60 records a day: 6-day windows are cut at 200, 3-day ones over 170 fail with 500s
    // (one query in five).
    let audit_log = AuditLogScenario {
        record_limit: 200,
        max_active: 4,
        error_after: 170,
        error_every_query: 5,
        broken_page_every: 7,
        page_size: 50,
        run_time: Duration::from_millis(200),
        ..Default::default()
    };
    let (h, job) = backfill_180_days("v1.0", audit_log, "window = \"6d\"\n", "").await;
    assert_complete_and_verbatim(&h, &job);
    let st = h.sim.tenant.audit_stats();
    // Every kind of trouble was met: truncation (a window split), 500s, broken pages, 429s.
    let seen = (st.created, st.server_errors, st.broken_pages, st.throttled);
    assert!(seen.0 > 60 && seen.1 > 0 && seen.2 > 0 && seen.3 > 0, "(created, 500s, broken, 429s) = {seen:?}");
    assert!(st.most_active <= 4, "never more queries at once than the tenant allows: {}", st.most_active);
    let distinct: HashSet<_> = st.windows.iter().collect();
    assert_eq!(distinct.len(), st.windows.len(), "a window was queried twice without a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_180_day_backfill_in_beta_treats_a_full_query_as_truncated() {
    // Beta does not say a query was cut at its record limit: the collector must notice. The
    // sink writes envelopes here, so the query's fields are checked too.
    let audit_log = AuditLogScenario { record_limit: 100, ..Default::default() };
    let (h, job) =
        backfill_180_days("beta", audit_log, "window = \"4d\"\nrecord_limit = 100\n", "envelope = true").await;
    assert_complete_and_verbatim(&h, &job);
    let st = h.sim.tenant.audit_stats();
    assert!(st.created > 45, "4-day windows of about 240 records were split: {}", st.created);
}

fn windows_with_queries(state: &std::path::Path) -> Vec<(i64, i64, String, Option<String>)> {
    let c = rusqlite::Connection::open(state.join("auditkeeper.sqlite3")).unwrap();
    let mut st = c.prepare("SELECT start_ms, end_ms, state, query_id FROM backfill_windows").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_halfway_resumes_without_redoing_windows_or_duplicating_queries() {
    let audit_log = AuditLogScenario { run_time: Duration::from_millis(800), ..Default::default() };
    let extras = ConfigExtras {
        management: "enabled = false".into(),
        audit_query: format!("{FAST}max_active_queries = 3\n"),
        ..Default::default()
    };
    let h = Harness::new(long_history(audit_log), extras).await;
    let state = h.state_dir();
    let d = BinaryDaemon::spawn(&h.config, &[]);
    wait_until("the daemon to register its streams", Duration::from_secs(30), || {
        Store::open_read_only(&state).and_then(|s| s.streams()).is_ok_and(|v| !v.is_empty())
    })
    .await;
    // Registered through the command, while the daemon runs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["backfill", "--tenant", "contoso", "--since", "120d", "--no-wait", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("120 windows"), "{}", String::from_utf8_lossy(&out.stdout));
    let start = std::time::Instant::now();
    // Killed while queries run, so the restart has running windows to pick up.
    while jobs(&h).first().is_none_or(|j| j.windows_done < 40 || j.windows_running == 0) {
        assert!(start.elapsed() < Duration::from_secs(120), "a third of the windows not done\n{}", h.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.kill();
    let before = windows_with_queries(&state);
    let done_before: HashMap<String, (i64, i64)> = before
        .iter()
        .filter(|w| w.2 == "done")
        .map(|w| (w.3.clone().expect("a done window keeps its query"), (w.0, w.1)))
        .collect();
    let running_before = before.iter().filter(|w| w.2 == "running").count();
    let created_before = h.sim.tenant.audit_stats().created;

    let d = BinaryDaemon::spawn(&h.config, &[]);
    let job = wait_finished(&h, Duration::from_secs(180)).await;
    let truth = h.sim.tenant.audit_truth(job.since_ms, job.until_ms);
    wait_delivered(&h, &truth, Duration::from_secs(30)).await;
    d.terminate();

    assert_exactly_once(&truth, &h.delivered());
    let st = h.sim.tenant.audit_stats();
    // One query per window, across the crash: the running ones were read, not created again.
    assert_eq!(st.created, 120, "created {created_before} before the kill, {} in all", st.created);
    assert!(running_before > 0, "the kill landed while queries ran");
    for (q, w) in &done_before {
        assert_eq!(st.first_page_reads.get(q), Some(&1), "finished window {w:?} was read again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_beside_the_live_feed_gives_no_duplicates_and_does_not_slow_it() {
    // Ten days of history: the last seven are served by both the live feed and the backfill.
    let scenario = Scenario {
        history_days: 10.0,
        history_records: 6_000,
        records_per_blob: 20,
        live_records_per_sec: 30.0,
        audit_log: AuditLogScenario { page_size: 50, run_time: Duration::from_millis(500), ..Default::default() },
        ..Scenario::default()
    };
    let extras = ConfigExtras { audit_query: format!("{FAST}window = \"6h\"\n"), ..Default::default() };
    let h = Harness::new(scenario, extras).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let live = |h: &Harness| {
        let streams = Store::open_read_only(&h.state_dir()).and_then(|s| s.streams()).unwrap_or_default();
        streams.into_iter().filter(|s| s.source == "management").collect::<Vec<_>>()
    };
    let lag = |h: &Harness| {
        let now = chrono::Utc::now().timestamp_millis();
        live(h).iter().filter_map(|s| s.lag_ms(now)).max().unwrap_or(i64::MAX)
    };
    let cursors = |h: &Harness| live(h).into_iter().map(|s| s.cursor).collect::<Vec<_>>();
    // The live feed catches up first; then its steady lag is the baseline. The lag is a sawtooth
    // (it grows until the next cycle moves a cursor) with a period of several seconds: a 3 s
    // look caught its trough on some runs and failed a backfill that changed nothing.
    wait_until("the live feed caught up", Duration::from_secs(90), || lag(&h) < 600_000).await;
    let mut baseline = 0;
    for _ in 0..100 {
        baseline = baseline.max(lag(&h));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ten days of blobs hold events up to 1.5 h older than the oldest blob: 11 days back.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["backfill", "--tenant", "contoso", "--since", "11d", "--no-wait", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The live feed has collected: what it delivered past the dedupe horizon would come again.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: records between") && err.contains("forwarded again"), "{err}");
    let mut during = 0;
    let before = cursors(&h);
    let mut moved = false;
    let start = std::time::Instant::now();
    while finished(&h).is_none() {
        assert!(start.elapsed() < Duration::from_secs(180), "backfill did not finish: {:?}", jobs(&h));
        during = during.max(lag(&h));
        moved |= cursors(&h) != before;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = finished(&h).unwrap();
    h.sim.tenant.freeze();
    let mut truth: HashSet<String> = h.sim.tenant.truth().ids.into_iter().collect();
    truth.extend(h.sim.tenant.audit_truth(job.since_ms, job.until_ms));
    let truth: Vec<String> = truth.into_iter().collect();
    wait_delivered(&h, &truth, Duration::from_secs(60)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&truth, &h.delivered());
    assert!(job.records > 5_000, "the backfill read the overlap too: {job:?}");
    let dupes = h.stream_sum(|s| s.counters.duplicates_total);
    assert!(dupes > 3_000, "the overlap was dropped as duplicates at ingest: {dupes}");
    // The live feed's lag stays where it was (a few poll intervals of slack on a busy machine),
    // and it kept collecting: a feed stalled for a short backfill could stay under the lag bound.
    assert!(during <= baseline + 5_000, "live lag grew from {baseline} ms to {during} ms during the backfill");
    assert!(moved, "no live cursor moved while the backfill ran ({:.1} s)", start.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_stop_at_the_daily_limit_and_status_says_why() {
    let extras = ConfigExtras {
        management: "enabled = false".into(),
        audit_query: "backfill_days = 20\npoll_interval = \"100ms\"\nmax_submissions_per_day = 5\n".into(),
        ..Default::default()
    };
    let h = Harness::new(long_history(AuditLogScenario::default()), extras).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    wait_until("five windows done", Duration::from_secs(60), || jobs(&h).first().is_some_and(|j| j.windows_done == 5))
        .await;
    wait_until("the stream to say it waits for the limit", Duration::from_secs(30), || {
        h.status().contains("5 of 5 query submissions")
    })
    .await;
    daemon.stop().await.expect("clean shutdown");
    assert_eq!(h.sim.tenant.audit_stats().created, 5);
    let j = &jobs(&h)[0];
    assert_eq!((j.windows_done, j.windows_pending, j.state.as_str()), (5, 15, "active"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_created_just_before_a_crash_is_taken_over_not_created_again() {
    let extras = ConfigExtras { management: "enabled = false".into(), audit_query: FAST.into(), ..Default::default() };
    let h = Harness::new(long_history(AuditLogScenario::default()), extras).await;
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let job = auditkeeper::store::NewBackfill {
        tenant: "contoso".into(),
        since_ms: now - 3 * day,
        until_ms: now,
        window_ms: day,
        filters: Default::default(),
        origin: "command",
    };
    let id = Store::open(&h.state_dir()).unwrap().register_backfill(&job).unwrap();
    // The previous run created the first window's query, then died before recording it.
    let body = auditkeeper::sources::audit_query::protocol::create_body(id, now - 3 * day, now - 2 * day, &job.filters);
    h.sim.tenant.audit_create("beta", serde_json::from_str(&body).unwrap()).unwrap();

    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let done = wait_finished(&h, Duration::from_secs(60)).await;
    let truth = h.sim.tenant.audit_truth(done.since_ms, done.until_ms);
    wait_delivered(&h, &truth, Duration::from_secs(30)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&truth, &h.delivered());
    let st = h.sim.tenant.audit_stats();
    assert_eq!(st.created, 3, "three windows, three queries: the orphan was taken over");
    assert_eq!(st.windows.iter().collect::<HashSet<_>>().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_follows_its_job_to_a_summary_and_the_metrics_count_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extras = ConfigExtras {
        management: "enabled = false".into(),
        audit_query: FAST.into(),
        telemetry: format!("listen = \"127.0.0.1:{port}\""),
        ..Default::default()
    };
    let h = Harness::new(long_history(AuditLogScenario::default()), extras).await;
    let state = h.state_dir();
    let d = BinaryDaemon::spawn(&h.config, &[]);
    wait_until("the daemon to register its streams", Duration::from_secs(30), || {
        Store::open_read_only(&state).and_then(|s| s.streams()).is_ok_and(|v| !v.is_empty())
    })
    .await;
    let config = h.config.clone();
    // Not on a terminal: a line per finished window on stderr, the summary on stdout.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
            .args(["backfill", "--tenant", "contoso", "--since", "5d", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("job 1: 5/5 windows done, 0 running, 0 failed") && stdout.contains("(done)"), "{stdout}");
    assert!(stderr.lines().filter(|l| l.contains("windows done")).count() >= 2, "{stderr}");
    let job = finished(&h).unwrap();
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let m = common::parse_metrics(&metrics);
    assert_eq!(common::sum_metric(&m, "auditkeeper_backfill_queries_total"), 5.0, "{metrics}");
    assert_eq!(common::sum_metric(&m, "auditkeeper_backfill_records_total"), job.records as f64, "{metrics}");
    assert!(d.terminate().success());
    // The status report, as JSON, carries the job for scripts.
    let status = auditkeeper::status::json(&state, None).unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["backfills"][0]["windows_done"], 5, "{status}");
    assert_eq!(v["backfills"][0]["state"], "done", "{status}");
}

//! A hostile or broken upstream, receiver or operator can neither take the token nor lose a
//! record: links to other hosts, redirects from a sink, a second daemon on the same state, a
//! gzip bomb, an absurd Retry-After, Dates from the future, expired skip tokens, next-page links
//! that loop, and a full disk.

#![cfg(feature = "simulator")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use auditkeeper::simulator::hostile::Attacks;
use common::receiver::{Behaviour, Receiver};
use common::{Harness, assert_exactly_once, wait_until};

/// Ids delivered by the file sink for one `source/stream` directory.
fn delivered_in(h: &Harness, sub: &str, field: &str) -> Vec<String> {
    auditkeeper::sinks::file::read::read_lines(&h.records_dir().join("contoso").join(sub))
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_to_another_host_never_get_the_token_and_the_other_streams_complete() {
    // The tampered answers point next-page and content links at this listener, which records
    // whatever reaches it.
    let thief = Receiver::start(Behaviour::default()).await;
    let scenario = Scenario {
        history_records: 1_500,
        content_types: vec!["Audit.Exchange".into(), "Audit.SharePoint".into()],
        page_size: 4,
        graph_history_records: 14_000,
        graph_history_hours: 10.0,
        attacks: Attacks {
            foreign_link_base: Some(thief.url.replace("127.0.0.1", "localhost")),
            foreign_link_streams: vec!["Audit.SharePoint".into(), "directory_audits".into()],
            ..Attacks::default()
        },
        ..Scenario::default()
    };
    let extras = ConfigExtras {
        graph: "streams = [\"directory_audits\", \"provisioning\"]\npoll_interval = \"1s\"\nlag = \"0s\"\nbackfill = \"1d\""
            .into(),
        ..ConfigExtras::default()
    };
    let h = Harness::new(scenario, extras).await;
    let exchange: HashSet<String> =
        h.sim.tenant.ids_of(h.sim.tenant.ct_index("Audit.Exchange").unwrap()).into_iter().collect();
    let now = h.sim.tenant.now();
    let provisioning: HashSet<String> =
        h.sim.tenant.graph.truth(now).into_values().filter(|(e, _)| e.kind == 5).map(|(e, _)| e.key()).collect();
    let audits = h.sim.tenant.graph.truth(now).values().filter(|(e, _)| e.kind == 4).count();
    assert!(audits > 1_000, "directory audits need a second page: {audits}");
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    wait_until("the untampered streams complete and the refusals shown", Duration::from_secs(120), || {
        let st = h.status();
        let ex: HashSet<String> = delivered_in(&h, "management/Audit.Exchange", "Id").into_iter().collect();
        let pr: HashSet<String> = delivered_in(&h, "graph/provisioning", "id").into_iter().collect();
        ex == exchange && pr == provisioning && st.matches("refused to follow a link").count() >= 2
    })
    .await;
    let status = h.status();
    daemon.stop().await.expect("clean shutdown");

    assert!(
        thief.received().is_empty(),
        "requests reached the other host: {:?}",
        thief.received().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for line in status.lines().filter(|l| l.contains("refused to follow a link")) {
        assert!(line.contains("was not sent") && !line.contains("/api/v1"), "says what happened, not where to: {line}");
    }
    // What the tampered streams returned before the link is kept; nothing past it was read.
    assert!(delivered_in(&h, "management/Audit.SharePoint", "Id").is_empty(), "its blobs all point away");
    let partial = delivered_in(&h, "graph/directory_audits", "id").len();
    assert!(partial > 0 && partial < audits, "the first page of audits, not the rest: {partial} of {audits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_redirects_confirms_nothing_and_everything_arrives_once_after_the_fix() {
    let rx = Receiver::start(Behaviour { redirect_posts_to: Some("/elsewhere".into()), ..Behaviour::default() }).await;
    let extra = format!(
        "\n[[sinks]]\ntype = \"http\"\npreset = \"generic\"\nname = \"collector\"\nurl = \"{}/ingest\"\nbatch = {{ linger = \"100ms\" }}\n",
        rx.url
    );
    let scenario =
        Scenario { history_records: 1_000, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras { extra_sinks: extra, ..ConfigExtras::default() }).await;
    let truth = h.sim.tenant.truth();
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    h.wait_complete(Duration::from_secs(60)).await;
    wait_until("redirects answered and shown", Duration::from_secs(30), || {
        rx.inner.lock().unwrap().redirected >= 3 && h.status().contains("HTTP 302 redirect")
    })
    .await;
    assert_eq!(rx.inner.lock().unwrap().redirect_gets, 0, "the POST was not replayed as a GET");
    assert!(rx.received().is_empty());
    assert_eq!(h.backlog("collector"), truth.ids.len() as i64, "nothing was marked delivered");
    let store = auditkeeper::store::Store::open_read_only(&h.state_dir()).unwrap();
    let b = store.backlogs().unwrap().into_iter().find(|b| b.sink == "collector").unwrap();
    assert_eq!(b.delivered_total, 0);

    rx.set_redirect(None);
    wait_until("delivery after the fix", Duration::from_secs(60), || h.backlog("collector") == 0).await;
    daemon.stop().await.expect("clean shutdown");
    let ids: Vec<String> = rx
        .received()
        .iter()
        .flat_map(|r| {
            r.body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["Id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut counts = std::collections::HashMap::new();
    for i in ids {
        *counts.entry(i).or_insert(0u32) += 1;
    }
    assert_exactly_once(&truth.ids, &counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_is_refused_and_a_removed_sink_keeps_its_records() {
    let scenario =
        Scenario { history_records: 3_000, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let truth = h.sim.tenant.truth();
    let first = common::BinaryDaemon::spawn(&h.config, &[]);
    h.wait_lines(1, Duration::from_secs(60)).await;

    // Another config on the same state directory, whose only sink has another name.
    let other = h.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&h.config).unwrap();
    let renamed = text.replace("name = \"archive\"", "name = \"archive-2\"").replace(
        &format!("path = \"{}\"", h.records_dir().display()),
        &format!("path = \"{}\"", h.dir.path().join("records-2").display()),
    );
    std::fs::write(&other, &renamed).unwrap();
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["run", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second daemon must not run: {err}");
    assert!(err.contains("in use by another auditkeeper") && err.contains(&format!("pid {}", first.pid())), "{err}");
    let forget = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["forget-sink", "archive", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(!forget.status.success(), "forget-sink needs the daemon stopped");

    // The first daemon was not disturbed: everything once.
    let got = h.wait_complete(Duration::from_secs(60)).await;
    assert_exactly_once(&truth.ids, &got);
    wait_until("the offset committed", Duration::from_secs(30), || h.backlog("archive") == 0).await;
    assert!(first.terminate().success());

    // Now the renamed config runs; the old sink's offset is kept and shown, not dropped.
    let second = common::BinaryDaemon::spawn(&other, &[]);
    wait_until("the new sink delivered", Duration::from_secs(60), || h.backlog("archive-2") == 0).await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["status", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(second.terminate().success());
    assert!(status.contains("NO LONGER CONFIGURED") && status.contains("forget-sink archive"), "{status}");
    assert_eq!(h.backlog("archive"), 0, "still there, with nothing owed");
    let forget = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["forget-sink", "archive", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(forget.status.success(), "{}", String::from_utf8_lossy(&forget.stderr));
    assert_eq!(h.backlog("archive"), -1, "the offset is gone");
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["forget-sink", "archive-2", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("still in the config"));
}

/// Peak resident memory of a process, from `/proc/PID/status` (`VmHWM`), in MB.
fn peak_rss_mb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 =
        s.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_refused_in_bounded_memory_and_everything_else_arrives() {
    let scenario = Scenario {
        history_records: 2_000,
        content_types: vec!["Audit.Exchange".into(), "Audit.SharePoint".into()],
        attacks: Attacks {
            bomb_content_type: Some("Audit.SharePoint".into()),
            bomb_blobs: 2,
            bomb_bytes: 2 << 30,
            ..Attacks::default()
        },
        ..Scenario::default()
    };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let truth = h.sim.tenant.truth();
    assert_eq!(truth.bomb_blobs, 2);
    let daemon = common::BinaryDaemon::spawn(&h.config, &[]);
    let got = h.wait_complete(Duration::from_secs(90)).await;
    wait_until("both bombs refused", Duration::from_secs(30), || {
        h.status().contains("2 REFUSED (over the size or compression cap)")
    })
    .await;
    let rss = peak_rss_mb(daemon.pid());
    let status = h.status();
    assert!(daemon.terminate().success());
    assert!(rss < 150, "peak RSS {rss} MB while refusing two 2 GiB bombs");
    assert_exactly_once(&truth.ids, &got);
    assert_eq!(h.stream_sum(|s| s.counters.blobs_refused), 2, "{status}");
    assert_eq!(h.stream_sum(|s| s.ledger.listed), 0, "nothing left pending: the stream went on");
    eprintln!("peak RSS {rss} MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_shows_throttled_until_a_capped_time_and_the_rest_flows() {
    let scenario = Scenario {
        history_records: 1_500,
        content_types: vec!["Audit.Exchange".into(), "Audit.General".into()],
        attacks: Attacks {
            retry_after_content_type: Some("Audit.General".into()),
            retry_after_secs: 1_000_000_000,
            ..Attacks::default()
        },
        ..Scenario::default()
    };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let exchange: HashSet<String> = h.sim.tenant.ids_of(0).into_iter().collect();
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    wait_until("Exchange complete and General shown as throttled", Duration::from_secs(60), || {
        let ex: HashSet<String> = delivered_in(&h, "management/Audit.Exchange", "Id").into_iter().collect();
        ex == exchange && h.status().contains("[throttled] until")
    })
    .await;
    let status = h.status();
    let report = auditkeeper::status::gather(&h.state_dir(), None).unwrap();
    daemon.stop().await.expect("clean shutdown");
    let general = report.streams.iter().find(|s| s.stream == "management/Audit.General").unwrap();
    assert_eq!(general.state, "throttled", "{status}");
    let line = general.throttled_until.clone().unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(&line).unwrap();
    let wait = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(wait <= chrono::Duration::minutes(16), "waits at most 15 minutes, not 31 years: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_from_the_future_never_move_a_cursor_past_now_and_nothing_is_missed() {
    let scenario = Scenario {
        history_records: 3_000,
        content_types: vec!["Audit.Exchange".into()],
        page_size: 10,
        live_records_per_sec: 100.0,
        attacks: Attacks { bad_date_every: 3, bad_date_ahead_secs: 10 * 365 * 86_400, ..Attacks::default() },
        ..Scenario::default()
    };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    h.wait_lines(3_500, Duration::from_secs(60)).await;
    h.sim.tenant.freeze();
    let got = h.wait_complete(Duration::from_secs(60)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
    let store = auditkeeper::store::Store::open_read_only(&h.state_dir()).unwrap();
    let limit = chrono::Utc::now() + chrono::Duration::hours(1);
    // The backfill stream keeps its place in its windows, not in a cursor.
    for s in store.streams().unwrap().into_iter().filter(|s| s.source != "audit_query") {
        let c = auditkeeper::sources::window::parse_cursor(s.cursor.as_deref().unwrap()).unwrap();
        assert!(c <= limit, "{} cursor {c} is in the future", s.stream);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_skip_token_restarts_the_window_instead_of_stopping_the_stream() {
    let scenario = Scenario {
        history_records: 0,
        graph_history_records: 14_000,
        graph_history_hours: 10.0,
        attacks: Attacks { graph_skiptoken_expired: 2, ..Attacks::default() },
        ..Scenario::default()
    };
    let extras = ConfigExtras {
        graph: "streams = [\"directory_audits\"]\npoll_interval = \"1s\"\nlag = \"0s\"\nbackfill = \"1d\"".into(),
        ..ConfigExtras::default()
    };
    let h = Harness::new(scenario, extras).await;
    let now = h.sim.tenant.now();
    let audits: HashSet<String> =
        h.sim.tenant.graph.truth(now).into_values().filter(|(e, _)| e.kind == 4).map(|(e, _)| e.key()).collect();
    assert!(audits.len() > 1_000, "needs a next page");
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    wait_until("every directory audit", Duration::from_secs(90), || {
        delivered_in(&h, "graph/directory_audits", "id").into_iter().collect::<HashSet<_>>() == audits
    })
    .await;
    let status = h.status();
    daemon.stop().await.expect("clean shutdown");
    let got = delivered_in(&h, "graph/directory_audits", "id");
    assert_eq!(got.len(), audits.len(), "the re-read first page was deduplicated");
    assert!(!status.contains("[failed]"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_polling_holds_the_sink_without_resending_and_resumes_by_itself() {
    let scenario = Scenario {
        history_records: 3_000,
        live_records_per_sec: 300.0,
        content_types: vec!["Audit.Exchange".into(), "Audit.General".into()],
        ..Scenario::default()
    };
    let extras = ConfigExtras { sink: "batch = { max_records = 100 }".into(), ..ConfigExtras::default() };
    let h = Harness::new(scenario, extras).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    h.wait_lines(3_000, Duration::from_secs(60)).await;

    daemon.pipeline.store.inject_disk_full(true);
    wait_until("polling paused for the full disk", Duration::from_secs(30), || {
        daemon.pipeline.gate.reason().is_some_and(|r| r.starts_with("DISK FULL"))
    })
    .await;
    // Quiet: no request goes to Microsoft, and the sink, holding its offset, sends nothing twice.
    let hr = &h;
    let quiet = |secs: u64| {
        let h = hr;
        let mut last =
            (h.sim.tenant.stats().api_requests, common::count_lines(&h.records_dir()), std::time::Instant::now());
        move || {
            let now = (h.sim.tenant.stats().api_requests, common::count_lines(&h.records_dir()));
            if (now.0, now.1) != (last.0, last.1) {
                last = (now.0, now.1, std::time::Instant::now());
            }
            last.2.elapsed() > Duration::from_secs(secs)
        }
    };
    wait_until("requests and deliveries to stop", Duration::from_secs(30), quiet(6)).await;

    daemon.pipeline.store.inject_disk_full(false);
    wait_until("polling resumed by itself", Duration::from_secs(30), || daemon.pipeline.gate.reason().is_none()).await;
    h.sim.tenant.freeze();
    let got = h.wait_complete(Duration::from_secs(60)).await;
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_page_link_that_loops_stops_its_window_with_an_error_and_never_moves_the_cursor() {
    let scenario = Scenario {
        history_records: 1_500,
        // The first window, a week back, has blobs on its (looping) first page.
        history_days: 6.5,
        content_types: vec!["Audit.Exchange".into(), "Audit.SharePoint".into()],
        page_size: 4,
        graph_history_records: 14_000,
        graph_history_hours: 10.0,
        attacks: Attacks {
            looping_streams: vec!["Audit.SharePoint".into(), "risk_detections".into()],
            ..Attacks::default()
        },
        ..Scenario::default()
    };
    let extras = ConfigExtras {
        graph:
            "streams = [\"risk_detections\", \"provisioning\"]\npoll_interval = \"1s\"\nlag = \"0s\"\nbackfill = \"1d\""
                .into(),
        ..ConfigExtras::default()
    };
    let h = Harness::new(scenario, extras).await;
    let text = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(&h.config, text.replacen("[http]\n", "[http]\nmax_pages_per_window = 10\n", 1)).unwrap();
    let exchange: HashSet<String> =
        h.sim.tenant.ids_of(h.sim.tenant.ct_index("Audit.Exchange").unwrap()).into_iter().collect();
    let sharepoint: HashSet<String> =
        h.sim.tenant.ids_of(h.sim.tenant.ct_index("Audit.SharePoint").unwrap()).into_iter().collect();
    let now = h.sim.tenant.now();
    let provisioning: HashSet<String> =
        h.sim.tenant.graph.truth(now).into_values().filter(|(e, _)| e.kind == 5).map(|(e, _)| e.key()).collect();
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let looped = |name: &str| {
        auditkeeper::store::Store::open_read_only(&h.state_dir()).and_then(|s| s.streams()).is_ok_and(|v| {
            v.iter().any(|s| s.name == name && s.last_error.as_deref().is_some_and(|e| e.contains("ran past 10 pages")))
        })
    };
    wait_until("the other streams complete and both loops reported", Duration::from_secs(120), || {
        let ex: HashSet<String> = delivered_in(&h, "management/Audit.Exchange", "Id").into_iter().collect();
        let pr: HashSet<String> = delivered_in(&h, "graph/provisioning", "id").into_iter().collect();
        let sp = delivered_in(&h, "management/Audit.SharePoint", "Id").len();
        ex == exchange && pr == provisioning && sp > 0 && looped("Audit.SharePoint") && looped("risk_detections")
    })
    .await;
    let store = auditkeeper::store::Store::open_read_only(&h.state_dir()).unwrap();
    let streams = store.streams().unwrap();
    daemon.stop().await.expect("clean shutdown");
    for name in ["Audit.SharePoint", "risk_detections"] {
        let s = streams.iter().find(|s| s.name == name).unwrap();
        // The window never ended, so it is never marked read: its records are not skipped.
        assert_eq!(s.cursor, None, "{name}");
        assert!(s.last_error.as_deref().is_some_and(|e| e.contains("ran past 10 pages")), "{name}: {:?}", s.last_error);
        assert_ne!(s.state.name(), "failed", "{name} is retried, not given up");
    }
    // What the looping page listed was still fetched, once: a failing listing does not hold
    // back the blobs it did list.
    let got = delivered_in(&h, "management/Audit.SharePoint", "Id");
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert!(!got.is_empty() && got.len() == unique.len() && unique.is_subset(&sharepoint), "{} records", got.len());
}

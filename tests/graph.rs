//! Graph activity logs: every version of every record exactly once (late sign-ins, changed
//! records, key-order noise), pacing under Microsoft's 5-per-10-s limit, and a tenant without
//! Entra ID P1/P2 whose other streams keep flowing.

#![cfg(feature = "simulator")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use auditkeeper::sources::graph::protocol::canonical;
use common::{BinaryDaemon, Harness, wait_until};

fn canon(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut s = String::new();
    canonical(&v, &mut s);
    s
}

/// Delivered Graph records: identity -> canonical contents, in delivery order.
fn delivered(h: &Harness) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for line in auditkeeper::sinks::file::read::read_lines(&h.records_dir().join("contoso/graph")).unwrap() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        // The identity each stream dedupes on.
        let id = match (v.get("eventDataId"), v.get("recipientAddress")) {
            (Some(e), _) => e.as_str().unwrap().to_string(),
            (_, Some(r)) => format!("{}|{}", v["id"].as_str().unwrap(), r.as_str().unwrap()),
            _ => v["id"].as_str().unwrap().to_string(),
        };
        m.entry(id).or_default().push(canon(&line));
    }
    m
}

/// The simulated tenant's Azure subscription (seed 42).
fn subscription() -> String {
    auditkeeper::simulator::records::guid(42, 77)
}

fn extras() -> ConfigExtras {
    ConfigExtras {
        // Default pacing (4 per 10 s) leaves a margin under Microsoft's 5 for network jitter.
        graph: format!(
            "poll_interval = \"1s\"\nlag = \"0s\"\noverlap = \"1h\"\nbackfill = \"1d\"\nazure_subscriptions = [\"{}\"]",
            subscription()
        ),
        ..ConfigExtras::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_every_record_once_within_the_rate_limit() {
    let scenario = Scenario {
        history_records: 0,
        graph_history_records: 1_800,
        graph_history_hours: 20.0,
        graph_live_records_per_sec: 20.0,
        graph_late_fraction: 0.2,
        graph_late_max: Duration::from_secs(4),
        graph_update_fraction: 0.2,
        graph_update_delay: Duration::from_secs(15),
        ..Scenario::default()
    };
    let h = Harness::new(scenario, extras()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    // Let live (and late) records be generated while collection runs, then stop generating:
    // once collection has started and about a hundred live records exist.
    wait_until("live records during collection", Duration::from_secs(60), || {
        !delivered(&h).is_empty() && h.sim.tenant.graph.truth(h.sim.tenant.now()).len() >= 1_900
    })
    .await;
    h.sim.tenant.freeze();
    let start = Instant::now();
    let (truth, got) = loop {
        let truth = h.sim.tenant.graph.truth(h.sim.tenant.now());
        let settled = h.sim.tenant.graph.last_visible_at().is_none_or(|t| t < h.sim.tenant.now());
        let got = delivered(&h);
        let complete = truth
            .values()
            .all(|(e, versions)| got.get(&e.key()).is_some_and(|d| d.contains(&canon(versions.last().unwrap()))));
        if settled && complete {
            break (truth, got);
        }
        if start.elapsed() > Duration::from_secs(150) {
            let mut missing: HashMap<usize, usize> = HashMap::new();
            for (e, versions) in truth.values() {
                if !got.get(&e.key()).is_some_and(|d| d.contains(&canon(versions.last().unwrap()))) {
                    *missing.entry(e.kind).or_default() += 1;
                }
            }
            let status = auditkeeper::status::render(&h.state_dir()).unwrap_or_default();
            panic!("incomplete: {} of {} records; missing by kind {missing:?}\n{status}", got.len(), truth.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let status = auditkeeper::status::render(&h.state_dir()).unwrap();
    daemon.stop().await.expect("clean shutdown");

    assert!(truth.len() > 1_800);
    let ids: HashSet<&String> = truth.keys().collect();
    let mut versions_delivered = 0;
    for (id, contents) in &got {
        assert!(ids.contains(id), "unknown record {id}");
        let distinct: HashSet<&String> = contents.iter().collect();
        assert_eq!(distinct.len(), contents.len(), "a version of {id} was delivered twice (key order is not a change)");
        let allowed: HashSet<String> = truth[id].1.iter().map(|v| canon(v)).collect();
        assert!(distinct.iter().all(|c| allowed.contains(*c)), "{id} delivered a version the simulator never served");
        versions_delivered += contents.len();
    }
    assert_eq!(got.len(), truth.len());
    let updates = h.stream_sum(|s| if s.source == "graph" { s.counters.updates_total } else { 0 });
    assert_eq!(
        updates as usize,
        versions_delivered - got.len(),
        "each re-delivered changed version counts as an update"
    );
    assert!(updates > 0, "the scenario changed records after first delivery");
    let report = auditkeeper::status::gather(&h.state_dir(), None).unwrap();
    assert_eq!(report.streams.iter().map(|s| s.updates).sum::<i64>(), updates, "status shows the updates");
    assert!(status.contains("STATE") && status.contains("HEADROOM"), "{status}");
    let activity = format!("azure_activity-{}", subscription());
    for kind in [
        "signins_interactive",
        "signins_noninteractive",
        "signins_service_principal",
        "signins_managed_identity",
        "directory_audits",
        "provisioning",
        "risk_detections",
        "security_alerts",
        "message_trace",
        activity.as_str(),
    ] {
        assert!(h.records_dir().join("contoso/graph").join(kind).exists(), "no output for {kind}");
    }
    // Two recipients of one message are two records (dedupe key id + recipient).
    let traces: Vec<&String> = got.keys().filter(|k| k.contains('|')).collect();
    let trace_ids: HashSet<&str> = traces.iter().map(|k| k.split('|').next().unwrap()).collect();
    assert!(trace_ids.len() < traces.len(), "paired message-trace rows must both arrive");
    let stats = h.sim.tenant.graph.stats();
    assert_eq!(stats.throttled, 0, "steady state must stay under the limit: {stats:?}");
    assert!(stats.max_requests_per_10s <= 5, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_p1_p2_keeps_its_other_streams_flowing() {
    let scenario = Scenario {
        history_records: 0,
        graph_history_records: 600,
        graph_history_hours: 20.0,
        premium: false,
        ..Scenario::default()
    };
    let h = Harness::new(scenario, extras()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let start = Instant::now();
    let want: HashSet<String> = h
        .sim
        .tenant
        .graph
        .truth(h.sim.tenant.now())
        .into_values()
        // Audits, provisioning, alerts, message trace and activity need no P1/P2; risk detections do.
        .filter(|(e, _)| matches!(e.kind, 4 | 5 | 7 | 8 | 9))
        .map(|(e, _)| e.key())
        .collect();
    let status = loop {
        let got = delivered(&h);
        let status = auditkeeper::status::render(&h.state_dir()).unwrap();
        if want.iter().all(|i| got.contains_key(i)) && status.matches("    [unavailable] ").count() == 5 {
            assert_eq!(got.len(), want.len(), "no sign-in can arrive without P1/P2");
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "audits and provisioning did not complete:\n{status}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    daemon.stop().await.expect("clean shutdown");
    let blocks: Vec<&str> = status
        .split("  contoso/")
        .filter(|b| b.starts_with("graph/signins_") || b.starts_with("graph/risk_detections"))
        .collect();
    assert_eq!(blocks.len(), 5, "{status}");
    for b in blocks {
        assert!(b.contains("[unavailable]") && b.contains("P1/P2"), "{b}");
        assert!(
            b.contains("AuditLog.Read.All") || b.contains("IdentityRiskEvent.Read.All"),
            "names what is needed: {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_and_a_throttling_storm_lose_nothing() {
    let scenario = Scenario {
        history_records: 0,
        graph_history_records: 1_500,
        graph_history_hours: 20.0,
        graph_update_fraction: 0.1,
        graph_update_delay: Duration::from_secs(1),
        ..Scenario::default()
    };
    let extras = ConfigExtras {
        graph: "streams = [\"signins_interactive\", \"directory_audits\"]\npoll_interval = \"1s\"\nlag = \"0s\"\noverlap = \"1h\"\nbackfill = \"1d\"".into(),
        ..ConfigExtras::default()
    };
    let h = Harness::new(scenario, extras).await;
    let first = Daemon::start(&h.settings()).await.expect("daemon");
    let start = Instant::now();
    while delivered(&h).len() < 100 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    first.stop().await.expect("clean shutdown");

    // Another client of the same app spends the whole auditLogs budget for a while: the
    // collector meets 429s and must wait them out, losing nothing.
    let token = h.sim.tenant.issue_token();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&h.sim.ca_file).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let url = format!("{}/v1.0/auditLogs/directoryAudits", h.sim.base_url());
    let storm = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let _ = client.get(&url).bearer_auth(&token).send().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let second = Daemon::start(&h.settings()).await.expect("daemon");
    storm.await.unwrap();
    let now = h.sim.tenant.now();
    let truth: HashMap<String, Vec<String>> = h
        .sim
        .tenant
        .graph
        .truth(now)
        .into_values()
        .filter(|(e, _)| matches!(e.kind, 0 | 4))
        .map(|(e, v)| (e.key(), v.iter().map(|x| canon(x)).collect()))
        .collect();
    let start = Instant::now();
    let got = loop {
        let got = delivered(&h);
        if truth.iter().all(|(k, v)| got.get(k).is_some_and(|d| d.contains(v.last().unwrap()))) {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "incomplete after the storm: {} of {}",
            got.len(),
            truth.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    second.stop().await.expect("clean shutdown");
    assert!(h.sim.tenant.graph.stats().throttled > 0, "the storm must have caused 429s");
    assert_eq!(got.len(), truth.len());
    for (k, contents) in &got {
        let distinct: HashSet<&String> = contents.iter().collect();
        assert_eq!(distinct.len(), contents.len(), "{k} delivered the same version twice across the restart");
        assert!(contents.iter().all(|c| truth[k].contains(c)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_resumes_every_graph_and_arm_stream() {
    let scenario = Scenario {
        history_records: 0,
        graph_history_records: 3_000,
        graph_history_hours: 20.0,
        graph_update_fraction: 0.1,
        graph_update_delay: Duration::from_secs(1),
        ..Scenario::default()
    };
    let mut extras = extras();
    extras.sink = "batch = { max_records = 200 }".into();
    let h = Harness::new(scenario, extras).await;
    // Kill each run as soon as it delivered something of its own: mid-stream, since a page of
    // every stream takes a few paced calls.
    let mut kills = 0;
    for progress in [1usize, 1, 1] {
        let before = delivered(&h).values().map(Vec::len).sum::<usize>();
        let daemon = BinaryDaemon::spawn(&h.config, &[]);
        wait_until("progress before the kill", Duration::from_secs(120), || {
            delivered(&h).values().map(Vec::len).sum::<usize>() >= before + progress
        })
        .await;
        daemon.kill();
        kills += 1;
    }
    let before_final = delivered(&h).len();
    let now = h.sim.tenant.now();
    let truth = h.sim.tenant.graph.truth(now);
    assert!(before_final < truth.len(), "the kills must land before the end");
    let daemon = BinaryDaemon::spawn(&h.config, &[]);
    let start = Instant::now();
    let got = loop {
        let got = delivered(&h);
        if truth.values().all(|(e, v)| got.get(&e.key()).is_some_and(|d| d.contains(&canon(v.last().unwrap())))) {
            break got;
        }
        // Generous: the four Graph tests share two cores, and six report streams share 4 calls per 10 s.
        if start.elapsed() > Duration::from_secs(300) {
            let mut missing: HashMap<usize, usize> = HashMap::new();
            for (e, v) in truth.values() {
                if !got.get(&e.key()).is_some_and(|d| d.contains(&canon(v.last().unwrap()))) {
                    *missing.entry(e.kind).or_default() += 1;
                }
            }
            let status = auditkeeper::status::render(&h.state_dir()).unwrap_or_default();
            panic!("incomplete after the kills: missing by kind {missing:?}\n{status}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(daemon.terminate().success());
    // Pages re-read after a kill are dropped at ingest (their keys were committed with them);
    // only a batch in flight to the sink can repeat: at most one batch per kill.
    let mut repeats = 0;
    for (k, contents) in &got {
        let allowed: HashSet<String> = truth[k].1.iter().map(|v| canon(v)).collect();
        assert!(contents.iter().all(|c| allowed.contains(c)), "{k}: unknown version");
        let distinct: HashSet<&String> = contents.iter().collect();
        repeats += contents.len() - distinct.len();
    }
    assert!(repeats <= kills * 200, "{repeats} repeated records after {kills} kills");
    assert_eq!(got.len(), truth.len());
}

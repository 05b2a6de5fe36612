//! Graph activity logs: every version of every record exactly once (late sign-ins, changed
//! records, key-order noise), pacing under Microsoft's 5-per-10-s limit, and a tenant without
//! Entra ID P1/P2 whose other streams keep flowing.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use auditkeeper::sources::graph::protocol::canonical;
use common::Harness;

fn canon(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut s = String::new();
    canonical(&v, &mut s);
    s
}

/// Delivered Graph records: id -> canonical contents, in delivery order.
fn delivered(h: &Harness) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for line in
        auditkeeper::sinks::file::read::read_lines(&h.records_dir().join("contoso/graph")).unwrap()
    {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let id = v["id"].as_str().unwrap().to_string();
        m.entry(id).or_default().push(canon(&line));
    }
    m
}

fn extras() -> ConfigExtras {
    ConfigExtras {
        // Default pacing (4 per 10 s) leaves a margin under Microsoft's 5 for network jitter.
        graph: "poll_interval = \"1s\"\nlag = \"0s\"\noverlap = \"1h\"\nbackfill = \"1d\"".into(),
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
    tokio::time::sleep(Duration::from_secs(6)).await;
    h.sim.tenant.freeze();
    let start = Instant::now();
    let (truth, got) = loop {
        let truth = h.sim.tenant.graph.truth(h.sim.tenant.now());
        let settled = h
            .sim
            .tenant
            .graph
            .last_visible_at()
            .is_none_or(|t| t < h.sim.tenant.now());
        let got = delivered(&h);
        let complete = truth.values().all(|(e, versions)| {
            got.get(&e.id)
                .is_some_and(|d| d.contains(&canon(versions.last().unwrap())))
        });
        if settled && complete {
            break (truth, got);
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "incomplete: {} of {} records",
            got.len(),
            truth.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let status = auditkeeper::status::render(&h.state_dir()).unwrap();
    daemon.stop().await;

    assert!(truth.len() > 1_800);
    let ids: HashSet<&String> = truth.keys().collect();
    let mut versions_delivered = 0;
    for (id, contents) in &got {
        assert!(ids.contains(id), "unknown record {id}");
        let distinct: HashSet<&String> = contents.iter().collect();
        assert_eq!(
            distinct.len(),
            contents.len(),
            "a version of {id} was delivered twice (key order is not a change)"
        );
        let allowed: HashSet<String> = truth[id].1.iter().map(|v| canon(v)).collect();
        assert!(
            distinct.iter().all(|c| allowed.contains(*c)),
            "{id} delivered a version the simulator never served"
        );
        versions_delivered += contents.len();
    }
    assert_eq!(got.len(), truth.len());
    let updates = h.stream_sum(|s| {
        if s.source == "graph" {
            s.counters.updates_total
        } else {
            0
        }
    });
    assert_eq!(
        updates as usize,
        versions_delivered - got.len(),
        "each re-delivered changed version counts as an update"
    );
    assert!(
        updates > 0,
        "the scenario changed records after first delivery"
    );
    assert!(status.contains("updates of known records"), "{status}");
    for kind in [
        "signins_interactive",
        "signins_noninteractive",
        "signins_service_principal",
        "signins_managed_identity",
        "directory_audits",
        "provisioning",
    ] {
        assert!(
            h.records_dir().join("contoso/graph").join(kind).exists(),
            "no output for {kind}"
        );
    }
    let stats = h.sim.tenant.graph.stats();
    assert_eq!(
        stats.throttled, 0,
        "steady state must stay under the limit: {stats:?}"
    );
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
        .filter(|(e, _)| e.kind >= 4)
        .map(|(e, _)| e.id)
        .collect();
    let status = loop {
        let got = delivered(&h);
        let status = auditkeeper::status::render(&h.state_dir()).unwrap();
        if want.iter().all(|i| got.contains_key(i)) && status.matches("[unavailable]").count() == 4
        {
            assert_eq!(got.len(), want.len(), "no sign-in can arrive without P1/P2");
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "audits and provisioning did not complete:\n{status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    daemon.stop().await;
    let signin_blocks: Vec<&str> = status
        .split("  contoso/")
        .filter(|b| b.starts_with("graph/signins_"))
        .collect();
    assert_eq!(signin_blocks.len(), 4, "{status}");
    for b in signin_blocks {
        assert!(b.contains("[unavailable]") && b.contains("P1/P2"), "{b}");
        assert!(
            b.contains("AuditLog.Read.All"),
            "status names what is needed: {b}"
        );
    }
}

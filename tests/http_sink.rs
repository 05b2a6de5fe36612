//! HTTP sink presets against a local collector: wire format byte by byte, limits, throttling,
//! Splunk indexer acknowledgement, Azure Monitor's token, and poison records bisected into the
//! dead-letter table and redelivered on request.

#![cfg(feature = "simulator")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::receiver::{Behaviour, Receiver};
use common::{Harness, assert_exactly_once, raw_by_id};

fn scenario() -> Scenario {
    Scenario { history_records: 3_000, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() }
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(ids: impl IntoIterator<Item = String>) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for i in ids {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sumologic_gets_gzip_ndjson_under_1mb_with_templated_headers_and_resends_after_429() {
    let rx = Receiver::start(Behaviour { throttle_first: 2, ..Behaviour::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("sumo-url");
    let secret_code = "ZaVnC4dhaV3uTKlvYqgZ8secretCollectorCode==";
    std::fs::write(&url_file, format!("{}/receiver/v1/http/{secret_code}", rx.url)).unwrap();
    let extra = format!(
        r#"
[[sinks]]
type = "http"
preset = "sumologic"
name = "sumo"
url_file = "{}"
category = "o365/{{tenant}}/{{stream}}"
source_name = "auditkeeper"
host = "{{tenant}}"
fields = {{ tenant = "{{tenant}}", feed = "o365" }}
batch = {{ linger = "200ms" }}
"#,
        url_file.display()
    );
    let h = Harness::new(scenario(), ConfigExtras { extra_sinks: extra, ..ConfigExtras::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    wait_for("sumo delivery", Duration::from_secs(60), || {
        rx.received().iter().map(|r| r.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count()).sum::<usize>()
            >= truth.ids.len()
    })
    .await;
    let status = auditkeeper::status::render(&h.state_dir()).unwrap();
    daemon.stop().await.expect("clean shutdown");

    let raw = raw_by_id(&h);
    let mut ids = Vec::new();
    for r in rx.received() {
        assert_eq!(r.path, format!("/receiver/v1/http/{secret_code}"));
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert_eq!(r.headers["x-sumo-category"], "o365/contoso/Audit.Exchange");
        assert_eq!(r.headers["x-sumo-name"], "auditkeeper");
        assert_eq!(r.headers["x-sumo-host"], "contoso");
        assert_eq!(r.headers["x-sumo-fields"], "feed=o365,tenant=contoso");
        assert!(r.body.len() <= 1_000_000, "a POST carried {} bytes uncompressed", r.body.len());
        assert!(r.wire_bytes < r.body.len(), "gzip made the body smaller");
        assert!(r.body.ends_with(b"\n"));
        for line in r.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = std::str::from_utf8(line).unwrap();
            let id = auditkeeper::sinks::file::read::record_id(line).expect("one JSON record per line");
            assert_eq!(raw[&id], line, "record {id} must arrive byte-identical");
            ids.push(id);
        }
    }
    assert_eq!(rx.inner.lock().unwrap().throttled, 2, "the 429s were answered");
    assert_exactly_once(&truth.ids, &count(ids));
    assert!(!status.contains(secret_code), "the collector code never shows in status:\n{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_event_objects_carry_event_time_and_commit_only_after_indexer_ack() {
    let rx = Receiver::start(Behaviour { splunk_ack: true, ..Behaviour::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("hec-token");
    std::fs::write(&token_file, "11111111-2222-3333-4444-555555555555\n").unwrap();
    let channel = "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba";
    let extra = format!(
        r#"
[[sinks]]
type = "http"
preset = "splunk_hec"
name = "splunk"
url = "{}"
token_file = "{}"
index = "o365"
host = "collector-1"
ack = true
channel = "{channel}"
fields = {{ env = "test" }}
batch = {{ max_records = 700, linger = "100ms" }}
"#,
        rx.url,
        token_file.display()
    );
    let h = Harness::new(scenario(), ConfigExtras { extra_sinks: extra, ..ConfigExtras::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    let store_dir = h.state_dir();
    wait_for("splunk offset to reach the end", Duration::from_secs(60), || {
        auditkeeper::store::Store::open_read_only(&store_dir)
            .and_then(|s| s.backlogs())
            .map(|b| b.iter().all(|x| x.records == 0 && x.delivered_total as usize >= truth.ids.len()))
            .unwrap_or(false)
    })
    .await;
    daemon.stop().await.expect("clean shutdown");

    let raw = raw_by_id(&h);
    let mut ids = Vec::new();
    let received = rx.received();
    for r in &received {
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(r.headers["authorization"], "Splunk 11111111-2222-3333-4444-555555555555");
        assert_eq!(r.headers["x-splunk-request-channel"], channel);
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(text.starts_with("{\"time\":"), "concatenated event objects, not an array");
        for v in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
            let v = v.expect("concatenated JSON objects");
            let id = v["event"]["Id"].as_str().unwrap().to_string();
            let creation = chrono::NaiveDateTime::parse_from_str(
                v["event"]["CreationTime"].as_str().unwrap(),
                "%Y-%m-%dT%H:%M:%S",
            )
            .unwrap()
            .and_utc()
            .timestamp_millis();
            assert_eq!(
                (v["time"].as_f64().unwrap() * 1000.0).round() as i64,
                creation,
                "time is the record's event time"
            );
            assert_eq!(v["sourcetype"], "o365:management:activity");
            assert_eq!(v["source"], "auditkeeper:contoso:Audit.Exchange");
            assert_eq!(v["index"], "o365");
            assert_eq!(v["host"], "collector-1");
            assert_eq!(
                v["fields"],
                serde_json::json!({"tenant": "contoso", "stream": "Audit.Exchange", "env": "test"})
            );
            assert!(
                text.contains(&format!(",\"event\":{}}}", raw[&id])),
                "event {id} carries the record byte-identical"
            );
            ids.push(id);
        }
    }
    let g = rx.inner.lock().unwrap();
    assert!(g.ack_requests >= received.len(), "every batch waited for its ack ({} polls)", g.ack_requests);
    drop(g);
    assert_exactly_once(&truth.ids, &count(ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_monitor_logs_ingestion_gets_a_json_array_with_time_generated_and_a_valid_token() {
    let rx = Receiver::start(Behaviour { success: Some(204), ..Behaviour::default() }).await;
    let extra = format!(
        r#"
[[sinks]]
type = "http"
preset = "azure_monitor"
name = "sentinel"
url = "{}"
tenant = "contoso"
dcr_immutable_id = "dcr-00000000000000000000000000000000"
dcr_streams = {{ "management" = "Custom-O365Audit_CL", "*" = "Custom-Auditkeeper_CL" }}
"#,
        rx.url
    );
    let h = Harness::new(scenario(), ConfigExtras { extra_sinks: extra, ..ConfigExtras::default() }).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    let n = truth.ids.len();
    wait_for("monitor delivery", Duration::from_secs(60), || {
        rx.received()
            .iter()
            .map(|r| serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).unwrap().len())
            .sum::<usize>()
            >= n
    })
    .await;
    daemon.stop().await.expect("clean shutdown");

    let raw = raw_by_id(&h);
    let mut ids = Vec::new();
    for r in rx.received() {
        assert_eq!(r.path, "/dataCollectionRules/dcr-00000000000000000000000000000000/streams/Custom-O365Audit_CL");
        assert_eq!(r.query.as_deref(), Some("api-version=2023-01-01"));
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert!(r.body.len() <= 1_000_000);
        let token = r.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string();
        assert!(h.sim.tenant.token_valid(&token), "a token issued by the tenant's authority");
        let arr: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("a JSON array");
        let text = std::str::from_utf8(&r.body).unwrap();
        for v in arr {
            let id = v["Id"].as_str().unwrap().to_string();
            let creation = v["CreationTime"].as_str().unwrap();
            assert_eq!(v["TimeGenerated"].as_str().unwrap(), format!("{creation}.000Z"));
            let original = &raw[&id];
            let expected = format!("{{\"TimeGenerated\":\"{creation}.000Z\",{}", &original[1..]);
            assert!(text.contains(&expected), "record {id}: TimeGenerated added, the rest byte-identical");
            ids.push(id);
        }
    }
    assert_exactly_once(&truth.ids, &count(ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_bisected_into_dead_letter_while_the_rest_flow_and_retry_delivers_it() {
    let rx = Receiver::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2-very-secret").unwrap();
    let extra = format!(
        r#"
[[sinks]]
type = "http"
preset = "generic"
name = "collector"
url = "{}/ingest"
format = "json_array"
compression = "none"
auth = "basic"
username = "ak"
password_file = "{}"
headers = {{ "X-Team" = "soc" }}
batch = {{ max_records = 256 }}
"#,
        rx.url,
        pw.display()
    );
    let h = Harness::new(scenario(), ConfigExtras { extra_sinks: extra, ..ConfigExtras::default() }).await;
    let truth = h.sim.tenant.truth();
    let poison = truth.ids[truth.ids.len() / 2].clone();
    rx.set_reject(Some(poison.clone()));
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    h.wait_complete(Duration::from_secs(90)).await;
    let ids_at = |rx: &Receiver| -> HashMap<String, u32> {
        count(rx.received().iter().flat_map(|r| {
            serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
                .unwrap()
                .into_iter()
                .map(|v| v["Id"].as_str().unwrap().to_string())
        }))
    };
    wait_for("all but the poison record", Duration::from_secs(60), || ids_at(&rx).len() >= truth.ids.len() - 1).await;
    let state = h.state_dir();
    wait_for("the dead letter", Duration::from_secs(30), || {
        auditkeeper::admin::list(&state, &Default::default(), 10, false).unwrap().contains(&poison)
    })
    .await;
    let got = ids_at(&rx);
    assert!(!got.contains_key(&poison));
    assert!(got.values().all(|n| *n == 1), "bisecting resends nothing that was accepted");
    let dead =
        auditkeeper::store::Store::open_read_only(&state).unwrap().dead_letters(&Default::default(), 10).unwrap();
    assert_eq!(dead.len(), 1, "exactly one dead letter: {dead:?}");
    assert_eq!((dead[0].sink.as_str(), dead[0].record_id.as_str()), ("collector", poison.as_str()));
    assert!(dead[0].reason.contains("HTTP 400") && dead[0].reason.contains("Invalid data format"), "{:?}", dead[0]);
    assert_eq!(dead[0].raw, raw_by_id(&h)[&poison].as_bytes(), "the dead letter holds the record, byte for byte");
    let status = auditkeeper::status::render(&state).unwrap();
    assert!(status.contains("DEAD LETTERS: 1 record(s)"), "{status}");
    assert!(!status.contains("hunter2"), "{status}");
    for r in rx.received() {
        assert_eq!(r.headers["authorization"], "Basic YWs6aHVudGVyMi12ZXJ5LXNlY3JldA==");
        assert_eq!(r.headers["x-team"], "soc");
        assert_eq!(r.path, "/ingest");
    }

    // The receiver is fixed; the operator asks for redelivery.
    rx.set_reject(None);
    let sel = auditkeeper::store::DeadLetterSelector { sink: Some("collector".into()), ..Default::default() };
    assert_eq!(auditkeeper::admin::retry(&state, &sel).unwrap(), 1);
    wait_for("the retried record", Duration::from_secs(30), || ids_at(&rx).contains_key(&poison)).await;
    wait_for("an empty dead-letter table", Duration::from_secs(10), || {
        auditkeeper::admin::list(&state, &Default::default(), 10, false).unwrap().contains("no dead letters")
    })
    .await;
    daemon.stop().await.expect("clean shutdown");
    let got = ids_at(&rx);
    let truth_set: HashSet<&String> = truth.ids.iter().collect();
    assert!(got.keys().all(|k| truth_set.contains(k)));
    assert_exactly_once(&truth.ids, &got);
}

//! The Prometheus endpoint of the real binary: every counter equals what the store and the
//! sink say happened.

#![cfg(feature = "simulator")]

mod common;

use std::time::Duration;

use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{BinaryDaemon, Harness, parse_metrics as parse, sum_metric as sum, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_equal_what_was_ingested_deduplicated_and_delivered() {
    let scenario = Scenario { history_records: 1_500, duplicate_fraction: 0.05, ..Scenario::default() };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // The old key name, kept as an alias.
    let telemetry = format!("metrics_listen = \"127.0.0.1:{port}\"");
    let h = Harness::new(scenario, ConfigExtras { telemetry, ..ConfigExtras::default() }).await;
    let daemon = BinaryDaemon::spawn(&h.config, &[]);
    let got = h.wait_complete(Duration::from_secs(60)).await;
    let truth = h.sim.tenant.truth();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    // Delivered and committed, and the delivered spool rows pruned by maintenance.
    wait_until("the offset committed", Duration::from_secs(30), || h.backlog("archive") == 0).await;
    let mut body = scrape().await;
    let start = std::time::Instant::now();
    loop {
        let m = parse(&body);
        if sum(&m, "auditkeeper_sink_sent_records_total") >= truth.ids.len() as f64
            && m.get(&("auditkeeper_spool_records".into(), String::new())) == Some(&0.0)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "metrics never caught up:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        body = scrape().await;
    }
    assert!(daemon.terminate().success());
    let m = parse(&body);
    let n = truth.ids.len() as f64;
    assert_eq!(got.len(), truth.ids.len());
    assert_eq!(sum(&m, "auditkeeper_records_spooled_total"), n, "{body}");
    assert_eq!(sum(&m, "auditkeeper_sink_sent_records_total"), n, "{body}");
    let store = auditkeeper::store::Store::open_read_only(&h.state_dir()).unwrap();
    let streams = store.streams().unwrap();
    for s in &streams {
        let key = (
            "auditkeeper_records_spooled_total".to_string(),
            format!("tenant=\"{}\",stream=\"{}/{}\"", s.tenant, s.source, s.name),
        );
        assert_eq!(m.get(&key).copied().unwrap_or(0.0), s.counters.records_total as f64, "{}", s.stream);
    }
    let duplicates: i64 = streams.iter().map(|s| s.counters.duplicates_total).sum();
    assert!(duplicates > 0, "the scenario re-delivered records");
    assert_eq!(sum(&m, "auditkeeper_records_duplicate_total"), duplicates as f64, "{body}");
    assert_eq!(m.get(&("auditkeeper_polling_paused".into(), String::new())).copied().unwrap_or(0.0), 0.0);
    assert_eq!(sum(&m, "auditkeeper_sink_send_failures_total"), 0.0, "{body}");
    let sent_bytes = sum(&m, "auditkeeper_sink_sent_bytes_total");
    let raw: usize = common::raw_by_id(&h).values().map(|l| l.len()).sum();
    assert_eq!(sent_bytes, raw as f64, "bytes sent are the records' bytes");
}

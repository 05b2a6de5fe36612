//! The Prometheus endpoint of the real binary exposes ingest, delivery and the paused gauge.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_records_and_sink_deliveries() {
    let h = Harness::new(Scenario { history_records: 1_000, ..Scenario::default() }, ConfigExtras::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(
        &h.config,
        text.replace("[spool]", &format!("[telemetry]\nmetrics_listen = \"127.0.0.1:{port}\"\n\n[spool]")),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["run", "--config"])
        .arg(&h.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    h.wait_complete(Duration::from_secs(60)).await;
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let value = |name: &str| -> f64 {
        body.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    let truth = h.sim.tenant.truth().ids.len() as f64;
    assert_eq!(value("auditkeeper_records_ingested_total"), truth, "{body}");
    assert_eq!(value("auditkeeper_sink_sent_records_total"), truth, "{body}");
    assert!(body.contains("auditkeeper_spool_bytes"), "{body}");
}

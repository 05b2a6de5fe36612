//! A wrong client secret: the daemon keeps running, says clearly what is wrong, and never
//! prints the secret in logs or `status`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_secret_is_reported_without_being_printed() {
    let h = Harness::new(Scenario { history_records: 200, ..Scenario::default() }, ConfigExtras::default()).await;
    let wrong = "Wr0ng-Secret-Value-Never-To-Be-Seen";
    std::fs::write(h.dir.path().join("client-secret"), wrong).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
        .args(["run", "--config"])
        .arg(&h.config)
        .env("AUDITKEEPER_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status =
        Command::new(env!("CARGO_BIN_EXE_auditkeeper")).args(["status", "--config"]).arg(&h.config).output().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!logs.contains(wrong) && !status.contains(wrong), "the secret leaked");
    assert!(status.contains("AADSTS7000215"), "status must say why: {status}");
    assert!(h.delivered().is_empty());
}

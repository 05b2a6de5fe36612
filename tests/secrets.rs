//! A wrong client secret: the daemon keeps running, says clearly what is wrong, and never
//! prints the secret in logs or `status`.

#![cfg(feature = "simulator")]

mod common;

use std::process::Command;
use std::time::Duration;

use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{BinaryDaemon, Harness, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_secret_is_reported_without_being_printed() {
    let h = Harness::new(Scenario { history_records: 200, ..Scenario::default() }, ConfigExtras::default()).await;
    let wrong = "Wr0ng-Secret-Value-Never-To-Be-Seen";
    std::fs::write(h.dir.path().join("client-secret"), wrong).unwrap();
    let log = h.dir.path().join("daemon.log");
    let daemon = BinaryDaemon::spawn_logging(&h.config, &[("AUDITKEEPER_LOG", "debug".as_ref())], &log);
    // The refusal reaches status once the call's retries (and the one token refresh) are spent.
    wait_until("the refusal in status", Duration::from_secs(60), || h.status().contains("AADSTS7000215")).await;
    let status =
        Command::new(env!("CARGO_BIN_EXE_auditkeeper")).args(["status", "--config"]).arg(&h.config).output().unwrap();
    assert!(daemon.terminate().success());
    let logs = std::fs::read_to_string(&log).unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(logs.contains("AADSTS7000215"), "the logs say why too");
    assert!(!logs.contains(wrong) && !status.contains(wrong), "the secret leaked");
    assert!(status.contains("AADSTS7000215"), "status must say why: {status}");
    assert!(h.delivered().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_hubs_key_and_its_signatures_never_reach_logs_or_status() {
    let fake = common::eventhubs::FakeEventHubs::start(1 << 20).await;
    fake.faults(|f| f.put_token_status = 401);
    let key = "RXZlbnRIdWJzU2VjcmV0S2V5VGhhdE11c3ROb3RMZWFrMDA=";
    let conn = h_dir_file(
        "eh",
        &format!(
            "Endpoint=sb://{}/;SharedAccessKeyName=send;SharedAccessKey={key};EntityPath=audit",
            common::eventhubs::NAMESPACE
        ),
    );
    let sink = format!(
        "\n[[sinks]]\ntype = \"eventhubs\"\nname = \"hub\"\nconnection_string_file = \"{}\"\ncustom_endpoint = \"{}\"\n",
        conn.1.display(),
        fake.endpoint()
    );
    let h = Harness::new(
        Scenario { history_records: 200, ..Scenario::default() },
        ConfigExtras { extra_sinks: sink, ..ConfigExtras::default() },
    )
    .await;
    let log_file = h.dir.path().join("daemon.log");
    let daemon = BinaryDaemon::spawn_logging(&h.config, &[("AUDITKEEPER_LOG", "trace".as_ref())], &log_file);
    wait_until("two SAS tokens offered", Duration::from_secs(60), || fake.tokens().len() >= 2).await;
    let status =
        Command::new(env!("CARGO_BIN_EXE_auditkeeper")).args(["status", "--config"]).arg(&h.config).output().unwrap();
    assert!(daemon.terminate().success());
    let logs = std::fs::read_to_string(&log_file).unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    let offered = fake.tokens();
    assert!(!offered.is_empty(), "the client offered a SAS token:\n{status}");
    let signature = offered[0].token.split("sig=").nth(1).unwrap().split('&').next().unwrap().to_string();
    for (what, text) in [("logs", logs.as_str()), ("status", status.as_ref())] {
        assert!(!text.contains(key), "the key leaked into {what}");
        assert!(!text.contains(&signature), "a SAS signature leaked into {what}");
    }
    assert!(status.contains("refused the credential"), "status must say why: {status}");
    drop(conn.0);
}

/// A file in a fresh directory (kept alive by the returned guard).
fn h_dir_file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, text).unwrap();
    (d, p)
}

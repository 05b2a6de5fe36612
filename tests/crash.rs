//! Crash safety of the real binary: `kill -9` at several moments during heavy ingest, then a
//! clean run to the end. Nothing may be lost, and duplicates stay within one batch per kill.

#![cfg(feature = "simulator")]

mod common;

use std::process::Command;
use std::time::Duration;

use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{BinaryDaemon, Harness};

const BATCH: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_heavy_ingest_loses_nothing() {
    let scenario = Scenario {
        history_records: 30_000,
        records_per_blob: 100,
        page_size: 20,
        duplicate_fraction: 0.02,
        ..Scenario::default()
    };
    let extras = ConfigExtras { sink: format!("batch = {{ max_records = {BATCH} }}"), ..ConfigExtras::default() };
    let h = Harness::new(scenario, extras).await;
    let total = h.sim.tenant.truth().ids.len();

    // Kill once a run has delivered a number of records chosen from a fixed seed, so every
    // kill lands mid-ingest and a failure reproduces.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut kills = 0;
    for _ in 0..4 {
        let before = common::count_lines(&h.records_dir());
        let daemon = BinaryDaemon::spawn(&h.config, &[]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let progress = 500 + (seed % 3_000) as usize;
        h.wait_lines(before + progress, Duration::from_secs(60)).await;
        // `status` must read the database safely while the daemon writes it.
        let status = Command::new(env!("CARGO_BIN_EXE_auditkeeper"))
            .args(["status", "--config"])
            .arg(&h.config)
            .output()
            .expect("status");
        assert!(status.status.success(), "status failed: {}", String::from_utf8_lossy(&status.stderr));
        daemon.kill();
        kills += 1;
    }
    assert!(common::count_lines(&h.records_dir()) < total, "the kills happened before the end");

    // A final run to completion, stopped with SIGTERM: it must exit 0.
    let daemon = BinaryDaemon::spawn(&h.config, &[]);
    let got = h.wait_complete(Duration::from_secs(180)).await;
    let exit = daemon.terminate();
    assert!(exit.success(), "graceful shutdown must exit 0, got {exit:?}");

    let truth = h.sim.tenant.truth();
    let missing = truth.ids.iter().filter(|i| !got.contains_key(*i)).count();
    assert_eq!(missing, 0);
    let duplicates: usize = got.values().map(|n| (*n - 1) as usize).sum();
    assert!(duplicates <= kills * BATCH, "{duplicates} duplicates after {kills} kills: more than one batch per kill");
    eprintln!("{kills} kills, {duplicates} duplicates, {total} records");
    let lines = common::count_lines(&h.records_dir());
    assert_eq!(lines, total + duplicates, "no torn or foreign lines in the output");
}

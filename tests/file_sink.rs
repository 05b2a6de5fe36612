//! File sink layout: rotation by size, gzip of closed files, envelope mode; and a fatal API
//! code that stops one stream while the others complete.

#![cfg(feature = "simulator")]

mod common;

use std::time::Duration;

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use common::{Harness, assert_exactly_once};

fn files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_are_gzipped_and_envelopes_carry_metadata_around_the_exact_record() {
    let scenario =
        Scenario { history_records: 6_000, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() };
    let extras = ConfigExtras { sink: "rotate_bytes = \"1MiB\"\nenvelope = true".into(), ..ConfigExtras::default() };
    let h = Harness::new(scenario, extras).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let got = h.wait_complete(Duration::from_secs(60)).await;
    // Compression of closed files runs in the background.
    let start = std::time::Instant::now();
    while files(&h.records_dir(), ".jsonl").len() > 1 {
        assert!(start.elapsed() < Duration::from_secs(20), "closed files were not compressed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&h.sim.tenant.truth().ids, &got);

    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let gz = files(&h.records_dir(), ".jsonl.gz");
    assert!(gz.len() >= 5, "6000 records of ~1.6 KB in 1 MiB files: {gz:?}");
    let open = files(&h.records_dir(), ".jsonl");
    assert_eq!(open.len(), 1, "only the current file stays uncompressed");
    let expected_dir = h.records_dir().join("contoso/management/Audit.Exchange");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&expected_dir), 0o700, "audit records are for the daemon's user only");
    for f in gz.iter().chain(open.iter()) {
        assert_eq!(mode(f), 0o600, "{f:?}");
        assert_eq!(f.parent().unwrap(), expected_dir);
        assert!(f.file_name().unwrap().to_string_lossy().starts_with(&format!("{day}-")), "{f:?}");
    }
    // Envelope: metadata beside the record, the record byte for byte as the simulator served it.
    let lines = auditkeeper::sinks::file::read::read_lines(&h.records_dir()).unwrap();
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["tenant"], "contoso");
    assert_eq!(first["source"], "management");
    assert_eq!(first["stream"], "Audit.Exchange");
    assert!(first["collected_at"].as_str().unwrap().ends_with('Z'));
    let raw = lines[0].split_once(",\"record\":").unwrap().1;
    let raw = &raw[..raw.len() - 1];
    let id = first["record"]["Id"].as_str().unwrap();
    let served = find_served(&h, id);
    assert_eq!(raw, served, "the record must be forwarded byte for byte");
}

/// The exact text the simulator served for record `id`.
fn find_served(h: &Harness, id: &str) -> String {
    let t = &h.sim.tenant;
    for seq in 0.. {
        let Some(b) = (0..t.scenario.content_types.len()).find_map(|ct| t.blob_at(ct, seq)) else {
            break;
        };
        let body = String::from_utf8(t.blob_body(&b).to_vec()).unwrap();
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(&body).unwrap();
        if let Some(r) = items.iter().find(|r| r.get().contains(id)) {
            return r.get().to_string();
        }
    }
    panic!("record {id} not served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_code_stops_only_its_stream() {
    let scenario = Scenario {
        history_records: 2_000,
        forbidden_content_types: vec!["Audit.SharePoint".into()],
        ..Scenario::default()
    };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let start = std::time::Instant::now();
    let sharepoint = h.sim.tenant.ct_index("Audit.SharePoint").unwrap();
    // Everything but SharePoint arrives.
    let truth_others: Vec<String> = {
        let all = h.sim.tenant.truth().ids;
        let sp: std::collections::HashSet<String> = h.sim.tenant.ids_of(sharepoint).into_iter().collect();
        all.into_iter().filter(|i| !sp.contains(i)).collect()
    };
    loop {
        let got = h.delivered();
        if truth_others.iter().all(|i| got.contains_key(i)) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "other streams did not complete");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = auditkeeper::status::render(&h.state_dir()).unwrap();
    daemon.stop().await.expect("clean shutdown");
    assert_exactly_once(&truth_others, &h.delivered());
    let line = status.lines().skip_while(|l| !l.contains("Audit.SharePoint  [")).take(5).collect::<Vec<_>>().join("\n");
    assert!(line.contains("[unavailable] AF10001"), "{status}");
    assert!(line.contains("ActivityFeed.Read"), "the message says what to fix: {line}");
}

//! The archive sink: closed files sealed into a hash-chained manifest, `archive verify` naming
//! the first break (edited file, removed entry, missing file), and retention recorded in the chain.

#![cfg(feature = "simulator")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use auditkeeper::daemon::Daemon;
use auditkeeper::demo::ConfigExtras;
use auditkeeper::simulator::Scenario;
use auditkeeper::sinks::file::manifest::{self, Manifest};
use common::Harness;

fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_auditkeeper")).args(["archive", "verify"]).arg(dir).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn entries(dir: &Path) -> Vec<manifest::Entry> {
    std::fs::read_to_string(dir.join(manifest::FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn gz_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".jsonl.gz") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_files_form_a_chain_and_verify_names_the_first_break() {
    let scenario =
        Scenario { history_records: 6_000, content_types: vec!["Audit.Exchange".into()], ..Scenario::default() };
    let h = Harness::new(scenario, ConfigExtras::default()).await;
    let archive = h.dir.path().join("evidence");
    std::fs::write(
        &h.config,
        std::fs::read_to_string(&h.config).unwrap()
            + &format!(
                "\n[[sinks]]\ntype = \"archive\"\nname = \"evidence\"\npath = \"{}\"\nrotate_bytes = \"1MiB\"\n",
                archive.display()
            ),
    )
    .unwrap();
    let daemon = Daemon::start(&h.settings()).await.expect("daemon");
    let truth = h.sim.tenant.truth();
    h.wait_complete(Duration::from_secs(90)).await;
    let start = Instant::now();
    // Every closed (rotated) file gets compressed and sealed in the background.
    while entries(&archive).len() < 5 || gz_files(&archive).len() != entries(&archive).len() {
        assert!(start.elapsed() < Duration::from_secs(60), "files sealed: {:?}", entries(&archive).len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await.expect("clean shutdown");

    let e = entries(&archive);
    assert_eq!(e[0].prev, "0".repeat(64));
    let lines: Vec<String> =
        std::fs::read_to_string(archive.join(manifest::FILE)).unwrap().lines().map(str::to_string).collect();
    for i in 1..e.len() {
        assert_eq!(e[i].prev, manifest::sha256_hex(lines[i - 1].as_bytes()), "entry {i} chains to entry {}", i - 1);
        assert_eq!(e[i].seq, i as u64);
    }
    for x in &e {
        assert_eq!(x.kind, "file");
        let bytes = std::fs::read(archive.join(&x.path)).unwrap();
        assert_eq!(manifest::sha256_hex(&bytes), x.sha256);
        // The sealed range is exactly the span of the file's records' event times.
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut text).unwrap();
        let times: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let t = chrono::NaiveDateTime::parse_from_str(v["CreationTime"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S")
                    .unwrap();
                t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            })
            .collect();
        assert_eq!(x.records, times.len() as u64, "{x:?}");
        assert_eq!(x.first_event.as_ref(), times.iter().min(), "{x:?}");
        assert_eq!(x.last_event.as_ref(), times.iter().max(), "{x:?}");
        assert!(
            !archive.join(format!("{}.range", x.path.trim_end_matches(".gz"))).exists(),
            "sidecar removed once sealed"
        );
    }
    let sealed: u64 = e.iter().map(|x| x.records).sum();
    assert!(sealed > 0 && sealed <= truth.ids.len() as u64);
    let (ok, out) = verify(&archive);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{} files sealed ({sealed} records)", e.len())), "{out}");

    // 1. One byte of a sealed file changes.
    let victim = archive.join(&e[2].path);
    let original = std::fs::read(&victim).unwrap();
    let mut edited = original.clone();
    let mid = edited.len() / 2;
    edited[mid] ^= 0x01;
    std::fs::write(&victim, &edited).unwrap();
    let (ok, out) = verify(&archive);
    assert!(!ok);
    assert!(out.contains(&format!("ARCHIVE BROKEN at {} (manifest seq 2): SHA-256 is", e[2].path)), "{out}");
    std::fs::write(&victim, &original).unwrap();
    assert!(verify(&archive).0);

    // 2. A manifest entry is removed (hiding a file): the next entry's link breaks.
    let kept: Vec<&String> = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| l).collect();
    std::fs::write(archive.join(manifest::FILE), kept.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (ok, out) = verify(&archive);
    assert!(!ok);
    assert!(out.contains("ARCHIVE BROKEN at MANIFEST.jsonl line 2 (seq 2): previous-entry hash"), "{out}");
    std::fs::write(archive.join(manifest::FILE), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();

    // 3. A sealed file is deleted.
    std::fs::remove_file(&victim).unwrap();
    let (ok, out) = verify(&archive);
    assert!(!ok);
    assert!(
        out.contains(&format!("ARCHIVE BROKEN at {} (manifest seq 2)", e[2].path)) && out.contains("missing"),
        "{out}"
    );
}

#[test]
fn retention_deletes_whole_old_days_and_records_it_in_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let stream = root.join("contoso/management/Audit.Exchange");
    std::fs::create_dir_all(&stream).unwrap();
    let m = Manifest::open(root).unwrap();
    for day in ["2026-01-01", "2026-01-02", "2026-11-20"] {
        let plain = stream.join(format!("{day}-000.jsonl"));
        std::fs::write(&plain, format!("{{\"Id\":\"a-{day}\",\"CreationTime\":\"{day}T10:00:00\"}}\n")).unwrap();
        // What the writer keeps beside each file: the event-time range of its records.
        let t = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap().and_hms_opt(10, 0, 0).unwrap();
        let ms = t.and_utc().timestamp_millis();
        auditkeeper::sinks::file::write_range(
            &plain,
            auditkeeper::sinks::file::EventRange { first_ms: ms, last_ms: ms },
        )
        .unwrap();
        let gz = auditkeeper::sinks::file::gzip_file(&plain).unwrap();
        m.seal(&gz).unwrap();
        m.seal(&gz).unwrap(); // sealing twice is a no-op
    }
    assert_eq!(entries(root).len(), 3);
    assert_eq!(entries(root)[0].first_event.as_deref(), Some("2026-01-01T10:00:00.000Z"));
    let cutoff = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    assert_eq!(m.apply_retention(cutoff, 20).unwrap(), 2);
    assert_eq!(m.apply_retention(cutoff, 20).unwrap(), 0, "a deletion is recorded once");
    let e = entries(root);
    assert_eq!(e.len(), 5);
    assert_eq!((e[3].kind.as_str(), e[4].kind.as_str()), ("deleted", "deleted"));
    assert!(e[3].reason.as_deref().unwrap().contains("older than 20 days"));
    assert_eq!(gz_files(root).len(), 1);
    let (ok, out) = verify(root);
    assert!(ok, "{out}");
    assert!(out.contains("2 deleted by retention"), "{out}");
}

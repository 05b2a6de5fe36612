//! The archive's manifest: `MANIFEST.jsonl` at the archive root, one entry per sealed file and
//! per deletion, each carrying the SHA-256 of the previous entry's line. Editing, removing or
//! reordering a file or an entry breaks a hash, and `auditkeeper archive verify` names the first
//! break.
//!
//! Invariant: a file is sealed (hashed into the manifest) only once it is complete and
//! compressed, and the manifest line is fsynced before the seal counts. Sealing is idempotent,
//! so a crash between compressing and sealing is repaired by the next start's sweep.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FILE: &str = "MANIFEST.jsonl";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// `file` (sealed) or `deleted` (removed by retention).
    pub kind: String,
    /// Relative to the archive root.
    pub path: String,
    pub records: u64,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
    /// SHA-256 of the compressed file.
    pub sha256: String,
    pub bytes: u64,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// SHA-256 of the previous manifest line (all zeros for the first).
    pub prev: String,
}

pub struct Manifest {
    root: PathBuf,
    lock: Mutex<()>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha256_file(p: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Records in a sealed `.jsonl.gz`: counted from the file itself, never trusted from elsewhere.
fn count_records(p: &Path) -> std::io::Result<u64> {
    let r = BufReader::new(flate2::read::MultiGzDecoder::new(File::open(p)?));
    let mut n = 0u64;
    for line in r.split(b'\n') {
        if !line?.is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

fn ts(ms: i64) -> String {
    crate::sinks::envelope::rfc3339_ms(ms)
}

/// Reads every entry line; a torn last line (crash mid-append) is cut off when `repair`.
fn read_lines(path: &Path, repair: bool) -> std::io::Result<Vec<String>> {
    let mut text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    if !text.is_empty() && !text.ends_with(b"\n") && repair {
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        tracing::warn!(manifest = %path.display(), cut_bytes = text.len() - keep, "archive manifest: removed a torn last entry left by a crash; its file is sealed again");
        OpenOptions::new().write(true).open(path)?.set_len(keep as u64)?;
        text.truncate(keep);
    }
    Ok(String::from_utf8_lossy(&text).lines().map(str::to_string).collect())
}

impl Manifest {
    pub fn open(root: &Path) -> std::io::Result<Manifest> {
        crate::common::dirs::create_private(root)?;
        read_lines(&root.join(FILE), true)?;
        Ok(Manifest { root: root.to_path_buf(), lock: Mutex::new(()) })
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root).unwrap_or(p).to_string_lossy().to_string()
    }

    fn append(&self, lines: &[String], mut e: Entry) -> std::io::Result<()> {
        e.seq = lines.len() as u64;
        e.prev = lines.last().map(|l| sha256_hex(l.as_bytes())).unwrap_or_else(|| GENESIS.into());
        let mut line = serde_json::to_string(&e).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = OpenOptions::new().create(true).append(true).mode(0o600).open(self.root.join(FILE))?;
        f.write_all(line.as_bytes())?;
        f.sync_all()
    }

    fn listed(lines: &[String]) -> Vec<Entry> {
        lines.iter().filter_map(|l| serde_json::from_str::<Entry>(l).ok()).collect()
    }

    /// Hashes a completed `.jsonl.gz` into the chain (no-op if it already is).
    pub fn seal(&self, gz: &Path) -> std::io::Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let rel = self.rel(gz);
        let lines = read_lines(&self.root.join(FILE), false)?;
        if Self::listed(&lines).iter().any(|e| e.kind == "file" && e.path == rel) {
            return Ok(());
        }
        let (sha, bytes) = sha256_file(gz)?;
        let records = count_records(gz)?;
        // The event-time range the writer kept beside the file (absent for files written before
        // it did, or if the sidecar was lost: the entry then has no range, never a wrong one).
        let range = super::writer::read_range(gz);
        let e = Entry {
            seq: 0,
            kind: "file".into(),
            path: rel,
            records,
            first_event: range.map(|r| ts(r.first_ms)),
            last_event: range.map(|r| ts(r.last_ms)),
            sha256: sha,
            bytes,
            at: ts(chrono::Utc::now().timestamp_millis()),
            reason: None,
            prev: String::new(),
        };
        self.append(&lines, e)?;
        let _ = std::fs::remove_file(super::writer::range_path(gz));
        Ok(())
    }

    /// Seals every compressed file the manifest does not list yet (after a crash).
    pub fn seal_unlisted(&self) {
        for p in unlisted(&self.root).unwrap_or_default() {
            if let Err(e) = self.seal(&p) {
                tracing::error!(file = %p.display(), error = %e, "archive: could not seal file into the manifest");
            }
        }
    }

    /// Deletes sealed files of days before `cutoff` (file-name date), recording each deletion.
    pub fn apply_retention(&self, cutoff: chrono::NaiveDate, days: u32) -> std::io::Result<usize> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = read_lines(&self.root.join(FILE), false)?;
        let entries = Self::listed(&lines);
        let deleted: std::collections::HashSet<&str> =
            entries.iter().filter(|e| e.kind == "deleted").map(|e| e.path.as_str()).collect();
        let mut n = 0;
        for e in entries.iter().filter(|e| e.kind == "file" && !deleted.contains(e.path.as_str())) {
            let name = e.path.rsplit('/').next().unwrap_or("");
            let Some(day) = name.get(..10).and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else {
                continue;
            };
            if day >= cutoff {
                continue;
            }
            let Some(target) = inside(&self.root, &e.path) else {
                tracing::error!(path = %e.path, "archive retention: manifest entry names a path outside the archive; not deleting it");
                continue;
            };
            match std::fs::remove_file(target) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
            let d = Entry {
                kind: "deleted".into(),
                at: ts(chrono::Utc::now().timestamp_millis()),
                reason: Some(format!("retention: day {day} is older than {days} days")),
                ..e.clone()
            };
            self.append(&lines, d)?;
            lines = read_lines(&self.root.join(FILE), false)?;
            n += 1;
        }
        Ok(n)
    }
}

/// `root/rel`, only if it stays under `root` once `..` and symlinks are resolved: a tampered
/// manifest must never make retention delete anything else.
fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        return None;
    }
    let full = root.join(rel);
    let real_root = root.canonicalize().ok()?;
    let real_parent = full.parent()?.canonicalize().ok()?;
    real_parent.starts_with(&real_root).then_some(full)
}

/// Compressed files under `root` that the manifest does not list as sealed.
fn unlisted(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let lines = read_lines(&root.join(FILE), false)?;
    let listed: std::collections::HashSet<String> =
        Manifest::listed(&lines).into_iter().filter(|e| e.kind == "file").map(|e| e.path).collect();
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".jsonl.gz") {
                let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().to_string();
                if !listed.contains(&rel) {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retention_only_resolves_paths_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("archive");
        std::fs::create_dir_all(root.join("t/management/x")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("t/escape")).unwrap();
        assert!(super::inside(&root, "t/management/x/2026-01-01-000.jsonl.gz").is_some());
        for bad in ["../outside.gz", "/etc/passwd", "t/../../outside.gz", "t/escape/outside.gz", ""] {
            assert!(super::inside(&root, bad).is_none(), "{bad}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read the archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("ARCHIVE BROKEN at {first}{}", if *.more > 0 { format!(" (and {} more problem(s) after it)", .more) } else { String::new() })]
    Broken { first: String, more: usize },
}

/// Checks the chain and every sealed file's hash; an unlisted compressed file is a problem too
/// (nothing vouches for it). Returns a summary when everything holds.
pub fn verify(root: &Path) -> Result<String, VerifyError> {
    let path = root.join(FILE);
    if !path.exists() {
        return Err(VerifyError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {FILE} in {}", root.display()),
        )));
    }
    let text = std::fs::read(&path)?;
    let mut problems: Vec<String> = Vec::new();
    if !text.is_empty() && !text.ends_with(b"\n") {
        problems.push(format!("{FILE}: the last entry is incomplete (torn write or truncation)"));
    }
    let text = String::from_utf8_lossy(&text);
    let mut prev = GENESIS.to_string();
    let (mut files, mut deleted, mut records) = (0usize, 0usize, 0u64);
    let mut live: std::collections::HashMap<String, Entry> = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{FILE} line {}", i + 1);
        match serde_json::from_str::<Entry>(line) {
            Err(e) => problems.push(format!("{at}: not a manifest entry ({e})")),
            Ok(e) => {
                if e.prev != prev {
                    problems.push(format!(
                        "{at} (seq {}): previous-entry hash is {} but line {} hashes to {}; an entry before it was edited, removed or reordered",
                        e.seq, e.prev, i, prev
                    ));
                }
                if e.seq != i as u64 {
                    problems
                        .push(format!("{at}: seq is {} but should be {i}; entries were removed or reordered", e.seq));
                }
                match e.kind.as_str() {
                    "file" => {
                        files += 1;
                        records += e.records;
                        live.insert(e.path.clone(), e);
                    }
                    "deleted" => {
                        deleted += 1;
                        live.remove(&e.path);
                    }
                    k => problems.push(format!("{at}: unknown entry kind {k:?}")),
                }
            }
        }
        prev = sha256_hex(line.as_bytes());
    }
    let mut paths: Vec<&String> = live.keys().collect();
    paths.sort();
    for p in paths {
        let e = &live[p];
        match sha256_file(&root.join(p)) {
            Err(err) => problems.push(format!("{p} (manifest seq {}): {err}; a sealed file is missing", e.seq)),
            Ok((sha, bytes)) if sha != e.sha256 => problems.push(format!(
                "{p} (manifest seq {}): SHA-256 is {sha} ({bytes} bytes) but the manifest sealed {} ({} bytes); the file was modified",
                e.seq, e.sha256, e.bytes
            )),
            Ok(_) => {}
        }
    }
    for p in unlisted(root)? {
        problems.push(format!("{}: compressed file not in the manifest (nothing vouches for it)", p.display()));
    }
    if let Some(first) = problems.first() {
        return Err(VerifyError::Broken { first: first.clone(), more: problems.len() - 1 });
    }
    Ok(format!(
        "archive OK: {} manifest entries, {files} files sealed ({records} records), {deleted} deleted by retention, {} files present and matching; chain head {prev}",
        files + deleted,
        live.len()
    ))
}

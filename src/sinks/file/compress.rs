//! Gzip of closed files: write `.gz.tmp`, fsync, rename, then remove the original, so a crash
//! at any point leaves either the plain file or the complete archive, never neither.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::manifest::Manifest;

pub fn gzip_file(path: &Path) -> std::io::Result<PathBuf> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", path.display()));
    {
        let mut input = BufReader::new(File::open(path)?);
        let out = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
        let mut enc = GzEncoder::new(BufWriter::new(out), Compression::default());
        std::io::copy(&mut input, &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, &gz)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    std::fs::remove_file(path)?;
    Ok(gz)
}

/// Compresses in the background, then seals the result into the archive manifest if there is
/// one; a failure leaves the plain file in place and is logged.
pub fn spawn(path: PathBuf, manifest: Option<Arc<Manifest>>) {
    std::thread::spawn(move || match gzip_file(&path) {
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "could not compress closed file; left uncompressed")
        }
        Ok(gz) => {
            if let Some(m) = manifest
                && let Err(e) = m.seal(&gz)
            {
                tracing::error!(file = %gz.display(), error = %e, "archive: could not seal file into the manifest; retried at next start");
            }
        }
    });
}

/// Compresses `.jsonl` files of days before `today` (closed by a previous run), and removes
/// half-written `.gz.tmp` files whose source still exists.
pub fn sweep_stale(root: &Path, today: NaiveDate, manifest: Option<Arc<Manifest>>) {
    let prefix = today.format("%Y-%m-%d").to_string();
    let mut stack = vec![root.to_path_buf()];
    let mut stale = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".gz.tmp") {
                let _ = std::fs::remove_file(&p);
            } else if name.ends_with(".jsonl") && !name.starts_with(&prefix) {
                stale.push(p);
            }
        }
    }
    // Only after the scan, so the sweep never deletes a `.gz.tmp` it is writing itself.
    for p in stale {
        spawn(p, manifest.clone());
    }
}

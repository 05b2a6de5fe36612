//! One open JSON Lines file per stream, with rotation and crash repair.
//!
//! Invariant: a file only ever ends in a complete line once synced. On (re)open, a torn
//! trailing line left by a crash is cut off, so the resent batch does not follow garbage.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;

use super::compress;
use super::manifest::Manifest;

pub struct StreamFile {
    path: PathBuf,
    file: File,
    day: NaiveDate,
    index: u32,
    size: u64,
    inode: (u64, u64),
    pending: Vec<u8>,
}

pub fn stream_dir(root: &Path, key: &(String, String, String)) -> PathBuf {
    root.join(&key.0).join(&key.1).join(&key.2)
}

fn file_name(day: NaiveDate, index: u32) -> String {
    format!("{}-{:03}.jsonl", day.format("%Y-%m-%d"), index)
}

impl StreamFile {
    /// Opens today's newest file for the stream (appending), or creates the first one.
    pub fn open(root: &Path, key: &(String, String, String), day: NaiveDate) -> std::io::Result<StreamFile> {
        let dir = stream_dir(root, key);
        std::fs::create_dir_all(&dir)?;
        let prefix = day.format("%Y-%m-%d").to_string();
        let mut newest: Option<(u32, bool)> = None; // (index, compressed)
        for e in std::fs::read_dir(&dir)? {
            let name = e?.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix(&format!("{prefix}-")) else {
                continue;
            };
            let (idx, gz) = match (rest.strip_suffix(".jsonl"), rest.strip_suffix(".jsonl.gz")) {
                (Some(i), _) => (i, false),
                (_, Some(i)) => (i, true),
                _ => continue,
            };
            if let Ok(i) = idx.parse::<u32>()
                && newest.is_none_or(|(n, _)| i > n || (i == n && !gz))
            {
                newest = Some((i, gz));
            }
        }
        let index = match newest {
            Some((i, false)) => i,
            Some((i, true)) => i + 1,
            None => 0,
        };
        Self::open_at(&dir, day, index)
    }

    fn open_at(dir: &Path, day: NaiveDate, index: u32) -> std::io::Result<StreamFile> {
        let path = dir.join(file_name(day, index));
        let existed = path.exists();
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        if existed {
            trim_torn_tail(&mut file)?;
        } else {
            File::open(dir)?.sync_all()?;
        }
        let meta = file.metadata()?;
        Ok(StreamFile {
            path,
            day,
            index,
            size: meta.len(),
            inode: (meta.dev(), meta.ino()),
            file,
            pending: Vec::new(),
        })
    }

    /// Rotates on a new UTC day or when the size limit is reached, and reopens if the file was
    /// moved or deleted under us (writing into an unlinked file would lose the records).
    pub fn ensure_current(
        &mut self,
        root: &Path,
        key: &(String, String, String),
        today: NaiveDate,
        rotate_bytes: u64,
        manifest: Option<&Arc<Manifest>>,
    ) -> std::io::Result<()> {
        if today != self.day || self.size >= rotate_bytes {
            self.flush()?;
            self.file.sync_all()?;
            let closed = self.path.clone();
            let index = if today != self.day { 0 } else { self.index + 1 };
            *self = Self::open_at(&stream_dir(root, key), today, index)?;
            compress::spawn(closed, manifest.cloned());
            return Ok(());
        }
        if self.pending.is_empty() {
            match std::fs::metadata(&self.path) {
                Ok(m) if (m.dev(), m.ino()) == self.inode => {}
                Ok(_) | Err(_) => {
                    *self = Self::open(root, key, today)?;
                }
            }
        }
        Ok(())
    }

    pub fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(line);
        self.size += line.len() as u64;
        if self.pending.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }
}

/// Cuts a trailing partial line (no final newline) left by a crash mid-write.
fn trim_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(p) = buf[..n].iter().rposition(|b| *b == b'\n') {
            let keep = start + p as u64 + 1;
            tracing::warn!(cut_bytes = len - keep, "file sink: trimmed a torn last line left by a crash");
            file.set_len(keep)?;
            return file.sync_all();
        }
        end = start;
    }
    file.set_len(0)?;
    file.sync_all()
}

//! One open JSON Lines file per stream, with rotation and crash repair.
//!
//! Invariant: a file only ever ends in a complete line once synced. On (re)open, a torn
//! trailing line left by a crash is cut off, so the resent batch does not follow garbage.
//!
//! For an archive, each file also has a sidecar `X.jsonl.range` holding the first and last
//! event time of its records (from the spool, so the sink needs to know nothing about where a
//! record keeps its time). It is written before the data it describes, so after a crash it
//! covers at least every record in the file; the manifest seals it and removes it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
    /// Archive only: first and last event time of the file's records, and whether the sidecar
    /// is behind.
    range: Option<EventRange>,
    range_dirty: bool,
    track_range: bool,
}

/// First and last event time (ms) of a file's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRange {
    pub first_ms: i64,
    pub last_ms: i64,
}

impl EventRange {
    fn widen(r: Option<EventRange>, t: i64) -> EventRange {
        match r {
            None => EventRange { first_ms: t, last_ms: t },
            Some(r) => EventRange { first_ms: r.first_ms.min(t), last_ms: r.last_ms.max(t) },
        }
    }
}

/// The sidecar of `X.jsonl` (or of its compressed `X.jsonl.gz`).
pub fn range_path(data: &Path) -> PathBuf {
    let s = data.to_string_lossy();
    PathBuf::from(format!("{}.range", s.strip_suffix(".gz").unwrap_or(&s)))
}

pub fn read_range(data: &Path) -> Option<EventRange> {
    let text = std::fs::read_to_string(range_path(data)).ok()?;
    let (a, b) = text.trim().split_once(' ')?;
    Some(EventRange { first_ms: a.trim().parse().ok()?, last_ms: b.trim().parse().ok()? })
}

/// Overwrites the sidecar in one small write of fixed width, then syncs it.
pub fn write_range(data: &Path, r: EventRange) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let line = format!("{:>20} {:>20}\n", r.first_ms, r.last_ms);
    let f = OpenOptions::new().create(true).write(true).truncate(false).open(range_path(data))?;
    f.write_all_at(line.as_bytes(), 0)?;
    f.sync_data()
}

pub fn stream_dir(root: &Path, key: &(String, String, String)) -> PathBuf {
    root.join(&key.0).join(&key.1).join(&key.2)
}

fn file_name(day: NaiveDate, index: u32) -> String {
    format!("{}-{:03}.jsonl", day.format("%Y-%m-%d"), index)
}

impl StreamFile {
    /// Opens today's newest file for the stream (appending), or creates the first one.
    pub fn open(
        root: &Path,
        key: &(String, String, String),
        day: NaiveDate,
        track_range: bool,
    ) -> std::io::Result<StreamFile> {
        let dir = stream_dir(root, key);
        crate::common::dirs::create_private(&dir)?;
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
        Self::open_at(&dir, day, index, track_range)
    }

    fn open_at(dir: &Path, day: NaiveDate, index: u32, track_range: bool) -> std::io::Result<StreamFile> {
        let path = dir.join(file_name(day, index));
        let existed = path.exists();
        // Audit records are for the daemon's user only, whatever the umask.
        let mut file = OpenOptions::new().create(true).read(true).append(true).mode(0o600).open(&path)?;
        if existed {
            trim_torn_tail(&mut file)?;
        } else {
            File::open(dir)?.sync_all()?;
        }
        let meta = file.metadata()?;
        Ok(StreamFile {
            day,
            index,
            size: meta.len(),
            inode: (meta.dev(), meta.ino()),
            range: if track_range && existed { read_range(&path) } else { None },
            path,
            file,
            pending: Vec::new(),
            range_dirty: false,
            track_range,
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
            self.sync_range()?;
            *self = Self::open_at(&stream_dir(root, key), today, index, self.track_range)?;
            compress::spawn(closed, manifest.cloned());
            return Ok(());
        }
        if self.pending.is_empty() {
            match std::fs::metadata(&self.path) {
                Ok(m) if (m.dev(), m.ino()) == self.inode => {}
                Ok(_) | Err(_) => {
                    *self = Self::open(root, key, today, self.track_range)?;
                }
            }
        }
        Ok(())
    }

    /// Appends one line, which `line` writes straight into the file's buffer: building it
    /// elsewhere first copied every record once more.
    pub fn write(&mut self, event_time_ms: i64, line: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        if self.track_range {
            let r = EventRange::widen(self.range, event_time_ms);
            self.range_dirty |= Some(r) != self.range;
            self.range = Some(r);
        }
        let before = self.pending.len();
        line(&mut self.pending);
        self.size += (self.pending.len() - before) as u64;
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
        // The range first: it may cover records a crash then loses, never miss one it holds.
        self.sync_range()?;
        self.flush()?;
        self.file.sync_data()
    }

    fn sync_range(&mut self) -> std::io::Result<()> {
        if let (true, Some(r)) = (self.range_dirty, self.range) {
            write_range(&self.path, r)?;
            self.range_dirty = false;
        }
        Ok(())
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

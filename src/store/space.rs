//! How much room the state takes and has: the database's used pages (spool, dedupe keys, dead
//! letters, ledger, all of it), the dead letters alone, and the filesystem's free space. Plus
//! telling a full disk apart from other store errors.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::cached::Cached;
use super::{Result, Store, StoreError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the database in use (page_count - freelist_count pages), WAL excluded.
    pub db_bytes: u64,
    pub dead_letter_bytes: u64,
    /// Free space for an unprivileged writer on the state directory's filesystem.
    pub free_bytes: u64,
}

impl StoreError {
    /// SQLITE_FULL, or an I/O error that is ENOSPC or EDQUOT.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. } => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::StateDir { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            }
            _ => false,
        }
    }
}

/// Free bytes on the filesystem holding `dir`, as an unprivileged process sees them.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

impl Store {
    pub fn usage(&self) -> Result<Usage> {
        let (pages, free_pages, page_size, dead): (i64, i64, i64, i64) = self.with_writer(|c| {
            let p = c.one("PRAGMA page_count", [], |r| r.get(0))?;
            let f = c.one("PRAGMA freelist_count", [], |r| r.get(0))?;
            let s = c.one("PRAGMA page_size", [], |r| r.get(0))?;
            let d = c.one("SELECT COALESCE(SUM(length(raw)), 0) FROM dead_letter", [], |r| r.get(0))?;
            Ok((p, f, s, d))
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        Ok(Usage {
            db_bytes: ((pages - free_pages).max(0) * page_size) as u64,
            dead_letter_bytes: dead.max(0) as u64,
            free_bytes: free_bytes(dir).unwrap_or(u64::MAX),
        })
    }

    /// A small write that needs the disk: whether the store can take writes again.
    pub fn probe_write(&self) -> Result<()> {
        self.with_writer(|c| {
            c.run(
                "INSERT INTO flags(key, value, updated_at) VALUES ('write_probe', '', ?1)
                 ON CONFLICT(key) DO UPDATE SET updated_at = excluded.updated_at",
                [super::now_ms()],
            )
            .map(|_| ())
        })
    }

    /// Makes every write fail as a full disk would, for tests of what the daemon does then.
    #[doc(hidden)]
    pub fn inject_disk_full(&self, on: bool) {
        self.disk_full_injected.store(on, Ordering::Relaxed);
    }
}

//! One daemon per state directory.
//!
//! INVARIANT: `run`, `demo` and `forget-sink` hold an exclusive `flock` on
//! `<state_dir>/auditkeeper.lock` for as long as they write. A second writer is refused before
//! it opens the database, so it can never drop the first daemon's sink offsets or prune spool
//! rows its sinks have not delivered. The lock dies with the process, so a `kill -9` never
//! leaves a stale lock behind. Read-only commands (`status`, `dead-letter list`) and the small
//! transactional updates of `dead-letter retry` and `purge` do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "auditkeeper.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir} is in use by another auditkeeper{}; stop it first, or give this one its own state_dir",
        .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held { dir: PathBuf, pid: Option<String> },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while the process may write to the state directory; released on drop or exit.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        crate::common::dirs::create_private(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = Some(pid.trim().to_string()).filter(|p| !p.is_empty());
                return Err(LockError::Held { dir: state_dir.to_path_buf(), pid });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the message the next one prints.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_the_lock_frees_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(d.path()).unwrap();
        let e = StateLock::acquire(d.path()).unwrap_err();
        assert!(matches!(&e, LockError::Held { pid: Some(p), .. } if *p == std::process::id().to_string()), "{e}");
        assert!(e.to_string().contains("in use by another auditkeeper"), "{e}");
        drop(first);
        StateLock::acquire(d.path()).expect("free again");
    }
}

//! The SQLite store: the only module that writes SQL.
//!
//! It owns the schema (see `migrations`), the single writer connection, and every query the
//! daemon and `status` need. Everything durable lives here: stream cursors, the blob ledger,
//! dedupe keys, the spool of undelivered records and each sink's delivery offset.
//!
//! Concurrency model: one writer connection behind a mutex (SQLite allows one writer at a time
//! anyway) and short-lived reader connections, which WAL mode lets run beside the writer.

mod backfill;
mod blobs;
mod cached;
pub mod codec;
mod deadletter;
mod ingest;
pub mod lock;
mod migrations;
mod prune;
mod recent;
mod space;
mod spool;
mod state;
mod streams;
mod tenants;

pub use backfill::{
    BackfillFilters, BackfillProgress, BackfillWindow, NewBackfill, WindowState, windows as backfill_windows,
};
pub use blobs::{BlobListing, LedgerCounts, PendingBlob};
pub use deadletter::{DeadLetter, DeadLetterCount, DeadLetterSelector};
pub use ingest::{Checkpoint, IngestOutcome, IngestPage, PageRecord, Pending};
pub use recent::RecentRows;
pub use space::{Usage, free_bytes};
pub use spool::{SinkBacklog, SpoolRow, SpoolSize};
pub use state::StreamState;
pub use streams::{StreamCounters, StreamStatus, ThrottledMailbox};
pub use tenants::Forgotten;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} was written by a newer auditkeeper (schema version {found}, this build knows up to {known}); refusing to open it so it is not altered. Run the newer version or restore a backup."
    )]
    NewerSchema { path: PathBuf, found: i64, known: i64 },
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A sink's offset row is gone: another process changed this database under us.
    #[error("sink {sink} has no offset in {path}: another auditkeeper is writing this state directory?")]
    OffsetMissing { sink: String, path: PathBuf },
    #[error("sink {0} has no offset here: nothing to forget (known: {1})")]
    UnknownSink(String, String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "auditkeeper.sqlite3";

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    /// Runs WAL checkpoints beside the writer, so commits never pay for them.
    checkpointer: Mutex<Connection>,
    /// Bytes held in the spool, kept in memory so the ingest path checks the limit without a query.
    spool_bytes: AtomicU64,
    /// Dedupe keys of the pre-v5 form may remain: ingest looks them up too (`ingest::Seen`).
    seen_legacy: std::sync::atomic::AtomicBool,
    /// Tests only: every write fails as on a full disk.
    disk_full_injected: std::sync::atomic::AtomicBool,
    /// Rows just committed, for forwarders that keep up (`recent`).
    recent: Arc<RecentRows>,
}

impl Store {
    /// Opens (creating if needed) the database in `state_dir` and applies pending migrations.
    pub fn open(state_dir: &Path) -> Result<Store> {
        let dir_err = |source| StoreError::StateDir { path: state_dir.to_path_buf(), source };
        crate::common::dirs::create_private(state_dir).map_err(dir_err)?;
        let path = state_dir.join(DB_FILE);
        // The tenant's whole audit trail lives here: readable by the daemon's user only, whatever
        // the umask. SQLite gives its -wal and -shm files the database file's mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(dir_err)?;
        }
        let conn = Connection::open(&path).map_err(|e| sqlerr(&path, e))?;
        configure(&conn, &path, true)?;
        migrations::apply(&conn, &path)?;
        let checkpointer = Connection::open(&path).map_err(|e| sqlerr(&path, e))?;
        configure(&checkpointer, &path, false)?;
        let store = Store {
            writer: Mutex::new(conn),
            checkpointer: Mutex::new(checkpointer),
            spool_bytes: AtomicU64::new(0),
            seen_legacy: Default::default(),
            disk_full_injected: Default::default(),
            recent: Default::default(),
            path,
        };
        let legacy = store.flag(prune::SEEN_LEGACY_FLAG)?.is_some();
        store.seen_legacy.store(legacy, Ordering::Relaxed);
        let size = store.spool_size()?;
        store.spool_bytes.store(size.bytes, Ordering::Relaxed);
        Ok(store)
    }

    /// Opens the database read-only for `status`; safe while the daemon runs thanks to WAL.
    pub fn open_read_only(state_dir: &Path) -> Result<ReadOnlyStore> {
        let path = state_dir.join(DB_FILE);
        let conn = open_reader(&path)?;
        migrations::check_readable(&conn, &path)?;
        Ok(ReadOnlyStore { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh reader connection, for a forwarder or a source that reads its own state.
    pub fn reader(&self) -> Result<Connection> {
        open_reader(&self.path)
    }

    /// The spool rows just committed, which a forwarder may take instead of reading them back.
    pub fn recent_rows(&self) -> Arc<RecentRows> {
        self.recent.clone()
    }

    pub fn spool_bytes(&self) -> u64 {
        self.spool_bytes.load(Ordering::Relaxed)
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        if self.disk_full_injected.load(Ordering::Relaxed) {
            let full = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL);
            return Err(sqlerr(
                &self.path,
                rusqlite::Error::SqliteFailure(full, Some("database or disk is full".into())),
            ));
        }
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| sqlerr(&self.path, e))
    }
}

/// Read-only view used by `auditkeeper status`.
pub struct ReadOnlyStore {
    conn: Connection,
    path: PathBuf,
}

impl ReadOnlyStore {
    pub fn streams(&self) -> Result<Vec<StreamStatus>> {
        streams::all(&self.conn).map_err(|e| sqlerr(&self.path, e))
    }
    pub fn backlogs(&self) -> Result<Vec<SinkBacklog>> {
        spool::backlogs(&self.conn).map_err(|e| sqlerr(&self.path, e))
    }
    pub fn spool_size(&self) -> Result<SpoolSize> {
        spool::size(&self.conn).map_err(|e| sqlerr(&self.path, e))
    }
    pub fn flag(&self, key: &str) -> Result<Option<String>> {
        streams::get_flag(&self.conn, key).map_err(|e| sqlerr(&self.path, e))
    }
    pub fn throttled_mailboxes(&self) -> Result<Vec<ThrottledMailbox>> {
        streams::throttled_mailboxes(&self.conn).map_err(|e| sqlerr(&self.path, e))
    }
    pub fn dead_letter_counts(&self) -> Result<Vec<DeadLetterCount>> {
        deadletter::counts(&self.conn).map_err(|e| sqlerr(&self.path, e))
    }
    pub fn dead_letters(&self, sel: &DeadLetterSelector, limit: usize) -> Result<Vec<DeadLetter>> {
        deadletter::list(&self.conn, sel, limit).map_err(|e| sqlerr(&self.path, e))
    }
}

fn sqlerr(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite { path: path.to_path_buf(), source }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlerr(path, e))?;
    configure(&conn, path, false)?;
    Ok(conn)
}

fn configure(conn: &Connection, path: &Path, writer: bool) -> Result<()> {
    let r = (|| {
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.set_prepared_statement_cache_capacity(cached::CAPACITY);
        // Plans that never look at bound values. Otherwise SQLite marks a statement whose plan
        // could depend on one (a `LIMIT ?`, a `LIKE ?`, a range under STAT4, which the bundled
        // build enables) and parses and plans it again each time a new value is bound: the
        // spool read did that on every batch, about 3% of the daemon's CPU on small blobs.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        if writer {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // NORMAL in WAL mode never corrupts; a power cut (not a process crash) may roll back
            // the transactions since the last checkpoint (at most 30 s of them, see
            // `maintenance`), and then cursor, spool and offsets roll back together, so records
            // are read and sent again, not lost.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            // Maintenance checkpoints every 30 s from its own connection; this is only the
            // backstop that bounds the WAL (64 MiB) should maintenance ever stall.
            conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
        }
        // 16 MiB of page cache per connection keeps RSS bounded whatever the backlog.
        conn.pragma_update(None, "cache_size", -16384i64)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(())
    })();
    r.map_err(|e| sqlerr(path, e))
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests;

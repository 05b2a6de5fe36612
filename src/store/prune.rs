//! Pruning: delivered spool rows, expired dedupe keys and settled ledger rows.
//!
//! Every step works in small chunks, each its own short transaction, so pruning never holds the
//! writer long enough to stall ingest.

use std::sync::atomic::Ordering;

use rusqlite::params;

use super::cached::Cached;
use super::{Result, Store};

const SPOOL_CHUNK: i64 = 256;
const SEEN_CHUNK: i64 = 20_000;
/// Set by migration v5 while dedupe keys of the old form may remain (see `ingest::Seen`).
pub(super) const SEEN_LEGACY_FLAG: &str = "seen_legacy_keys";

impl Store {
    /// Deletes spool rows that every configured sink has delivered. Returns rows deleted.
    pub fn prune_spool(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let (rows, bytes) = self.with_writer(|c| {
                // A spool row is deletable once every sink's offset has moved past it.
                let min: Option<i64> = c.one("SELECT MIN(seq) FROM sink_offsets", [], |r| r.get(0))?;
                let Some(min) = min else { return Ok((0u64, 0u64)) };
                let mut stmt = c.prepare_cached(
                    "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool WHERE seq < ?1 ORDER BY seq LIMIT ?2)
                     RETURNING bytes",
                )?;
                let mut rows = 0u64;
                let mut bytes = 0u64;
                let mut it = stmt.query(params![min, SPOOL_CHUNK])?;
                while let Some(r) = it.next()? {
                    rows += 1;
                    bytes += r.get::<_, i64>(0)? as u64;
                }
                Ok((rows, bytes))
            })?;
            self.spool_bytes.fetch_sub(bytes.min(self.spool_bytes()), Ordering::Relaxed);
            total += rows;
            if rows < SPOOL_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Deletes expired dedupe keys in key-range chunks. Returns keys deleted.
    pub fn prune_seen(&self, now_ms: i64) -> Result<u64> {
        let mut after: Vec<u8> = Vec::new();
        let mut total = 0u64;
        loop {
            let (deleted, last) = self.with_writer(|c| {
                let last: Option<Vec<u8>> = c.one(
                    "SELECT max(key) FROM (SELECT key FROM seen WHERE key > ?1 ORDER BY key LIMIT ?2)",
                    params![after, SEEN_CHUNK],
                    |r| r.get(0),
                )?;
                let Some(last) = last else { return Ok((0u64, None)) };
                let n = c.run(
                    "DELETE FROM seen WHERE key > ?1 AND key <= ?2 AND expires_at < ?3",
                    params![after, last, now_ms],
                )?;
                Ok((n as u64, Some(last)))
            })?;
            total += deleted;
            match last {
                Some(l) => after = l,
                None => break,
            }
        }
        if self.seen_legacy.load(Ordering::Relaxed) {
            let left: bool = self
                .with_writer(|c| c.one("SELECT EXISTS(SELECT 1 FROM seen WHERE length(key) = 16)", [], |r| r.get(0)))?;
            if !left {
                self.set_flag(SEEN_LEGACY_FLAG, None)?;
                self.seen_legacy.store(false, Ordering::Relaxed);
                tracing::info!("the last dedupe key of the pre-v5 form expired; ingest looks up one form only");
            }
        }
        Ok(total)
    }

    /// Forgets settled ledger rows whose content Microsoft has itself expired, so the ledger
    /// stays bounded; an id that can no longer be listed cannot be fetched twice.
    pub fn prune_blobs(&self, older_than_ms: i64) -> Result<u64> {
        self.with_writer(|c| {
            c.run(
                "DELETE FROM blobs WHERE state <> 'listed' AND content_expiration_ms IS NOT NULL
                 AND content_expiration_ms < ?1",
                [older_than_ms],
            )
            .map(|n| n as u64)
        })
    }

    pub fn seen_count(&self) -> Result<i64> {
        self.with_writer(|c| c.one("SELECT count(*) FROM seen", [], |r| r.get(0)))
    }

    /// Incremental WAL checkpoint, run on its own connection so it never holds the writer.
    pub fn checkpoint_wal(&self) -> Result<()> {
        let c = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner());
        c.one("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(|e| super::sqlerr(&self.path, e))
    }
}

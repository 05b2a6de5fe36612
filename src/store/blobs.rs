//! The blob ledger of the Management Activity API: every `contentId` ever listed, with its fate.
//!
//! Invariant: a blob leaves the `listed` state only inside the ingest transaction that spooled
//! its records (`fetched`), counted it lost (`expired`) or counted it refused as over the size
//! or compression cap (`refused`), so it is fetched at most once and never forgotten.

use rusqlite::{Transaction, params};

use super::cached::Cached;
use super::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobListing {
    pub content_id: String,
    pub content_uri: String,
    pub content_created: String,
    pub content_expiration_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBlob {
    pub content_id: String,
    pub content_uri: String,
    pub content_created: String,
    pub content_expiration_ms: Option<i64>,
}

pub(super) fn insert_listed(
    tx: &Transaction<'_>,
    stream: &str,
    list: &[BlobListing],
    now: i64,
) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO blobs(content_id, stream, content_uri, content_created, content_expiration_ms, listed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut n = 0;
    for b in list {
        n += stmt.execute(params![
            b.content_id,
            stream,
            b.content_uri,
            b.content_created,
            b.content_expiration_ms,
            now
        ])?;
    }
    Ok(n)
}

/// Moves a listed blob to `state`; returns 1 if it was still listed, 0 if already settled.
pub(super) fn mark(
    tx: &Transaction<'_>,
    content_id: &str,
    state: &str,
    count: Option<i64>,
    detail: Option<&str>,
    now: i64,
) -> rusqlite::Result<usize> {
    tx.run(
        "UPDATE blobs SET state = ?2, record_count = ?3, detail = ?4, done_at = ?5
         WHERE content_id = ?1 AND state = 'listed'",
        params![content_id, state, count, detail, now],
    )
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LedgerCounts {
    pub listed: i64,
    pub fetched: i64,
    pub expired: i64,
    pub refused: i64,
}

impl Store {
    /// Blobs listed but not yet fetched, oldest first.
    pub fn pending_blobs(&self, stream: &str) -> Result<Vec<PendingBlob>> {
        self.with_writer(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT content_id, content_uri, content_created, content_expiration_ms FROM blobs
                 WHERE stream = ?1 AND state = 'listed' ORDER BY content_created",
            )?;
            let rows = stmt.query_map([stream], |r| {
                Ok(PendingBlob {
                    content_id: r.get(0)?,
                    content_uri: r.get(1)?,
                    content_created: r.get(2)?,
                    content_expiration_ms: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn ledger_counts(&self, stream: &str) -> Result<LedgerCounts> {
        self.with_writer(|c| ledger_counts(c, stream))
    }
}

pub(super) fn ledger_counts(c: &rusqlite::Connection, stream: &str) -> rusqlite::Result<LedgerCounts> {
    let mut out = LedgerCounts::default();
    let mut stmt = c.prepare_cached("SELECT state, count(*) FROM blobs WHERE stream = ?1 GROUP BY state")?;
    let mut rows = stmt.query([stream])?;
    while let Some(r) = rows.next()? {
        let state: String = r.get(0)?;
        let n: i64 = r.get(1)?;
        match state.as_str() {
            "listed" => out.listed = n,
            "fetched" => out.fetched = n,
            "expired" => out.expired = n,
            "refused" => out.refused = n,
            _ => {}
        }
    }
    Ok(out)
}

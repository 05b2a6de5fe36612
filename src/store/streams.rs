//! Per-stream status rows (state, last success and error, counters) and daemon-wide flags.

use rusqlite::{Connection, OptionalExtension, params};

use super::blobs::{LedgerCounts, ledger_counts};
use super::cached::Cached;
use super::state::StreamState;
use super::{Result, Store, now_ms};

#[derive(Debug, Clone, Default)]
pub struct StreamCounters {
    pub records_total: i64,
    pub duplicates_total: i64,
    pub records_without_id: i64,
    pub blobs_expired: i64,
    pub updates_total: i64,
    pub blobs_refused: i64,
}

#[derive(Debug, Clone, Default)]
pub struct StreamStatus {
    pub stream: String,
    pub tenant: String,
    pub source: String,
    pub name: String,
    pub cursor: Option<String>,
    pub cursor_updated_at: Option<i64>,
    pub state: StreamState,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub subscription_started_at: Option<i64>,
    pub counters: StreamCounters,
    pub ledger: LedgerCounts,
    /// Ranges `(start_ms, end_ms)` that could no longer be read: records there may be lost.
    pub gaps: Vec<(i64, i64)>,
    pub retention_secs: Option<i64>,
    /// The earliest `contentExpiration` of a blob still to fetch (Management API).
    pub pending_expiration_ms: Option<i64>,
}

impl StreamStatus {
    /// How long until the oldest data of this stream not collected yet ages out of Microsoft's
    /// retention: the earliest expiry of a blob still to fetch, or else the cursor's distance to
    /// the retention edge. `None` before the first window completed.
    pub fn headroom_ms(&self, now_ms: i64) -> Option<i64> {
        if let Some(e) = self.pending_expiration_ms {
            return Some(e - now_ms);
        }
        let cursor = crate::sources::window::parse_cursor(self.cursor.as_deref()?)?.timestamp_millis();
        Some(cursor + self.retention_secs? * 1000 - now_ms)
    }

    pub fn lag_ms(&self, now_ms: i64) -> Option<i64> {
        let cursor = crate::sources::window::parse_cursor(self.cursor.as_deref()?)?.timestamp_millis();
        Some((now_ms - cursor).max(0))
    }
}

impl Store {
    /// Registers a stream so its counters and status have a row; idempotent.
    pub fn register_stream(&self, stream: &str, tenant: &str, source: &str, name: &str) -> Result<()> {
        self.with_writer(|c| {
            c.run(
                "INSERT OR IGNORE INTO streams(stream, tenant, source, name) VALUES (?1, ?2, ?3, ?4)",
                params![stream, tenant, source, name],
            )
            .map(|_| ())
        })
    }

    /// How long Microsoft keeps this stream's data: what the retention headroom is counted against.
    pub fn set_stream_retention(&self, stream: &str, retention_secs: i64) -> Result<()> {
        self.with_writer(|c| {
            c.run("UPDATE streams SET retention_secs = ?2 WHERE stream = ?1", params![stream, retention_secs])
                .map(|_| ())
        })
    }

    pub fn set_stream_state(&self, stream: &str, state: &StreamState) -> Result<()> {
        self.with_writer(|c| write_state(c, stream, state))
    }

    /// Records that `[start_ms, end_ms)` of a stream can no longer be read. The same gap found
    /// again (a cycle that failed before moving the cursor) only widens it. Returns how many
    /// milliseconds were not recorded before, so the lost-range metric counts each once.
    pub fn record_gap(&self, stream: &str, start_ms: i64, end_ms: i64) -> Result<i64> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            let before: Option<i64> = tx
                .query_row(
                    "SELECT end_ms FROM gaps WHERE stream = ?1 AND start_ms = ?2",
                    params![stream, start_ms],
                    |r| r.get(0),
                )
                .optional()?;
            tx.run(
                "INSERT INTO gaps(stream, start_ms, end_ms, noted_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(stream, start_ms) DO UPDATE SET end_ms = max(end_ms, excluded.end_ms)",
                params![stream, start_ms, end_ms, now_ms()],
            )?;
            tx.commit()?;
            Ok((end_ms - before.unwrap_or(start_ms).max(start_ms)).max(0))
        })
    }

    /// A cycle's outcome, or a problem seen during one (`error`: `None` for a success), and the
    /// state it leaves the stream in, in one transaction: a reader never sees one without the
    /// other.
    pub fn record_stream_outcome(&self, stream: &str, state: &StreamState, error: Option<&str>) -> Result<()> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            match error {
                None => tx
                    .run("UPDATE streams SET last_success_at = ?2 WHERE stream = ?1", params![stream, now_ms()])
                    .map(|_| ())?,
                Some(e) => write_error(&tx, stream, e)?,
            }
            write_state(&tx, stream, state)?;
            tx.commit()
        })
    }

    pub fn record_stream_error(&self, stream: &str, error: &str) -> Result<()> {
        self.with_writer(|c| write_error(c, stream, error))
    }

    pub fn record_subscription_started(&self, stream: &str) -> Result<()> {
        self.with_writer(|c| {
            c.run("UPDATE streams SET subscription_started_at = ?2 WHERE stream = ?1", params![stream, now_ms()])
                .map(|_| ())
        })
    }

    /// When auditkeeper started this stream's subscription, if it did.
    pub fn subscription_started_at(&self, stream: &str) -> Result<Option<i64>> {
        self.with_writer(|c| {
            c.one("SELECT subscription_started_at FROM streams WHERE stream = ?1", [stream], |r| r.get(0))
                .optional()
                .map(|o| o.flatten())
        })
    }

    pub fn stream_status(&self) -> Result<Vec<StreamStatus>> {
        self.with_writer(|c| all(c))
    }

    /// Each stream's row without its ledger counts and gaps (left empty): enough for lag and
    /// headroom, which maintenance reports every 10 s. Counting the ledger each time was about
    /// 1.5% of the daemon's CPU on a trickling tenant.
    pub fn stream_positions(&self) -> Result<Vec<StreamStatus>> {
        self.with_writer(|c| rows(c))
    }

    /// How many streams are in each state, by state name: what the systemd status line shows,
    /// without the per-stream ledger and gap queries of `stream_status`.
    pub fn streams_by_state(&self) -> Result<Vec<(String, i64)>> {
        self.with_writer(|c| {
            let mut stmt = c.prepare_cached("SELECT state, count(*) FROM streams GROUP BY state ORDER BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    pub fn flag(&self, key: &str) -> Result<Option<String>> {
        self.with_writer(|c| get_flag(c, key))
    }

    pub fn throttled_mailboxes(&self) -> Result<Vec<ThrottledMailbox>> {
        self.with_writer(|c| throttled_mailboxes(c))
    }

    pub fn set_flag(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.with_writer(|c| {
            match value {
                Some(v) => c.run(
                    "INSERT INTO flags(key, value, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    params![key, v, now_ms()],
                )?,
                None => c.run("DELETE FROM flags WHERE key = ?1", [key])?,
            };
            Ok(())
        })
    }
}

fn write_state(c: &rusqlite::Connection, stream: &str, state: &StreamState) -> rusqlite::Result<()> {
    c.run(
        "UPDATE streams SET state = ?2, state_detail = ?3, state_until = ?4 WHERE stream = ?1",
        params![stream, state.name(), state.detail(), state.until_ms()],
    )
    .map(|_| ())
}

fn write_error(c: &rusqlite::Connection, stream: &str, error: &str) -> rusqlite::Result<()> {
    c.run("UPDATE streams SET last_error = ?2, last_error_at = ?3 WHERE stream = ?1", params![stream, error, now_ms()])
        .map(|_| ())
}

pub(super) fn all(c: &Connection) -> rusqlite::Result<Vec<StreamStatus>> {
    let mut out = rows(c)?;
    let mut gaps = c.prepare("SELECT start_ms, end_ms FROM gaps WHERE stream = ?1 ORDER BY start_ms")?;
    for s in &mut out {
        s.ledger = ledger_counts(c, &s.stream)?;
        s.gaps = gaps.query_map([&s.stream], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}

/// Every stream's row, with its earliest pending expiry (for headroom).
pub(super) const ROWS: &str =
    "SELECT stream, tenant, source, name, cursor, cursor_updated_at, state, state_detail, last_success_at,
            last_error, last_error_at, subscription_started_at, records_total, duplicates_total,
            records_without_id, blobs_expired, updates_total, state_until, blobs_refused, retention_secs,
            (SELECT MIN(content_expiration_ms) FROM blobs b WHERE b.stream = streams.stream AND b.state = 'listed')
     FROM streams ORDER BY stream";

fn rows(c: &Connection) -> rusqlite::Result<Vec<StreamStatus>> {
    let mut stmt = c.prepare_cached(ROWS)?;
    let rows = stmt.query_map([], |r| {
        Ok(StreamStatus {
            stream: r.get(0)?,
            tenant: r.get(1)?,
            source: r.get(2)?,
            name: r.get(3)?,
            cursor: r.get(4)?,
            cursor_updated_at: r.get(5)?,
            state: StreamState::from_row(&r.get::<_, String>(6)?, r.get(7)?, r.get(17)?),
            last_success_at: r.get(8)?,
            last_error: r.get(9)?,
            last_error_at: r.get(10)?,
            subscription_started_at: r.get(11)?,
            counters: StreamCounters {
                records_total: r.get(12)?,
                duplicates_total: r.get(13)?,
                records_without_id: r.get(14)?,
                blobs_expired: r.get(15)?,
                updates_total: r.get(16)?,
                blobs_refused: r.get(18)?,
            },
            ledger: LedgerCounts::default(),
            gaps: Vec::new(),
            retention_secs: r.get(19)?,
            pending_expiration_ms: r.get(20)?,
        })
    })?;
    rows.collect()
}

/// A mailbox whose MailItemsAccessed auditing Exchange throttled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ThrottledMailbox {
    pub tenant: String,
    pub mailbox: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub records: i64,
}

pub(super) fn throttled_mailboxes(c: &Connection) -> rusqlite::Result<Vec<ThrottledMailbox>> {
    let mut stmt = c.prepare(
        "SELECT tenant, mailbox, first_ms, last_ms, records FROM throttled_mailboxes ORDER BY tenant, last_ms DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ThrottledMailbox {
            tenant: r.get(0)?,
            mailbox: r.get(1)?,
            first_ms: r.get(2)?,
            last_ms: r.get(3)?,
            records: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub(super) fn get_flag(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.one("SELECT value FROM flags WHERE key = ?1", [key], |r| r.get(0)).optional()
}

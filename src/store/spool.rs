//! Reading the spool and tracking each sink's delivery offset.
//!
//! Invariant: a sink's offset moves only through `commit_offset`, which the forwarder calls
//! after the sink confirmed delivery, so a crash resends at most the batch in flight.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::cached::Cached;
use super::{Result, Store, codec, now_ms, sqlerr};

#[derive(Debug, Clone)]
pub struct SpoolRow {
    pub seq: i64,
    pub tenant: String,
    pub source: String,
    pub name: String,
    pub collected_at: i64,
    pub count: i64,
    /// The framed records; for a row that cannot be decompressed, the bytes as stored.
    pub data: Arc<Vec<u8>>,
    /// Why the row cannot be read, if it cannot.
    pub corrupt: Option<codec::CodecError>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolSize {
    pub rows: i64,
    pub records: i64,
    pub bytes: u64,
    pub oldest_collected_at: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct SinkBacklog {
    pub sink: String,
    pub records: i64,
    pub delivered_total: i64,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// When the oldest record this sink has not confirmed was collected.
    pub oldest_collected_at: Option<i64>,
}

/// A forwarder's own read connection to the spool.
pub struct SpoolReader {
    pub(super) conn: Connection,
    path: PathBuf,
}

impl SpoolReader {
    /// Up to `max_rows` spool rows with `seq >= from`, in order.
    pub fn read_from(&self, from: i64, max_rows: usize) -> Result<Vec<SpoolRow>> {
        let r = (|| -> rusqlite::Result<Vec<(SpoolRow, Vec<u8>)>> {
            let mut stmt = self.conn.prepare_cached(READ_FROM)?;
            let rows = stmt.query_map(params![from, max_rows as i64], |r| {
                Ok((
                    SpoolRow {
                        seq: r.get(0)?,
                        tenant: r.get(1)?,
                        source: r.get(2)?,
                        name: r.get(3)?,
                        collected_at: r.get(4)?,
                        count: r.get(5)?,
                        data: Arc::new(Vec::new()),
                        corrupt: None,
                    },
                    r.get::<_, Vec<u8>>(6)?,
                ))
            })?;
            rows.collect()
        })();
        let rows = r.map_err(|e| sqlerr(&self.path, e))?;
        // A row that cannot be read is returned as it is stored, marked, so its sink can set it
        // aside and go on instead of stopping on it for ever.
        Ok(rows
            .into_iter()
            .map(|(mut row, stored)| {
                match codec::decompress(&stored) {
                    Ok(d) => row.data = Arc::new(d),
                    Err(e) => (row.data, row.corrupt) = (Arc::new(stored), Some(e)),
                }
                row
            })
            .collect())
    }
}

/// A forwarder's read: rows from a position on, oldest first.
pub(super) const READ_FROM: &str = "SELECT seq, tenant, source, name, collected_at, count, data FROM spool
     WHERE seq >= ?1 ORDER BY seq LIMIT ?2";

impl Store {
    pub fn spool_reader(&self) -> Result<SpoolReader> {
        Ok(SpoolReader { conn: self.reader()?, path: self.path.clone() })
    }

    /// Makes sure every configured sink has an offset. Offsets of sinks no longer configured
    /// are KEPT: their undelivered records stay in the spool until `forget_sink`, so removing a
    /// sink from the config by mistake loses nothing. Returns those sinks' names.
    pub fn ensure_sinks(&self, sinks: &[String]) -> Result<Vec<String>> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            let start: i64 = tx.one("SELECT COALESCE(MIN(seq), 0) FROM spool", [], |r| r.get(0))?;
            for s in sinks {
                tx.run("INSERT OR IGNORE INTO sink_offsets(sink, seq, idx) VALUES (?1, ?2, 0)", params![s, start])?;
            }
            let names: Vec<String> = {
                let mut stmt = tx.prepare("SELECT sink FROM sink_offsets ORDER BY sink")?;
                stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            tx.commit()?;
            Ok(names.into_iter().filter(|n| !sinks.contains(n)).collect())
        })
    }

    /// Removes a sink's offset (and so its hold on the spool) for good. Its dead letters stay.
    /// Returns how many records it had not received.
    pub fn forget_sink(&self, sink: &str) -> Result<i64> {
        let backlog = self.backlogs()?.into_iter().find(|b| b.sink == sink);
        let Some(b) = backlog else {
            let known: Vec<String> = self.backlogs()?.into_iter().map(|b| b.sink).collect();
            return Err(super::StoreError::UnknownSink(sink.to_string(), known.join(", ")));
        };
        self.with_writer(|c| c.run("DELETE FROM sink_offsets WHERE sink = ?1", [sink]))?;
        Ok(b.records)
    }

    /// The next record a sink must receive: spool row `seq`, record index `idx` within it.
    pub fn sink_offset(&self, sink: &str) -> Result<(i64, i64)> {
        self.with_writer(|c| {
            c.one("SELECT seq, idx FROM sink_offsets WHERE sink = ?1", [sink], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map(|o| o.unwrap_or((0, 0)))
        })
    }

    /// INVARIANT: exactly one offset row moves; anything else means another process changed
    /// the database under us, and is an error rather than a silent no-op.
    pub fn commit_offset(&self, sink: &str, seq: i64, idx: i64, delivered: i64) -> Result<()> {
        let changed = self.with_writer(|c| {
            c.run(
                "UPDATE sink_offsets SET seq = ?2, idx = ?3, delivered_total = delivered_total + ?4,
                        last_success_at = ?5, last_error = NULL
                 WHERE sink = ?1",
                params![sink, seq, idx, delivered, now_ms()],
            )
        })?;
        if changed != 1 {
            return Err(super::StoreError::OffsetMissing { sink: sink.to_string(), path: self.path.clone() });
        }
        Ok(())
    }

    pub fn record_sink_error(&self, sink: &str, error: &str) -> Result<()> {
        self.with_writer(|c| {
            c.run(
                "UPDATE sink_offsets SET last_error = ?2, last_error_at = ?3 WHERE sink = ?1",
                params![sink, error, now_ms()],
            )
            .map(|_| ())
        })
    }

    pub fn spool_size(&self) -> Result<SpoolSize> {
        self.with_writer(|c| size(c))
    }

    /// Measures the spool and sets the in-memory byte count the ingest path checks from it.
    pub fn resync_spool_bytes(&self) -> Result<SpoolSize> {
        let s = self.spool_size()?;
        self.spool_bytes.store(s.bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(s)
    }

    pub fn backlogs(&self) -> Result<Vec<SinkBacklog>> {
        self.with_writer(|c| backlogs(c))
    }
}

pub(super) fn size(c: &Connection) -> rusqlite::Result<SpoolSize> {
    c.one("SELECT count(*), COALESCE(SUM(count), 0), COALESCE(SUM(bytes), 0), MIN(collected_at) FROM spool", [], |r| {
        Ok(SpoolSize {
            rows: r.get(0)?,
            records: r.get(1)?,
            bytes: r.get::<_, i64>(2)? as u64,
            oldest_collected_at: r.get(3)?,
        })
    })
}

pub(super) fn backlogs(c: &Connection) -> rusqlite::Result<Vec<SinkBacklog>> {
    let mut stmt = c.prepare(
        "SELECT o.sink, COALESCE((SELECT SUM(count) FROM spool WHERE seq >= o.seq), 0) - o.idx,
                o.delivered_total, o.last_success_at, o.last_error, o.last_error_at,
                (SELECT collected_at FROM spool WHERE seq >= o.seq ORDER BY seq LIMIT 1)
         FROM sink_offsets o ORDER BY o.sink",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SinkBacklog {
            sink: r.get(0)?,
            records: r.get::<_, i64>(1)?.max(0),
            delivered_total: r.get(2)?,
            last_success_at: r.get(3)?,
            last_error: r.get(4)?,
            last_error_at: r.get(5)?,
            oldest_collected_at: r.get(6)?,
        })
    })?;
    rows.collect()
}

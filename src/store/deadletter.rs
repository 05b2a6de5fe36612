//! The dead-letter table: records a receiver refused for good, with its reason.
//!
//! Invariant: a record enters this table before its sink's offset moves past it (the forwarder
//! writes it, then commits the offset), so a crash in between can only leave a duplicate dead
//! letter, never lose the record. A row leaves only by
//! successful redelivery or an explicit `purge`.

use rusqlite::{Connection, params};

use super::{Result, Store, now_ms};

/// One refused record, whole, so it survives the pruning of its spool row.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub sink: String,
    pub tenant: String,
    pub source: String,
    pub stream: String,
    pub record_id: String,
    pub event_time_ms: i64,
    pub collected_at: i64,
    pub raw: Vec<u8>,
    pub reason: String,
    pub created_at: i64,
    pub attempts: i64,
    pub retry_requested: bool,
}

/// What `purge` and `retry` act on.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterSelector {
    pub sink: Option<String>,
    pub ids: Vec<i64>,
    /// Only rows created before this time (ms since the epoch).
    pub before_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterCount {
    pub sink: String,
    pub records: i64,
    pub retry_pending: i64,
}

const COLUMNS: &str = "id, sink, tenant, source, stream, record_id, event_time_ms, collected_at, raw, reason,
    created_at, attempts, retry_requested";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        sink: r.get(1)?,
        tenant: r.get(2)?,
        source: r.get(3)?,
        stream: r.get(4)?,
        record_id: r.get(5)?,
        event_time_ms: r.get(6)?,
        collected_at: r.get(7)?,
        raw: r.get(8)?,
        reason: r.get(9)?,
        created_at: r.get(10)?,
        attempts: r.get(11)?,
        retry_requested: r.get::<_, i64>(12)? != 0,
    })
}

/// Builds `WHERE` for a selector; values bound in order sink, before, ids.
fn filter(sel: &DeadLetterSelector) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = vec!["1 = 1".to_string()];
    let mut values = Vec::new();
    if let Some(s) = &sel.sink {
        clauses.push("sink = ?".into());
        values.push(Value::Text(s.clone()));
    }
    if let Some(b) = sel.before_ms {
        clauses.push("created_at < ?".into());
        values.push(Value::Integer(b));
    }
    if !sel.ids.is_empty() {
        clauses.push(format!("id IN ({})", vec!["?"; sel.ids.len()].join(",")));
        values.extend(sel.ids.iter().map(|i| Value::Integer(*i)));
    }
    (clauses.join(" AND "), values)
}

pub(super) fn list(c: &Connection, sel: &DeadLetterSelector, limit: usize) -> rusqlite::Result<Vec<DeadLetter>> {
    let (w, mut v) = filter(sel);
    v.push(rusqlite::types::Value::Integer(limit as i64));
    let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM dead_letter WHERE {w} ORDER BY id LIMIT ?"))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(v), row)?;
    rows.collect()
}

pub(super) fn counts(c: &Connection) -> rusqlite::Result<Vec<DeadLetterCount>> {
    let mut stmt = c.prepare(
        "SELECT sink, count(*), COALESCE(SUM(retry_requested), 0) FROM dead_letter GROUP BY sink ORDER BY sink",
    )?;
    let rows =
        stmt.query_map([], |r| Ok(DeadLetterCount { sink: r.get(0)?, records: r.get(1)?, retry_pending: r.get(2)? }))?;
    rows.collect()
}

impl Store {
    /// Stores refused records. Called before the sink's offset moves past them.
    pub fn add_dead_letters(&self, sink: &str, items: &[(crate::sinks::OutRecord, String)]) -> Result<()> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO dead_letter(sink, tenant, source, stream, record_id, event_time_ms, collected_at,
                        raw, reason, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                let now = now_ms();
                for (r, reason) in items {
                    stmt.execute(params![
                        sink,
                        r.meta.tenant,
                        r.meta.source,
                        r.meta.name,
                        r.id(),
                        r.event_time_ms,
                        r.meta.collected_at_ms,
                        r.raw(),
                        reason,
                        now
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Sets aside a spool row that cannot be read, as stored, for one sink; once per row and sink,
    /// so a forwarder that restarts before moving past it does not store it twice.
    pub fn add_corrupt_row(&self, sink: &str, row: &super::SpoolRow, reason: &str) -> Result<()> {
        let id = format!("spool-row-{}", row.seq);
        self.with_writer(|c| {
            c.execute(
                "INSERT INTO dead_letter(sink, tenant, source, stream, record_id, event_time_ms, collected_at, raw,
                    reason, created_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9
                 WHERE NOT EXISTS (SELECT 1 FROM dead_letter WHERE sink = ?1 AND record_id = ?5)",
                params![sink, row.tenant, row.source, row.name, id, row.collected_at, &row.data[..], reason, now_ms()],
            )
            .map(|_| ())
        })
    }

    /// Dead letters an operator asked to retry for `sink`, oldest first.
    pub fn dead_letters_to_retry(&self, sink: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        self.with_writer(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM dead_letter WHERE sink = ?1 AND retry_requested = 1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![sink, limit as i64], row)?;
            rows.collect()
        })
    }

    /// A retried dead letter was delivered: it leaves the table.
    pub fn dead_letter_delivered(&self, ids: &[i64]) -> Result<()> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            for id in ids {
                tx.execute("DELETE FROM dead_letter WHERE id = ?1", [id])?;
            }
            tx.commit()
        })
    }

    /// A retried dead letter was refused again: keep it, with the new reason.
    pub fn dead_letter_refused(&self, id: i64, reason: &str) -> Result<()> {
        self.with_writer(|c| {
            c.execute(
                "UPDATE dead_letter SET retry_requested = 0, attempts = attempts + 1, reason = ?2 WHERE id = ?1",
                params![id, reason],
            )
            .map(|_| ())
        })
    }

    pub fn dead_letters(&self, sel: &DeadLetterSelector, limit: usize) -> Result<Vec<DeadLetter>> {
        self.with_writer(|c| list(c, sel, limit))
    }

    pub fn dead_letter_counts(&self) -> Result<Vec<DeadLetterCount>> {
        self.with_writer(|c| counts(c))
    }

    /// Marks the selected rows for redelivery by their sink's forwarder; returns how many.
    pub fn request_dead_letter_retry(&self, sel: &DeadLetterSelector) -> Result<usize> {
        let (w, v) = filter(sel);
        self.with_writer(|c| {
            c.execute(&format!("UPDATE dead_letter SET retry_requested = 1 WHERE {w}"), rusqlite::params_from_iter(v))
        })
    }

    /// Deletes the selected rows for good; returns how many.
    pub fn purge_dead_letters(&self, sel: &DeadLetterSelector) -> Result<usize> {
        let (w, v) = filter(sel);
        self.with_writer(|c| c.execute(&format!("DELETE FROM dead_letter WHERE {w}"), rusqlite::params_from_iter(v)))
    }
}

//! Spool rows just committed, kept in memory so a forwarder that keeps up hands them to its
//! sink without reading them back from SQLite and decompressing them again.
//!
//! On a tenant that trickles small blobs, reading each row back cost about a twentieth of the
//! daemon's CPU, and a thread hand-off per read. A forwarder behind by more than the budget (a
//! dead sink, a backlog) reads from SQLite as before: this is only a shortcut, never the record
//! of what is spooled.
//!
//! INVARIANT: a row is here only once the transaction that wrote it committed, and rows are
//! added in `seq` order under the writer lock, which also records the newest `seq` committed
//! (kept or not). A reader takes rows only from exactly the `seq` it asks for and stops at the
//! first gap, so it can never pass over a row it would have read from SQLite, and it is told
//! it reached the end of the spool only when its last row is that newest one.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::SpoolRow;

/// Bytes of decompressed rows kept at most. Small: it must not move the daemon's RSS budget,
/// and a forwarder that keeps up is never more than a linger's worth of rows behind.
const BUDGET: usize = 2 << 20;
/// Rows larger than this are not kept (nor held until the commit): a big page is read back at
/// little cost per record, and keeping its buffer alive was what moved peak RSS.
const MAX_ROW: usize = 256 << 10;

#[derive(Default)]
pub struct RecentRows {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rows: VecDeque<SpoolRow>,
    bytes: usize,
    /// The newest `seq` committed, kept or not.
    newest: i64,
}

/// A spool row a transaction wrote: its `seq`, and the row itself when it is small enough to keep.
pub(super) struct Fresh {
    seq: i64,
    row: Option<SpoolRow>,
}

impl Fresh {
    /// `row` builds the row to keep, for a row of `len` decompressed bytes; it is not called
    /// (so nothing holds the buffer until the commit) for a row too big to keep.
    pub(super) fn new(seq: i64, len: usize, row: impl FnOnce() -> SpoolRow) -> Fresh {
        Fresh { seq, row: (len <= MAX_ROW).then(row) }
    }
}

impl RecentRows {
    /// Called with the rows of one transaction, right after it committed, under the writer lock.
    pub(super) fn push(&self, fresh: Vec<Fresh>) {
        let mut inner = self.lock();
        for Fresh { seq, row } in fresh {
            // A row older than the newest known would break the order readers rely on.
            if seq <= inner.newest {
                inner.rows.clear();
                inner.bytes = 0;
            }
            inner.newest = seq;
            // A row not kept leaves a gap: readers stop before it and read it from SQLite.
            if let Some(row) = row {
                inner.bytes += row.data.len();
                inner.rows.push_back(row);
            }
        }
        while inner.bytes > BUDGET {
            let Some(old) = inner.rows.pop_front() else { break };
            inner.bytes -= old.data.len();
        }
    }

    /// Up to `max_rows` rows from exactly `from` on, with no gap in `seq`, and whether they
    /// reach the newest row committed. `None` when `from` is not here: read SQLite instead.
    pub fn take_from(&self, from: i64, max_rows: usize) -> Option<(Vec<SpoolRow>, bool)> {
        let inner = self.lock();
        let start = inner.rows.binary_search_by_key(&from, |r| r.seq).ok()?;
        let mut out: Vec<SpoolRow> = Vec::with_capacity(max_rows.min(inner.rows.len() - start));
        for row in inner.rows.range(start..) {
            if out.len() == max_rows || out.last().is_some_and(|l| l.seq + 1 != row.seq) {
                return Some((out, false));
            }
            out.push(row.clone());
        }
        let newest = out.last().is_some_and(|l| l.seq == inner.newest);
        Some((out, newest))
    }

    /// Rows were deleted from the spool (a tenant forgotten): nothing here may outlive them.
    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.rows.clear();
        inner.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain data, consistent after every statement: a panicked holder left nothing half done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn row(seq: i64, len: usize) -> SpoolRow {
        SpoolRow {
            seq,
            tenant: "t".into(),
            source: "management".into(),
            name: "Audit.Exchange".into(),
            collected_at: 0,
            count: 1,
            data: Arc::new(vec![0; len]),
            corrupt: None,
        }
    }

    fn fresh(rows: Vec<SpoolRow>) -> Vec<Fresh> {
        rows.into_iter().map(|r| Fresh::new(r.seq, r.data.len(), || r)).collect()
    }

    fn seqs(rows: &[SpoolRow]) -> Vec<i64> {
        rows.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn rows_come_from_exactly_the_seq_asked_and_stop_at_a_gap() {
        let r = RecentRows::default();
        r.push(fresh(vec![row(5, 10), row(6, 10), row(7, 10)]));
        r.push(fresh(vec![row(9, 10)]));
        assert!(r.take_from(4, 8).is_none(), "a seq older than the oldest kept is read from SQLite");
        assert!(r.take_from(8, 8).is_none(), "a seq not here is read from SQLite");
        let (rows, newest) = r.take_from(5, 8).unwrap();
        assert_eq!((seqs(&rows), newest), (vec![5, 6, 7], false), "stops before the gap at 8");
        let (rows, newest) = r.take_from(6, 1).unwrap();
        assert_eq!((seqs(&rows), newest), (vec![6], false));
        let (rows, newest) = r.take_from(9, 8).unwrap();
        assert_eq!((seqs(&rows), newest), (vec![9], true));
    }

    #[test]
    fn the_oldest_rows_go_once_the_budget_is_spent() {
        let r = RecentRows::default();
        let big = BUDGET / 8;
        r.push(fresh((1..=10).map(|s| row(s, big)).collect()));
        assert!(r.take_from(2, 8).is_none());
        let (rows, newest) = r.take_from(3, 8).unwrap();
        assert_eq!((seqs(&rows), newest), (vec![3, 4, 5, 6, 7, 8, 9, 10], true));
        assert_eq!(r.lock().bytes, BUDGET);
        // A row above the size kept leaves a gap, and the rows before it no longer reach the newest.
        r.push(fresh(vec![row(11, MAX_ROW + 1)]));
        assert!(r.take_from(11, 8).is_none());
        let (rows, newest) = r.take_from(10, 8).unwrap();
        assert_eq!((seqs(&rows), newest), (vec![10], false));
        // Past the gap, kept rows are taken again.
        r.push(fresh(vec![row(12, 10)]));
        assert_eq!(r.take_from(12, 8).map(|(rows, newest)| (seqs(&rows), newest)), Some((vec![12], true)));
    }

    #[test]
    fn a_row_out_of_order_empties_the_cache_instead_of_breaking_its_order() {
        let r = RecentRows::default();
        r.push(fresh(vec![row(5, 10), row(6, 10)]));
        r.push(fresh(vec![row(3, 10)]));
        assert!(r.take_from(5, 8).is_none());
        assert_eq!(seqs(&r.take_from(3, 8).unwrap().0), vec![3]);
    }
}

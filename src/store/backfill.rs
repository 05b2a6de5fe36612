//! Backfill state: jobs (a tenant, a period, filters), the windows each job is split into, the
//! audit log query each running window waits on, and the query submissions of the last 24 h.
//!
//! INVARIANT: a window becomes `done` only in the ingest transaction of its last page
//! (`Checkpoint::BackfillWindowDone`), so a crash mid-window leaves it `running` with its query
//! id: a restart reads that query again (dedupe drops what was already spooled) and never
//! creates a second query for it. A window is `split` only after its halves exist, in one
//! transaction: its range is always covered by windows that are still to do or done.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::cached::Cached;
use super::{ReadOnlyStore, Result, Store, now_ms, sqlerr};

/// What a backfill asks the audit log for, beyond the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillFilters {
    #[serde(default)]
    pub record_types: Vec<String>,
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

/// A job to register: `[since_ms, until_ms)` in windows of `window_ms`.
#[derive(Debug, Clone)]
pub struct NewBackfill {
    pub tenant: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub window_ms: i64,
    pub filters: BackfillFilters,
    /// `command` (the `backfill` command) or `backfill_days` (the first start).
    pub origin: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    Pending,
    Running,
    Done,
    Split,
    Failed,
}

impl WindowState {
    fn as_str(self) -> &'static str {
        match self {
            WindowState::Pending => "pending",
            WindowState::Running => "running",
            WindowState::Done => "done",
            WindowState::Split => "split",
            WindowState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> WindowState {
        match s {
            "running" => WindowState::Running,
            "done" => WindowState::Done,
            "split" => WindowState::Split,
            "failed" => WindowState::Failed,
            _ => WindowState::Pending,
        }
    }
}

/// One window of a job still to do, with what its query needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillWindow {
    pub job: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub state: WindowState,
    pub query_id: Option<String>,
    /// Queries created for this window so far.
    pub attempts: i64,
    pub filters: BackfillFilters,
}

/// A job as `status`, metrics and the `backfill` command show it.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillProgress {
    pub id: i64,
    pub tenant: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub filters: BackfillFilters,
    pub origin: String,
    /// `active`, `done`, `cancelled`.
    pub state: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub windows_done: i64,
    pub windows_pending: i64,
    pub windows_running: i64,
    pub windows_failed: i64,
    /// Records the audit log returned for the read windows, failed ones cut short included
    /// (duplicates of the live feed too: they are dropped at ingest).
    pub records: i64,
    /// The last reason a window was retried, split or failed.
    pub last_detail: Option<String>,
}

impl BackfillProgress {
    /// Windows that count towards the job (a split window counts as its halves).
    pub fn windows_total(&self) -> i64 {
        self.windows_done + self.windows_pending + self.windows_running + self.windows_failed
    }
}

/// The windows `[since, until)` is cut into, oldest first.
pub fn windows(since_ms: i64, until_ms: i64, window_ms: i64) -> Vec<(i64, i64)> {
    let step = window_ms.max(1);
    let mut out = Vec::new();
    let mut s = since_ms;
    while s < until_ms {
        let e = (s + step).min(until_ms);
        out.push((s, e));
        s = e;
    }
    out
}

const ROLLING_DAY_MS: i64 = 86_400_000;

impl Store {
    /// Registers a job and all its windows in one transaction; returns the job's number.
    pub fn register_backfill(&self, job: &NewBackfill) -> Result<i64> {
        let filters = serde_json::to_string(&job.filters).unwrap_or_else(|_| "{}".into());
        self.with_writer(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            tx.run(
                "INSERT INTO backfill_jobs(tenant, since_ms, until_ms, filters, origin, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)",
                params![job.tenant, job.since_ms, job.until_ms, filters, job.origin, now],
            )?;
            let id = tx.last_insert_rowid();
            for (s, e) in windows(job.since_ms, job.until_ms, job.window_ms) {
                insert_window(&tx, id, s, e, now)?;
            }
            tx.commit()?;
            Ok(id)
        })
    }

    /// Whether `tenant` ever had a job of this origin (the first-start job is made once).
    pub fn backfill_exists(&self, tenant: &str, origin: &str) -> Result<bool> {
        self.with_writer(|c| {
            c.one(
                "SELECT 1 FROM backfill_jobs WHERE tenant = ?1 AND origin = ?2 LIMIT 1",
                params![tenant, origin],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
        })
    }

    /// The windows of `tenant`'s active jobs still to do (pending or running), oldest first:
    /// the oldest data is the first to age out.
    pub fn backfill_open_windows(&self, tenant: &str) -> Result<Vec<BackfillWindow>> {
        self.with_writer(|c| {
            let mut st = c.prepare_cached(
                "SELECT w.job, w.start_ms, w.end_ms, w.state, w.query_id, w.attempts, j.filters
                 FROM backfill_windows w JOIN backfill_jobs j ON j.id = w.job
                 WHERE j.tenant = ?1 AND j.state = 'active' AND w.state IN ('pending', 'running')
                 ORDER BY w.start_ms, w.job",
            )?;
            let rows = st.query_map([tenant], |r| {
                let filters: String = r.get(6)?;
                Ok(BackfillWindow {
                    job: r.get(0)?,
                    start_ms: r.get(1)?,
                    end_ms: r.get(2)?,
                    state: WindowState::parse(&r.get::<_, String>(3)?),
                    query_id: r.get(4)?,
                    attempts: r.get(5)?,
                    filters: serde_json::from_str(&filters).unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
    }

    /// A query was created for the window: it is running, and the submission counts for 24 h.
    pub fn backfill_query_created(&self, tenant: &str, w: &BackfillWindow, query_id: &str) -> Result<()> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            tx.run(
                "UPDATE backfill_windows SET state = 'running', query_id = ?4, attempts = attempts + 1, updated_at = ?5
                 WHERE job = ?1 AND start_ms = ?2 AND end_ms = ?3",
                params![w.job, w.start_ms, w.end_ms, query_id, now],
            )?;
            tx.run("INSERT INTO backfill_submissions(tenant, at_ms) VALUES (?1, ?2)", params![tenant, now])?;
            tx.run("DELETE FROM backfill_submissions WHERE at_ms < ?1", [now - ROLLING_DAY_MS])?;
            tx.commit()
        })
    }

    /// Query submissions of `tenant` in the last 24 h.
    pub fn backfill_submissions_today(&self, tenant: &str) -> Result<i64> {
        self.with_writer(|c| {
            c.one(
                "SELECT count(*) FROM backfill_submissions WHERE tenant = ?1 AND at_ms >= ?2",
                params![tenant, now_ms() - ROLLING_DAY_MS],
                |r| r.get(0),
            )
        })
    }

    /// The window's query is gone or failed: it waits for a new one.
    pub fn backfill_retry_window(&self, w: &BackfillWindow, detail: &str) -> Result<()> {
        self.set_window(w, WindowState::Pending, detail)
    }

    /// The window could not be read even at the smallest size: shown, never skipped silently.
    pub fn backfill_fail_window(&self, w: &BackfillWindow, detail: &str) -> Result<()> {
        self.set_window(w, WindowState::Failed, detail)
    }

    fn set_window(&self, w: &BackfillWindow, state: WindowState, detail: &str) -> Result<()> {
        self.with_writer(|c| {
            c.run(
                "UPDATE backfill_windows SET state = ?4, query_id = NULL, detail = ?5, updated_at = ?6
                 WHERE job = ?1 AND start_ms = ?2 AND end_ms = ?3",
                params![w.job, w.start_ms, w.end_ms, state.as_str(), detail, now_ms()],
            )
            .map(|_| ())
        })
    }

    /// Replaces the window by its two halves at `mid` (see the invariant above).
    pub fn backfill_split_window(&self, w: &BackfillWindow, mid: i64, detail: &str) -> Result<()> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            tx.run(
                "UPDATE backfill_windows SET state = 'split', detail = ?4, updated_at = ?5
                 WHERE job = ?1 AND start_ms = ?2 AND end_ms = ?3",
                params![w.job, w.start_ms, w.end_ms, detail, now],
            )?;
            insert_window(&tx, w.job, w.start_ms, mid, now)?;
            insert_window(&tx, w.job, mid, w.end_ms, now)?;
            tx.commit()
        })
    }

    /// Marks active jobs of `tenant` with no window left to do as done; returns them.
    pub fn backfill_finish_jobs(&self, tenant: &str) -> Result<Vec<i64>> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            let ids: Vec<i64> = {
                let mut st = tx.prepare_cached(
                    "SELECT id FROM backfill_jobs j WHERE tenant = ?1 AND state = 'active' AND NOT EXISTS
                       (SELECT 1 FROM backfill_windows w WHERE w.job = j.id AND w.state IN ('pending', 'running'))",
                )?;
                st.query_map([tenant], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                tx.run(
                    "UPDATE backfill_jobs SET state = 'done', finished_at = ?2 WHERE id = ?1",
                    params![id, now_ms()],
                )?;
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Stops a job: its running queries are left to Microsoft, nothing more is read. Returns
    /// false when no active job has this number.
    pub fn cancel_backfill(&self, job: i64) -> Result<bool> {
        self.with_writer(|c| {
            c.run(
                "UPDATE backfill_jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1 AND state = 'active'",
                params![job, now_ms()],
            )
            .map(|n| n == 1)
        })
    }

    pub fn backfill_jobs(&self) -> Result<Vec<BackfillProgress>> {
        self.with_writer(|c| progress(c))
    }
}

impl ReadOnlyStore {
    pub fn backfill_jobs(&self) -> Result<Vec<BackfillProgress>> {
        progress(&self.conn).map_err(|e| sqlerr(&self.path, e))
    }
}

fn insert_window(tx: &rusqlite::Transaction<'_>, job: i64, s: i64, e: i64, now: i64) -> rusqlite::Result<()> {
    tx.run(
        "INSERT OR IGNORE INTO backfill_windows(job, start_ms, end_ms, state, updated_at) VALUES (?1, ?2, ?3, 'pending', ?4)",
        params![job, s, e, now],
    )
    .map(|_| ())
}

/// In the ingest transaction of a window's last page: `done`, or `failed` when `cut_short`
/// says records beyond what it returned could not be read.
pub(super) fn mark_read(
    tx: &rusqlite::Transaction<'_>,
    job: i64,
    start_ms: i64,
    end_ms: i64,
    records: i64,
    cut_short: Option<&str>,
) -> rusqlite::Result<()> {
    let state = if cut_short.is_some() { WindowState::Failed } else { WindowState::Done };
    tx.run(
        "UPDATE backfill_windows SET state = ?4, records = ?5, detail = coalesce(?6, detail), updated_at = ?7
         WHERE job = ?1 AND start_ms = ?2 AND end_ms = ?3",
        params![job, start_ms, end_ms, state.as_str(), records, cut_short, now_ms()],
    )
    .map(|_| ())
}

fn progress(c: &rusqlite::Connection) -> rusqlite::Result<Vec<BackfillProgress>> {
    let mut st = c.prepare_cached(
        "SELECT j.id, j.tenant, j.since_ms, j.until_ms, j.filters, j.origin, j.state, j.created_at, j.finished_at,
            coalesce(sum(w.state = 'done'), 0), coalesce(sum(w.state = 'pending'), 0),
            coalesce(sum(w.state = 'running'), 0), coalesce(sum(w.state = 'failed'), 0),
            coalesce(sum(CASE WHEN w.state IN ('done', 'failed') THEN w.records ELSE 0 END), 0),
            (SELECT detail FROM backfill_windows d WHERE d.job = j.id AND d.detail IS NOT NULL
             ORDER BY d.updated_at DESC LIMIT 1)
         FROM backfill_jobs j LEFT JOIN backfill_windows w ON w.job = j.id
         GROUP BY j.id ORDER BY j.id",
    )?;
    let rows = st.query_map([], |r| {
        let filters: String = r.get(4)?;
        Ok(BackfillProgress {
            id: r.get(0)?,
            tenant: r.get(1)?,
            since_ms: r.get(2)?,
            until_ms: r.get(3)?,
            filters: serde_json::from_str(&filters).unwrap_or_default(),
            origin: r.get(5)?,
            state: r.get(6)?,
            created_at_ms: r.get(7)?,
            finished_at_ms: r.get(8)?,
            windows_done: r.get(9)?,
            windows_pending: r.get(10)?,
            windows_running: r.get(11)?,
            windows_failed: r.get(12)?,
            records: r.get(13)?,
            last_detail: r.get(14)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
#[path = "backfill_tests.rs"]
mod tests;

//! `auditkeeper status`: what every stream and sink is doing, read from the database. Safe while
//! the daemon runs (WAL readers never block the writer).
//!
//! One `Report` is gathered, then written as a table a person reads at a glance (`text`) or as
//! JSON for scripts (`--json`). The JSON shape is stable: fields are only ever added.

mod text;

use std::path::Path;

use serde::Serialize;

use crate::store::{Store, StoreError, StreamState};

#[derive(Debug, Serialize)]
pub struct Report {
    /// Why polling is paused, if it is.
    pub polling_paused: Option<String>,
    /// Other daemon-wide warnings (the dead-letter table near its cap).
    pub warnings: Vec<String>,
    pub streams: Vec<Stream>,
    pub spool: Spool,
    pub sinks: Vec<Sink>,
    pub throttled_mailboxes: Vec<Mailbox>,
    /// Backfill jobs (the audit log query API), oldest first.
    pub backfills: Vec<Backfill>,
}

#[derive(Debug, Serialize)]
pub struct Backfill {
    pub id: i64,
    pub tenant: String,
    pub since: String,
    pub until: String,
    /// `active`, `done` or `cancelled`.
    pub state: String,
    /// `command` or `backfill_days`.
    pub origin: String,
    pub filters: crate::store::BackfillFilters,
    pub windows_total: i64,
    pub windows_done: i64,
    pub windows_pending: i64,
    pub windows_running: i64,
    /// Windows given up at the smallest size: their records were not read.
    pub windows_failed: i64,
    pub records: i64,
    pub records_per_second: f64,
    /// For an active job, from its pace so far.
    pub eta_seconds: Option<i64>,
    pub created: String,
    pub finished: Option<String>,
    pub last_detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Stream {
    pub tenant: String,
    /// `source/name`.
    pub stream: String,
    pub state: &'static str,
    pub state_detail: Option<String>,
    /// For `throttled`: when polling resumes (RFC 3339).
    pub throttled_until: Option<String>,
    pub cursor: Option<String>,
    pub lag_seconds: Option<i64>,
    /// Until the oldest data not collected yet ages out of Microsoft's retention.
    pub headroom_seconds: Option<i64>,
    pub last_success: Option<String>,
    /// The last error, when it is newer than the last success.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub records: i64,
    pub duplicates: i64,
    pub updates: i64,
    pub records_without_id: i64,
    /// Management API only.
    pub blobs: Option<Blobs>,
    pub lost_ranges: Vec<Range>,
}

#[derive(Debug, Serialize)]
pub struct Blobs {
    pub fetched: i64,
    pub pending: i64,
    pub expired: i64,
    pub refused: i64,
}

#[derive(Debug, Serialize)]
pub struct Range {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize)]
pub struct Spool {
    pub records: i64,
    pub bytes: u64,
    pub rows: i64,
}

#[derive(Debug, Serialize)]
pub struct Sink {
    pub name: String,
    /// False for a sink removed from the config whose offset is kept until `forget-sink`.
    pub configured: bool,
    pub backlog: i64,
    pub oldest_undelivered_seconds: Option<i64>,
    pub delivered: i64,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub dead_letters: i64,
    pub dead_letters_retry_pending: i64,
}

#[derive(Debug, Serialize)]
pub struct Mailbox {
    pub tenant: String,
    pub mailbox: String,
    /// CreationTime of the first and last throttled record (RFC 3339).
    pub first: String,
    pub last: String,
    pub records: i64,
}

fn ts(ms: i64) -> String {
    crate::sinks::envelope::rfc3339_ms(ms)
}

/// Gathers the report; `configured_sinks` marks sinks kept only for their offset.
pub fn gather(state_dir: &Path, configured_sinks: Option<&[String]>) -> Result<Report, StoreError> {
    let store = Store::open_read_only(state_dir)?;
    let now = crate::store::now_ms();
    let mut warnings = Vec::new();
    if let Some(w) = store.flag("dead_letters")? {
        warnings.push(w);
    }
    let streams = store
        .streams()?
        .into_iter()
        .map(|s| {
            let newer = s.last_error_at >= s.last_success_at;
            let management = s.source == "management";
            Stream {
                state: s.state.name(),
                state_detail: s.state.detail().map(str::to_string).filter(|d| !d.is_empty()),
                throttled_until: match &s.state {
                    StreamState::Throttled { until_ms, .. } => Some(ts(*until_ms)),
                    _ => None,
                },
                lag_seconds: s.lag_ms(now).map(|m| m / 1000),
                headroom_seconds: s.headroom_ms(now).map(|m| m / 1000),
                last_success: s.last_success_at.map(ts),
                last_error: s.last_error.clone().filter(|_| newer),
                last_error_at: s.last_error_at.filter(|_| newer && s.last_error.is_some()).map(ts),
                records: s.counters.records_total,
                duplicates: s.counters.duplicates_total,
                updates: s.counters.updates_total,
                records_without_id: s.counters.records_without_id,
                blobs: management.then_some(Blobs {
                    fetched: s.ledger.fetched,
                    pending: s.ledger.listed,
                    expired: s.counters.blobs_expired,
                    refused: s.counters.blobs_refused,
                }),
                lost_ranges: s.gaps.iter().map(|(a, b)| Range { from: ts(*a), to: ts(*b) }).collect(),
                tenant: s.tenant,
                stream: format!("{}/{}", s.source, s.name),
                cursor: s.cursor,
            }
        })
        .collect();
    let size = store.spool_size()?;
    let dead = store.dead_letter_counts()?;
    let backlogs = store.backlogs()?;
    let mut sinks: Vec<Sink> = backlogs
        .into_iter()
        .map(|b| {
            let d = dead.iter().find(|d| d.sink == b.sink);
            let newer = b.last_error.is_some() && b.last_error_at >= b.last_success_at;
            Sink {
                configured: configured_sinks.is_none_or(|c| c.contains(&b.sink)),
                backlog: b.records,
                oldest_undelivered_seconds: b
                    .oldest_collected_at
                    .filter(|_| b.records > 0)
                    .map(|t| (now - t).max(0) / 1000),
                delivered: b.delivered_total,
                last_success: b.last_success_at.map(ts),
                last_error: b.last_error.filter(|_| newer),
                last_error_at: b.last_error_at.filter(|_| newer).map(ts),
                dead_letters: d.map_or(0, |d| d.records),
                dead_letters_retry_pending: d.map_or(0, |d| d.retry_pending),
                name: b.sink,
            }
        })
        .collect();
    // Dead letters of a sink whose offset was forgotten stay visible.
    let known: Vec<String> = sinks.iter().map(|s| s.name.clone()).collect();
    for d in dead.iter().filter(|d| !known.contains(&d.sink)) {
        sinks.push(Sink {
            name: d.sink.clone(),
            configured: false,
            backlog: 0,
            oldest_undelivered_seconds: None,
            delivered: 0,
            last_success: None,
            last_error: None,
            last_error_at: None,
            dead_letters: d.records,
            dead_letters_retry_pending: d.retry_pending,
        });
    }
    let throttled_mailboxes = store
        .throttled_mailboxes()?
        .into_iter()
        .map(|m| Mailbox {
            tenant: m.tenant,
            mailbox: m.mailbox,
            first: ts(m.first_ms),
            last: ts(m.last_ms),
            records: m.records,
        })
        .collect();
    let backfills = match store.backfill_jobs() {
        Ok(jobs) => jobs.into_iter().map(|j| backfill(j, now)).collect(),
        Err(e) => {
            warnings.push(format!("backfill jobs could not be read: {e}"));
            Vec::new()
        }
    };
    Ok(Report {
        backfills,
        polling_paused: store.flag("polling_paused")?,
        warnings,
        streams,
        spool: Spool { records: size.records, bytes: size.bytes, rows: size.rows },
        sinks,
        throttled_mailboxes,
    })
}

fn backfill(j: crate::store::BackfillProgress, now: i64) -> Backfill {
    let secs = ((j.finished_at_ms.unwrap_or(now) - j.created_at_ms) as f64 / 1000.0).max(1.0);
    let left = j.windows_pending + j.windows_running;
    let eta_seconds =
        (j.state == "active" && j.windows_done > 0).then(|| (secs / j.windows_done as f64 * left as f64) as i64);
    Backfill {
        windows_total: j.windows_total(),
        records_per_second: (j.records as f64 / secs * 10.0).round() / 10.0,
        eta_seconds,
        id: j.id,
        since: ts(j.since_ms),
        until: ts(j.until_ms),
        state: j.state,
        origin: j.origin,
        filters: j.filters,
        windows_done: j.windows_done,
        windows_pending: j.windows_pending,
        windows_running: j.windows_running,
        windows_failed: j.windows_failed,
        records: j.records,
        created: ts(j.created_at_ms),
        finished: j.finished_at_ms.map(ts),
        last_detail: j.last_detail,
        tenant: j.tenant,
    }
}

/// The text report, as `auditkeeper status` prints it.
pub fn render(state_dir: &Path) -> Result<String, StoreError> {
    render_for(state_dir, None)
}

pub fn render_for(state_dir: &Path, configured_sinks: Option<&[String]>) -> Result<String, StoreError> {
    Ok(text::render(&gather(state_dir, configured_sinks)?))
}

/// The JSON report, as `auditkeeper status --json` prints it.
pub fn json(state_dir: &Path, configured_sinks: Option<&[String]>) -> Result<String, StoreError> {
    let r = gather(state_dir, configured_sinks)?;
    Ok(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n")
}

//! `auditkeeper status`: a human-readable report read from the database, safe while the
//! daemon runs (WAL readers never block the writer).

use std::fmt::Write;
use std::path::Path;

use crate::store::{Store, StoreError};

fn ago(now: i64, t: Option<i64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let secs = ((now - t).max(0) / 1000) as u64;
            format!("{} ago", humantime::format_duration(std::time::Duration::from_secs(secs)))
        }
    }
}

pub fn render(state_dir: &Path) -> Result<String, StoreError> {
    render_for(state_dir, None)
}

/// The report; with the configured sink names, sinks kept only for their offset are marked.
pub fn render_for(state_dir: &Path, configured_sinks: Option<&[String]>) -> Result<String, StoreError> {
    let store = Store::open_read_only(state_dir)?;
    let now = crate::store::now_ms();
    let mut out = String::new();
    if let Some(reason) = store.flag("polling_paused")? {
        let _ = writeln!(out, "!! POLLING PAUSED: {reason}\n");
    }
    let _ = writeln!(out, "streams:");
    for s in store.streams()? {
        let lag = s
            .cursor
            .as_deref()
            .and_then(crate::sources::window::parse_cursor)
            .map(|c| {
                humantime::format_duration(std::time::Duration::from_secs((now / 1000 - c.timestamp()).max(0) as u64))
                    .to_string()
            })
            .unwrap_or_else(|| "-".into());
        let detail = match &s.state {
            crate::store::StreamState::Throttled { until_ms, why } => {
                Some(format!("until {}: {why}", crate::sinks::envelope::rfc3339_ms(*until_ms)))
            }
            st => st.detail().map(str::to_string),
        };
        let _ = writeln!(
            out,
            "  {}  [{}]{}",
            s.stream,
            s.state.name(),
            detail.map(|d| format!(" {d}")).unwrap_or_default()
        );
        for (from, to) in &s.gaps {
            let _ = writeln!(
                out,
                "    LOST RANGE: {} to {}: the collector was behind for longer than Microsoft keeps data; records there may be lost",
                crate::sinks::envelope::rfc3339_ms(*from),
                crate::sinks::envelope::rfc3339_ms(*to)
            );
        }
        let _ = writeln!(out, "    cursor: {}   lag: {lag}", s.cursor.as_deref().unwrap_or("(none yet)"));
        let _ = writeln!(out, "    last success: {}", ago(now, s.last_success_at));
        match (&s.last_error, s.last_error_at) {
            (Some(e), at) if at >= s.last_success_at => {
                let _ = writeln!(out, "    last error: {} ({})", e, ago(now, at));
            }
            _ => {}
        }
        let updates = if s.source == "management" {
            String::new()
        } else {
            format!(" ({} updates of known records)", s.counters.updates_total)
        };
        let _ = writeln!(
            out,
            "    records: {} new{updates}, {} duplicates dropped, {} without id",
            s.counters.records_total, s.counters.duplicates_total, s.counters.records_without_id
        );
        if s.source == "management" {
            let _ = writeln!(
                out,
                "    blobs: {} fetched, {} pending, {} EXPIRED before fetch{}",
                s.ledger.fetched,
                s.ledger.listed,
                s.counters.blobs_expired,
                if s.counters.blobs_refused > 0 {
                    format!(", {} REFUSED (over the size or compression cap)", s.counters.blobs_refused)
                } else {
                    String::new()
                }
            );
        }
    }
    let size = store.spool_size()?;
    let _ = writeln!(out, "spool: {} records, {} bytes in {} rows", size.records, size.bytes, size.rows);
    let _ = writeln!(out, "sinks:");
    let backlogs = store.backlogs()?;
    let dead = store.dead_letter_counts()?;
    for b in backlogs.iter().cloned() {
        let _ = writeln!(
            out,
            "  {}  backlog: {} records   delivered: {}   last success: {}",
            b.sink,
            b.records,
            b.delivered_total,
            ago(now, b.last_success_at)
        );
        if configured_sinks.is_some_and(|c| !c.contains(&b.sink)) {
            let _ = writeln!(
                out,
                "    NO LONGER CONFIGURED: its {} undelivered record(s) stay in the spool; `auditkeeper forget-sink {}` releases them",
                b.records, b.sink
            );
        }
        if let Some(e) = b.last_error
            && b.last_error_at >= b.last_success_at
        {
            let _ = writeln!(out, "    last error: {} ({})", e, ago(now, b.last_error_at));
        }
        if let Some(d) = dead.iter().find(|d| d.sink == b.sink) {
            let _ = writeln!(
                out,
                "    DEAD LETTERS: {} record(s) refused by the receiver{} (auditkeeper dead-letter list --sink {})",
                d.records,
                if d.retry_pending > 0 { format!(", {} queued for retry", d.retry_pending) } else { String::new() },
                b.sink
            );
        }
    }
    for d in dead.iter().filter(|d| !backlogs.iter().any(|b| b.sink == d.sink)) {
        let _ = writeln!(out, "  {} (no longer configured)  DEAD LETTERS: {} record(s)", d.sink, d.records);
    }
    Ok(out)
}

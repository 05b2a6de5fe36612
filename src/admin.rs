//! Operator commands that change or check state outside the daemon: `dead-letter list | retry |
//! purge` and `archive verify`. Safe while the daemon runs (SQLite WAL; the forwarder picks up
//! retry requests within seconds).

use std::fmt::Write;
use std::path::Path;

use crate::store::{DeadLetterSelector, Store, StoreError};

/// Prints dead letters, newest reasons included; `show_records` adds each record's JSON.
pub fn list(
    state_dir: &Path,
    sel: &DeadLetterSelector,
    limit: usize,
    show_records: bool,
) -> Result<String, StoreError> {
    let store = Store::open_read_only(state_dir)?;
    let rows = store.dead_letters(sel, limit)?;
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no dead letters\n");
    }
    for d in &rows {
        let _ = writeln!(
            out,
            "#{}  sink={}  {}/{}/{}  id={}  event_time={}  attempts={}{}\n    reason: {}",
            d.id,
            d.sink,
            d.tenant,
            d.source,
            d.stream,
            d.record_id,
            crate::sinks::envelope::rfc3339_ms(d.event_time_ms),
            d.attempts,
            if d.retry_requested { "  (retry pending)" } else { "" },
            d.reason
        );
        if show_records {
            let _ = writeln!(out, "    record: {}", String::from_utf8_lossy(&d.raw));
        }
    }
    if rows.len() == limit {
        let _ = writeln!(out, "(first {limit} shown; use --limit for more)");
    }
    Ok(out)
}

pub fn retry(state_dir: &Path, sel: &DeadLetterSelector) -> Result<usize, StoreError> {
    Store::open(state_dir)?.request_dead_letter_retry(sel)
}

pub fn purge(state_dir: &Path, sel: &DeadLetterSelector) -> Result<usize, StoreError> {
    Store::open(state_dir)?.purge_dead_letters(sel)
}

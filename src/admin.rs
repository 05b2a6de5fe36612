//! Operator commands that change or check state outside the daemon: `dead-letter list | retry |
//! purge` (safe while the daemon runs: small transactions, and the forwarder picks up retry
//! requests within seconds) and `forget-sink` (which takes the state lock, so the daemon must be
//! stopped).

use std::fmt::Write;
use std::path::Path;

use crate::store::lock::{LockError, StateLock};
use crate::store::{DeadLetterSelector, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("sink {0} is still in the config; remove its [[sinks]] entry first, or its records would be sent again")]
    StillConfigured(String),
}

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

/// Drops the offset of a sink that is no longer configured, releasing the spool rows it held.
pub fn forget_sink(state_dir: &Path, sink: &str, configured: &[String]) -> Result<String, AdminError> {
    if configured.iter().any(|c| c == sink) {
        return Err(AdminError::StillConfigured(sink.to_string()));
    }
    let _lock = StateLock::acquire(state_dir)?;
    let left = Store::open(state_dir)?.forget_sink(sink)?;
    Ok(format!("forgot sink {sink}: {left} record(s) it had not received are no longer kept for it\n"))
}

//! Operator commands that change or check state outside the daemon: `dead-letter list | retry |
//! purge` (safe while the daemon runs: small transactions, and the forwarder picks up retry
//! requests within seconds), `forget-sink` (which takes the state lock, so the daemon must be
//! stopped) and `forget-tenant` (safe while the daemon runs, once it no longer collects the
//! tenant: one transaction, and the daemon re-reads the spool's size).

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
    #[error("tenant {0} is still in the config; remove it (and reload the daemon) first")]
    TenantConfigured(String),
    #[error("no state is kept for tenant {0} (tenants with state here: {1})")]
    UnknownTenant(String, String),
    #[error(
        "the running daemon still collects tenant {0} (streams {1} are not marked removed); reload it with the new config first (systemctl reload auditkeeper, or SIGHUP)"
    )]
    TenantRunning(String, String),
    #[error(
        "{1} record(s) of tenant {0} are not yet delivered to every sink; wait until `status` shows the backlog gone, or add --force to delete them unsent"
    )]
    Undelivered(String, i64),
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

/// Deletes the state of a tenant that is no longer configured: its cursors, ledger, backfill
/// jobs and spooled records. Refuses while any of its records is undelivered, unless `force`.
pub fn forget_tenant(state_dir: &Path, tenant: &str, configured: &[String], force: bool) -> Result<String, AdminError> {
    if configured.iter().any(|c| c == tenant) {
        return Err(AdminError::TenantConfigured(tenant.to_string()));
    }
    let store = Store::open(state_dir)?;
    let known = store.known_tenants()?;
    if !known.iter().any(|k| k == tenant) {
        return Err(AdminError::UnknownTenant(tenant.to_string(), known.join(", ")));
    }
    // With no daemon on this state directory, nothing collects the tenant (and the lock, held
    // to the end, keeps one from starting meanwhile). With one, only a daemon that has
    // dropped the tenant marked its streams removed.
    let held = StateLock::acquire(state_dir).ok();
    if held.is_none() {
        let live: Vec<String> =
            store.tenant_streams(tenant)?.into_iter().filter(|(_, state)| state != "removed").map(|(s, _)| s).collect();
        if !live.is_empty() {
            return Err(AdminError::TenantRunning(tenant.to_string(), live.join(", ")));
        }
    }
    let undelivered = store.tenant_undelivered(tenant)?;
    if undelivered > 0 && !force {
        return Err(AdminError::Undelivered(tenant.to_string(), undelivered));
    }
    let f = store.forget_tenant(tenant)?;
    let mut out = format!(
        "forgot tenant {tenant}: {} stream(s), {} ledger row(s), {} backfill job(s), {} spool row(s)\n",
        f.streams, f.blobs, f.backfill_jobs, f.spool_rows
    );
    if f.undelivered > 0 {
        let _ = writeln!(out, "DELETED UNSENT: {} record(s) no sink had received (--force)", f.undelivered);
    }
    out.push_str("its dead letters, if any, stay for `auditkeeper dead-letter`; its dedupe keys expire on their own\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::record::key_for_id;
    use crate::store::{Checkpoint, IngestPage, PageRecord};

    /// A state directory where tenant `gone` has two records no sink has received.
    fn with_undelivered() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.ensure_sinks(&["siem".into()]).unwrap();
        s.register_stream("gone/management/Audit.Exchange", "gone", "management", "Audit.Exchange").unwrap();
        let body = br#"{"Id":"a"}{"Id":"b"}"#.to_vec();
        let rec = |id: &str, r: std::ops::Range<usize>| PageRecord {
            key: key_for_id(id),
            id_key: None,
            id: id.into(),
            event_time_ms: 1,
            key_time_ms: 1,
            raw: r,
            envelope: None,
        };
        let page = IngestPage {
            stream: "gone/management/Audit.Exchange".into(),
            tenant: "gone".into(),
            source: "management".into(),
            name: "Audit.Exchange".into(),
            body,
            records: vec![rec("a", 0..10), rec("b", 10..20)],
            checkpoint: Checkpoint::Cursor("c".into()),
            throttled: Vec::new(),
        };
        s.ingest(&page, 86_400_000, 0).unwrap();
        d
    }

    #[test]
    fn forgetting_a_tenant_with_undelivered_records_needs_force_and_says_what_it_deleted() {
        let d = with_undelivered();
        let e = forget_tenant(d.path(), "gone", &[], false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 record(s) of tenant gone are not yet delivered to every sink; wait until `status` shows the backlog gone, or add --force to delete them unsent"
        );
        assert!(matches!(
            forget_tenant(d.path(), "gone", &["gone".into()], true),
            Err(AdminError::TenantConfigured(_))
        ));
        assert!(matches!(forget_tenant(d.path(), "other", &[], true), Err(AdminError::UnknownTenant(..))));
        // A daemon holding the state that still collects it: refused even with --force.
        {
            let _daemon = StateLock::acquire(d.path()).unwrap();
            assert!(matches!(forget_tenant(d.path(), "gone", &[], true), Err(AdminError::TenantRunning(..))));
        }
        let out = forget_tenant(d.path(), "gone", &[], true).unwrap();
        assert!(
            out.starts_with("forgot tenant gone: 1 stream(s), 0 ledger row(s), 0 backfill job(s), 1 spool row(s)"),
            "{out}"
        );
        assert!(out.contains("DELETED UNSENT: 2 record(s)"), "{out}");
        let s = Store::open(d.path()).unwrap();
        assert!(s.known_tenants().unwrap().is_empty());
        assert_eq!(s.spool_size().unwrap().records, 0);
    }
}

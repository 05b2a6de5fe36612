//! A tenant's state as a whole: marking the tenants no longer configured as `removed` (their
//! state is kept), and `forget-tenant`, which deletes it.
//!
//! What a tenant owns: its streams (cursors, counters), blob ledger, gaps, backfill jobs,
//! windows and submissions, throttled mailboxes, and its records still in the spool. Its
//! dedupe keys cannot be told apart from other tenants' and expire on their own; its dead
//! letters stay for the `dead-letter` command.

use rusqlite::params;

use super::cached::Cached;
use super::{Result, Store};

/// What `forget_tenant` deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub streams: i64,
    pub blobs: i64,
    pub spool_rows: i64,
    /// Records in those rows that some sink had not yet received.
    pub undelivered: i64,
    pub backfill_jobs: i64,
}

impl Store {
    /// Marks every stream of a tenant not in `configured` as `removed` (a stream of a
    /// configured tenant is set going again by its driver). Returns the tenants newly marked.
    pub fn mark_removed_tenants(&self, configured: &[String]) -> Result<Vec<String>> {
        self.with_writer(|c| {
            let tx = c.transaction()?;
            let tenants: Vec<String> = {
                let mut stmt =
                    tx.prepare("SELECT DISTINCT tenant FROM streams WHERE state <> 'removed' ORDER BY tenant")?;
                stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            let gone: Vec<String> = tenants.into_iter().filter(|t| !configured.contains(t)).collect();
            for t in &gone {
                tx.run(
                    "UPDATE streams SET state = 'removed', state_detail = ?2, state_until = NULL WHERE tenant = ?1",
                    params![t, "not in the configuration; its state is kept until `auditkeeper forget-tenant`"],
                )?;
            }
            tx.commit()?;
            Ok(gone)
        })
    }

    /// Tenants that have state here (streams, spool rows or backfill jobs).
    pub fn known_tenants(&self) -> Result<Vec<String>> {
        self.with_writer(|c| {
            let mut stmt = c.prepare(
                "SELECT tenant FROM streams UNION SELECT tenant FROM spool UNION SELECT tenant FROM backfill_jobs
                 ORDER BY 1",
            )?;
            stmt.query_map([], |r| r.get(0))?.collect()
        })
    }

    /// Records of `tenant` in the spool that some sink has not received yet (a row a sink is
    /// part-way through counts whole).
    pub fn tenant_undelivered(&self, tenant: &str) -> Result<i64> {
        self.with_writer(|c| undelivered(c, tenant))
    }

    /// `(stream, state)` of each stream of `tenant`.
    pub fn tenant_streams(&self, tenant: &str) -> Result<Vec<(String, String)>> {
        self.with_writer(|c| {
            let mut stmt = c.prepare("SELECT stream, state FROM streams WHERE tenant = ?1 ORDER BY stream")?;
            stmt.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })
    }

    /// Deletes everything `tenant` owns, in one transaction.
    pub fn forget_tenant(&self, tenant: &str) -> Result<Forgotten> {
        let f = self.with_writer(|c| {
            let tx = c.transaction()?;
            let undelivered = undelivered(&tx, tenant)?;
            let in_streams = "(SELECT stream FROM streams WHERE tenant = ?1)";
            let blobs = tx.run(&format!("DELETE FROM blobs WHERE stream IN {in_streams}"), [tenant])?;
            tx.run(&format!("DELETE FROM gaps WHERE stream IN {in_streams}"), [tenant])?;
            let spool_rows = tx.run("DELETE FROM spool WHERE tenant = ?1", [tenant])?;
            tx.run(
                "DELETE FROM backfill_windows WHERE job IN (SELECT id FROM backfill_jobs WHERE tenant = ?1)",
                [tenant],
            )?;
            let backfill_jobs = tx.run("DELETE FROM backfill_jobs WHERE tenant = ?1", [tenant])?;
            tx.run("DELETE FROM backfill_submissions WHERE tenant = ?1", [tenant])?;
            tx.run("DELETE FROM throttled_mailboxes WHERE tenant = ?1", [tenant])?;
            let streams = tx.run("DELETE FROM streams WHERE tenant = ?1", [tenant])?;
            tx.commit()?;
            Ok(Forgotten {
                streams: streams as i64,
                blobs: blobs as i64,
                spool_rows: spool_rows as i64,
                undelivered,
                backfill_jobs: backfill_jobs as i64,
            })
        })?;
        self.recent.clear();
        // A running daemon re-reads the spool's size at its next maintenance pass.
        self.resync_spool_bytes()?;

        Ok(f)
    }
}

fn undelivered(c: &rusqlite::Connection, tenant: &str) -> rusqlite::Result<i64> {
    c.one(
        "SELECT COALESCE(SUM(count), 0) FROM spool
         WHERE tenant = ?1 AND seq >= (SELECT COALESCE(MIN(seq), 0) FROM sink_offsets)",
        [tenant],
        |r| r.get(0),
    )
}

//! Events of backfill jobs (the audit log query API).

use crate::telemetry::metrics as m;

/// A query was created for a window.
pub struct BackfillQueryCreated<'a> {
    pub tenant: &'a str,
    pub job: i64,
    pub from: &'a str,
    pub to: &'a str,
    pub query_id: &'a str,
}

impl BackfillQueryCreated<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::BACKFILL_QUERIES, "tenant" => self.tenant.to_string()).increment(1);
        tracing::debug!(tenant = %self.tenant, job = self.job, from = %self.from, to = %self.to,
            query = %self.query_id, "backfill query created");
    }
}

/// A window's records are all ingested.
pub struct BackfillWindowDone<'a> {
    pub tenant: &'a str,
    pub job: i64,
    pub from: &'a str,
    pub to: &'a str,
    pub records: u64,
}

impl BackfillWindowDone<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::BACKFILL_RECORDS, "tenant" => self.tenant.to_string()).increment(self.records);
        tracing::info!(tenant = %self.tenant, job = self.job, from = %self.from, to = %self.to,
            records = self.records, "backfill window done");
    }
}

/// A window is split, retried with a new query, or given up at the smallest size.
pub struct BackfillWindowSetBack<'a> {
    pub tenant: &'a str,
    pub job: i64,
    pub from: &'a str,
    pub to: &'a str,
    /// `split`, `retried` or `failed`.
    pub what: &'static str,
    pub why: &'a str,
}

impl BackfillWindowSetBack<'_> {
    pub fn emit(&self) {
        if self.what == "failed" {
            tracing::error!(tenant = %self.tenant, job = self.job, from = %self.from, to = %self.to, why = %self.why,
                "backfill window could not be read, even at the smallest window; `status` lists it");
        } else {
            tracing::warn!(tenant = %self.tenant, job = self.job, from = %self.from, to = %self.to, why = %self.why,
                "backfill window {}", self.what);
        }
    }
}

/// Each cycle: how many windows of the tenant's active jobs are in each state.
pub struct BackfillProgressed<'a> {
    pub tenant: &'a str,
    pub done: i64,
    pub pending: i64,
    pub running: i64,
    pub failed: i64,
}

impl BackfillProgressed<'_> {
    pub fn emit(&self) {
        for (state, n) in
            [("done", self.done), ("pending", self.pending), ("running", self.running), ("failed", self.failed)]
        {
            metrics::gauge!(m::BACKFILL_WINDOWS, "tenant" => self.tenant.to_string(), "state" => state).set(n as f64);
        }
    }
}

/// A job has no window left to do.
pub struct BackfillFinished<'a> {
    pub tenant: &'a str,
    pub job: i64,
    pub windows: i64,
    pub failed: i64,
    pub records: i64,
}

impl BackfillFinished<'_> {
    pub fn emit(&self) {
        if self.failed > 0 {
            tracing::error!(tenant = %self.tenant, job = self.job, windows = self.windows, failed = self.failed,
                records = self.records, "backfill finished with windows that could not be read");
        } else {
            tracing::info!(tenant = %self.tenant, job = self.job, windows = self.windows, records = self.records,
                "backfill finished");
        }
    }
}

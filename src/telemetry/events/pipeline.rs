//! Events of the spool, the gate and the store.

use std::time::Duration;

use crate::telemetry::metrics as m;

/// The gate closed (or its reason changed): sources wait, nothing is dropped.
pub struct PollingPaused<'a> {
    pub reason: &'a str,
    /// False when only the reason changed.
    pub newly: bool,
}

impl PollingPaused<'_> {
    pub fn emit(&self) {
        metrics::gauge!(m::POLLING_PAUSED).set(1.0);
        if self.newly {
            tracing::error!(reason = %self.reason,
                "POLLING PAUSED: no record is dropped, but Microsoft's retention clock keeps running");
        }
    }
}

pub struct PollingResumed;

impl PollingResumed {
    pub fn emit(&self) {
        metrics::gauge!(m::POLLING_PAUSED).set(0.0);
        tracing::warn!("polling resumed: the state is back under its limits");
    }
}

/// A write failed for lack of space (`full`), or succeeded again after one did.
pub struct DiskSpace<'a> {
    pub full: bool,
    pub error: Option<&'a str>,
}

impl DiskSpace<'_> {
    pub fn emit(&self) {
        if self.full {
            tracing::error!(
                error = self.error.unwrap_or(""),
                "the disk is full: polling pauses and sinks hold their offsets until a write succeeds"
            );
        } else {
            tracing::warn!("the store can write again");
        }
    }
}

/// What maintenance measured of the spool and the state.
pub struct StateMeasured {
    pub spool_bytes: u64,
    pub spool_records: i64,
    pub oldest: Duration,
    pub state_bytes: u64,
    pub dead_letter_bytes: u64,
}

impl StateMeasured {
    pub fn emit(&self) {
        metrics::gauge!(m::SPOOL_BYTES).set(self.spool_bytes as f64);
        metrics::gauge!(m::SPOOL_RECORDS).set(self.spool_records as f64);
        metrics::gauge!(m::SPOOL_OLDEST_AGE).set(self.oldest.as_secs_f64());
        metrics::gauge!(m::STATE_BYTES).set(self.state_bytes as f64);
        metrics::gauge!(m::DEAD_LETTER_BYTES).set(self.dead_letter_bytes as f64);
    }
}

/// The dead-letter table nears (or reached) its cap.
pub struct DeadLettersNearCap<'a> {
    pub message: &'a str,
}

impl DeadLettersNearCap<'_> {
    pub fn emit(&self) {
        tracing::error!("{}", self.message);
    }
}

/// A reload applied a new configuration's tenants.
pub struct Reloaded<'a> {
    pub added: &'a [String],
    pub removed: &'a [String],
    pub restarted: &'a [String],
    pub unchanged: usize,
}

impl Reloaded<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::RELOADS, "result" => "applied").increment(1);
        tracing::info!(added = ?self.added, removed = ?self.removed, restarted = ?self.restarted,
            unchanged = self.unchanged, "configuration reloaded");
    }
}

/// A reload was refused: the new configuration is invalid, the running one stays.
pub struct ReloadRefused<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl ReloadRefused<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::RELOADS, "result" => "refused").increment(1);
        tracing::error!(error = %self.error, "configuration NOT reloaded: the running one stays");
    }
}

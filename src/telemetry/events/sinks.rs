//! Events of forwarders and sinks.

use std::time::Duration;

use crate::telemetry::metrics as m;

/// The receiver confirmed records.
pub struct SinkSent<'a> {
    pub sink: &'a str,
    pub records: u64,
    pub bytes: u64,
}

impl SinkSent<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::SINK_SENT_RECORDS, "sink" => self.sink.to_string()).increment(self.records);
        metrics::counter!(m::SINK_SENT_BYTES, "sink" => self.sink.to_string()).increment(self.bytes);
    }
}

/// An attempt to deliver failed; the records stay in the spool and are retried.
pub struct SinkSendFailed<'a> {
    pub sink: &'a str,
    /// `error`, `throttled` or `store`.
    pub kind: &'static str,
    pub error: &'a dyn std::fmt::Display,
    pub failures: u32,
    pub records: usize,
}

impl SinkSendFailed<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::SINK_SEND_FAILURES, "sink" => self.sink.to_string(), "kind" => self.kind).increment(1);
        // The first failure and then fewer and fewer: an outage of days must not flood the log.
        if self.failures == 1 || self.failures.is_power_of_two() {
            match self.kind {
                "store" => tracing::error!(sink = %self.sink, error = %self.error, failures = self.failures,
                    "cannot store the delivery's progress; holding this sink (nothing is resent) and writing again"),
                _ => {
                    tracing::error!(sink = %self.sink, error = %self.error, failures = self.failures, records = self.records,
                    "sink send failed; records stay in the spool and will be retried")
                }
            }
        }
    }
}

pub struct SinkRecovered<'a> {
    pub sink: &'a str,
    pub failures: u32,
}

impl SinkRecovered<'_> {
    pub fn emit(&self) {
        tracing::info!(sink = %self.sink, failures = self.failures, "sink recovered");
    }
}

/// A record the receiver refused for good went to the dead-letter table.
pub struct RecordDeadLettered<'a> {
    pub sink: &'a str,
    pub tenant: &'a str,
    pub stream: &'a str,
    pub record_id: &'a str,
    pub reason: &'a str,
}

impl RecordDeadLettered<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::SINK_DEAD_LETTERED, "sink" => self.sink.to_string()).increment(1);
        tracing::error!(sink = %self.sink, tenant = %self.tenant, stream = %self.stream, record_id = %self.record_id,
            reason = %self.reason, "receiver refused a record for good; moved to the dead-letter table");
    }
}

/// Every record of a batch was refused: a receiver misconfiguration more likely than poison.
pub struct BatchRefusedWhole<'a> {
    pub sink: &'a str,
    pub records: usize,
}

impl BatchRefusedWhole<'_> {
    pub fn message(&self) -> String {
        format!(
            "the receiver refused every record of a batch of {}: probably its configuration (an index, sourcetype, DCR stream or schema), not the records; they are in the dead-letter table",
            self.records
        )
    }

    pub fn emit(&self) {
        metrics::counter!(m::SINK_BATCHES_ALL_REFUSED, "sink" => self.sink.to_string()).increment(1);
        tracing::error!(sink = %self.sink, "{}", self.message());
    }
}

/// A spool row could not be read and was set aside.
pub struct SpoolRowCorrupt<'a> {
    pub sink: &'a str,
    pub seq: i64,
    pub records: i64,
    pub error: &'a dyn std::fmt::Display,
}

impl SpoolRowCorrupt<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::SPOOL_ROWS_CORRUPT, "sink" => self.sink.to_string()).increment(1);
        tracing::error!(sink = %self.sink, seq = self.seq, records = self.records, error = %self.error,
            "a spool row cannot be read; it is set aside in the dead-letter table as stored, and delivery goes on");
    }
}

/// A syslog sink truncated records to its message size.
pub struct RecordsTruncated<'a> {
    pub sink: &'a str,
    pub records: u64,
}

impl RecordsTruncated<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::SYSLOG_TRUNCATED, "sink" => self.sink.to_string()).increment(self.records);
    }
}

/// Records a stream receiver had confirmed just before it closed the connection, sent again.
pub struct RecordsResent<'a> {
    pub sink: &'a str,
    pub records: u64,
}

impl RecordsResent<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::SINK_RESENT, "sink" => self.sink.to_string()).increment(self.records);
    }
}

/// How far behind a sink is.
pub struct SinkBacklog<'a> {
    pub sink: &'a str,
    pub records: i64,
    pub oldest: Duration,
}

impl SinkBacklog<'_> {
    pub fn emit(&self) {
        metrics::gauge!(m::SINK_BACKLOG, "sink" => self.sink.to_string()).set(self.records as f64);
        metrics::gauge!(m::SINK_OLDEST_AGE, "sink" => self.sink.to_string()).set(self.oldest.as_secs_f64());
    }
}

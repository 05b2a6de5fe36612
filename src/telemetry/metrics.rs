//! Every metric the collector exports, named once, with its help text.
//!
//! Labels are `tenant`, `stream` (`source/name`, e.g. `management/Audit.Exchange`), `sink`,
//! `api`, `class` (HTTP status class), `kind` and `state`. No label value ever comes from
//! record content, so the series count is bounded by the configuration.

use metrics::{Unit, describe_counter, describe_gauge};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

macro_rules! metrics_table {
    ($($id:ident = $name:literal, $kind:ident, $unit:ident, $help:literal;)*) => {
        $(pub const $id: &str = $name;)*
        /// (name, kind, help) of every metric, for `describe` and for checking dashboards.
        pub const ALL: &[(&str, Kind, &str)] = &[$(($name, Kind::$kind, $help)),*];
        /// Registers the help text of every metric with the installed recorder.
        pub fn describe() {
            $(describe_one(Kind::$kind, $name, Unit::$unit, $help);)*
        }
    };
}

fn describe_one(kind: Kind, name: &'static str, unit: Unit, help: &'static str) {
    match kind {
        Kind::Counter => describe_counter!(name, unit, help),
        Kind::Gauge => describe_gauge!(name, unit, help),
    }
}

metrics_table! {
    RELOADS = "auditkeeper_config_reloads_total", Counter, Count,
        "Configuration reloads (SIGHUP) by result: applied, or refused as invalid.";
    RECORDS_RECEIVED = "auditkeeper_records_received_total", Counter, Count,
        "Records read from Microsoft, before dedupe.";
    RECORDS_DUPLICATE = "auditkeeper_records_duplicate_total", Counter, Count,
        "Records dropped because they were already collected (Microsoft re-delivers).";
    RECORDS_UPDATED = "auditkeeper_records_updated_total", Counter, Count,
        "Records of Graph and ARM streams forwarded again because their content changed.";
    RECORDS_SPOOLED = "auditkeeper_records_spooled_total", Counter, Count,
        "New records written to the spool, waiting for the sinks.";
    SPOOL_BYTES = "auditkeeper_spool_bytes", Gauge, Bytes,
        "Bytes of undelivered records in the spool (compressed).";
    SPOOL_RECORDS = "auditkeeper_spool_records", Gauge, Count,
        "Records in the spool that some sink has not confirmed.";
    SPOOL_OLDEST_AGE = "auditkeeper_spool_oldest_age_seconds", Gauge, Seconds,
        "Age of the oldest record in the spool.";
    STATE_BYTES = "auditkeeper_state_bytes", Gauge, Bytes,
        "Bytes the state database uses: spool, dedupe keys, dead letters, ledger.";
    POLLING_PAUSED = "auditkeeper_polling_paused", Gauge, Count,
        "1 while polling is paused (spool limits, disk full); records are never dropped.";
    SINK_SENT_RECORDS = "auditkeeper_sink_sent_records_total", Counter, Count,
        "Records a sink's receiver confirmed.";
    SINK_SENT_BYTES = "auditkeeper_sink_sent_bytes_total", Counter, Bytes,
        "Bytes of records a sink's receiver confirmed.";
    SINK_SEND_FAILURES = "auditkeeper_sink_send_failures_total", Counter, Count,
        "Failed attempts to deliver to a sink (kind: error, throttled, store).";
    SINK_DEAD_LETTERED = "auditkeeper_sink_dead_lettered_total", Counter, Count,
        "Records a receiver refused for good, kept in the dead-letter table.";
    SINK_BATCHES_ALL_REFUSED = "auditkeeper_sink_batches_all_refused_total", Counter, Count,
        "Batches of which the receiver refused every record: probably its configuration.";
    SINK_BACKLOG = "auditkeeper_sink_backlog_records", Gauge, Count,
        "Records a sink has not confirmed yet.";
    SINK_OLDEST_AGE = "auditkeeper_sink_oldest_undelivered_age_seconds", Gauge, Seconds,
        "Age of the oldest record a sink has not confirmed (0 when none).";
    SPOOL_ROWS_CORRUPT = "auditkeeper_spool_rows_corrupt_total", Counter, Count,
        "Spool rows that could not be read, set aside in the dead-letter table.";
    DEAD_LETTER_BYTES = "auditkeeper_dead_letter_bytes", Gauge, Bytes,
        "Bytes in the dead-letter table.";
    SYSLOG_TRUNCATED = "auditkeeper_syslog_truncated_total", Counter, Count,
        "Records a syslog sink truncated to its message size (oversize = truncate).";
    SINK_RESENT = "auditkeeper_sink_resent_records_total", Counter, Count,
        "Records sent again because the receiver closed the connection just after confirming them (syslog over TCP or TLS).";
    API_REQUESTS = "auditkeeper_api_requests_total", Counter, Count,
        "Requests to Microsoft APIs by status class (2xx, 3xx, 4xx, 5xx, error).";
    API_THROTTLED = "auditkeeper_api_throttled_total", Counter, Count,
        "Requests Microsoft throttled (429, or AF429 as 403).";
    API_RETRIES = "auditkeeper_api_retries_total", Counter, Count,
        "Retries of Microsoft API calls.";
    API_LINKS_REFUSED = "auditkeeper_api_links_refused_total", Counter, Count,
        "Links in Microsoft's answers refused because they point outside the configured endpoint.";
    API_BODIES_REFUSED = "auditkeeper_api_bodies_refused_total", Counter, Count,
        "Response bodies refused as over their size or compression cap.";
    STREAM_ERRORS = "auditkeeper_stream_errors_total", Counter, Count,
        "Polling cycles of a stream that did not finish.";
    STREAM_STATE = "auditkeeper_stream_state", Gauge, Count,
        "1 for a stream's current state (running, retrying, warming_up, unavailable, throttled, failed, stopped).";
    STREAM_PROBLEM = "auditkeeper_stream_problem", Gauge, Count,
        "1 for the kind of trouble a stream is in (throttled, error, no_answer, credential, unauthorized, unavailable, rejected, fatal, boundary), else 0.";
    STREAM_LAG = "auditkeeper_stream_lag_seconds", Gauge, Seconds,
        "How far a stream's cursor is behind now.";
    STREAM_HEADROOM = "auditkeeper_stream_retention_headroom_seconds", Gauge, Seconds,
        "Time until the oldest data of a stream not collected yet ages out of Microsoft's retention.";
    STREAM_GAPS = "auditkeeper_stream_gaps_total", Counter, Count,
        "Ranges a stream could no longer read because it was behind for longer than Microsoft keeps data.";
    STREAM_LOST_SECONDS = "auditkeeper_stream_lost_seconds_total", Counter, Seconds,
        "Seconds of such ranges.";
    BLOBS_EXPIRED = "auditkeeper_blobs_expired_total", Counter, Count,
        "Content blobs that expired before they could be fetched: their records are lost at the source.";
    BLOBS_REFUSED = "auditkeeper_blobs_refused_total", Counter, Count,
        "Content blobs refused as over the size or compression cap.";
    MAIL_ITEMS_ACCESSED_THROTTLED = "auditkeeper_mail_items_accessed_throttled_total", Counter, Count,
        "MailItemsAccessed records with IsThrottled: Exchange stopped auditing Bind for that mailbox for 24 h.";
    BACKFILL_WINDOWS = "auditkeeper_backfill_windows", Gauge, Count,
        "Windows of a tenant's active backfill jobs, by state (done, pending, running, failed).";
    BACKFILL_RECORDS = "auditkeeper_backfill_records_total", Counter, Count,
        "Records the audit log query API returned for finished backfill windows (before dedupe).";
    BACKFILL_QUERIES = "auditkeeper_backfill_queries_total", Counter, Count,
        "Audit log queries a backfill created.";
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut names: Vec<&str> = super::ALL.iter().map(|(n, _, _)| *n).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "a metric is named twice");
        for (name, kind, help) in super::ALL {
            assert!(name.starts_with("auditkeeper_") && !help.is_empty(), "{name}");
            assert_eq!(name.ends_with("_total"), *kind == super::Kind::Counter, "{name}: counters end in _total");
        }
    }
}

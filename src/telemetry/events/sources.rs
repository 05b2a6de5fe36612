//! Events of sources and their streams.

use std::time::Duration;

use super::Stream;
use crate::telemetry::metrics as m;

/// Pages were ingested (those of one stream in one commit): how many records came, how many
/// were new, duplicates or updates.
pub struct RecordsIngested<'a> {
    pub stream: Stream<'a>,
    pub received: usize,
    pub new: usize,
    pub duplicates: usize,
    pub updates: usize,
}

impl<'a> RecordsIngested<'a> {
    /// Nothing yet, for a stream's pages to be added to.
    pub fn none(stream: Stream<'a>) -> Self {
        RecordsIngested { stream, received: 0, new: 0, duplicates: 0, updates: 0 }
    }

    pub fn emit(&self) {
        let l = self.stream.labels();
        metrics::counter!(m::RECORDS_RECEIVED, &l).increment(self.received as u64);
        metrics::counter!(m::RECORDS_SPOOLED, &l).increment(self.new as u64);
        metrics::counter!(m::RECORDS_DUPLICATE, &l).increment(self.duplicates as u64);
        if self.updates > 0 {
            metrics::counter!(m::RECORDS_UPDATED, &l).increment(self.updates as u64);
        }
        tracing::trace!(stream = %self.stream.id, received = self.received, new = self.new,
            duplicates = self.duplicates, updates = self.updates, "pages ingested");
    }
}

/// A stream was behind for longer than Microsoft keeps data: `[from, to)` may be lost.
pub struct RangeLost<'a> {
    pub stream: Stream<'a>,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    /// Seconds not reported before (a gap found again is only widened).
    pub added_secs: u64,
    pub new_gap: bool,
}

impl RangeLost<'_> {
    pub fn message(&self) -> String {
        format!(
            "collector was behind for longer than Microsoft keeps data: records between {} and {} can no longer be read and may be lost",
            self.from, self.to
        )
    }

    pub fn emit(&self) {
        let l = self.stream.labels();
        metrics::counter!(m::STREAM_LOST_SECONDS, &l).increment(self.added_secs);
        if self.new_gap {
            metrics::counter!(m::STREAM_GAPS, &l).increment(1);
        }
        tracing::error!(stream = %self.stream.id, lost_from = %self.from, lost_to = %self.to, "{}", self.message());
    }
}

/// A content blob aged out before it could be fetched, or was refused as over its cap.
pub struct BlobWrittenOff<'a> {
    pub stream: Stream<'a>,
    pub content_id: &'a str,
    pub created: &'a str,
    pub detail: &'a str,
    pub refused: bool,
}

impl BlobWrittenOff<'_> {
    pub fn emit(&self) {
        let l = self.stream.labels();
        let s = &self.stream;
        if self.refused {
            metrics::counter!(m::BLOBS_REFUSED, &l).increment(1);
            tracing::error!(stream = %s.id, content_id = %self.content_id, created = %self.created, detail = %self.detail,
                "content blob refused: over the size or compression cap; counted, and the stream goes on");
        } else {
            metrics::counter!(m::BLOBS_EXPIRED, &l).increment(1);
            tracing::error!(stream = %s.id, content_id = %self.content_id, created = %self.created, detail = %self.detail,
                "content blob expired before it could be fetched; its records are lost at the source and counted");
        }
    }
}

/// One answer from a Microsoft API, by status class (`2xx` ... `5xx`, or `error` when none came).
pub struct ApiAnswered<'a> {
    pub tenant: &'a str,
    pub api: &'static str,
    pub status: Option<u16>,
    /// The calling client's own counters (one per tenant and API).
    pub counters: &'a ApiAnswers,
}

/// The status classes of `ApiAnswered`, in the order of `ApiAnswers`' slots.
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other", "error"];

/// One client's `ApiAnswered` counters, each registered on its first use. Looked up by labels
/// on every call (the tenant copied, the key hashed, the registry locked), they cost about
/// 2,600 instructions a call; a client's tenant and API never change, so it keeps the handles.
#[derive(Default)]
pub struct ApiAnswers([std::sync::OnceLock<metrics::Counter>; CLASSES.len()]);

impl ApiAnswered<'_> {
    pub fn emit(&self) {
        let i = match self.status {
            Some(s) => (s as usize / 100).checked_sub(1).filter(|&i| i < 5).unwrap_or(5),
            None => 6,
        };
        self.counters.0[i]
            .get_or_init(|| {
                metrics::counter!(m::API_REQUESTS, "tenant" => self.tenant.to_string(), "api" => self.api, "class" => CLASSES[i])
            })
            .increment(1);
    }
}

/// A failed call that is tried again.
pub struct ApiRetrying<'a> {
    pub tenant: &'a str,
    pub api: &'static str,
    pub throttled: bool,
    pub error: &'a dyn std::fmt::Display,
    pub wait: Duration,
}

impl ApiRetrying<'_> {
    pub fn emit(&self) {
        let labels = [("tenant", self.tenant.to_string()), ("api", self.api.to_string())];
        metrics::counter!(m::API_RETRIES, &labels).increment(1);
        if self.throttled {
            metrics::counter!(m::API_THROTTLED, &labels).increment(1);
            // Routine and paced for.
            tracing::debug!(tenant = %self.tenant, api = self.api, error = %self.error, retry_in = ?self.wait, "throttled; retrying");
        } else {
            // Worth an operator's eye before the retries run out and status shows it.
            tracing::warn!(tenant = %self.tenant, api = self.api, error = %self.error, retry_in = ?self.wait, "call failed; retrying");
        }
    }
}

/// An answer crossed the trust boundary: a link elsewhere, or a body over its cap.
pub struct ApiRefused<'a> {
    pub tenant: &'a str,
    pub api: &'static str,
    pub error: &'a dyn std::fmt::Display,
    pub link: bool,
}

impl ApiRefused<'_> {
    pub fn emit(&self) {
        let labels = [("tenant", self.tenant.to_string()), ("api", self.api.to_string())];
        if self.link {
            metrics::counter!(m::API_LINKS_REFUSED, &labels).increment(1);
            tracing::error!(tenant = %self.tenant, api = self.api, error = %self.error,
                "refused a link outside the configured endpoint; a tampered response or a misbehaving proxy?");
        } else {
            metrics::counter!(m::API_BODIES_REFUSED, &labels).increment(1);
            tracing::error!(tenant = %self.tenant, api = self.api, error = %self.error, "refused a response body");
        }
    }
}

/// A polling cycle ended: the stream's state, and why if it did not finish.
pub struct CycleEnded<'a> {
    pub stream: Stream<'a>,
    pub state: &'a crate::store::StreamState,
    /// The outcome's reason, when the cycle did not finish.
    pub why: Option<&'a str>,
    pub pause: Duration,
}

pub const STATES: [&str; 9] =
    ["starting", "running", "retrying", "warming_up", "unavailable", "throttled", "failed", "stopped", "removed"];

impl CycleEnded<'_> {
    pub fn emit(&self) {
        let s = &self.stream;
        StreamStateSet { stream: *s, state: self.state.name() }.emit();
        let Some(why) = self.why else { return };
        metrics::counter!(m::STREAM_ERRORS, &s.labels()).increment(1);
        match self.state {
            crate::store::StreamState::Unavailable(_) => {
                tracing::warn!(stream = %s.id, needs = %why, "stream unavailable; other streams continue; checking again later")
            }
            crate::store::StreamState::Throttled { .. } if self.pause > Duration::from_secs(60) => {
                tracing::warn!(stream = %s.id, error = %why, wait = ?self.pause, "Microsoft asked for a long pause; the stream waits")
            }
            crate::store::StreamState::Failed(_) => {
                tracing::error!(stream = %s.id, error = %why, retry_in = ?self.pause,
                "stream failed; other streams continue; it is tried again later")
            }
            _ => tracing::warn!(stream = %s.id, error = %why, "polling cycle incomplete; will retry"),
        }
    }
}

/// The `auditkeeper_stream_state` gauge: 1 for the current state, 0 for the others.
pub struct StreamStateSet<'a> {
    pub stream: Stream<'a>,
    pub state: &'static str,
}

impl StreamStateSet<'_> {
    pub fn emit(&self) {
        for st in STATES {
            let [t, s] = self.stream.labels();
            let labels = [t, s, ("state", st.to_string())];
            metrics::gauge!(m::STREAM_STATE, &labels).set(if st == self.state { 1.0 } else { 0.0 });
        }
    }
}

/// Kinds of trouble a stream can be in (`ApiError::problem`, and `no_answer` for a call that
/// hangs), the values of `auditkeeper_stream_problem`'s label.
pub const PROBLEMS: [&str; 9] =
    ["throttled", "error", "no_answer", "unauthorized", "credential", "unavailable", "rejected", "fatal", "boundary"];

/// What kind of trouble a stream is in (`None`: none), for alerts per tenant and reason.
pub struct StreamProblem<'a> {
    pub stream: Stream<'a>,
    pub problem: Option<&'static str>,
}

impl StreamProblem<'_> {
    pub fn emit(&self) {
        for kind in PROBLEMS {
            let [t, s] = self.stream.labels();
            let labels = [t, s, ("problem", kind.to_string())];
            metrics::gauge!(m::STREAM_PROBLEM, &labels).set(if Some(kind) == self.problem { 1.0 } else { 0.0 });
        }
    }
}

/// Where a stream stands: how far behind now, and how long until uncollected data ages out.
pub struct StreamPosition<'a> {
    pub stream: Stream<'a>,
    pub lag: Option<Duration>,
    pub headroom_secs: Option<i64>,
}

impl StreamPosition<'_> {
    pub fn emit(&self) {
        let l = self.stream.labels();
        if let Some(lag) = self.lag {
            metrics::gauge!(m::STREAM_LAG, &l).set(lag.as_secs_f64());
        }
        if let Some(h) = self.headroom_secs {
            metrics::gauge!(m::STREAM_HEADROOM, &l).set(h as f64);
        }
    }
}

/// A MailItemsAccessed record says Exchange throttled auditing of a mailbox: for 24 hours its
/// Bind access is not audited, so every item in it must be assumed read. Logged once per
/// mailbox and day (`first_today`).
pub struct MailboxAuditThrottled<'a> {
    pub tenant: &'a str,
    pub mailbox: &'a str,
    pub records: u64,
    pub first_today: bool,
}

impl MailboxAuditThrottled<'_> {
    pub fn emit(&self) {
        metrics::counter!(m::MAIL_ITEMS_ACCESSED_THROTTLED, "tenant" => self.tenant.to_string())
            .increment(self.records);
        if self.first_today {
            tracing::warn!(tenant = %self.tenant, mailbox = %self.mailbox,
                "MailItemsAccessed auditing is THROTTLED for this mailbox: for 24 hours Exchange does not audit Bind access, so assume every item in it was read");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_counter_counts_each_answer_under_its_class() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let (graph, management) = (ApiAnswers::default(), ApiAnswers::default());
            for status in [Some(200), Some(204), Some(429), None, Some(42), Some(503), Some(200)] {
                ApiAnswered { tenant: "contoso", api: "graph", status, counters: &graph }.emit();
            }
            ApiAnswered { tenant: "contoso", api: "management", status: Some(200), counters: &management }.emit();
        });
        let text = handle.render();
        let count = |api: &str, class: &str| {
            let series = format!("{}{{tenant=\"contoso\",api=\"{api}\",class=\"{class}\"}} ", m::API_REQUESTS);
            text.lines().find_map(|l| l.strip_prefix(series.as_str())).map(|v| v.trim().to_string())
        };
        for (class, want) in [("2xx", "3"), ("4xx", "1"), ("5xx", "1"), ("error", "1"), ("other", "1")] {
            assert_eq!(count("graph", class).as_deref(), Some(want), "graph {class} in:\n{text}");
        }
        assert_eq!(count("graph", "1xx"), None, "no 1xx answer came");
        assert_eq!(count("management", "2xx").as_deref(), Some("1"), "another client's own counter:\n{text}");
    }
}

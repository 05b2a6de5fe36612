//! One Graph or ARM stream as a `Source`: what a polling cycle does.
//!
//! Each cycle reads the windows the planner gives, oldest first. Every page is ingested as it
//! arrives (its records are deduped on id + canonical content); the cursor moves to a window's
//! end only after its last page, so a failed page retries the window and never skips unread
//! data. Re-reading the overlap finds late sign-ins; changed records come back as updates.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::GraphClient;
use super::config::GraphStreamSettings;
use super::protocol;
use super::spec::{CHUNK, StreamSpec};
use crate::pipeline::StreamHandle;
use crate::sources::driver::{Outcome, Source};
use crate::sources::error::ApiError;
use crate::sources::record::parse_time_ms;
use crate::sources::window::{self, Limits, Reach};
use crate::store::{Checkpoint, PageRecord};

/// A small margin inside retention, so the oldest edge is still served when the request lands.
const RETENTION_MARGIN: Duration = Duration::from_secs(600);

/// The planner's limits for a Graph or ARM stream.
pub fn limits(spec: &StreamSpec, lag: Duration) -> Limits {
    Limits { retention: spec.retention, margin: RETENTION_MARGIN, max_window: CHUNK, lag }
}

pub struct GraphStream {
    pub client: Arc<GraphClient>,
    pub handle: StreamHandle,
    pub spec: &'static StreamSpec,
    pub settings: GraphStreamSettings,
    /// The Azure subscription of an `azure_activity` stream.
    pub subscription: Option<String>,
    /// Consecutive cycles that ended on an undocumented 4xx.
    pub rejected_cycles: u32,
}

/// Cycles in a row ending on an undocumented 4xx before the stream is declared failed (and
/// tried again hourly): a skip token that expired or a brief outage clears up sooner.
const REJECTIONS_BEFORE_FAILED: u32 = 3;

impl Source for GraphStream {
    fn calls(&self) -> Option<std::sync::Arc<crate::sources::calls::CallHealth>> {
        Some(self.client.health(self.spec.bucket))
    }

    async fn cycle(&mut self, shutdown: &CancellationToken) -> Outcome {
        let cursor = match self.handle.cursor().await {
            Ok(c) => c.as_deref().and_then(window::parse_cursor),
            Err(e) => return Outcome::Retry { after: None, why: e.to_string() },
        };
        let now = self.client.clock(self.spec.bucket).now();
        let s = &self.settings;
        let plan =
            window::plan(cursor, now, Reach { backfill: s.backfill, overlap: s.overlap }, limits(self.spec, s.lag));
        if let Some((from, to)) = plan.gap {
            self.handle.report_gap(from, to).await;
        }
        for (start, end) in plan.windows {
            if shutdown.is_cancelled() || !self.handle.wait_open(shutdown).await {
                return Outcome::Done;
            }
            match self.read_window(start, end).await {
                Ok(()) => {}
                Err(WindowError::Rejected(e)) => {
                    self.rejected_cycles += 1;
                    let why = format!("{e} (retried; {} of {REJECTIONS_BEFORE_FAILED} cycles)", self.rejected_cycles);
                    return if self.rejected_cycles >= REJECTIONS_BEFORE_FAILED {
                        Outcome::Fatal(format!("{e}: refused {} cycles in a row", self.rejected_cycles))
                    } else {
                        Outcome::Retry { after: None, why }
                    };
                }
                Err(WindowError::Other(o)) => return o,
            }
        }
        self.rejected_cycles = 0;
        Outcome::Done
    }
}

enum WindowError {
    Rejected(ApiError),
    Other(Outcome),
}

impl From<Outcome> for WindowError {
    fn from(o: Outcome) -> Self {
        WindowError::Other(o)
    }
}

impl GraphStream {
    fn outcome(&self, e: ApiError) -> Outcome {
        let needs = match (self.spec.permission, self.spec.needs_premium) {
            (p, true) => format!("; needs {p} and Microsoft Entra ID P1/P2"),
            (p, false) => format!("; needs {p}"),
        };
        match e {
            ApiError::Unavailable(m) => Outcome::Unavailable { needs: format!("{m}{needs}") },
            e => Outcome::from_error(e, |_| ""),
        }
    }

    /// Reads one window to its last page. An undocumented 4xx on a next page (an expired skip
    /// token answers 400) starts the window again once; the dedupe keys drop what was read.
    async fn read_window(
        &self,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), WindowError> {
        let base = self.client.base(self.spec.host);
        let first = protocol::window_url(base, self.spec, self.subscription.as_deref(), start, end);
        let mut url = first.clone();
        let retry = |why: String| Outcome::Retry { after: None, why };
        let (mut pages, mut restarted) = (0u32, false);
        loop {
            pages += 1;
            if pages > self.client.max_pages {
                return Err(retry(format!(
                    "window {start} to {end} ran past {} pages; stopped (a next-page link that loops?)",
                    self.client.max_pages
                ))
                .into());
            }
            let reply = match self.client.get(self.spec.bucket, &url).await {
                Ok(r) => r,
                Err(ApiError::Rejected { status, code, message }) if url != first && !restarted => {
                    tracing::warn!(stream = %self.handle.key.id, status, %code, %message,
                        "a next page was refused; reading the window again from its first page");
                    (restarted, url) = (true, first.clone());
                    continue;
                }
                Err(e @ ApiError::Rejected { .. }) => return Err(WindowError::Rejected(e)),
                Err(e) => return Err(self.outcome(e).into()),
            };
            let (ranges, next) = protocol::parse_page(&reply.body).map_err(|e| retry(e.to_string()))?;
            let mut records = Vec::with_capacity(ranges.len());
            let mut without_id = 0;
            for r in ranges {
                let v: serde_json::Value =
                    serde_json::from_slice(&reply.body[r.clone()]).map_err(|e| retry(e.to_string()))?;
                let own_time = v.get(self.spec.time_field).and_then(|t| t.as_str()).and_then(parse_time_ms);
                let event_time_ms = own_time.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                // A time Microsoft moves on update cannot be part of the identity that says
                // "seen before, so this is an update": those records' keys go without it.
                let key_time_ms = if self.spec.time_is_stable() { own_time.unwrap_or(0) } else { 0 };
                match protocol::record_keys(&v, self.spec.id_fields) {
                    Some((key, id_key, id)) => records.push(PageRecord {
                        key,
                        id_key: Some(id_key),
                        id,
                        event_time_ms,
                        key_time_ms,
                        raw: r,
                        envelope: None,
                    }),
                    None => {
                        // No id: dedupe on content alone, so it is still delivered once.
                        without_id += 1;
                        let mut c = String::new();
                        protocol::canonical(&v, &mut c);
                        let key = crate::sources::record::hash16(&[b"graph-noid", c.as_bytes()]);
                        records.push(PageRecord {
                            key,
                            id_key: None,
                            id: hex::encode(key),
                            event_time_ms,
                            key_time_ms,
                            raw: r,
                            envelope: None,
                        });
                    }
                }
            }
            // INVARIANT: the cursor moves to the window's end only with the last page.
            let checkpoint = match &next {
                None => Checkpoint::Cursor(end.to_rfc3339()),
                Some(_) => Checkpoint::None,
            };
            self.handle.ingest(reply.body, records, without_id, checkpoint).await.map_err(|e| retry(e.to_string()))?;
            match next {
                Some(n) => url = n,
                None => return Ok(()),
            }
        }
    }
}

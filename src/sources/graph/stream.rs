//! The polling loop of one Graph stream.
//!
//! Each cycle reads the windows `protocol::plan` gives, oldest first. Every page is ingested as
//! it arrives (its records are deduped on id + canonical content); the cursor moves to a
//! window's end only after its last page, so a failed page retries the window and never skips
//! unread data. Re-reading the overlap finds late sign-ins; changed records come back as updates.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::client::GraphClient;
use super::config::GraphStreamSettings;
use super::protocol;
use super::spec::StreamSpec;
use crate::pipeline::StreamHandle;
use crate::sources::error::ApiError;
use crate::sources::record::parse_time_ms;
use crate::store::{Checkpoint, PageRecord};

pub struct GraphStream {
    pub client: Arc<GraphClient>,
    pub handle: StreamHandle,
    pub spec: &'static StreamSpec,
    pub settings: GraphStreamSettings,
    /// The Azure subscription of an `azure_activity` stream.
    pub subscription: Option<String>,
}

enum Outcome {
    Done,
    Unavailable(String),
    Fatal(String),
    Retry(String),
}

impl GraphStream {
    pub async fn run(self, shutdown: CancellationToken) {
        let id = self.handle.key.id.clone();
        self.handle.set_state("running", None).await;
        loop {
            if !self.handle.wait_open(&shutdown).await {
                break;
            }
            let outcome = tokio::select! {
                r = self.cycle(&shutdown) => r,
                _ = shutdown.cancelled() => break,
            };
            let mut pause = self.settings.poll_interval;
            match outcome {
                Outcome::Done => {
                    self.handle.success().await;
                    self.handle.set_state("running", None).await;
                    metrics::gauge!("auditkeeper_stream_unavailable", "stream" => id.clone()).set(0.0);
                }
                Outcome::Unavailable(why) => {
                    let detail = format!(
                        "{why}; needs {}{}",
                        self.spec.permission,
                        if self.spec.needs_premium { " and Microsoft Entra ID P1/P2" } else { "" }
                    );
                    tracing::warn!(stream = %id, %detail, "stream unavailable; other streams continue; checking again later");
                    metrics::gauge!("auditkeeper_stream_unavailable", "stream" => id.clone()).set(1.0);
                    self.handle.error(detail.clone()).await;
                    self.handle.set_state("unavailable", Some(detail)).await;
                    pause = self.settings.recheck_unavailable;
                }
                Outcome::Fatal(msg) => {
                    tracing::error!(stream = %id, error = %msg, "stream stopped; other streams continue");
                    self.handle.error(msg.clone()).await;
                    self.handle.set_state("stopped", Some(msg)).await;
                    return;
                }
                Outcome::Retry(msg) => {
                    tracing::warn!(stream = %id, error = %msg, "polling cycle incomplete; will retry");
                    self.handle.error(msg).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.handle.set_state("stopped", Some("shut down".into())).await;
    }

    async fn cycle(&self, shutdown: &CancellationToken) -> Outcome {
        let cursor = match self.handle.cursor().await {
            Ok(c) => c
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|c| c.with_timezone(&chrono::Utc)),
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let now = self.client.clock(self.spec.bucket).now();
        let s = &self.settings;
        let backfill = s.backfill.min(self.spec.retention);
        for (start, end) in protocol::plan(cursor, now, s.lag, s.overlap, backfill, self.spec.retention) {
            if shutdown.is_cancelled() || !self.handle.wait_open(shutdown).await {
                return Outcome::Done;
            }
            if let Err(o) = self.read_window(start, end).await {
                return o;
            }
        }
        Outcome::Done
    }

    async fn read_window(
        &self,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Outcome> {
        let base = self.client.base(self.spec.host);
        let mut url = protocol::window_url(base, self.spec, self.subscription.as_deref(), start, end);
        loop {
            let reply = self.client.get(self.spec.bucket, &url).await.map_err(|e| match e {
                ApiError::Unavailable(m) => Outcome::Unavailable(m),
                ApiError::Fatal { code, message } => Outcome::Fatal(format!("{code}: {message}")),
                other => Outcome::Retry(other.to_string()),
            })?;
            let (ranges, next) = protocol::parse_page(&reply.body).map_err(Outcome::Retry)?;
            let mut records = Vec::with_capacity(ranges.len());
            let mut without_id = 0;
            for r in ranges {
                let v: serde_json::Value =
                    serde_json::from_slice(&reply.body[r.clone()]).map_err(|e| Outcome::Retry(e.to_string()))?;
                let event_time_ms = v
                    .get(self.spec.time_field)
                    .and_then(|t| t.as_str())
                    .and_then(parse_time_ms)
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                match protocol::record_keys(&v, self.spec.id_fields) {
                    Some((key, id_key, id)) => {
                        records.push(PageRecord { key, id_key: Some(id_key), id, event_time_ms, raw: r })
                    }
                    None => {
                        // No id: dedupe on content alone, so it is still delivered once.
                        without_id += 1;
                        let mut c = String::new();
                        protocol::canonical(&v, &mut c);
                        let key = crate::sources::record::hash16(&[b"graph-noid", c.as_bytes()]);
                        records.push(PageRecord { key, id_key: None, id: hex::encode(key), event_time_ms, raw: r });
                    }
                }
            }
            // INVARIANT: the cursor moves to the window's end only with the last page.
            let checkpoint = match &next {
                None => Checkpoint::Cursor(end.to_rfc3339()),
                Some(_) => Checkpoint::None,
            };
            let out = self
                .handle
                .ingest(reply.body, records, without_id, checkpoint)
                .await
                .map_err(|e| Outcome::Retry(e.to_string()))?;
            if out.updates > 0 {
                metrics::counter!("auditkeeper_records_updated_total", "stream" => self.handle.key.id.clone())
                    .increment(out.updates as u64);
            }
            match next {
                Some(n) => url = n,
                None => return Ok(()),
            }
        }
    }
}

//! The polling loop of one Management Activity stream.
//!
//! Each cycle: make sure the subscription is enabled; list `[cursor - overlap, now)` in legal
//! windows, entering every new `contentId` into the blob ledger; then fetch every blob the ledger
//! still holds as `listed`, oldest first (closest to expiry), with bounded concurrency. The
//! listing cursor and each blob's fate move only through ingest, so a crash repeats work but
//! never loses a blob.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::client::ManagementClient;
use super::config::ManagementSettings;
use super::protocol::{self, ApiError};
use crate::pipeline::StreamHandle;
use crate::sources::record;
use crate::store::{Checkpoint, PendingBlob};

/// Microsoft may take this long to publish the first content of a new subscription.
const WARM_UP: Duration = Duration::from_secs(12 * 3600);

enum CycleError {
    /// Stops this stream only; the message says why and what to do.
    Fatal(String),
    /// Logged and retried next cycle.
    Retry(String),
}

pub struct ManagementStream {
    pub client: Arc<ManagementClient>,
    pub handle: StreamHandle,
    pub content_type: String,
    pub settings: ManagementSettings,
    subscribed: bool,
}

impl ManagementStream {
    pub fn new(
        client: Arc<ManagementClient>,
        handle: StreamHandle,
        content_type: String,
        settings: ManagementSettings,
    ) -> Self {
        ManagementStream { client, handle, content_type, settings, subscribed: false }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let id = self.handle.key.id.clone();
        self.handle.set_state("running", None).await;
        loop {
            if !self.handle.wait_open(&shutdown).await {
                break;
            }
            // Safe to abandon at any await: every durable step is its own ingest transaction.
            let outcome = tokio::select! {
                r = self.cycle(&shutdown) => r,
                _ = shutdown.cancelled() => break,
            };
            match outcome {
                Ok(()) => {
                    self.handle.success().await;
                    self.report_warm_up().await;
                }
                Err(CycleError::Fatal(msg)) => {
                    tracing::error!(stream = %id, error = %msg, "stream stopped; other streams continue");
                    self.handle.error(msg.clone()).await;
                    self.handle.set_state("stopped", Some(msg)).await;
                    return;
                }
                Err(CycleError::Retry(msg)) => {
                    tracing::warn!(stream = %id, error = %msg, "polling cycle incomplete; will retry");
                    self.handle.error(msg).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.handle.set_state("stopped", Some("shut down".into())).await;
    }

    /// The first 12 hours of a new subscription may have no content: say so, it is not an error.
    async fn report_warm_up(&self) {
        let listed = self.handle.blobs_ever_listed().await.unwrap_or(1);
        let started = self.handle.subscription_started_at().await;
        let warming = listed == 0 && started.is_some_and(|t| crate::store::now_ms() - t < WARM_UP.as_millis() as i64);
        if warming {
            self.handle
                .set_state(
                    "warming_up",
                    Some(
                        "subscription started recently; Microsoft can take up to 12 hours to publish the first content"
                            .into(),
                    ),
                )
                .await;
        } else {
            self.handle.set_state("running", None).await;
        }
    }

    async fn cycle(&mut self, shutdown: &CancellationToken) -> Result<(), CycleError> {
        if !self.subscribed {
            self.ensure_subscription().await?;
        }
        let mut replanned = false;
        loop {
            match self.list_all(shutdown).await {
                Err(ListError::BadWindow(msg)) if !replanned => {
                    // The server clock moved (learned from `Date`); plan again once with it.
                    tracing::warn!(stream = %self.handle.key.id, error = %msg, skew_ms = self.client.clock().offset_ms(), "window rejected; replanning with the server clock");
                    replanned = true;
                }
                Err(ListError::BadWindow(msg)) => return Err(CycleError::Retry(msg)),
                Err(ListError::Cycle(e)) => return Err(e),
                Ok(()) => break,
            }
        }
        self.fetch_pending(shutdown).await
    }

    async fn ensure_subscription(&mut self) -> Result<(), CycleError> {
        let subs = self.client.list_subscriptions().await.map_err(|e| self.api_error(e))?;
        let enabled = subs.iter().any(|s| {
            s.content_type.eq_ignore_ascii_case(&self.content_type) && s.status.eq_ignore_ascii_case("enabled")
        });
        if !enabled {
            self.start_subscription().await?;
        }
        self.subscribed = true;
        Ok(())
    }

    async fn start_subscription(&mut self) -> Result<(), CycleError> {
        tracing::info!(stream = %self.handle.key.id, "starting Management Activity subscription");
        self.client.start_subscription(&self.content_type).await.map_err(|e| self.api_error(e))?;
        self.handle.subscription_started().await;
        Ok(())
    }

    async fn list_all(&mut self, shutdown: &CancellationToken) -> Result<(), ListError> {
        let cursor = self
            .handle
            .cursor()
            .await
            .map_err(|e| ListError::Cycle(CycleError::Retry(e.to_string())))?
            .as_deref()
            .and_then(protocol::parse_cursor);
        let s = &self.settings;
        let plan = protocol::plan_listing(cursor, self.client.clock().now(), s.backfill, s.overlap, s.retention_margin);
        if let Some((from, to)) = plan.gap {
            let msg = format!(
                "collector was behind for longer than Microsoft keeps content: blobs created between {from} and {to} can no longer be listed and may be lost"
            );
            tracing::error!(stream = %self.handle.key.id, "{msg}");
            self.handle.error(msg).await;
        }
        for (start, end) in plan.windows {
            if shutdown.is_cancelled() || !self.handle.wait_open(shutdown).await {
                return Ok(());
            }
            self.list_window(start, end).await?;
        }
        Ok(())
    }

    async fn list_window(
        &mut self,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ListError> {
        let first = self.client.content_url(&self.content_type, &protocol::fmt_time(start), &protocol::fmt_time(end));
        let mut url = first.clone();
        let (mut restarted_sub, mut restarted_page) = (false, false);
        loop {
            match self.client.list_page(&url).await {
                Ok((items, next)) => {
                    let blobs = items.iter().map(|i| i.listing()).collect();
                    // The cursor moves to the window's end only with its last page.
                    let watermark = next.is_none().then(|| end.to_rfc3339());
                    self.handle
                        .ingest(Vec::new(), Vec::new(), 0, Checkpoint::BlobsListed { blobs, watermark })
                        .await
                        .map_err(|e| ListError::Cycle(CycleError::Retry(e.to_string())))?;
                    match next {
                        Some(n) => url = n,
                        None => return Ok(()),
                    }
                }
                Err(ApiError::NoSubscription { .. }) if !restarted_sub => {
                    restarted_sub = true;
                    self.start_subscription().await.map_err(ListError::Cycle)?;
                }
                Err(ApiError::BadPage { .. }) if !restarted_page => {
                    // A refused nextPage token: list the window again from its start; the ledger drops repeats.
                    restarted_page = true;
                    url = first.clone();
                }
                Err(ApiError::BadWindow { code, message }) => {
                    return Err(ListError::BadWindow(format!("{code}: {message}")));
                }
                Err(e) => return Err(ListError::Cycle(self.api_error(e))),
            }
        }
    }

    async fn fetch_pending(&mut self, shutdown: &CancellationToken) -> Result<(), CycleError> {
        let pending = self.handle.pending_blobs().await.map_err(|e| CycleError::Retry(e.to_string()))?;
        if pending.is_empty() {
            return Ok(());
        }
        let total = pending.len();
        let this = &*self;
        let results: Vec<Result<(), CycleError>> = futures::stream::iter(pending)
            .map(|b| async move {
                if shutdown.is_cancelled() || !this.handle.wait_open(shutdown).await {
                    return Ok(());
                }
                this.fetch_one(b).await
            })
            .buffer_unordered(self.settings.fetch_concurrency)
            .collect()
            .await;
        let mut failed = 0;
        let mut last = None;
        for r in results {
            match r {
                Ok(()) => {}
                Err(CycleError::Fatal(m)) => return Err(CycleError::Fatal(m)),
                Err(CycleError::Retry(m)) => {
                    failed += 1;
                    last = Some(m);
                }
            }
        }
        match last {
            None => Ok(()),
            Some(m) => {
                Err(CycleError::Retry(format!("{failed} of {total} blobs not fetched yet (they stay pending): {m}")))
            }
        }
    }

    async fn fetch_one(&self, b: PendingBlob) -> Result<(), CycleError> {
        // Past `contentExpiration` a fetch is still tried for a day: Microsoft counts 7 days from
        // when it first announced the blob, which can be later than `contentCreated`. Only a
        // blob expired for longer is written off without a request (AF20051 is certain by then).
        let now_ms = self.client.clock().now().timestamp_millis();
        if b.content_expiration_ms.is_some_and(|e| e + 86_400_000 <= now_ms) {
            return self
                .expired(&b, "contentExpiration passed more than a day before the blob could be fetched".into())
                .await;
        }
        // Held until the records are spooled, so memory is bounded per tenant.
        let _slot = self.client.fetch_slots.acquire().await.map_err(|e| CycleError::Retry(e.to_string()))?;
        match self.client.fetch_blob(&b.content_uri).await {
            Ok(body) => {
                let parsed = record::parse_management_blob(&body)
                    .map_err(|e| CycleError::Retry(format!("blob {}: {e}", b.content_id)))?;
                self.handle
                    .ingest(
                        body,
                        parsed.records,
                        parsed.without_id,
                        Checkpoint::BlobFetched { content_id: b.content_id },
                    )
                    .await
                    .map_err(|e| CycleError::Retry(e.to_string()))?;
                Ok(())
            }
            Err(ApiError::Gone { code, message }) => self.expired(&b, format!("{code}: {message}")).await,
            Err(e) => Err(self.api_error(e)),
        }
    }

    async fn expired(&self, b: &PendingBlob, detail: String) -> Result<(), CycleError> {
        tracing::error!(stream = %self.handle.key.id, content_id = %b.content_id, created = %b.content_created, %detail,
            "content blob expired before it could be fetched; its records are lost at the source and counted");
        metrics::counter!("auditkeeper_blobs_expired_total", "stream" => self.handle.key.id.clone()).increment(1);
        self.handle
            .ingest(Vec::new(), Vec::new(), 0, Checkpoint::BlobExpired { content_id: b.content_id.clone(), detail })
            .await
            .map_err(|e| CycleError::Retry(e.to_string()))?;
        Ok(())
    }

    fn api_error(&self, e: ApiError) -> CycleError {
        match e {
            ApiError::Fatal { code, message } => CycleError::Fatal(format!("{code}: {message}{}", hint(&code))),
            ApiError::Unauthorized(m) => CycleError::Retry(format!(
                "401 even after a fresh token ({m}); check the app's ActivityFeed.Read permission and admin consent"
            )),
            ApiError::Credential(m) => CycleError::Retry(format!(
                "{m} (check client_id, the client secret and tenant_id; the secret is re-read on the next attempt)"
            )),
            other => CycleError::Retry(other.to_string()),
        }
    }
}

enum ListError {
    BadWindow(String),
    Cycle(CycleError),
}

fn hint(code: &str) -> &'static str {
    match code {
        "AF10001" => " (grant the app the ActivityFeed.Read application permission and admin consent)",
        "AF20010" => " (the token's tenant differs from tenant_id)",
        "AF20011" | "AF20012" | "AF20013" => " (check tenant_id)",
        "AF20020" => " (content type not supported)",
        _ => "",
    }
}

//! One Management Activity stream as a `Source`: what a polling cycle does.
//!
//! Each cycle: make sure the subscription is enabled; list `[cursor - overlap, now)` in legal
//! windows, entering every new `contentId` into the blob ledger; then fetch every blob the ledger
//! still holds as `listed`, oldest first (closest to expiry), with bounded concurrency. What each
//! answer leads to is decided by `protocol::next_action`. The listing cursor and each blob's
//! fate move only through ingest, so a crash repeats work but never loses a blob.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::client::ManagementClient;
use super::config::ManagementSettings;
use super::protocol::{self, Action, ApiError, Attempts, Event};
use crate::pipeline::StreamHandle;
use crate::sources::driver::{Outcome, Source};
use crate::sources::{record, window};
use crate::store::{Checkpoint, PendingBlob};
use crate::telemetry::events;

/// Microsoft may take this long to publish the first content of a new subscription.
const WARM_UP: Duration = Duration::from_secs(12 * 3600);

pub struct ManagementStream {
    pub client: Arc<ManagementClient>,
    pub handle: StreamHandle,
    pub content_type: String,
    pub settings: ManagementSettings,
    subscribed: bool,
    /// Past the warm-up of its subscription (a blob listed, or 12 hours gone): the ledger need
    /// not be counted again each cycle.
    warmed_up: bool,
}

impl Source for ManagementStream {
    fn calls(&self) -> Option<std::sync::Arc<crate::sources::calls::CallHealth>> {
        Some(self.client.health())
    }

    async fn cycle(&mut self, shutdown: &CancellationToken) -> Outcome {
        if !self.subscribed
            && let Err(o) = self.ensure_subscription().await
        {
            return o;
        }
        let listed = self.list_all(shutdown).await;
        // Blobs already in the ledger are fetched even when listing failed for now: a listing
        // that keeps failing must not let what it did list age out. Not after a tenant-wide
        // refusal, where every fetch would be refused too.
        if matches!(listed, Ok(()) | Err(Outcome::Retry { .. }))
            && let Err(o) = self.fetch_pending(shutdown).await
        {
            return listed.err().unwrap_or(o);
        }
        if let Err(o) = listed {
            return o;
        }
        self.warm_up().await.map_or(Outcome::Done, Outcome::WarmingUp)
    }
}

impl ManagementStream {
    pub fn new(
        client: Arc<ManagementClient>,
        handle: StreamHandle,
        content_type: String,
        settings: ManagementSettings,
    ) -> Self {
        ManagementStream { client, handle, content_type, settings, subscribed: false, warmed_up: false }
    }

    /// The first 12 hours of a new subscription may have no content: say so, it is not an error.
    async fn warm_up(&mut self) -> Option<String> {
        if self.warmed_up {
            return None;
        }
        // A store that cannot say is not a reason to report a warm-up, nor to stop checking.
        let (Ok(listed), Ok(started)) =
            (self.handle.blobs_ever_listed().await, self.handle.subscription_started_at().await)
        else {
            return None;
        };
        let warming = listed == 0 && started.is_some_and(|t| crate::store::now_ms() - t < WARM_UP.as_millis() as i64);
        // Not warming now is for good, until the subscription is started again.
        self.warmed_up = !warming;
        warming.then(|| {
            "subscription started recently; Microsoft can take up to 12 hours to publish the first content".into()
        })
    }

    async fn ensure_subscription(&mut self) -> Result<(), Outcome> {
        let subs = self.client.list_subscriptions().await.map_err(outcome)?;
        let enabled = subs.iter().any(|s| {
            s.content_type.eq_ignore_ascii_case(&self.content_type) && s.status.eq_ignore_ascii_case("enabled")
        });
        if !enabled {
            self.start_subscription().await?;
        }
        self.subscribed = true;
        Ok(())
    }

    async fn start_subscription(&mut self) -> Result<(), Outcome> {
        tracing::info!(stream = %self.handle.key.id, "starting Management Activity subscription");
        self.client.start_subscription(&self.content_type).await.map_err(outcome)?;
        self.handle.subscription_started().await;
        // A subscription started again may be warming up again (its old blobs pruned).
        self.warmed_up = false;
        Ok(())
    }

    async fn list_all(&mut self, shutdown: &CancellationToken) -> Result<(), Outcome> {
        let mut attempts = Attempts::default();
        'plan: loop {
            let cursor = self.handle.cursor().await.map_err(retry)?.as_deref().and_then(window::parse_cursor);
            let s = &self.settings;
            let reach = window::Reach { backfill: s.backfill, overlap: s.overlap };
            let plan = window::plan(cursor, self.client.clock().now(), reach, protocol::limits(s.retention_margin));
            if let Some((from, to)) = plan.gap {
                self.handle.report_gap(from, to).await;
            }
            for (start, end) in plan.windows {
                if shutdown.is_cancelled() || !self.handle.wait_open(shutdown).await {
                    return Ok(());
                }
                attempts.start_window();
                if self.list_window(&mut attempts, start, end).await? == Action::Replan {
                    tracing::warn!(stream = %self.handle.key.id, skew_ms = self.client.clock().offset_ms(),
                        "window rejected; replanning with the server clock");
                    continue 'plan;
                }
            }
            return Ok(());
        }
    }

    /// Lists one window to its last page; returns `WindowDone`, or `Replan` when the server
    /// refused the window's bounds.
    async fn list_window(
        &mut self,
        attempts: &mut Attempts,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<Action, Outcome> {
        let first = self.client.content_url(&self.content_type, &protocol::fmt_time(start), &protocol::fmt_time(end));
        let mut url = first.clone();
        for _ in 0..self.client.max_pages {
            let event = match self.client.list_page(&url).await {
                Ok((items, next)) => {
                    let blobs = items.iter().map(|i| i.listing()).collect();
                    // The cursor moves to the window's end only with its last page.
                    let watermark = next.is_none().then(|| end.to_rfc3339());
                    self.handle
                        .ingest(Vec::new(), Vec::new(), 0, Checkpoint::BlobsListed { blobs, watermark })
                        .await
                        .map_err(retry)?;
                    Event::Listed { next }
                }
                Err(e) => Event::ListFailed(e),
            };
            match protocol::next_action(attempts, event, self.now_ms()) {
                Action::FetchPage(next) => url = next,
                Action::StartSubscription => self.start_subscription().await?,
                // A refused nextPage token: list the window again; the ledger drops repeats.
                Action::RestartWindow => url = first.clone(),
                a @ (Action::WindowDone | Action::Replan) => return Ok(a),
                Action::Fail(e) | Action::Postpone(e) => return Err(outcome(e)),
                Action::FetchBlob | Action::WriteOff(_) | Action::Refuse(_) => {
                    unreachable!("listing events lead to listing actions")
                }
            }
        }
        Err(retry(format!(
            "listing window {start} to {end} ran past {} pages; stopped (a NextPageUri that loops?)",
            self.client.max_pages
        )))
    }

    fn now_ms(&self) -> i64 {
        self.client.clock().now().timestamp_millis()
    }

    async fn fetch_pending(&mut self, shutdown: &CancellationToken) -> Result<(), Outcome> {
        let pending = self.handle.pending_blobs().await.map_err(retry)?;
        if pending.is_empty() {
            return Ok(());
        }
        let total = pending.len();
        let this = &*self;
        let results: Vec<Result<(), ApiError>> = futures::stream::iter(pending)
            .map(|b| async move {
                if shutdown.is_cancelled() || !this.handle.wait_open(shutdown).await {
                    return Ok(());
                }
                this.fetch_one(b).await
            })
            .buffer_unordered(self.settings.fetch_concurrency)
            .collect()
            .await;
        let failed: Vec<ApiError> = results.into_iter().filter_map(Result::err).collect();
        // A tenant-wide refusal says more than the blobs it kept pending.
        let worst = failed
            .iter()
            .find(|e| {
                matches!(
                    protocol::next_action(&mut Attempts::default(), Event::BlobFailed((*e).clone()), 0),
                    Action::Fail(_)
                )
            })
            .or_else(|| failed.iter().find(|e| matches!(e, ApiError::Throttled { .. })))
            .or(failed.last());
        match worst {
            None => Ok(()),
            Some(e) => Err(match outcome(e.clone()) {
                Outcome::Retry { after, why } => Outcome::Retry {
                    after,
                    why: format!("{} of {total} blobs not fetched yet (they stay pending): {why}", failed.len()),
                },
                other => other,
            }),
        }
    }

    async fn fetch_one(&self, b: PendingBlob) -> Result<(), ApiError> {
        let event = Event::BlobDue { expiration_ms: b.content_expiration_ms };
        if let Action::WriteOff(detail) = protocol::next_action(&mut Attempts::default(), event, self.now_ms()) {
            return self.write_off(&b, detail, false).await;
        }
        // Held until the page is handed to ingest, whose queue is bounded in bytes: memory
        // stays bounded per tenant.
        let _slot = self.client.fetch_slots.acquire().await.map_err(|e| ApiError::Transient(e.to_string()))?;
        let body = match self.client.fetch_blob(&b.content_uri).await {
            Ok(body) => body,
            Err(e) => {
                return match protocol::next_action(&mut Attempts::default(), Event::BlobFailed(e), self.now_ms()) {
                    Action::WriteOff(detail) => self.write_off(&b, detail, false).await,
                    Action::Refuse(detail) => self.write_off(&b, detail, true).await,
                    Action::Fail(e) | Action::Postpone(e) => Err(e),
                    other => unreachable!("a blob failure leads to a blob action, not {other:?}"),
                };
            }
        };
        let parsed = record::parse_management_blob(&body)
            .map_err(|e| ApiError::Transient(format!("blob {}: {e}", b.content_id)))?;
        self.handle
            .ingest_blob(body, parsed, Checkpoint::BlobFetched { content_id: b.content_id })
            .await
            .map_err(|e| ApiError::Transient(e.to_string()))?;
        Ok(())
    }

    /// Settles a blob that will not be fetched: expired at Microsoft, or refused at the trust
    /// boundary (`refused`). Its ledger row says which, so nothing leaves the ledger unexplained.
    async fn write_off(&self, b: &PendingBlob, detail: String, refused: bool) -> Result<(), ApiError> {
        let (content_id, created) = (&b.content_id, &b.content_created);
        events::BlobWrittenOff { stream: self.handle.key.labels(), content_id, created, detail: &detail, refused }
            .emit();
        let content_id = content_id.clone();
        let checkpoint = if refused {
            Checkpoint::BlobRefused { content_id, detail }
        } else {
            Checkpoint::BlobExpired { content_id, detail }
        };
        self.handle
            .ingest(Vec::new(), Vec::new(), 0, checkpoint)
            .await
            .map_err(|e| ApiError::Transient(e.to_string()))?;
        Ok(())
    }
}

fn retry(e: impl std::fmt::Display) -> Outcome {
    Outcome::Retry { after: None, why: e.to_string() }
}

/// A failed call as the cycle's outcome, with what the operator should check.
fn outcome(e: ApiError) -> Outcome {
    match e {
        // No permission is not a fault of this stream: check again later, like Graph's.
        ApiError::Fatal { ref code, ref message } if code == "AF10001" => Outcome::Unavailable {
            needs: format!(
                "{code}: {message} (grant the app the ActivityFeed.Read application permission on Office 365 Management APIs, with admin consent)"
            ),
        },
        e => Outcome::from_error(e, hint),
    }
}

fn hint(e: &ApiError) -> &'static str {
    match e {
        ApiError::Fatal { code, .. } => match code.as_str() {
            "AF20010" => " (the token's tenant differs from tenant_id)",
            "AF20011" | "AF20012" | "AF20013" => " (check tenant_id)",
            "AF20020" => " (content type not supported)",
            _ => "",
        },
        ApiError::Unauthorized(_) => {
            " (401 even after a fresh token: check the app's ActivityFeed.Read permission and admin consent)"
        }
        ApiError::Credential(_) => {
            " (check the credential's keys and tenant_id; a secret or token file is re-read on the next attempt)"
        }
        _ => "",
    }
}

//! Ingest: the only path from a source into the store.
//!
//! Sources hold a `StreamHandle`. Through it they read their own position and hand over pages
//! to the group committer (`commit.rs`), which writes them in one transaction, wakes the
//! forwarders, and closes the spool gate when a limit is reached. A read through the handle
//! first waits for the stream's own pages to be written.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::commit::Committer;
use super::config::SpoolSettings;
use super::gate::SpoolGate;
use crate::store::{Checkpoint, IngestPage, PageRecord, PendingBlob, Store, StoreError, StreamState};
use crate::telemetry::events;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store task failed: {0}")]
    Join(String),
    /// A group commit this stream's pages were in failed (see `commit`).
    #[error("{0}")]
    Commit(Arc<StoreError>),
}

impl PipelineError {
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            PipelineError::Store(e) => Some(e),
            PipelineError::Commit(e) => Some(e),
            PipelineError::Join(_) => None,
        }
    }
}

/// Shared by every stream and forwarder of one daemon.
pub struct Pipeline {
    pub store: Arc<Store>,
    pub gate: SpoolGate,
    pub spool: SpoolSettings,
    /// Bumped after every ingest that spooled records; forwarders wait on it.
    spooled: watch::Sender<u64>,
    /// A write failed for lack of space and none has succeeded since (see `maintenance`).
    disk_full: std::sync::atomic::AtomicBool,
    /// The pause reason last written to the store, so `status` shows it once the disk allows.
    pause_flag: std::sync::Mutex<Option<String>>,
    /// Bytes in the dead-letter table at the last measurement.
    pub dead_letter_bytes: std::sync::atomic::AtomicU64,
    /// (tenant, mailbox, day) already warned about: one warning per mailbox and day.
    mailboxes_warned: std::sync::Mutex<std::collections::HashSet<(String, String, chrono::NaiveDate)>>,
    pub(super) committer: Committer,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub id: String,
    pub tenant: String,
    pub source: String,
    pub name: String,
}

impl StreamKey {
    /// The `tenant` and `stream` labels of this stream's metrics.
    pub fn labels(&self) -> events::Stream<'_> {
        events::Stream { tenant: &self.tenant, stream: &self.id[self.tenant.len() + 1..], id: &self.id }
    }

    pub fn new(tenant: &str, source: &str, name: &str) -> StreamKey {
        StreamKey {
            id: format!("{tenant}/{source}/{name}"),
            tenant: tenant.into(),
            source: source.into(),
            name: name.into(),
        }
    }
}

impl Pipeline {
    /// Needs a tokio runtime: the group committer runs as a task.
    pub fn new(store: Arc<Store>, spool: SpoolSettings) -> Arc<Pipeline> {
        Arc::new_cyclic(|me| Pipeline {
            committer: Committer::start(me.clone()),
            store,
            gate: SpoolGate::default(),
            spool,
            spooled: watch::Sender::new(0),
            disk_full: Default::default(),
            pause_flag: Default::default(),
            dead_letter_bytes: Default::default(),
            mailboxes_warned: Default::default(),
        })
    }

    pub fn subscribe_spooled(&self) -> watch::Receiver<u64> {
        self.spooled.subscribe()
    }

    /// Registers a stream and returns its handle.
    /// Registers a stream, with how long Microsoft keeps its data, and returns its handle.
    pub async fn stream(
        self: &Arc<Self>,
        key: StreamKey,
        retention: std::time::Duration,
    ) -> Result<StreamHandle, PipelineError> {
        let k = key.clone();
        let secs = retention.as_secs() as i64;
        self.blocking(move |s| {
            s.register_stream(&k.id, &k.tenant, &k.source, &k.name)?;
            s.set_stream_retention(&k.id, secs)
        })
        .await?;
        Ok(StreamHandle { pipeline: self.clone(), key })
    }

    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, PipelineError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| PipelineError::Join(e.to_string()))?
            .map_err(PipelineError::from)
    }

    /// Waits until every page handed to ingest so far is in the store (e.g. before draining).
    pub async fn flush(&self) {
        let _ = self.committer.flush(None).await;
    }

    /// After a commit that spooled records: wake the forwarders, check the spool's size.
    pub(super) fn spooled(&self) {
        self.spooled.send_modify(|v| *v += 1);
        self.check_bytes_limit();
    }

    /// Closes the gate when the spool is over `max_bytes`; the age limit is checked by maintenance.
    pub fn check_bytes_limit(&self) {
        let bytes = self.store.spool_bytes();
        if bytes > self.spool.max_bytes {
            self.pause(format!(
                "spool holds {} bytes, over spool.max_bytes = {}: a sink is not keeping up; polling is paused until it catches up",
                bytes, self.spool.max_bytes
            ));
        }
    }

    pub fn pause(&self, reason: String) {
        let was = self.gate.reason();
        if self.gate.close(reason.clone()) || was.as_deref() != Some(reason.as_str()) {
            events::PollingPaused { reason: &reason, newly: was.is_none() }.emit();
            self.persist_pause_flag();
        }
    }

    pub fn resume(&self) {
        if self.gate.open() {
            events::PollingResumed.emit();
            self.persist_pause_flag();
        }
    }

    /// Writes the gate's reason for `status`, if it changed; retried each maintenance tick, since
    /// on a full disk the write itself can fail.
    pub fn persist_pause_flag(&self) {
        let now = self.gate.reason();
        let mut written = self.pause_flag.lock().unwrap_or_else(|p| p.into_inner());
        if *written != now && self.store.set_flag("polling_paused", now.as_deref()).is_ok() {
            *written = now;
        }
    }

    /// Counts throttled-auditing records and warns once per mailbox and UTC day.
    pub(super) fn throttled_mailboxes(&self, tenant: &str, mailboxes: &[String]) {
        if mailboxes.is_empty() {
            return;
        }
        let day = chrono::Utc::now().date_naive();
        let mut warned = self.mailboxes_warned.lock().unwrap_or_else(|p| p.into_inner());
        warned.retain(|(_, _, d)| *d == day);
        for m in mailboxes {
            let first_today = warned.insert((tenant.to_string(), m.clone(), day));
            events::MailboxAuditThrottled { tenant, mailbox: m, records: 1, first_today }.emit();
        }
    }

    /// Sets or clears a daemon-wide flag shown by `status`; true when it changed.
    pub fn note_flag(&self, key: &'static str, value: Option<String>) -> bool {
        let current = self.store.flag(key).ok().flatten();
        if current == value {
            return false;
        }
        self.store.set_flag(key, value.as_deref()).is_ok()
    }

    /// Remembers a full disk when a store error says so: polling pauses until a write succeeds.
    pub fn note_store_error(&self, e: &PipelineError) {
        if e.store_error().is_some_and(StoreError::is_disk_full) {
            let text = e.to_string();
            if !self.disk_full.swap(true, std::sync::atomic::Ordering::Relaxed) {
                events::DiskSpace { full: true, error: Some(&text) }.emit();
            }
            self.pause(format!("DISK FULL: the store could not write ({text}); polling resumes by itself once it can"));
        }
    }

    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn clear_disk_full(&self) {
        if self.disk_full.swap(false, std::sync::atomic::Ordering::Relaxed) {
            events::DiskSpace { full: false, error: None }.emit();
        }
    }

    pub fn state_dir(&self) -> std::path::PathBuf {
        self.store.path().parent().map(|p| p.to_path_buf()).unwrap_or_default()
    }
}

/// A source's view of the pipeline for one stream.
#[derive(Clone)]
pub struct StreamHandle {
    pub(super) pipeline: Arc<Pipeline>,
    pub key: StreamKey,
}

impl StreamHandle {
    /// Spools a page and applies its checkpoint in one transaction (see `Store::ingest`).
    pub async fn ingest(
        &self,
        body: Vec<u8>,
        records: Vec<PageRecord>,
        records_without_id: u64,
        checkpoint: Checkpoint,
    ) -> Result<(), PipelineError> {
        self.ingest_page(body, records, records_without_id, Vec::new(), checkpoint).await
    }

    /// A content blob: its records, and which of them say MailItemsAccessed auditing of a
    /// mailbox was throttled.
    pub async fn ingest_blob(
        &self,
        body: Vec<u8>,
        parsed: crate::sources::record::ParsedBlob,
        checkpoint: Checkpoint,
    ) -> Result<(), PipelineError> {
        self.ingest_page(body, parsed.records, parsed.without_id, parsed.throttled, checkpoint).await
    }

    /// Hands the page to the group committer (`commit`) and returns once it is queued: its
    /// records, dedupe keys and checkpoint then commit in one transaction, or not at all. A
    /// failed commit is returned by this stream's next ingest, read or `flush`.
    async fn ingest_page(
        &self,
        body: Vec<u8>,
        records: Vec<PageRecord>,
        records_without_id: u64,
        throttled: Vec<(usize, String)>,
        checkpoint: Checkpoint,
    ) -> Result<(), PipelineError> {
        let checkpoint = self.bounded(checkpoint);
        let page = IngestPage {
            stream: self.key.id.clone(),
            tenant: self.key.tenant.clone(),
            source: self.key.source.clone(),
            name: self.key.name.clone(),
            body,
            records,
            checkpoint,
            throttled,
        };
        let ttl = self.pipeline.spool.seen_ttl.as_millis() as i64;
        self.pipeline.committer.submit(self.key.clone(), page, ttl, records_without_id).await
    }

    /// Waits until this stream's pages are in the store; fails if any of them could not be
    /// written since the stream last heard (it must then read its position again).
    pub async fn flush(&self) -> Result<(), PipelineError> {
        self.pipeline.committer.flush(Some(&self.key.id)).await
    }

    /// INVARIANT: no cursor is stored later than the local clock plus the largest server skew
    /// believed. Windows end at the server's "now", which `ServerClock` bounds the same way;
    /// this is the last guard, so a cursor in the future can never skip what comes before it.
    fn bounded(&self, checkpoint: Checkpoint) -> Checkpoint {
        let limit = chrono::Utc::now() + chrono::Duration::milliseconds(crate::sources::clock::MAX_SKEW_MS);
        let clamp = |c: String| match crate::sources::window::parse_cursor(&c) {
            Some(t) if t > limit => {
                tracing::error!(stream = %self.key.id, cursor = %c, "a cursor in the future was kept back to now + 1h");
                limit.to_rfc3339()
            }
            _ => c,
        };
        match checkpoint {
            Checkpoint::Cursor(c) => Checkpoint::Cursor(clamp(c)),
            Checkpoint::BlobsListed { blobs, watermark } => {
                Checkpoint::BlobsListed { blobs, watermark: watermark.map(clamp) }
            }
            other => other,
        }
    }

    pub async fn cursor(&self) -> Result<Option<String>, PipelineError> {
        self.flush().await?;
        let id = self.key.id.clone();
        self.pipeline.blocking(move |s| s.cursor(&id)).await
    }

    pub async fn pending_blobs(&self) -> Result<Vec<PendingBlob>, PipelineError> {
        self.flush().await?;
        let id = self.key.id.clone();
        self.pipeline.blocking(move |s| s.pending_blobs(&id)).await
    }

    pub async fn blobs_ever_listed(&self) -> Result<i64, PipelineError> {
        self.flush().await?;
        let id = self.key.id.clone();
        let c = self.pipeline.blocking(move |s| s.ledger_counts(&id)).await?;
        Ok(c.listed + c.fetched + c.expired)
    }

    pub async fn set_state(&self, state: StreamState) {
        let id = self.key.id.clone();
        let _ = self.pipeline.blocking(move |s| s.set_stream_state(&id, &state)).await;
    }

    /// The stream was behind for longer than Microsoft keeps data: `[from, to)` can no longer
    /// be read. Recorded (once per range, widened if found again), logged, counted, and shown
    /// in `status`; never silently skipped.
    pub async fn report_gap(&self, from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) {
        let (id, a, b) = (self.key.id.clone(), from.timestamp_millis(), to.timestamp_millis());
        match self.pipeline.blocking(move |s| s.record_gap(&id, a, b)).await {
            Ok(0) => {}
            Ok(added_ms) => {
                let ev = events::RangeLost {
                    stream: self.key.labels(),
                    from,
                    to,
                    added_secs: added_ms as u64 / 1000,
                    new_gap: added_ms == b - a,
                };
                ev.emit();
                self.error(ev.message()).await;
            }
            Err(e) => tracing::error!(stream = %self.key.id, error = %e, lost_from = %from, lost_to = %to,
                "could not record a lost range; it is reported again next cycle"),
        }
    }

    /// Records how a cycle ended, or a problem seen during one (`error`: `None` for a success),
    /// with the state it leaves, in one write.
    pub async fn record_outcome(&self, state: StreamState, error: Option<String>) {
        let id = self.key.id.clone();
        let _ = self.pipeline.blocking(move |s| s.record_stream_outcome(&id, &state, error.as_deref())).await;
    }

    pub async fn error(&self, message: String) {
        let id = self.key.id.clone();
        let _ = self.pipeline.blocking(move |s| s.record_stream_error(&id, &message)).await;
    }

    pub async fn subscription_started(&self) {
        let id = self.key.id.clone();
        let _ = self.pipeline.blocking(move |s| s.record_subscription_started(&id)).await;
    }

    pub async fn subscription_started_at(&self) -> Result<Option<i64>, PipelineError> {
        let id = self.key.id.clone();
        self.pipeline.blocking(move |s| s.subscription_started_at(&id)).await
    }

    /// Waits while the spool gate is closed. Returns false on shutdown.
    pub async fn wait_open(&self, shutdown: &CancellationToken) -> bool {
        self.pipeline.gate.wait_open(shutdown).await
    }
}

//! Group commit: the pages of every stream reach the store together.
//!
//! A source hands a page over and goes on with its next call. Pages wait here until `LINGER`
//! has passed since the first of them, a batch's worth of records or bytes is queued, or
//! someone needs the store to hold them (a flush); then ONE transaction (`Store::ingest_many`)
//! writes them all. On a tenant that trickles small blobs, a transaction per blob was most of
//! the daemon's CPU and of what it wrote to disk.
//!
//! Nothing is lost by holding a page: until it commits, the store still says it is to be read
//! (its blob `listed`, the stream's cursor before it), so a crash reads it again.
//!
//! INVARIANT: a page is never committed after an earlier page of its stream failed to commit.
//! The stream is marked failed and its next ingest or flush returns the failure, so the source
//! starts over from what the store holds; every page it handed over before it was told is
//! dropped, so a later cursor can never cover records that were not written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use super::ingest::{Pipeline, PipelineError, StreamKey};
use crate::store::{IngestPage, Pending, StoreError};
use crate::telemetry::events;

/// How long a page may wait for company before it is written.
pub const LINGER: Duration = Duration::from_secs(1);
/// A batch this large is written at once.
const BATCH_RECORDS: usize = 5_000;
const BATCH_BYTES: usize = 1 << 20;
/// Bytes of pages queued or being written at most (in KiB, the semaphore's unit); a source
/// waits beyond. Small: a 1M-record backlog must stay within the daemon's RSS budget, and a
/// few MiB already make a transaction's cost per record flat.
const QUEUE_KIB: usize = 4 << 10;

pub(super) struct Job {
    /// Order of hand-over, to tell pages sent before a stream learnt of its failure.
    seq: u64,
    pub key: StreamKey,
    pub page: IngestPage,
    pub ttl_ms: i64,
    pub without_id: u64,
    _room: OwnedSemaphorePermit,
}

pub struct Committer {
    shared: Arc<Shared>,
    /// KiB of queued pages: memory stays bounded whatever the sources fetch.
    room: Arc<Semaphore>,
    failures: Mutex<Failures>,
}

/// What the sources and the commit task share. The task is woken by the first page of a batch,
/// a full batch or a flush, not by every page: on a trickle, a wake-up per page cost more than
/// the page.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    records: usize,
    bytes: usize,
    /// Answered once every page queued before them was committed or dropped.
    flushes: Vec<oneshot::Sender<()>>,
    /// The task took a batch and has not committed or dropped it yet.
    committing: bool,
    /// The task ended (the pipeline was dropped, or it panicked): nothing more is written.
    closed: bool,
    /// When the last page was handed over.
    last_page: Option<tokio::time::Instant>,
}

impl Queue {
    fn due(&self) -> bool {
        !self.flushes.is_empty() || self.records >= BATCH_RECORDS || self.bytes >= BATCH_BYTES
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Failures {
    next_seq: u64,
    /// One entry per stream whose pages failed to commit (so bounded by the streams).
    by_stream: HashMap<String, Failure>,
}

#[derive(Clone)]
enum Cause {
    Store(Arc<StoreError>),
    Task(String),
}

struct Failure {
    /// Why, until the stream is told.
    cause: Option<Cause>,
    /// Pages handed over before this were sent before the stream was told: dropped.
    cutoff: u64,
}

impl Failures {
    fn admits(&self, j: &Job) -> bool {
        self.by_stream.get(&j.key.id).is_none_or(|f| j.seq >= f.cutoff)
    }

    /// Tells `stream` of its failure, if it has one: from now on only the pages it hands over
    /// next are written.
    fn take(&mut self, stream: &str) -> Option<Cause> {
        let cutoff = self.next_seq;
        let entry = self.by_stream.get_mut(stream)?;
        let cause = entry.cause.take()?;
        entry.cutoff = cutoff;
        Some(cause)
    }

    fn fail<'a>(&mut self, streams: impl Iterator<Item = &'a str>, cause: Cause) {
        for s in streams {
            self.by_stream.insert(s.to_string(), Failure { cause: Some(cause.clone()), cutoff: u64::MAX });
        }
    }
}

impl Committer {
    /// The committer and its task, which ends once the pipeline is dropped.
    pub(super) fn start(pipeline: Weak<Pipeline>) -> Committer {
        let shared = Arc::new(Shared::default());
        tokio::spawn(run(pipeline, shared.clone()));
        Committer { shared, room: Arc::new(Semaphore::new(QUEUE_KIB)), failures: Mutex::default() }
    }

    /// Queues a page; waits only while the queue is full.
    pub(super) async fn submit(
        &self,
        key: StreamKey,
        page: IngestPage,
        ttl_ms: i64,
        without_id: u64,
    ) -> Result<(), PipelineError> {
        self.take_failure(&key.id)?;
        let kib = (page.body.len() / 1024).clamp(1, QUEUE_KIB) as u32;
        let room = self.room.clone().acquire_many_owned(kib).await.map_err(|e| PipelineError::Join(e.to_string()))?;
        let seq = {
            let mut f = self.failures();
            f.next_seq += 1;
            f.next_seq - 1
        };
        let (records, bytes) = (page.records.len(), page.body.len());
        let job = Job { seq, key, page, ttl_ms, without_id, _room: room };
        let wake = {
            let mut q = self.shared.queue();
            if q.closed {
                return Err(stopped());
            }
            let first = q.jobs.is_empty();
            q.jobs.push(job);
            q.last_page = Some(tokio::time::Instant::now());
            q.records += records;
            q.bytes += bytes;
            first || q.due()
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until every page handed over so far is in the store; then says whether `stream`'s
    /// pages failed to commit since it last asked.
    pub(super) async fn flush(&self, stream: Option<&str>) -> Result<(), PipelineError> {
        let wait = {
            let mut q = self.shared.queue();
            if q.closed {
                return Err(stopped());
            }
            (!q.jobs.is_empty() || q.committing).then(|| {
                let (done, wait) = oneshot::channel();
                q.flushes.push(done);
                wait
            })
        };
        if let Some(wait) = wait {
            self.shared.wake.notify_one();
            // Dropped unanswered only when the task ended with the pages unwritten.
            wait.await.map_err(|_| stopped())?;
        }
        match stream {
            Some(s) => self.take_failure(s),
            None => Ok(()),
        }
    }

    /// Until when more pages may be on their way to the spool: `quiet` after the last one was
    /// handed over, or, while some wait to be committed, `quiet` from now (ask again after
    /// their commit). `None` once the sources have handed nothing over for `quiet` and nothing
    /// waits: they are between polls.
    pub(super) fn pages_coming_until(&self, quiet: Duration) -> Option<tokio::time::Instant> {
        let q = self.shared.queue();
        let now = tokio::time::Instant::now();
        if !q.jobs.is_empty() || q.committing {
            return Some(now + quiet);
        }
        q.last_page.map(|t| t + quiet).filter(|t| *t > now)
    }

    fn failures(&self) -> MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_failure(&self, stream: &str) -> Result<(), PipelineError> {
        match self.failures().take(stream) {
            Some(Cause::Store(e)) => Err(PipelineError::Commit(e)),
            Some(Cause::Task(m)) => Err(PipelineError::Join(m)),
            None => Ok(()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Sources hear that nothing is written any more, rather than waiting on a flush for ever.
fn stopped() -> PipelineError {
    PipelineError::Join("the group committer stopped; what was not written is read again at the next start".into())
}

/// Marks the queue closed however the task ends (a panic included) and drops the flushes it
/// would have answered, so their waiters get `stopped()`.
struct Closing(Arc<Shared>);

impl Drop for Closing {
    fn drop(&mut self) {
        let mut q = self.0.queue();
        q.closed = true;
        q.flushes.clear();
    }
}

async fn run(pipeline: Weak<Pipeline>, shared: Arc<Shared>) {
    let _closing = Closing(shared.clone());
    loop {
        shared.wake.notified().await;
        // The first page of a batch is here: wait up to LINGER for company.
        let deadline = tokio::time::Instant::now() + LINGER;
        let (jobs, flushes) = loop {
            {
                let mut q = shared.queue();
                if q.closed {
                    return;
                }
                if q.jobs.is_empty() && q.flushes.is_empty() {
                    break (Vec::new(), Vec::new());
                }
                if q.due() || tokio::time::Instant::now() >= deadline {
                    q.committing = true;
                    (q.records, q.bytes) = (0, 0);
                    break (std::mem::take(&mut q.jobs), std::mem::take(&mut q.flushes));
                }
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        let Some(p) = pipeline.upgrade() else { return };
        if !jobs.is_empty() {
            commit(&p, jobs).await;
        }
        shared.queue().committing = false;
        for f in flushes {
            let _ = f.send(());
        }
    }
}

async fn commit(p: &Arc<Pipeline>, jobs: Vec<Job>) {
    let c = &p.committer;
    let jobs: Vec<Job> = {
        let f = c.failures();
        jobs.into_iter().filter(|j| f.admits(j)).collect()
    };
    if jobs.is_empty() {
        return;
    }
    let streams: Vec<String> = jobs.iter().map(|j| j.key.id.clone()).collect();
    let store = p.store.clone();
    let r = tokio::task::spawn_blocking(move || {
        let pending: Vec<Pending<'_>> = jobs
            .iter()
            .map(|j| Pending { page: &j.page, seen_ttl_ms: j.ttl_ms, records_without_id: j.without_id })
            .collect();
        let r = store.ingest_many(&pending);
        (jobs, r)
    })
    .await;
    let (jobs, r) = match r {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "the commit task failed; its streams read those pages again");
            c.failures().fail(streams.iter().map(String::as_str), Cause::Task(e.to_string()));
            return;
        }
    };
    match r {
        Ok(outs) => {
            if outs.iter().any(|o| o.new_records > 0) {
                p.spooled();
            }
            // Counted once per stream and commit, not per page: each emit looks its counters
            // up by label, and a commit of small blobs holds dozens of pages of a few streams.
            let mut counted: Vec<events::RecordsIngested<'_>> = Vec::new();
            for (j, out) in jobs.iter().zip(&outs) {
                p.throttled_mailboxes(&j.key.tenant, &out.throttled);
                let i = counted.iter().position(|c| c.stream.id == j.key.id).unwrap_or_else(|| {
                    counted.push(events::RecordsIngested::none(j.key.labels()));
                    counted.len() - 1
                });
                let c = &mut counted[i];
                c.received += j.page.records.len();
                c.new += out.new_records;
                c.duplicates += out.duplicates;
                c.updates += out.updates;
            }
            counted.iter().for_each(events::RecordsIngested::emit);
        }
        Err(e) => {
            let e = Arc::new(e);
            p.note_store_error(&PipelineError::Commit(e.clone()));
            tracing::error!(error = %e, pages = jobs.len(), "could not write pages to the store; their streams read them again");
            c.failures().fail(streams.iter().map(String::as_str), Cause::Store(e));
        }
    }
}

#[cfg(test)]
#[path = "commit_tests.rs"]
mod tests;

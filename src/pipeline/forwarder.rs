//! A forwarder moves spooled records to one sink, in order, from that sink's own offset.
//!
//! INVARIANT: the offset is committed only after every record up to it was confirmed by the sink,
//! filtered out by the sink's routing, or stored in the dead-letter table, so a crash or a failed
//! send resends the batch, never skips it. A dead sink blocks only its own forwarder; polling goes
//! on and records wait in the spool.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::delivery::{Delivery, ErrorReport};
use super::ingest::{Pipeline, PipelineError};
use super::shutdown::Shutdown;
use crate::common::{RetryPolicy, clock};
use crate::sinks::{Batch, BuiltSink, OutRecord, RowMeta};
use crate::store::{SpoolRow, codec};
use crate::telemetry::events;

/// Rows read from the spool per query; small, so memory stays bounded by the batch limits.
const ROWS_PER_READ: usize = 8;
/// A lingering partial batch goes out once no page has been handed to ingest for this long
/// and none waits to be committed: the sources are between polls, and no company is coming.
/// Longer than the pacer's gap between groups of calls (a third of a second at the default
/// quota), so a tenant trickling blobs keeps its whole linger.
const QUIET: Duration = Duration::from_millis(500);
/// How often an idle forwarder looks for dead letters an operator asked to retry.
const DEAD_LETTER_POLL: Duration = Duration::from_secs(5);

struct DecodedRow {
    seq: i64,
    records: VecDeque<(usize, OutRecord)>,
}

pub struct Forwarder {
    pipeline: Arc<Pipeline>,
    sink: BuiltSink,
}

/// Delivery's failed attempts go to the sink's row in the store, for `status`.
struct StoreReport {
    pipeline: Arc<Pipeline>,
    sink: String,
}

#[async_trait::async_trait]
impl ErrorReport for StoreReport {
    async fn sink_error(&self, message: &str) {
        let (n, msg) = (self.sink.clone(), message.to_string());
        let _ = self.pipeline.blocking(move |s| s.record_sink_error(&n, &msg)).await;
    }
}

impl Forwarder {
    pub fn new(pipeline: Arc<Pipeline>, sink: BuiltSink) -> Forwarder {
        Forwarder { pipeline, sink }
    }

    /// Runs until draining began and the spool is empty for this sink, or the drain deadline passes.
    pub async fn run(mut self, shutdown: Shutdown) {
        let name = self.sink.name().to_string();
        // A store error (disk full, I/O) must not stop delivery for good: wait, then resume
        // from the committed offset, which is exactly where the undelivered records start.
        while let Err(e) = self.run_inner(&shutdown).await {
            events::SinkSendFailed { sink: &name, kind: "store", error: &e, failures: 1, records: 0 }.emit();
            if shutdown.is_draining() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.draining() => break,
            }
        }
        self.sink.sink.close().await;
    }

    async fn run_inner(&mut self, shutdown: &Shutdown) -> Result<(), PipelineError> {
        let name = self.sink.name().to_string();
        let store = self.pipeline.store.clone();
        let reader = Arc::new(std::sync::Mutex::new(store.spool_reader()?));
        let recent = store.recent_rows();
        let n = name.clone();
        let (mut seq, idx) = self.pipeline.blocking(move |s| s.sink_offset(&n)).await?;
        let mut pos = (seq, idx);
        let mut skip = idx as usize;
        let mut buffer: VecDeque<DecodedRow> = VecDeque::new();
        let mut next_read = seq;
        let mut wake = self.pipeline.subscribe_spooled();
        let mut lingering_since: Option<Instant> = None;
        let mut last_dead_letter_poll = clock::ago(DEAD_LETTER_POLL);
        // The last read reached the end of the spool and all of it went out: nothing to read
        // until an ingest says so.
        let mut caught_up = false;
        let (max_records, max_bytes, linger) =
            (self.sink.common.batch_records, self.sink.common.batch_bytes, self.sink.common.linger);

        loop {
            // Fill the buffer until a batch's worth of records is at hand.
            let mut buffered: usize = buffer.iter().map(|r| r.records.len()).sum();
            let mut at_end = caught_up;
            while buffered < max_records && !caught_up {
                let from = next_read;
                // Rows just committed come from memory; anything older, from SQLite.
                let rows = match recent.take_from(from, ROWS_PER_READ) {
                    Some((rows, newest)) => {
                        at_end = newest;
                        rows
                    }
                    None => {
                        let r = reader.clone();
                        // A reader is only a connection: one left by a panicked read is still usable.
                        let rows = tokio::task::spawn_blocking(move || {
                            r.lock().unwrap_or_else(|p| p.into_inner()).read_from(from, ROWS_PER_READ)
                        })
                        .await
                        .map_err(|e| PipelineError::Join(e.to_string()))??;
                        at_end = rows.len() < ROWS_PER_READ;
                        rows
                    }
                };
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    next_read = row.seq + 1;
                    let mut records = match decode(&row) {
                        Ok(r) => r,
                        Err(reason) => {
                            self.set_aside(&row, reason).await?;
                            VecDeque::new()
                        }
                    };
                    if row.seq == seq && skip > 0 {
                        // Resuming inside a row: its first `skip` records were already delivered.
                        records.drain(..skip.min(records.len()));
                        skip = 0;
                    }
                    buffered += records.len();
                    buffer.push_back(DecodedRow { seq: row.seq, records });
                }
            }

            // A partial batch (by count and by bytes) at the end of the spool waits up to `linger`
            // for company, while company is coming: on a trickle, that is one sync and one offset
            // commit per linger instead of one per blob. Once the sources are between polls
            // (`QUIET`), waiting saves nothing and only delays the end of a burst. Not while
            // draining.
            let partial = at_end
                && buffered < max_records
                && buffer.iter().flat_map(|r| r.records.iter()).map(|(_, x)| x.raw.len() as u64).sum::<u64>()
                    < max_bytes;
            if buffered > 0 && partial && !linger.is_zero() && !shutdown.is_draining() {
                let since = *lingering_since.get_or_insert_with(Instant::now);
                let left = linger.saturating_sub(since.elapsed());
                if !left.is_zero()
                    && let Some(until) = self.pipeline.committer.pages_coming_until(QUIET)
                {
                    // Woken by a commit (at most about one a second on a trickle: the group
                    // commit's linger), which may fill the batch or have been the last.
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.min(tokio::time::Instant::now() + left)) => {}
                        _ = wake.changed() => {}
                        _ = shutdown.draining() => {}
                    }
                    continue;
                }
            }
            lingering_since = None;

            // Take one batch off the buffer and note where it ends. Records this sink does not
            // want are passed over; the offset still moves past them.
            let mut batch = Batch::default();
            let mut end = pos;
            while let Some(row) = buffer.front_mut() {
                while let Some((i, rec)) = row.records.front() {
                    let len = rec.raw.len() as u64;
                    if !batch.records.is_empty()
                        && (batch.records.len() >= max_records || batch.bytes + len > max_bytes)
                    {
                        break;
                    }
                    if self.sink.common.filter.accepts(&rec.meta) {
                        batch.bytes += len;
                        batch.records.push(rec.clone());
                    }
                    end = (row.seq, *i as i64 + 1);
                    row.records.pop_front();
                }
                if row.records.is_empty() {
                    let s = row.seq;
                    buffer.pop_front();
                    end = (s + 1, 0);
                } else {
                    break;
                }
            }

            if batch.records.is_empty() {
                if end != pos {
                    // Only filtered-out records: move past them so the spool can be pruned.
                    let n = name.clone();
                    self.durably(shutdown, "offset", move |s| s.commit_offset(&n, end.0, end.1, 0)).await?;
                    (seq, pos) = (end.0, end);
                    continue;
                }
                if last_dead_letter_poll.elapsed() >= DEAD_LETTER_POLL {
                    last_dead_letter_poll = Instant::now();
                    if !self.retry_dead_letters(shutdown).await? {
                        return Ok(());
                    }
                }
                if shutdown.is_draining() {
                    if caught_up {
                        // What the sources handed over last was written after our last read.
                        caught_up = false;
                        continue;
                    }
                    return Ok(());
                }
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(DEAD_LETTER_POLL) => {}
                    _ = shutdown.draining() => {}
                }
                caught_up = false;
                continue;
            }

            let Some(refused) = self.deliver(&batch, shutdown).await else {
                return Ok(()); // shutdown deadline passed: the batch stays in the spool for next start
            };
            let all_refused = refused.len() == batch.records.len() && batch.records.len() > 1;
            let refused_bytes: u64 = refused.iter().map(|(i, _)| batch.records[*i].raw.len() as u64).sum();
            let delivered = (batch.records.len() - refused.len()) as i64;
            if !refused.is_empty() {
                self.dead_letter(&batch, refused, shutdown).await?;
            }
            let n = name.clone();
            self.durably(shutdown, "offset", move |s| s.commit_offset(&n, end.0, end.1, delivered)).await?;
            (seq, pos) = (end.0, end);
            caught_up = at_end && buffer.is_empty();
            if all_refused {
                // After the commit, which clears the sink's last error: this one must stay visible.
                self.all_refused(batch.records.len()).await;
            }
            events::SinkSent { sink: &name, records: delivered as u64, bytes: batch.bytes - refused_bytes }.emit();
        }
    }

    /// Writes what must be durable before the offset moves. A failed write (a full disk) is
    /// written again after a pause, for as long as it takes: what the sink confirmed is never
    /// sent again just because the commit could not land. Gives up only past the drain deadline,
    /// and then nothing moves: the batch is resent at the next start.
    pub(super) async fn durably<T: Send + 'static>(
        &self,
        shutdown: &Shutdown,
        what: &'static str,
        f: impl Fn(&crate::store::Store) -> crate::store::Result<T> + Clone + Send + 'static,
    ) -> Result<T, PipelineError> {
        let mut failures = 0u32;
        loop {
            let g = f.clone();
            match self.pipeline.blocking(move |s| g(s)).await {
                Ok(v) => {
                    if failures > 0 {
                        tracing::warn!(sink = %self.sink.name(), what, failures, "store writes again; delivery goes on");
                    }
                    return Ok(v);
                }
                Err(e) => {
                    self.pipeline.note_store_error(&e);
                    failures += 1;
                    events::SinkSendFailed { sink: self.sink.name(), kind: "store", error: &e, failures, records: 0 }
                        .emit();
                    if shutdown.is_draining() && shutdown.past_deadline() {
                        return Err(e);
                    }
                    let wait = Duration::from_millis(500 * 2u64.pow(failures.min(6))).min(Duration::from_secs(30));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.draining(), if !shutdown.is_draining() => {}
                    }
                }
            }
        }
    }

    pub(super) async fn deliver(&mut self, batch: &Batch, shutdown: &Shutdown) -> Option<Vec<(usize, String)>> {
        let report = StoreReport { pipeline: self.pipeline.clone(), sink: self.sink.common.name.clone() };
        let mut delivery = Delivery {
            name: &self.sink.common.name,
            sink: self.sink.sink.as_mut(),
            shutdown,
            report: &report,
            policy: RetryPolicy::SINK,
        };
        delivery.deliver(batch).await
    }
}

/// A spool row's records, as ranges into its data.
fn decode(row: &SpoolRow) -> Result<VecDeque<(usize, OutRecord)>, codec::CodecError> {
    if let Some(e) = &row.corrupt {
        return Err(e.clone());
    }
    let framed = codec::decode(&row.data)?;
    let meta = Arc::new(RowMeta {
        tenant: row.tenant.clone(),
        source: row.source.clone(),
        name: row.name.clone(),
        collected_at_ms: row.collected_at,
    });
    Ok(framed
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let rec = OutRecord {
                meta: meta.clone(),
                data: row.data.clone(),
                id: f.id,
                raw: f.raw,
                event_time_ms: f.event_time_ms,
                envelope: f.envelope,
            };
            (i, rec)
        })
        .collect())
}

#[path = "forwarder_dead_letters.rs"]
mod dead_letters;

#[cfg(test)]
#[path = "forwarder_tests.rs"]
mod tests;

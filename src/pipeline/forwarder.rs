//! A forwarder moves spooled records to one sink, in order, from that sink's own offset.
//!
//! INVARIANT: the offset is committed only after the sink confirmed the batch, so a crash or a
//! failed send resends the batch, never skips it. A dead sink blocks only its own forwarder;
//! polling goes on and records wait in the spool.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ingest::{Pipeline, PipelineError};
use crate::sinks::{Batch, BuiltSink, OutRecord, RowMeta};
use crate::store::codec;

/// Rows read from the spool per query; small, so memory stays bounded by the batch limits.
const ROWS_PER_READ: usize = 8;

struct DecodedRow {
    seq: i64,
    records: VecDeque<(usize, OutRecord)>,
}

pub struct Forwarder {
    pipeline: Arc<Pipeline>,
    sink: BuiltSink,
}

impl Forwarder {
    pub fn new(pipeline: Arc<Pipeline>, sink: BuiltSink) -> Forwarder {
        Forwarder { pipeline, sink }
    }

    /// Runs until `drain` is cancelled and the spool is empty for this sink, or `deadline` passes.
    pub async fn run(mut self, drain: CancellationToken, deadline: Arc<std::sync::Mutex<Option<Instant>>>) {
        let name = self.sink.name.clone();
        // A store error (disk full, I/O) must not stop delivery for good: wait, then resume
        // from the committed offset, which is exactly where the undelivered records start.
        while let Err(e) = self.run_inner(&drain, &deadline).await {
            tracing::error!(sink = %name, error = %e, "forwarder hit a store error; resuming from the committed offset in 5s");
            metrics::counter!("auditkeeper_sink_errors_total", "sink" => name.clone()).increment(1);
            if drain.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = drain.cancelled() => break,
            }
        }
        self.sink.sink.close().await;
    }

    async fn run_inner(
        &mut self,
        drain: &CancellationToken,
        deadline: &std::sync::Mutex<Option<Instant>>,
    ) -> Result<(), PipelineError> {
        let name = self.sink.name.clone();
        let store = self.pipeline.store.clone();
        let reader = Arc::new(std::sync::Mutex::new(store.spool_reader()?));
        let n = name.clone();
        let (mut seq, idx) = self.pipeline.blocking(move |s| s.sink_offset(&n)).await?;
        let mut skip = idx as usize;
        let mut buffer: VecDeque<DecodedRow> = VecDeque::new();
        let mut next_read = seq;
        let mut wake = self.pipeline.subscribe_spooled();
        let past_deadline = || deadline.lock().map(|d| d.is_some_and(|d| Instant::now() > d)).unwrap_or(false);

        loop {
            // Fill the buffer until a batch's worth of records is at hand.
            let mut buffered: usize = buffer.iter().map(|r| r.records.len()).sum();
            while buffered < self.sink.batch_records {
                let r = reader.clone();
                let from = next_read;
                let rows =
                    tokio::task::spawn_blocking(move || r.lock().expect("reader").read_from(from, ROWS_PER_READ))
                        .await
                        .map_err(|e| PipelineError::Join(e.to_string()))??;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    next_read = row.seq + 1;
                    let framed = codec::decode(&row.data)
                        .map_err(|reason| crate::store::StoreError::CorruptSpool { seq: row.seq, reason })?;
                    let meta = Arc::new(RowMeta {
                        tenant: row.tenant,
                        source: row.source,
                        name: row.name,
                        collected_at_ms: row.collected_at,
                    });
                    let mut records: VecDeque<(usize, OutRecord)> = framed
                        .into_iter()
                        .enumerate()
                        .map(|(i, f)| {
                            (
                                i,
                                OutRecord {
                                    meta: meta.clone(),
                                    data: row.data.clone(),
                                    id: f.id,
                                    raw: f.raw,
                                    event_time_ms: f.event_time_ms,
                                },
                            )
                        })
                        .collect();
                    if row.seq == seq && skip > 0 {
                        // Resuming inside a row: its first `skip` records were already delivered.
                        records.drain(..skip.min(records.len()));
                        skip = 0;
                    }
                    buffered += records.len();
                    buffer.push_back(DecodedRow { seq: row.seq, records });
                }
            }

            // Take one batch off the buffer and note where it ends.
            let mut batch = Batch::default();
            let mut end = (seq, 0i64);
            while let Some(row) = buffer.front_mut() {
                while let Some((i, rec)) = row.records.front() {
                    let len = rec.raw.len() as u64;
                    if !batch.records.is_empty()
                        && (batch.records.len() >= self.sink.batch_records || batch.bytes + len > self.sink.batch_bytes)
                    {
                        break;
                    }
                    batch.bytes += len;
                    batch.records.push(rec.clone());
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
                if drain.is_cancelled() || past_deadline() {
                    return Ok(());
                }
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = drain.cancelled() => {}
                }
                continue;
            }

            if !self.send_with_retry(&batch, drain, &past_deadline).await {
                return Ok(()); // shutdown deadline passed: the batch stays in the spool for next start
            }
            let delivered = batch.records.len() as i64;
            let n = name.clone();
            self.pipeline.blocking(move |s| s.commit_offset(&n, end.0, end.1, delivered)).await?;
            seq = end.0;
            metrics::counter!("auditkeeper_sink_sent_records_total", "sink" => name.clone())
                .increment(delivered as u64);
            metrics::counter!("auditkeeper_sink_sent_bytes_total", "sink" => name.clone()).increment(batch.bytes);
        }
    }

    /// Sends until the sink confirms. Returns false if the shutdown deadline passed first.
    async fn send_with_retry(
        &mut self,
        batch: &Batch,
        drain: &CancellationToken,
        past_deadline: &(dyn Fn() -> bool + Sync),
    ) -> bool {
        let mut delay = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            match self.sink.sink.send(batch).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(sink = %self.sink.name, failures, "sink recovered");
                    }
                    return true;
                }
                Err(e) => {
                    failures += 1;
                    metrics::counter!("auditkeeper_sink_errors_total", "sink" => self.sink.name.clone()).increment(1);
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::error!(sink = %self.sink.name, error = %e, failures, records = batch.records.len(),
                            "sink send failed; records stay in the spool and will be retried");
                    }
                    let (n, msg) = (self.sink.name.clone(), e.to_string());
                    let _ = self.pipeline.blocking(move |s| s.record_sink_error(&n, &msg)).await;
                    if drain.is_cancelled() && past_deadline() {
                        return false;
                    }
                    let jitter = Duration::from_millis(rand_jitter(delay.as_millis() as u64 / 4 + 1));
                    tokio::time::sleep(delay + jitter).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

fn rand_jitter(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos % max.max(1)
}

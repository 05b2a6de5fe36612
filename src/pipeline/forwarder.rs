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
use crate::common::RetryPolicy;
use crate::sinks::{Batch, BuiltSink, OutRecord, RowMeta};
use crate::store::{DeadLetter, codec};

/// Rows read from the spool per query; small, so memory stays bounded by the batch limits.
const ROWS_PER_READ: usize = 8;
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
            tracing::error!(sink = %name, error = %e, "forwarder hit a store error; resuming from the committed offset in 5s");
            metrics::counter!("auditkeeper_sink_errors_total", "sink" => name.clone(), "kind" => "store").increment(1);
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
        let n = name.clone();
        let (mut seq, idx) = self.pipeline.blocking(move |s| s.sink_offset(&n)).await?;
        let mut pos = (seq, idx);
        let mut skip = idx as usize;
        let mut buffer: VecDeque<DecodedRow> = VecDeque::new();
        let mut next_read = seq;
        let mut wake = self.pipeline.subscribe_spooled();
        let mut lingering_since: Option<Instant> = None;
        let mut last_dead_letter_poll = Instant::now() - DEAD_LETTER_POLL;
        let (max_records, max_bytes, linger) =
            (self.sink.common.batch_records, self.sink.common.batch_bytes, self.sink.common.linger);

        loop {
            // Fill the buffer until a batch's worth of records is at hand.
            let mut buffered: usize = buffer.iter().map(|r| r.records.len()).sum();
            let mut at_end = false;
            while buffered < max_records {
                let r = reader.clone();
                let from = next_read;
                // A reader is only a connection: one left by a panicked read is still usable.
                let rows = tokio::task::spawn_blocking(move || {
                    r.lock().unwrap_or_else(|p| p.into_inner()).read_from(from, ROWS_PER_READ)
                })
                .await
                .map_err(|e| PipelineError::Join(e.to_string()))??;
                at_end = rows.len() < ROWS_PER_READ;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    next_read = row.seq + 1;
                    let mut records =
                        self.decode(row.seq, row.tenant, row.source, row.name, row.collected_at, row.data)?;
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
            // for company, unless we are draining.
            let partial = at_end
                && buffered < max_records
                && buffer.iter().flat_map(|r| r.records.iter()).map(|(_, x)| x.raw.len() as u64).sum::<u64>()
                    < max_bytes;
            if buffered > 0 && partial && !linger.is_zero() && !shutdown.is_draining() {
                let since = *lingering_since.get_or_insert_with(Instant::now);
                let left = linger.saturating_sub(since.elapsed());
                if !left.is_zero() {
                    tokio::select! {
                        _ = wake.changed() => {}
                        _ = tokio::time::sleep(left) => {}
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
                    self.pipeline.blocking(move |s| s.commit_offset(&n, end.0, end.1, 0)).await?;
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
                    return Ok(());
                }
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.draining() => {}
                }
                continue;
            }

            let Some(refused) = self.deliver(&batch, shutdown).await else {
                return Ok(()); // shutdown deadline passed: the batch stays in the spool for next start
            };
            if !refused.is_empty() {
                self.dead_letter(&batch, refused).await?;
            }
            let delivered = batch.records.len() as i64;
            let n = name.clone();
            self.pipeline.blocking(move |s| s.commit_offset(&n, end.0, end.1, delivered)).await?;
            (seq, pos) = (end.0, end);
            metrics::counter!("auditkeeper_sink_sent_records_total", "sink" => name.clone())
                .increment(delivered as u64);
            metrics::counter!("auditkeeper_sink_sent_bytes_total", "sink" => name.clone()).increment(batch.bytes);
        }
    }

    fn decode(
        &self,
        seq: i64,
        tenant: String,
        source: String,
        name: String,
        collected_at_ms: i64,
        data: Arc<Vec<u8>>,
    ) -> Result<VecDeque<(usize, OutRecord)>, PipelineError> {
        let framed = codec::decode(&data).map_err(|reason| crate::store::StoreError::CorruptSpool { seq, reason })?;
        let meta = Arc::new(RowMeta { tenant, source, name, collected_at_ms });
        Ok(framed
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let rec = OutRecord {
                    meta: meta.clone(),
                    data: data.clone(),
                    id: f.id,
                    raw: f.raw,
                    event_time_ms: f.event_time_ms,
                };
                (i, rec)
            })
            .collect())
    }

    /// Stores refused records with their reasons; must happen before the offset moves.
    async fn dead_letter(&self, batch: &Batch, refused: Vec<(usize, String)>) -> Result<(), PipelineError> {
        let name = self.sink.name().to_string();
        for (i, reason) in &refused {
            let r = &batch.records[*i];
            tracing::error!(sink = %name, tenant = %r.meta.tenant, stream = %r.meta.name, record_id = %r.id(),
                reason = %reason, "receiver refused a record for good; moved to the dead-letter table");
        }
        metrics::counter!("auditkeeper_sink_dead_lettered_total", "sink" => name.clone())
            .increment(refused.len() as u64);
        let items: Vec<(OutRecord, String)> = refused.into_iter().map(|(i, r)| (batch.records[i].clone(), r)).collect();
        self.pipeline.blocking(move |s| s.add_dead_letters(&name, &items)).await?;
        Ok(())
    }

    async fn deliver(&mut self, batch: &Batch, shutdown: &Shutdown) -> Option<Vec<(usize, String)>> {
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

    /// Redelivers dead letters an operator marked for retry. Returns false on shutdown.
    async fn retry_dead_letters(&mut self, shutdown: &Shutdown) -> Result<bool, PipelineError> {
        let name = self.sink.name().to_string();
        let limit = self.sink.common.batch_records;
        let n = name.clone();
        let rows: Vec<DeadLetter> = self.pipeline.blocking(move |s| s.dead_letters_to_retry(&n, limit)).await?;
        if rows.is_empty() {
            return Ok(true);
        }
        let batch = dead_letter_batch(&rows);
        let Some(refused) = self.deliver(&batch, shutdown).await else {
            return Ok(false);
        };
        let refused_idx: std::collections::HashSet<usize> = refused.iter().map(|(i, _)| *i).collect();
        let delivered: Vec<i64> =
            rows.iter().enumerate().filter(|(i, _)| !refused_idx.contains(i)).map(|(_, r)| r.id).collect();
        let again: Vec<(i64, String)> = refused.into_iter().map(|(i, reason)| (rows[i].id, reason)).collect();
        tracing::info!(sink = %name, delivered = delivered.len(), refused_again = again.len(), "retried dead letters");
        self.pipeline
            .blocking(move |s| {
                s.dead_letter_delivered(&delivered)?;
                for (id, reason) in &again {
                    s.dead_letter_refused(*id, reason)?;
                }
                Ok(())
            })
            .await?;
        Ok(true)
    }
}

/// Dead letters back into records: each row's id and JSON share one buffer, as in the spool.
fn dead_letter_batch(rows: &[DeadLetter]) -> Batch {
    let mut batch = Batch::default();
    for d in rows {
        let mut data = Vec::with_capacity(d.record_id.len() + d.raw.len());
        data.extend_from_slice(d.record_id.as_bytes());
        data.extend_from_slice(&d.raw);
        let meta = Arc::new(RowMeta {
            tenant: d.tenant.clone(),
            source: d.source.clone(),
            name: d.stream.clone(),
            collected_at_ms: d.collected_at,
        });
        batch.bytes += d.raw.len() as u64;
        batch.records.push(OutRecord {
            meta,
            id: 0..d.record_id.len(),
            raw: d.record_id.len()..data.len(),
            data: Arc::new(data),
            event_time_ms: d.event_time_ms,
        });
    }
    batch
}

#[cfg(test)]
#[path = "forwarder_tests.rs"]
mod tests;

//! The forwarder's dead-letter work: setting aside what a receiver refused or what cannot be
//! read, and redelivering what an operator asked for.

use std::sync::Arc;
use std::time::Duration;

use super::{Forwarder, PipelineError, Shutdown};
use crate::sinks::{Batch, OutRecord, RowMeta};
use crate::store::{DeadLetter, SpoolRow, codec};
use crate::telemetry::events;

impl Forwarder {
    /// A row that cannot be read goes to the dead-letter table as stored, with the reason, before
    /// the offset moves past it: it is neither lost nor allowed to block the sink for ever.
    pub(super) async fn set_aside(&self, row: &SpoolRow, reason: codec::CodecError) -> Result<(), PipelineError> {
        let name = self.sink.name().to_string();
        events::SpoolRowCorrupt { sink: &name, seq: row.seq, records: row.count, error: &reason }.emit();
        let (row, why) = (row.clone(), format!("corrupt spool row of {} record(s): {reason}", row.count));
        self.pipeline.blocking(move |s| s.add_corrupt_row(&name, &row, &why)).await
    }

    /// Every record of a batch refused: a receiver misconfiguration more likely than poison.
    pub(super) async fn all_refused(&self, n: usize) {
        let name = self.sink.name().to_string();
        let ev = events::BatchRefusedWhole { sink: &name, records: n };
        ev.emit();
        let msg = ev.message();
        let _ = self.pipeline.blocking(move |s| s.record_sink_error(&name, &msg)).await;
    }

    /// Stores refused records with their reasons; must happen before the offset moves. At the
    /// dead-letter cap it waits until an operator makes room: records are never dropped.
    pub(super) async fn dead_letter(
        &self,
        batch: &Batch,
        refused: Vec<(usize, String)>,
        shutdown: &Shutdown,
    ) -> Result<(), PipelineError> {
        let name = self.sink.name().to_string();
        let cap = self.pipeline.spool.max_dead_letter_bytes;
        let mut waited = false;
        while self.pipeline.dead_letter_bytes.load(std::sync::atomic::Ordering::Relaxed) >= cap {
            if !waited {
                let msg = format!(
                    "the dead-letter table is full (spool.max_dead_letter_bytes = {cap}): this sink waits until dead letters are retried or purged"
                );
                tracing::error!(sink = %name, "{msg}");
                let n = name.clone();
                let _ = self.pipeline.blocking(move |s| s.record_sink_error(&n, &msg)).await;
                waited = true;
            }
            if shutdown.is_draining() && shutdown.past_deadline() {
                return Err(PipelineError::Join("shutdown while the dead-letter table was full".into()));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.draining(), if !shutdown.is_draining() => {}
            }
        }
        for (i, reason) in &refused {
            let r = &batch.records[*i];
            let (tenant, stream, record_id) = (&r.meta.tenant, &r.meta.name, r.id());
            events::RecordDeadLettered { sink: &name, tenant, stream, record_id, reason }.emit();
        }
        let items: Vec<(OutRecord, String)> = refused.into_iter().map(|(i, r)| (batch.records[i].clone(), r)).collect();
        let bytes: u64 = items.iter().map(|(r, _)| r.raw.len() as u64).sum();
        let items = Arc::new(items);
        self.durably(shutdown, "dead letters", move |s| s.add_dead_letters(&name, &items)).await?;
        // Counted now, not only at maintenance's next measurement (every few seconds): the
        // cap must hold against a sink that refuses records faster than that.
        self.pipeline.dead_letter_bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Redelivers dead letters an operator marked for retry. Returns false on shutdown.
    pub(super) async fn retry_dead_letters(&mut self, shutdown: &Shutdown) -> Result<bool, PipelineError> {
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
            // A dead letter keeps the record itself; its envelope fields are not kept.
            envelope: None,
        });
    }
    batch
}

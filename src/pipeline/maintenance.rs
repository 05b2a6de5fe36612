//! Background upkeep: prune delivered spool rows, expired dedupe keys and settled ledger rows;
//! checkpoint the WAL; measure the state and the disk, and open or close the spool gate
//! (`gate::decide`). Each prune step is chunked (see `store::prune`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gate::{Decision, Reading, decide};
use super::ingest::Pipeline;
use super::shutdown::Shutdown;
use crate::common::clock;
use crate::store::{SpoolSize, Usage};
use crate::telemetry::events;

/// Runs until the forwarders start draining (they may still prune what they deliver last; the
/// next start does that).
pub async fn run(pipeline: Arc<Pipeline>, shutdown: Shutdown) {
    // Deadlines and `clock::ago`, never `now - d`, which panics on a machine just booted.
    let mut next_seen_prune = Instant::now() + first_seen_prune(pipeline.spool.prune_interval);
    let mut last = (SpoolSize::default(), Usage::default());
    let mut last_positions = clock::ago(POSITIONS_EVERY);
    let mut last_checkpoint = Instant::now();
    let mut last_measure = clock::ago(MEASURE_EVERY);
    let mut last_spool_prune = clock::ago(PRUNE_SPOOL_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.draining() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let seen_due = Instant::now() >= next_seen_prune;
        if seen_due {
            next_seen_prune = Instant::now() + pipeline.spool.prune_interval;
        }
        let checkpoint_due = last_checkpoint.elapsed() >= CHECKPOINT_EVERY;
        if checkpoint_due {
            last_checkpoint = Instant::now();
        }
        // Short of room, every tick: what was delivered is what frees it.
        let pressed = pipeline.gate.reason().is_some() || pipeline.is_disk_full();
        let spool_due = pressed || last_spool_prune.elapsed() >= PRUNE_SPOOL_EVERY;
        if spool_due {
            last_spool_prune = Instant::now();
        }
        // The dedupe horizon ingest gives every key: only keys older than it are read.
        let ttl = pipeline.spool.seen_ttl.as_millis() as i64;
        // Nothing due: no hand-off to a blocking thread at all.
        let r = if !(spool_due || seen_due || checkpoint_due) {
            Ok((0, 0))
        } else {
            pipeline
                .blocking(move |s| {
                    let rows = if spool_due { s.prune_spool()? } else { 0 };
                    let now = crate::store::now_ms();
                    let mut keys = 0;
                    if seen_due {
                        keys = s.prune_seen(now, ttl)?;
                        // Ledger rows outlive Microsoft's own expiry by a day, then go.
                        s.prune_blobs(now - 86_400_000)?;
                    }
                    if checkpoint_due {
                        s.checkpoint_wal()?;
                    }
                    Ok((rows, keys))
                })
                .await
        };
        match r {
            Ok((rows, keys)) if rows > 0 || keys > 0 => {
                tracing::debug!(spool_rows_pruned = rows, seen_keys_pruned = keys, "pruned")
            }
            Ok(_) => {}
            Err(e) => {
                pipeline.note_store_error(&e);
                tracing::error!(error = %e, "maintenance failed; will retry");
            }
        }
        // Closed, or short of disk: measured every tick, so polling resumes as soon as it can.
        if last_measure.elapsed() >= MEASURE_EVERY || pipeline.gate.reason().is_some() || pipeline.is_disk_full() {
            last_measure = Instant::now();
            gate(&pipeline, &mut last).await;
        }
        if last_positions.elapsed() >= POSITIONS_EVERY {
            last_positions = Instant::now();
            positions(&pipeline).await;
        }
    }
}

/// How long after a start the first pass over `seen` comes: the interval, but at most 5
/// minutes. Counted from the start alone, a daemon restarted more often than the interval
/// (an hour by default) would never prune, and its dedupe keys would fill the state.
fn first_seen_prune(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(300))
}

/// How often delivered spool rows are deleted while the gate is open. Each prune is a
/// transaction that rewrites the spool's inner and free-list pages; every second, that was
/// about 2.5% of the daemon's CPU on a trickling tenant. Five seconds of delivered rows more in
/// the spool cost nothing.
const PRUNE_SPOOL_EVERY: Duration = Duration::from_secs(5);
/// How often the state and the disk are measured while the gate is open. The spool's byte
/// limit is checked at every commit; the age limit and free space move slowly. Measured every
/// second, it was about 1% of the daemon's CPU on a trickling tenant.
const MEASURE_EVERY: Duration = Duration::from_secs(5);
/// Lag and headroom per stream and backlog per sink change slowly and cost a query per stream.
const POSITIONS_EVERY: Duration = Duration::from_secs(10);
/// How often the WAL is copied into the database. Each checkpoint writes every page changed
/// since the last one once and syncs twice; every second, that was a third of the daemon's
/// disk writes and syncs on a trickling tenant. The writer's own autocheckpoint (64 MiB of
/// WAL) still bounds the WAL between two. The price: with `synchronous = NORMAL` the WAL is
/// synced at checkpoints, so a power cut (not a process crash) rolls back up to this much of
/// the last transactions; they roll back whole, and their pages are read and sent again.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// Where each stream and sink stands, as gauges.
async fn positions(p: &Arc<Pipeline>) {
    let Ok((streams, sinks)) = p.blocking(|s| Ok((s.stream_positions()?, s.backlogs()?))).await else { return };
    let now = crate::store::now_ms();
    for s in &streams {
        let label = format!("{}/{}", s.source, s.name);
        let stream = events::Stream { tenant: &s.tenant, stream: &label, id: &s.stream };
        let lag = s.lag_ms(now).map(|ms| Duration::from_millis(ms as u64));
        events::StreamPosition { stream, lag, headroom_secs: s.headroom_ms(now).map(|ms| ms / 1000) }.emit();
    }
    for b in &sinks {
        let oldest = b.oldest_collected_at.map_or(Duration::ZERO, |t| Duration::from_millis((now - t).max(0) as u64));
        events::SinkBacklog { sink: &b.sink, records: b.records, oldest }.emit();
    }
}

/// Measures the state and opens or closes the gate. `last` keeps the previous measurement for
/// when the store cannot be read (a full disk fails reads of the writer connection too).
async fn gate(p: &Arc<Pipeline>, last: &mut (SpoolSize, Usage)) {
    let was_full = p.is_disk_full();
    let measured = p
        .blocking(move |s| {
            // After a failed write, only a write that succeeds says the disk has room again.
            if was_full {
                s.probe_write()?;
            }
            // Re-read, not only counted: `forget-tenant` may have deleted rows from another process.
            Ok((s.resync_spool_bytes()?, s.usage()?))
        })
        .await;
    match measured {
        Ok(m) => {
            *last = m;
            p.clear_disk_full();
        }
        Err(e) => p.note_store_error(&e),
    }
    let (size, usage) = last.clone();
    p.dead_letter_bytes.store(usage.dead_letter_bytes, std::sync::atomic::Ordering::Relaxed);
    let cap = p.spool.max_dead_letter_bytes;
    let near = (usage.dead_letter_bytes >= cap / 10 * 8).then(|| {
        format!(
            "the dead-letter table holds {} of its {} cap (spool.max_dead_letter_bytes){}; list, retry or purge dead letters",
            usage.dead_letter_bytes,
            cap,
            if usage.dead_letter_bytes >= cap { ": FULL, sinks that refuse records now wait" } else { "" }
        )
    });
    if p.note_flag("dead_letters", near.clone())
        && let Some(n) = near
    {
        tracing::error!("{n}");
    }
    let age = size
        .oldest_collected_at
        .map(|t| Duration::from_millis((crate::store::now_ms() - t).max(0) as u64))
        .unwrap_or_default();
    events::StateMeasured {
        spool_bytes: size.bytes,
        spool_records: size.records,
        oldest: age,
        state_bytes: usage.db_bytes,
        dead_letter_bytes: usage.dead_letter_bytes,
    }
    .emit();
    let reading = Reading {
        db_bytes: usage.db_bytes,
        max_bytes: p.spool.max_bytes,
        oldest_undelivered: age,
        max_age: p.spool.max_age,
        // Read from the filesystem each time: it is what changes when an operator frees space.
        free_bytes: crate::store::free_bytes(&p.state_dir()).unwrap_or(u64::MAX),
        min_free_bytes: p.spool.min_free_bytes,
        disk_full: p.is_disk_full(),
    };
    match decide(&reading) {
        Decision::Close(why) => p.pause(why),
        Decision::Open => p.resume(),
        Decision::Keep => {}
    }
    p.persist_pause_flag();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A daemon restarted every half hour still prunes `seen` with the hourly default; a
    /// shorter interval is not delayed.
    #[test]
    fn the_first_pass_over_seen_comes_within_minutes_of_a_start() {
        assert_eq!(super::first_seen_prune(Duration::from_secs(3600)), Duration::from_secs(300));
        assert_eq!(super::first_seen_prune(Duration::from_secs(60)), Duration::from_secs(60));
    }
}

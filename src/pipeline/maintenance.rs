//! Background upkeep: prune delivered spool rows, expired dedupe keys and settled ledger rows;
//! checkpoint the WAL; open or close the spool gate. Each step is chunked (see `store::prune`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ingest::Pipeline;
use super::shutdown::Shutdown;

/// Runs until the forwarders start draining (they may still prune what they deliver last; the
/// next start does that).
pub async fn run(pipeline: Arc<Pipeline>, shutdown: Shutdown) {
    let mut last_seen_prune = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.draining() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let seen_due = last_seen_prune.elapsed() >= pipeline.spool.prune_interval;
        if seen_due {
            last_seen_prune = Instant::now();
        }
        let p = pipeline.clone();
        let r = pipeline
            .blocking(move |s| {
                let rows = s.prune_spool()?;
                let now = crate::store::now_ms();
                let mut keys = 0;
                if seen_due {
                    keys = s.prune_seen(now)?;
                    // Ledger rows outlive Microsoft's own expiry by a day, then go.
                    s.prune_blobs(now - 86_400_000)?;
                }
                s.checkpoint_wal()?;
                let size = s.spool_size()?;
                Ok((rows, keys, size))
            })
            .await;
        match r {
            Ok((rows, keys, size)) => {
                if rows > 0 || keys > 0 {
                    tracing::debug!(spool_rows_pruned = rows, seen_keys_pruned = keys, "pruned");
                }
                metrics::gauge!("auditkeeper_spool_bytes").set(size.bytes as f64);
                metrics::gauge!("auditkeeper_spool_records").set(size.records as f64);
                let age = size
                    .oldest_collected_at
                    .map(|t| Duration::from_millis((crate::store::now_ms() - t).max(0) as u64))
                    .unwrap_or_default();
                if size.bytes > p.spool.max_bytes {
                    p.pause(format!(
                        "spool holds {} bytes, over spool.max_bytes = {}: a sink is not keeping up",
                        size.bytes, p.spool.max_bytes
                    ));
                } else if age > p.spool.max_age {
                    p.pause(format!(
                        "oldest undelivered record waited {}, over spool.max_age = {}: a sink is not delivering",
                        humantime::format_duration(Duration::from_secs(age.as_secs())),
                        humantime::format_duration(p.spool.max_age)
                    ));
                } else if size.bytes < p.spool.max_bytes / 10 * 9 {
                    p.resume();
                }
            }
            Err(e) => tracing::error!(error = %e, "maintenance failed; will retry"),
        }
    }
}

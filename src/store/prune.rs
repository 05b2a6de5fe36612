//! Pruning: delivered spool rows, expired dedupe keys and settled ledger rows.
//!
//! Every step works in small chunks, each its own short transaction, so pruning never holds the
//! writer long enough to stall ingest.

use std::sync::atomic::Ordering;

use rusqlite::params;

use super::cached::Cached;
use super::{Result, Store};

const SPOOL_CHUNK: i64 = 256;
const SEEN_CHUNK: i64 = 20_000;
/// Set by migration v5 while dedupe keys of the old form may remain (see `ingest::Seen`).
pub(super) const SEEN_LEGACY_FLAG: &str = "seen_legacy_keys";
/// Records dated ahead of this clock by more than this have their keys read by every pass.
const FUTURE_SLACK_MS: i64 = 86_400_000;
/// Sorts after every dedupe key (at most 24 bytes): a longer blob of 0xFF bytes.
const ABOVE_EVERY_KEY: [u8; 25] = [0xFF; 25];

impl Store {
    /// Deletes spool rows that every configured sink has delivered. Returns rows deleted.
    pub fn prune_spool(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let (rows, bytes) = self.with_writer(|c| {
                // A spool row is deletable once every sink's offset has moved past it.
                let min: Option<i64> = c.one("SELECT MIN(seq) FROM sink_offsets", [], |r| r.get(0))?;
                let Some(min) = min else { return Ok((0u64, 0u64)) };
                let mut stmt = c.prepare_cached(
                    "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool WHERE seq < ?1 ORDER BY seq LIMIT ?2)
                     RETURNING bytes",
                )?;
                let mut rows = 0u64;
                let mut bytes = 0u64;
                let mut it = stmt.query(params![min, SPOOL_CHUNK])?;
                while let Some(r) = it.next()? {
                    rows += 1;
                    bytes += r.get::<_, i64>(0)? as u64;
                }
                Ok((rows, bytes))
            })?;
            self.spool_bytes.fetch_sub(bytes.min(self.spool_bytes()), Ordering::Relaxed);
            total += rows;
            if rows < SPOOL_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Deletes expired dedupe keys in key-range chunks. Returns keys deleted.
    ///
    /// A key lives `ttl_ms` (`spool.seen_ttl`) from its last sighting (`ingest::Seen`), and
    /// a record is seen no earlier than its own time, unless it claims a time ahead of this
    /// clock. Keys lead with that time, so expired keys can only be where the record is older
    /// than `ttl_ms` (or carries no time, stored as 0), or dated ahead of now by more than
    /// `FUTURE_SLACK_MS`. Only those ranges are read: the keys of the last `ttl_ms`, nearly
    /// the whole table, are not, where every hourly pass used to read all of them.
    /// INVARIANT: the delete still checks each key's own expiry, so a bound can only leave an
    /// expired key for a later pass (one stored under a shorter TTL, or dated slightly
    /// ahead), never delete a live one. Keys of the pre-v5 form carry no time: while any may
    /// remain, the whole table is read.
    pub fn prune_seen(&self, now_ms: i64, ttl_ms: i64) -> Result<u64> {
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = if self.seen_legacy.load(Ordering::Relaxed) {
            vec![(Vec::new(), ABOVE_EVERY_KEY.to_vec())]
        } else {
            let time = |ms: i64| (ms.max(0) as u64).to_be_bytes().to_vec();
            vec![
                // `key > x''` holds for every key; `key < time(t)` for those of records before t.
                (Vec::new(), time(now_ms.saturating_sub(ttl_ms))),
                (time(now_ms.saturating_add(FUTURE_SLACK_MS)), ABOVE_EVERY_KEY.to_vec()),
            ]
        };
        let mut total = 0u64;
        for (mut after, below) in ranges {
            loop {
                let (deleted, last) = self.with_writer(|c| {
                    let last: Option<Vec<u8>> = c.one(
                        "SELECT max(key) FROM (SELECT key FROM seen WHERE key > ?1 AND key < ?3 ORDER BY key LIMIT ?2)",
                        params![after, SEEN_CHUNK, below],
                        |r| r.get(0),
                    )?;
                    let Some(last) = last else { return Ok((0u64, None)) };
                    let n = c.run(
                        "DELETE FROM seen WHERE key > ?1 AND key <= ?2 AND expires_at < ?3",
                        params![after, last, now_ms],
                    )?;
                    Ok((n as u64, Some(last)))
                })?;
                total += deleted;
                match last {
                    Some(l) => after = l,
                    None => break,
                }
            }
        }
        if self.seen_legacy.load(Ordering::Relaxed) {
            let left: bool = self
                .with_writer(|c| c.one("SELECT EXISTS(SELECT 1 FROM seen WHERE length(key) = 16)", [], |r| r.get(0)))?;
            if !left {
                self.set_flag(SEEN_LEGACY_FLAG, None)?;
                self.seen_legacy.store(false, Ordering::Relaxed);
                tracing::info!("the last dedupe key of the pre-v5 form expired; ingest looks up one form only");
            }
        }
        Ok(total)
    }

    /// Forgets settled ledger rows whose content Microsoft has itself expired, so the ledger
    /// stays bounded; an id that can no longer be listed cannot be fetched twice.
    pub fn prune_blobs(&self, older_than_ms: i64) -> Result<u64> {
        self.with_writer(|c| {
            c.run(
                "DELETE FROM blobs WHERE state <> 'listed' AND content_expiration_ms IS NOT NULL
                 AND content_expiration_ms < ?1",
                [older_than_ms],
            )
            .map(|n| n as u64)
        })
    }

    pub fn seen_count(&self) -> Result<i64> {
        self.with_writer(|c| c.one("SELECT count(*) FROM seen", [], |r| r.get(0)))
    }

    /// Incremental WAL checkpoint, run on its own connection so it never holds the writer.
    pub fn checkpoint_wal(&self) -> Result<()> {
        let c = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner());
        c.one("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(|e| super::sqlerr(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::super::ingest::seen_key;
    use super::super::{Store, now_ms};

    const HOUR: i64 = 3_600_000;
    const TTL: i64 = 8 * 24 * HOUR;

    /// Stores `n` keys of records dated `time`, each expiring at `expires`.
    fn keys(s: &Store, tag: &str, n: u32, time: i64, expires: i64) {
        s.with_writer(|c| {
            for i in 0..n {
                let id = crate::sources::record::key_for_id(&format!("{tag}-{i}"));
                c.execute(
                    "INSERT INTO seen(key, expires_at) VALUES (?1, ?2)",
                    params![&seen_key(time, &id)[..], expires],
                )?;
            }
            Ok(())
        })
        .unwrap();
    }

    fn left(s: &Store, time: i64) -> i64 {
        let k = |t: i64| (t.max(0) as u64).to_be_bytes().to_vec();
        s.with_writer(|c| {
            c.query_row("SELECT count(*) FROM seen WHERE key > ?1 AND key < ?2", params![k(time), k(time + 1)], |r| {
                r.get(0)
            })
        })
        .unwrap()
    }

    #[test]
    fn a_pass_reads_only_where_expired_keys_can_be_and_never_deletes_a_live_one() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let now = now_ms();
        let (old, recent, ahead, near) = (now - TTL - HOUR, now - HOUR, now + 3 * 24 * HOUR, now + HOUR);
        keys(&s, "old-expired", 30, old, now - 1);
        keys(&s, "old-alive", 20, old, now + HOUR); // seen again lately: kept alive
        keys(&s, "untimed-expired", 10, 0, now - 1);
        keys(&s, "ahead-expired", 7, ahead, now - 1);
        // Expired, yet of the last TTL: only a key stored under a shorter TTL (or a record
        // dated slightly ahead) is like this. Not read, so left for a later pass.
        keys(&s, "recent-expired", 5, recent, now - 1);
        keys(&s, "near-expired", 3, near, now - 1);
        keys(&s, "recent-alive", 40, recent, now + TTL);

        assert_eq!(s.prune_seen(now, TTL).unwrap(), 30 + 10 + 7);
        assert_eq!((left(&s, old), left(&s, 0), left(&s, ahead)), (20, 0, 0));
        assert_eq!((left(&s, recent), left(&s, near)), (45, 3), "the last TTL's keys are not read");
        // Once their records are older than the TTL, the pass reaches them.
        assert_eq!(s.prune_seen(now + TTL + 2 * HOUR, TTL).unwrap(), 20 + 5 + 3 + 40);
        assert_eq!(s.seen_count().unwrap(), 0);
    }

    #[test]
    fn while_keys_of_the_old_form_may_remain_a_pass_reads_every_key() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let now = now_ms();
        keys(&s, "recent-expired", 5, now - HOUR, now - 1);
        s.seen_legacy.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(s.prune_seen(now, TTL).unwrap(), 5);
    }
}

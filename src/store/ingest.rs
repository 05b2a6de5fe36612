//! The ingest transaction: dedupe, spool and checkpoint one page atomically.

use std::ops::Range;
use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension, params};

use super::blobs::{self, BlobListing};
use super::cached::Cached;
use super::recent::Fresh;
use super::{Result, SpoolRow, Store, codec, now_ms};

/// What a page moves forward once its records are safely spooled.
#[derive(Debug, Clone)]
pub enum Checkpoint {
    /// Nothing to advance (e.g. a page whose position is implied by its records).
    None,
    /// An opaque source cursor, stored as is.
    Cursor(String),
    /// Management Activity API: newly listed blobs enter the ledger; once a whole listing window
    /// was read, `watermark` is its end.
    BlobsListed { blobs: Vec<BlobListing>, watermark: Option<String> },
    /// Every record of this blob is in the page: the ledger marks it fetched, never to be fetched again.
    BlobFetched { content_id: String },
    /// The blob could not be fetched because Microsoft aged it out; counted, never silently skipped.
    BlobExpired { content_id: String, detail: String },
    /// The blob was over the size or compression cap; counted and shown, never fetched again.
    BlobRefused { content_id: String, detail: String },
    /// The last page of a backfill window: the window is done, with the records its query
    /// returned. `cut_short` says why they are not all of its records (Microsoft's record
    /// limit at the smallest window): the window is then `failed`, shown as such, with what it
    /// returned kept.
    BackfillWindowDone { job: i64, start_ms: i64, end_ms: i64, records: i64, cut_short: Option<String> },
}

/// One page for ingest: its records point into `body` (the bytes Microsoft sent).
#[derive(Debug)]
pub struct IngestPage {
    pub stream: String,
    pub tenant: String,
    pub source: String,
    pub name: String,
    pub body: Vec<u8>,
    pub records: Vec<PageRecord>,
    pub checkpoint: Checkpoint,
    /// Records (by index) saying Exchange throttled MailItemsAccessed auditing of a mailbox.
    pub throttled: Vec<(usize, String)>,
}

#[derive(Debug, Clone)]
pub struct PageRecord {
    /// 16-byte dedupe key. For streams whose records change, it covers the content too.
    pub key: [u8; 16],
    /// For such streams, the key of the id alone: a new `key` whose `id_key` was seen before is
    /// an update of a known record (forwarded again, and counted as an update).
    pub id_key: Option<[u8; 16]>,
    pub id: String,
    pub event_time_ms: i64,
    /// The record's own time as part of its dedupe identity (`seen`): the time it carries, or
    /// 0 when it carries none (never the collection time, which would differ on a re-delivery).
    pub key_time_ms: i64,
    pub raw: Range<usize>,
    /// Fields the source wraps the record in (the audit log query's `auditLogRecord` without
    /// its `auditData`), for the envelope option; spooled beside the record, never in it.
    pub envelope: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub new_records: usize,
    pub duplicates: usize,
    pub newly_listed: usize,
    pub updates: usize,
    pub spooled_bytes: u64,
    /// Mailboxes of new records that say MailItemsAccessed auditing was throttled.
    pub throttled: Vec<String>,
}

impl Store {
    /// INVARIANT: dedupe keys, spooled records and the cursor move in ONE transaction, so a
    /// crash can replay a page but can never skip one, and a replay is caught by `seen`.
    pub fn ingest(&self, page: &IngestPage, seen_ttl_ms: i64, records_without_id: u64) -> Result<IngestOutcome> {
        let mut out = self.ingest_many(&[Pending { page, seen_ttl_ms, records_without_id }])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Several pages, of any streams, in ONE transaction (group commit): each page keeps its
    /// own spool row and checkpoint, so the invariant of `ingest` holds page by page, and a
    /// failure rolls them all back together.
    pub fn ingest_many(&self, pages: &[Pending<'_>]) -> Result<Vec<IngestOutcome>> {
        let now = now_ms();
        let legacy = self.seen_legacy.load(Ordering::Relaxed);
        let outs = self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let mut outs = Vec::with_capacity(pages.len());
            // Each stream's counters move once per transaction, not once per page: a group
            // commit of many small blobs costs one counter update per stream in it.
            let mut counters: Vec<(&str, Counters)> = Vec::new();
            let mut spooled = Vec::new();
            let mut scratch = Vec::new();
            for p in pages {
                let (out, c, row) = ingest_page(&tx, p, now, legacy, &mut scratch)?;
                spooled.extend(row);
                match counters.iter_mut().find(|(s, _)| *s == p.page.stream) {
                    Some((_, sum)) => sum.add(&c),
                    None => counters.push((&p.page.stream, c)),
                }
                outs.push(out);
            }
            for (stream, c) in &counters {
                c.write(&tx, stream)?;
            }
            tx.commit()?;
            // Only now, and still under the writer lock: see `recent`'s invariant.
            self.recent.push(spooled);
            Ok(outs)
        })?;
        let spooled: u64 = outs.iter().map(|o| o.spooled_bytes).sum();
        self.spool_bytes.fetch_add(spooled, Ordering::Relaxed);
        Ok(outs)
    }

    /// The stored cursor of a stream, if it has one.
    pub fn cursor(&self, stream: &str) -> Result<Option<String>> {
        self.with_writer(|c| {
            c.one("SELECT cursor FROM streams WHERE stream = ?1", [stream], |r| r.get(0))
                .optional()
                .map(|o| o.flatten())
        })
    }
}

fn set_cursor(tx: &rusqlite::Transaction<'_>, stream: &str, cursor: &str, now: i64) -> rusqlite::Result<()> {
    tx.run("UPDATE streams SET cursor = ?2, cursor_updated_at = ?3 WHERE stream = ?1", params![stream, cursor, now])?;
    Ok(())
}

/// One page of a group commit, with what its stream's settings say about it.
pub struct Pending<'a> {
    pub page: &'a IngestPage,
    pub seen_ttl_ms: i64,
    pub records_without_id: u64,
}

fn ingest_page(
    tx: &rusqlite::Transaction<'_>,
    p: &Pending<'_>,
    now: i64,
    legacy: bool,
    scratch: &mut Vec<u8>,
) -> rusqlite::Result<(IngestOutcome, Counters, Option<Fresh>)> {
    let (seen_ttl_ms, records_without_id) = (p.seen_ttl_ms, p.records_without_id);
    let mut out = IngestOutcome::default();
    // Sized once for every record of the page (a duplicate only leaves room unused): grown
    // by doubling, the buffer was copied several times a page, about 1% of the daemon's CPU.
    let framed: usize =
        p.page.records.iter().map(|r| codec::frame_len(&r.id, r.raw.len(), r.envelope.as_deref())).sum();
    let mut data = Vec::with_capacity(framed);
    {
        let mut seen = Seen::new(tx, now + seen_ttl_ms, legacy)?;
        let mut mailbox = tx.prepare_cached(
            "INSERT INTO throttled_mailboxes(tenant, mailbox, first_ms, last_ms, records) VALUES (?1, ?2, ?3, ?3, 1)
             ON CONFLICT(tenant, mailbox) DO UPDATE SET first_ms = min(first_ms, excluded.first_ms),
                last_ms = max(last_ms, excluded.last_ms), records = records + 1",
        )?;
        let mut throttled = p.page.throttled.iter().peekable();
        for (i, rec) in p.page.records.iter().enumerate() {
            // Sorted by index: the throttled records of this page, if any, one by one.
            let is_throttled = throttled.next_if(|(t, _)| *t == i).map(|(_, m)| m);
            if seen.first_sight(rec.key_time_ms, &rec.key)? {
                let envelope = rec.envelope.as_deref().map(str::as_bytes);
                codec::encode_with(&mut data, &rec.id, rec.event_time_ms, &p.page.body[rec.raw.clone()], envelope);
                out.new_records += 1;
                // Counted once per record: a re-delivered one is a duplicate, not a new signal.
                if let Some(m) = is_throttled {
                    mailbox.execute(params![p.page.tenant, m, rec.event_time_ms])?;
                    out.throttled.push(m.clone());
                }
                if let Some(id_key) = &rec.id_key
                    && !seen.first_sight(rec.key_time_ms, id_key)?
                {
                    out.updates += 1;
                }
            } else {
                out.duplicates += 1;
            }
        }
    }
    let mut row = None;
    if out.new_records > 0 {
        let stored = codec::compress_reusing(&data, scratch);
        tx.run(
            "INSERT INTO spool(stream, tenant, source, name, collected_at, count, bytes, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                p.page.stream,
                p.page.tenant,
                p.page.source,
                p.page.name,
                now,
                out.new_records as i64,
                stored.len() as i64,
                &*stored
            ],
        )?;
        out.spooled_bytes = stored.len() as u64;
        let seq = tx.last_insert_rowid();
        row = Some(Fresh::new(seq, data.len(), move || SpoolRow {
            seq,
            tenant: p.page.tenant.clone(),
            source: p.page.source.clone(),
            name: p.page.name.clone(),
            collected_at: now,
            count: out.new_records as i64,
            // Sized for every record of the page: a page of mostly duplicates must not keep
            // its whole size in memory behind a few new records (the budget counts lengths).
            data: std::sync::Arc::new({
                data.shrink_to_fit();
                data
            }),
            corrupt: None,
        }));
    }
    let (mut expired, mut refused) = (0i64, 0i64);
    match &p.page.checkpoint {
        Checkpoint::None => {}
        Checkpoint::Cursor(c) => set_cursor(tx, &p.page.stream, c, now)?,
        Checkpoint::BlobsListed { blobs: list, watermark } => {
            out.newly_listed = blobs::insert_listed(tx, &p.page.stream, list, now)?;
            if let Some(w) = watermark {
                set_cursor(tx, &p.page.stream, w, now)?;
            }
        }
        Checkpoint::BlobFetched { content_id } => {
            blobs::mark(tx, content_id, "fetched", Some(p.page.records.len() as i64), None, now)?;
        }
        Checkpoint::BlobExpired { content_id, detail } => {
            expired = blobs::mark(tx, content_id, "expired", None, Some(detail), now)? as i64;
        }
        Checkpoint::BlobRefused { content_id, detail } => {
            refused = blobs::mark(tx, content_id, "refused", None, Some(detail), now)? as i64;
        }
        Checkpoint::BackfillWindowDone { job, start_ms, end_ms, records, cut_short } => {
            super::backfill::mark_read(tx, *job, *start_ms, *end_ms, *records, cut_short.as_deref())?;
        }
    }
    let counters = Counters {
        records: out.new_records as i64,
        duplicates: out.duplicates as i64,
        without_id: records_without_id as i64,
        expired,
        updates: out.updates as i64,
        refused,
    };
    Ok((out, counters, row))
}

/// What one page adds to its stream's counters (`streams`).
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    records: i64,
    duplicates: i64,
    without_id: i64,
    expired: i64,
    updates: i64,
    refused: i64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.records += o.records;
        self.duplicates += o.duplicates;
        self.without_id += o.without_id;
        self.expired += o.expired;
        self.updates += o.updates;
        self.refused += o.refused;
    }

    fn write(&self, tx: &rusqlite::Transaction<'_>, stream: &str) -> rusqlite::Result<()> {
        tx.run(
            "UPDATE streams SET records_total = records_total + ?2, duplicates_total = duplicates_total + ?3,
                    records_without_id = records_without_id + ?4, blobs_expired = blobs_expired + ?5,
                    updates_total = updates_total + ?6, blobs_refused = blobs_refused + ?7
             WHERE stream = ?1",
            params![stream, self.records, self.duplicates, self.without_id, self.expired, self.updates, self.refused],
        )?;
        Ok(())
    }
}

/// The dedupe table, as one page's ingest uses it.
///
/// A key is the record's own time (8 bytes, big-endian milliseconds; 0 when the record carries
/// none) followed by its 16-byte identity. Records arrive roughly in time order, so new keys
/// land on the last pages of the B-tree; random 16-byte keys dirtied a page per record, which
/// was most of what the daemon wrote on a trickle of small blobs. A duplicate of a record
/// carries the same time (the reference suggests Id and CreationTime together as the identity),
/// so one exact lookup finds it.
///
/// Keys written before schema v5 are the 16 bytes alone. While any may remain (`legacy`), a key
/// not found in the new form is looked up in the old one too, so an upgrade forwards nothing
/// twice.
struct Seen<'t> {
    insert: rusqlite::CachedStatement<'t>,
    refresh: rusqlite::CachedStatement<'t>,
    legacy: bool,
    expires: i64,
}

impl<'t> Seen<'t> {
    fn new(tx: &'t rusqlite::Transaction<'_>, expires: i64, legacy: bool) -> rusqlite::Result<Seen<'t>> {
        Ok(Seen {
            insert: tx.prepare_cached("INSERT OR IGNORE INTO seen(key, expires_at) VALUES (?1, ?2)")?,
            refresh: tx.prepare_cached("UPDATE seen SET expires_at = max(expires_at, ?2) WHERE key = ?1")?,
            legacy,
            expires,
        })
    }

    /// Records the key; true when it was not known. A known key is kept alive for another TTL:
    /// Microsoft re-sends days later.
    fn first_sight(&mut self, time_ms: i64, key: &[u8; 16]) -> rusqlite::Result<bool> {
        let k = seen_key(time_ms, key);
        if self.insert.execute(params![&k[..], self.expires])? == 0 {
            self.refresh.execute(params![&k[..], self.expires])?;
            return Ok(false);
        }
        // The old form is found (and kept alive) by the same refresh.
        Ok(!self.legacy || self.refresh.execute(params![&key[..], self.expires])? == 0)
    }
}

/// The stored form of a dedupe key (see `Seen`).
pub(super) fn seen_key(time_ms: i64, key: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&(time_ms.max(0) as u64).to_be_bytes());
    k[8..].copy_from_slice(key);
    k
}

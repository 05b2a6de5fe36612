//! The ingest transaction: dedupe, spool and checkpoint one page atomically.

use std::ops::Range;
use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension, params};

use super::blobs::{self, BlobListing};
use super::{Result, Store, codec, now_ms};

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
    pub raw: Range<usize>,
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
        let now = now_ms();
        let out = self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let mut out = IngestOutcome::default();
            let mut data = Vec::new();
            {
                let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO seen(key, expires_at) VALUES (?1, ?2)")?;
                let mut refresh =
                    tx.prepare_cached("UPDATE seen SET expires_at = max(expires_at, ?2) WHERE key = ?1")?;
                let mut mailbox = tx.prepare_cached(
                    "INSERT INTO throttled_mailboxes(tenant, mailbox, first_ms, last_ms, records) VALUES (?1, ?2, ?3, ?3, 1)
                     ON CONFLICT(tenant, mailbox) DO UPDATE SET first_ms = min(first_ms, excluded.first_ms),
                        last_ms = max(last_ms, excluded.last_ms), records = records + 1",
                )?;
                let mut throttled = page.throttled.iter().peekable();
                for (i, rec) in page.records.iter().enumerate() {
                    let expires = now + seen_ttl_ms;
                    // Sorted by index: the throttled records of this page, if any, one by one.
                    let is_throttled = throttled.next_if(|(t, _)| *t == i).map(|(_, m)| m);
                    if insert.execute(params![&rec.key[..], expires])? == 1 {
                        codec::encode_into(&mut data, &rec.id, rec.event_time_ms, &page.body[rec.raw.clone()]);
                        out.new_records += 1;
                        // Counted once per record: a re-delivered one is a duplicate, not a new signal.
                        if let Some(m) = is_throttled {
                            mailbox.execute(params![page.tenant, m, rec.event_time_ms])?;
                            out.throttled.push(m.clone());
                        }
                        if let Some(id_key) = &rec.id_key
                            && insert.execute(params![&id_key[..], expires])? == 0
                        {
                            refresh.execute(params![&id_key[..], expires])?;
                            out.updates += 1;
                        }
                    } else {
                        // A re-delivery keeps the key alive for another TTL: Microsoft re-sends days later.
                        refresh.execute(params![&rec.key[..], expires])?;
                        out.duplicates += 1;
                    }
                }
            }
            if out.new_records > 0 {
                let data = codec::compress(&data);
                tx.execute(
                    "INSERT INTO spool(stream, tenant, source, name, collected_at, count, bytes, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        page.stream,
                        page.tenant,
                        page.source,
                        page.name,
                        now,
                        out.new_records as i64,
                        data.len() as i64,
                        data
                    ],
                )?;
                out.spooled_bytes = data.len() as u64;
            }
            let (mut expired, mut refused) = (0i64, 0i64);
            match &page.checkpoint {
                Checkpoint::None => {}
                Checkpoint::Cursor(c) => set_cursor(&tx, &page.stream, c, now)?,
                Checkpoint::BlobsListed { blobs: list, watermark } => {
                    out.newly_listed = blobs::insert_listed(&tx, &page.stream, list, now)?;
                    if let Some(w) = watermark {
                        set_cursor(&tx, &page.stream, w, now)?;
                    }
                }
                Checkpoint::BlobFetched { content_id } => {
                    blobs::mark(&tx, content_id, "fetched", Some(page.records.len() as i64), None, now)?;
                }
                Checkpoint::BlobExpired { content_id, detail } => {
                    expired = blobs::mark(&tx, content_id, "expired", None, Some(detail), now)? as i64;
                }
                Checkpoint::BlobRefused { content_id, detail } => {
                    refused = blobs::mark(&tx, content_id, "refused", None, Some(detail), now)? as i64;
                }
            }
            tx.execute(
                "UPDATE streams SET records_total = records_total + ?2, duplicates_total = duplicates_total + ?3,
                        records_without_id = records_without_id + ?4, blobs_expired = blobs_expired + ?5,
                        updates_total = updates_total + ?6, blobs_refused = blobs_refused + ?7
                 WHERE stream = ?1",
                params![
                    page.stream,
                    out.new_records as i64,
                    out.duplicates as i64,
                    records_without_id as i64,
                    expired,
                    out.updates as i64,
                    refused
                ],
            )?;
            tx.commit()?;
            Ok(out)
        })?;
        self.spool_bytes.fetch_add(out.spooled_bytes, Ordering::Relaxed);
        Ok(out)
    }

    /// The stored cursor of a stream, if it has one.
    pub fn cursor(&self, stream: &str) -> Result<Option<String>> {
        self.with_writer(|c| {
            c.query_row("SELECT cursor FROM streams WHERE stream = ?1", [stream], |r| r.get(0))
                .optional()
                .map(|o| o.flatten())
        })
    }
}

fn set_cursor(tx: &rusqlite::Transaction<'_>, stream: &str, cursor: &str, now: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE streams SET cursor = ?2, cursor_updated_at = ?3 WHERE stream = ?1",
        params![stream, cursor, now],
    )?;
    Ok(())
}

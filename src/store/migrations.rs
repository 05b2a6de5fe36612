//! Versioned schema migrations, tracked in `PRAGMA user_version`.
//!
//! Invariant: a database whose version is above `MIGRATIONS.len()` was written by a newer build
//! and is refused untouched; older versions are upgraded in one transaction each.

use std::path::Path;

use rusqlite::Connection;

use super::{Result, StoreError, sqlerr};

const MIGRATIONS: &[&str] = &[
    // v1: the collector core.
    r#"
    CREATE TABLE streams (
        stream TEXT PRIMARY KEY,          -- "tenant/source/name"
        tenant TEXT NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        cursor TEXT,                      -- source-specific position, e.g. a listing watermark
        cursor_updated_at INTEGER,
        state TEXT NOT NULL DEFAULT 'starting',
        state_detail TEXT,
        last_success_at INTEGER,
        last_error TEXT,
        last_error_at INTEGER,
        subscription_started_at INTEGER,
        records_total INTEGER NOT NULL DEFAULT 0,
        duplicates_total INTEGER NOT NULL DEFAULT 0,
        records_without_id INTEGER NOT NULL DEFAULT 0,
        blobs_expired INTEGER NOT NULL DEFAULT 0
    );
    -- Blob ledger of the Management Activity API: every contentId ever listed.
    CREATE TABLE blobs (
        content_id TEXT PRIMARY KEY,
        stream TEXT NOT NULL,
        content_uri TEXT NOT NULL,
        content_created TEXT NOT NULL,
        content_expiration_ms INTEGER,
        state TEXT NOT NULL DEFAULT 'listed',   -- listed | fetched | expired
        record_count INTEGER,
        detail TEXT,
        listed_at INTEGER NOT NULL,
        done_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX blobs_pending ON blobs(stream, state);
    -- Dedupe keys: 16 bytes (a record GUID, or a truncated SHA-256 of a non-GUID key).
    CREATE TABLE seen (
        key BLOB PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- The spool: one row per ingested page, holding every new record of that page.
    CREATE TABLE spool (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        tenant TEXT NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        collected_at INTEGER NOT NULL,
        count INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    -- Per-sink delivery position: the next record to send is (seq, idx).
    CREATE TABLE sink_offsets (
        sink TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        delivered_total INTEGER NOT NULL DEFAULT 0,
        last_success_at INTEGER,
        last_error TEXT,
        last_error_at INTEGER
    );
    -- Daemon-wide flags shown by status, e.g. why polling is paused.
    CREATE TABLE flags (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    // v2: Graph and Azure streams forward each changed version of a record; count those.
    r#"
    ALTER TABLE streams ADD COLUMN updates_total INTEGER NOT NULL DEFAULT 0;
    "#,
    // v3: records a receiver refused for good, kept whole (they may already be pruned from the
    // spool) until an operator retries or purges them.
    r#"
    CREATE TABLE dead_letter (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sink TEXT NOT NULL,
        tenant TEXT NOT NULL,
        source TEXT NOT NULL,
        stream TEXT NOT NULL,
        record_id TEXT NOT NULL,
        event_time_ms INTEGER NOT NULL,
        collected_at INTEGER NOT NULL,
        raw BLOB NOT NULL,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        retry_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX dead_letter_sink ON dead_letter(sink, retry_requested);
    "#,
    // v4: typed stream states (a throttled stream shows until when), blobs refused as over the
    // size or compression cap (state 'refused'), and the ranges a stream could no longer read
    // because it was behind for longer than Microsoft keeps data.
    r#"
    ALTER TABLE streams ADD COLUMN state_until INTEGER;
    ALTER TABLE streams ADD COLUMN blobs_refused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streams ADD COLUMN retention_secs INTEGER;  -- how long Microsoft keeps its data
    -- Mailboxes whose MailItemsAccessed auditing Exchange throttled (IsThrottled = True): for
    -- 24 hours their Bind access is not audited, so every item in them must be assumed read.
    CREATE TABLE throttled_mailboxes (
        tenant TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        first_ms INTEGER NOT NULL,        -- the first and last such record's CreationTime
        last_ms INTEGER NOT NULL,
        records INTEGER NOT NULL,
        PRIMARY KEY (tenant, mailbox)
    ) WITHOUT ROWID;
    CREATE TABLE gaps (
        stream TEXT NOT NULL,
        start_ms INTEGER NOT NULL,        -- the stored cursor when the gap was found
        end_ms INTEGER NOT NULL,          -- the oldest instant the API still served
        noted_at INTEGER NOT NULL,
        PRIMARY KEY (stream, start_ms)
    ) WITHOUT ROWID;
    "#,
    // v5: dedupe keys lead with the record's own time, so new keys are appended instead of
    // scattered (store/ingest.rs, `Seen`). Keys already stored keep their 16-byte form, valid
    // until they expire; the flag says to look them up too until pruning finds none left.
    r#"
    INSERT INTO flags(key, value, updated_at)
        SELECT 'seen_legacy_keys', 'dedupe keys of the pre-v5 form remain', 0 WHERE EXISTS (SELECT 1 FROM seen);
    "#,
    // v6: backfill from the audit log query API (store/backfill.rs): jobs, their windows with
    // the query each one runs, and the query submissions of the last 24 h per tenant.
    r#"
    CREATE TABLE backfill_jobs (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        until_ms INTEGER NOT NULL,
        filters TEXT NOT NULL,            -- JSON: record_types, operations, users
        origin TEXT NOT NULL,             -- 'command' or 'backfill_days'
        state TEXT NOT NULL,              -- 'active', 'done', 'cancelled'
        created_at INTEGER NOT NULL,
        finished_at INTEGER
    );
    CREATE TABLE backfill_windows (
        job INTEGER NOT NULL REFERENCES backfill_jobs(id),
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        state TEXT NOT NULL,              -- pending, running, done, split, failed
        query_id TEXT,
        records INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (job, start_ms, end_ms)
    ) WITHOUT ROWID;
    CREATE TABLE backfill_submissions (
        tenant TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX backfill_submissions_tenant ON backfill_submissions(tenant, at_ms);
    "#,
    // v7: the ledger's pending index also orders by expiry, so a stream's earliest pending
    // expiry (its headroom, reported every 10 s) is one index lookup instead of a scan of every
    // blob it still has to fetch. The same index, one column longer: no extra write per blob.
    r#"
    DROP INDEX blobs_pending;
    CREATE INDEX blobs_pending ON blobs(stream, state, content_expiration_ms);
    "#,
];

pub fn known_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn apply(conn: &Connection, path: &Path) -> Result<()> {
    let current = check_readable(conn, path)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let r = (|| {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        })();
        r.map_err(|e| sqlerr(path, e))?;
        tracing::info!(db = %path.display(), version, "applied schema migration");
    }
    Ok(())
}

/// Returns the schema version, refusing a database from a newer build.
pub fn check_readable(conn: &Connection, path: &Path) -> Result<i64> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| sqlerr(path, e))?;
    if found > known_version() {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found, known: known_version() });
    }
    Ok(found)
}

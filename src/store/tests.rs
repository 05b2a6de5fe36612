//! Store-level invariants: one-transaction ingest, replay safety, offsets and pruning.

use super::*;
use crate::sources::record::key_for_id;
use rusqlite::params;

fn page(stream: &str, ids: &[&str], checkpoint: Checkpoint) -> IngestPage {
    let mut body = Vec::new();
    let mut records = Vec::new();
    for id in ids {
        let raw = format!(r#"{{"Id":"{id}","Op":"x"}}"#);
        let start = body.len();
        body.extend_from_slice(raw.as_bytes());
        records.push(PageRecord {
            key: key_for_id(id),
            id_key: None,
            id: id.to_string(),
            event_time_ms: 1,
            key_time_ms: 1,
            raw: start..body.len(),
            envelope: None,
        });
    }
    IngestPage {
        stream: stream.into(),
        tenant: "t".into(),
        source: "management".into(),
        name: "Audit.Exchange".into(),
        body,
        records,
        checkpoint,
        throttled: Vec::new(),
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    s.register_stream("s", "t", "management", "Audit.Exchange").unwrap();
    (d, s)
}

const TTL: i64 = 8 * 86_400_000;

#[test]
fn replaying_a_page_spools_nothing_twice_and_counts_duplicates() {
    let (_d, s) = open();
    let p = page("s", &["a", "b", "a"], Checkpoint::Cursor("c1".into()));
    let first = s.ingest(&p, TTL, 0).unwrap();
    assert_eq!((first.new_records, first.duplicates), (2, 1));
    // A crash after commit replays the page: everything is a duplicate, nothing is spooled.
    let again = s.ingest(&p, TTL, 0).unwrap();
    assert_eq!((again.new_records, again.duplicates), (0, 3));
    assert_eq!(s.spool_size().unwrap().records, 2);
    assert_eq!(s.cursor("s").unwrap().as_deref(), Some("c1"));
    let st = &s.stream_status().unwrap()[0];
    assert_eq!((st.counters.records_total, st.counters.duplicates_total), (2, 4));
}

#[test]
fn a_blob_is_settled_once_and_expiry_is_counted() {
    let (_d, s) = open();
    let listing = |id: &str| BlobListing {
        content_id: id.into(),
        content_uri: format!("https://x/{id}"),
        content_created: "2026-11-21T00:00:00.000Z".into(),
        content_expiration_ms: Some(i64::MAX),
    };
    let out = s
        .ingest(
            &page("s", &[], Checkpoint::BlobsListed { blobs: vec![listing("b1"), listing("b2")], watermark: None }),
            TTL,
            0,
        )
        .unwrap();
    assert_eq!(out.newly_listed, 2);
    // Listing the same blobs again (the overlap) adds nothing and leaves the cursor alone.
    let out = s
        .ingest(
            &page("s", &[], Checkpoint::BlobsListed { blobs: vec![listing("b1")], watermark: Some("w".into()) }),
            TTL,
            0,
        )
        .unwrap();
    assert_eq!(out.newly_listed, 0);
    assert_eq!(s.cursor("s").unwrap().as_deref(), Some("w"));
    assert_eq!(s.pending_blobs("s").unwrap().len(), 2);
    s.ingest(&page("s", &["r1"], Checkpoint::BlobFetched { content_id: "b1".into() }), TTL, 0).unwrap();
    s.ingest(&page("s", &[], Checkpoint::BlobExpired { content_id: "b2".into(), detail: "AF20051".into() }), TTL, 0)
        .unwrap();
    s.ingest(&page("s", &[], Checkpoint::BlobExpired { content_id: "b2".into(), detail: "AF20051".into() }), TTL, 0)
        .unwrap();
    assert!(s.pending_blobs("s").unwrap().is_empty());
    let st = &s.stream_status().unwrap()[0];
    assert_eq!(st.counters.blobs_expired, 1, "expiry counted once");
    assert_eq!((st.ledger.fetched, st.ledger.expired), (1, 1));
}

#[test]
fn spool_rows_go_only_when_every_sink_delivered_them() {
    let (_d, s) = open();
    s.ensure_sinks(&["a".into(), "b".into()]).unwrap();
    s.ingest(&page("s", &["1", "2"], Checkpoint::None), TTL, 0).unwrap();
    s.ingest(&page("s", &["3"], Checkpoint::None), TTL, 0).unwrap();
    let rows = s.spool_reader().unwrap().read_from(0, 10).unwrap();
    assert_eq!(rows.len(), 2);
    let (r1, r2) = (rows[0].seq, rows[1].seq);
    s.commit_offset("a", r2 + 1, 0, 3).unwrap();
    s.commit_offset("b", r1, 1, 1).unwrap();
    assert_eq!(s.prune_spool().unwrap(), 0, "sink b is still inside row 1");
    let b = s.backlogs().unwrap();
    assert_eq!((b[0].records, b[1].records), (0, 2));
    s.commit_offset("b", r2, 0, 1).unwrap();
    assert_eq!(s.prune_spool().unwrap(), 1);
    assert_eq!(s.spool_size().unwrap().records, 1);
    // Dropping a sink from the config keeps what it has not received; forgetting it releases it.
    s.ensure_sinks(&["a".into()]).unwrap();
    assert_eq!(s.prune_spool().unwrap(), 0, "b's records are kept for it");
    assert_eq!(s.forget_sink("b").unwrap(), 1);
    assert_eq!(s.prune_spool().unwrap(), 1);
    assert_eq!(s.spool_bytes(), 0);
}

#[test]
fn a_cached_statement_is_planned_once_whatever_is_bound() {
    let (_d, s) = open();
    s.ensure_sinks(&["a".into()]).unwrap();
    for i in 0..5 {
        s.ingest(&page("s", &[&format!("r{i}")], Checkpoint::None), TTL, 0).unwrap();
    }
    let reader = s.spool_reader().unwrap();
    let first = reader.read_from(0, 10).unwrap()[0].seq;
    // A forwarder's reads: each binds a new position, and the batch size varies.
    for (from, max, want) in [(first + 1, 3, 3), (first + 3, 1, 1), (first + 4, 10, 1), (first, 10, 5)] {
        assert_eq!(reader.read_from(from, max).unwrap().len(), want, "from {from}, at most {max}");
    }
    // `LIMIT ?` once made SQLite parse and plan the statement again at every new binding.
    let again = reader.conn.prepare_cached(spool::READ_FROM).unwrap().get_status(rusqlite::StatementStatus::RePrepare);
    assert_eq!(again, 0, "the spool read was prepared again {again} times");
}

#[test]
fn seen_keys_expire_after_their_ttl_in_chunks() {
    let (_d, s) = open();
    let ids: Vec<String> = (0..50_000).map(|i| format!("id-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    s.ingest(&page("s", &refs[..25_000], Checkpoint::None), 1_000, 0).unwrap();
    s.ingest(&page("s", &refs[25_000..], Checkpoint::None), TTL, 0).unwrap();
    assert_eq!(s.seen_count().unwrap(), 50_000);
    let pruned = s.prune_seen(now_ms() + 10_000, TTL).unwrap();
    assert_eq!(pruned, 25_000);
    assert_eq!(s.seen_count().unwrap(), 25_000);
    // An expired key is new again: the TTL is the dedupe horizon.
    let again = s.ingest(&page("s", &refs[..1], Checkpoint::None), TTL, 0).unwrap();
    assert_eq!(again.new_records, 1);
}

#[test]
fn an_offset_commit_that_moves_no_row_is_an_error_and_removed_sinks_keep_their_offsets() {
    let (_d, s) = open();
    assert_eq!(s.ensure_sinks(&["a".into(), "b".into()]).unwrap(), Vec::<String>::new());
    s.commit_offset("a", 1, 0, 0).unwrap();
    let e = s.commit_offset("nobody", 1, 0, 0).unwrap_err();
    assert!(matches!(e, super::StoreError::OffsetMissing { .. }), "{e}");
    // "b" left the config: kept, and reported, until forgotten.
    assert_eq!(s.ensure_sinks(&["a".into()]).unwrap(), vec!["b".to_string()]);
    assert_eq!(s.backlogs().unwrap().len(), 2);
    assert_eq!(s.forget_sink("b").unwrap(), 0);
    assert_eq!(s.backlogs().unwrap().len(), 1);
    assert!(matches!(s.forget_sink("b"), Err(super::StoreError::UnknownSink(..))));
}

#[test]
fn the_database_and_its_directory_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("state");
    // SAFETY: umask only affects this process's later file creations.
    let old = unsafe { libc::umask(0o002) };
    let s = Store::open(&dir).unwrap();
    s.register_stream("s", "t", "management", "x").unwrap();
    unsafe { libc::umask(old) };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(super::DB_FILE)), 0o600);
    assert_eq!(mode(&dir.join(format!("{}-wal", super::DB_FILE))), 0o600);
}

#[test]
fn a_throttled_mailbox_is_kept_once_per_record_and_a_redelivery_does_not_count_again() {
    let (_d, s) = open();
    let mut p = page("s", &["1", "2", "3"], Checkpoint::None);
    p.records[1].event_time_ms = 1_000;
    p.records[2].event_time_ms = 5_000;
    p.throttled = vec![(1, "ceo@contoso.com".into()), (2, "ceo@contoso.com".into())];
    let out = s.ingest(&p, TTL, 0).unwrap();
    assert_eq!(out.throttled, vec!["ceo@contoso.com".to_string(); 2]);
    let again = s.ingest(&p, TTL, 0).unwrap();
    assert!(again.throttled.is_empty(), "duplicates are not a new signal");
    let m = s.throttled_mailboxes().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].mailbox.as_str(), m[0].first_ms, m[0].last_ms, m[0].records),
        ("ceo@contoso.com", 1_000, 5_000, 2)
    );
}

/// A database from before v5 holds 16-byte keys: after the upgrade, a re-delivery of such a
/// record is still a duplicate, and once pruning finds no old key left, the extra lookup stops.
#[test]
fn dedupe_keys_of_the_old_form_still_catch_duplicates_after_the_upgrade() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = Store::open(d.path()).unwrap();
        s.register_stream("s", "t", "management", "Audit.Exchange").unwrap();
        // As v4 stored them: the bare 16 bytes, and no flag yet.
        s.with_writer(|c| {
            c.execute(
                "INSERT INTO seen(key, expires_at) VALUES (?1, ?2)",
                params![&key_for_id("old")[..], now_ms() + TTL],
            )?;
            c.execute("INSERT INTO seen(key, expires_at) VALUES (?1, 1)", params![&key_for_id("gone")[..]])?;
            // Later migrations' tables go too, so they apply again.
            c.execute_batch("DROP TABLE backfill_submissions; DROP TABLE backfill_windows; DROP TABLE backfill_jobs;")?;
            c.execute("PRAGMA user_version = 4", [])
        })
        .unwrap();
    }
    let s = Store::open(d.path()).unwrap();
    assert!(s.flag(prune::SEEN_LEGACY_FLAG).unwrap().is_some(), "the migration notes the old keys");
    let out = s.ingest(&page("s", &["old", "new"], Checkpoint::None), TTL, 0).unwrap();
    assert_eq!((out.new_records, out.duplicates), (1, 1), "the old-form key is found");
    assert_eq!(s.spool_size().unwrap().records, 1);
    // `gone` expired; `old` is still alive, so the lookup stays.
    s.prune_seen(now_ms(), TTL).unwrap();
    assert!(s.flag(prune::SEEN_LEGACY_FLAG).unwrap().is_some());
    s.prune_seen(now_ms() + 2 * TTL, TTL).unwrap();
    assert!(s.flag(prune::SEEN_LEGACY_FLAG).unwrap().is_none(), "no old key left: the flag goes");
    let out = s.ingest(&page("s", &["new"], Checkpoint::None), TTL, 0).unwrap();
    assert_eq!(out.new_records, 1, "every key expired, so the record is new again");
}

/// Keys lead with the record's time: the same id at another time is another record, and the
/// keys of records in time order are stored in that order.
#[test]
fn dedupe_keys_lead_with_the_records_own_time() {
    let a = ingest::seen_key(2, &key_for_id("x"));
    let b = ingest::seen_key(1_000, &key_for_id("a"));
    assert!(a < b, "ordered by time first");
    assert_eq!(&a[8..], &key_for_id("x")[..]);
    assert_eq!(ingest::seen_key(-5, &key_for_id("x"))[..8], [0u8; 8], "a time before 1970 is 0");
}

#[test]
fn a_removed_tenant_keeps_its_state_until_forgotten_and_only_its_own_goes() {
    let (_d, s) = open();
    s.register_stream("u", "other", "management", "Audit.Exchange").unwrap();
    s.ensure_sinks(&["a".into()]).unwrap();
    s.ingest(&page("s", &["1", "2"], Checkpoint::Cursor("c1".into())), TTL, 0).unwrap();
    let mut theirs = page("u", &["3"], Checkpoint::Cursor("c2".into()));
    theirs.tenant = "other".into();
    s.ingest(&theirs, TTL, 0).unwrap();
    assert_eq!(s.mark_removed_tenants(&["other".into()]).unwrap(), vec!["t".to_string()]);
    assert_eq!(s.mark_removed_tenants(&["other".into()]).unwrap(), Vec::<String>::new(), "marked once");
    let states: Vec<(String, String)> =
        s.stream_status().unwrap().iter().map(|x| (x.stream.clone(), x.state.name().to_string())).collect();
    assert_eq!(states, vec![("s".into(), "removed".into()), ("u".into(), "starting".into())]);
    assert_eq!(s.cursor("s").unwrap().as_deref(), Some("c1"), "kept");
    assert_eq!(s.tenant_undelivered("t").unwrap(), 2);
    // The sink takes everything: nothing of t is undelivered, and forgetting leaves `other` whole.
    let rows = s.spool_reader().unwrap().read_from(0, 10).unwrap();
    s.commit_offset("a", rows[1].seq + 1, 0, 3).unwrap();
    assert_eq!(s.tenant_undelivered("t").unwrap(), 0);
    let f = s.forget_tenant("t").unwrap();
    assert_eq!((f.streams, f.spool_rows, f.undelivered), (1, 1, 0));
    assert_eq!(s.known_tenants().unwrap(), vec!["other".to_string()]);
    assert_eq!(s.cursor("u").unwrap().as_deref(), Some("c2"));
    assert_eq!(s.spool_size().unwrap().records, 1);
    assert_eq!(s.spool_bytes(), s.spool_size().unwrap().bytes);
}

#[test]
fn streams_are_counted_by_state_for_the_status_line() {
    let (_d, s) = open();
    s.register_stream("s2", "t", "management", "Audit.General").unwrap();
    s.register_stream("s3", "t", "management", "DLP.All").unwrap();
    s.set_stream_state("s", &StreamState::Running).unwrap();
    s.set_stream_state("s2", &StreamState::Running).unwrap();
    s.set_stream_state("s3", &StreamState::Failed("no".into())).unwrap();
    assert_eq!(s.streams_by_state().unwrap(), vec![("failed".to_string(), 1), ("running".to_string(), 2)]);
}

/// One group commit of several pages: each stream's counters add up its own pages only.
#[test]
fn a_group_commit_counts_each_stream_its_own_pages() {
    let (_d, s) = open();
    s.register_stream("s2", "t", "management", "Audit.General").unwrap();
    let (a, b, c) = (
        page("s", &["a", "b"], Checkpoint::None),
        page("s2", &["c", "d", "e"], Checkpoint::None),
        page("s", &["b", "f"], Checkpoint::None),
    );
    let pending: Vec<Pending<'_>> =
        [&a, &b, &c].into_iter().map(|page| Pending { page, seen_ttl_ms: TTL, records_without_id: 1 }).collect();
    let outs = s.ingest_many(&pending).unwrap();
    assert_eq!(outs.iter().map(|o| (o.new_records, o.duplicates)).collect::<Vec<_>>(), [(2, 0), (3, 0), (1, 1)]);
    let by_stream: std::collections::HashMap<String, (i64, i64, i64)> = s
        .stream_status()
        .unwrap()
        .into_iter()
        .map(|x| (x.stream, (x.counters.records_total, x.counters.duplicates_total, x.counters.records_without_id)))
        .collect();
    assert_eq!(by_stream["s"], (3, 1, 2));
    assert_eq!(by_stream["s2"], (3, 0, 1));
}

/// A cycle's end moves its outcome and the state together: a success stamps the success time
/// and keeps the last error; an error stamps the error and keeps the last success.
#[test]
fn a_cycle_end_records_its_outcome_and_state_together() {
    let (_d, s) = open();
    let st = |s: &Store| s.stream_status().unwrap().remove(0);
    s.record_stream_outcome("s", &StreamState::Running, None).unwrap();
    let ok = st(&s);
    assert_eq!(ok.state, StreamState::Running);
    assert!(ok.last_success_at.is_some() && ok.last_error.is_none());
    let retrying = StreamState::Retrying("HTTP 503".into());
    s.record_stream_outcome("s", &retrying, Some("HTTP 503")).unwrap();
    let failed = st(&s);
    assert_eq!(failed.state, retrying);
    assert_eq!((failed.last_success_at, failed.last_error.as_deref()), (ok.last_success_at, Some("HTTP 503")));
    assert!(failed.last_error_at.is_some());
    s.record_stream_outcome("s", &StreamState::Running, None).unwrap();
    let again = st(&s);
    assert_eq!((again.state, again.last_error.as_deref()), (StreamState::Running, Some("HTTP 503")));
    assert!(again.last_success_at >= ok.last_success_at);
}

/// A page of mostly duplicates keeps in memory only the room its new records take.
#[test]
fn a_row_kept_in_memory_holds_only_its_new_records() {
    let (_d, s) = open();
    s.ingest(&page("s", &["a", "b", "c"], Checkpoint::Cursor("c1".into())), TTL, 0).unwrap();
    s.ingest(&page("s", &["a", "b", "c", "d"], Checkpoint::Cursor("c2".into())), TTL, 0).unwrap();
    let stored = s.spool_reader().unwrap().read_from(0, 10).unwrap();
    let (kept, _) = s.recent_rows().take_from(stored[1].seq, 10).expect("the row just committed");
    assert_eq!(kept[0].count, 1);
    assert_eq!(kept[0].data.capacity(), kept[0].data.len(), "no room left for the duplicates");
}

#[test]
fn rows_kept_in_memory_are_the_committed_spool_rows_and_go_with_a_forgotten_tenant() {
    let (_d, s) = open();
    let recent = s.recent_rows();
    let pages = [
        page("s", &["a", "b"], Checkpoint::Cursor("c1".into())),
        page("s", &["a"], Checkpoint::Cursor("c2".into())),
        page("s", &["c"], Checkpoint::Cursor("c3".into())),
    ];
    let pending: Vec<Pending<'_>> =
        pages.iter().map(|page| Pending { page, seen_ttl_ms: TTL, records_without_id: 0 }).collect();
    s.ingest_many(&pending).unwrap();
    // The page of duplicates spooled nothing, so it has no row in either place.
    let stored = s.spool_reader().unwrap().read_from(0, 10).unwrap();
    assert_eq!(stored.len(), 2);
    let (kept, newest) = recent.take_from(stored[0].seq, 10).expect("the rows just committed");
    assert!(newest);
    let view = |r: &SpoolRow| (r.seq, r.tenant.clone(), r.name.clone(), r.collected_at, r.count, r.data.clone());
    assert_eq!(kept.iter().map(view).collect::<Vec<_>>(), stored.iter().map(view).collect::<Vec<_>>());
    // A transaction that fails at its last statement (the counters, after every page was
    // written) leaves nothing behind.
    s.with_writer(|c| {
        c.execute_batch(
            "CREATE TEMP TRIGGER boom BEFORE UPDATE ON streams WHEN OLD.cursor = 'boom'
             BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
    })
    .unwrap();
    assert!(s.ingest(&page("s", &["d"], Checkpoint::Cursor("boom".into())), TTL, 0).is_err());
    assert!(recent.take_from(stored[1].seq + 1, 10).is_none(), "a rolled-back row is not kept");
    assert_eq!(s.spool_reader().unwrap().read_from(0, 10).unwrap().len(), 2);
    s.forget_tenant("t").unwrap();
    assert!(recent.take_from(stored[0].seq, 10).is_none(), "a forgotten tenant's rows are not delivered from memory");
}

#[test]
fn positions_carry_what_lag_and_headroom_need_without_counting_the_ledger() {
    let (_d, s) = open();
    let listing = BlobListing {
        content_id: "b1".into(),
        content_uri: "https://x/b1".into(),
        content_created: "2026-11-21T00:00:00.000Z".into(),
        content_expiration_ms: Some(5_000),
    };
    let listed = Checkpoint::BlobsListed { blobs: vec![listing], watermark: Some("2026-11-21T00:00:00Z".into()) };
    s.ingest(&page("s", &[], listed), TTL, 0).unwrap();
    s.set_stream_retention("s", 7 * 86_400).unwrap();
    let (full, pos) = (&s.stream_status().unwrap()[0], &s.stream_positions().unwrap()[0]);
    assert_eq!(full.ledger.listed, 1);
    assert_eq!(pos.ledger.listed, 0, "not counted");
    assert_eq!((pos.lag_ms(10_000), pos.headroom_ms(1_000)), (full.lag_ms(10_000), full.headroom_ms(1_000)));
    assert_eq!(pos.headroom_ms(1_000), Some(4_000), "the pending blob's expiry");
    assert!(pos.lag_ms(1_800_000_000_000).is_some());
}

/// A stream far behind (a long outage) has thousands of blobs listed. Its earliest pending
/// expiry, read every 10 s under the writer lock, must be one index lookup, not a scan of them.
#[test]
fn the_earliest_pending_expiry_is_one_index_lookup() {
    let (_d, s) = open();
    let blobs: Vec<BlobListing> = (0..2_000)
        .map(|i| BlobListing {
            content_id: format!("b{i}"),
            content_uri: format!("https://x/b{i}"),
            content_created: "2026-11-21T00:00:00.000Z".into(),
            content_expiration_ms: Some(1_000_000 - i),
        })
        .collect();
    s.ingest(&page("s", &[], Checkpoint::BlobsListed { blobs, watermark: None }), TTL, 0).unwrap();
    assert_eq!(s.stream_positions().unwrap()[0].headroom_ms(0), Some(1_000_000 - 1_999));
    // The statement maintenance ran, as the writer cached it: its steps so far are that one read.
    let steps =
        s.with_writer(|c| Ok(c.prepare_cached(streams::ROWS)?.get_status(rusqlite::StatementStatus::VmStep))).unwrap();
    // A scan steps at least once per listed blob.
    assert!(steps < 100, "{steps} VM steps for the positions of one stream with 2,000 listed blobs");
}

//! The group committer over a real store: what it batches, and what a failed commit drops.

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::{Pipeline, StreamHandle, StreamKey};
use crate::store::{Checkpoint, Store};

use crate::pipeline::test_support::{settings, stream};

/// `n` records with ids `{prefix}-i` as one page, moving the cursor to `cursor`.
async fn page(h: &StreamHandle, prefix: &str, n: usize, cursor: &str) -> Result<(), super::PipelineError> {
    let body = format!(
        "[{}]",
        (0..n)
            .map(|i| format!("{{\"Id\":\"{prefix}-{i}\",\"CreationTime\":\"2026-11-21T10:00:{:02}\"}}", i % 60))
            .collect::<Vec<_>>()
            .join(",")
    );
    let parsed = crate::sources::record::parse_management_blob(body.as_bytes()).unwrap();
    h.ingest(body.into_bytes(), parsed.records, 0, Checkpoint::Cursor(cursor.into())).await
}

/// How many transactions other connections committed since `before` (SQLite's data_version).
fn data_version(c: &rusqlite::Connection) -> i64 {
    c.query_row("PRAGMA data_version", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_several_streams_land_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let p = Pipeline::new(store.clone(), settings());
    let hs =
        [stream(&p, "Audit.Exchange").await, stream(&p, "Audit.SharePoint").await, stream(&p, "Audit.General").await];
    let reader = store.reader().unwrap();
    let before = data_version(&reader);
    for i in 0..12 {
        page(&hs[i % 3], &format!("p{i}"), 3, &format!("c{i}")).await.unwrap();
    }
    // Handed over, not yet written: the committer waits for company.
    assert_eq!(store.spool_size().unwrap().records, 0);
    p.flush().await;
    assert_eq!(data_version(&reader) - before, 1, "twelve pages of three streams, one commit");
    let size = store.spool_size().unwrap();
    assert_eq!((size.rows, size.records), (12, 36), "each page keeps its own spool row");
    assert_eq!(hs[2].cursor().await.unwrap().as_deref(), Some("c11"), "each stream's last checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_left_alone_is_written_within_the_linger() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let p = Pipeline::new(store.clone(), settings());
    let h = stream(&p, "Audit.Exchange").await;
    page(&h, "a", 2, "c1").await.unwrap();
    let start = std::time::Instant::now();
    while store.spool_size().unwrap().records < 2 {
        assert!(start.elapsed() < super::LINGER * 5, "never written without a flush");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A failed commit is told to its stream at its next ingest; what it sends after that is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_told_to_its_stream_which_then_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let p = Pipeline::new(store.clone(), settings());
    let (h, other) = (stream(&p, "Audit.Exchange").await, stream(&p, "Audit.General").await);
    store.inject_disk_full(true);
    page(&h, "a", 3, "c-a").await.unwrap();
    p.flush().await;
    store.inject_disk_full(false);
    p.flush().await;
    assert_eq!(store.spool_size().unwrap().records, 0);
    let told = page(&h, "c", 3, "c-c").await;
    assert!(told.is_err(), "the stream hears of the failure at its next ingest");
    assert!(told.unwrap_err().to_string().contains("full"), "and why");
    // Having heard, it starts over from the store: what it sends now is written.
    page(&h, "d", 4, "c-d").await.unwrap();
    page(&other, "e", 1, "c-e").await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(store.spool_size().unwrap().records, 5, "d and e, not a");
    assert_eq!(h.cursor().await.unwrap().as_deref(), Some("c-d"));
    assert_eq!(store.stream_status().unwrap().iter().map(|s| s.counters.records_total).sum::<i64>(), 5);
}

/// Pages a stream handed over before it heard of its failure are dropped, even if the store
/// writes again by the time they come up; its pages sent after are written, and other
/// streams are not touched.
#[tokio::test]
async fn pages_sent_before_the_stream_was_told_are_dropped() {
    use super::{Cause, Failures, Job};
    let room = Arc::new(tokio::sync::Semaphore::new(10));
    let job = |seq: u64, stream: &str| Job {
        seq,
        key: StreamKey::new("t", "management", stream),
        page: crate::store::IngestPage {
            stream: format!("t/management/{stream}"),
            tenant: "t".into(),
            source: "management".into(),
            name: stream.into(),
            body: Vec::new(),
            records: Vec::new(),
            checkpoint: Checkpoint::None,
            throttled: Vec::new(),
        },
        ttl_ms: 0,
        without_id: 0,
        _room: room.clone().try_acquire_owned().unwrap(),
    };
    let mut f = Failures { next_seq: 10, ..Failures::default() };
    f.fail(["t/management/A"].into_iter(), Cause::Task("boom".into()));
    assert!(!f.admits(&job(9, "A")), "not told yet: everything of A is dropped");
    assert!(!f.admits(&job(12, "A")));
    assert!(f.admits(&job(9, "B")), "another stream goes on");
    // A hears of it when seq 10 is next: what it sent before is dropped, what after is written.
    assert!(f.take("t/management/A").is_some());
    assert!(f.take("t/management/A").is_none(), "told once");
    assert!(!f.admits(&job(9, "A")), "sent before it was told");
    assert!(f.admits(&job(10, "A")), "sent after");
}

/// If the commit task ends (here: its pipeline is gone), a flush fails and so does the next
/// ingest, instead of waiting for ever: the streams show the error and retry.
#[tokio::test]
async fn when_the_commit_task_is_gone_flush_and_ingest_fail_instead_of_hanging() {
    let c = super::Committer::start(std::sync::Weak::new());
    let key = StreamKey::new("t", "management", "Audit.Exchange");
    let page = || crate::store::IngestPage {
        stream: key.id.clone(),
        tenant: "t".into(),
        source: "management".into(),
        name: "Audit.Exchange".into(),
        body: b"[]".to_vec(),
        records: Vec::new(),
        checkpoint: Checkpoint::Cursor("c".into()),
        throttled: Vec::new(),
    };
    c.submit(key.clone(), page(), 0, 0).await.unwrap();
    let flushed = tokio::time::timeout(Duration::from_secs(10), c.flush(Some(&key.id))).await;
    assert!(flushed.expect("flush returned").unwrap_err().to_string().contains("committer stopped"));
    assert!(c.submit(key.clone(), page(), 0, 0).await.unwrap_err().to_string().contains("committer stopped"));
}

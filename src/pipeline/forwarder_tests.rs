//! A forwarder over a real store with a scripted sink: order, routing, dead letters and the
//! committed offset.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::pipeline::StreamHandle;
use crate::sinks::{Accepted, CommonSinkSettings, Sink, SinkError, SinkFilter};
use crate::store::{Checkpoint, Store};

/// Confirms everything except the records whose id it refuses; remembers what it confirmed.
struct Recording {
    got: Arc<Mutex<Vec<String>>>,
    refuse: Option<String>,
}

#[async_trait::async_trait]
impl Sink for Recording {
    async fn send(&mut self, batch: &Batch, _: &mut Accepted) -> Result<(), SinkError> {
        if let Some(r) = &self.refuse
            && batch.records.iter().any(|x| x.id() == r || r == "*")
        {
            return Err(SinkError::Rejected("HTTP 400 bad record".into()));
        }
        self.got.lock().unwrap().extend(batch.records.iter().map(|r| r.id().to_string()));
        Ok(())
    }
}

use crate::pipeline::test_support::{settings, stream};

/// Ingests `ids` as one page of `handle`'s stream.
async fn page(handle: &StreamHandle, ids: &[String]) {
    let body = format!(
        "[{}]",
        ids.iter()
            .map(|i| format!("{{\"Id\":\"{i}\",\"CreationTime\":\"2026-11-21T10:00:00\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let parsed = crate::sources::record::parse_management_blob(body.as_bytes()).unwrap();
    handle.ingest(body.into_bytes(), parsed.records, 0, Checkpoint::None).await.unwrap();
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn run(
    streams: SinkFilter,
    refuse: Option<String>,
    fill: impl AsyncFnOnce(&Arc<Pipeline>),
) -> (Vec<String>, Arc<Store>, tempfile::TempDir) {
    run_with(streams, refuse, fill, async |_| {}).await
}

/// `during` runs while the forwarder works, before waiting for the backlog to drain.
async fn run_with(
    streams: SinkFilter,
    refuse: Option<String>,
    fill: impl AsyncFnOnce(&Arc<Pipeline>),
    during: impl AsyncFnOnce(&Arc<Pipeline>),
) -> (Vec<String>, Arc<Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.ensure_sinks(&["s".to_string()]).unwrap();
    let pipeline = Pipeline::new(store.clone(), settings());
    fill(&pipeline).await;
    // Ingest is group-committed: the pages are in the spool once flushed.
    pipeline.flush().await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = BuiltSink {
        common: CommonSinkSettings {
            name: "s".into(),
            filter: streams,
            batch_records: 7,
            batch_bytes: 1 << 20,
            linger: Duration::ZERO,
        },
        sink: Box::new(Recording { got: got.clone(), refuse }),
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(Forwarder::new(pipeline.clone(), sink).run(shutdown.clone()));
    during(&pipeline).await;
    pipeline.flush().await;
    let start = std::time::Instant::now();
    while store.backlogs().unwrap()[0].records > 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "backlog never drained: {:?}", store.backlogs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.begin_drain(Duration::from_secs(1));
    task.await.unwrap();
    let got = got.lock().unwrap().clone();
    (got, store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_record_once_in_spool_order_and_commits_the_offset() {
    let (a, b) = (ids("a", 20), ids("b", 13));
    let (got, store, _d) = run(SinkFilter::default(), None, async |p| {
        let h = stream(p, "Audit.Exchange").await;
        page(&h, &a).await;
        page(&h, &b).await;
    })
    .await;
    assert_eq!(got, [a, b].concat());
    let backlog = &store.backlogs().unwrap()[0];
    assert_eq!((backlog.records, backlog.delivered_total), (0, 33));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_sink_does_not_want_are_passed_over_and_the_offset_still_moves() {
    let (a, b) = (ids("a", 10), ids("b", 10));
    let only_sharepoint = SinkFilter { tenants: vec![], streams: vec!["Audit.SharePoint".into()] };
    let (got, store, _d) = run(only_sharepoint, None, async |p| {
        page(&stream(p, "Audit.Exchange").await, &a).await;
        page(&stream(p, "Audit.SharePoint").await, &b).await;
    })
    .await;
    assert_eq!(got, b);
    assert_eq!(store.backlogs().unwrap()[0].records, 0, "filtered records do not hold the spool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_goes_to_the_dead_letter_table_before_the_offset_moves() {
    let a = ids("a", 30);
    let poison = a[17].clone();
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = counted.clone();
    let (got, store, d) = run_with(
        SinkFilter::default(),
        Some(poison.clone()),
        async |p| page(&stream(p, "Audit.Exchange").await, &a).await,
        async move |p| {
            // No maintenance runs here: only the forwarder itself can have counted the bytes.
            let start = std::time::Instant::now();
            while p.dead_letter_bytes.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                assert!(start.elapsed() < Duration::from_secs(20), "dead-letter bytes never counted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen.store(
                p.dead_letter_bytes.load(std::sync::atomic::Ordering::Relaxed),
                std::sync::atomic::Ordering::Relaxed,
            );
        },
    )
    .await;
    let on_disk = store.usage().unwrap().dead_letter_bytes;
    assert_eq!(counted.load(std::sync::atomic::Ordering::Relaxed), on_disk, "counted as the table measures it");
    let rows = Store::open_read_only(d.path()).unwrap().dead_letters(&Default::default(), 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].record_id.as_str(), rows[0].reason.as_str()), (poison.as_str(), "HTTP 400 bad record"));
    let expected: Vec<String> = a.iter().filter(|i| **i != poison).cloned().collect();
    assert_eq!(got, expected);
    let dead = store.dead_letters_to_retry("s", 10).unwrap();
    assert!(dead.is_empty(), "not queued for retry until an operator asks");
    let counts = store.dead_letter_counts().unwrap();
    assert_eq!((counts.len(), counts[0].records), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_spool_row_is_set_aside_whole_and_delivery_goes_on() {
    let (a, b, c) = (ids("a", 5), ids("b", 5), ids("c", 5));
    let (got, store, d) = run(SinkFilter::default(), None, async |p| {
        let h = stream(p, "Audit.Exchange").await;
        page(&h, &a).await;
        page(&h, &b).await;
        page(&h, &c).await;
        p.flush().await;
        // The middle row's bytes rot on disk.
        let db = rusqlite::Connection::open(p.store.path()).unwrap();
        db.execute("UPDATE spool SET data = x'ffffff0f00c0ffee' WHERE seq = (SELECT min(seq) + 1 FROM spool)", [])
            .unwrap();
    })
    .await;
    assert_eq!(got, [a, c].concat(), "the rows around it are delivered, in order");
    assert_eq!(store.backlogs().unwrap()[0].records, 0);
    let rows = Store::open_read_only(d.path()).unwrap().dead_letters(&Default::default(), 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].record_id.starts_with("spool-row-"), "{:?}", rows[0]);
    assert!(rows[0].reason.contains("corrupt spool row of 5 record(s)"), "{}", rows[0].reason);
    assert_eq!(rows[0].raw, vec![0xff, 0xff, 0xff, 0x0f, 0x00, 0xc0, 0xff, 0xee], "kept as it was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_dead_letter_cap_the_sink_waits_and_a_batch_refused_whole_is_called_out() {
    let a = ids("a", 10);
    let (got, store, _d) = run_with(
        SinkFilter::default(),
        Some("*".into()),
        async |p| {
            page(&stream(p, "Audit.Exchange").await, &a).await;
            // As maintenance would measure a full table.
            p.dead_letter_bytes.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        },
        async |p| {
            let start = std::time::Instant::now();
            while !p.store.backlogs().unwrap()[0]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("dead-letter table is full")
            {
                assert!(start.elapsed() < Duration::from_secs(20), "the sink never said it waits");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(p.store.backlogs().unwrap()[0].records, 10, "nothing moved while it waits");
            assert!(p.store.dead_letter_counts().unwrap().is_empty());
            // An operator purges: room again.
            p.dead_letter_bytes.store(0, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .await;
    assert!(got.is_empty());
    let counts = store.dead_letter_counts().unwrap();
    assert_eq!(counts[0].records, 10, "every record set aside once there was room");
    let b = &store.backlogs().unwrap()[0];
    assert!(b.last_error.as_deref().unwrap_or("").contains("refused every record of a batch"), "{b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_behind_the_rows_kept_in_memory_reads_the_spool_then_takes_them_from_memory() {
    // 2 KB ids: 30 pages of 50 records are about 3 MB, more than the rows kept in memory.
    let pad = "x".repeat(2_000);
    let early: Vec<Vec<String>> = (0..30).map(|p| ids(&format!("e{p:02}-{pad}"), 50)).collect();
    let late: Vec<Vec<String>> = (0..5).map(|p| ids(&format!("l{p:02}"), 50)).collect();
    let (got, store, _d) = run_with(
        SinkFilter::default(),
        None,
        async |p| {
            let h = stream(p, "Audit.Exchange").await;
            for ids in &early {
                page(&h, ids).await;
            }
            p.flush().await;
            let recent = p.store.recent_rows();
            assert!(recent.take_from(1, 1).is_none(), "the first rows were let go: they are read from SQLite");
            assert!(recent.take_from(30, 1).is_some(), "the newest rows are kept");
        },
        async |p| {
            let h = stream(p, "Audit.Exchange").await;
            for ids in &late {
                page(&h, ids).await;
                p.flush().await;
            }
        },
    )
    .await;
    assert_eq!(got, [early.concat(), late.concat()].concat(), "every record once, in spool order");
    assert_eq!(store.backlogs().unwrap()[0].delivered_total, 35 * 50);
}

/// Remembers when each batch came and how many records it held.
struct Timed {
    sends: Arc<Mutex<Vec<(std::time::Instant, usize)>>>,
}

#[async_trait::async_trait]
impl Sink for Timed {
    async fn send(&mut self, batch: &Batch, _: &mut Accepted) -> Result<(), SinkError> {
        self.sends.lock().unwrap().push((std::time::Instant::now(), batch.records.len()));
        Ok(())
    }
}

/// A partial batch waits out its linger while pages keep coming (a trickle of blobs), and goes
/// once nothing is on its way (the end of a burst, a backlog after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_lingers_only_while_pages_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.ensure_sinks(&["s".to_string()]).unwrap();
    let pipeline = Pipeline::new(store.clone(), settings());
    let h = stream(&pipeline, "Audit.Exchange").await;
    // One full batch of 7 and 3 more, and nothing after them.
    page(&h, &ids("a", 10)).await;
    pipeline.flush().await;
    let sends = Arc::new(Mutex::new(Vec::new()));
    let linger = Duration::from_secs(60);
    let sink = BuiltSink {
        common: CommonSinkSettings {
            name: "s".into(),
            filter: SinkFilter::default(),
            batch_records: 7,
            batch_bytes: 1 << 20,
            linger,
        },
        sink: Box::new(Timed { sends: sends.clone() }),
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(Forwarder::new(pipeline.clone(), sink).run(shutdown.clone()));
    let start = std::time::Instant::now();
    let count = || sends.lock().unwrap().iter().map(|(_, n)| n).sum::<usize>();
    while count() < 10 {
        assert!(start.elapsed() < linger / 2, "the end of a burst waited out the linger: {:?}", sends.lock());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A trickle: a page of one record every 250 ms, for longer than a commit's linger (1 s),
    // so the first of them are in the spool well before the last is handed over. They wait for
    // each other and go together once the last one is in (well before the 60 s linger).
    let before = sends.lock().unwrap().len();
    let mut last = std::time::Instant::now();
    for i in 0..6 {
        page(&h, &ids(&format!("b{i:02}"), 1)).await;
        last = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    while count() < 16 {
        assert!(start.elapsed() < linger / 2, "the trickle was not delivered: {:?}", sends.lock());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let trickle: Vec<(std::time::Instant, usize)> = sends.lock().unwrap()[before..].to_vec();
    assert!(trickle[0].0 > last, "the trickle's first batch went before its last page: {trickle:?}");
    assert!(trickle.len() <= 2, "one batch (two if a commit straddled the check): {trickle:?}");
    shutdown.begin_drain(Duration::from_secs(10));
    task.await.unwrap();
    assert_eq!(store.backlogs().unwrap()[0].delivered_total, 16);
}

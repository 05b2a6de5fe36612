//! Backfill state: windows cut, split, done only by ingest, submissions counted.

use super::*;
use crate::store::{Checkpoint, IngestPage};

fn open() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    s.register_stream("t/audit_query/backfill", "t", "audit_query", "backfill").unwrap();
    (d, s)
}

fn job(s: &Store, days: i64) -> i64 {
    let j = NewBackfill {
        tenant: "t".into(),
        since_ms: 0,
        until_ms: days * 86_400_000,
        window_ms: 86_400_000,
        filters: BackfillFilters { operations: vec!["MailItemsAccessed".into()], ..Default::default() },
        origin: "command",
    };
    s.register_backfill(&j).unwrap()
}

fn done_page(w: &BackfillWindow, records: i64) -> IngestPage {
    read_page(w, records, None)
}

fn read_page(w: &BackfillWindow, records: i64, cut_short: Option<&str>) -> IngestPage {
    IngestPage {
        stream: "t/audit_query/backfill".into(),
        tenant: "t".into(),
        source: "audit_query".into(),
        name: "backfill".into(),
        body: Vec::new(),
        records: Vec::new(),
        checkpoint: Checkpoint::BackfillWindowDone {
            job: w.job,
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            records,
            cut_short: cut_short.map(str::to_string),
        },
        throttled: Vec::new(),
    }
}

#[test]
fn a_period_is_cut_into_windows_the_last_one_short() {
    assert_eq!(windows(0, 25, 10), vec![(0, 10), (10, 20), (20, 25)]);
    assert!(windows(5, 5, 10).is_empty());
}

#[test]
fn a_split_window_is_covered_by_its_halves_and_a_job_ends_when_none_is_left() {
    let (_d, s) = open();
    let id = job(&s, 2);
    let open = s.backfill_open_windows("t").unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].filters.operations, vec!["MailItemsAccessed".to_string()]);
    s.backfill_query_created("t", &open[0], "q1").unwrap();
    s.backfill_split_window(&open[0], 43_200_000, "truncated").unwrap();
    let open = s.backfill_open_windows("t").unwrap();
    let ranges: Vec<(i64, i64)> = open.iter().map(|w| (w.start_ms, w.end_ms)).collect();
    assert_eq!(ranges, vec![(0, 43_200_000), (43_200_000, 86_400_000), (86_400_000, 172_800_000)]);
    assert!(open.iter().all(|w| w.state == WindowState::Pending && w.query_id.is_none()));
    // Done only with the ingest of the last page; the job ends with its last window.
    for w in &open {
        s.ingest(&done_page(w, 7), 1_000, 0).unwrap();
    }
    assert_eq!(s.backfill_finish_jobs("t").unwrap(), vec![id]);
    let p = &s.backfill_jobs().unwrap()[0];
    assert_eq!((p.state.as_str(), p.windows_done, p.windows_total(), p.records), ("done", 3, 3, 21));
    assert_eq!(p.last_detail.as_deref(), Some("truncated"));
}

#[test]
fn a_running_window_keeps_its_query_and_submissions_count_for_a_day() {
    let (_d, s) = open();
    job(&s, 3);
    let open = s.backfill_open_windows("t").unwrap();
    s.backfill_query_created("t", &open[1], "q-1").unwrap();
    s.backfill_query_created("t", &open[2], "q-2").unwrap();
    assert_eq!(s.backfill_submissions_today("t").unwrap(), 2);
    assert_eq!(s.backfill_submissions_today("other").unwrap(), 0);
    let open = s.backfill_open_windows("t").unwrap();
    assert_eq!(open[1].query_id.as_deref(), Some("q-1"));
    assert_eq!((open[1].state, open[1].attempts), (WindowState::Running, 1));
    // A query that failed: pending again, attempts kept; given up: failed, shown, not open.
    s.backfill_retry_window(&open[1], "failed at Microsoft").unwrap();
    s.backfill_fail_window(&open[2], "still failing").unwrap();
    let left = s.backfill_open_windows("t").unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(left[1].attempts, 1);
    let p = &s.backfill_jobs().unwrap()[0];
    assert_eq!((p.windows_failed, p.windows_pending), (1, 2));
}

#[test]
fn a_cancelled_job_has_no_open_windows() {
    let (_d, s) = open();
    let id = job(&s, 2);
    assert!(s.cancel_backfill(id).unwrap());
    assert!(!s.cancel_backfill(id).unwrap(), "only an active job can be cancelled");
    assert!(s.backfill_open_windows("t").unwrap().is_empty());
    assert!(s.backfill_exists("t", "command").unwrap());
    assert!(!s.backfill_exists("t", "backfill_days").unwrap());
}

#[test]
fn a_window_cut_short_at_the_record_limit_is_failed_with_its_records_counted() {
    let (_d, s) = open();
    let id = job(&s, 1);
    let w = s.backfill_open_windows("t").unwrap().remove(0);
    s.ingest(&read_page(&w, 40, Some("truncated at the smallest window")), 1_000, 0).unwrap();
    assert_eq!(s.backfill_finish_jobs("t").unwrap(), vec![id], "nothing left to do");
    let p = &s.backfill_jobs().unwrap()[0];
    assert_eq!((p.windows_done, p.windows_failed, p.records), (0, 1, 40));
    assert_eq!(p.last_detail.as_deref(), Some("truncated at the smallest window"));
}

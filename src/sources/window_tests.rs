//! The planner with a fixed clock, for every kind of stream.

use std::time::Duration;

use super::*;
use crate::sources::graph::SPECS;

const H: Duration = Duration::from_secs(3600);
const D: Duration = Duration::from_secs(86_400);

fn t(s: &str) -> DateTime<Utc> {
    parse_cursor(s).unwrap()
}

fn management() -> Limits {
    Limits { retention: 7 * D, margin: Duration::from_secs(300), max_window: D, lag: Duration::ZERO }
}

/// Every stream kind the collector has, with its API's limits.
fn every_stream_kind() -> Vec<(&'static str, Limits)> {
    let mut v = vec![("management", management())];
    for s in SPECS {
        v.push((s.name, crate::sources::graph::stream::limits(s, Duration::from_secs(300))));
    }
    v
}

fn assert_well_formed(p: &Plan, limits: Limits, now: DateTime<Utc>) {
    let floor = now - dur(limits.retention) + dur(limits.margin);
    assert!(p.windows.windows(2).all(|w| w[0].1 == w[1].0), "windows must be contiguous: {p:?}");
    assert!(p.windows.iter().all(|(s, e)| s < e && *e - *s <= dur(limits.max_window)), "{p:?}");
    assert!(p.windows.first().is_none_or(|w| w.0 >= floor), "planned before retention: {p:?}");
    assert!(p.windows.last().is_none_or(|w| w.1 <= now - dur(limits.lag)), "planned after now - lag: {p:?}");
}

#[test]
fn first_start_backfills_in_legal_windows_within_retention() {
    let now = t("2026-11-21T12:00:00Z");
    let p = plan(None, now, Reach { backfill: 7 * D, overlap: H }, management());
    assert_eq!(p.windows.first().unwrap().0, t("2026-11-14T12:05:00Z"));
    assert_eq!(p.windows.last().unwrap().1, now);
    assert_eq!(p.gap, None);
    assert_well_formed(&p, management(), now);
}

#[test]
fn resume_rereads_the_overlap_and_stops_at_now_minus_lag() {
    let now = t("2026-11-21T12:00:00Z");
    let p = plan(Some(t("2026-11-21T11:00:00Z")), now, Reach { backfill: 7 * D, overlap: 6 * H }, management());
    assert_eq!(p.windows, vec![(t("2026-11-21T05:00:00Z"), now)]);
    let graph =
        Limits { retention: 30 * D, margin: Duration::from_secs(600), max_window: D, lag: Duration::from_secs(300) };
    let p = plan(Some(t("2026-11-21T11:00:00Z")), now, Reach { backfill: 30 * D, overlap: 2 * H }, graph);
    assert_eq!(p.windows, vec![(t("2026-11-21T09:00:00Z"), t("2026-11-21T11:55:00Z"))]);
    let p = plan(None, now, Reach { backfill: 90 * D, overlap: 2 * H }, graph);
    assert_eq!(p.windows.first().unwrap().0, t("2026-10-22T12:10:00Z"), "backfill capped by retention");
    assert_eq!(p.windows.len(), 30);
}

#[test]
fn a_cursor_older_than_retention_is_clamped_and_reported_for_every_stream_kind() {
    let now = t("2026-11-21T12:00:00Z");
    let old = t("2025-01-01T00:00:00Z");
    for (kind, limits) in every_stream_kind() {
        let p = plan(Some(old), now, Reach { backfill: D, overlap: H }, limits);
        let floor = now - dur(limits.retention) + dur(limits.margin);
        assert_eq!(p.gap, Some((old, floor)), "{kind}");
        assert_eq!(p.windows[0].0, floor, "{kind}: reading resumes at the oldest instant still served");
        assert_well_formed(&p, limits, now);
        // Just inside retention: the overlap reaches past the floor, but nothing is lost.
        let p = plan(Some(floor + chrono::Duration::minutes(1)), now, Reach { backfill: D, overlap: D }, limits);
        assert_eq!(p.gap, None, "{kind}");
        assert_eq!(p.windows[0].0, floor, "{kind}");
    }
}

#[test]
fn a_cursor_in_the_future_or_absurd_durations_plan_nothing_and_never_panic() {
    let now = t("2026-11-21T12:00:00Z");
    let p = plan(Some(t("2030-01-01T00:00:00Z")), now, Reach { backfill: D, overlap: H }, management());
    assert!(p.windows.is_empty() && p.gap.is_none());
    let huge = Duration::from_secs(u64::MAX / 4);
    let p = plan(None, now, Reach { backfill: huge, overlap: huge }, Limits { lag: huge, ..management() });
    assert!(p.windows.is_empty());
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    const YEAR: i64 = 365 * 86_400;

    proptest! {
        /// For any cursor and clock: contiguous windows covering exactly
        /// [max(cursor - overlap, floor), now - lag), never outside retention, and a gap exactly
        /// when the cursor is older than what the API still serves.
        #[test]
        fn windows_never_leave_a_hole_or_leave_retention(
            now_s in 1_600_000_000i64..1_900_000_000,
            cursor_back in proptest::option::of(-2 * 86_400i64..2 * YEAR),
            backfill in 0u64..(200 * 86_400),
            overlap in 0u64..(10 * 86_400),
            retention in 3_600u64..(200 * 86_400),
            margin in 0u64..7_200,
            max_window in 1u64..(30 * 86_400),
            lag in 0u64..(2 * 86_400),
        ) {
            let now = DateTime::from_timestamp(now_s, 0).unwrap() + chrono::Duration::milliseconds(now_s % 997);
            let cursor = cursor_back.map(|b| now - chrono::Duration::seconds(b));
            let limits = Limits {
                retention: Duration::from_secs(retention),
                margin: Duration::from_secs(margin),
                max_window: Duration::from_secs(max_window),
                lag: Duration::from_secs(lag),
            };
            let reach = Reach { backfill: Duration::from_secs(backfill), overlap: Duration::from_secs(overlap) };
            let p = plan(cursor, now, reach, limits);
            let floor = now - dur(limits.retention.saturating_sub(limits.margin));
            let end = now - dur(limits.lag);
            prop_assert!(p.windows.windows(2).all(|w| w[0].1 == w[1].0));
            prop_assert!(p.windows.iter().all(|(s, e)| s < e && *e - *s <= dur(limits.max_window)));
            if let (Some(first), Some(last)) = (p.windows.first(), p.windows.last()) {
                prop_assert!(first.0 >= floor, "before retention");
                prop_assert!(last.1 <= end, "after now - lag");
                let wanted = match cursor { Some(c) => c - dur(reach.overlap), None => now - dur(reach.backfill) };
                // Whole seconds: the start is the wanted instant (or the floor), rounded to a second.
                prop_assert!((first.0 - wanted.max(floor)).num_seconds().abs() <= 1);
                prop_assert!((end - last.1).num_seconds() < 1, "reads up to now - lag");
            }
            match cursor {
                Some(c) if c < floor => prop_assert_eq!(p.gap, Some((c, floor))),
                _ => prop_assert_eq!(p.gap, None),
            }
        }
    }
}

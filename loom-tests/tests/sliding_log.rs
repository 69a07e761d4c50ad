//! Loom model checks of the sliding window log's ring: concurrent admissions claim entries with
//! one CAS of the 128-bit head and fill in the previous batch's slots before it; readers
//! re-read the head. Each model pre-fills a ring that has already wrapped (so admissions
//! overwrite slots and help), then lets threads check at once, and judges exactly:
//!
//! * the cost admitted never exceeds what the trailing period leaves;
//! * admissions are consistent with a sequential order (their `remaining` values step down by
//!   their costs), denials saw a state of that order, and no denial was spurious;
//! * afterwards, later checks see exactly the entries admitted (nothing lost, nothing added).
#![cfg(loom)]
#![allow(clippy::unwrap_used, missing_docs)]

use core::time::Duration;
use loom::sync::Arc;
use loom::thread;
use traffik_core::{Decision, LogRing, Rate, SlidingLog};
use traffik_loom_tests::explore;

/// A log of `limit` per 10 ns whose ring has wrapped: `limit` entries at 0 ns (expired from
/// 10 ns on), then one at 10 ns (expiring at 20 ns).
fn prefilled(limit: u64) -> (SlidingLog, LogRing) {
    let log = SlidingLog::new(Rate::new(limit, Duration::from_nanos(10)).unwrap()).unwrap();
    let ring = LogRing::new(&log);
    assert!(ring.check(0, limit).unwrap().is_allowed());
    assert!(ring.check(10, 1).unwrap().is_allowed());
    (log, ring)
}

fn judge(limit: u64, left: u64, outcomes: &[(u64, Decision)]) -> u64 {
    let mut admitted: Vec<(u64, Decision)> = outcomes
        .iter()
        .copied()
        .filter(|(_, d)| d.is_allowed())
        .collect();
    admitted.sort_by_key(|(_, d)| core::cmp::Reverse(d.remaining()));
    let mut now_left = left;
    let mut seen = vec![left];
    for (cost, d) in &admitted {
        assert_eq!(d.limit(), limit);
        assert!(*cost <= now_left, "over-admitted: {outcomes:?}");
        now_left -= cost;
        assert_eq!(d.remaining(), now_left, "{outcomes:?}");
        seen.push(now_left);
    }
    for (cost, d) in outcomes.iter().filter(|(_, d)| d.is_denied()) {
        assert!(seen.contains(&d.remaining()), "{outcomes:?}");
        assert!(d.remaining() < *cost, "{outcomes:?}");
        assert!(*cost > now_left, "spurious denial: {outcomes:?}");
        assert!(d.retry_after_nanos() > 0);
    }
    now_left
}

#[test]
fn two_admissions_race_for_the_last_entry() {
    explore("sliding log 2 admissions + peek", || {
        // limit 2: at 12 ns the entry of 10 ns still counts, so exactly one more fits.
        let (log, ring) = prefilled(2);
        let shared = Arc::new((log, ring));
        let handles: Vec<_> = [1u64, 1]
            .into_iter()
            .map(|cost| {
                let s = Arc::clone(&shared);
                thread::spawn(move || (cost, s.1.check(12, cost).unwrap()))
            })
            .collect();
        let peek = shared.1.peek(12);
        assert!(
            peek.remaining() <= 1,
            "peek saw an expired entry count: {peek:?}"
        );
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(judge(2, 1, &outcomes), 0);
        let (log, ring) = &*shared;
        // The entry of 10 ns leaves at 20 ns; the new one (12 ns) at 22 ns.
        assert_eq!(ring.peek(19).remaining(), 0);
        assert_eq!(ring.peek(20).remaining(), 1);
        assert_eq!(ring.peek(21).remaining(), 1);
        assert_eq!(ring.peek(22).remaining(), 2);
    });
}

#[test]
fn three_admissions_of_different_costs() {
    explore("sliding log 3 admissions", || {
        // limit 3: at 11 ns only the entry of 10 ns counts, so 2 more units fit.
        let (log, ring) = prefilled(3);
        let shared = Arc::new((log, ring));
        let handles: Vec<_> = [1u64, 2, 1]
            .into_iter()
            .map(|cost| {
                let s = Arc::clone(&shared);
                thread::spawn(move || (cost, s.1.check(11, cost).unwrap()))
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let left = judge(3, 2, &outcomes);
        let admitted = 2 - left;
        let (log, ring) = &*shared;
        // At 20 ns only what was admitted at 11 ns counts; at 21 ns nothing does.
        assert_eq!(ring.peek(19).remaining(), 2 - admitted);
        assert_eq!(ring.peek(20).remaining(), 3 - admitted);
        assert_eq!(ring.peek(21).remaining(), 3);
    });
}

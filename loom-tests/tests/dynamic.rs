//! Loom model checks of the dynamic strategies' shared words.
//!
//! * `PriorityBudget`: checks of different priorities racing on one key's state word never
//!   admit more than the budget in total, and never admit a low priority into its reserve.
//! * `Adaptive`: reports racing each other lose no step, and a check racing a report decides
//!   under one of the two limits (the one before or the one after), never a torn one.
#![cfg(loom)]
#![allow(clippy::unwrap_used, missing_docs)]

use loom::sync::Arc;
use loom::thread;
use traffik_core::{Adaptive, ManualClock, PriorityBudget, PriorityLimiter, Rate};
use traffik_loom_tests::explore;

#[test]
fn racing_priorities_never_overdraw_the_budget() {
    explore("priority race", || {
        // Budget 3, low keeps 2 back: low may take 1, high all 3.
        let budget = PriorityBudget::new(Rate::per_second(1), 3, &[2, 0]).unwrap();
        let limiter = Arc::new(PriorityLimiter::new(budget, ManualClock::new()));
        let handles: Vec<_> = [(0usize, 2u64), (1, 2)]
            .into_iter()
            .map(|(priority, tries)| {
                let limiter = Arc::clone(&limiter);
                thread::spawn(move || {
                    (0..tries)
                        .filter(|_| limiter.check(priority, 1).unwrap().is_allowed())
                        .count()
                })
            })
            .collect();
        let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(counts[0] <= 1, "low went into its reserve: {counts:?}");
        // High's two always fit (3 - at most 1 taken by low).
        assert_eq!(counts[1], 2, "{counts:?}");
        assert!(counts[0] + counts[1] <= 3);
        assert_eq!(limiter.remaining() as usize, 3 - counts[0] - counts[1]);
    });
}

#[test]
fn racing_reports_lose_no_step_and_checks_see_a_whole_limit() {
    explore("adaptive race", || {
        let adaptive = Adaptive::builder(Rate::per_second(1), Rate::per_second(8), 0)
            .start(4)
            .burst(1)
            .build()
            .unwrap();
        let a = Arc::new(adaptive);
        let reporter = {
            let a = Arc::clone(&a);
            thread::spawn(move || a.report(1)) // above target: 4 -> 2 (or 5 -> 2)
        };
        let raiser = {
            let a = Arc::clone(&a);
            thread::spawn(move || a.report(0)) // at target: +1
        };
        let checker = {
            let a = Arc::clone(&a);
            thread::spawn(move || {
                use traffik_core::Algorithm;
                // A fresh key with burst 1: the first unit's TAT is one interval ahead.
                a.decide(0, 0, 1).unwrap().next.unwrap()
            })
        };
        reporter.join().unwrap();
        raiser.join().unwrap();
        let tat = checker.join().unwrap();
        // Either order of the two reports: 4 -> 2 -> 3, or 4 -> 5 -> 2.
        let limit = a.limit();
        assert!(limit == 3 || limit == 2, "lost a step: {limit}");
        // The check used one of the limits the word held: 4, 2, 5, or the final one.
        let intervals: Vec<u64> = [4u64, 2, 5, 3]
            .iter()
            .map(|l| 1_000_000_000u64.div_ceil(*l))
            .collect();
        assert!(intervals.contains(&tat), "torn interval {tat}");
    });
}

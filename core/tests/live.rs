//! Live algorithm changes: exact counts under a manual clock.
#![cfg(feature = "alloc")]
#![allow(clippy::unwrap_used, missing_docs)]

use core::time::Duration;
use std::sync::Arc;
use traffik_core::{
    AlgorithmKind, AnyAlgorithm, Gcra, KeyedLimiter, Limiter, Live, LiveError, ManualClock, Rate,
    TableConfig,
};

const MS: u64 = 1_000_000;

fn any(kind: AlgorithmKind, rate: Rate, burst: Option<u64>) -> AnyAlgorithm {
    AnyAlgorithm::new(kind, rate, burst).unwrap()
}

fn drain<F: Fn() -> bool>(check: F) -> u64 {
    let mut n = 0;
    while check() {
        n += 1;
        assert!(n <= 1_000_000, "never denied");
    }
    n
}

#[test]
fn gcra_rate_change_keeps_the_tat() {
    let clock = ManualClock::starting_at(1_000 * MS);
    let limiter = Limiter::new(
        Live::new(any(AlgorithmKind::Gcra, Rate::per_second(10), None)),
        &clock,
    );
    // 10/s, burst 10: ten at once; TAT = 1 s + 10 x 100 ms = 2 s.
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 10);
    assert_eq!(
        limiter.check(1).unwrap().retry_after(),
        Duration::from_millis(100)
    );
    // Faster (20/s, burst 20): the tolerance is 20 x 50 ms = 1 s, the TAT is 1 s ahead: empty.
    limiter.set_rate(Rate::per_second(20), None).unwrap();
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 0);
    assert_eq!(
        limiter.check(1).unwrap().retry_after(),
        Duration::from_millis(50)
    );
    assert_eq!(limiter.peek().limit(), 20);
    // 50 ms later, one unit of 50 ms fits: TAT 2.05 s.
    clock.advance(Duration::from_millis(50));
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 1);
    // Slower (1/s, burst 1): admitted once TAT + 1 s <= now + 1 s, that is at 2.05 s.
    limiter.set_rate(Rate::per_second(1), None).unwrap();
    assert_eq!(
        limiter.check(1).unwrap().retry_after(),
        Duration::from_millis(1_000)
    );
    clock.set(2_050 * MS - 1);
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 0);
    clock.set(2_050 * MS);
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 1);
    assert_eq!(limiter.algorithm().generation(), 2);
    // A burst change alone (10/s with burst 30) keeps the TAT (3.05 s) too: 30 x 100 ms = 3 s
    // of tolerance, so at 2.05 s, 20 units of 100 ms fit.
    limiter.set_rate(Rate::per_second(10), Some(30)).unwrap();
    assert_eq!(drain(|| limiter.check(1).unwrap().is_allowed()), 20);
}

#[test]
fn keyed_rate_change_keeps_every_key() {
    let clock = ManualClock::new();
    let limiter: KeyedLimiter<u64, _, _> = KeyedLimiter::new(
        Live::new(Gcra::new(Rate::per_second(5)).unwrap()),
        &clock,
        TableConfig::new(100, [1, 2, 3, 4]),
    )
    .unwrap();
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 5);
    assert_eq!(drain(|| limiter.check(&2, 1).unwrap().is_allowed()), 5);
    assert!(limiter.check(&3, 2).unwrap().is_allowed());
    limiter
        .set_algorithm(Gcra::new(Rate::per_second(10)).unwrap())
        .unwrap();
    // Keys 1 and 2 spent 1 s of TAT, the new tolerance is 1 s: empty. Key 3 spent 400 ms: six
    // units of 100 ms remain. A fresh key gets the whole new burst.
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 0);
    assert_eq!(drain(|| limiter.check(&3, 1).unwrap().is_allowed()), 6);
    assert_eq!(drain(|| limiter.check(&4, 1).unwrap().is_allowed()), 10);
    clock.advance(Duration::from_millis(300));
    assert_eq!(drain(|| limiter.check(&2, 1).unwrap().is_allowed()), 3);
    assert_eq!(limiter.len(), 4);
}

#[test]
fn changes_that_would_misread_state_are_refused() {
    let clock = ManualClock::new();
    let tb = any(AlgorithmKind::TokenBucket, Rate::per_second(10), None);
    let limiter = Limiter::new(Live::new(tb), &clock);
    assert!(limiter.check(4).unwrap().is_allowed());
    assert_eq!(
        limiter.set_rate(Rate::per_second(20), None),
        Err(LiveError::Incompatible)
    );
    assert_eq!(
        limiter.set_algorithm(any(AlgorithmKind::Gcra, Rate::per_second(10), None)),
        Err(LiveError::Incompatible)
    );
    // Nothing changed.
    assert_eq!(limiter.algorithm().generation(), 0);
    assert_eq!(limiter.peek().remaining(), 6);
    // The identical configuration is accepted, and so is unlimited and back.
    limiter.set_algorithm(tb).unwrap();
    limiter.set_rate(Rate::unlimited(), None).unwrap();
    assert!(limiter.check(1_000).unwrap().is_allowed());
    // Unlimited wrote nothing; a change away from it is judged against the token bucket that
    // wrote the state, so a different rate is still refused...
    assert_eq!(
        limiter.set_rate(Rate::per_second(20), None),
        Err(LiveError::Incompatible)
    );
    // ...and the same one finds the state as it was: 4 taken, 6 left.
    limiter.set_rate(Rate::per_second(10), None).unwrap();
    assert_eq!(limiter.peek().remaining(), 6);
    assert_eq!(limiter.algorithm().generation(), 3);
    assert!(matches!(
        limiter.set_rate(Rate::per_second(10), Some(0)),
        Err(LiveError::Config(_))
    ));
}

#[test]
fn concurrent_checks_and_changes_never_exceed_the_larger_burst() {
    // Threads check one key at a frozen instant while another flips the rate between 10/s
    // (burst 10) and 20/s (burst 20). A frozen clock means the TAT only grows; every admission
    // was made under one of the two algorithms, so the key never admits more than the larger
    // burst, and since the final TAT is exactly `admitted x interval` of whichever rate each
    // admission used, it is at most 1 s ahead.
    let clock = Arc::new(ManualClock::starting_at(5_000 * MS));
    let limiter = Arc::new(Limiter::new(
        Live::new(any(AlgorithmKind::Gcra, Rate::per_second(10), None)),
        Arc::clone(&clock),
    ));
    let admitted: u64 = std::thread::scope(|s| {
        let flipper = {
            let limiter = Arc::clone(&limiter);
            s.spawn(move || {
                for i in 0..2_000u64 {
                    let rate = if i % 2 == 0 { 20 } else { 10 };
                    limiter.set_rate(Rate::per_second(rate), None).unwrap();
                }
            })
        };
        let checkers: Vec<_> = (0..3)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                s.spawn(move || {
                    (0..2_000)
                        .filter(|_| limiter.check(1).unwrap().is_allowed())
                        .count() as u64
                })
            })
            .collect();
        flipper.join().unwrap();
        checkers.into_iter().map(|c| c.join().unwrap()).sum()
    });
    assert!((10..=20).contains(&admitted), "admitted {admitted}");
    assert_eq!(limiter.algorithm().generation(), 2_000);
}

mod prop {
    use super::*;
    use proptest::prelude::*;
    use traffik_core::{Algorithm, Clock, StateCell};

    #[derive(Clone, Debug)]
    enum Op {
        Check(u64),
        Advance(u64),
        SetRate(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..6).prop_map(Op::Check),
            2 => (0u64..400 * MS).prop_map(Op::Advance),
            1 => (1u64..20, 1u64..12).prop_map(|(l, b)| Op::SetRate(l, b)),
        ]
    }

    proptest! {
        /// A live limiter decides every check exactly as the algorithm current at that moment
        /// decides on the one state word, which no change ever touches.
        #[test]
        fn live_matches_the_current_algorithm_on_the_kept_state(
            ops in proptest::collection::vec(op(), 1..150),
        ) {
            let clock = ManualClock::starting_at(1_000 * MS);
            let first = super::any(AlgorithmKind::Gcra, Rate::per_second(5), Some(3));
            let limiter = Limiter::new(Live::new(first), &clock);
            let (model, mut current) = (StateCell::new(), first);
            for op in ops {
                match op {
                    Op::Check(cost) => {
                        let expected = model.apply(&current, clock.now(), cost);
                        prop_assert_eq!(limiter.check(cost), expected);
                    }
                    Op::Advance(dt) => clock.advance_nanos(dt),
                    Op::SetRate(limit, burst) => {
                        limiter.set_rate(Rate::per_second(limit), Some(burst)).unwrap();
                        current = super::any(AlgorithmKind::Gcra, Rate::per_second(limit), Some(burst));
                        prop_assert_eq!(limiter.algorithm().load(), current);
                        prop_assert_eq!(limiter.peek().limit(), current.capacity());
                    }
                }
            }
        }
    }
}

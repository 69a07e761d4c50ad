//! `check_many` decides exactly as the same checks made one by one: same keys, same costs,
//! same clock, a twin table with the same seeds.
#![cfg(feature = "alloc")]
#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use traffik_core::{
    AlgorithmKind, AnyAlgorithm, CheckError, Decision, KeyedLimiter, ManualClock, Rate, TableConfig,
};

const KINDS: [AlgorithmKind; 4] = [
    AlgorithmKind::Gcra,
    AlgorithmKind::TokenBucket,
    AlgorithmKind::SlidingWindowCounter,
    AlgorithmKind::FixedWindow,
];

fn table(
    kind: AlgorithmKind,
    capacity: usize,
    clock: &ManualClock,
) -> KeyedLimiter<u64, AnyAlgorithm, &ManualClock> {
    let alg = AnyAlgorithm::new(kind, Rate::per_second(5), None).unwrap();
    KeyedLimiter::new(alg, clock, TableConfig::new(capacity, [9, 8, 7, 6])).unwrap()
}

proptest! {
    #[test]
    fn batches_decide_like_one_check_at_a_time(
        kind in 0usize..KINDS.len(),
        // A small table and key space: repeats within a batch, full windows and reuse.
        capacity in 1usize..200,
        batches in proptest::collection::vec(
            (proptest::collection::vec(0u64..300, 0..40), 0u64..4, 0u64..400_000_000),
            1..12,
        ),
    ) {
        let clock = ManualClock::new();
        let batched = table(KINDS[kind], capacity, &clock);
        let single = table(KINDS[kind], capacity, &clock);
        for (keys, cost, step) in batches {
            let mut got: Vec<(usize, Result<Decision, CheckError>)> = Vec::new();
            batched.check_many(&keys, cost, |i, d| got.push((i, d)));
            let want: Vec<(usize, Result<Decision, CheckError>)> =
                keys.iter().map(|k| single.check(k, cost)).enumerate().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(batched.len(), single.len());
            clock.advance_nanos(step);
        }
    }
}

#[test]
fn borrowed_keys_and_unsized_key_types() {
    let clock = ManualClock::new();
    let alg = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(1), None).unwrap();
    let limiter: KeyedLimiter<str, _, _> =
        KeyedLimiter::new(alg, &clock, TableConfig::new(100, [1, 2, 3, 4])).unwrap();
    let mut allowed = Vec::new();
    limiter.check_many(&["a", "b", "a", "c"], 1, |i, d| {
        allowed.push((i, d.unwrap().is_allowed()));
    });
    assert_eq!(allowed, [(0, true), (1, true), (2, false), (3, true)]);
    // An empty batch calls nothing.
    limiter.check_many(&[] as &[&str], 1, |_, _| panic!("no keys, no results"));
}

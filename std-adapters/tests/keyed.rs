//! The keyed limiter: agreement with a HashMap of reference models, overflow policies, lazy
//! reclaim, and real-thread stress. (The key flood is in `flood.rs`, under a counting allocator.)
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/harness/reference/mod.rs"]
mod reference;

use proptest::prelude::*;
use reference::{Model, Spec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use traffik::{
    AnyAlgorithm, CheckError, Gcra, KeyedLimiter, ManualClock, OverflowPolicy, Rate, TableConfig,
};

const MS: u64 = 1_000_000;

#[derive(Clone, Debug)]
enum KeyOp {
    Check(u8, u64),
    Peek(u8),
    Reset(u8),
    Advance(u64),
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        1u64..=20,
        prop_oneof![Just(1_000u64), Just(999_983), Just(1_000_000_000)],
        0u8..5,
        1u64..40,
    )
        .prop_map(|(limit, period, kind, b)| {
            let rate = Rate::from_nanos(limit, period).unwrap();
            Spec::from_parts(kind, rate, 1 + b % (2 * limit))
        })
}

fn key_ops(period: u64) -> impl Strategy<Value = Vec<KeyOp>> {
    let op = prop_oneof![
        6 => (0u8..24, 0u64..25).prop_map(|(k, c)| KeyOp::Check(k, c)),
        1 => (0u8..24).prop_map(KeyOp::Peek),
        1 => (0u8..24).prop_map(KeyOp::Reset),
        2 => (0..=period * 2).prop_map(KeyOp::Advance),
    ];
    proptest::collection::vec(op, 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// With room for every key, the table decides exactly as one reference model per key.
    #[test]
    fn table_matches_hashmap_of_models(
        (spec, ops) in spec_strategy().prop_flat_map(|s| (Just(s), key_ops(s.period()))),
        shards in 1usize..9,
    ) {
        let clock = ManualClock::new();
        let builder = traffik::builder()
            .rate(spec.rate())
            .algorithm(spec.kind())
            .shards(shards)
            .capacity(64);
        let limiter: KeyedLimiter<u64, _, _> = match spec.burst() { Some(b) => builder.burst(b), None => builder }
            .build_with_clock(&clock)
            .unwrap();
        let mut models: HashMap<u64, Model> = HashMap::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                KeyOp::Advance(dt) => { now += dt; clock.set(now); }
                KeyOp::Check(k, cost) => {
                    let key = u64::from(k) * 0x9E37_79B9; // spread, still exact
                    let model = models.entry(key).or_insert_with(|| spec.reference());
                    prop_assert_eq!(limiter.check(&key, cost), model.decide(now, cost));
                }
                KeyOp::Peek(k) => {
                    let key = u64::from(k) * 0x9E37_79B9;
                    let mut copy = models.get(&key).cloned().unwrap_or_else(|| spec.reference());
                    prop_assert_eq!(limiter.peek(&key), copy.decide(now, 0).unwrap());
                }
                KeyOp::Reset(k) => {
                    let key = u64::from(k) * 0x9E37_79B9;
                    limiter.reset(&key);
                    if let Some(m) = models.get_mut(&key) { m.reset(); }
                }
            }
        }
        prop_assert!(limiter.len() <= 24);
    }
}

fn small_table(
    policy: OverflowPolicy,
    clock: &ManualClock,
) -> KeyedLimiter<u64, Gcra, &ManualClock> {
    let mut config = TableConfig::new(1, [9, 8, 7, 6]);
    config.shards = 1;
    config.overflow = policy;
    KeyedLimiter::new(Gcra::new(Rate::per_second(1)).unwrap(), clock, config).unwrap()
}

#[test]
fn overflow_policies() {
    let clock = ManualClock::new();
    for policy in [
        OverflowPolicy::Deny,
        OverflowPolicy::Allow,
        OverflowPolicy::EvictStalest,
    ] {
        let t = small_table(policy, &clock);
        let slots = t.stats().slots;
        assert_eq!(
            slots,
            traffik::traffik_core::table::WINDOW,
            "a one-shard table has one probe window of slots"
        );
        // Fill every slot with a non-fresh key, 1 ms apart: key 0 is then the closest to fresh.
        for k in 0..slots as u64 {
            assert!(t.check(&k, 1).unwrap().is_allowed());
            clock.advance_nanos(MS);
        }
        assert_eq!(t.len(), slots);
        let newcomer = 1_000u64;
        match policy {
            OverflowPolicy::Deny => {
                assert_eq!(t.check(&newcomer, 1), Err(CheckError::TableFull));
                assert_eq!(t.len(), slots);
            }
            OverflowPolicy::Allow => {
                let d = t.check(&newcomer, 1).unwrap();
                assert!(d.is_allowed());
                // Untracked: the newcomer is admitted again at once.
                assert!(t.check(&newcomer, 1).unwrap().is_allowed());
                assert_eq!(t.len(), slots);
            }
            _ => {
                assert!(t.check(&newcomer, 1).unwrap().is_allowed());
                assert!(t.check(&newcomer, 1).unwrap().is_denied(), "tracked now");
                assert_eq!(t.stats().evictions, 1);
                // The stalest was key 0 (charged first): it is gone and starts fresh.
                assert!(t.check(&0, 1).unwrap().is_allowed());
            }
        }
        assert!(t.stats().overflows >= 1);
        clock.set(0);
    }
}

#[test]
fn fresh_slots_are_reclaimed_lazily() {
    let clock = ManualClock::new();
    let t = small_table(OverflowPolicy::Deny, &clock);
    let slots = traffik::traffik_core::table::WINDOW as u64;
    for k in 0..slots {
        assert!(t.check(&k, 1).unwrap().is_allowed());
    }
    assert_eq!(t.check(&99, 1), Err(CheckError::TableFull));
    // One second later every key is fresh again: new keys take their slots.
    clock.advance_nanos(1_000 * MS);
    for k in 100..100 + slots {
        assert!(t.check(&k, 1).unwrap().is_allowed());
    }
    let stats = t.stats();
    assert_eq!(
        (stats.occupied as u64, stats.reclaims, stats.overflows),
        (slots, slots, 1)
    );
    // The new keys are charged; the old keys left nothing behind and are not tracked.
    clock.advance_nanos(1);
    assert!(t.check(&100, 1).unwrap().is_denied());
    assert_eq!(t.check(&0, 1), Err(CheckError::TableFull));
    // Once the new keys are fresh too, an old key comes back with a full budget.
    clock.advance_nanos(1_000 * MS);
    assert!(t.check(&0, 1).unwrap().is_allowed());
    assert!(t.check(&0, 1).unwrap().is_denied());
}

#[test]
fn threads_on_one_key_and_many_keys_admit_exactly() {
    let clock = Arc::new(ManualClock::new());
    let limiter: Arc<KeyedLimiter<u64, AnyAlgorithm, _>> = Arc::new(
        traffik::builder()
            .rate("50/s")
            .capacity(10_000)
            .build_with_clock(Arc::clone(&clock))
            .unwrap(),
    );
    let admitted = Arc::new(AtomicU64::new(0));
    let per_key: Arc<Vec<AtomicU64>> = Arc::new((0..200).map(|_| AtomicU64::new(0)).collect());
    for round in 0..3 {
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (limiter, admitted, per_key) = (&limiter, &admitted, &per_key);
                s.spawn(move || {
                    for i in 0..4_000u64 {
                        if limiter.check(&u64::MAX, 1).unwrap().is_allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        let k = (i * 7 + t) % 200;
                        if limiter.check(&k, 1).unwrap().is_allowed() {
                            per_key[k as usize].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // Time is frozen within a round: exactly the burst, then exactly one refill of 25.
        let expect = 50 + 25 * round;
        assert_eq!(admitted.load(Ordering::Relaxed), expect);
        for (k, c) in per_key.iter().enumerate() {
            assert_eq!(c.load(Ordering::Relaxed), expect, "key {k}");
        }
        clock.advance_nanos(500 * MS);
    }
}

#[test]
fn reset_and_clear_forget_charges_and_keys() {
    let clock = ManualClock::new();
    let limiter: KeyedLimiter<str, AnyAlgorithm, _> = traffik::builder()
        .rate("2/s")
        .capacity(100)
        .build_with_clock(&clock)
        .unwrap();
    for user in ["ann", "bob", "cy"] {
        assert_eq!(limiter.check(user, 2).unwrap().remaining(), 0);
    }
    assert_eq!(limiter.len(), 3);
    limiter.reset("bob");
    assert_eq!(
        limiter.peek("bob").remaining(),
        2,
        "reset restores the full budget"
    );
    assert_eq!(limiter.peek("ann").remaining(), 0, "other keys keep theirs");
    assert_eq!(
        limiter.len(),
        3,
        "a reset key keeps its (now reclaimable) slot"
    );
    limiter.reset("nobody");
    assert_eq!(limiter.len(), 3, "resetting an unknown key adds nothing");
    assert_eq!(limiter.peek("nobody").remaining(), 2);
    assert_eq!(limiter.len(), 3, "peeking an unknown key adds nothing");
    limiter.clear();
    assert!(limiter.is_empty());
    assert_eq!(limiter.capacity(), 100);
    assert!(limiter.check("ann", 2).unwrap().is_allowed());
    assert_eq!(limiter.len(), 1);
}

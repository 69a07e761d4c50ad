//! Per-key quotas and tiers: exact counts under a manual clock.
#![cfg(feature = "alloc")]
#![allow(clippy::unwrap_used, missing_docs)]

use core::cell::Cell;
use core::time::Duration;
use proptest::prelude::*;
use std::collections::HashMap;
use traffik_core::{
    Algorithm, AlgorithmKind, AnyAlgorithm, Clock, Gcra, KeyedLimiter, ManualClock, OverflowPolicy,
    QuotaError, QuotaLimiter, Quotas, Rate, TableConfig, Tiers,
};

fn config(capacity: usize) -> TableConfig {
    TableConfig::new(capacity, [11, 22, 33, 44])
}

/// Admits as many single-cost checks as it can at the current time.
fn drain<F: Fn() -> bool>(check: F) -> u64 {
    let mut n = 0;
    while check() {
        n += 1;
        assert!(n <= 1_000_000, "never denied");
    }
    n
}

#[test]
fn tiered_free_admits_ten_and_premium_fifty_at_once() {
    let tiers = Tiers::scaled(
        AlgorithmKind::Gcra,
        Rate::per_second(10),
        None,
        [1, 5],
        |user: &str| usize::from(user.starts_with("premium:")),
    )
    .unwrap();
    let clock = ManualClock::new();
    let limiter: QuotaLimiter<str, _, _> = QuotaLimiter::new(tiers, &clock, config(100)).unwrap();
    assert_eq!(
        drain(|| limiter.check("free:a", 1).unwrap().is_allowed()),
        10
    );
    assert_eq!(
        drain(|| limiter.check("premium:b", 1).unwrap().is_allowed()),
        50
    );
    // Premium refills at 50/s: one unit every 20 ms; free at one per 100 ms.
    clock.advance(Duration::from_millis(100));
    assert_eq!(
        drain(|| limiter.check("premium:b", 1).unwrap().is_allowed()),
        5
    );
    assert_eq!(
        drain(|| limiter.check("free:a", 1).unwrap().is_allowed()),
        1
    );
    // A cost above the tier's burst is refused with that tier's maximum.
    assert_eq!(
        limiter.check("free:c", 11).unwrap_err(),
        traffik_core::CheckError::InsufficientCapacity { max: 10 }
    );
    assert!(limiter.check("premium:c", 50).unwrap().is_allowed());
    // The refused check placed nothing.
    assert_eq!(limiter.len(), 3);
    assert_eq!(limiter.peek("free:a").limit(), 10);
    assert_eq!(limiter.peek("premium:b").limit(), 50);
}

#[test]
fn plans_from_a_map_with_unknown_tenants_on_the_default_tier() {
    let plans: HashMap<&str, usize> = [("acme", 1), ("globex", 2)].into_iter().collect();
    let tiers = Tiers::new(
        [
            Gcra::new(Rate::per_minute(3)).unwrap(),
            Gcra::new(Rate::per_minute(30)).unwrap(),
            Gcra::with_burst(Rate::per_minute(600), 5).unwrap(),
        ],
        move |tenant: &str| plans.get(tenant).copied().unwrap_or(0),
    )
    .unwrap();
    let clock = ManualClock::new();
    let limiter = QuotaLimiter::new(tiers, &clock, config(100)).unwrap();
    assert_eq!(
        drain(|| limiter.check("initech", 1).unwrap().is_allowed()),
        3
    );
    assert_eq!(drain(|| limiter.check("acme", 1).unwrap().is_allowed()), 30);
    assert_eq!(
        drain(|| limiter.check("globex", 1).unwrap().is_allowed()),
        5
    );
    // globex: 600/min is one per 100 ms.
    clock.advance(Duration::from_millis(300));
    assert_eq!(
        drain(|| limiter.check("globex", 1).unwrap().is_allowed()),
        3
    );
    assert_eq!(
        drain(|| limiter.check("initech", 1).unwrap().is_allowed()),
        0
    );
}

#[test]
fn a_key_moving_tier_keeps_its_tat() {
    // The tier comes from outside the key (a plan that changes at run time).
    let premium = Cell::new(false);
    let tiers = Tiers::scaled(
        AlgorithmKind::Gcra,
        Rate::per_second(10),
        None,
        [1, 5],
        |_: &u64| usize::from(premium.get()),
    )
    .unwrap();
    let clock = ManualClock::new();
    clock.set(1_000_000_000);
    let limiter = QuotaLimiter::new(tiers, &clock, config(10)).unwrap();
    // Free: 10 at once; the TAT is now + 10 * 100 ms = now + 1 s.
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 10);
    // Upgraded: the premium burst is 50 * 20 ms = 1 s ahead of now, and the TAT already is
    // 1 s ahead, so nothing more at this instant: no fresh burst for a key that just spent.
    premium.set(true);
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 0);
    // 100 ms later the horizon is 100 ms past the TAT: five premium units of 20 ms.
    clock.advance(Duration::from_millis(100));
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 5);
    // Downgraded: the TAT is now + 1 s and the free horizon is now + 1 s: nothing until one
    // free interval (100 ms) has passed, then one.
    premium.set(false);
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 0);
    clock.advance(Duration::from_millis(99));
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 1);
}

#[test]
fn incompatible_tiers_are_refused() {
    let tb = |n| AnyAlgorithm::new(AlgorithmKind::TokenBucket, Rate::per_second(n), None).unwrap();
    let fw = |n| AnyAlgorithm::new(AlgorithmKind::FixedWindow, Rate::per_second(n), None).unwrap();
    let gcra = |n| AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(n), None).unwrap();
    let open = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::unlimited(), None).unwrap();
    let pick = |_: &u64| 0;
    assert_eq!(
        Tiers::new([tb(10), tb(20)], pick).unwrap_err(),
        QuotaError::Incompatible {
            first: 0,
            second: 1
        }
    );
    assert_eq!(
        Tiers::new([gcra(10), open, fw(10)], pick).unwrap_err(),
        QuotaError::Incompatible {
            first: 0,
            second: 2
        }
    );
    assert!(Tiers::new([fw(10), fw(10), open], pick).is_ok());
    assert!(Tiers::new([gcra(1), gcra(1_000), open], pick).is_ok());
    let leaky = AnyAlgorithm::new(AlgorithmKind::LeakyBucket, Rate::per_second(7), Some(2));
    assert!(Tiers::new([gcra(1), leaky.unwrap()], pick).is_ok());
    assert_eq!(
        Tiers::scaled(
            AlgorithmKind::TokenBucket,
            Rate::per_second(10),
            None,
            [1, 5],
            pick
        )
        .unwrap_err(),
        QuotaError::Incompatible {
            first: 0,
            second: 1
        }
    );
    assert!(Tiers::scaled(
        AlgorithmKind::TokenBucket,
        Rate::per_second(10),
        None,
        [2, 2],
        pick
    )
    .is_ok());
    assert_eq!(
        Tiers::scaled(
            AlgorithmKind::Gcra,
            Rate::per_second(10),
            None,
            [1, 0],
            pick
        )
        .unwrap_err(),
        QuotaError::ZeroMultiplier { tier: 1 }
    );
    assert_eq!(
        Tiers::scaled(
            AlgorithmKind::Gcra,
            Rate::per_second(10),
            Some(u64::MAX / 2),
            [3, 1],
            pick
        )
        .unwrap_err(),
        QuotaError::MultiplierOverflow { tier: 0 }
    );
    assert!(matches!(
        Tiers::scaled(
            AlgorithmKind::FixedWindow,
            Rate::per_second(10),
            Some(3),
            [1],
            pick
        ),
        Err(QuotaError::Config { tier: 0, .. })
    ));
    // An unlimited base stays unlimited in every tier.
    let open_tiers = Tiers::scaled(AlgorithmKind::Gcra, Rate::unlimited(), None, [1, 5], pick);
    assert!(matches!(
        open_tiers.unwrap().tiers(),
        [AnyAlgorithm::Unlimited(_), AnyAlgorithm::Unlimited(_)]
    ));
}

#[test]
fn out_of_range_tier_is_the_default_tier() {
    let tiers = Tiers::new(
        [
            Gcra::new(Rate::per_second(2)).unwrap(),
            Gcra::new(Rate::per_second(4)).unwrap(),
        ],
        |k: &u64| *k as usize,
    )
    .unwrap();
    assert_eq!(tiers.select(&0).burst(), 2);
    assert_eq!(tiers.select(&1).burst(), 4);
    assert_eq!(tiers.select(&2).burst(), 2);
    assert_eq!(tiers.select(&u64::MAX).burst(), 2);
}

#[test]
fn reuse_judges_other_keys_under_every_tier() {
    // One tiny shard; slots fill up, so new keys must reclaim. With GCRA tiers the TAT is
    // absolute, so every tier (and the quota set, the max over them) says a state is fresh
    // once its TAT has passed: a slow key's slot is not reclaimed by a fast key's check
    // before then.
    let tiers = Tiers::scaled(
        AlgorithmKind::Gcra,
        Rate::per_second(1),
        None,
        [1, 100],
        |k: &u64| usize::from(*k >= 1_000),
    )
    .unwrap();
    assert_eq!(tiers.reset_after(5_000, 1_000), 4_000);
    let clock = ManualClock::new();
    let mut table = TableConfig::new(1, [1, 2, 3, 4]);
    table.shards = 1;
    table.overflow = OverflowPolicy::Deny;
    let limiter = QuotaLimiter::new(tiers, &clock, table).unwrap();
    let slots = limiter.stats().slots as u64;
    // Fill every slot with slow keys that have spent their one-unit burst.
    let mut placed = 0;
    for k in 0..slots * 4 {
        match limiter.check(&k, 1) {
            Ok(d) => {
                assert!(d.is_allowed());
                placed += 1;
            }
            Err(_) => break,
        }
    }
    assert_eq!(placed as usize, limiter.len());
    // A fast key finds no reclaimable slot while the slow keys' TATs are ahead.
    assert_eq!(
        limiter.check(&5_000, 1).unwrap_err(),
        traffik_core::CheckError::TableFull
    );
    // One second later every slow key is fresh again: the fast key takes a slot.
    clock.advance(Duration::from_secs(1));
    assert!(limiter.check(&5_000, 1).unwrap().is_allowed());
    assert_eq!(limiter.stats().reclaims, 1);
}

/// A quota set of one GCRA whose slots the table must keep `grace` longer than the TAT.
struct Sticky {
    gcra: Gcra,
    grace: u64,
}

impl Quotas<u64> for Sticky {
    type Algorithm = Gcra;
    fn select(&self, _: &u64) -> &Gcra {
        &self.gcra
    }
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        let tat = self.gcra.reset_after(state, now);
        if state == 0 {
            0
        } else {
            (state + self.grace).saturating_sub(now).max(tat)
        }
    }
}

#[test]
fn the_table_asks_the_quota_set_before_reclaiming() {
    // The checking algorithm would call a spent slot fresh at its TAT; the quota set says one
    // second later. The table must follow the quota set.
    let quotas = Sticky {
        gcra: Gcra::new(Rate::per_second(1)).unwrap(),
        grace: 1_000_000_000,
    };
    let clock = ManualClock::new();
    let mut table = TableConfig::new(1, [1, 2, 3, 4]);
    table.shards = 1;
    table.overflow = OverflowPolicy::Deny;
    let limiter = QuotaLimiter::new(quotas, &clock, table).unwrap();
    let slots = limiter.stats().slots as u64;
    for k in 0..slots {
        assert!(limiter.check(&k, 1).unwrap().is_allowed());
    }
    // TATs at 1 s: at 1.5 s the algorithm says fresh, the quota set says 500 ms more.
    clock.advance(Duration::from_millis(1_500));
    assert_eq!(
        limiter.check(&slots, 1).unwrap_err(),
        traffik_core::CheckError::TableFull
    );
    clock.advance(Duration::from_millis(500));
    assert!(limiter.check(&slots, 1).unwrap().is_allowed());
    assert_eq!(limiter.stats().reclaims, 1);
}

#[test]
fn a_live_tier_changes_without_resetting_its_keys() {
    let tiers = Tiers::scaled(
        AlgorithmKind::Gcra,
        Rate::per_second(10),
        None,
        [1, 5],
        |k: &u64| usize::from(*k >= 100),
    )
    .unwrap()
    .live();
    let clock = ManualClock::starting_at(1_000_000_000);
    let limiter = QuotaLimiter::new(tiers, &clock, config(100)).unwrap();
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 10);
    assert!(limiter.check(&100, 20).unwrap().is_allowed());
    // Free becomes 20/s with a burst of 20 (tolerance 1 s): key 1's TAT is 1 s ahead, so it
    // gets nothing now, while a fresh free key gets 20; premium (key 100, TAT 400 ms ahead,
    // 50/s) is untouched: 30 more.
    let free = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(20), None).unwrap();
    limiter.quotas().set_tier(0, free).unwrap();
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 0);
    assert_eq!(drain(|| limiter.check(&2, 1).unwrap().is_allowed()), 20);
    assert_eq!(drain(|| limiter.check(&100, 1).unwrap().is_allowed()), 30);
    clock.advance(Duration::from_millis(50));
    assert_eq!(drain(|| limiter.check(&1, 1).unwrap().is_allowed()), 1);
    // Refusals change nothing.
    let window = AnyAlgorithm::new(AlgorithmKind::FixedWindow, Rate::per_second(20), None);
    assert_eq!(
        limiter.quotas().set_tier(1, window.unwrap()).unwrap_err(),
        QuotaError::Incompatible {
            first: 0,
            second: 1
        }
    );
    assert_eq!(
        limiter.quotas().set_tier(2, free).unwrap_err(),
        QuotaError::NoSuchTier { tier: 2, tiers: 2 }
    );
    assert_eq!(limiter.quotas().tiers()[1].generation(), 0);
    assert_eq!(limiter.quotas().tiers()[0].generation(), 1);
    assert_eq!(limiter.peek(&100).limit(), 50);
}

#[test]
fn a_single_tier_decides_like_the_fixed_table() {
    let gcra = Gcra::with_burst(Rate::per_second(3), 2).unwrap();
    let clock = ManualClock::new();
    let fixed: KeyedLimiter<u64, _, _> = KeyedLimiter::new(gcra, &clock, config(64)).unwrap();
    let quota =
        QuotaLimiter::new(Tiers::new([gcra], |_: &u64| 0).unwrap(), &clock, config(64)).unwrap();
    for step in 0..200u64 {
        let key = step % 5;
        let cost = step % 3;
        assert_eq!(fixed.check(&key, cost), quota.check(&key, cost));
        clock.advance_nanos(37_000_000 + step * 1_000);
    }
}

proptest! {
    /// Each key decides exactly as a lone limiter with its tier's algorithm would, whatever
    /// the interleaving of keys and tiers.
    #[test]
    fn each_key_matches_its_own_tier(
        ops in proptest::collection::vec((0u64..6, 0u64..4, 0u64..300_000_000), 1..200),
    ) {
        let tiers = Tiers::scaled(AlgorithmKind::Gcra, Rate::per_second(4), Some(2), [1, 3, 7],
            |k: &u64| (*k % 3) as usize).unwrap();
        let clock = ManualClock::new();
        let limiter = QuotaLimiter::new(tiers.clone(), &clock, config(64)).unwrap();
        let mut states = [0u64; 6];
        for (key, cost, dt) in ops {
            clock.advance_nanos(dt);
            let alg = tiers.select(&key);
            let expected = alg.decide(states[key as usize], clock.now(), cost);
            if let Ok(t) = expected {
                if let Some(next) = t.next {
                    states[key as usize] = next;
                }
            }
            prop_assert_eq!(limiter.check(&key, cost), expected.map(|t| t.decision));
        }
    }
}

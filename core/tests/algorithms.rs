//! Exact vectors for every algorithm, and property tests against the reference models.
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/harness/reference/mod.rs"]
mod reference;

use core::time::Duration;
use proptest::prelude::*;
use reference::{check_period_bound, differential, Op, Spec};
use traffik_core::{
    Algorithm, AlgorithmKind, AnyAlgorithm, CheckError, ConfigError, DebtBucket, Decision,
    FixedWindow, Gcra, LeakyBucket, Limiter, ManualClock, QuotaRollover, Rate, Rollover,
    SlidingWindowCounter, TokenBucket,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Applies a check to a packed state, returning the decision and updating the state.
fn step<A: Algorithm>(alg: &A, state: &mut u64, now: u64, cost: u64) -> Decision {
    let t = alg.decide(*state, now, cost).expect("check");
    if let Some(next) = t.next {
        *state = next;
    }
    t.decision
}

#[test]
fn gcra_burst_refill_and_exact_retry() {
    let gcra = Gcra::new(Rate::per_second(10)).unwrap();
    assert_eq!(gcra.interval_nanos(), 100 * MS);
    let mut s = 0;
    assert_eq!(step(&gcra, &mut s, 0, 10), Decision::allow(10, 0, SEC));
    assert_eq!(
        step(&gcra, &mut s, 0, 1),
        Decision::deny(10, 0, 100 * MS, SEC)
    );
    assert_eq!(step(&gcra, &mut s, 100 * MS - 1, 1).retry_after_nanos(), 1);
    assert_eq!(
        step(&gcra, &mut s, 100 * MS, 1),
        Decision::allow(10, 0, SEC)
    );
    // Cost 3 needs three intervals of room.
    assert_eq!(
        step(&gcra, &mut s, 100 * MS, 3),
        Decision::deny(10, 0, 300 * MS, SEC)
    );
    // Half a second later five units have drained.
    assert_eq!(
        step(&gcra, &mut s, 600 * MS, 3),
        Decision::allow(10, 2, 800 * MS)
    );
    assert_eq!(
        gcra.decide(s, 0, 11),
        Err(CheckError::InsufficientCapacity { max: 10 })
    );
}

#[test]
fn gcra_rounds_the_interval_up() {
    let gcra = Gcra::new(Rate::per_second(3)).unwrap();
    assert_eq!(gcra.interval_nanos(), 333_333_334);
    let mut s = 0;
    for _ in 0..3 {
        assert!(step(&gcra, &mut s, 0, 1).is_allowed());
    }
    assert_eq!(step(&gcra, &mut s, 0, 1).retry_after_nanos(), 333_333_334);
}

#[test]
fn gcra_burst_one_spaces_requests() {
    let gcra = Gcra::with_burst(Rate::per_second(4), 1).unwrap();
    let mut s = 0;
    assert_eq!(step(&gcra, &mut s, 5, 1), Decision::allow(1, 0, 250 * MS));
    assert_eq!(
        step(&gcra, &mut s, 6, 1),
        Decision::deny(1, 0, 250 * MS - 1, 250 * MS - 1)
    );
    assert!(step(&gcra, &mut s, 250 * MS + 5, 1).is_allowed());
}

#[test]
fn leaky_bucket_matches_gcra_and_reports_capacity() {
    let leaky = LeakyBucket::with_capacity(Rate::per_second(2), 3).unwrap();
    let gcra = Gcra::with_burst(Rate::per_second(2), 3).unwrap();
    assert_eq!(leaky.bucket_capacity(), 3);
    assert_eq!(leaky.drain_interval_nanos(), 500 * MS);
    let (mut a, mut b) = (0, 0);
    for (now, cost) in [(0, 2), (0, 2), (100 * MS, 1), (700 * MS, 2), (900 * MS, 1)] {
        assert_eq!(
            step(&leaky, &mut a, now, cost),
            step(&gcra, &mut b, now, cost)
        );
    }
}

#[test]
fn token_bucket_refills_whole_tokens_exactly() {
    let tb = TokenBucket::new(Rate::per_second(10)).unwrap();
    let mut s = 0;
    assert_eq!(step(&tb, &mut s, 0, 10), Decision::allow(10, 0, SEC));
    assert_eq!(
        step(&tb, &mut s, 0, 3),
        Decision::deny(10, 0, 300 * MS, SEC)
    );
    assert_eq!(step(&tb, &mut s, 300 * MS - 1, 3).retry_after_nanos(), 1);
    // Empty again, and a full refill takes a second.
    assert_eq!(step(&tb, &mut s, 300 * MS, 3), Decision::allow(10, 0, SEC));
    // A capacity below the rate: 5 tokens, 1 per second.
    let small = TokenBucket::with_capacity(Rate::per_second(1), 5).unwrap();
    let mut s = 0;
    assert_eq!(step(&small, &mut s, 0, 5), Decision::allow(5, 0, 5 * SEC));
    assert_eq!(
        step(&small, &mut s, 2_500 * MS, 3),
        Decision::deny(5, 2, 500 * MS, 2_500 * MS)
    );
    assert_eq!(
        small.decide(s, 0, 6),
        Err(CheckError::InsufficientCapacity { max: 5 })
    );
}

#[test]
fn token_bucket_rational_rate_has_no_drift() {
    // 3 per second: tokens appear at ceil(k * 1e9 / 3) ns, exactly 3 per second forever.
    let tb = TokenBucket::with_capacity(Rate::per_second(3), 1).unwrap();
    let mut s = 0;
    let mut admitted = 0;
    let mut now = 0;
    while now < 1_000 * SEC {
        if step(&tb, &mut s, now, 1).is_allowed() {
            admitted += 1;
        }
        now += 111 * MS;
    }
    // One at t=0 plus one per token produced in the 999.9 s that follow.
    assert_eq!(admitted, 1 + 2_999);
    let mut s = 0;
    let _ = step(&tb, &mut s, 0, 1);
    assert_eq!(step(&tb, &mut s, 0, 1).retry_after_nanos(), 333_333_334);
}

#[test]
fn fixed_window_counts_per_aligned_window() {
    let fw = FixedWindow::new(Rate::per_second(5)).unwrap();
    let mut s = 0;
    assert_eq!(
        step(&fw, &mut s, 200 * MS, 5),
        Decision::allow(5, 0, 800 * MS)
    );
    assert_eq!(
        step(&fw, &mut s, 900 * MS, 1),
        Decision::deny(5, 0, 100 * MS, 100 * MS)
    );
    assert_eq!(step(&fw, &mut s, SEC, 1), Decision::allow(5, 4, SEC));
    // The documented 2x across a boundary: 5 at the end of one window, 5 at the start of the next.
    let mut s = 0;
    assert!(step(&fw, &mut s, 2 * SEC - 1, 5).is_allowed());
    assert!(step(&fw, &mut s, 2 * SEC, 5).is_allowed());
}

#[test]
fn sliding_window_weights_the_previous_window() {
    let sw = SlidingWindowCounter::new(Rate::per_second(10)).unwrap();
    let mut s = 0;
    assert_eq!(
        step(&sw, &mut s, 500 * MS, 10),
        Decision::allow(10, 0, 1_500 * MS)
    );
    // Half-way through the next window the previous one still weighs 5.
    assert_eq!(
        step(&sw, &mut s, 1_500 * MS, 0),
        Decision::allow(10, 5, 500 * MS)
    );
    // Six more must wait until the weight falls to 4: 100 ms.
    assert_eq!(
        step(&sw, &mut s, 1_500 * MS, 6),
        Decision::deny(10, 5, 100 * MS, 500 * MS)
    );
    assert!(step(&sw, &mut s, 1_600 * MS - 1, 6).is_denied());
    assert_eq!(
        step(&sw, &mut s, 1_600 * MS, 6),
        Decision::allow(10, 0, 1_400 * MS)
    );
    // Window 1 holds 6 and window 0 weighs ceil(10 * 0.3) = 3 at 1.7 s: two more need the
    // weight down to 2, which it reaches at 1.8 s.
    assert_eq!(
        step(&sw, &mut s, 1_700 * MS, 2).retry_after_nanos(),
        100 * MS
    );
}

/// Traffik's scenario: "10/s" with a debt of 10 admits 20 at once, then the refill rate.
#[test]
fn debt_bucket_admits_twenty_at_once_then_the_refill_rate() {
    let clock = ManualClock::new();
    let bucket = DebtBucket::new(Rate::per_second(10), 10).unwrap();
    let limiter = Limiter::new(bucket, &clock);
    // 20 at once: the 10 tokens held and 10 borrowed, in one check.
    assert_eq!(limiter.check(20).unwrap(), Decision::allow(20, 0, 2 * SEC));
    // In debt: refused until the debt is repaid, one second at 10/s.
    assert_eq!(
        limiter.check(1).unwrap(),
        Decision::deny(20, 0, SEC, 2 * SEC)
    );
    clock.advance(Duration::from_nanos(SEC - 1));
    assert!(limiter.check(1).unwrap().is_denied());
    clock.advance(Duration::from_nanos(1));
    let mut admitted = Vec::new();
    // Then one per 100 ms: over the next second, probing every millisecond, exactly 10.
    for now in (SEC..2 * SEC).step_by(MS as usize) {
        clock.set(now);
        if limiter.check(1).unwrap().is_allowed() {
            admitted.push(now);
        }
    }
    let expected: Vec<u64> = (0..10).map(|k| SEC + k * 100 * MS).collect();
    assert_eq!(admitted, expected);
    // The typed peek: one token owed right after an admission at balance zero.
    assert_eq!(bucket.balance(0, 0).tokens(), 10);
    let s = bucket.decide(0, 0, 11).unwrap().next.unwrap();
    let b = bucket.balance(s, 0);
    assert_eq!((b.tokens(), b.debt(), b.in_debt()), (0, 1, true));
}

#[test]
fn debt_bucket_unit_checks_borrow_once_and_repay() {
    let bucket = DebtBucket::new(Rate::per_second(10), 10).unwrap();
    let mut s = 0;
    // Unit checks from a full bucket: ten from the tokens, the eleventh borrows one.
    for k in 0..11 {
        assert_eq!(
            step(&bucket, &mut s, 0, 1),
            Decision::allow(20, if k < 10 { 19 - k } else { 0 }, 100 * MS * (k + 1))
        );
    }
    assert_eq!(
        step(&bucket, &mut s, 0, 1),
        Decision::deny(20, 0, 100 * MS, 1_100 * MS)
    );
    // Out of debt at 100 ms with nothing in hand: one may borrow up to the whole debt.
    assert_eq!(
        step(&bucket, &mut s, 100 * MS, 10),
        Decision::allow(20, 0, 2 * SEC)
    );
    // A cost that needs tokens in hand waits for them: 10 owed, then 5 more for a cost of 15.
    assert_eq!(
        step(&bucket, &mut s, 100 * MS, 15),
        Decision::deny(20, 0, 1_500 * MS, 2 * SEC)
    );
    assert_eq!(
        bucket.decide(s, 0, 21),
        Err(CheckError::InsufficientCapacity { max: 20 })
    );
    assert_eq!(bucket.reset_after(s, 100 * MS), 2 * SEC);
    assert_eq!(bucket.reset_after(s, 2_100 * MS), 0);
}

#[test]
fn debt_bucket_without_debt_is_the_token_bucket() {
    let debt = DebtBucket::with_capacity(Rate::per_second(3), 4, 0).unwrap();
    let tb = TokenBucket::with_capacity(Rate::per_second(3), 4).unwrap();
    let (mut a, mut b) = (0, 0);
    for (now, cost) in [
        (0, 3),
        (1, 2),
        (400 * MS, 2),
        (700 * MS, 1),
        (SEC, 4),
        (5 * SEC, 4),
    ] {
        assert_eq!(step(&debt, &mut a, now, cost), step(&tb, &mut b, now, cost));
        assert_eq!(a, b);
    }
}

/// Traffik's scenario: "100/s", rollover 0.5, max 50: use 60, the next period admits 120 and
/// denies the 121st.
#[test]
fn rollover_uses_sixty_then_admits_one_hundred_and_twenty() {
    let clock = ManualClock::new();
    let quota = QuotaRollover::new(Rate::per_second(100), Rollover::new(1, 2, 50)).unwrap();
    let limiter = Limiter::new(quota, &clock);
    let run = |n: u64| {
        (0..n)
            .filter(|_| limiter.check(1).unwrap().is_allowed())
            .count()
    };
    // A fresh key counts as following an unused period: 100 + min(50, 50).
    assert_eq!(run(200), 150);
    // Nothing left to carry after using the whole own limit.
    clock.set(SEC);
    assert_eq!(run(60), 60);
    assert_eq!(quota.quota(0, 0).remaining(), 150);
    // Use 60 of 100: 40 unused, half carries.
    clock.set(2 * SEC);
    assert_eq!(run(120), 120);
    let denied = limiter.check(1).unwrap();
    assert_eq!(denied, Decision::deny(150, 0, SEC, 2 * SEC));
    // The same 60 used in a period that had received carry: only the own limit's 40 counts.
    clock.set(10 * SEC);
    assert_eq!(run(60), 60);
    clock.set(11 * SEC + 500 * MS);
    let peek = limiter.peek();
    assert_eq!(peek, Decision::allow(150, 120, SEC / 2));
    assert_eq!(run(200), 120);
}

#[test]
fn rollover_carries_from_the_previous_period_only() {
    let quota = QuotaRollover::new(Rate::per_second(10), Rollover::new(2, 3, 5)).unwrap();
    assert_eq!(quota.max_carry(), 5);
    let mut s = 0;
    // Period 0: fresh, 10 + 5; use 4 of them.
    // Fresh again only after a period passes on the most: two periods from now.
    assert_eq!(step(&quota, &mut s, 0, 4), Decision::allow(15, 11, 2 * SEC));
    // Period 1: 6 unused, two thirds is 4.
    let v = quota.quota(s, SEC);
    assert_eq!((v.used(), v.carried(), v.remaining()), (0, 4, 14));
    assert_eq!(
        step(&quota, &mut s, SEC, 9),
        Decision::allow(15, 5, 2 * SEC)
    );
    // Period 2: 1 unused, floor(2/3) = 0; 11 needs a period after an unused one.
    assert_eq!(quota.quota(s, 2 * SEC).carried(), 0);
    assert_eq!(
        step(&quota, &mut s, 2 * SEC, 11),
        Decision::deny(15, 10, SEC, SEC)
    );
    // Period 3 follows period 2, unused: full carry, and the key is fresh again.
    assert_eq!(quota.reset_after(s, 2 * SEC), SEC);
    assert_eq!(quota.quota(s, 3 * SEC).carried(), 5);
    assert_eq!(quota.reset_after(s, 3 * SEC), 0);
    assert_eq!(
        quota.decide(s, 0, 16),
        Err(CheckError::InsufficientCapacity { max: 15 })
    );
    // A check that fits only after an unused period waits two periods.
    let mut s = 0;
    let _ = step(&quota, &mut s, 0, 10);
    assert_eq!(
        step(&quota, &mut s, 100 * MS, 12),
        Decision::deny(15, 5, 1_900 * MS, 1_900 * MS)
    );
}

#[test]
fn strategy_configurations_are_typed() {
    assert_eq!(
        QuotaRollover::new(Rate::per_second(10), Rollover::new(3, 2, 5)),
        Err(ConfigError::RolloverFraction {
            numerator: 3,
            denominator: 2
        })
    );
    assert_eq!(
        QuotaRollover::new(Rate::per_second(10), Rollover::new(0, 0, 5)),
        Err(ConfigError::RolloverFraction {
            numerator: 0,
            denominator: 0
        })
    );
    assert_eq!(
        ConfigError::RolloverFraction {
            numerator: 3,
            denominator: 2
        }
        .to_string(),
        "rollover fraction 3/2 must have a non-zero denominator and be at most 1"
    );
    assert_eq!(
        QuotaRollover::new(Rate::per_day(1 << 22), Rollover::new(1, 2, 0)),
        Err(ConfigError::LimitTooLarge { max: (1 << 22) - 1 })
    );
    assert_eq!(
        DebtBucket::with_capacity(Rate::per_second(1), 0, 5),
        Err(ConfigError::ZeroBurst)
    );
    assert_eq!(
        DebtBucket::with_capacity(Rate::per_second(1), 1 << 61, 1 << 61),
        Err(ConfigError::BurstOverflow)
    );
    let debt = AlgorithmKind::DebtBucket { max_debt: 10 };
    let any = AnyAlgorithm::new(debt, Rate::per_second(10), Some(5)).unwrap();
    assert_eq!((any.kind(), any.capacity()), (Some(debt), 15));
    let roll = AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 50));
    let any = AnyAlgorithm::new(roll, Rate::per_second(100), None).unwrap();
    assert_eq!((any.kind(), any.capacity()), (Some(roll), 150));
    assert_eq!(
        AnyAlgorithm::new(roll, Rate::per_second(100), Some(10)),
        Err(ConfigError::BurstNotSupported)
    );
}

#[test]
fn unlimited_and_invalid_configurations() {
    let open =
        AnyAlgorithm::new(AlgorithmKind::SlidingWindowCounter, Rate::unlimited(), None).unwrap();
    let t = open.decide(0, 0, u64::MAX).unwrap();
    assert!(t.decision.is_allowed() && t.next.is_none());
    assert_eq!(
        Gcra::new(Rate::unlimited()),
        Err(ConfigError::UnlimitedRate)
    );
    assert_eq!(Gcra::new(Rate::per_second(0)), Err(ConfigError::ZeroLimit));
    assert_eq!(
        Gcra::with_burst(Rate::per_second(1), 0),
        Err(ConfigError::ZeroBurst)
    );
    assert_eq!(
        TokenBucket::new(Rate::from_nanos(10, 5).unwrap()),
        Err(ConfigError::RateTooFast {
            limit: 10,
            period_nanos: 5
        })
    );
    assert_eq!(
        Gcra::with_burst(Rate::per_day(1), u64::MAX / 1000),
        Err(ConfigError::BurstOverflow)
    );
    assert_eq!(
        SlidingWindowCounter::new(Rate::per_day(1 << 23)),
        Err(ConfigError::LimitTooLarge { max: (1 << 23) - 1 })
    );
    assert_eq!(
        AnyAlgorithm::new(AlgorithmKind::FixedWindow, Rate::per_second(5), Some(7)),
        Err(ConfigError::BurstNotSupported)
    );
}

#[test]
fn limiter_peek_reset_and_backwards_clock() {
    let clock = ManualClock::starting_at(10 * SEC);
    let limiter = Limiter::new(Gcra::new(Rate::per_second(2)).unwrap(), &clock);
    assert!(limiter.check(2).unwrap().is_allowed());
    let peek = limiter.peek();
    assert_eq!((peek.is_allowed(), peek.remaining()), (true, 0));
    assert!(limiter.check(1).unwrap().is_denied());
    // The clock steps back a whole second: still denied, with a finite, longer wait.
    clock.set(9 * SEC);
    let d = limiter.check(1).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Duration::from_millis(1_500));
    limiter.reset();
    assert_eq!(limiter.check(2).unwrap().remaining(), 0);
}

fn rate_strategy() -> impl Strategy<Value = Rate> {
    (
        1u64..=300,
        prop_oneof![
            Just(1u64),
            1u64..5_000,
            Just(999_983),
            Just(SEC),
            Just(60 * SEC)
        ],
    )
        .prop_map(|(limit, period)| Rate::from_nanos(limit, period.max(limit)).unwrap())
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (rate_strategy(), any::<u8>(), 1u64..=600)
        .prop_map(|(rate, kind, b)| Spec::from_parts(kind, rate, 1 + (b - 1) % (2 * rate.limit())))
}

/// Arrival gaps in fractions of a period (with idles), and costs up to capacity + 1.
fn ops_strategy(spec: Spec, resets: bool) -> impl Strategy<Value = Vec<Op>> {
    let period = spec.period();
    let cap = spec.packed().capacity();
    let op = prop_oneof![
        4 => (0u64..=period * 2).prop_map(Op::Advance),
        3 => (0u64..=period / 7 + 1).prop_map(Op::Advance),
        6 => (0u64..=cap + 1).prop_map(Op::Check),
        (if resets { 1 } else { 0 }) => Just(Op::Reset),
    ];
    proptest::collection::vec(op, 1..120)
}

fn with_ops(resets: bool) -> impl Strategy<Value = (Spec, Vec<Op>)> {
    spec_strategy().prop_flat_map(move |s| (Just(s), ops_strategy(s, resets)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Packed and reference agree on every decision; retry_after is exact; peeks never write;
    /// remaining never exceeds limit; the documented bound per period holds.
    #[test]
    fn packed_matches_reference((spec, ops) in with_ops(false)) {
        let admitted = differential(spec, &ops);
        check_period_bound(spec, &admitted);
    }

    #[test]
    fn packed_matches_reference_with_resets((spec, ops) in with_ops(true)) {
        differential(spec, &ops);
    }

    /// From the same state a later reading never decides more strictly; so a clock reading that
    /// lags another thread's, by any number of periods, can only be stricter, never looser.
    #[test]
    fn later_time_never_stricter(
        (spec, ops) in with_ops(false),
        periods_back in 0u64..40,
        back in 0u64..3_000_000_000,
        cost in 0u64..600,
    ) {
        let alg = spec.packed();
        let cost = cost % (alg.capacity() + 1);
        let mut state = 0;
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Advance(dt) => now += dt,
                Op::Check(c) => {
                    if let Ok(t) = alg.decide(state, now, c) {
                        state = t.next.unwrap_or(state);
                    }
                }
                Op::Reset => state = 0,
            }
        }
        let back = periods_back * spec.period() + back % spec.period();
        let earlier = now.saturating_sub(back);
        let early = alg.decide(state, earlier, cost).unwrap().decision;
        let late = alg.decide(state, now, cost).unwrap().decision;
        prop_assert!(!early.is_allowed() || late.is_allowed());
        let peek_early = alg.decide(state, earlier, 0).unwrap().decision;
        let peek_late = alg.decide(state, now, 0).unwrap().decision;
        prop_assert!(peek_early.remaining() <= peek_late.remaining());
    }
}

//! Exact vectors for every algorithm, and property tests against the reference models.
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/harness/reference.rs"]
mod reference;

use core::time::Duration;
use proptest::prelude::*;
use reference::{check_period_bound, differential, Op, Spec};
use traffik_core::{
    Algorithm, AlgorithmKind, AnyAlgorithm, CheckError, ConfigError, Decision, FixedWindow, Gcra,
    LeakyBucket, Limiter, ManualClock, Rate, SlidingWindowCounter, TokenBucket,
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
    (rate_strategy(), 0u8..5, 1u64..=600)
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

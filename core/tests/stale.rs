//! Stale and skewed clock readings: a reading older than what a key has stored (held across a
//! CAS retry or a preemption, or from a core whose clock lags) may only make decisions stricter,
//! for every algorithm, through the single-key limiter and the keyed table alike.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../fuzz/harness/reference/mod.rs"]
mod reference;

use core::time::Duration;
use proptest::prelude::*;
use reference::{lagged, LagOp, Spec};
use traffik_core::{
    Algorithm, ConfigError, Decision, FixedWindow, Gcra, Limiter, ManualClock, Rate,
    SlidingWindowCounter, StateCell, TokenBucket, MAX_NOW,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Ten admissions at 5.5 s, one check carrying a reading from 3.2 s, ten more at 5.6 s: only
/// the first ten may pass (the old code admitted all 21 in one window).
fn replay_stale_window<A: Algorithm + Copy>(alg: A) -> (u32, Decision, u32) {
    let clock = ManualClock::starting_at(5_500 * MS);
    let limiter = Limiter::new(alg, &clock);
    let first = (0..10)
        .filter(|_| limiter.check(1).unwrap().is_allowed())
        .count() as u32;
    clock.set(3_200 * MS);
    let stale = limiter.check(1).unwrap();
    clock.set(5_600 * MS);
    let later = (0..10)
        .filter(|_| limiter.check(1).unwrap().is_allowed())
        .count() as u32;
    (first, stale, later)
}

#[test]
fn fixed_window_charges_a_reading_two_windows_old_to_the_stored_window() {
    let (first, stale, later) =
        replay_stale_window(FixedWindow::new(Rate::per_second(10)).unwrap());
    assert_eq!((first, later), (10, 0));
    // Denied until the stored window (5 s .. 6 s) ends, measured from the stale reading.
    assert_eq!(stale, Decision::deny(10, 0, 2_800 * MS, 2_800 * MS));
}

#[test]
fn sliding_window_charges_a_reading_two_windows_old_to_the_stored_window() {
    let (first, stale, later) =
        replay_stale_window(SlidingWindowCounter::new(Rate::per_second(10)).unwrap());
    assert_eq!((first, later), (10, 0));
    // From 3.2 s: 1.8 s to the stored window's start, then a whole window, then 0.1 s more
    // until window 5's ten weigh ceil(10 * 0.9) = 9 in window 6.
    assert_eq!(stale, Decision::deny(10, 0, 2_900 * MS, 3_800 * MS));
    let sw = SlidingWindowCounter::new(Rate::per_second(10)).unwrap();
    let cell = StateCell::new();
    for _ in 0..10 {
        assert!(cell.apply(&sw, 5_500 * MS, 1).unwrap().is_allowed());
    }
    assert!(cell.apply(&sw, 6_100 * MS - 1, 1).unwrap().is_denied());
    assert!(cell.apply(&sw, 6_100 * MS, 1).unwrap().is_allowed());
}

#[cfg(feature = "alloc")]
#[test]
fn the_table_never_moves_a_window_back_either() {
    use traffik_core::{AnyAlgorithm, KeyedLimiter, TableConfig};
    for alg in [
        AnyAlgorithm::FixedWindow(FixedWindow::new(Rate::per_second(10)).unwrap()),
        AnyAlgorithm::SlidingWindowCounter(
            SlidingWindowCounter::new(Rate::per_second(10)).unwrap(),
        ),
    ] {
        let clock = ManualClock::starting_at(5_500 * MS);
        let table: KeyedLimiter<u64, _, _> =
            KeyedLimiter::new(alg, &clock, TableConfig::new(64, [1, 2, 3, 4])).unwrap();
        let first = (0..10)
            .filter(|_| table.check(&7, 1).unwrap().is_allowed())
            .count();
        clock.set(3_200 * MS);
        assert!(table.check(&7, 1).unwrap().is_denied());
        clock.set(5_600 * MS);
        let later = (0..10)
            .filter(|_| table.check(&7, 1).unwrap().is_allowed())
            .count();
        assert_eq!((first, later), (10, 0), "{alg:?}");
    }
}

/// The largest sliding-window limit at a period that reaches the truncated index's wrap.
fn wrapping_sliding_window() -> (SlidingWindowCounter, u64) {
    let period = 1u64 << 34;
    let sw = SlidingWindowCounter::new(Rate::from_nanos((1 << 23) - 1, period).unwrap()).unwrap();
    (sw, period)
}

#[test]
fn a_fresh_key_at_the_index_wrap_is_charged_to_its_own_window() {
    // 63 - 2 * 23 = 17 index bits: window 2^17 - 1 is the last before the index wraps to 0,
    // the fresh state's index.
    let (sw, period) = wrapping_sliding_window();
    let now = ((1u64 << 17) - 1) * period + 5;
    let t = sw.decide(0, now, 1).unwrap();
    // Fresh: fresh again two window ends later, not three (as when charged to the next window).
    assert_eq!(
        t.decision,
        Decision::allow((1 << 23) - 1, (1 << 23) - 2, 2 * period - 5)
    );
    // The next window (index 0 after the wrap) sees this window's count as its previous one.
    let next = sw.decide(t.next.unwrap(), now + period, 0).unwrap();
    assert_eq!(next.decision.remaining(), (1 << 23) - 2);
}

#[test]
fn states_never_reach_the_tables_occupied_bit() {
    // burst * interval = 2^62 would put a GCRA state at 2^63 for now = MAX_NOW.
    let one_per_2_31 = Rate::from_nanos(1, 1 << 31).unwrap();
    assert_eq!(
        Gcra::with_burst(one_per_2_31, 1 << 31),
        Err(ConfigError::BurstOverflow)
    );
    assert_eq!(
        TokenBucket::with_capacity(Rate::from_nanos(1, 1).unwrap(), 1 << 62),
        Err(ConfigError::BurstOverflow)
    );
    // The largest accepted spans keep every state below bit 63 at MAX_NOW.
    let gcra = Gcra::with_burst(one_per_2_31, (1 << 31) - 1).unwrap();
    let full = gcra
        .decide(0, MAX_NOW, (1 << 31) - 1)
        .unwrap()
        .next
        .unwrap();
    assert!(full < 1 << 63);
    let tb = TokenBucket::with_capacity(Rate::from_nanos(1, 1).unwrap(), (1 << 62) - 1).unwrap();
    let full = tb.decide(0, MAX_NOW, (1 << 62) - 1).unwrap().next.unwrap();
    assert!(full < 1 << 63);
}

#[cfg(feature = "alloc")]
#[test]
fn a_full_key_at_the_latest_time_stays_full_in_the_table() {
    use traffik_core::{KeyedLimiter, TableConfig};
    let tb = TokenBucket::with_capacity(Rate::from_nanos(1, 1).unwrap(), (1 << 62) - 1).unwrap();
    let clock = ManualClock::starting_at(u64::MAX);
    let table: KeyedLimiter<u64, _, _> =
        KeyedLimiter::new(tb, &clock, TableConfig::new(8, [1, 2, 3, 4])).unwrap();
    assert!(table.check(&1, (1 << 62) - 1).unwrap().is_allowed());
    assert!(table.check(&1, 1).unwrap().is_denied());
    assert_eq!(table.len(), 1);
}

#[test]
fn readings_past_max_now_are_clamped_by_the_limiter_and_the_cell() {
    // Unclamped, every TAT saturates at u64::MAX and every check is admitted.
    let clock = ManualClock::starting_at(u64::MAX);
    let limiter = Limiter::new(Gcra::with_burst(Rate::per_second(1), 1).unwrap(), &clock);
    assert!(limiter.check(1).unwrap().is_allowed());
    assert_eq!(
        limiter.check(1).unwrap().retry_after(),
        Duration::from_secs(1)
    );
    let cell = StateCell::new();
    let gcra = Gcra::with_burst(Rate::per_second(1), 1).unwrap();
    assert!(cell.apply(&gcra, u64::MAX - 1, 1).unwrap().is_allowed());
    assert!(cell.apply(&gcra, u64::MAX, 1).unwrap().is_denied());
    assert_eq!(cell.peek(&gcra, u64::MAX).remaining(), 0);
}

#[test]
fn window_periods_are_capped_and_long_ones_never_overflow() {
    let huge: Rate = "1/200000d".parse().unwrap();
    assert_eq!(
        SlidingWindowCounter::new(huge),
        Err(ConfigError::PeriodTooLong { max_nanos: 1 << 60 })
    );
    assert_eq!(
        FixedWindow::new(huge),
        Err(ConfigError::PeriodTooLong { max_nanos: 1 << 60 })
    );
    // The longest period, with a reading two windows behind: every duration still fits.
    let period = 1u64 << 60;
    let sw = SlidingWindowCounter::new(Rate::from_nanos(1, period).unwrap()).unwrap();
    let cell = StateCell::new();
    assert!(cell.apply(&sw, 2 * period + 5, 1).unwrap().is_allowed());
    let stale = cell.apply(&sw, 5, 1).unwrap();
    // 2 periods - 5 ns to the stored window, then it and the next window must pass.
    assert_eq!(stale, Decision::deny(1, 0, 4 * period - 5, 4 * period - 5));
}

#[test]
fn sliding_window_limits_must_leave_the_index_room_for_the_horizon() {
    // 2^22 per 2^30 ns leaves 2^48 ns of index each way, under the 2^50 ns horizon.
    assert_eq!(
        SlidingWindowCounter::new(Rate::from_nanos(1 << 22, 1 << 30).unwrap()),
        Err(ConfigError::LimitTooLarge { max: (1 << 21) - 1 })
    );
    assert!(SlidingWindowCounter::new(Rate::from_nanos((1 << 21) - 1, 1 << 30).unwrap()).is_ok());
    assert!(SlidingWindowCounter::new(Rate::per_second(1_000_000)).is_ok());
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

/// Steps of up to two periods, checks whose reading lags by up to twelve periods, resets.
fn lag_ops(spec: Spec) -> impl Strategy<Value = Vec<LagOp>> {
    let period = spec.period();
    let cap = spec.packed().capacity();
    let op = prop_oneof![
        4 => (0u64..=period * 2).prop_map(LagOp::Advance),
        3 => (0u64..=period / 7 + 1).prop_map(LagOp::Advance),
        4 => (0u64..=cap + 1).prop_map(|c| LagOp::Check { lag: 0, cost: c }),
        4 => (0u64..=period.saturating_mul(12), 0u64..=cap + 1)
            .prop_map(|(lag, cost)| LagOp::Check { lag, cost }),
        1 => Just(LagOp::Reset),
    ];
    proptest::collection::vec(op, 1..120)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Every algorithm, readings lagging by up to twelve periods: a stale decision is never
    /// looser than an up-to-date one from the same state, a stale admission leaves every later
    /// decision at least as strict as no check at all, retry_after stays exact, and the
    /// documented bound holds (see `reference::lagged`).
    #[test]
    fn stale_readings_only_make_decisions_stricter(
        (spec, ops) in spec_strategy().prop_flat_map(|s| (Just(s), lag_ops(s)))
    ) {
        lagged(spec, &ops);
    }
}

#[cfg(feature = "alloc")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The keyed table and the single-key limiter decide exactly like the bare transitions
    /// under the same lagging readings, for several keys at once.
    #[test]
    fn table_and_limiter_follow_the_transitions_under_lag(
        (spec, ops) in spec_strategy().prop_flat_map(|s| (Just(s), lag_ops(s))),
        keys in proptest::collection::vec(0u64..4, 120),
    ) {
        use traffik_core::{KeyedLimiter, TableConfig};
        let alg = spec.packed();
        let clock = ManualClock::new();
        let table: KeyedLimiter<u64, _, _> =
            KeyedLimiter::new(alg, &clock, TableConfig::new(16, [9, 8, 7, 6])).unwrap();
        let single_clock = ManualClock::new();
        let single = Limiter::new(alg, &single_clock);
        let mut states = [0u64; 4];
        let mut now = 0u64;
        for (op, key) in ops.iter().zip(keys.iter().copied()) {
            match *op {
                LagOp::Advance(dt) => now += dt,
                LagOp::Reset => {
                    states[key as usize] = 0;
                    table.reset(&key);
                    if key == 0 {
                        single.reset();
                    }
                }
                LagOp::Check { lag, cost } => {
                    let reading = now.saturating_sub(lag);
                    clock.set(reading);
                    single_clock.set(reading);
                    let want = alg.decide(states[key as usize], reading, cost);
                    if let Ok(t) = want {
                        if let Some(next) = t.next {
                            states[key as usize] = next;
                        }
                    }
                    let want = want.map(|t| t.decision);
                    prop_assert_eq!(table.check(&key, cost), want);
                    if key == 0 {
                        prop_assert_eq!(single.check(cost), want);
                    }
                }
            }
        }
    }
}

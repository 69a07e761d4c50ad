//! The in-process sliding window log: exact vectors, and property tests against the reference
//! model in `fuzz/harness/sliding_log.rs`.
#![cfg(feature = "alloc")]
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/harness/sliding_log.rs"]
mod model;

#[path = "../../fuzz/harness/replay.rs"]
mod replay;

use core::time::Duration;
use model::LogModel;
use proptest::prelude::*;
use traffik_core::{
    CheckError, ConfigError, Decision, LogRing, ManualClock, Rate, SlidingLog, SlidingLogLimiter,
    MAX_LOG_LIMIT,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

#[test]
fn admits_exactly_limit_in_any_trailing_period() {
    let clock = ManualClock::new();
    let l = SlidingLogLimiter::new(SlidingLog::new(Rate::per_second(3)).unwrap(), &clock);
    assert_eq!(l.check(1).unwrap(), Decision::allow(3, 2, SEC));
    clock.set(300 * MS);
    assert_eq!(l.check(1).unwrap(), Decision::allow(3, 1, SEC));
    clock.set(600 * MS);
    assert_eq!(l.check(1).unwrap(), Decision::allow(3, 0, SEC));
    // Full: the entry of 0 ms leaves at 1000 ms.
    assert_eq!(l.check(1).unwrap(), Decision::deny(3, 0, 400 * MS, SEC));
    // Two units need the entries of 0 and 300 ms gone: 700 ms from now.
    assert_eq!(l.check(2).unwrap(), Decision::deny(3, 0, 700 * MS, SEC));
    clock.set(SEC - 1);
    assert!(l.check(1).unwrap().is_denied());
    clock.set(SEC);
    assert_eq!(l.check(1).unwrap(), Decision::allow(3, 0, SEC));
    // A fixed window would have admitted 3 more at 1 s; the log admits one per expiry.
    clock.set(SEC + 299 * MS);
    assert_eq!(l.peek(), Decision::allow(3, 0, 701 * MS));
    clock.set(SEC + 300 * MS);
    assert_eq!(l.peek(), Decision::allow(3, 1, 700 * MS));
    clock.set(3 * SEC);
    assert_eq!(l.peek(), Decision::allow(3, 3, 0));
}

#[test]
fn batches_cost_more_than_limit_and_reset() {
    let clock = ManualClock::new();
    let l = SlidingLogLimiter::new(SlidingLog::new(Rate::per_minute(10)).unwrap(), &clock);
    assert_eq!(
        l.check(11),
        Err(CheckError::InsufficientCapacity { max: 10 })
    );
    assert_eq!(l.check(10).unwrap(), Decision::allow(10, 0, 60 * SEC));
    clock.advance(Duration::from_secs(59));
    assert_eq!(l.check(10).unwrap(), Decision::deny(10, 0, SEC, SEC));
    l.reset();
    assert_eq!(l.peek(), Decision::allow(10, 10, 0));
    assert_eq!(l.check(4).unwrap(), Decision::allow(10, 6, 60 * SEC));
    // Entries before the reset do not come back once the reset batch leaves the head.
    clock.advance(Duration::from_secs(1));
    assert_eq!(l.check(6).unwrap(), Decision::allow(10, 0, 60 * SEC));
    assert_eq!(
        l.check(1).unwrap(),
        Decision::deny(10, 0, 59 * SEC, 60 * SEC)
    );
}

#[test]
fn stale_reading_records_at_the_newest_entry() {
    let log = SlidingLog::new(Rate::per_second(2)).unwrap();
    let ring = LogRing::new(&log);
    assert!(ring.check(500 * MS, 1).unwrap().is_allowed());
    // A reading 200 ms behind records at 500 ms, and reports the expiry from its own reading.
    assert_eq!(
        ring.check(300 * MS, 1).unwrap(),
        Decision::allow(2, 0, 1200 * MS)
    );
    assert_eq!(
        ring.check(1499 * MS, 1).unwrap(),
        Decision::deny(2, 0, MS, MS)
    );
    assert_eq!(
        ring.check(1500 * MS, 2).unwrap(),
        Decision::allow(2, 0, SEC)
    );
}

#[test]
fn config_errors_are_typed() {
    assert_eq!(
        SlidingLog::new(Rate::per_hour(MAX_LOG_LIMIT + 1)),
        Err(ConfigError::LimitTooLarge { max: MAX_LOG_LIMIT })
    );
    assert!(SlidingLog::new(Rate::per_hour(MAX_LOG_LIMIT)).is_ok());
    assert_eq!(
        SlidingLog::new(Rate::unlimited()),
        Err(ConfigError::UnlimitedRate)
    );
    assert_eq!(
        SlidingLog::new(Rate::per_second(0)),
        Err(ConfigError::ZeroLimit)
    );
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Check(u64),
    /// A check whose reading lags the clock (a preempted thread, a skewed core).
    Stale(u64, u64),
    Reset,
}

fn ops(limit: u64, period: u64) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            // Steps of an eighth of the period land exactly on expiries; the others fall between.
            4 => (0..6u64).prop_map(move |k| Op::Advance(k * period / 8)),
            1 => (0..period / 2).prop_map(Op::Advance),
            1 => (period / 2..period * 2).prop_map(Op::Advance),
            6 => (0..=limit + 1).prop_map(Op::Check),
            1 => (0..=limit, 0..period * 2).prop_map(|(c, lag)| Op::Stale(c, lag)),
            1 => Just(Op::Reset),
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every decision, on every admission and denial, equals the model's, to the nanosecond
    /// (stale readings included), and the cost admitted in the trailing period, counted at the
    /// readings the admissions carried, never exceeds the limit.
    #[test]
    fn matches_the_model(
        (limit, period, ops) in (1u64..12, 1u64..5)
            .prop_flat_map(|(l, p)| (Just(l), Just(p * SEC), ops(l, p * SEC)))
    ) {
        let log = SlidingLog::new(Rate::new(limit, Duration::from_nanos(period)).unwrap()).unwrap();
        let ring = LogRing::new(&log);
        let mut m = LogModel::new(limit, period);
        let mut now = 7 * SEC;
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for op in ops {
            match op {
                Op::Advance(d) => now += d,
                Op::Reset => {
                    ring.reset();
                    m.reset();
                    admitted.clear();
                }
                Op::Check(_) | Op::Stale(..) => {
                    let (cost, at) = match op {
                        Op::Stale(cost, lag) => (cost, now.saturating_sub(lag)),
                        Op::Check(cost) => (cost, now),
                        _ => unreachable!(),
                    };
                    let got = ring.check(at, cost);
                    match m.check(at, cost) {
                        None => prop_assert_eq!(got, Err(CheckError::InsufficientCapacity { max: limit })),
                        Some((allowed, lim, rem, retry, reset)) => {
                            let d = got.unwrap();
                            prop_assert_eq!(
                                (d.is_allowed(), d.limit(), d.remaining(), d.retry_after_nanos(), d.reset_after_nanos()),
                                (allowed, lim, rem, retry, reset)
                            );
                            if allowed && cost > 0 {
                                admitted.push((at, cost));
                            }
                        }
                    }
                    let in_window: u64 = admitted.iter().filter(|(t, _)| t + period > now).map(|(_, c)| c).sum();
                    prop_assert!(in_window <= limit);
                }
            }
        }
    }
}

/// Replays `fuzz/corpus/sliding_log_ops/` through the fuzz target's harness on stable, so its
/// seeds (and anything a fuzzer keeps) stay regression tests.
#[test]
fn sliding_log_ops_corpus() {
    let inputs = replay::replay("sliding_log_ops", model::sliding_log_ops);
    assert!(
        inputs >= 8,
        "corpus sliding_log_ops too small ({inputs} inputs)"
    );
}

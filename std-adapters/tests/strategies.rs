//! The debt bucket and the rollover quota through the std builder, per key, with Traffik's
//! scenarios in exact counts.
#![allow(clippy::unwrap_used)]

use traffik::{builder, AlgorithmKind, BuildError, ConfigError, Decision, ManualClock, Rollover};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

#[test]
fn debt_per_key_admits_twenty_then_the_refill_rate() {
    let clock = ManualClock::new();
    let limiter = builder()
        .rate("10/s")
        .max_debt(10)
        .build_with_clock::<str, _>(&clock)
        .unwrap();
    assert_eq!(
        limiter.check("a", 20).unwrap(),
        Decision::allow(20, 0, 2 * SEC)
    );
    // Another key is untouched; unit checks there borrow one token at most.
    let units = (0..30)
        .filter(|_| limiter.check("b", 1).unwrap().is_allowed())
        .count();
    assert_eq!(units, 11);
    assert_eq!(
        limiter.check("a", 1).unwrap(),
        Decision::deny(20, 0, SEC, 2 * SEC)
    );
    let mut admitted = 0;
    for now in (SEC..3 * SEC).step_by(MS as usize) {
        clock.set(now);
        admitted += u64::from(limiter.check("a", 1).unwrap().is_allowed());
    }
    // One per 100 ms from 1 s on: 20 in the two seconds probed.
    assert_eq!(admitted, 20);
}

#[test]
fn rollover_per_key_uses_sixty_then_admits_one_hundred_and_twenty() {
    let clock = ManualClock::new();
    let limiter = builder()
        .rate("100/s")
        .rollover(Rollover::new(1, 2, 50))
        .build_with_clock::<str, _>(&clock)
        .unwrap();
    let run = |key: &str, n: u64| {
        (0..n)
            .filter(|_| limiter.check(key, 1).unwrap().is_allowed())
            .count()
    };
    assert_eq!(run("a", 200), 150);
    clock.set(SEC);
    assert_eq!(run("a", 60), 60);
    clock.set(2 * SEC);
    assert_eq!(run("a", 121), 120);
    // A key first seen now starts like one after an unused period.
    assert_eq!(run("b", 151), 150);
}

#[test]
fn strategy_builder_errors_are_typed() {
    let bad = builder()
        .rate("100/s")
        .rollover(Rollover::new(2, 1, 50))
        .build::<str>();
    assert_eq!(
        bad.err(),
        Some(BuildError::Config(ConfigError::RolloverFraction {
            numerator: 2,
            denominator: 1
        }))
    );
    let bad = builder()
        .rate("100/s")
        .algorithm(AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 5)))
        .burst(7)
        .build::<str>();
    assert_eq!(
        bad.err(),
        Some(BuildError::Config(ConfigError::BurstNotSupported))
    );
    let debt = builder().rate("10/s").max_debt(u64::MAX).build_direct();
    assert_eq!(
        debt.err(),
        Some(BuildError::Config(ConfigError::BurstOverflow))
    );
}

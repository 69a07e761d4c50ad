//! The adaptive rate: exact limits after reports, exact admissions as the rate moves.
#![allow(clippy::unwrap_used, missing_docs)]

use core::time::Duration;
use traffik_core::{Adaptive, AdaptiveError, Algorithm, ConfigError, Limiter, ManualClock, Rate};

const MS: u64 = 1_000_000;

fn adaptive(floor: u64, ceiling: u64) -> traffik_core::AdaptiveBuilder {
    Adaptive::builder(Rate::per_second(floor), Rate::per_second(ceiling), 200)
}

#[test]
fn aimd_limits_after_a_sequence_of_reports() {
    let a = adaptive(10, 100)
        .increase(10)
        .decrease(1, 2)
        .build()
        .unwrap();
    assert_eq!(a.limit(), 100);
    // Above the target: halve (rounding down), never below the floor.
    let bad: Vec<u64> = (0..4).map(|_| a.report(201)).collect();
    assert_eq!(bad, [50, 25, 12, 10]);
    assert_eq!(a.report(1_000), 10);
    // At or below the target: +10, never above the ceiling.
    let good: Vec<u64> = (0..10).map(|_| a.report(200)).collect();
    assert_eq!(good, [20, 30, 40, 50, 60, 70, 80, 90, 100, 100]);
    assert_eq!(a.rate(), Rate::per_second(100));

    let b = adaptive(1, 100).decrease(3, 4).build().unwrap();
    let cuts: Vec<u64> = (0..5).map(|_| b.report(300)).collect();
    // 100 * 3/4 = 75, 56.25 -> 56, 42, 31.5 -> 31, 23.25 -> 23
    assert_eq!(cuts, [75, 56, 42, 31, 23]);
    assert_eq!(b.report(0), 24);
}

#[test]
fn concurrent_reports_lose_no_step() {
    let a = adaptive(1, 1_000).start(1).build().unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    a.report(0);
                }
            });
        }
    });
    assert_eq!(a.limit(), 1_000);
}

#[test]
fn admissions_follow_the_rate_and_keep_the_tat() {
    let clock = ManualClock::new();
    let limiter = Limiter::new(adaptive(10, 100).burst(1).build().unwrap(), &clock);
    // 100/s, burst 1: one per 10 ms. Step the clock by 1 ms for a second.
    let mut admitted = Vec::new();
    for ms in 0..1_000 {
        clock.set(ms * MS);
        if limiter.check(1).unwrap().is_allowed() {
            admitted.push(ms);
        }
    }
    assert_eq!(admitted.len(), 100);
    assert_eq!(admitted[..3], [0, 10, 20]);
    // The last admission (990 ms) left the TAT at 1000 ms. Overload: 100 -> 50 -> 25 -> 12 -> 10.
    for _ in 0..4 {
        limiter.algorithm().report(500);
    }
    assert_eq!(limiter.algorithm().rate(), Rate::per_second(10));
    admitted.clear();
    for ms in 1_000..2_000 {
        clock.set(ms * MS);
        if limiter.check(1).unwrap().is_allowed() {
            admitted.push(ms);
        }
    }
    // The kept TAT (1000 ms) is honoured, then one per 100 ms.
    assert_eq!(
        admitted,
        [1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900]
    );
    // Mid-interval change: at 1950 ms the TAT is 2000 ms. At 20/s (T = 50 ms) the next is
    // admitted once max(TAT, now) + 50 ms <= now + 50 ms, i.e. at 2000 ms, not 2050 ms.
    clock.set(1_950 * MS);
    let denied = limiter.check(1).unwrap();
    assert_eq!(denied.retry_after(), Duration::from_millis(50));
    limiter.algorithm().set_limit(20).unwrap();
    let denied = limiter.check(1).unwrap();
    assert!(denied.is_denied());
    assert_eq!(denied.retry_after(), Duration::from_millis(50));
    clock.set(1_999 * MS);
    assert!(limiter.check(1).unwrap().is_denied());
    clock.set(2_000 * MS);
    assert!(limiter.check(1).unwrap().is_allowed());
    assert_eq!(
        limiter.check(1).unwrap().retry_after(),
        Duration::from_millis(50)
    );
}

#[test]
fn burst_is_counted_at_the_rate_in_force() {
    let clock = ManualClock::new();
    let a = adaptive(10, 100).burst(5).build().unwrap();
    let limiter = Limiter::new(a, &clock);
    for _ in 0..5 {
        assert!(limiter.check(1).unwrap().is_allowed());
    }
    let denied = limiter.check(1).unwrap();
    assert_eq!(denied.retry_after(), Duration::from_millis(10));
    // TAT = 50 ms. At the floor (T = 100 ms, tolerance 500 ms) four more fit now:
    // 50 + 4 x 100 = 450 <= 500, the fifth (550) does not.
    limiter.algorithm().set_limit(10).unwrap();
    let details = limiter.algorithm().details(50 * MS, 0);
    assert_eq!(
        (details.limit, details.available, details.ahead_nanos),
        (10, 4, 50 * MS)
    );
    for _ in 0..4 {
        assert!(limiter.check(1).unwrap().is_allowed());
    }
    let denied = limiter.check(1).unwrap();
    assert_eq!(denied.retry_after(), Duration::from_millis(50));
    assert_eq!(limiter.algorithm().reset_after(450 * MS, 0), 450 * MS);
    assert_eq!(
        limiter.check(6),
        Err(traffik_core::CheckError::InsufficientCapacity { max: 5 })
    );
}

#[test]
fn typed_config_errors() {
    assert_eq!(
        adaptive(100, 10).build().unwrap_err(),
        AdaptiveError::FloorAboveCeiling {
            floor: 100,
            ceiling: 10
        }
    );
    assert_eq!(
        adaptive(0, 10).build().unwrap_err(),
        AdaptiveError::Config(ConfigError::ZeroLimit)
    );
    assert_eq!(
        Adaptive::builder(Rate::per_second(1), Rate::per_minute(100), 0)
            .build()
            .unwrap_err(),
        AdaptiveError::PeriodMismatch {
            floor_nanos: 1_000_000_000,
            ceiling_nanos: 60_000_000_000
        }
    );
    for (n, d) in [(0, 2), (2, 2), (3, 2), (1, 0)] {
        assert_eq!(
            adaptive(1, 10).decrease(n, d).build().unwrap_err(),
            AdaptiveError::DecreaseFactor {
                numerator: n,
                denominator: d
            }
        );
    }
    assert_eq!(
        adaptive(1, 10).burst(0).build().unwrap_err(),
        AdaptiveError::Config(ConfigError::ZeroBurst)
    );
    assert_eq!(
        adaptive(5, 10).start(4).build().unwrap_err(),
        AdaptiveError::OutOfRange {
            limit: 4,
            floor: 5,
            ceiling: 10
        }
    );
    let a = adaptive(5, 10).build().unwrap();
    assert!(a.set_limit(11).is_err());
    assert_eq!(a.limit(), 10);
    assert!(!AdaptiveError::Config(ConfigError::ZeroLimit)
        .to_string()
        .is_empty());
}

#[cfg(feature = "alloc")]
#[test]
fn one_report_moves_every_key_of_a_table() {
    use traffik_core::{KeyedLimiter, TableConfig};
    let clock = ManualClock::new();
    let table: KeyedLimiter<u64, _, _> = KeyedLimiter::new(
        adaptive(10, 100).burst(10).build().unwrap(),
        &clock,
        TableConfig::new(64, [1, 2, 3, 4]),
    )
    .unwrap();
    // At 100/s each key takes its burst of 10 and is then 100 ms ahead.
    for key in 0..3 {
        assert!(table.check(&key, 10).unwrap().is_allowed());
    }
    assert_eq!(
        table.check(&0, 1).unwrap().retry_after(),
        Duration::from_millis(10)
    );
    // One overload report halves the limit for every key: 50/s, T = 20 ms, tolerance 200 ms.
    assert_eq!(table.algorithm().report(1_000), 50);
    for key in 0..3 {
        let d = table.check(&key, 1).unwrap();
        // TAT 100 ms + 20 ms <= 0 + 200 ms: admitted, 4 more fit (180 + 4 x 20 = 200).
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), 4);
    }
    // A new key starts with the same burst at the new rate.
    assert_eq!(table.check(&9, 10).unwrap().remaining(), 0);
    assert_eq!(
        table.check(&9, 1).unwrap().retry_after(),
        Duration::from_millis(20)
    );
}

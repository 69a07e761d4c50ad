//! The shared priority budget: exact admissions per priority as the budget drains and refills.
#![allow(clippy::unwrap_used, missing_docs)]

use core::time::Duration;
use traffik_core::{
    CheckError, ConfigError, ManualClock, PriorityBudget, PriorityCheckError, PriorityError,
    PriorityLimiter, Rate,
};

const LOW: usize = 0;
const NORMAL: usize = 1;
const HIGH: usize = 2;
const MS: u64 = 1_000_000;

fn budget() -> PriorityBudget {
    // 100 units refilled at 100/s (one per 10 ms); low keeps 50 back, normal 20, high none.
    PriorityBudget::new(Rate::per_second(100), 100, &[50, 20, 0]).unwrap()
}

fn drain(limiter: &PriorityLimiter<&ManualClock>, priority: usize) -> u64 {
    let mut n = 0;
    while limiter.check(priority, 1).unwrap().is_allowed() {
        n += 1;
        assert!(n <= 1_000, "never denied");
    }
    n
}

#[test]
fn lowest_stops_first_highest_uses_it_all() {
    let clock = ManualClock::new();
    let limiter = PriorityLimiter::new(budget(), &clock);
    // Low until 50 are left.
    assert_eq!(drain(&limiter, LOW), 50);
    assert_eq!(limiter.remaining(), 50);
    let denied = limiter.check(LOW, 1).unwrap();
    // Low needs 51 left: one more unit of refill, 10 ms.
    assert_eq!((denied.limit(), denied.remaining()), (50, 0));
    assert_eq!(denied.retry_after(), Duration::from_millis(10));
    // Normal until 20 are left, high the rest.
    assert_eq!(drain(&limiter, NORMAL), 30);
    assert_eq!(limiter.remaining(), 20);
    assert_eq!(drain(&limiter, LOW), 0);
    assert_eq!(drain(&limiter, HIGH), 20);
    assert_eq!(limiter.remaining(), 0);
    let d = limiter.details();
    assert_eq!(
        (d.remaining, d.open_levels, d.ahead_nanos),
        (0, 0, 1_000 * MS)
    );
    // Empty (TAT 1 s ahead): high needs 1 unit of refill (10 ms), normal 21 (210 ms), low 51
    // (510 ms).
    let waits: Vec<Duration> = [HIGH, NORMAL, LOW]
        .iter()
        .map(|&p| limiter.check(p, 1).unwrap().retry_after())
        .collect();
    assert_eq!(
        waits,
        [
            Duration::from_millis(10),
            Duration::from_millis(210),
            Duration::from_millis(510)
        ]
    );
    clock.set(210 * MS - 1);
    assert_eq!(limiter.remaining(), 20);
    assert_eq!(drain(&limiter, NORMAL), 0);
    clock.set(210 * MS);
    assert_eq!(limiter.details().open_levels, 2);
    assert_eq!(drain(&limiter, NORMAL), 1);
    assert_eq!(drain(&limiter, HIGH), 20);
}

#[test]
fn a_charge_larger_than_the_share_is_refused_typed() {
    let clock = ManualClock::new();
    let limiter = PriorityLimiter::new(budget(), &clock);
    assert_eq!(
        limiter.check(LOW, 51),
        Err(PriorityCheckError::Check(
            CheckError::InsufficientCapacity { max: 50 }
        ))
    );
    assert!(limiter.check(NORMAL, 80).unwrap().is_allowed());
    assert_eq!(
        limiter.check(3, 1),
        Err(PriorityCheckError::UnknownPriority {
            priority: 3,
            levels: 3
        })
    );
    assert_eq!(limiter.peek(HIGH).unwrap().remaining(), 20);
    assert_eq!(limiter.peek(NORMAL).unwrap().remaining(), 0);
    limiter.reset();
    assert_eq!(limiter.remaining(), 100);
}

#[test]
fn concurrent_priorities_share_one_budget_exactly() {
    let clock = ManualClock::new();
    let limiter = PriorityLimiter::new(budget(), &clock);
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = [LOW, NORMAL, HIGH, LOW, NORMAL, HIGH]
            .iter()
            .map(|&p| {
                let limiter = &limiter;
                s.spawn(move || {
                    let mut n = 0;
                    for _ in 0..200 {
                        if limiter.check(p, 1).unwrap().is_allowed() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The clock stands still: exactly the budget, never more, whatever the interleaving.
    assert_eq!(counts.iter().sum::<u64>(), 100);
    // Low can only have taken while 51+ were left, normal while 21+ were left.
    assert!(counts[0] + counts[3] <= 50);
    assert!(counts[0] + counts[3] + counts[1] + counts[4] <= 80);
    assert_eq!(limiter.remaining(), 0);
}

#[cfg(feature = "alloc")]
#[test]
fn keyed_priorities_share_a_word_per_key() {
    use traffik_core::{KeyedLimiter, TableConfig};
    let table: KeyedLimiter<u64, _, _> = KeyedLimiter::new(
        budget(),
        ManualClock::new(),
        TableConfig::new(64, [1, 2, 3, 4]),
    )
    .unwrap();
    assert!(table.check_priority(&7, LOW, 50).unwrap().is_allowed());
    assert!(table.check_priority(&7, LOW, 1).unwrap().is_denied());
    assert_eq!(table.peek_priority(&7, HIGH).unwrap().remaining(), 50);
    assert!(table.check_priority(&7, NORMAL, 30).unwrap().is_allowed());
    assert!(table.check_priority(&7, NORMAL, 1).unwrap().is_denied());
    assert!(table.check_priority(&7, HIGH, 20).unwrap().is_allowed());
    // The plain check is the highest priority.
    assert!(table.check(&7, 1).unwrap().is_denied());
    assert!(table.check_priority(&8, LOW, 50).unwrap().is_allowed());
    assert_eq!(table.len(), 2);
    assert!(matches!(
        table.check_priority(&7, 9, 1),
        Err(PriorityCheckError::UnknownPriority {
            priority: 9,
            levels: 3
        })
    ));
}

#[test]
fn typed_config_errors() {
    let r = Rate::per_second(10);
    assert_eq!(
        PriorityBudget::new(r, 10, &[]).unwrap_err(),
        PriorityError::Levels { count: 0 }
    );
    assert_eq!(
        PriorityBudget::new(r, 10, &[0; 9]).unwrap_err(),
        PriorityError::Levels { count: 9 }
    );
    assert_eq!(
        PriorityBudget::new(r, 10, &[10, 0]).unwrap_err(),
        PriorityError::ReserveTooLarge {
            priority: 0,
            reserve: 10,
            budget: 10
        }
    );
    assert_eq!(
        PriorityBudget::new(r, 10, &[2, 5, 0]).unwrap_err(),
        PriorityError::ReserveIncreases { priority: 1 }
    );
    assert_eq!(
        PriorityBudget::new(r, 0, &[0]).unwrap_err(),
        PriorityError::Config(ConfigError::ZeroBurst)
    );
    assert_eq!(
        PriorityBudget::new(Rate::per_second(0), 10, &[0]).unwrap_err(),
        PriorityError::Config(ConfigError::ZeroLimit)
    );
    assert_eq!(
        PriorityBudget::new(r, 10, &[2, 5, 0])
            .unwrap_err()
            .to_string(),
        "priority 1 reserves more than priority 0; reserves must not grow with the priority"
    );
}

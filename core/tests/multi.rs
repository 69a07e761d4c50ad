//! All-or-nothing multi-limit checks: exact counts on a manual clock, and a property test
//! against an independent model of several GCRA limits charged together.
#![allow(clippy::unwrap_used, missing_docs)]

use core::time::Duration;
use proptest::prelude::*;
use traffik_core::{
    check_all, CellLeg, Gcra, Leg, Limiter, ManualClock, Rate, StateCell, TokenBucket,
};
#[cfg(feature = "alloc")]
use traffik_core::{KeyedLimiter, MultiKeyed, TableConfig};

const SEC: u64 = 1_000_000_000;

#[test]
fn ten_per_second_and_fifteen_per_minute() {
    let clock = ManualClock::new();
    let second = Limiter::new(Gcra::new(Rate::per_second(10)).unwrap(), &clock);
    let minute = Limiter::new(Gcra::new(Rate::per_minute(15)).unwrap(), &clock);
    let legs: [&dyn Leg; 2] = [&second, &minute];
    let run = |n: usize| {
        (0..n)
            .filter(|_| check_all(&legs, 1).unwrap().is_allowed())
            .count()
    };

    assert_eq!(run(30), 10, "the per-second burst binds first");
    // Denials charged nothing: the per-minute limit saw exactly 10.
    assert_eq!(minute.peek().remaining(), 5);
    assert_eq!(minute.cell_state_for_test(), 40 * SEC);

    clock.advance(Duration::from_secs(1));
    assert_eq!(run(30), 5, "now the per-minute limit binds");
    // The per-second limit was charged only for the 5 admitted.
    assert_eq!(second.peek().remaining(), 5);
    let denied = check_all(&legs, 1).unwrap();
    assert!(denied.is_denied());
    // TAT 60 s, horizon 61 s: one more unit needs 64 <= now + 60.
    assert_eq!(denied.retry_after(), Duration::from_secs(3));

    clock.set(4 * SEC - 1);
    assert_eq!(run(5), 0);
    clock.set(4 * SEC);
    assert_eq!(run(5), 1, "then one per 4 s, the per-minute pace");
    clock.set(8 * SEC);
    assert_eq!(run(5), 1);
}

trait StateForTest {
    fn cell_state_for_test(&self) -> u64;
}
impl<C: traffik_core::Clock> StateForTest for Limiter<Gcra, C> {
    fn cell_state_for_test(&self) -> u64 {
        // The TAT is `now + reset_after` for GCRA.
        self.clock().now() + self.peek().reset_after_nanos()
    }
}

#[test]
fn admitted_decision_is_the_binding_limit() {
    let clock = ManualClock::new();
    let a = Limiter::new(Gcra::new(Rate::per_second(10)).unwrap(), &clock);
    let b = Limiter::new(TokenBucket::new(Rate::per_minute(4)).unwrap(), &clock);
    let d = check_all(&[&a as &dyn Leg, &b], 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!((d.limit(), d.remaining()), (4, 3));
    // A cost above one limit's capacity is an error, and the other limit is refunded.
    assert!(check_all(&[&a as &dyn Leg, &b], 5).is_err());
    assert_eq!(a.peek().remaining(), 9);
}

#[cfg(feature = "alloc")]
#[test]
fn per_user_and_per_tenant_tables() {
    let clock = ManualClock::new();
    let config = TableConfig::new(64, [9, 8, 7, 6]);
    let users: KeyedLimiter<str, _, _> =
        KeyedLimiter::new(Gcra::new(Rate::per_second(5)).unwrap(), &clock, config).unwrap();
    let tenants: KeyedLimiter<str, _, _> =
        KeyedLimiter::new(Gcra::new(Rate::per_second(3)).unwrap(), &clock, config).unwrap();
    // Users first, so a tenant denial has to undo a user charge, including a new key's.
    let check = |user: &str| check_all(&[users.leg(user), tenants.leg("t")], 1).unwrap();
    assert!(check("ann").is_allowed());
    assert!(check("bob").is_allowed());
    assert!(check("ann").is_allowed());
    assert!(check("cat").is_denied()); // a new key, placed then refunded to fresh
    assert!(check("ann").is_denied());
    assert_eq!(users.peek("ann").remaining(), 3);
    assert_eq!(users.peek("bob").remaining(), 4);
    assert_eq!(users.peek("cat").remaining(), 5);
    assert_eq!(tenants.peek("t").remaining(), 0);
    // After a third of a second the tenant has one unit again, and the user pays for it.
    clock.advance_nanos(SEC / 3 + 1);
    assert!(check("cat").is_allowed());
    assert_eq!(users.peek("cat").remaining(), 4);
}

#[cfg(feature = "alloc")]
#[test]
fn multi_keyed_is_an_async_limiter() {
    use traffik_core::AsyncLimiter;
    let clock = ManualClock::new();
    let config = TableConfig::new(16, [1, 2, 3, 4]);
    let limits: MultiKeyed<u64, _, _> = MultiKeyed::new(vec![
        KeyedLimiter::new(Gcra::new(Rate::per_second(2)).unwrap(), &clock, config).unwrap(),
        KeyedLimiter::new(Gcra::new(Rate::per_minute(3)).unwrap(), &clock, config).unwrap(),
    ]);
    let now = |cost| AsyncLimiter::check_now(&limits, &7, cost).unwrap().unwrap();
    assert!(now(1).is_allowed());
    assert!(now(1).is_allowed());
    assert!(now(1).is_denied());
    assert_eq!(limits.peek(&7).remaining(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(limits.peek(&7).remaining(), 1);
    assert!(now(1).is_allowed());
    assert!(now(1).is_denied());
    limits.reset(&7);
    assert_eq!(limits.peek(&7).remaining(), 2);
}

/// An independent model of one GCRA limit: TAT in `u128`, emission interval rounded up.
#[derive(Clone, Copy)]
struct Model {
    t: u128,
    burst: u128,
    tat: u128,
}

impl Model {
    fn new(limit: u64, period: u64, burst: u64) -> Self {
        Model {
            t: u128::from(period.div_ceil(limit)),
            burst: u128::from(burst),
            tat: 0,
        }
    }
    fn fits(&self, now: u128, cost: u128) -> bool {
        self.tat.max(now) + cost * self.t <= now + self.burst * self.t
    }
    fn charge(&mut self, now: u128, cost: u128) {
        self.tat = self.tat.max(now) + cost * self.t;
    }
}

proptest! {
    /// Sequential multi-checks over random subsets of three limits (with single checks mixed
    /// in) admit exactly what the model admits, and leave exactly the model's states: a denied
    /// multi-check changes no limit.
    #[test]
    fn matches_the_all_or_nothing_model(
        specs in prop::collection::vec((1u64..20, 1u64..5, 1u64..20), 3),
        ops in prop::collection::vec((0u64..400_000_000, 1u64..4, 1u8..8), 1..80),
    ) {
        let clock = ManualClock::new();
        let algs: Vec<Gcra> = specs
            .iter()
            .map(|&(limit, secs, burst)| {
                Gcra::with_burst(Rate::from_nanos(limit, secs * SEC).unwrap(), burst).unwrap()
            })
            .collect();
        let cells: Vec<StateCell> = (0..3).map(|_| StateCell::new()).collect();
        let mut models: Vec<Model> = specs
            .iter()
            .map(|&(limit, secs, burst)| Model::new(limit, secs * SEC, burst))
            .collect();
        for (advance, cost, mask) in ops {
            clock.advance_nanos(advance);
            let now = u128::from(traffik_core::Clock::now(&clock));
            let cost128 = u128::from(cost);
            let chosen: Vec<usize> = (0..3).filter(|i| mask & (1 << i) != 0).collect();
            let legs: Vec<CellLeg<'_, Gcra, ManualClock>> = chosen
                .iter()
                .map(|&i| CellLeg { cell: &cells[i], algorithm: &algs[i], clock: &clock })
                .collect();
            // Legs are tried in order: the first that cannot take the cost at all is an error,
            // the first that cannot take it now a denial; either way nothing stays charged.
            let mut expect = Ok(true);
            for &i in &chosen {
                if cost128 > models[i].burst {
                    expect = Err(());
                    break;
                }
                if !models[i].fits(now, cost128) {
                    expect = Ok(false);
                    break;
                }
            }
            let got = check_all(&legs, cost);
            prop_assert_eq!(got.map(|d| d.is_allowed()).map_err(|_| ()), expect);
            if expect == Ok(true) {
                for &i in &chosen {
                    models[i].charge(now, cost128);
                }
            }
            for i in 0..3 {
                prop_assert_eq!(u128::from(cells[i].load()), models[i].tat);
            }
        }
    }
}

#[cfg(feature = "alloc")]
proptest! {
    /// `MultiKeyed::check` (a loop over tables) gives exactly the decisions of `check_all` over
    /// cells (the recursion the model test checks), for several keys and random costs.
    #[test]
    fn multi_keyed_matches_check_all(
        specs in prop::collection::vec((1u64..20, 1u64..5, 1u64..20), 1..4),
        ops in prop::collection::vec((0u64..400_000_000, 1u64..4, 0u64..3), 1..60),
    ) {
        let clock = ManualClock::new();
        let algs: Vec<Gcra> = specs
            .iter()
            .map(|&(limit, secs, burst)| {
                Gcra::with_burst(Rate::from_nanos(limit, secs * SEC).unwrap(), burst).unwrap()
            })
            .collect();
        let config = TableConfig::new(16, [5, 6, 7, 8]);
        let multi: MultiKeyed<u64, _, _> = MultiKeyed::new(
            algs.iter().map(|&a| KeyedLimiter::new(a, &clock, config).unwrap()).collect(),
        );
        let cells: Vec<Vec<StateCell>> =
            (0..3).map(|_| algs.iter().map(|_| StateCell::new()).collect()).collect();
        for (advance, cost, key) in ops {
            clock.advance_nanos(advance);
            let legs: Vec<CellLeg<'_, Gcra, ManualClock>> = cells[key as usize]
                .iter()
                .zip(&algs)
                .map(|(cell, algorithm)| CellLeg { cell, algorithm, clock: &clock })
                .collect();
            prop_assert_eq!(multi.check(&key, cost), check_all(&legs, cost));
        }
    }
}

/// Real threads on real atomics (the table's inline 128-bit CAS): four threads race
/// multi-checks in both orders and single checks at a fixed time. No limit admits more than
/// its burst, and each limit's standing charge is at least what was admitted and at most one more per denied
/// multi-check.
#[cfg(feature = "alloc")]
#[test]
fn threads_never_over_admit() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let clock = ManualClock::starting_at(7 * SEC);
    let config = TableConfig::new(64, [3, 1, 4, 1]);
    let a: KeyedLimiter<u64, _, _> =
        KeyedLimiter::new(Gcra::new(Rate::per_hour(300)).unwrap(), &clock, config).unwrap();
    let b: KeyedLimiter<u64, _, _> =
        KeyedLimiter::new(Gcra::new(Rate::per_hour(500)).unwrap(), &clock, config).unwrap();
    let (multi_ok, multi_no, single_ok) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..4 {
            let (a, b) = (&a, &b);
            let (multi_ok, multi_no, single_ok) = (&multi_ok, &multi_no, &single_ok);
            s.spawn(move || {
                for i in 0..400u64 {
                    if (i + t) % 5 == 0 {
                        let ok = b.check(&1, 1).unwrap().is_allowed();
                        single_ok.fetch_add(u64::from(ok), Ordering::Relaxed);
                        continue;
                    }
                    let d = if t % 2 == 0 {
                        check_all(&[a.leg(&1), b.leg(&1)], 1)
                    } else {
                        check_all(&[b.leg(&1), a.leg(&1)], 1)
                    };
                    let counter = if d.unwrap().is_allowed() {
                        multi_ok
                    } else {
                        multi_no
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let (ok, no, single) = (
        multi_ok.into_inner(),
        multi_no.into_inner(),
        single_ok.into_inner(),
    );
    assert!(ok <= 300, "A admitted {ok}");
    assert!(ok + single <= 500, "B admitted {}", ok + single);
    assert!(ok > 0 && no > 0, "{ok} admitted, {no} denied");
    let standing_a = 300 - a.peek(&1).remaining();
    let standing_b = 500 - b.peek(&1).remaining();
    assert!(standing_a >= ok && standing_a <= ok + no, "A: {standing_a}");
    assert!(
        standing_b >= ok + single && standing_b <= ok + single + no,
        "B: {standing_b}"
    );
}

//! Every strategy beside governor's GCRA in one process: single-key and keyed (10,000 `u64`
//! keys in a fixed-seed random order, table at 50% of capacity) checks, two limits at once
//! against two independent checks, and the per-key quota (tier) lookup.
//!
//! The machine is shared, so no single timing is trusted. Each row runs three contenders in
//! rotating order for `ROUNDS` rounds: the strategy, traffik's own GCRA built the same way (the
//! baseline), and governor's GCRA. It prints the medians of the per-round ratios strategy /
//! governor and strategy / traffik GCRA, so drift of the machine during a row cancels. Every
//! limiter runs on a manual clock stepped 1 us per check (governor on its `FakeRelativeClock`),
//! every check is admitted, and every result is reduced to a bool.
//!
//! Run with `cargo bench -p traffik-benches --bench strategies`; a name argument filters rows,
//! `--rounds=N` changes the number of rounds.
#![allow(missing_docs, clippy::unwrap_used)]

use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter as Governor};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use traffik::sliding_log::KeyedSlidingLog;
use traffik::{
    check_all, Adaptive, Algorithm, DebtBucket, Gcra, KeyedLimiter, Limiter, ManualClock,
    MultiKeyed, PriorityBudget, PriorityLimiter, QuotaRollover, Rate, Rollover, Schedule,
    SlidingLog, SlidingLogLimiter, TableConfig,
};

#[path = "support/mix.rs"]
mod mix;
use mix::Mix;

/// A million per second per key; with a 1 us step every check is admitted.
const PER_SECOND: u32 = 1_000_000;
/// Checks per contender per round, single key.
const SINGLE_PER_ROUND: usize = 100_000;
/// Checks per contender per round, keyed.
const KEYED_PER_ROUND: usize = 50_000;
/// Live keys in the keyed rows.
const KEYS: usize = 10_000;
/// Table capacity in the keyed rows: the live keys fill 50% of it.
const CAPACITY: usize = 2 * KEYS;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The value of `--name=value` on the command line.
fn option(name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    std::env::args().find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

fn wanted(name: &str) -> bool {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
}

/// Nanoseconds per call of `n` calls of `f(i)`.
fn timed(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// One row: `ours`, `base` (traffik GCRA) and `gov` (governor GCRA) each time one round; after
/// one warm-up round each, the three run in an order rotating through all six permutations.
fn race(
    name: &str,
    ours: &mut dyn FnMut() -> f64,
    base: &mut dyn FnMut() -> f64,
    gov: &mut dyn FnMut() -> f64,
) {
    if !wanted(name) {
        return;
    }
    let rounds: usize = option("rounds").and_then(|r| r.parse().ok()).unwrap_or(41);
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [2, 1, 0],
        [1, 2, 0],
        [0, 2, 1],
        [2, 0, 1],
        [1, 0, 2],
    ];
    ours();
    base();
    gov();
    let mut t = [Vec::new(), Vec::new(), Vec::new()];
    for r in 0..rounds {
        for &who in &ORDERS[r % ORDERS.len()] {
            let ns = match who {
                0 => ours(),
                1 => base(),
                _ => gov(),
            };
            t[who].push(ns);
        }
    }
    let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} / {:.1} |",
        ratio(&t[0], &t[2]),
        ratio(&t[1], &t[2]),
        ratio(&t[0], &t[1]),
        median(t[0].clone()),
        median(t[1].clone()),
        median(t[2].clone()),
    );
}

fn rate() -> Rate {
    Rate::per_second(u64::from(PER_SECOND))
}

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap())
}

fn adaptive() -> Adaptive {
    // The limit read from its atomic (and divided) per check.
    Adaptive::builder(Rate::per_second(1_000), rate(), 100)
        .burst(u64::from(PER_SECOND))
        .build()
        .unwrap()
}

fn schedule() -> Schedule {
    // The hour of the week from the reading, then that hour's GCRA.
    Schedule::builder(rate())
        .weekdays(9..17, Rate::per_second(2 * u64::from(PER_SECOND)))
        .build()
        .unwrap()
}

fn budget() -> PriorityBudget {
    // Two priorities; the benched one is the lowest (it has a reserve to respect).
    PriorityBudget::new(rate(), u64::from(PER_SECOND), &[1_000, 0]).unwrap()
}

/// A direct limiter of `alg` on its own manual clock, timed as one round.
fn direct<A: Algorithm>(alg: A) -> impl FnMut() -> f64 {
    let clock = ManualClock::new();
    let limiter = Limiter::new(alg, clock);
    move || {
        timed(SINGLE_PER_ROUND, |_| {
            limiter.clock().advance_nanos(1_000);
            black_box(limiter.check(black_box(1)).unwrap().is_allowed());
        })
    }
}

fn governor_direct() -> impl FnMut() -> f64 {
    let clock = FakeRelativeClock::default();
    let gov = Governor::direct_with_clock(quota(), clock.clone());
    move || {
        timed(SINGLE_PER_ROUND, |_| {
            clock.advance(Duration::from_micros(1));
            black_box(gov.check().is_ok());
        })
    }
}

fn single() {
    let base = || direct(Gcra::new(rate()).unwrap());
    race(
        "single: DebtBucket",
        &mut direct(DebtBucket::new(rate(), rate().limit()).unwrap()),
        &mut base(),
        &mut governor_direct(),
    );
    race(
        "single: QuotaRollover",
        &mut direct(QuotaRollover::new(rate(), Rollover::new(1, 2, u64::MAX)).unwrap()),
        &mut base(),
        &mut governor_direct(),
    );
    {
        // One slot per unit of the limit: the same pace (one per us) as 100 per 100 us, an
        // 864-byte ring.
        let log = SlidingLog::new(Rate::from_nanos(100, 100_000).unwrap()).unwrap();
        let limiter = SlidingLogLimiter::new(log, ManualClock::new());
        race(
            "single: SlidingLogLimiter",
            &mut || {
                timed(SINGLE_PER_ROUND, |_| {
                    limiter.clock().advance_nanos(1_000);
                    black_box(limiter.check(black_box(1)).unwrap().is_allowed());
                })
            },
            &mut base(),
            &mut governor_direct(),
        );
    }
    race(
        "single: Adaptive",
        &mut direct(adaptive()),
        &mut base(),
        &mut governor_direct(),
    );
    race(
        "single: Schedule",
        &mut direct(schedule()),
        &mut base(),
        &mut governor_direct(),
    );
    {
        let clock = ManualClock::new();
        let limiter = PriorityLimiter::new(budget(), &clock);
        race(
            "single: PriorityLimiter (low)",
            &mut || {
                timed(SINGLE_PER_ROUND, |_| {
                    clock.advance_nanos(1_000);
                    black_box(
                        limiter
                            .check(black_box(0), black_box(1))
                            .unwrap()
                            .is_allowed(),
                    );
                })
            },
            &mut base(),
            &mut governor_direct(),
        );
    }
    race(
        "single: Live<Gcra>",
        &mut direct(traffik::Live::new(Gcra::new(rate()).unwrap())),
        &mut base(),
        &mut governor_direct(),
    );
    {
        // Two limits, all or nothing, against two independent checks (traffik, governor).
        let clock = ManualClock::new();
        let a = Limiter::new(Gcra::new(rate()).unwrap(), &clock);
        let b = Limiter::new(Gcra::new(Rate::per_hour(3_600_000_000)).unwrap(), &clock);
        let gclock = FakeRelativeClock::default();
        let ga = Governor::direct_with_clock(quota(), gclock.clone());
        let gb = Governor::direct_with_clock(
            Quota::per_hour(NonZeroU32::new(3_600_000_000).unwrap()),
            gclock.clone(),
        );
        race(
            "single: two limits, check_all vs two checks",
            &mut || {
                timed(SINGLE_PER_ROUND, |_| {
                    clock.advance_nanos(1_000);
                    black_box(check_all(&[&a, &b], black_box(1)).unwrap().is_allowed());
                })
            },
            &mut || {
                timed(SINGLE_PER_ROUND, |_| {
                    clock.advance_nanos(1_000);
                    let x = a.check(black_box(1)).unwrap().is_allowed();
                    black_box(x && b.check(black_box(1)).unwrap().is_allowed());
                })
            },
            &mut || {
                timed(SINGLE_PER_ROUND, |_| {
                    gclock.advance(Duration::from_micros(1));
                    black_box(ga.check().is_ok() && gb.check().is_ok());
                })
            },
        );
    }
}

/// The keyed rows' keys (scattered `u64`s) and the order they are visited in (a random
/// permutation, repeated: each key comes back every `KEYS` checks, 10 ms of manual clock).
struct Keyed {
    keys: Vec<u64>,
    order: Vec<u32>,
}

impl Keyed {
    fn new() -> Self {
        let mut rng = Mix(0x7472_6166_6669_6b21);
        let keys = (0..KEYS).map(|_| rng.next()).collect();
        let mut order: Vec<u32> = (0..KEYS as u32).collect();
        for i in (1..KEYS).rev() {
            order.swap(i, rng.below(i + 1));
        }
        Keyed { keys, order }
    }

    fn key(&self, i: usize) -> &u64 {
        &self.keys[self.order[i % KEYS] as usize]
    }

    /// Every key checked once (so the timed rounds find them all present).
    fn fill(&self, mut check: impl FnMut(&u64)) {
        for k in &self.keys {
            check(k);
        }
    }
}

fn seeds() -> TableConfig {
    TableConfig::new(CAPACITY, [1, 2, 3, 4])
}

/// A keyed limiter of `alg` (statically typed) on its own manual clock, timed as one round.
fn keyed_table<'a, A: Algorithm + 'a>(k: &'a Keyed, alg: A) -> impl FnMut() -> f64 + 'a {
    let table: KeyedLimiter<u64, A, ManualClock> =
        KeyedLimiter::new(alg, ManualClock::new(), seeds()).unwrap();
    k.fill(|key| {
        let _ = table.check(key, 1).unwrap();
    });
    move || {
        timed(KEYED_PER_ROUND, |i| {
            table.clock().advance_nanos(1_000);
            black_box(table.check(k.key(i), 1).unwrap().is_allowed());
        })
    }
}

/// The builder's keyed limiter (GCRA through `AnyAlgorithm`): the keyed baseline.
fn keyed_base(k: &Keyed) -> impl FnMut() -> f64 + '_ {
    keyed_builder(k, traffik::builder())
}

fn keyed_builder(k: &Keyed, b: traffik::builder::Builder) -> impl FnMut() -> f64 + '_ {
    let table = b
        .rate(rate())
        .capacity(CAPACITY)
        .build_with_clock::<u64, _>(ManualClock::new())
        .unwrap();
    k.fill(|key| {
        let _ = table.check(key, 1).unwrap();
    });
    move || {
        timed(KEYED_PER_ROUND, |i| {
            table.clock().advance_nanos(1_000);
            black_box(table.check(k.key(i), 1).unwrap().is_allowed());
        })
    }
}

fn keyed_governor(k: &Keyed) -> impl FnMut() -> f64 + '_ {
    let clock = FakeRelativeClock::default();
    let gov = Governor::dashmap_with_clock(quota(), clock.clone());
    k.fill(|key| {
        let _ = gov.check_key(key);
    });
    move || {
        timed(KEYED_PER_ROUND, |i| {
            clock.advance(Duration::from_micros(1));
            black_box(gov.check_key(k.key(i)).is_ok());
        })
    }
}

fn keyed() {
    let k = Keyed::new();
    race(
        "keyed: DebtBucket (builder)",
        &mut keyed_builder(&k, traffik::builder().max_debt(u64::from(PER_SECOND))),
        &mut keyed_base(&k),
        &mut keyed_governor(&k),
    );
    race(
        "keyed: QuotaRollover (builder)",
        &mut keyed_builder(
            &k,
            traffik::builder().rollover(Rollover::new(1, 2, u64::MAX)),
        ),
        &mut keyed_base(&k),
        &mut keyed_governor(&k),
    );
    {
        // 10 per 10 ms: each key is back every 10 ms, so every check is admitted; 144-byte
        // rings. The builder's capacity is the map's key bound.
        let clock = ManualClock::new();
        let log: KeyedSlidingLog<u64, &ManualClock> = traffik::builder()
            .rate(Rate::from_nanos(10, 10_000_000).unwrap())
            .capacity(CAPACITY)
            .build_sliding_log_with_clock(&clock)
            .unwrap();
        k.fill(|key| {
            let _ = log.check(key, 1).unwrap();
        });
        race(
            "keyed: KeyedSlidingLog (builder)",
            &mut || {
                timed(KEYED_PER_ROUND, |i| {
                    clock.advance_nanos(1_000);
                    black_box(log.check(k.key(i), 1).unwrap().is_allowed());
                })
            },
            &mut keyed_base(&k),
            &mut keyed_governor(&k),
        );
    }
    race(
        "keyed: Adaptive",
        &mut keyed_table(&k, adaptive()),
        &mut keyed_base(&k),
        &mut keyed_governor(&k),
    );
    race(
        "keyed: Schedule",
        &mut keyed_table(&k, schedule()),
        &mut keyed_base(&k),
        &mut keyed_governor(&k),
    );
    {
        let table: KeyedLimiter<u64, PriorityBudget, ManualClock> =
            KeyedLimiter::new(budget(), ManualClock::new(), seeds()).unwrap();
        k.fill(|key| {
            let _ = table.check_priority(key, 0, 1).unwrap();
        });
        race(
            "keyed: PriorityBudget (check_priority, low)",
            &mut || {
                timed(KEYED_PER_ROUND, |i| {
                    table.clock().advance_nanos(1_000);
                    black_box(table.check_priority(k.key(i), 0, 1).unwrap().is_allowed());
                })
            },
            &mut keyed_base(&k),
            &mut keyed_governor(&k),
        );
    }
    {
        // The per-key quota lookup: 8 GCRA tiers chosen by a closure on the key.
        let tiered = traffik::builder()
            .rate(rate())
            .capacity(CAPACITY)
            .build_tiered_with_clock(
                [1, 2, 3, 4, 5, 6, 7, 8],
                |key: &u64| (*key % 8) as usize,
                ManualClock::new(),
            )
            .unwrap();
        k.fill(|key| {
            let _ = tiered.check(key, 1).unwrap();
        });
        race(
            "keyed: Tiers x8 (QuotaLimiter, build_tiered)",
            &mut || {
                timed(KEYED_PER_ROUND, |i| {
                    tiered.clock().advance_nanos(1_000);
                    black_box(tiered.check(k.key(i), 1).unwrap().is_allowed());
                })
            },
            &mut keyed_base(&k),
            &mut keyed_governor(&k),
        );
    }
    {
        let live = traffik::builder()
            .rate(rate())
            .capacity(CAPACITY)
            .build_live_with_clock::<u64, _>(ManualClock::new())
            .unwrap();
        k.fill(|key| {
            let _ = live.check(key, 1).unwrap();
        });
        race(
            "keyed: Live (build_live)",
            &mut || {
                timed(KEYED_PER_ROUND, |i| {
                    live.clock().advance_nanos(1_000);
                    black_box(live.check(k.key(i), 1).unwrap().is_allowed());
                })
            },
            &mut keyed_base(&k),
            &mut keyed_governor(&k),
        );
    }
    {
        // Two limits on the same keys, all or nothing, against two independent tables and
        // two governor limiters.
        let clock = ManualClock::new();
        let multi: MultiKeyed<u64, _, _> = traffik::builder()
            .rates("1000000/s, 3600000000/h")
            .capacity(CAPACITY)
            .build_multi_with_clock(&clock)
            .unwrap();
        let one = |r: &str| -> KeyedLimiter<u64, _, _> {
            traffik::builder()
                .rate(r)
                .capacity(CAPACITY)
                .build_with_clock(&clock)
                .unwrap()
        };
        let (a, b) = (one("1000000/s"), one("3600000000/h"));
        let gclock = FakeRelativeClock::default();
        let ga = Governor::dashmap_with_clock(quota(), gclock.clone());
        let gb = Governor::dashmap_with_clock(
            Quota::per_hour(NonZeroU32::new(3_600_000_000).unwrap()),
            gclock.clone(),
        );
        k.fill(|key| {
            let _ = multi.check(key, 1).unwrap();
            let _ = a.check(key, 1).unwrap();
            let _ = b.check(key, 1).unwrap();
            let _ = ga.check_key(key);
            let _ = gb.check_key(key);
        });
        race(
            "keyed: two limits, MultiKeyed vs two checks",
            &mut || {
                timed(KEYED_PER_ROUND, |i| {
                    clock.advance_nanos(1_000);
                    black_box(multi.check(k.key(i), 1).unwrap().is_allowed());
                })
            },
            &mut || {
                timed(KEYED_PER_ROUND, |i| {
                    clock.advance_nanos(1_000);
                    let key = k.key(i);
                    let x = a.check(key, 1).unwrap().is_allowed();
                    black_box(x && b.check(key, 1).unwrap().is_allowed());
                })
            },
            &mut || {
                timed(KEYED_PER_ROUND, |i| {
                    gclock.advance(Duration::from_micros(1));
                    let key = k.key(i);
                    black_box(ga.check_key(key).is_ok() && gb.check_key(key).is_ok());
                })
            },
        );
    }
}

fn main() {
    let started = Instant::now();
    println!(
        "medians of per-round ratios over rotating rounds; single key {SINGLE_PER_ROUND} and \
         keyed {KEYED_PER_ROUND} checks per round; keyed: {KEYS} scattered u64 keys in random \
         order, capacity {CAPACITY}"
    );
    println!(
        "| strategy | / governor GCRA | traffik GCRA / governor | / traffik GCRA | ns: strategy / traffik GCRA / governor |"
    );
    println!("|---|---:|---:|---:|---|");
    single();
    keyed();
    eprintln!("strategies took {:.0} s", started.elapsed().as_secs_f64());
}

//! Differential test: the same arrival times and costs go to a local `StateCell` running the
//! core's algorithm and to the memcached limiter; every decision must be identical, nanosecond
//! for nanosecond, for every algorithm, with multi-cost checks, peeks, resets, costs above the
//! capacity, and clock readings lagging several periods behind.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Memcached, Rng, ALL_KINDS};
use traffik_core::{
    Algorithm, AlgorithmKind, AnyAlgorithm, CheckError, ManualClock, Rate, StateCell,
};
use traffik_memcached::{MemcachedLimiter, MemcachedLimiterError};

const SEC: u64 = 1_000_000_000;

/// Clock bases: near zero (a monotonic clock), Unix-epoch nanoseconds today, and a clock near
/// the core's 2^62 limit.
fn bases(rng: &mut Rng) -> [u64; 3] {
    [
        rng.below(SEC),
        1_790_000_000 * SEC + rng.below(100 * 86_400 * SEC),
        (1u64 << 62) - 400 * 86_400 * SEC + rng.below(SEC),
    ]
}

fn rates() -> Vec<(Rate, Option<u64>)> {
    vec![
        (Rate::per_second(10), None),
        (Rate::per_second(3), Some(2)),
        (Rate::from_nanos(7, 13).unwrap(), None),
        (Rate::per_minute(1000), Some(50)),
        (Rate::per_hour(5), None),
        (Rate::per_day(100), Some(7)),
        (Rate::from_nanos(1, 1_000).unwrap(), Some(3)),
        (Rate::per_second(1_000_000), None),
        // A 40-day period: expiries above memcached's 30-day relative limit.
        (Rate::from_nanos(9, 40 * 86_400 * SEC).unwrap(), None),
    ]
}

/// Next arrival gap: mostly around the emission interval, sometimes a burst or a long idle.
fn gap(rng: &mut Rng, rate: Rate) -> u64 {
    let period = rate.period_nanos();
    let interval = period.div_ceil(rate.limit());
    match rng.below(10) {
        0..=2 => 0,
        3..=5 => rng.below(interval.saturating_mul(2).max(2)),
        6 | 7 => rng.below(period / 4 + 2),
        8 => period - 1 + rng.below(3),
        _ => rng.below(period.saturating_mul(3)),
    }
}

#[derive(Default, Debug)]
struct Tally {
    checks: u64,
    denied: u64,
    insufficient: u64,
    peeks: u64,
    resets: u64,
    lagged: u64,
}

async fn run(kind: AlgorithmKind, server: &Memcached, seed: u64, tally: &mut Tally) {
    let mut rng = Rng(seed);
    for (ri, (rate, burst)) in rates().into_iter().enumerate() {
        let burst = match kind {
            AlgorithmKind::FixedWindow
            | AlgorithmKind::SlidingWindowCounter
            | AlgorithmKind::QuotaRollover(_) => None,
            _ => burst,
        };
        let core = AnyAlgorithm::new(kind, rate, burst).unwrap();
        let clock = Arc::new(ManualClock::new());
        let mut builder = MemcachedLimiter::builder(server.addr())
            .rate(rate)
            .algorithm(kind)
            .prefix(format!("diff{seed}-{ri}"))
            .clock(clock.clone());
        if let Some(b) = burst {
            builder = builder.burst(b);
        }
        let limiter = builder.build().unwrap();
        let cap = core.capacity();
        let period = rate.period_nanos();
        for (bi, base) in bases(&mut rng).into_iter().enumerate() {
            // Fresh keys per sequence, and each sequence short in real time: memcached expires
            // keys on its own clock, which must not overtake the injected one (see below).
            let keys = [
                format!("b{bi}-a"),
                format!("b{bi}-long-{}", "z".repeat(300)),
                format!("b{bi} \u{0}bin"),
            ];
            let cells = [StateCell::new(), StateCell::new(), StateCell::new()];
            let started = Instant::now();
            let mut last_wall = started;
            let mut t = base;
            for step in 0..150 {
                // Injected time advances at least as fast as the wall clock, so a key's expiry
                // (on memcached's clock) never comes before its state is fresh on this timeline.
                let wall = last_wall.elapsed().as_nanos() as u64;
                last_wall = Instant::now();
                t += gap(&mut rng, rate).max(wall);
                // Some readings lag up to four periods behind (a process with a slow clock).
                let now = if rng.below(7) == 0 {
                    tally.lagged += 1;
                    t.saturating_sub(rng.below(period.saturating_mul(4)))
                } else {
                    t
                };
                let k = rng.below(3) as usize;
                let ctx = format!(
                    "{kind:?} rate {rate} burst {burst:?} base#{bi} step {step} key {k} now {now}"
                );
                match rng.below(20) {
                    0 => {
                        cells[k].reset();
                        limiter.reset(&keys[k]).await.unwrap();
                        tally.resets += 1;
                        continue;
                    }
                    1 | 2 => {
                        clock.set(now);
                        let want = cells[k].peek(&core, now);
                        assert_eq!(limiter.peek(&keys[k]).await.unwrap(), want, "peek {ctx}");
                        tally.peeks += 1;
                        continue;
                    }
                    _ => {}
                }
                let cost = match rng.below(12) {
                    0 => 0,
                    1 => cap + 1 + rng.below(3),
                    2 => cap,
                    3 => rng.below(cap.min(1_000) + 1),
                    _ => 1,
                };
                let expected = cells[k].apply(&core, now, cost);
                // Half through the clock, half with the time injected.
                let got = if step % 2 == 0 {
                    limiter.check_at(&keys[k], cost, now).await
                } else {
                    clock.set(now);
                    limiter.check(&keys[k], cost).await
                };
                match (expected, got) {
                    (Ok(want), Ok(d)) => {
                        assert_eq!(d, want, "{ctx} cost {cost}");
                        tally.denied += u64::from(d.is_denied());
                    }
                    (
                        Err(CheckError::InsufficientCapacity { max }),
                        Err(MemcachedLimiterError::InsufficientCapacity { max: got }),
                    ) => {
                        assert_eq!(max, got, "{ctx}");
                        tally.insufficient += 1;
                    }
                    (e, g) => panic!("{ctx} cost {cost}: core {e:?} vs memcached {g:?}"),
                }
                tally.checks += 1;
            }
            // The premise of the comparison: nothing written in this sequence can have expired
            // (the shortest expiry is 2 s, at least 1 s of real time after the write).
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "sequence took {:?}: too slow for the no-expiry premise",
                started.elapsed()
            );
            // And the stored states are the core's: read them back raw.
            for (k, cell) in cells.iter().enumerate() {
                let stored = server
                    .meta_get(&limiter.memcached_key(&keys[k]))
                    .map_or(0, |item| item.state());
                assert_eq!(
                    stored,
                    cell.load(),
                    "{kind:?} rate {rate} base#{bi} key {k}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_decides_like_the_core() {
    let server = Memcached::start();
    for (i, kind) in ALL_KINDS.into_iter().enumerate() {
        let mut tally = Tally::default();
        run(kind, &server, 0x9E37_79B9 + i as u64, &mut tally).await;
        // The sequences exercised every path, for every algorithm.
        assert!(tally.checks > 3_000, "{kind:?} {tally:?}");
        assert!(tally.denied > 200, "{kind:?} {tally:?}");
        assert!(tally.insufficient > 100, "{kind:?} {tally:?}");
        assert!(
            tally.peeks > 200 && tally.resets > 100,
            "{kind:?} {tally:?}"
        );
        assert!(tally.lagged > 400, "{kind:?} {tally:?}");
    }
}

/// `check_many` decides a batch like the same checks applied one after the other, duplicates
/// of a key included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_many_decides_like_sequential_core_checks() {
    let server = Memcached::start();
    let mut rng = Rng(4242);
    for (i, kind) in ALL_KINDS.into_iter().enumerate() {
        let rate = Rate::per_second(5);
        let core = AnyAlgorithm::new(kind, rate, None).unwrap();
        let clock = Arc::new(ManualClock::starting_at(1_790_000_000 * SEC));
        let limiter = MemcachedLimiter::builder(server.addr())
            .rate(rate)
            .algorithm(kind)
            .prefix(format!("many{i}"))
            .clock(clock.clone())
            .build()
            .unwrap();
        let cells: Vec<StateCell> = (0..6).map(|_| StateCell::new()).collect();
        let mut denied = 0;
        for _ in 0..40 {
            clock.advance_nanos(rng.below(SEC / 2));
            let now = traffik_core::Clock::now(&*clock);
            let batch: Vec<(String, u64)> = (0..1 + rng.below(12))
                .map(|_| {
                    (
                        format!("k{}", rng.below(6)),
                        rng.below(4) + u64::from(rng.below(9) == 0) * 3,
                    )
                })
                .collect();
            let got = limiter.check_many(&batch).await;
            assert_eq!(got.len(), batch.len());
            for ((key, cost), got) in batch.iter().zip(got) {
                let k: usize = key[1..].parse().unwrap();
                let want = cells[k].apply(&core, now, *cost);
                match (want, got) {
                    (Ok(w), Ok(g)) => {
                        assert_eq!(g, w, "{kind:?} {key} cost {cost}");
                        denied += u32::from(g.is_denied());
                    }
                    (
                        Err(CheckError::InsufficientCapacity { max }),
                        Err(MemcachedLimiterError::InsufficientCapacity { max: g }),
                    ) => assert_eq!(max, g),
                    (w, g) => panic!("{kind:?} {key} cost {cost}: core {w:?} vs {g:?}"),
                }
            }
        }
        assert!(denied > 20, "{kind:?}: only {denied} denials");
    }
}

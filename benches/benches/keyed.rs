//! Keyed `check` beside governor's keyed limiter on its default DashMap store, same run.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use traffik::{KeyedLimiter, ManualClock, Rate};

const KEYS: u64 = 10_000;

fn ip(i: u64) -> IpAddr {
    if i % 2 == 0 {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))
    }
}

fn existing_keys(c: &mut Criterion) {
    let quota = Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
    let rate = Rate::per_second(1_000_000);

    // u64 keys, manual clocks stepping 1 us per check: all admitted.
    let gclock = FakeRelativeClock::default();
    let gov = RateLimiter::dashmap_with_clock(quota, gclock.clone());
    let clock = ManualClock::new();
    let ours: KeyedLimiter<u64, _, _> = traffik::builder()
        .rate(rate)
        .capacity(KEYS as usize)
        .build_with_clock(&clock)
        .unwrap();
    for k in 0..KEYS {
        gov.check_key(&k).unwrap();
        let _ = ours.check(&k, 1).unwrap();
    }
    let mut g = c.benchmark_group("keyed/u64-manual");
    let mut k = 0u64;
    g.bench_function("governor", |b| {
        b.iter(|| {
            gclock.advance(Duration::from_micros(1));
            k = (k + 7919) % KEYS;
            black_box(gov.check_key(&k).is_ok());
        })
    });
    g.bench_function("traffik", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(ours.check(&k, 1).unwrap());
        })
    });
    // The two strategies with parameters, on the same table and keys.
    let strategies = [
        (
            "traffik-debt-bucket",
            traffik::builder().max_debt(1_000_000),
        ),
        (
            "traffik-rollover",
            traffik::builder().rollover(traffik::Rollover::new(1, 2, u64::MAX)),
        ),
    ];
    for (name, builder) in strategies {
        let ours: KeyedLimiter<u64, _, _> = builder
            .rate(rate)
            .capacity(KEYS as usize)
            .build_with_clock(&clock)
            .unwrap();
        for k in 0..KEYS {
            let _ = ours.check(&k, 1).unwrap();
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                clock.advance_nanos(1_000);
                k = (k + 7919) % KEYS;
                let _ = black_box(ours.check(&k, 1).unwrap());
            })
        });
    }
    // The sliding window log: a ring per key in a DashMap, 100 per 100 us (800 bytes a key).
    let log: traffik::sliding_log::KeyedSlidingLog<u64, _> =
        traffik::sliding_log::KeyedSlidingLog::new(
            traffik::SlidingLog::new(Rate::from_nanos(100, 100_000).unwrap()).unwrap(),
            &clock,
        );
    for k in 0..KEYS {
        let _ = log.check(&k, 1).unwrap();
    }
    g.bench_function("traffik-sliding-log", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(log.check(&k, 1).unwrap());
        })
    });
    g.finish();

    // Per-key quota lookup and live algorithm vs the fixed table: same keys, same manual
    // clock. governor has no per-key quota or live change; its row is its fixed keyed check.
    // Tiers: 8 GCRA tiers (x1..x8 of the base rate) picked by a closure on the key, so the
    // lookup is a closure call and an array index; live: the algorithm behind `Live`.
    let gclock = FakeRelativeClock::default();
    let gov = RateLimiter::dashmap_with_clock(quota, gclock.clone());
    let clock = ManualClock::new();
    let fixed: KeyedLimiter<u64, _, _> = traffik::builder()
        .rate(rate)
        .capacity(KEYS as usize)
        .build_with_clock(&clock)
        .unwrap();
    let tiered = traffik::builder()
        .rate(rate)
        .capacity(KEYS as usize)
        .build_tiered_with_clock(
            [1, 2, 3, 4, 5, 6, 7, 8],
            |k: &u64| (*k % 8) as usize,
            &clock,
        )
        .unwrap();
    let live = traffik::builder()
        .rate(rate)
        .capacity(KEYS as usize)
        .build_live_with_clock::<u64, _>(&clock)
        .unwrap();
    for k in 0..KEYS {
        gov.check_key(&k).unwrap();
        let _ = fixed.check(&k, 1).unwrap();
        let _ = tiered.check(&k, 1).unwrap();
        let _ = live.check(&k, 1).unwrap();
    }
    let mut g = c.benchmark_group("keyed/quota-u64-manual");
    g.bench_function("governor", |b| {
        b.iter(|| {
            gclock.advance(Duration::from_micros(1));
            k = (k + 7919) % KEYS;
            black_box(gov.check_key(&k).is_ok());
        })
    });
    g.bench_function("traffik-fixed", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(fixed.check(&k, 1).unwrap());
        })
    });
    g.bench_function("traffik-tiered-8", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(tiered.check(&k, 1).unwrap());
        })
    });
    g.bench_function("traffik-live", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(live.check(&k, 1).unwrap());
        })
    });
    g.finish();

    // Real clocks on both sides.
    let gov = RateLimiter::dashmap(quota);
    let ours: traffik::RateLimiter<u64> = traffik::builder()
        .rate(rate)
        .capacity(KEYS as usize)
        .build()
        .unwrap();
    for k in 0..KEYS {
        gov.check_key(&k).unwrap();
        let _ = ours.check(&k, 1).unwrap();
    }
    let mut g = c.benchmark_group("keyed/u64-real");
    g.bench_function("governor", |b| {
        b.iter(|| {
            k = (k + 7919) % KEYS;
            black_box(gov.check_key(&k).is_ok());
        })
    });
    g.bench_function("traffik", |b| {
        b.iter(|| {
            k = (k + 7919) % KEYS;
            let _ = black_box(ours.check(&k, 1).unwrap());
        })
    });
    g.finish();

    // IpAddr keys (half v4, half v6), real clocks.
    let ips: Vec<IpAddr> = (0..KEYS).map(ip).collect();
    let gov = RateLimiter::dashmap(quota);
    let ours: traffik::RateLimiter<IpAddr> = traffik::builder()
        .rate(rate)
        .capacity(KEYS as usize)
        .build()
        .unwrap();
    for a in &ips {
        gov.check_key(a).unwrap();
        let _ = ours.check(a, 1).unwrap();
    }
    let mut g = c.benchmark_group("keyed/ipaddr-real");
    let mut i = 0usize;
    g.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 7919) % ips.len();
            black_box(gov.check_key(&ips[i]).is_ok());
        })
    });
    g.bench_function("traffik", |b| {
        b.iter(|| {
            i = (i + 7919) % ips.len();
            let _ = black_box(ours.check(&ips[i], 1).unwrap());
        })
    });
    g.finish();

    // Mostly denied: 1 per hour, every key already spent.
    let slow = Quota::per_hour(NonZeroU32::new(1).unwrap());
    let gov = RateLimiter::dashmap(slow);
    let ours: traffik::RateLimiter<u64> = traffik::builder()
        .rate("1/h")
        .capacity(KEYS as usize)
        .build()
        .unwrap();
    for k in 0..KEYS {
        let _ = gov.check_key(&k);
        let _ = ours.check(&k, 1).unwrap();
    }
    let mut g = c.benchmark_group("keyed/u64-mostly-deny");
    g.bench_function("governor", |b| {
        b.iter(|| {
            k = (k + 7919) % KEYS;
            black_box(gov.check_key(&k).is_ok());
        })
    });
    g.bench_function("traffik", |b| {
        b.iter(|| {
            k = (k + 7919) % KEYS;
            let _ = black_box(ours.check(&k, 1).unwrap());
        })
    });
    g.finish();
}

/// Total wall time for `threads` threads each doing `iters` checks, through `f(thread, i)`.
fn threaded(threads: u64, iters: u64, f: &(impl Fn(u64, u64) + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..iters {
                    f(t, i);
                }
            });
        }
    });
    start.elapsed()
}

fn threads(c: &mut Criterion) {
    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap());
    let gov = RateLimiter::dashmap(quota);
    let ours: traffik::RateLimiter<u64> = traffik::builder()
        .rate(Rate::per_second(1_000_000_000))
        .capacity(KEYS as usize)
        .build()
        .unwrap();
    for k in 0..KEYS {
        gov.check_key(&k).unwrap();
        let _ = ours.check(&k, 1).unwrap();
    }
    // Each thread works its own half of the key space ("distinct"), or all on key 0 ("shared").
    // Reported time is per check per thread, so equal times mean perfect scaling.
    let mut g = c.benchmark_group("keyed/threads");
    for n in [1u64, 2] {
        g.bench_function(BenchmarkId::new("traffik-distinct", n), |b| {
            b.iter_custom(|iters| {
                threaded(n, iters, &|t, i| {
                    let k = (i * 7919 % (KEYS / 2)) * 2 + t;
                    let _ = black_box(ours.check(&k, 1).unwrap());
                })
            })
        });
        g.bench_function(BenchmarkId::new("governor-distinct", n), |b| {
            b.iter_custom(|iters| {
                threaded(n, iters, &|t, i| {
                    let k = (i * 7919 % (KEYS / 2)) * 2 + t;
                    black_box(gov.check_key(&k).is_ok());
                })
            })
        });
        g.bench_function(BenchmarkId::new("traffik-shared", n), |b| {
            b.iter_custom(|iters| {
                threaded(n, iters, &|_, _| {
                    let _ = black_box(ours.check(&0, 1).unwrap());
                })
            })
        });
        g.bench_function(BenchmarkId::new("governor-shared", n), |b| {
            b.iter_custom(|iters| {
                threaded(n, iters, &|_, _| {
                    black_box(gov.check_key(&0).is_ok());
                })
            })
        });
    }
    g.finish();

    // The machine's ceiling for "two threads, distinct keys": each thread on a limiter of its
    // own, so no cache line is ever written by both threads. In one shared table the two
    // threads' keys share cache lines (about 2.7 keys per 64-byte line at the designed load,
    // assigned by a keyed hash), and every check that writes a line last written by the other
    // core waits for the line to cross between cores; this bench shows how much of the gap to
    // perfect scaling is that, and not the table.
    let own: Vec<traffik::RateLimiter<u64>> = (0..2)
        .map(|_| {
            traffik::builder()
                .rate(Rate::per_second(1_000_000_000))
                .capacity(KEYS as usize / 2)
                .build()
                .unwrap()
        })
        .collect();
    for (t, l) in own.iter().enumerate() {
        for j in 0..KEYS / 2 {
            let _ = l.check(&(j * 2 + t as u64), 1).unwrap();
        }
    }
    let mut g = c.benchmark_group("keyed/threads-own-table");
    for n in [1u64, 2] {
        g.bench_function(BenchmarkId::new("traffik-distinct", n), |b| {
            b.iter_custom(|iters| {
                threaded(n, iters, &|t, i| {
                    let k = (i * 7919 % (KEYS / 2)) * 2 + t;
                    let _ = black_box(own[t as usize].check(&k, 1).unwrap());
                })
            })
        });
    }
    g.finish();
}

/// Writes to the table's memory before a measurement (places `n` keys outside the measured key
/// range, then clears them), so first-touch page faults are not billed to the measured inserts.
fn prefault(table: &traffik::RateLimiter<u64>, n: u64) {
    for k in 0..n {
        let _ = table.check(&(u64::MAX - k), 1);
    }
    table.clear();
}

/// New keys: every check places a key never seen before (the lock-free placement into an
/// empty slot), into a table big enough that nothing overflows during the measurement.
fn new_keys(c: &mut Criterion) {
    let quota = Quota::per_second(NonZeroU32::new(1_000).unwrap());
    let mut g = c.benchmark_group("keyed/new-key");
    g.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            let gov = RateLimiter::dashmap(quota);
            let start = Instant::now();
            for k in 0..iters {
                black_box(gov.check_key(&k).is_ok());
            }
            start.elapsed()
        })
    });
    g.bench_function("traffik", |b| {
        b.iter_custom(|iters| {
            let ours: traffik::RateLimiter<u64> = traffik::builder()
                .rate("1000/s")
                .capacity(iters as usize + 16)
                .build()
                .unwrap();
            prefault(&ours, iters);
            let start = Instant::now();
            for k in 0..iters {
                let _ = black_box(ours.check(&k, 1).unwrap());
            }
            start.elapsed()
        })
    });
    // Two threads inserting distinct new keys at once: the shard locks' contention.
    g.bench_function("traffik-2-threads", |b| {
        b.iter_custom(|iters| {
            let ours: traffik::RateLimiter<u64> = traffik::builder()
                .rate("1000/s")
                .capacity(2 * iters as usize + 16)
                .build()
                .unwrap();
            prefault(&ours, 2 * iters);
            threaded(2, iters, &|t, i| {
                let _ = black_box(ours.check(&(i * 2 + t), 1).unwrap());
            })
        })
    });
    g.bench_function("governor-2-threads", |b| {
        b.iter_custom(|iters| {
            let gov = RateLimiter::dashmap(quota);
            threaded(2, iters, &|t, i| {
                black_box(gov.check_key(&(i * 2 + t)).is_ok());
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = existing_keys, threads, new_keys
}
criterion_main!(benches);

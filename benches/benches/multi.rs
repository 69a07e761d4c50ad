//! A check against two limits (`1_000_000/s` and `3_600_000_000/h`, so every check is admitted
//! and charged) three ways, same run: traffik's all-or-nothing multi-check, two independent
//! traffik checks, and two independent governor checks (governor has no multi-limit check).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;
use traffik::{check_all, Gcra, KeyedLimiter, Leg, Limiter, ManualClock, MultiKeyed, Rate};

const KEYS: u64 = 10_000;

fn keyed(c: &mut Criterion) {
    let gclock = FakeRelativeClock::default();
    let per_second = Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
    let per_hour = Quota::per_hour(NonZeroU32::new(3_600_000_000).unwrap());
    let gov_a = RateLimiter::dashmap_with_clock(per_second, gclock.clone());
    let gov_b = RateLimiter::dashmap_with_clock(per_hour, gclock.clone());

    let clock = ManualClock::new();
    let multi: MultiKeyed<u64, _, _> = traffik::builder()
        .rates("1000000/s, 3600000000/h")
        .capacity(KEYS as usize)
        .build_multi_with_clock(&clock)
        .unwrap();
    let one = |rate: &str| -> KeyedLimiter<u64, _, _> {
        traffik::builder()
            .rate(rate)
            .capacity(KEYS as usize)
            .build_with_clock(&clock)
            .unwrap()
    };
    let (ours_a, ours_b) = (one("1000000/s"), one("3600000000/h"));
    for k in 0..KEYS {
        gov_a.check_key(&k).unwrap();
        gov_b.check_key(&k).unwrap();
        let _ = multi.check(&k, 1).unwrap();
        let _ = ours_a.check(&k, 1).unwrap();
        let _ = ours_b.check(&k, 1).unwrap();
    }
    let mut g = c.benchmark_group("multi/keyed-u64-two-limits");
    let mut k = 0u64;
    g.bench_function("governor-two-checks", |b| {
        b.iter(|| {
            gclock.advance(Duration::from_micros(1));
            k = (k + 7919) % KEYS;
            black_box(gov_a.check_key(&k).is_ok() && gov_b.check_key(&k).is_ok());
        })
    });
    g.bench_function("traffik-two-checks", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let a = ours_a.check(&k, 1).unwrap();
            let b = ours_b.check(&k, 1).unwrap();
            black_box(a.is_allowed() && b.is_allowed());
        })
    });
    g.bench_function("traffik-multi", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            black_box(multi.check(&k, 1).unwrap().is_allowed());
        })
    });
    g.finish();
}

fn single(c: &mut Criterion) {
    let gclock = FakeRelativeClock::default();
    let gov_a = RateLimiter::direct_with_clock(
        Quota::per_second(NonZeroU32::new(1_000_000).unwrap()),
        gclock.clone(),
    );
    let gov_b = RateLimiter::direct_with_clock(
        Quota::per_hour(NonZeroU32::new(3_600_000_000).unwrap()),
        gclock.clone(),
    );
    let clock = ManualClock::new();
    let a = Limiter::new(Gcra::new(Rate::per_second(1_000_000)).unwrap(), &clock);
    let b = Limiter::new(Gcra::new(Rate::per_hour(3_600_000_000)).unwrap(), &clock);
    let mut g = c.benchmark_group("multi/single-key-two-limits");
    g.bench_function("governor-two-checks", |bn| {
        bn.iter(|| {
            gclock.advance(Duration::from_micros(1));
            black_box(gov_a.check().is_ok() && gov_b.check().is_ok());
        })
    });
    g.bench_function("traffik-two-checks", |bn| {
        bn.iter(|| {
            clock.advance_nanos(1_000);
            let x = a.check(1).unwrap();
            let y = b.check(1).unwrap();
            black_box(x.is_allowed() && y.is_allowed());
        })
    });
    g.bench_function("traffik-check_all", |bn| {
        let legs: [&dyn Leg; 2] = [&a, &b];
        bn.iter(|| {
            clock.advance_nanos(1_000);
            black_box(check_all(&legs, 1).unwrap().is_allowed());
        })
    });
    g.bench_function("traffik-check_all-static", |bn| {
        let legs = [&a, &b];
        bn.iter(|| {
            clock.advance_nanos(1_000);
            black_box(check_all(&legs, 1).unwrap().is_allowed());
        })
    });
    g.finish();
}

criterion_group!(benches, keyed, single);
criterion_main!(benches);

//! What the failover wrapper adds to an in-process check on a closed breaker, beside the bare
//! check, the same check through the `AsyncLimiter` contract, and governor's keyed check, all in
//! one run. Futures are polled once with a no-op waker: the in-process limiter's are ready at
//! once, and on that path the wrapper registers no timer, so no runtime is needed.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use traffik::failover::{Failover, OnError};
use traffik::{AsyncLimiter, KeyedLimiter, ManualClock, Rate};

const KEYS: u64 = 10_000;

/// Polls a future that must be ready on its first poll.
#[inline(always)]
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-process check is ready on its first poll"),
    }
}

fn closed_breaker(c: &mut Criterion) {
    let quota = Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
    let rate = Rate::per_second(1_000_000);
    let gclock = FakeRelativeClock::default();
    let gov = RateLimiter::dashmap_with_clock(quota, gclock.clone());
    let clock = ManualClock::new();
    let ours: KeyedLimiter<u64, _, _> = traffik::builder()
        .rate(rate)
        .capacity(KEYS as usize)
        .build_with_clock(&clock)
        .unwrap();
    let failover: Failover<u64, _> = Failover::builder(&ours)
        .on_error(OnError::Allow)
        .timeout(Some(Duration::from_millis(5)))
        .build()
        .unwrap();
    for k in 0..KEYS {
        gov.check_key(&k).unwrap();
        let _ = ours.check(&k, 1).unwrap();
    }

    let mut g = c.benchmark_group("failover/u64-closed");
    let mut k = 0u64;
    g.bench_function("governor", |b| {
        b.iter(|| {
            gclock.advance(Duration::from_micros(1));
            k = (k + 7919) % KEYS;
            black_box(gov.check_key(&k).is_ok());
        })
    });
    g.bench_function("traffik-bare", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(ours.check(&k, 1).unwrap());
        })
    });
    g.bench_function("traffik-async", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(ready(AsyncLimiter::check(&ours, &k, 1)).unwrap());
        })
    });
    g.bench_function("traffik-failover", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(ready(failover.check(&k, 1)).unwrap());
        })
    });
    g.finish();
    assert_eq!(failover.stats().fallback_decisions, 0);
    assert_eq!(failover.stats().allowed_on_error, 0);
}

criterion_group!(benches, closed_breaker);
criterion_main!(benches);

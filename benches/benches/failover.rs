//! What the failover wrapper adds on a closed breaker, in one run:
//!
//! * in process: the bare check, the same check through the `AsyncLimiter` contract, through
//!   `Failover`, and governor's keyed check. Futures are polled once with a no-op waker: the
//!   in-process limiter's are ready at once, and on that path the wrapper registers no timer, so
//!   no runtime is needed; and `check_now` (what middleware calls first) on the bare limiter
//!   and through `Failover`;
//! * on Redis: a bare `RedisLimiter` check beside the same limiter through `Failover`, one
//!   round trip each, on a `redis-server` the bench starts on a free loopback port and stops at
//!   the end. Without `redis-server` on the PATH that group is skipped, loudly.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use std::future::Future;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroU32;
use std::pin::pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use traffik::failover::{Failover, OnError};
use traffik::redis::RedisLimiter;
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
    // What middleware calls first: no future at all.
    g.bench_function("traffik-check-now", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(AsyncLimiter::check_now(&ours, &k, 1).unwrap().unwrap());
        })
    });
    g.bench_function("traffik-failover-check-now", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            k = (k + 7919) % KEYS;
            let _ = black_box(failover.check_now(&k, 1).unwrap().unwrap());
        })
    });
    g.finish();
    assert_eq!(failover.stats().fallback_decisions, 0);
    assert_eq!(failover.stats().allowed_on_error, 0);
}

/// A `redis-server` on a free loopback port (never 6379), persistence off, killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Option<Server> {
        let port = loop {
            let p = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if p != 6379 {
                break p;
            }
        };
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("failover/redis SKIPPED: cannot start redis-server ({e})");
                return None;
            }
        };
        let server = Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf)?;
                Ok(buf)
            });
            if matches!(pong, Ok(b) if &b == b"+PONG\r\n") {
                return Some(server);
            }
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_closed_breaker(c: &mut Criterion) {
    let Some(server) = Server::start() else {
        return;
    };
    // One thread drives the client and the bench: the difference between the two is the
    // wrapper's own cost around a real round trip (its timer included: a Redis check is never
    // ready on its first poll).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let bare = rt.block_on(async {
        RedisLimiter::builder(url.as_str())
            .rate(Rate::per_second(1_000_000))
            .prefix("bench")
            .build()
            .await
            .unwrap()
    });
    let failover: Failover<str, _> = Failover::builder(bare.clone())
        .on_error(OnError::Error)
        .timeout(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    // The same without a per-call timeout: no timer is registered, which shows what the timer
    // itself costs.
    let untimed: Failover<str, _> = Failover::builder(bare.clone())
        .on_error(OnError::Error)
        .timeout(None)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..1_000).map(|i| format!("user-{i}")).collect();

    let mut g = c.benchmark_group("failover/redis-closed");
    let mut k = 0usize;
    g.bench_function("redis-bare", |b| {
        b.iter(|| {
            k = (k + 7) % keys.len();
            let d = rt.block_on(bare.check(keys[k].as_str(), 1)).unwrap();
            black_box(d.is_allowed());
        })
    });
    g.bench_function("redis-failover", |b| {
        b.iter(|| {
            k = (k + 7) % keys.len();
            let d = rt
                .block_on(AsyncLimiter::check(&failover, keys[k].as_str(), 1))
                .unwrap();
            black_box(d.is_allowed());
        })
    });
    g.bench_function("redis-failover-untimed", |b| {
        b.iter(|| {
            k = (k + 7) % keys.len();
            let d = rt
                .block_on(AsyncLimiter::check(&untimed, keys[k].as_str(), 1))
                .unwrap();
            black_box(d.is_allowed());
        })
    });
    g.finish();
    let s = failover.stats();
    assert_eq!((s.trips, s.timeouts, s.errors.indeterminate), (0, 0, 0));
    drop(server);
}

criterion_group!(benches, closed_breaker, redis_closed_breaker);
criterion_main!(benches);

//! Checks per second against one local `memcached` (started here on a free loopback port),
//! beside the same round trips done bare with the limiter's own connection and protocol code.
//!
//! * `baseline/gets` and `baseline/gets+cas`: one key read, and read then compare-and-swapped
//!   with an unchanged value, on one connection: what a denied and an admitted check cost on
//!   the wire with no limiter around them;
//! * `check/denied` (one `gets`) and `check/admitted` (`gets` then `cas`), sequential;
//! * `check/admitted x16 tasks`: 16 tasks on distinct keys over the default pool of 8;
//! * `baseline/pipelined 32 gets+cas` and `check_many/32 admitted`: a batch of 32 distinct
//!   keys, all reads in one write and all writes in another.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

// The limiter's own protocol and connection code, compiled into the bench for the baselines.
#[path = "../src/protocol.rs"]
#[allow(dead_code)]
mod protocol;

#[path = "../src/connection.rs"]
#[allow(dead_code)]
mod connection;

use std::hint::black_box;
use std::time::{Duration, Instant};

use connection::Conn;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use protocol::{Item, Store};
use support::Memcached;
use traffik_core::Rate;
use traffik_memcached::MemcachedLimiter;

const BATCH: usize = 32;
const TASKS: u64 = 16;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A limiter that admits everything (a billion per second), so every check reads and writes.
fn open_limiter(server: &Memcached, prefix: &str) -> MemcachedLimiter {
    MemcachedLimiter::builder(server.addr())
        .rate(Rate::per_second(1_000_000_000))
        .prefix(prefix)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One `gets`; the key's CAS token.
async fn gets(conn: &mut Conn, key: &[u8], out: &mut Vec<u8>) -> u64 {
    out.clear();
    protocol::push_gets(out, key);
    conn.send(out).await.unwrap();
    match conn.recv(|b| protocol::parse_get(b, key)).await.unwrap() {
        Item::Hit { cas, .. } => cas,
        Item::Miss => panic!("baseline key missing"),
    }
}

fn baselines(c: &mut Criterion, server: &Memcached) {
    let rt = current_thread();
    let keys: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| format!("base:{i}").into_bytes())
        .collect();
    for k in &keys {
        server.set(k, protocol::FLAGS, &0u64.to_le_bytes());
    }
    let mut conn = rt.block_on(Conn::connect(&server.addr())).unwrap();
    let mut out = Vec::new();
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("gets", |b| {
        b.iter(|| rt.block_on(async { black_box(gets(&mut conn, &keys[0], &mut out).await) }))
    });
    g.bench_function("gets+cas", |b| {
        b.iter(|| {
            rt.block_on(async {
                let cas = gets(&mut conn, &keys[0], &mut out).await;
                out.clear();
                protocol::push_cas(&mut out, &keys[0], 60, 0, cas);
                conn.send(&out).await.unwrap();
                let r = conn.recv(protocol::parse_store).await.unwrap();
                assert_eq!(r, Store::Stored);
            })
        })
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("pipelined 32 gets+cas", |b| {
        b.iter(|| {
            rt.block_on(async {
                out.clear();
                for k in &keys {
                    protocol::push_gets(&mut out, k);
                }
                conn.send(&out).await.unwrap();
                let mut tokens = Vec::with_capacity(BATCH);
                for k in &keys {
                    match conn.recv(|b| protocol::parse_get(b, k)).await.unwrap() {
                        Item::Hit { cas, .. } => tokens.push(cas),
                        Item::Miss => panic!("baseline key missing"),
                    }
                }
                out.clear();
                for (k, cas) in keys.iter().zip(tokens) {
                    protocol::push_cas(&mut out, k, 60, 0, cas);
                }
                conn.send(&out).await.unwrap();
                for _ in &keys {
                    let r = conn.recv(protocol::parse_store).await.unwrap();
                    assert_eq!(r, Store::Stored);
                }
            })
        })
    });
    g.finish();
}

fn checks(c: &mut Criterion, server: &Memcached) {
    let rt = current_thread();
    let open = open_limiter(server, "bench-open");
    let closed = MemcachedLimiter::builder(server.addr())
        .rate("1/hour")
        .prefix("bench-closed")
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(closed.check("k", 1).await.unwrap().is_allowed());
    });
    let mut g = c.benchmark_group("check");
    g.throughput(Throughput::Elements(1));
    g.bench_function("denied", |b| {
        b.iter(|| {
            rt.block_on(async {
                let d = closed.check("k", 1).await.unwrap();
                assert!(d.is_denied());
            })
        })
    });
    g.bench_function("admitted", |b| {
        b.iter(|| {
            rt.block_on(async {
                let d = open.check("k", 1).await.unwrap();
                assert!(d.is_allowed());
            })
        })
    });

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Its own limiter: tokio sockets belong to the runtime that opened them, and `open`'s
    // pooled connections were opened on `rt`, which is not running while `multi` is.
    let open_multi = open_limiter(server, "bench-open");
    g.bench_function("admitted x16 tasks", |b| {
        b.iter_custom(|iters| {
            let per_task = iters.div_ceil(TASKS);
            let started = Instant::now();
            multi.block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let open = open_multi.clone();
                        tokio::spawn(async move {
                            let key = format!("task-{t}");
                            for _ in 0..per_task {
                                assert!(open.check(&key, 1).await.unwrap().is_allowed());
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            // Scale to the `iters` checks asked for.
            started
                .elapsed()
                .mul_f64(iters as f64 / (per_task * TASKS) as f64)
        })
    });
    g.finish();

    let batch: Vec<(String, u64)> = (0..BATCH).map(|i| (format!("many-{i}"), 1)).collect();
    let mut g = c.benchmark_group("check_many");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("32 admitted", |b| {
        b.iter(|| {
            rt.block_on(async {
                for r in open.check_many(&batch).await {
                    assert!(r.unwrap().is_allowed());
                }
            })
        })
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let server = Memcached::start();
    baselines(c, &server);
    checks(c, &server);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = all
}
criterion_main!(benches);

//! Round-trip benchmark against one local `redis-server` (started here on a free port):
//! sequential checks beside raw `PING`, and pipelined `check_many` beside `redis-benchmark`
//! running a trivial `EVALSHA` at the same pipeline depth. Prints a Markdown table.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use support::RedisServer;
use traffik_core::Rate;
use traffik_redis::{RedisAlgorithm, RedisLimiter};

const SEQUENTIAL: usize = 20_000;
const PIPELINED: usize = 200_000;
const DEPTH: usize = 64;

fn redis_benchmark(port: u16, sha: &str, clients: u32) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-n", &PIPELINED.to_string()])
        .args(["-P", &DEPTH.to_string(), "-c", &clients.to_string(), "-q"])
        .args(["EVALSHA", sha, "0"])
        .output()
        .expect("redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "EVALSHA ...: 123456.79 requests per second, p50=..."
    let line = text.rsplit('\r').next().unwrap_or(&text).to_owned();
    let figure = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    figure.unwrap_or_else(|| panic!("cannot parse redis-benchmark output: {text:?}"))
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for _ in 0..2_000 {
            let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        }
        let t = Instant::now();
        for _ in 0..SEQUENTIAL {
            let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        }
        let ping = t.elapsed().as_secs_f64() / SEQUENTIAL as f64;

        let mut rows = Vec::new();
        for alg in [
            RedisAlgorithm::Gcra,
            RedisAlgorithm::TokenBucket,
            RedisAlgorithm::FixedWindow,
            RedisAlgorithm::SlidingWindowCounter,
            RedisAlgorithm::SlidingWindowLog,
        ] {
            let limiter = RedisLimiter::builder(server.url())
                .rate(Rate::per_second(1_000))
                .algorithm(alg)
                .prefix(format!("bench{alg:?}"))
                .build()
                .await
                .unwrap();
            let keys: Vec<String> = (0..1_000).map(|i| format!("user-{i}")).collect();
            for k in keys.iter().take(500) {
                limiter.check(k, 1).await.unwrap();
            }
            let t = Instant::now();
            for i in 0..SEQUENTIAL {
                limiter.check(&keys[i % keys.len()], 1).await.unwrap();
            }
            let seq = t.elapsed().as_secs_f64() / SEQUENTIAL as f64;

            let batches: Vec<Vec<(&str, u64)>> = (0..PIPELINED / DEPTH)
                .map(|b| {
                    (0..DEPTH)
                        .map(|j| (keys[(b * DEPTH + j) % keys.len()].as_str(), 1))
                        .collect()
                })
                .collect();
            let t = Instant::now();
            for batch in &batches {
                let out = limiter.check_many(batch).await;
                assert!(out.iter().all(|r| r.is_ok()));
            }
            let per_sec = (batches.len() * DEPTH) as f64 / t.elapsed().as_secs_f64();
            rows.push((alg, seq, per_sec));
        }

        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 1")
            .query_async(&mut conn)
            .await
            .unwrap();
        let bench_one = redis_benchmark(server.port, &sha, 1);
        let bench_default = redis_benchmark(server.port, &sha, 50);

        println!("redis-server {} on loopback, pipeline depth {DEPTH}", version());
        println!();
        println!("raw PING round trip (one multiplexed connection): {:.1} µs", ping * 1e6);
        println!(
            "redis-benchmark EVALSHA 'return 1' -P {DEPTH}: {bench_one:.0}/s with 1 client, {bench_default:.0}/s with 50 clients"
        );
        println!();
        println!("| algorithm | sequential check | vs PING | pipelined check_many | vs redis-benchmark -c 1 | vs -c 50 |");
        println!("|---|---|---|---|---|---|");
        for (alg, seq, per_sec) in rows {
            println!(
                "| {alg:?} | {:.1} µs | {:.2}x | {:.0} checks/s | {:.2}x | {:.2}x |",
                seq * 1e6,
                seq / ping,
                per_sec,
                per_sec / bench_one,
                per_sec / bench_default
            );
        }
    });
}

fn version() -> String {
    let out = Command::new("redis-server")
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("v="))
        .unwrap_or("v=?")
        .trim_start_matches("v=")
        .to_owned()
}

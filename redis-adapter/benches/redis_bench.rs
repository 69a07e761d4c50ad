//! Round-trip benchmark against one local `redis-server` (started here on a free port).
//!
//! Baselines go through the same connection type as the limiter (a [`ConnectionManager`]), and
//! the noisy shared machine is handled by interleaving: every round times a batch of `PING`s, a
//! batch of trivial `EVALSHA`s and a batch of checks of every algorithm back to back, and the
//! table reports the median over rounds of each per-round ratio.
//!
//! * sequential: `check` vs `PING` vs `EVALSHA "return 1" 1 <key> <cost>` (same argument shape);
//! * pipelined, depth [`DEPTH`], one connection: `check_many` vs `redis-benchmark -P DEPTH -c 1`
//!   running the trivial `EVALSHA` with the same arguments, and vs `redis-benchmark` running the
//!   limiter's own script (that one has no Rust client in the loop);
//! * server time per script call (`INFO commandstats`, `usec_per_call` of `evalsha`).
//!
//! Prints a Markdown table.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use redis::aio::ConnectionManager;
use support::RedisServer;
use traffik_core::Rate;
use traffik_redis::{RedisAlgorithm, RedisLimiter};

const ROUNDS: usize = 9;
const PER_ROUND: usize = 2_000;
const PIPELINED: usize = 200_000;
const DEPTH: usize = 64;
const KEYS: usize = 1_000;

const ALGORITHMS: [RedisAlgorithm; 5] = [
    RedisAlgorithm::Gcra,
    RedisAlgorithm::TokenBucket,
    RedisAlgorithm::FixedWindow,
    RedisAlgorithm::SlidingWindowCounter,
    RedisAlgorithm::SlidingWindowLog,
];

/// `redis-benchmark -P DEPTH -c clients` on `EVALSHA sha <keys> 1`, in requests per second.
fn redis_benchmark(port: u16, sha: &str, keys: &[&str], clients: u32) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-n", &PIPELINED.to_string()])
        .args(["-P", &DEPTH.to_string(), "-c", &clients.to_string(), "-q"])
        .args(["-r", &KEYS.to_string()])
        .args(["EVALSHA", sha, &keys.len().to_string()])
        .args(keys)
        .arg("1")
        .output()
        .expect("redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "EVALSHA ...: 123456.79 requests per second, p50=..."
    let line = text.rsplit('\r').next().unwrap_or(&text).to_owned();
    let figure = line
        .rsplit(": ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    figure.unwrap_or_else(|| panic!("cannot parse redis-benchmark output: {text:?}"))
}

async fn reset_stats(conn: &mut ConnectionManager) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .unwrap();
}

/// Server-side µs per `EVALSHA` since the last reset.
async fn evalsha_usec(conn: &mut ConnectionManager) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("usec_per_call=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = ConnectionManager::new(client).await.unwrap();
        let trivial: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 1")
            .query_async(&mut conn)
            .await
            .unwrap();
        let keys: Vec<String> = (0..KEYS).map(|i| format!("user-{i}")).collect();

        let mut limiters = Vec::new();
        for alg in ALGORITHMS {
            let limiter = RedisLimiter::builder(server.url())
                .rate(Rate::per_second(1_000))
                .algorithm(alg)
                .prefix(format!("bench{alg:?}"))
                .build()
                .await
                .unwrap();
            // Warm-up: every key exists before the timed rounds (admitted or not, both are work).
            for k in &keys {
                let _warm = limiter.check(k, 1).await.unwrap();
            }
            limiters.push(limiter);
        }

        // Sequential, interleaved rounds.
        let mut ping = Vec::new();
        let mut eval = Vec::new();
        let mut seq: Vec<Vec<f64>> = vec![Vec::new(); ALGORITHMS.len()];
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for _ in 0..PER_ROUND {
                let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
            }
            ping.push(t.elapsed().as_secs_f64() / PER_ROUND as f64);
            let t = Instant::now();
            for i in 0..PER_ROUND {
                let _: i64 = redis::cmd("EVALSHA")
                    .arg(&trivial)
                    .arg(1)
                    .arg(&keys[i % KEYS])
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            eval.push(t.elapsed().as_secs_f64() / PER_ROUND as f64);
            for (a, limiter) in limiters.iter().enumerate() {
                let t = Instant::now();
                for i in 0..PER_ROUND {
                    let _decision = limiter.check(&keys[i % KEYS], 1).await.unwrap();
                }
                seq[a].push(t.elapsed().as_secs_f64() / PER_ROUND as f64);
            }
        }
        let ratio = |xs: &[f64], base: &[f64]| median(xs.iter().zip(base).map(|(x, b)| x / b).collect());

        // Pipelined: the trivial script through the same connection type, then each limiter.
        let batches: Vec<Vec<(&str, u64)>> = (0..PIPELINED / DEPTH)
            .map(|b| {
                (0..DEPTH)
                    .map(|j| (keys[(b * DEPTH + j) % KEYS].as_str(), 1))
                    .collect()
            })
            .collect();
        let t = Instant::now();
        for batch in &batches {
            let mut pipe = redis::pipe();
            for (k, cost) in batch {
                pipe.cmd("EVALSHA").arg(&trivial).arg(1).arg(*k).arg(*cost);
            }
            let _: Vec<i64> = pipe.query_async(&mut conn).await.unwrap();
        }
        let rust_trivial = (batches.len() * DEPTH) as f64 / t.elapsed().as_secs_f64();
        let trivial_one = redis_benchmark(server.port, &trivial, &["k:__rand_int__"], 1);

        let mut rows = Vec::new();
        for (a, limiter) in limiters.iter().enumerate() {
            reset_stats(&mut conn).await;
            let t = Instant::now();
            for batch in &batches {
                let out = limiter.check_many(batch).await;
                assert!(out.iter().all(|r| r.is_ok()));
            }
            let per_sec = (batches.len() * DEPTH) as f64 / t.elapsed().as_secs_f64();
            let server_us = evalsha_usec(&mut conn).await;
            // The log takes its sorted set and its meta hash; the others one key.
            let key = format!("rb{a}:{{__rand_int__}}:x");
            let meta = format!("{key}:m");
            let own_keys: Vec<&str> = if ALGORITHMS[a] == RedisAlgorithm::SlidingWindowLog {
                vec![&key, &meta]
            } else {
                vec![&key]
            };
            let own = redis_benchmark(server.port, limiter.script_sha(), &own_keys, 1);
            rows.push((ALGORITHMS[a], median(seq[a].clone()), ratio(&seq[a], &ping), ratio(&seq[a], &eval), per_sec, server_us, own));
        }
        let trivial_default = redis_benchmark(server.port, &trivial, &["k:__rand_int__"], 50);

        println!("redis-server {} on loopback, pipeline depth {DEPTH}, one connection", version());
        println!();
        println!(
            "sequential, median of {ROUNDS} interleaved rounds of {PER_ROUND}: PING {:.1} µs, trivial EVALSHA {:.1} µs (ConnectionManager)",
            median(ping.clone()) * 1e6,
            median(eval.clone()) * 1e6
        );
        println!(
            "pipelined trivial EVALSHA (1 key, 1 arg): {rust_trivial:.0}/s through ConnectionManager, {trivial_one:.0}/s redis-benchmark -c 1, {trivial_default:.0}/s -c 50"
        );
        println!();
        println!("| algorithm | sequential check | vs PING | vs trivial EVALSHA | pipelined check_many | vs redis-benchmark trivial -c 1 | server µs/check | redis-benchmark on this script -c 1 |");
        println!("|---|---|---|---|---|---|---|---|");
        for (alg, seq, vs_ping, vs_eval, per_sec, server_us, own) in rows {
            println!(
                "| {alg:?} | {:.1} µs | {vs_ping:.2}x | {vs_eval:.2}x | {per_sec:.0}/s | {:.2}x | {server_us:.2} | {own:.0}/s |",
                seq * 1e6,
                per_sec / trivial_one,
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

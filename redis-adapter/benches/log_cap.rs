//! What the sliding window log costs Redis's single thread at large limits: one script call at
//! a time, timed by the server (`INFO commandstats`, µs of `evalsha`), for the paths whose work
//! grows with the limit. The cap on its limit (`MAX_LOG_LIMIT`) is picked from these figures.
//!
//! * fill: one check of cost `limit` into an empty window (`limit` entries added);
//! * slide: one check of cost `limit` a period later (`limit` removed, `limit` added);
//! * rebase: a peek on a full window whose base is more than 2^51 ns old (every entry's score
//!   rewritten; happens once every ~26 days on a key that never goes idle);
//! * one more into a window holding `limit - 1`, and a denial on a full window.
//!
//! Also the memory of a full log (`MEMORY USAGE`). Prints a Markdown table. Limits to measure
//! can be given as arguments (`cargo bench -p traffik-redis --bench log_cap -- 1000 10000`);
//! those above the cap are refused by the builder, as they are in use.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use redis::aio::ConnectionManager;
use support::RedisServer;
use traffik_core::Rate;
use traffik_redis::{RedisAlgorithm, RedisLimiter};

const SEC: u64 = 1_000_000_000;
const REPS: usize = 3;

/// µs of server time of the one `evalsha` since the last reset.
async fn server_us(conn: &mut ConnectionManager) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("usec=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn reset_stats(conn: &mut ConnectionManager) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .unwrap();
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
        let limits: Vec<u64> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        let limits = if limits.is_empty() {
            vec![1_000, 10_000]
        } else {
            limits
        };
        println!("| limit | fill (µs) | slide (µs) | rebase (µs) | one more (µs) | denial (µs) | full log (bytes/entry) |");
        println!("|---|---|---|---|---|---|---|");
        for limit in limits {
            if limit > traffik_redis::MAX_LOG_LIMIT {
                println!(
                    "| {limit} | refused: above MAX_LOG_LIMIT ({}) | | | | | |",
                    traffik_redis::MAX_LOG_LIMIT
                );
                continue;
            }
            // A period longer than 2^51 ns, so that a full window can outlive its base.
            let period = (1u64 << 51) + (1 << 50);
            let build = |prefix: String| {
                RedisLimiter::builder(server.url())
                    .rate(Rate::from_nanos(limit, period).unwrap())
                    .algorithm(RedisAlgorithm::SlidingWindowLog)
                    .prefix(prefix)
                    .timeout(Duration::from_secs(120))
                    .build()
            };
            let (mut fill, mut slide, mut rebase, mut more, mut deny, mut bytes) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for rep in 0..REPS {
                let l = build(format!("cap{limit}-{rep}")).await.unwrap();
                let t0 = 1_700_000_000 * SEC;
                let mut timed = async |key: &str, cost: u64, at: u64| {
                    reset_stats(&mut conn).await;
                    let d = l.check_at(key, cost, at).await.unwrap();
                    (server_us(&mut conn).await, d)
                };
                let (us, d) = timed("a", limit, t0).await;
                assert!(d.is_allowed());
                fill.push(us);
                let (us, d) = timed("a", 1, t0 + 1).await;
                assert!(d.is_denied());
                deny.push(us);
                let (us, d) = timed("a", limit, t0 + period).await;
                assert!(d.is_allowed());
                slide.push(us);
                // The slide emptied the log, so the base is its unit (one unit = one period
                // here); at the next unit the base is over 2^51 ns old, the window still full.
                let next_unit = ((t0 + period) / period + 1) * period;
                let (us, d) = timed("a", 0, next_unit).await;
                assert_eq!(d.remaining(), 0);
                rebase.push(us);
                let (us, d) = timed("b", limit - 1, t0).await;
                assert!(d.is_allowed());
                let (us2, d) = timed("b", 1, t0 + 1).await;
                assert!(d.is_allowed() && us > 0.0);
                more.push(us2);
                let name = String::from_utf8(l.redis_key(b"a")).unwrap();
                let mem: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&name)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                bytes.push(mem.unwrap() as f64 / limit as f64);
            }
            println!(
                "| {limit} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} |",
                median(fill),
                median(slide),
                median(rebase),
                median(more),
                median(deny),
                median(bytes)
            );
        }
    });
}

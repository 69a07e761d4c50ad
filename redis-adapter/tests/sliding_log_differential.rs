//! Differential test: the in-process sliding window log (`traffik_core::SlidingLogLimiter`'s
//! ring) and the Redis script `sliding_log.lua` get identical arrival times and costs; every
//! decision must be identical, to the nanosecond.
//!
//! Readings only move forward here. On a reading behind the key's newest entry the two differ
//! on purpose: the script records the entry at the stale time (so it leaves the window early),
//! the ring records it at the newest entry's time (so it never leaves earlier than a later
//! reading would make it, which keeps stale readings from admitting more).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::{RedisServer, Rng};
use traffik_core::{CheckError, LogRing, Rate, SlidingLog};
use traffik_redis::{RedisAlgorithm, RedisLimiter, RedisLimiterError};

const SEC: u64 = 1_000_000_000;

fn rates() -> Vec<Rate> {
    vec![
        Rate::per_second(10),
        Rate::per_second(3),
        Rate::from_nanos(7, 13).unwrap(),
        Rate::per_minute(1000),
        Rate::per_hour(5),
        Rate::per_day(100),
        Rate::from_nanos(1, 1_000).unwrap(),
    ]
}

/// Next arrival gap: bursts, gaps near the spacing, and gaps that land on an expiry.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_decides_like_the_redis_script() {
    let server = RedisServer::start();
    let mut rng = Rng(0x5EED_1065);
    let (mut compared, mut denied, mut expired) = (0u64, 0u64, 0u64);
    for (ri, rate) in rates().into_iter().enumerate() {
        let log = SlidingLog::new(rate).unwrap();
        let limiter = RedisLimiter::builder(server.url())
            .rate(rate)
            .algorithm(RedisAlgorithm::SlidingWindowLog)
            .prefix(format!("swl-diff-{ri}"))
            .build()
            .await
            .unwrap();
        let keys = ["a", "b", "c"];
        let rings = [LogRing::new(&log), LogRing::new(&log), LogRing::new(&log)];
        // When each key was last written, and the TTL the script gave it.
        let mut written: [Option<(Instant, Duration)>; 3] = [None; 3];
        let mut now = 1_700_000_000 * SEC + rng.below(86_400 * SEC);
        let mut last_wall = Instant::now();
        let limit = log.limit();
        for step in 0..150 {
            let k = rng.below(3) as usize;
            let cost = match rng.below(12) {
                0 => 0,
                1 => limit + 1,
                2 => limit,
                3 => rng.below(limit.min(1_000) + 1),
                _ => 1,
            };
            // Injected time advances at least as fast as the wall clock, so Redis's TTLs never
            // end before the ring's entries expire.
            let wall = last_wall.elapsed().as_nanos() as u64;
            last_wall = Instant::now();
            now += gap(&mut rng, rate).max(wall);
            let ctx = format!("rate {rate} step {step} key {k} now {now} cost {cost}");
            let sent = Instant::now();
            let got = limiter.check_at(keys[k], cost, now).await;
            let expected = rings[k].check(now, cost);
            match (expected, got) {
                (Ok(mut want), Ok(d)) => {
                    // Redis stamps TTLs from its millisecond clock: on a loaded machine a key
                    // may go just before its entries expire here. Then Redis started afresh.
                    let may_have_expired = written[k].is_some_and(|(at, ttl)| {
                        Instant::now().duration_since(at) + Duration::from_millis(1) >= ttl
                    });
                    if d != want && may_have_expired {
                        rings[k].reset();
                        want = rings[k].check(now, cost).unwrap();
                        expired += 1;
                    }
                    assert_eq!(d, want, "{ctx}");
                    if d.is_allowed() && cost > 0 {
                        let ms = d.reset_after_nanos().div_ceil(1_000_000).max(1) + 1;
                        written[k] = Some((sent, Duration::from_millis(ms)));
                    }
                    denied += u64::from(d.is_denied());
                }
                (
                    Err(CheckError::InsufficientCapacity { max }),
                    Err(RedisLimiterError::InsufficientCapacity { max: got }),
                ) => assert_eq!(max, got, "{ctx}"),
                (e, g) => panic!("{ctx}: ring {e:?} vs redis {g:?}"),
            }
            compared += 1;
        }
    }
    assert!(
        denied > 50,
        "only {denied} denials: the sequences are too gentle"
    );
    eprintln!("compared {compared}, {denied} denied, {expired} expired early in Redis");
}

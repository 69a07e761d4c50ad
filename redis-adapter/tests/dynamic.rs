//! Differential tests of GCRA with per-call parameters: the core's strategies whose rate moves
//! between checks (a live rate, tiers, an adaptive limit, priorities, a schedule) against
//! `check_gcra` on a real Redis, fed the same times, costs and changes. Every decision and every
//! stored TAT must be identical.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support::{RedisServer, Rng};
use traffik_core::{
    Adaptive, Algorithm, AlgorithmKind, AsyncLimiter, CheckError, Gcra, GcraParams, Live,
    PriorityBudget, Quotas, Rate, Schedule, Tiers, Transition,
};
use traffik_redis::{RedisLimiter, RedisLimiterError, RedisTiered, TimeSource};

const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SEC;

/// Clock bases: Unix-epoch nanoseconds today, and near the core's 2^62 limit.
fn bases(rng: &mut Rng) -> [u64; 2] {
    [
        1_700_000_000 * SEC + rng.below(100 * 86_400 * SEC),
        (1u64 << 62) - 400 * 86_400 * SEC + rng.below(SEC),
    ]
}

/// Next time step: often none, often within an interval or two, sometimes long.
fn step(rng: &mut Rng, interval: u64) -> u64 {
    match rng.below(8) {
        0 | 1 => 0,
        2..=4 => rng.below(interval * 2),
        5 => rng.below(7),
        6 => interval * (1 + rng.below(5)) + rng.below(3),
        _ => rng.below(interval * 40),
    }
}

/// A TAT as stored by the script: two little-endian doubles `tq, tr` with TAT = tq * 1e9 + tr.
async fn stored_tat(conn: &mut redis::aio::MultiplexedConnection, key: &[u8]) -> Option<u64> {
    let raw: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    raw.map(|raw| {
        assert_eq!(raw.len(), 16);
        let tq = f64::from_le_bytes(raw[..8].try_into().unwrap());
        let tr = f64::from_le_bytes(raw[8..].try_into().unwrap());
        tq as u64 * SEC + tr as u64
    })
}

/// Compares one core transition with Redis's answer; moves the core state; checks the stored
/// TAT. Returns whether the check was admitted. The steps are of intervals of seconds or more
/// and every state's TTL is at least one interval, so no key expires during a run: a stored
/// TAT exists and equals the core's whenever the core has charged the key.
async fn compare(
    conn: &mut redis::aio::MultiplexedConnection,
    redis_key: &[u8],
    core: Result<Transition, CheckError>,
    redis: Result<traffik_core::Decision, RedisLimiterError>,
    state: &mut u64,
    context: &str,
) -> bool {
    let admitted = match (core, redis) {
        (Ok(t), Ok(d)) => {
            assert_eq!(t.decision, d, "{context}");
            if let Some(next) = t.next {
                *state = next;
            }
            d.is_allowed()
        }
        (
            Err(CheckError::InsufficientCapacity { max }),
            Err(RedisLimiterError::InsufficientCapacity { max: got }),
        ) => {
            assert_eq!(max, got, "{context}");
            false
        }
        (core, redis) => panic!("{context}: core {core:?}, redis {redis:?}"),
    };
    let stored = stored_tat(conn, redis_key).await;
    if *state == 0 {
        assert_eq!(stored, None, "{context}");
    } else {
        assert_eq!(stored, Some(*state), "{context}");
    }
    admitted
}

async fn setup(server: &RedisServer) -> (RedisLimiter, redis::aio::MultiplexedConnection) {
    // The limiter's own rate plays no part in `check_gcra`.
    let limiter = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(1))
        .prefix("dyn")
        .build()
        .await
        .unwrap();
    let conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (limiter, conn)
}

/// A limiter whose clock the test sets (Unix-epoch nanoseconds, starting at 1.7e9 s).
async fn on_manual_clock(server: &RedisServer, prefix: &str) -> (Arc<AtomicU64>, RedisLimiter) {
    let clock = Arc::new(AtomicU64::new(1_700_000_000 * SEC));
    let source = {
        let clock = Arc::clone(&clock);
        TimeSource::Custom(Arc::new(move || clock.load(Ordering::SeqCst)))
    };
    let limiter = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(1))
        .prefix(prefix)
        .time_source(source)
        .build()
        .await
        .unwrap();
    (clock, limiter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_rate_changes_decide_as_the_core() {
    let server = RedisServer::start();
    let (limiter, mut conn) = setup(&server).await;
    let (mut admitted, mut changes, mut checks, mut stale) = (0, 0, 0, 0);
    for seed in 1..=6u64 {
        let mut rng = Rng(seed * 0x9E37_79B9);
        for (bi, base) in bases(&mut rng).into_iter().enumerate() {
            let key = format!("live-{seed}-{bi}");
            let redis_key = limiter.gcra_key(key.as_bytes());
            let live = Live::new(Gcra::with_burst(Rate::per_hour(60), 3).unwrap());
            let (mut now, mut state) = (base, 0u64);
            for i in 0..80 {
                if rng.below(6) == 0 {
                    // Rates with intervals from 6 s to 10 min, bursts 1 to 6.
                    let rate = Rate::per_hour(6 + rng.below(595));
                    live.set(Gcra::with_burst(rate, 1 + rng.below(6)).unwrap())
                        .unwrap();
                    changes += 1;
                }
                let gcra = live.load();
                now += step(&mut rng, gcra.interval_nanos());
                // Sometimes a stale reading (a caller whose clock lags), up to a few intervals
                // behind the newest one: never looser, in both.
                let at = match rng.below(6) {
                    0 => {
                        stale += 1;
                        now - rng.below(gcra.interval_nanos() * 4)
                    }
                    _ => now,
                };
                let cost = rng.below(gcra.burst() + 2);
                let core = live.decide(state, at, cost);
                let redis = limiter.check_gcra_at(&key, cost, gcra.params(), at).await;
                let context = format!("live seed {seed} base {bi} check {i} cost {cost}");
                checks += 1;
                if compare(&mut conn, &redis_key, core, redis, &mut state, &context).await {
                    admitted += 1;
                }
            }
        }
    }
    assert!(changes > 50 && stale > 50, "{changes} {stale}");
    assert!(
        admitted > 200 && checks - admitted > 200,
        "{admitted}/{checks}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_with_two_keys_decide_as_the_core() {
    let server = RedisServer::start();
    let (limiter, mut conn) = setup(&server).await;
    // Tier 1 ("paid:" keys) is three times tier 0; tiers are changed live during the run.
    let tiers = Arc::new(
        Tiers::scaled(
            AlgorithmKind::Gcra,
            Rate::per_hour(120),
            Some(4),
            [1, 3],
            |key: &[u8]| usize::from(key.starts_with(b"paid:")),
        )
        .unwrap()
        .live(),
    );
    let (clock, redis) = on_manual_clock(&server, "dyn").await;
    let picker = Arc::clone(&tiers);
    let tiered = RedisTiered::new(redis, move |key: &[u8]| {
        picker.select(key).load().gcra_params()
    });
    let keys = ["free:a", "paid:b"];
    let mut states = [0u64; 2];
    let (mut admitted, mut checks) = ([0u32; 2], 0);
    let mut rng = Rng(77);
    for i in 0..400 {
        if rng.below(25) == 0 {
            let tier = rng.below(2) as usize;
            let rate = Rate::per_hour(30 + rng.below(600));
            let algorithm =
                traffik_core::AnyAlgorithm::new(AlgorithmKind::Gcra, rate, Some(1 + rng.below(8)))
                    .unwrap();
            tiers.set_tier(tier, algorithm).unwrap();
        }
        let k = rng.below(2) as usize;
        let key = keys[k].as_bytes();
        let params = tiers.select(key).load().gcra_params().unwrap();
        let now = clock.load(Ordering::SeqCst) + step(&mut rng, params.interval_nanos());
        clock.store(now, Ordering::SeqCst);
        let cost = rng.below(params.burst() + 2);
        let core = tiers.select(key).decide(states[k], now, cost);
        let redis = tiered.check(key, cost).await;
        let context = format!("tiers check {i} key {} cost {cost}", keys[k]);
        checks += 1;
        let redis_key = limiter.gcra_key(key);
        if compare(&mut conn, &redis_key, core, redis, &mut states[k], &context).await {
            admitted[k] += 1;
        }
    }
    assert!(
        admitted[0] > 30 && admitted[1] > 30,
        "{admitted:?} of {checks}"
    );
    // The paid key took more than the free one at three times the rate (until changed).
    assert!(states[0] != states[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_limit_with_reports_decides_as_the_core() {
    let server = RedisServer::start();
    let (limiter, mut conn) = setup(&server).await;
    let (mut admitted, mut checks, mut limits) = (0, 0, std::collections::BTreeSet::new());
    for seed in 1..=4u64 {
        let mut rng = Rng(seed * 31 + 5);
        for (bi, base) in bases(&mut rng).into_iter().enumerate() {
            let adaptive = Adaptive::builder(Rate::per_hour(10), Rate::per_hour(400), 50)
                .increase(25)
                .decrease(1, 3)
                .burst(5)
                .build()
                .unwrap();
            let key = format!("adaptive-{seed}-{bi}");
            let redis_key = limiter.gcra_key(key.as_bytes());
            let (mut now, mut state) = (base, 0u64);
            for i in 0..80 {
                if rng.below(3) == 0 {
                    adaptive.report(rng.below(100));
                }
                let params = adaptive.params();
                limits.insert(adaptive.limit());
                now += step(&mut rng, params.interval_nanos());
                let cost = rng.below(adaptive.burst() + 2);
                let core = adaptive.decide(state, now, cost);
                let redis = limiter.check_gcra_at(&key, cost, params, now).await;
                let context = format!("adaptive seed {seed} base {bi} check {i} cost {cost}");
                checks += 1;
                if compare(&mut conn, &redis_key, core, redis, &mut state, &context).await {
                    admitted += 1;
                }
            }
        }
    }
    assert!(limits.len() > 5, "{limits:?}");
    assert!(
        admitted > 100 && checks - admitted > 100,
        "{admitted}/{checks}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_reserves_decide_as_the_core() {
    let server = RedisServer::start();
    let (limiter, mut conn) = setup(&server).await;
    let budget = PriorityBudget::new(Rate::per_hour(360), 12, &[8, 4, 0]).unwrap();
    let mut admitted = [0u32; 3];
    let mut denied = [0u32; 3];
    for seed in 1..=5u64 {
        let mut rng = Rng(seed * 1_000_003);
        for (bi, base) in bases(&mut rng).into_iter().enumerate() {
            let key = format!("priority-{seed}-{bi}");
            let redis_key = limiter.gcra_key(key.as_bytes());
            let (mut now, mut state) = (base, 0u64);
            for i in 0..80 {
                let p = rng.below(3) as usize;
                let level = budget.level(p).unwrap();
                now += step(&mut rng, 10 * SEC) / 2;
                let cost = rng.below(6);
                let core = level.decide(state, now, cost);
                let redis = limiter.check_gcra_at(&key, cost, level.params(), now).await;
                let context = format!("priority seed {seed} base {bi} check {i} p {p} cost {cost}");
                if compare(&mut conn, &redis_key, core, redis, &mut state, &context).await {
                    admitted[p] += 1;
                } else {
                    denied[p] += 1;
                }
            }
        }
    }
    for p in 0..3 {
        assert!(admitted[p] > 20 && denied[p] > 5, "{admitted:?} {denied:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_across_hours_decides_as_the_core() {
    let server = RedisServer::start();
    let (limiter, mut conn) = setup(&server).await;
    let schedule = Schedule::builder(Rate::per_hour(30))
        .weekdays(9..17, Rate::per_hour(300))
        .weekend(Rate::per_hour(12))
        .build()
        .unwrap();
    let mut rates = std::collections::BTreeSet::new();
    let mut rng = Rng(4242);
    let key = "schedule";
    let redis_key = limiter.gcra_key(key.as_bytes());
    // A Monday 08:00 UTC: the run crosses working hours, evenings and a weekend.
    let (mut now, mut state) = (1_704_096_000 * SEC, 0u64);
    let mut admitted = 0;
    for i in 0..600 {
        let params = schedule.params_at(now);
        rates.insert(params.interval_nanos());
        let cost = match rng.below(4) {
            0 => params.burst() - rng.below(2),
            _ => rng.below(params.burst() / 3 + 2),
        };
        let core = schedule.decide(state, now, cost);
        let redis = limiter.check_gcra_at(key, cost, params, now).await;
        let context = format!("schedule check {i} cost {cost}");
        if compare(&mut conn, &redis_key, core, redis, &mut state, &context).await {
            admitted += 1;
        }
        now += match rng.below(3) {
            0 => 0,
            _ => step(&mut rng, params.interval_nanos()) + rng.below(HOUR / 2),
        };
    }
    assert_eq!(rates.len(), 3);
    assert!(admitted > 100, "{admitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_time_and_refusals() {
    let server = RedisServer::start();
    let (limiter, _conn) = setup(&server).await;
    let params = GcraParams::new(HOUR, 2).unwrap();
    assert!(limiter
        .check_gcra("s", 2, params)
        .await
        .unwrap()
        .is_allowed());
    let denied = limiter.check_gcra("s", 1, params).await.unwrap();
    assert!(denied.is_denied());
    // One interval to wait, less the few milliseconds since the first check (server time).
    let retry = denied.retry_after_nanos();
    assert!(retry <= HOUR && retry > HOUR - 5 * SEC, "{retry}");
    // A faster rate reads the same TAT: two hours ahead, with a tolerance of 2 x 1 min.
    let fast = GcraParams::new(60 * SEC, 2).unwrap();
    assert!(limiter.check_gcra("s", 1, fast).await.unwrap().is_denied());
    assert!(matches!(
        limiter.check_gcra("s", 3, params).await,
        Err(RedisLimiterError::InsufficientCapacity { max: 2 })
    ));
    let huge = GcraParams::new(1 << 40, 1 << 12).unwrap();
    assert!(matches!(
        limiter.check_gcra("s", 1, huge).await,
        Err(RedisLimiterError::Config { .. })
    ));
    limiter.reset_gcra("s").await.unwrap();
    assert!(limiter.peek_gcra("s", params).await.unwrap().is_allowed());
    assert_eq!(limiter.gcra_key(b"s"), b"dyn:{s}:gcrap".to_vec());
}

#[test]
fn blocking_wrapper_checks_with_params() {
    let server = RedisServer::start();
    let limiter = traffik_redis::blocking::RedisLimiter::connect(
        RedisLimiter::builder(server.url())
            .rate(Rate::per_second(1))
            .prefix("dynb"),
    )
    .unwrap();
    let gcra = Gcra::with_burst(Rate::per_hour(60), 2).unwrap();
    let t0 = 1_700_000_000 * SEC;
    let mut state = 0;
    for (i, (cost, at)) in [(2, 0), (1, 0), (1, 60 * SEC), (1, 60 * SEC + 1)]
        .into_iter()
        .enumerate()
    {
        let core = gcra.decide(state, t0 + at, cost).unwrap();
        let redis = limiter
            .check_gcra_at("k", cost, gcra.params(), t0 + at)
            .unwrap();
        assert_eq!(core.decision, redis, "check {i}");
        state = core.next.unwrap_or(state);
    }
    limiter.reset_gcra("k").unwrap();
    assert!(limiter
        .check_gcra("k", 2, gcra.params())
        .unwrap()
        .is_allowed());
}

/// `check_gcra_many` pipelines a batch with parameters per check: in input order, each decision
/// is the core's for its key's state at the batch's time, a refused cost fails alone unsent,
/// and the states written are those of checking one by one.
#[tokio::test]
async fn check_gcra_many_decides_in_order_as_the_core() {
    let server = RedisServer::start();
    let (clock, redis) = on_manual_clock(&server, "dyn-many").await;
    let slow = Gcra::with_burst(Rate::per_minute(6), 3).unwrap();
    let fast = Gcra::with_burst(Rate::per_second(2), 5).unwrap();
    let (a, b) = (slow.params(), fast.params());
    let mut states = [0u64; 2];
    let batches = [
        vec![
            ("x", 1, a, 0),
            ("x", 1, a, 0),
            ("y", 2, b, 1),
            ("x", 1, a, 0),
            ("x", 1, a, 0),
            ("y", 4, b, 1),
            ("z", 9, b, 1),
            ("y", 3, b, 1),
        ],
        vec![
            ("x", 2, a, 0),
            ("y", 5, b, 1),
            ("x", 1, a, 0),
            ("y", 0, b, 1),
        ],
    ];
    let (mut allowed, mut denied) = (0, 0);
    for (bi, batch) in batches.iter().enumerate() {
        if bi > 0 {
            clock.fetch_add(12 * SEC, Ordering::SeqCst);
        }
        let now = clock.load(Ordering::SeqCst);
        let checks: Vec<(&str, u64, GcraParams)> =
            batch.iter().map(|&(k, c, p, _)| (k, c, p)).collect();
        let got = redis.check_gcra_many(&checks).await;
        assert_eq!(got.len(), batch.len());
        for (i, (&(key, cost, _, which), got)) in batch.iter().zip(got).enumerate() {
            let alg = [&slow, &fast][which];
            let state = if key == "z" { 0 } else { states[which] };
            match (alg.decide(state, now, cost), got) {
                (Ok(Transition { decision, next, .. }), Ok(d)) => {
                    assert_eq!(d, decision, "batch {bi} check {i}");
                    if let Some(next) = next {
                        states[which] = next;
                    }
                    if d.is_allowed() {
                        allowed += 1;
                    } else {
                        denied += 1;
                    }
                }
                (
                    Err(CheckError::InsufficientCapacity { max }),
                    Err(RedisLimiterError::InsufficientCapacity { max: got }),
                ) => assert_eq!((key, got), ("z", max), "batch {bi} check {i}"),
                (core, got) => panic!("batch {bi} check {i}: core {core:?}, redis {got:?}"),
            }
        }
    }
    // First batch: x 3 of 3 then denied, y 2 then 4 denied (3 left) then 3. After 12 s, x owes
    // 18 s: 2 more (20 s) denied, 1 (10 s) fits; y is full again for 5, then a peek.
    assert_eq!((allowed, denied), (8, 3));
    // The refused check sent nothing: no state for "z".
    let z = String::from_utf8(redis.gcra_key(b"z")).unwrap();
    assert_eq!(server.raw(&["EXISTS", &z]).trim(), ":0");
}

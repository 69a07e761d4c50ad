//! Differential tests: identical arrival times and costs go to the in-process algorithms of
//! `traffik-core` and to the Redis scripts; every decision must be identical.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use support::{RedisServer, Rng};
use traffik_core::{Algorithm, AlgorithmKind, AnyAlgorithm, CheckError, Decision, Rate, Rollover};
use traffik_redis::{RedisAlgorithm, RedisLimiter, RedisLimiterError};

const SEC: u64 = 1_000_000_000;

/// Realistic clock bases: near zero (a monotonic clock), Unix-epoch nanoseconds today, and a
/// clock near the core's 2^62 limit.
fn bases(rng: &mut Rng) -> [u64; 3] {
    [
        rng.below(SEC),
        1_700_000_000 * SEC + rng.below(100 * 86_400 * SEC),
        (1u64 << 62) - 400 * 86_400 * SEC + rng.below(SEC),
    ]
}

fn rates() -> Vec<(Rate, Option<u64>)> {
    vec![
        (Rate::per_second(10), None),
        (Rate::per_second(3), Some(2)),
        (Rate::from_nanos(7, 13).unwrap(), None),
        (Rate::per_minute(1000), Some(50)),
        (Rate::per_hour(5), None),
        (Rate::per_day(100), Some(7)),
        (Rate::from_nanos(1, 1_000).unwrap(), Some(3)),
        (Rate::per_second(1_000_000), None),
        (Rate::from_nanos(9, 86_400 * SEC * 30).unwrap(), None),
    ]
}

/// Next arrival gap: mostly around the emission interval, sometimes a burst or a long idle.
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

/// The last write of a key's state: when its check was sent, and the TTL the script gives a
/// state fresh in `reset` ns (rounded up to whole milliseconds, plus one).
#[derive(Clone, Copy)]
struct Written {
    sent: Instant,
    ttl: Duration,
}

impl Written {
    fn new(sent: Instant, reset: u64) -> Self {
        let ms = reset.div_ceil(1_000_000).max(1) + 1;
        Written {
            sent,
            ttl: Duration::from_millis(ms),
        }
    }

    /// Whether Redis may have expired the key by `done` (when the next check returned): its TTL
    /// runs on Redis's wall clock, which the injected clock only follows from step to step, so
    /// on a loaded machine a key can expire a little before the core's state is fresh. Redis
    /// stamps expiries from its millisecond clock truncated, so up to 1 ms early.
    fn may_have_expired(written: Option<Self>, done: Instant) -> bool {
        written.is_some_and(|w| done.duration_since(w.sent) + Duration::from_millis(1) >= w.ttl)
    }
}

/// How many more milliseconds Redis keeps `key`'s state (negative: none).
fn alive_for_ms(server: &RedisServer, limiter: &RedisLimiter, key: &str) -> i64 {
    let name = String::from_utf8(limiter.redis_key(key.as_bytes())).unwrap();
    let reply = server.raw(&["PTTL", &name]);
    reply.trim().trim_start_matches(':').parse().unwrap()
}

/// How far a stale check's reading lags the newest one: within a period, a few periods, or up
/// to 40 periods. GCRA and the buckets are exact for lags below 2^52 ns (see the crate docs),
/// so theirs stop at 2^51 ns; the window scripts keep durations split and are exact for any
/// lag, so theirs do not stop (a rate per 30 days lags by up to 3.3 years, past 2^53 ns).
fn lag(rng: &mut Rng, rate: Rate, kind: AlgorithmKind, now: u64) -> u64 {
    let period = rate.period_nanos();
    let lag = match rng.below(4) {
        0 => rng.below(period),
        1 => period * (1 + rng.below(3)) + rng.below(period),
        _ => rng.below(period.saturating_mul(40)),
    };
    let cap = match kind {
        AlgorithmKind::FixedWindow
        | AlgorithmKind::SlidingWindowCounter
        | AlgorithmKind::QuotaRollover(_) => u64::MAX,
        _ => 1 << 51,
    };
    lag.min(cap).min(now)
}

async fn run_differential(kind: AlgorithmKind, server: &RedisServer, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut compared = 0;
    let mut denied = 0u64;
    // Stale readings; those two or more periods behind; decisions reporting 2^53 ns or more.
    let (mut stale, mut far, mut huge) = (0u64, 0u64, 0u64);
    // Keys Redis expired before the core's state was fresh (only on a loaded machine).
    let mut expired = 0u64;
    for (ri, (rate, burst)) in rates().into_iter().enumerate() {
        let burst = match kind {
            AlgorithmKind::FixedWindow
            | AlgorithmKind::SlidingWindowCounter
            | AlgorithmKind::QuotaRollover(_) => None,
            _ => burst,
        };
        let core = AnyAlgorithm::new(kind, rate, burst).unwrap();
        let mut builder = RedisLimiter::builder(server.url())
            .rate(rate)
            .algorithm(kind)
            .prefix(format!("diff{seed}-{ri}"));
        if let Some(b) = burst {
            builder = builder.burst(b);
        }
        let limiter = match builder.build().await {
            Ok(l) => l,
            Err(RedisLimiterError::Config { reason: why, .. }) => {
                // Only the documented exactness ranges may be refused.
                assert!(
                    rate.period_nanos() >= 1 << 52 || why.contains("2^5"),
                    "{kind:?} {rate}: unexpected config refusal {why}"
                );
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let cap = core.capacity();
        for (bi, base) in bases(&mut rng).into_iter().enumerate() {
            let keys = ["a", "b", "c"];
            let mut states = [0u64; 3];
            let mut written: [Option<Written>; 3] = [None; 3];
            let mut now = base;
            let mut last_wall = Instant::now();
            for step in 0..120 {
                let gap = gap(&mut rng, rate);
                let k = rng.below(3) as usize;
                let cost = match rng.below(12) {
                    0 => 0,
                    1 => cap + 1 + rng.below(3),
                    2 => cap,
                    3 => rng.below(cap.min(1_000) + 1),
                    _ => 1,
                };
                // Sometimes a stale reading: a caller whose clock lags, or Redis TIME stepped
                // back. Only on a key that Redis still holds (for 100 ms more at least): an
                // expired key is fresh in Redis, while the core's state never expires, and a
                // reading from before it expired would tell the two apart.
                let stale_reading =
                    rng.below(5) == 0 && alive_for_ms(server, &limiter, keys[k]) >= 100;
                // Between any two checks injected time advances at least as much as the wall
                // clock, so a key's TTL (which runs on Redis's clock) never ends before the
                // state would be fresh. Measured last, right before the check is sent.
                let wall = last_wall.elapsed().as_nanos() as u64;
                last_wall = Instant::now();
                now += gap.max(wall);
                let at = if stale_reading {
                    let lag = lag(&mut rng, rate, kind, now);
                    stale += 1;
                    far += u64::from(lag >= 2 * rate.period_nanos());
                    now - lag
                } else {
                    now
                };
                let expected = core.decide(states[k], at, cost);
                let sent = Instant::now();
                let got = limiter.check_at(keys[k], cost, at).await;
                let ctx = format!(
                    "{kind:?} rate {rate} burst {burst:?} base#{bi} step {step} key {k} now {now} at {at} cost {cost}"
                );
                match (expected, got) {
                    (Ok(mut t), Ok(d)) => {
                        if d != t.decision && Written::may_have_expired(written[k], Instant::now())
                        {
                            // Redis expired the key by its TTL: there it was fresh. (A TTL
                            // shorter than the script's rule would not get here: the key would
                            // be gone before `may_have_expired` allows it.)
                            states[k] = 0;
                            written[k] = None;
                            t = core.decide(0, at, cost).unwrap();
                            expired += 1;
                        }
                        assert_eq!(d, t.decision, "{ctx}");
                        if d.is_allowed() && cost > 0 {
                            written[k] = Some(Written::new(sent, d.reset_after_nanos()));
                        }
                        huge +=
                            u64::from(d.retry_after_nanos().max(d.reset_after_nanos()) >= 1 << 53);
                        denied += u64::from(d.is_denied());
                        if let Some(next) = t.next {
                            states[k] = next;
                        }
                    }
                    (
                        Err(CheckError::InsufficientCapacity { max }),
                        Err(RedisLimiterError::InsufficientCapacity { max: got }),
                    ) => assert_eq!(max, got, "{ctx}"),
                    (e, g) => panic!("{ctx}: core {e:?} vs redis {g:?}"),
                }
                compared += 1;
            }
        }
    }
    assert!(
        denied > 30,
        "{kind:?}: only {denied} denials, the sequences are too gentle"
    );
    assert!(
        stale > 100 && far > 30,
        "{kind:?}: only {stale} stale readings, {far} of them two periods behind or more"
    );
    if matches!(
        kind,
        AlgorithmKind::FixedWindow
            | AlgorithmKind::SlidingWindowCounter
            | AlgorithmKind::QuotaRollover(_)
    ) {
        assert!(
            huge > 0,
            "{kind:?}: no duration of 2^53 ns or more was compared"
        );
    }
    eprintln!("{kind:?}: {stale} stale, {far} far, {huge} huge, {expired} expired early");
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_core_algorithms_decide_like_the_core() {
    let server = RedisServer::start();
    let mut total = 0;
    for (i, kind) in [
        AlgorithmKind::Gcra,
        AlgorithmKind::TokenBucket,
        AlgorithmKind::LeakyBucket,
        AlgorithmKind::FixedWindow,
        AlgorithmKind::SlidingWindowCounter,
        AlgorithmKind::DebtBucket { max_debt: 7 },
        AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 50)),
        AlgorithmKind::QuotaRollover(Rollover::new(7, 10, u64::MAX)),
    ]
    .into_iter()
    .enumerate()
    {
        total += run_differential(kind, &server, 0x9E37_79B9 + i as u64).await;
    }
    assert!(total > 10_000, "compared only {total}");
}

/// The sliding window log against a VecDeque of admission times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_log_matches_a_model() {
    let server = RedisServer::start();
    let mut rng = Rng(77);
    for (ri, rate) in [
        Rate::per_second(5),
        Rate::from_nanos(3, 1_000).unwrap(),
        Rate::per_minute(40),
    ]
    .into_iter()
    .enumerate()
    {
        let limiter = RedisLimiter::builder(server.url())
            .rate(rate)
            .algorithm(RedisAlgorithm::SlidingWindowLog)
            .prefix(format!("swl{ri}"))
            .build()
            .await
            .unwrap();
        let (limit, period) = (rate.limit(), rate.period_nanos());
        for base in bases(&mut rng) {
            let mut log: VecDeque<u64> = VecDeque::new();
            let mut written: Option<Written> = None;
            let mut now = base;
            let mut last_wall = Instant::now();
            let key = format!("k{base}");
            for step in 0..150 {
                let wall = last_wall.elapsed().as_nanos() as u64;
                last_wall = Instant::now();
                now += gap(&mut rng, rate).max(wall);
                let cost = match rng.below(8) {
                    0 => 0,
                    1 => limit + 1,
                    2 => rng.below(limit + 1),
                    _ => 1,
                };
                let sent = Instant::now();
                let got = limiter.check_at(&key, cost, now).await;
                if cost > limit {
                    assert!(matches!(
                        got,
                        Err(RedisLimiterError::InsufficientCapacity { max }) if max == limit
                    ));
                    continue;
                }
                let d = got.unwrap();
                while log.front().is_some_and(|&e| e + period <= now) {
                    log.pop_front();
                }
                let empty_reply =
                    Decision::allow(limit, limit - cost, if cost > 0 { period } else { 0 });
                if !log.is_empty()
                    && d == empty_reply
                    && Written::may_have_expired(written, Instant::now())
                {
                    // Redis expired the log by its TTL, a little before the model's entries
                    // left the window (see `Written::may_have_expired`).
                    log.clear();
                }
                if d.is_allowed() && cost > 0 {
                    written = Some(Written::new(sent, d.reset_after_nanos()));
                }
                let count = log.len() as u64;
                let ctx = format!("rate {rate} step {step} now {now} cost {cost} count {count}");
                if count + cost <= limit {
                    for _ in 0..cost {
                        log.push_back(now);
                    }
                    assert!(d.is_allowed(), "{ctx}");
                    assert_eq!(d.remaining(), limit - count - cost, "{ctx}");
                } else {
                    assert!(d.is_denied(), "{ctx}");
                    assert_eq!(d.remaining(), limit - count, "{ctx}");
                    let need = (count + cost - limit) as usize;
                    assert_eq!(d.retry_after_nanos(), log[need - 1] + period - now, "{ctx}");
                }
                let reset = log.back().map_or(0, |&e| e + period - now);
                assert_eq!(d.reset_after_nanos(), reset, "{ctx}");
            }
        }
    }
}

/// Traffik's two scenarios on Redis, with the same exact counts as in the core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffik_debt_and_rollover_scenarios() {
    let server = RedisServer::start();
    let base = 1_700_000_000 * SEC;
    // "10/s" with a debt of 10: 20 at once, refused while in debt, then one per 100 ms.
    let debt = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(10))
        .algorithm(AlgorithmKind::DebtBucket { max_debt: 10 })
        .prefix("scenario-debt")
        .build()
        .await
        .unwrap();
    assert_eq!(
        debt.check_at("k", 20, base).await.unwrap(),
        Decision::allow(20, 0, 2 * SEC)
    );
    assert_eq!(
        debt.check_at("k", 1, base).await.unwrap(),
        Decision::deny(20, 0, SEC, 2 * SEC)
    );
    let mut admitted = Vec::new();
    for at in (base + SEC - 50_000_000..base + 2 * SEC).step_by(10_000_000) {
        if debt.check_at("k", 1, at).await.unwrap().is_allowed() {
            admitted.push(at - base);
        }
    }
    let expected: Vec<u64> = (0..10).map(|i| SEC + i * 100_000_000).collect();
    assert_eq!(admitted, expected);

    // "100/s", rollover 1/2 up to 50: use 60, the next period admits 120, the 121st is denied.
    let quota = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(100))
        .algorithm(AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 50)))
        .prefix("scenario-rollover")
        .build()
        .await
        .unwrap();
    let count = |at: u64, n: u64| {
        let quota = &quota;
        async move {
            let mut admitted = 0;
            for _ in 0..n {
                admitted += u64::from(quota.check_at("k", 1, at).await.unwrap().is_allowed());
            }
            admitted
        }
    };
    // Fresh: 100 + the most carry, 50. Then a period that used all its own limit carries none.
    assert_eq!(count(base, 200).await, 150);
    assert_eq!(count(base + SEC, 60).await, 60);
    assert_eq!(count(base + 2 * SEC, 121).await, 120);
    assert_eq!(
        quota.check_at("k", 1, base + 2 * SEC).await.unwrap(),
        Decision::deny(150, 0, SEC, 2 * SEC)
    );
}

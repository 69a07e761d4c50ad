//! `RedisMultiLimiter` over every algorithm (fixed window, sliding window counter and log, debt
//! bucket, quota rollover, mixed with GCRA and the token bucket) against a real `redis-server`:
//! the decisions of `traffik_core::check_all` over in-process limits at the same instants,
//! denials that leave every limit's state as it was, and exact counts for the debt bucket and
//! the rollover quota.
#![allow(clippy::unwrap_used)]

mod support;

use std::cell::RefCell;
use std::time::Instant;

use support::{RedisCluster, RedisServer, Rng};
use traffik_core::{
    check_all, AlgorithmKind, AnyAlgorithm, CellLeg, CheckError, Clock, Decision, Gcra, Leg,
    LogRing, ManualClock, Rate, Receipt, Rollover, SlidingLog, StateCell,
};
use traffik_redis::{RedisAlgorithm, RedisLimiter, RedisLimiterError, RedisMultiLimiter, Target};

const SEC: u64 = 1_000_000_000;

/// One limit of a test: the algorithm (`None` for the sliding window log, which has no packed
/// in-process form), its rate and burst.
#[derive(Clone, Copy, Debug)]
struct Spec {
    kind: Option<AlgorithmKind>,
    rate: Rate,
    burst: Option<u64>,
}

fn spec(kind: AlgorithmKind, rate: Rate, burst: Option<u64>) -> Spec {
    Spec {
        kind: Some(kind),
        rate,
        burst,
    }
}

fn log_spec(rate: Rate) -> Spec {
    Spec {
        kind: None,
        rate,
        burst: None,
    }
}

/// The pool: each algorithm once, on periods of a minute or more so that decisions depend on
/// arrivals seconds apart.
fn pool() -> Vec<Spec> {
    vec![
        spec(AlgorithmKind::Gcra, Rate::per_minute(10), Some(4)),
        spec(AlgorithmKind::TokenBucket, Rate::per_hour(30), Some(12)),
        spec(AlgorithmKind::FixedWindow, Rate::per_minute(8), None),
        spec(
            AlgorithmKind::SlidingWindowCounter,
            Rate::per_minute(12),
            None,
        ),
        log_spec(Rate::per_minute(6)),
        spec(
            AlgorithmKind::DebtBucket { max_debt: 3 },
            Rate::per_minute(6),
            Some(4),
        ),
        spec(
            AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 5)),
            Rate::per_minute(10),
            None,
        ),
    ]
}

async fn redis_limiter(target: impl Into<Target>, s: Spec, prefix: &str) -> RedisLimiter {
    let builder = RedisLimiter::builder(target).rate(s.rate).prefix(prefix);
    let builder = match s.kind {
        Some(kind) => builder.algorithm(kind),
        None => builder.algorithm(RedisAlgorithm::SlidingWindowLog),
    };
    let builder = match s.burst {
        Some(b) => builder.burst(b),
        None => builder,
    };
    builder.build().await.unwrap()
}

/// The sliding window log as a [`Leg`]: `traffik_core` has no packed form of it, so its
/// admitted charges are kept and replayed into a fresh ring for each check (replaying them is
/// exactly the ring's history, as denials and zero costs change no decision). Receipts come
/// from a counter cell that every charge moves, so `check_all` drives it like any other leg.
struct LogLeg<'a> {
    log: SlidingLog,
    clock: &'a ManualClock,
    admitted: RefCell<Vec<(u64, u64)>>,
    counter: StateCell,
    counter_alg: Gcra,
}

impl<'a> LogLeg<'a> {
    fn new(rate: Rate, clock: &'a ManualClock) -> Self {
        LogLeg {
            log: SlidingLog::new(rate).unwrap(),
            clock,
            admitted: RefCell::new(Vec::new()),
            counter: StateCell::new(),
            counter_alg: Gcra::with_burst(Rate::per_second(1000), 1000).unwrap(),
        }
    }
}

impl Leg for LogLeg<'_> {
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError> {
        let now = self.clock.now();
        let ring = LogRing::new(&self.log);
        for &(at, c) in self.admitted.borrow().iter() {
            assert!(ring.check(at, c)?.is_allowed(), "replay of an admission");
        }
        let d = ring.check(now, cost)?;
        if d.is_denied() || cost == 0 {
            return Ok((d, None));
        }
        let (tick, receipt) = self.counter.charge(&self.counter_alg, now, 1)?;
        assert!(tick.is_allowed() && receipt.is_some());
        self.admitted.borrow_mut().push((now, cost));
        Ok((d, receipt))
    }

    fn refund(&self, receipt: Receipt) -> bool {
        let done = self.counter.refund(receipt);
        if done {
            self.admitted.borrow_mut().pop();
        }
        done
    }
}

/// A packed limit or a log, as one leg type for `check_all`.
enum AnyLeg<'a> {
    Cell(CellLeg<'a, AnyAlgorithm, ManualClock>),
    Log(&'a LogLeg<'a>),
}

impl Leg for AnyLeg<'_> {
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError> {
        match self {
            AnyLeg::Cell(leg) => leg.charge(cost),
            AnyLeg::Log(leg) => leg.charge(cost),
        }
    }

    fn refund(&self, receipt: Receipt) -> bool {
        match self {
            AnyLeg::Cell(leg) => leg.refund(receipt),
            AnyLeg::Log(leg) => leg.refund(receipt),
        }
    }
}

/// One key's in-process limits.
struct Legs<'a> {
    cells: Vec<StateCell>,
    logs: Vec<LogLeg<'a>>,
}

/// The mixes for `new_kind` (an index into the pool): two or three limits, the new kind first,
/// in the middle and last, with the others drawn from the rest of the pool.
fn mixes(new_kind: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let n = pool().len() as u64;
    // Another kind than the new one.
    let mut other = || (new_kind + 1 + rng.below(n - 1) as usize) % n as usize;
    vec![
        vec![new_kind, other()],
        vec![other(), new_kind, other()],
        vec![other(), other(), new_kind],
    ]
}

/// Random arrivals and costs for three keys, over mixes of two or three limits that include
/// `new_kind`, go to the script and to `check_all` at the same instants: every decision (and
/// every refusal of a cost too large) is identical.
async fn decides_like_check_all(new_kind: usize, seed: u64) {
    let server = RedisServer::start();
    let mut rng = Rng(seed);
    let specs = pool();
    for (mi, mix) in mixes(new_kind, &mut rng).into_iter().enumerate() {
        let mut limiters = Vec::new();
        for (j, &i) in mix.iter().enumerate() {
            limiters.push(
                redis_limiter(server.url(), specs[i], &format!("k{new_kind}-m{mi}-{j}")).await,
            );
        }
        let multi = RedisMultiLimiter::new(limiters).unwrap();
        let algs: Vec<Option<AnyAlgorithm>> = mix
            .iter()
            .map(|&i| {
                let s = specs[i];
                s.kind
                    .map(|kind| AnyAlgorithm::new(kind, s.rate, s.burst).unwrap())
            })
            .collect();
        let clock = ManualClock::starting_at(1_700_000_000 * SEC + rng.below(86_400 * SEC));
        let keys = ["ann", "bob", "cat"];
        let state: Vec<Legs<'_>> = keys
            .iter()
            .map(|_| Legs {
                cells: mix.iter().map(|_| StateCell::new()).collect(),
                logs: mix
                    .iter()
                    .map(|&i| LogLeg::new(specs[i].rate, &clock))
                    .collect(),
            })
            .collect();
        let (mut allowed, mut denied, mut refused) = (0, 0, 0);
        let mut last_wall = Instant::now();
        for step in 0..120 {
            let gap = match rng.below(4) {
                0 => 0,
                1 => rng.below(SEC / 2),
                2 => rng.below(5 * SEC),
                _ => rng.below(40 * SEC),
            };
            // Injected time runs at least as fast as the wall clock (plus a margin for the
            // round trip), so no key's TTL on Redis ends before its state would be fresh.
            let wall = last_wall.elapsed().as_nanos() as u64;
            last_wall = Instant::now();
            clock.advance_nanos(gap.max(wall + 2_000_000));
            let k = rng.below(3) as usize;
            let cost = match rng.below(10) {
                0 => 0,
                1 => 4 + rng.below(20),
                _ => 1 + rng.below(3),
            };
            let legs = &state[k];
            let legs: Vec<AnyLeg<'_>> = algs
                .iter()
                .enumerate()
                .map(|(j, alg)| match alg {
                    Some(algorithm) => AnyLeg::Cell(CellLeg {
                        cell: &legs.cells[j],
                        algorithm,
                        clock: &clock,
                    }),
                    None => AnyLeg::Log(&legs.logs[j]),
                })
                .collect();
            let now = clock.now();
            let core = check_all(&legs, cost);
            let redis = multi.check_at(keys[k], cost, now).await;
            let ctx = format!("kind {new_kind} mix {mix:?} step {step} key {k} cost {cost}");
            match (core, redis) {
                (Ok(c), Ok(r)) => {
                    assert_eq!(r, c, "{ctx}");
                    if c.is_allowed() {
                        allowed += 1;
                    } else {
                        denied += 1;
                    }
                }
                (
                    Err(CheckError::InsufficientCapacity { max }),
                    Err(RedisLimiterError::InsufficientCapacity { max: got }),
                ) => {
                    assert_eq!(got, max, "{ctx}");
                    refused += 1;
                }
                (c, r) => panic!("{ctx}: core {c:?}, redis {r:?}"),
            }
        }
        // Both outcomes happened, or the comparison proved little.
        assert!(
            allowed > 15 && denied > 10 && refused > 0,
            "mix {mix:?}: {allowed} allowed, {denied} denied, {refused} refused"
        );
    }
}

#[tokio::test]
async fn fixed_window_decides_like_check_all() {
    decides_like_check_all(2, 0x6677_0001).await;
}

#[tokio::test]
async fn sliding_window_decides_like_check_all() {
    decides_like_check_all(3, 0x6677_0002).await;
}

#[tokio::test]
async fn sliding_log_decides_like_check_all() {
    decides_like_check_all(4, 0x6677_0003).await;
}

#[tokio::test]
async fn debt_bucket_decides_like_check_all() {
    decides_like_check_all(5, 0x6677_0004).await;
}

#[tokio::test]
async fn rollover_decides_like_check_all() {
    decides_like_check_all(6, 0x6677_0005).await;
}

/// What every single limiter would say at `t` for `key`, charging nothing.
async fn peeks(limiters: &[RedisLimiter], key: &str, t: u64) -> Vec<Decision> {
    let mut out = Vec::new();
    for l in limiters {
        out.push(l.check_at(key, 0, t).await.unwrap());
    }
    out
}

/// For each new kind, a multi-check denied by a later limit writes nothing on the new kind's
/// key, and one denied by the new kind writes nothing on an earlier limit's key: every single
/// limiter's peek is the same before and after the denials.
#[tokio::test]
async fn denials_leave_every_state_as_it_was() {
    let server = RedisServer::start();
    let specs = pool();
    let t = 1_700_000_000 * SEC;
    for (new_kind, &new_spec) in specs.iter().enumerate().skip(2) {
        // The new kind admits, then a narrow GCRA after it denies.
        let narrow = spec(AlgorithmKind::Gcra, Rate::per_hour(2), Some(2));
        let limiters = vec![
            redis_limiter(server.url(), new_spec, &format!("dw{new_kind}-a")).await,
            redis_limiter(server.url(), narrow, &format!("dw{new_kind}-b")).await,
        ];
        let multi = RedisMultiLimiter::new(limiters.clone()).unwrap();
        for _ in 0..2 {
            assert!(multi.check_at("k", 1, t).await.unwrap().is_allowed());
        }
        let before = peeks(&limiters, "k", t).await;
        for _ in 0..3 {
            let d = multi.check_at("k", 1, t).await.unwrap();
            assert!(d.is_denied() && d.limit() == 2, "kind {new_kind}: {d:?}");
        }
        assert_eq!(peeks(&limiters, "k", t).await, before, "kind {new_kind}");

        // A wide GCRA admits, then the new kind, exhausted by single checks, denies.
        let wide = spec(AlgorithmKind::Gcra, Rate::per_second(100), Some(100));
        let limiters = vec![
            redis_limiter(server.url(), wide, &format!("dw{new_kind}-c")).await,
            redis_limiter(server.url(), new_spec, &format!("dw{new_kind}-d")).await,
        ];
        let multi = RedisMultiLimiter::new(limiters.clone()).unwrap();
        assert!(multi.check_at("k", 3, t).await.unwrap().is_allowed());
        let mut n = 0;
        while limiters[1].check_at("k", 1, t).await.unwrap().is_allowed() {
            n += 1;
            assert!(n < 100);
        }
        let before = peeks(&limiters, "k", t).await;
        assert_eq!(before[0].remaining(), 97);
        for _ in 0..3 {
            let d = multi.check_at("k", 1, t).await.unwrap();
            assert!(d.is_denied(), "kind {new_kind}: {d:?}");
            assert_eq!(
                d.limit(),
                limiters[1].check_at("k", 0, t).await.unwrap().limit()
            );
        }
        assert_eq!(peeks(&limiters, "k", t).await, before, "kind {new_kind}");
    }
}

/// A debt bucket (6 a minute, capacity 6, up to 4 owed) behind a wide GCRA, through the
/// multi-limit: one check may take 10 (6 and 4 owed), the next must wait until only 6 is owed.
#[tokio::test]
async fn debt_bucket_through_the_multi_limit() {
    let server = RedisServer::start();
    let wide = spec(AlgorithmKind::Gcra, Rate::per_second(100), Some(100));
    let debt = spec(
        AlgorithmKind::DebtBucket { max_debt: 4 },
        Rate::per_minute(6),
        Some(6),
    );
    let limiters = vec![
        redis_limiter(server.url(), wide, "debt-wide").await,
        redis_limiter(server.url(), debt, "debt").await,
    ];
    let multi = RedisMultiLimiter::new(limiters.clone()).unwrap();
    let t = 1_700_000_000 * SEC;
    // 10 tokens owed take 100 s to produce; the GCRA's 10 take 100 ms.
    assert_eq!(
        multi.check_at("u", 10, t).await.unwrap(),
        Decision::allow(10, 0, 100 * SEC)
    );
    // Owing 10, nothing is admitted until the shortfall is 6 (4 tokens, 40 s).
    assert_eq!(
        multi.check_at("u", 1, t).await.unwrap(),
        Decision::deny(10, 0, 40 * SEC, 100 * SEC)
    );
    assert!(matches!(
        multi.check_at("u", 11, t).await,
        Err(RedisLimiterError::InsufficientCapacity { max: 10 })
    ));
    assert_eq!(
        limiters[0].check_at("u", 0, t).await.unwrap().remaining(),
        90
    );
    let later = t + 40 * SEC;
    // Owing 6: at most 4 more; 5 waits one token more.
    assert_eq!(
        multi.check_at("u", 5, later).await.unwrap(),
        Decision::deny(10, 4, 10 * SEC, 60 * SEC)
    );
    assert_eq!(
        multi.check_at("u", 4, later).await.unwrap(),
        Decision::allow(10, 0, 100 * SEC)
    );
    // The single limiter shares the state.
    assert_eq!(
        limiters[1].check_at("u", 0, later).await.unwrap(),
        Decision::allow(10, 0, 100 * SEC)
    );
}

/// A rollover quota (10 a minute, half the unused passes on, at most 5) with a fixed window of
/// 12 a minute, through the multi-limit, window by window.
#[tokio::test]
async fn rollover_through_the_multi_limit() {
    let server = RedisServer::start();
    let quota = spec(
        AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 5)),
        Rate::per_minute(10),
        None,
    );
    let window = spec(AlgorithmKind::FixedWindow, Rate::per_minute(12), None);
    let limiters = vec![
        redis_limiter(server.url(), quota, "ro-quota").await,
        redis_limiter(server.url(), window, "ro-window").await,
    ];
    let multi = RedisMultiLimiter::new(limiters.clone()).unwrap();
    // The start of a minute.
    let t0 = 28_333_334 * 60 * SEC;
    let admitted = |tries: u64, at: u64| {
        let multi = &multi;
        async move {
            let mut n = 0;
            for _ in 0..tries {
                n += u64::from(multi.check_at("u", 1, at).await.unwrap().is_allowed());
            }
            n
        }
    };
    // A new key holds 10 + 5 carried; the window's 12 binds. 12 used: nothing carries.
    assert_eq!(admitted(20, t0).await, 12);
    assert_eq!(
        limiters[0].check_at("u", 0, t0).await.unwrap().remaining(),
        3
    );
    // 10, all used: nothing carries.
    assert_eq!(admitted(20, t0 + 60 * SEC).await, 10);
    // 4 of 10: half the 6 unused (3) carries.
    assert_eq!(admitted(4, t0 + 120 * SEC).await, 4);
    // 13 in the quota, 12 in the window: the window denies the 13th and writes nothing.
    assert_eq!(admitted(20, t0 + 180 * SEC).await, 12);
    let d = limiters[0].check_at("u", 1, t0 + 180 * SEC).await.unwrap();
    assert_eq!(d, Decision::allow(15, 0, 120 * SEC));
}

/// Readings far behind the keys' windows (a caller's clock 200 days back) make durations of
/// 2^53 ns and more, which the script sends split in seconds whatever each limit's unit (here
/// 60 s, 1.5 s and 3600 s): still exactly `check_all`'s decisions.
#[tokio::test]
async fn durations_past_2_pow_53_are_exact() {
    let server = RedisServer::start();
    let specs = [
        spec(AlgorithmKind::FixedWindow, Rate::per_minute(8), None),
        spec(
            AlgorithmKind::SlidingWindowCounter,
            Rate::from_nanos(12, 1_500_000_000).unwrap(),
            None,
        ),
        spec(
            AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 5)),
            Rate::per_hour(10),
            None,
        ),
    ];
    let mut limiters = Vec::new();
    for (i, &s) in specs.iter().enumerate() {
        limiters.push(redis_limiter(server.url(), s, &format!("far{i}")).await);
    }
    let multi = RedisMultiLimiter::new(limiters).unwrap();
    let algs: Vec<AnyAlgorithm> = specs
        .iter()
        .map(|s| AnyAlgorithm::new(s.kind.unwrap(), s.rate, s.burst).unwrap())
        .collect();
    let cells: Vec<StateCell> = algs.iter().map(|_| StateCell::new()).collect();
    let t = 1_700_000_000 * SEC + 123_456_789;
    let back = t - 200 * 86_400 * SEC;
    let clock = ManualClock::starting_at(t);
    let legs: Vec<CellLeg<'_, AnyAlgorithm, ManualClock>> = cells
        .iter()
        .zip(&algs)
        .map(|(cell, algorithm)| CellLeg {
            cell,
            algorithm,
            clock: &clock,
        })
        .collect();
    let (mut huge, mut huge_retry) = (0, 0);
    for (at, cost) in [
        (t, 2),
        (back, 1),
        (back, 3),
        (back + 7 * SEC, 1),
        (back, 6),
        (t, 5),
        (back, 1),
    ] {
        clock.set(at);
        let core = check_all(&legs, cost).unwrap();
        let redis = multi.check_at("far", cost, at).await.unwrap();
        assert_eq!(redis, core, "at {at} cost {cost}");
        huge += u32::from(core.reset_after_nanos() >= 1 << 53);
        huge_retry += u32::from(core.retry_after_nanos() >= 1 << 53);
    }
    assert!(
        huge >= 3 && huge_retry >= 1,
        "{huge} resets, {huge_retry} retries past 2^53 ns"
    );
}

/// On a real cluster, a multi-limit over a sliding window log (two keys: the log and its meta
/// hash), a rollover quota and a fixed window runs as one script (Redis would refuse keys of
/// different slots with `CROSSSLOT`) and counts exactly as on one server.
#[tokio::test]
async fn every_kind_runs_on_a_cluster() {
    let cluster = RedisCluster::start();
    let target = || Target::cluster(cluster.urls());
    let specs = [
        log_spec(Rate::per_minute(5)),
        spec(
            AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 5)),
            Rate::per_minute(10),
            None,
        ),
        spec(AlgorithmKind::FixedWindow, Rate::per_minute(8), None),
    ];
    let mut limiters = Vec::new();
    for (i, &s) in specs.iter().enumerate() {
        limiters.push(redis_limiter(target(), s, &format!("cl{i}")).await);
    }
    let multi = RedisMultiLimiter::new(limiters.clone()).unwrap();
    let t = 28_333_334 * 60 * SEC;
    for key in ["u1", "u2", "u3"] {
        let mut admitted = 0;
        for _ in 0..8 {
            admitted += u32::from(multi.check_at(key, 1, t).await.unwrap().is_allowed());
        }
        // The log's 5 bind; the quota (15) and the window (8) were charged 5 each.
        assert_eq!(admitted, 5, "{key}");
        assert_eq!(
            limiters[1].check_at(key, 0, t).await.unwrap().remaining(),
            10
        );
        assert_eq!(
            limiters[2].check_at(key, 0, t).await.unwrap().remaining(),
            3
        );
    }
}

/// With Redis's own clock (no caller time), every kind in one multi-limit: one check charges
/// each limit once, as its single limiter then sees, and the binding limit answers.
#[tokio::test]
async fn every_kind_on_server_time() {
    let server = RedisServer::start();
    // Keep clear of a minute boundary, where the window limits would start afresh between the
    // check and the peeks.
    let time = server.raw(&["TIME"]);
    let secs: u64 = time.lines().find_map(|l| l.trim().parse().ok()).unwrap();
    if secs % 60 >= 55 {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    }
    let specs = pool();
    let mut limiters = Vec::new();
    for (i, &s) in specs.iter().enumerate() {
        limiters.push(redis_limiter(server.url(), s, &format!("srv{i}")).await);
    }
    let multi = RedisMultiLimiter::new(limiters.clone()).unwrap();
    let before: Vec<u64> = peeks_now(&limiters, "k").await;
    assert_eq!(before, [4, 12, 8, 12, 6, 7, 15]);
    let d = multi.check("k", 1).await.unwrap();
    assert!(d.is_allowed());
    assert_eq!((d.limit(), d.remaining()), (4, 3));
    assert_eq!(peeks_now(&limiters, "k").await, [3, 11, 7, 11, 5, 6, 14]);
}

/// Each single limiter's `remaining` for `key` on its configured time source.
async fn peeks_now(limiters: &[RedisLimiter], key: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for l in limiters {
        out.push(l.peek(key).await.unwrap().remaining());
    }
    out
}

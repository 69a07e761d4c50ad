//! Per-key quotas and moving rates on a real memcached: tiers, live rates, adaptive limits,
//! schedules and priorities decide exactly as the core's in-process limiters at the same times,
//! and an algorithm that reads states differently from the limiter's keys is a typed error.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;

use support::{Memcached, Rng};
use traffik_core::{
    Adaptive, AlgorithmKind, AnyAlgorithm, AsyncLimiter, CheckError, ErrorKind, Gcra, LimiterError,
    Live, ManualClock, PriorityBudget, PriorityLimiter, QuotaLimiter, Rate, Schedule, StateCell,
    TableConfig, Tiers, TokenBucket, Unlimited,
};
use traffik_memcached::{MemcachedLimiter, MemcachedLimiterError as E, MemcachedQuotas};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// Monday 2024-01-01 00:00 UTC: a Unix-time clock base for the schedule.
const MONDAY: u64 = 1_704_067_200 * SEC;

/// Injected time that advances at least as fast as the wall clock, so that no key expires on
/// memcached's clock before its state is fresh on this timeline.
struct Timeline {
    t: u64,
    last: Instant,
}

impl Timeline {
    fn new(base: u64) -> Self {
        Timeline {
            t: base,
            last: Instant::now(),
        }
    }

    fn step(&mut self, gap: u64) -> u64 {
        let wall = self.last.elapsed().as_nanos() as u64;
        self.last = Instant::now();
        self.t += gap.max(wall);
        self.t
    }
}

fn limiter(server: &Memcached, kind: AlgorithmKind, rate: Rate, prefix: &str) -> MemcachedLimiter {
    MemcachedLimiter::builder(server.addr())
        .rate(rate)
        .algorithm(kind)
        .prefix(prefix)
        .build()
        .unwrap()
}

fn gcra_limiter(server: &Memcached, prefix: &str) -> MemcachedLimiter {
    limiter(server, AlgorithmKind::Gcra, Rate::per_second(1), prefix)
}

/// The state memcached holds for `key` (0 when absent, as in the core).
fn stored(server: &Memcached, limiter: &MemcachedLimiter, key: &str) -> u64 {
    server
        .meta_get(&limiter.memcached_key(key))
        .map_or(0, |item| item.state())
}

fn paid(key: &[u8]) -> usize {
    usize::from(key.starts_with(b"paid:"))
}

fn free_and_premium() -> Tiers<AnyAlgorithm, fn(&[u8]) -> usize, 2> {
    Tiers::scaled(
        AlgorithmKind::Gcra,
        Rate::per_second(10),
        None,
        [1, 5],
        paid as fn(&[u8]) -> usize,
    )
    .unwrap()
}

/// The core's error as this crate reports it.
fn same_error(core: CheckError, ours: &E) -> bool {
    matches!((core, ours), (CheckError::InsufficientCapacity { max }, E::InsufficientCapacity { max: m }) if max == *m)
}

#[tokio::test]
async fn tiers_admit_ten_and_fifty_at_one_instant() {
    let server = Memcached::start();
    let limiter = MemcachedQuotas::new(gcra_limiter(&server, "tiers"), free_and_premium());
    let now = 1_790_000_000 * SEC;
    let mut admitted = [0u64; 2];
    for (i, key) in ["free:a", "paid:b"].into_iter().enumerate() {
        for _ in 0..80 {
            let d = limiter.check_at(key, 1, now).await.unwrap();
            assert_eq!(d.limit(), [10, 50][i]);
            admitted[i] += u64::from(d.is_allowed());
        }
    }
    assert_eq!(admitted, [10, 50]);
    // Through the `AsyncLimiter` contract, with `str` and `[u8]` keys, at the clock's time:
    // a fresh key of each tier again gets its whole burst.
    let (mut free, mut premium) = (0, 0);
    for _ in 0..60 {
        free += u64::from(
            AsyncLimiter::<str>::check(&limiter, "free:c", 1)
                .await
                .unwrap()
                .is_allowed(),
        );
        premium += u64::from(
            AsyncLimiter::<[u8]>::check(&limiter, b"paid:d".as_slice(), 1)
                .await
                .unwrap()
                .is_allowed(),
        );
    }
    // The system clock moves on while the loop runs: at most one more unit each per 100 ms
    // (free) or 20 ms (premium) of it; the loop takes far less than that on loopback.
    assert!((10..=11).contains(&free), "{free}");
    assert!((50..=51).contains(&premium), "{premium}");
    assert_eq!(
        AsyncLimiter::<str>::peek(&limiter, "paid:d")
            .await
            .unwrap()
            .limit(),
        50
    );
    AsyncLimiter::<str>::reset(&limiter, "paid:d")
        .await
        .unwrap();
    assert_eq!(limiter.peek("paid:d").await.unwrap().remaining(), 50);
}

#[tokio::test]
async fn tiers_match_the_core_quota_limiter() {
    let server = Memcached::start();
    let mut rng = Rng(0x5eed_0001);
    let clock = ManualClock::new();
    // Live tiers on both sides, so a tier change mid-sequence is covered too.
    let ours = MemcachedQuotas::new(gcra_limiter(&server, "tdiff"), free_and_premium().live());
    let core: QuotaLimiter<[u8], _, _> = QuotaLimiter::new(
        free_and_premium().live(),
        &clock,
        TableConfig::new(64, [1, 2, 3, 4]),
    )
    .unwrap();
    let keys = ["free:a", "free:b", "paid:x", "paid:y"];
    let mut time = Timeline::new(1_790_000_000 * SEC);
    let (mut allowed, mut denied, mut refused) = (0, 0, 0);
    for step in 0..400 {
        let now = time.step(match rng.below(10) {
            0..=3 => 0,
            4..=6 => rng.below(5 * MS),
            7 | 8 => rng.below(100 * MS),
            _ => rng.below(2 * SEC),
        });
        clock.set(now);
        if step == 200 {
            // Premium becomes x10 (100/s), free x2 (20/s), on both sides; states are kept.
            for tiers in [ours.quotas(), core.quotas()] {
                tiers
                    .set_tier(
                        1,
                        AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(100), None)
                            .unwrap(),
                    )
                    .unwrap();
                tiers
                    .set_tier(
                        0,
                        AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(20), None).unwrap(),
                    )
                    .unwrap();
            }
        }
        let key = keys[rng.below(4) as usize];
        let cost = match rng.below(10) {
            0 => 0,
            1 => 11 + rng.below(50),
            2 => rng.below(25),
            _ => 1 + rng.below(5),
        };
        let ctx = format!("step {step} key {key} cost {cost} now {now}");
        match (
            core.check(key.as_bytes(), cost),
            ours.check_at(key, cost, now).await,
        ) {
            (Ok(want), Ok(got)) => {
                assert_eq!(got, want, "{ctx}");
                if cost > 0 {
                    if want.is_allowed() {
                        allowed += 1
                    } else {
                        denied += 1
                    }
                }
            }
            (Err(want), Err(got)) => {
                assert!(same_error(want, &got), "{ctx}: {want:?} vs {got:?}");
                refused += 1;
            }
            (want, got) => panic!("{ctx}: core {want:?}, memcached {got:?}"),
        }
    }
    // The sequence exercised every outcome.
    assert!(
        allowed > 50 && denied > 20 && refused > 5,
        "{allowed} {denied} {refused}"
    );
}

#[tokio::test]
async fn live_rate_change_keeps_each_key_state() {
    let server = Memcached::start();
    let limiter = gcra_limiter(&server, "live");
    // The core's own example: 2/s, a burst spent, then 4/s keeps the TAT.
    let live = Live::new(Gcra::new(Rate::per_second(2)).unwrap());
    let t0 = 1_790_000_000 * SEC;
    assert!(limiter
        .check_with_at("k", 2, t0, &live)
        .await
        .unwrap()
        .is_allowed());
    assert!(limiter
        .check_with_at("k", 1, t0, &live)
        .await
        .unwrap()
        .is_denied());
    assert_eq!(stored(&server, &limiter, "k"), t0 + SEC);
    live.set(Gcra::new(Rate::per_second(4)).unwrap()).unwrap();
    // Still 1 s of TAT ahead, and 4 x 250 ms allowed: no fresh burst.
    assert!(limiter
        .check_with_at("k", 1, t0, &live)
        .await
        .unwrap()
        .is_denied());
    assert!(limiter
        .check_with_at("k", 1, t0 + 250 * MS, &live)
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(stored(&server, &limiter, "k"), t0 + SEC + 250 * MS);

    // Random rate changes against an in-process cell over `Live<AnyAlgorithm>`, state word
    // for state word.
    let mut rng = Rng(0x5eed_0002);
    let gcra =
        |limit| AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(limit), None).unwrap();
    let (ours, theirs) = (Live::new(gcra(10)), Live::new(gcra(10)));
    let keys = ["a", "b", "c"];
    let cells = [StateCell::new(), StateCell::new(), StateCell::new()];
    let mut time = Timeline::new(t0 + 10 * SEC);
    let mut changes = 0;
    let mut seen = [0u32; 2];
    for step in 0..300 {
        let now = time.step(rng.below(60 * MS));
        if rng.below(25) == 0 {
            let limit = [1, 3, 10, 40, 200][rng.below(5) as usize];
            let burst = Some(1 + rng.below(limit));
            ours.set_rate(Rate::per_second(limit), burst).unwrap();
            theirs.set_rate(Rate::per_second(limit), burst).unwrap();
            changes += 1;
        }
        let k = rng.below(3) as usize;
        let cost = rng.below(4);
        let want = cells[k].apply(&theirs, now, cost);
        let got = limiter.check_with_at(keys[k], cost, now, &ours).await;
        let ctx = format!("step {step} key {k} cost {cost} now {now}");
        match (want, got) {
            (Ok(w), Ok(g)) => {
                assert_eq!(g, w, "{ctx}");
                seen[usize::from(w.is_allowed())] += u32::from(cost > 0);
            }
            (Err(w), Err(g)) => assert!(same_error(w, &g), "{ctx}"),
            (w, g) => panic!("{ctx}: core {w:?}, memcached {g:?}"),
        }
        assert_eq!(stored(&server, &limiter, keys[k]), cells[k].load(), "{ctx}");
    }
    assert!(changes >= 5, "{changes}");
    assert!(seen[0] >= 20 && seen[1] >= 50, "denied, allowed: {seen:?}");
}

#[tokio::test]
async fn adaptive_and_schedule_decide_as_in_process() {
    let server = Memcached::start();
    let limiter = gcra_limiter(&server, "moving");
    let mut rng = Rng(0x5eed_0003);

    // Adaptive: one limit shared by both sides, moved by random load reports.
    let adaptive = Adaptive::builder(Rate::per_second(5), Rate::per_second(100), 50)
        .increase(10)
        .decrease(1, 2)
        .build()
        .unwrap();
    let cells = [StateCell::new(), StateCell::new()];
    let mut time = Timeline::new(1_790_000_000 * SEC);
    let mut limits = std::collections::BTreeSet::new();
    let mut seen = [0u32; 2];
    for step in 0..300 {
        let now = time.step(rng.below(40 * MS));
        if rng.below(8) == 0 {
            adaptive.report(rng.below(100));
        }
        limits.insert(adaptive.limit());
        let k = rng.below(2) as usize;
        let key = ["ad-a", "ad-b"][k];
        let cost = rng.below(4);
        let ctx = format!(
            "adaptive step {step} limit {} cost {cost}",
            adaptive.limit()
        );
        let want = cells[k].apply(&adaptive, now, cost);
        match (want, limiter.check_with_at(key, cost, now, &adaptive).await) {
            (Ok(w), Ok(g)) => {
                assert_eq!(g, w, "{ctx}");
                seen[usize::from(w.is_allowed())] += u32::from(cost > 0);
            }
            (Err(w), Err(g)) => assert!(same_error(w, &g), "{ctx}"),
            (w, g) => panic!("{ctx}: core {w:?}, memcached {g:?}"),
        }
        assert_eq!(stored(&server, &limiter, key), cells[k].load(), "{ctx}");
    }
    assert!(limits.len() >= 3, "{limits:?}");
    assert!(
        seen[0] >= 20 && seen[1] >= 50,
        "adaptive denied, allowed: {seen:?}"
    );

    // Schedule: hours 9-17 at 100/s, 12-13 at 3/s, other hours 10/s; the walk crosses hour
    // boundaries (a step is up to 20 minutes).
    let schedule = Schedule::builder("10/s")
        .weekdays(9..17, "100/s")
        .daily(12..13, "3/s")
        .build()
        .unwrap();
    let cell = StateCell::new();
    let mut time = Timeline::new(MONDAY + 8 * 3600 * SEC);
    let mut rates = std::collections::BTreeSet::new();
    let mut seen = [0u32; 2];
    for step in 0..200 {
        let gap = if rng.below(6) == 0 {
            rng.below(1200 * SEC)
        } else {
            rng.below(30 * MS)
        };
        let now = time.step(gap);
        rates.insert(schedule.rate_at(now).limit());
        let cost = rng.below(5);
        let ctx = format!("schedule step {step} now {now} cost {cost}");
        let want = cell.apply(&schedule, now, cost);
        match (
            want,
            limiter.check_with_at("sched", cost, now, &schedule).await,
        ) {
            (Ok(w), Ok(g)) => {
                assert_eq!(g, w, "{ctx}");
                seen[usize::from(w.is_allowed())] += u32::from(cost > 0);
            }
            (Err(w), Err(g)) => assert!(same_error(w, &g), "{ctx}"),
            (w, g) => panic!("{ctx}: core {w:?}, memcached {g:?}"),
        }
        assert_eq!(stored(&server, &limiter, "sched"), cell.load(), "{ctx}");
    }
    assert_eq!(rates.len(), 3, "{rates:?}");
    assert!(
        seen[0] >= 20 && seen[1] >= 50,
        "schedule denied, allowed: {seen:?}"
    );
}

#[tokio::test]
async fn priorities_keep_the_high_one_open() {
    let server = Memcached::start();
    let limiter = gcra_limiter(&server, "prio");
    let now = 1_790_000_000 * SEC;
    // The core's example: a budget of 10, 4 kept back from the low priority.
    let budget = PriorityBudget::new(Rate::per_second(10), 10, &[4, 0]).unwrap();
    let (low, high) = (budget.level(0).unwrap(), budget.level(1).unwrap());
    assert!(limiter
        .check_with_at("t", 6, now, &low)
        .await
        .unwrap()
        .is_allowed());
    assert!(limiter
        .check_with_at("t", 1, now, &low)
        .await
        .unwrap()
        .is_denied());
    assert!(limiter
        .check_priority_at("t", &budget, 1, 4, now)
        .await
        .unwrap()
        .is_allowed());
    assert_config(
        limiter.check_priority_at("t", &budget, 2, 1, now).await,
        "no priority 2",
    );
    assert!(limiter
        .check_with_at("t", 1, now, &high)
        .await
        .unwrap()
        .is_denied());
    assert_eq!(budget.remaining(stored(&server, &limiter, "t"), now), 0);

    // Three levels, one unit at a time at one instant: low gets 50, mid 30, high 20, exactly
    // as the core's `PriorityLimiter` on the same sequence.
    let budget = PriorityBudget::new(Rate::per_second(100), 100, &[50, 20, 0]).unwrap();
    let clock = ManualClock::starting_at(now);
    let core = PriorityLimiter::new(budget, &clock);
    let mut admitted = [0u64; 3];
    for (p, count) in admitted.iter_mut().enumerate() {
        let level = budget.level(p).unwrap();
        for _ in 0..60 {
            let got = limiter
                .check_with_at("tenant", 1, now, &level)
                .await
                .unwrap();
            assert_eq!(got, core.check(p, 1).unwrap(), "priority {p}");
            *count += u64::from(got.is_allowed());
        }
        // Lower priorities are refused once the higher ones have drawn the budget down.
        for q in 0..p {
            let level = budget.level(q).unwrap();
            let left = limiter
                .check_with_at("tenant", 0, now, &level)
                .await
                .unwrap();
            assert_eq!(left.remaining(), 0, "priority {q} after {p}");
        }
    }
    assert_eq!(admitted, [50, 30, 20]);
    // The whole budget as one algorithm decides as the highest priority.
    assert!(limiter
        .check_with_at("tenant", 1, now, &budget)
        .await
        .unwrap()
        .is_denied());
}

fn assert_config(result: Result<traffik_core::Decision, E>, what: &str) {
    match result {
        Err(e @ E::Config(_)) => assert_eq!(e.kind(), ErrorKind::Config, "{what}"),
        other => panic!("{what}: expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_mismatched_state_format_is_a_typed_error() {
    let server = Memcached::start();
    let now = 1_790_000_000 * SEC;
    let tb = |limit| TokenBucket::new(Rate::per_second(limit)).unwrap();

    // Token-bucket keys are read by that exact bucket only.
    let buckets = limiter(
        &server,
        AlgorithmKind::TokenBucket,
        Rate::per_second(10),
        "tb",
    );
    let gcra = Gcra::new(Rate::per_second(10)).unwrap();
    assert_config(
        buckets.check_with_at("k", 1, now, &gcra).await,
        "GCRA on buckets",
    );
    assert_config(
        buckets.check_with_at("k", 1, now, &tb(20)).await,
        "another bucket",
    );
    let adaptive = Adaptive::builder(Rate::per_second(5), Rate::per_second(10), 1)
        .build()
        .unwrap();
    assert_config(
        buckets.peek_with("k", &adaptive).await,
        "adaptive on buckets",
    );
    // Nothing was written by the refused checks.
    assert!(server.meta_get(&buckets.memcached_key("k")).is_none());
    // The identical bucket decides as the limiter itself, and the unlimited rate fits anything.
    assert_eq!(
        buckets
            .check_with_at("k", 3, now, &tb(10))
            .await
            .unwrap()
            .remaining(),
        7
    );
    assert_eq!(buckets.check_at("k", 0, now).await.unwrap().remaining(), 7);
    assert_eq!(
        buckets
            .check_with_at("k", 0, now, buckets.algorithm())
            .await
            .unwrap()
            .remaining(),
        7
    );
    assert!(buckets
        .check_with_at("k", 1_000, now, &Unlimited)
        .await
        .unwrap()
        .is_allowed());

    // GCRA keys refuse buckets, directly, through a tier set or a live algorithm.
    let gcra_keys = gcra_limiter(&server, "g");
    assert_config(
        gcra_keys.check_with_at("k", 1, now, &tb(10)).await,
        "bucket on GCRA",
    );
    let bucket_tiers = Tiers::new(
        [
            AnyAlgorithm::TokenBucket(tb(10)),
            AnyAlgorithm::TokenBucket(tb(10)),
        ],
        paid as fn(&[u8]) -> usize,
    )
    .unwrap();
    match MemcachedQuotas::with_tiers(gcra_keys.clone(), bucket_tiers.clone()) {
        Err(E::Config(why)) => assert!(why.starts_with("tier 0: "), "{why}"),
        other => panic!("bucket tiers on GCRA keys: {other:?}"),
    }
    assert!(MemcachedQuotas::with_tiers(gcra_keys.clone(), free_and_premium()).is_ok());
    let quotas = MemcachedQuotas::new(gcra_keys.clone(), bucket_tiers);
    assert_config(
        quotas.check_at("paid:x", 1, now).await,
        "bucket tiers on GCRA",
    );
    let live = Live::new(AnyAlgorithm::TokenBucket(tb(10)));
    assert_config(
        gcra_keys.check_with_at("k", 1, now, &live).await,
        "live bucket on GCRA",
    );
    assert!(server.meta_get(&gcra_keys.memcached_key("k")).is_none());
    assert!(server
        .meta_get(&gcra_keys.memcached_key("paid:x"))
        .is_none());

    // A limiter built with an unlimited rate has no state format to share.
    let open = limiter(&server, AlgorithmKind::Gcra, Rate::unlimited(), "open");
    assert_config(
        open.check_with_at("k", 1, now, &gcra).await,
        "GCRA on unlimited keys",
    );
    assert!(open
        .check_with_at("k", 5, now, &Unlimited)
        .await
        .unwrap()
        .is_allowed());

    // A live algorithm that is unlimited for now is checked against the one that wrote its
    // states: a bucket that went unlimited still may not touch GCRA keys.
    let live = Live::new(AnyAlgorithm::TokenBucket(tb(10)));
    live.set(AnyAlgorithm::Unlimited(Unlimited)).unwrap();
    assert_config(
        gcra_keys.check_with_at("k", 1, now, &live).await,
        "unlimited live bucket",
    );

    // A cost above the per-call algorithm's capacity is refused before anything is sent.
    assert!(matches!(
        gcra_keys.check_with_at("k", 11, now, &gcra).await,
        Err(E::InsufficientCapacity { max: 10 })
    ));
}

//! `MemcachedMultiLimiter` against a real memcached: decisions identical to the core's
//! `check_all` over in-process limiters, denied checks that leave every state as it was, exact
//! counts, and no single limit over-admitting under concurrency.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use support::{Memcached, Rng};
use traffik_core::{
    check_all, Algorithm, AlgorithmKind, AnyAlgorithm, AsyncLimiter, CheckError, ErrorKind, Leg,
    Limiter, LimiterError, ManualClock, Rate, Rollover,
};
use traffik_memcached::{MemcachedLimiter, MemcachedLimiterError, MemcachedMultiLimiter};

const SEC: u64 = 1_000_000_000;
/// Unix-epoch nanoseconds in 2026: window algorithms align to it as in production.
const BASE: u64 = 1_790_000_000 * SEC;

fn limiter(
    server: &Memcached,
    prefix: &str,
    kind: AlgorithmKind,
    rate: Rate,
    burst: Option<u64>,
) -> MemcachedLimiter {
    let mut b = MemcachedLimiter::builder(server.addr())
        .rate(rate)
        .algorithm(kind)
        .prefix(prefix);
    if let Some(burst) = burst {
        b = b.burst(burst);
    }
    b.build().unwrap()
}

/// Limits of mixed algorithms for the differential test: (kind, rate, burst).
fn menu() -> Vec<(AlgorithmKind, Rate, Option<u64>)> {
    vec![
        (AlgorithmKind::Gcra, Rate::per_second(10), None),
        (AlgorithmKind::Gcra, Rate::per_second(3), Some(2)),
        (AlgorithmKind::TokenBucket, Rate::per_second(5), Some(3)),
        (AlgorithmKind::FixedWindow, Rate::per_second(4), None),
        (
            AlgorithmKind::SlidingWindowCounter,
            Rate::per_second(6),
            None,
        ),
        (
            AlgorithmKind::DebtBucket { max_debt: 3 },
            Rate::per_second(4),
            None,
        ),
        (
            AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 50)),
            Rate::per_second(5),
            None,
        ),
        (AlgorithmKind::Gcra, Rate::per_minute(15), None),
    ]
}

fn same(
    got: &Result<traffik_core::Decision, MemcachedLimiterError>,
    want: &Result<traffik_core::Decision, CheckError>,
) -> bool {
    match (got, want) {
        (Ok(g), Ok(w)) => g == w,
        (
            Err(MemcachedLimiterError::InsufficientCapacity { max: g }),
            Err(CheckError::InsufficientCapacity { max: w }),
        ) => g == w,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_match_check_all_exactly() {
    let server = Memcached::start();
    let menu = menu();
    let mut checks = 0u64;
    let mut denied = 0u64;
    let mut errors = 0u64;
    for seed in 1..=24u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = 2 + rng.below(2) as usize;
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < n {
            let i = rng.below(menu.len() as u64) as usize;
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        let clock = ManualClock::new();
        let locals: Vec<Limiter<AnyAlgorithm, &ManualClock>> = picked
            .iter()
            .map(|&i| {
                let (kind, rate, burst) = menu[i];
                Limiter::new(AnyAlgorithm::new(kind, rate, burst).unwrap(), &clock)
            })
            .collect();
        let legs: Vec<&dyn Leg> = locals.iter().map(|l| l as &dyn Leg).collect();
        let multi = MemcachedMultiLimiter::new(picked.iter().enumerate().map(|(j, &i)| {
            let (kind, rate, burst) = menu[i];
            limiter(&server, &format!("diff{seed}-{j}"), kind, rate, burst)
        }))
        .unwrap();
        let min_cap = locals
            .iter()
            .map(|l| l.algorithm().capacity())
            .min()
            .unwrap();
        let mut t = BASE + rng.below(SEC);
        let mut last_wall = Instant::now();
        for step in 0..120 {
            // Injected time runs at least as fast as the wall clock, so memcached's expiries
            // (on its own clock) never come before a state is fresh on this timeline.
            let wall = last_wall.elapsed().as_nanos() as u64;
            last_wall = Instant::now();
            t += match rng.below(8) {
                0..=3 => 0,
                4 | 5 => rng.below(SEC / 5),
                6 => rng.below(SEC),
                _ => rng.below(3 * SEC),
            }
            .max(wall);
            clock.set(t);
            let cost = match rng.below(14) {
                0 => 0,
                1 => min_cap + 1,
                2 => 2,
                _ => 1,
            };
            let want = check_all(&legs, cost);
            let got = multi.check_at("user", cost, t).await;
            assert!(
                same(&got, &want),
                "seed {seed} limits {picked:?} step {step} t {t} cost {cost}: \
                 memcached {got:?}, core {want:?}"
            );
            checks += 1;
            match want {
                Ok(d) if d.is_denied() => denied += 1,
                Err(_) => errors += 1,
                _ => {}
            }
        }
        // And the states agree afterwards: every limit's own peek.
        for (j, l) in multi.limits().iter().enumerate() {
            assert_eq!(
                l.check_at("user", 0, t).await.unwrap(),
                locals[j].peek(),
                "seed {seed} limit {j}"
            );
        }
    }
    // The sequences exercised denials and errors, not only admissions.
    assert_eq!(checks, 24 * 120);
    assert!(denied > checks / 10, "denied {denied} of {checks}");
    assert!(errors > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_check_leaves_every_state_as_it_was() {
    let server = Memcached::start();
    let wide = limiter(
        &server,
        "undo-wide",
        AlgorithmKind::Gcra,
        Rate::per_second(10),
        None,
    );
    let narrow = limiter(
        &server,
        "undo-narrow",
        AlgorithmKind::TokenBucket,
        Rate::per_second(2),
        None,
    );
    let multi = MemcachedMultiLimiter::new([wide.clone(), narrow.clone()]).unwrap();
    let t = BASE;

    // A key that existed on both limits: the narrow one runs out after two checks.
    for _ in 0..2 {
        assert!(multi.check_at("a", 1, t).await.unwrap().is_allowed());
    }
    let before = [
        server.meta_get(&wide.memcached_key("a")).unwrap(),
        server.meta_get(&narrow.memcached_key("a")).unwrap(),
    ];
    for _ in 0..3 {
        let d = multi.check_at("a", 1, t).await.unwrap();
        assert!(d.is_denied());
        assert_eq!(d.limit(), 2, "the narrow limit answers");
    }
    let after = [
        server.meta_get(&wide.memcached_key("a")).unwrap(),
        server.meta_get(&narrow.memcached_key("a")).unwrap(),
    ];
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.value, b.flags), (&a.value, a.flags));
    }
    // The wide limit was charged and refunded three times: its CAS token moved, its value not.
    assert_ne!(before[0].cas, after[0].cas);
    assert_eq!(wide.check_at("a", 0, t).await.unwrap().remaining(), 8);

    // A key absent from the wide limit before the check: the refund writes the fresh state 0.
    assert!(narrow.check_at("b", 2, t).await.unwrap().is_allowed());
    assert!(server.meta_get(&wide.memcached_key("b")).is_none());
    assert!(multi.check_at("b", 1, t).await.unwrap().is_denied());
    let refunded = server.meta_get(&wide.memcached_key("b")).unwrap();
    assert_eq!(refunded.state(), 0);
    assert!(refunded.ttl > 0, "the fresh state expires like any write");
    assert_eq!(wide.check_at("b", 0, t).await.unwrap().remaining(), 10);

    // A refund is skipped when someone else changed the key; here nothing did, so a denial
    // by the first limit writes nothing at all.
    let first_denies = MemcachedMultiLimiter::new([narrow.clone(), wide.clone()]).unwrap();
    let cas = server.meta_get(&wide.memcached_key("a")).unwrap().cas;
    assert!(first_denies.check_at("a", 1, t).await.unwrap().is_denied());
    assert_eq!(server.meta_get(&wide.memcached_key("a")).unwrap().cas, cas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_per_second_and_fifteen_per_minute_count_exactly() {
    let server = Memcached::start();
    let clock = Arc::new(ManualClock::new());
    clock.set(BASE);
    let build = |prefix: &str, rate: &str| {
        MemcachedLimiter::builder(server.addr())
            .rate(rate)
            .prefix(prefix)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let per_second = build("exact-s", "10/second");
    let per_minute = build("exact-m", "15/minute");
    let both = MemcachedMultiLimiter::new([per_second.clone(), per_minute.clone()]).unwrap();

    let mut admitted = 0;
    for _ in 0..20 {
        if both.check("k", 1).await.unwrap().is_allowed() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10, "the per-second limit binds first");
    assert_eq!(per_minute.peek("k").await.unwrap().remaining(), 5);
    assert_eq!(per_second.peek("k").await.unwrap().remaining(), 0);

    clock.set(BASE + SEC);
    let mut admitted = 0;
    for _ in 0..20 {
        let d = both.check("k", 1).await.unwrap();
        if d.is_allowed() {
            admitted += 1;
        } else {
            assert_eq!(d.limit(), 15, "now the per-minute limit denies");
        }
    }
    assert_eq!(admitted, 5);
    // The 15 denied checks were charged on the per-second limit and refunded exactly.
    assert_eq!(per_second.peek("k").await.unwrap().remaining(), 5);
    // Through the trait, as failover and HTTP layers hold it.
    let peek = AsyncLimiter::<str>::peek(&both, "k").await.unwrap();
    assert!(peek.is_allowed());
    assert_eq!((peek.limit(), peek.remaining()), (15, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_single_limit_over_admits_under_concurrency() {
    const TASKS: u64 = 8;
    const OPS: u64 = 60;
    let server = Memcached::start();
    let t = BASE;
    let make = || {
        let a = limiter(
            &server,
            "race-a",
            AlgorithmKind::Gcra,
            Rate::per_second(10),
            None,
        );
        let b = limiter(
            &server,
            "race-b",
            AlgorithmKind::FixedWindow,
            Rate::per_minute(15),
            None,
        );
        (
            MemcachedMultiLimiter::new([a.clone(), b.clone()]).unwrap(),
            MemcachedMultiLimiter::new([b.clone(), a.clone()]).unwrap(),
            a,
            b,
        )
    };
    // Two instances: separate connection pools, as two processes would have.
    let instances = [make(), make()];
    let admitted_a = Arc::new(AtomicU64::new(0));
    let admitted_b = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (ab, ba, a, b) = instances[(task % 2) as usize].clone();
        let (admitted_a, admitted_b) = (admitted_a.clone(), admitted_b.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(task + 1);
            for _ in 0..OPS {
                match rng.below(4) {
                    // Mostly multi-checks, in both orders of the limits.
                    r @ (0 | 1) => {
                        let multi = if r == 0 { &ab } else { &ba };
                        if let Ok(d) = multi.check_at("hot", 1, t).await {
                            if d.is_allowed() {
                                admitted_a.fetch_add(1, Ordering::SeqCst);
                                admitted_b.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    2 => {
                        if let Ok(d) = a.check_at("hot", 1, t).await {
                            if d.is_allowed() {
                                admitted_a.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    _ => {
                        if let Ok(d) = b.check_at("hot", 1, t).await {
                            if d.is_allowed() {
                                admitted_b.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (a, b) = (
        admitted_a.load(Ordering::SeqCst),
        admitted_b.load(Ordering::SeqCst),
    );
    // Time held still: GCRA 10/s admits its burst of 10, the fixed window its 15, no more.
    assert!(
        a <= 10 && b <= 15,
        "admitted {a} on the 10/s limit, {b} on the 15/min one"
    );
    // What is left plus what was admitted never exceeds the limit either (a charge left by a
    // raced refund only lowers what is left).
    let left_a = instances[0]
        .2
        .check_at("hot", 0, t)
        .await
        .unwrap()
        .remaining();
    let left_b = instances[0]
        .3
        .check_at("hot", 0, t)
        .await
        .unwrap()
        .remaining();
    assert!(
        a + left_a <= 10 && b + left_b <= 15,
        "{a}+{left_a}, {b}+{left_b}"
    );
    // The hot key was exhausted on both limits: 480 attempts cannot leave budget unused.
    assert_eq!((left_a, left_b), (0, 0));
    assert!(a > 0 && b > 0);
}

#[tokio::test]
async fn bad_combinations_are_refused() {
    let addr = format!("127.0.0.1:{}", support::free_port());
    let build = |prefix: &str, rate: &str, kind: AlgorithmKind| {
        MemcachedLimiter::builder(addr.clone())
            .rate(rate)
            .algorithm(kind)
            .prefix(prefix)
            .build()
            .unwrap()
    };
    let none: [MemcachedLimiter; 0] = [];
    let e = MemcachedMultiLimiter::new(none).unwrap_err();
    assert!(matches!(e, MemcachedLimiterError::Config(_)), "{e}");
    assert_eq!(e.kind(), ErrorKind::Config);

    let e = MemcachedMultiLimiter::new([
        build("p", "10/s", AlgorithmKind::Gcra),
        build("p", "100/h", AlgorithmKind::Gcra),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("limits 0 and 1"), "{e}");

    let e = MemcachedMultiLimiter::new([
        build("p", "10/s", AlgorithmKind::Gcra),
        build("q", "0/0", AlgorithmKind::Gcra),
    ])
    .unwrap_err();
    assert!(
        e.to_string().contains("limit 1") && e.to_string().contains("unlimited"),
        "{e}"
    );

    // Same prefix, different algorithms: different keys, accepted.
    let ok = MemcachedMultiLimiter::new([
        build("p", "10/s", AlgorithmKind::Gcra),
        build("p", "100/h", AlgorithmKind::FixedWindow),
    ])
    .unwrap();
    assert_eq!(ok.limits().len(), 2);
}

#[tokio::test]
async fn a_refund_that_cannot_be_made_is_indeterminate() {
    let mut server = Memcached::start();
    let wide = limiter(
        &server,
        "lost-w",
        AlgorithmKind::Gcra,
        Rate::per_second(10),
        None,
    );
    // The denying limit lives on a fake server that answers every write with an error after a
    // miss: its check fails after the first limit was charged, with nothing charged there.
    let (fake, _) =
        support::fake_server(support::Fake::WriteReply(b"SERVER_ERROR out of memory\r\n"));
    let broken = MemcachedLimiter::builder(fake)
        .rate("10/s")
        .prefix("lost-b")
        .build()
        .unwrap();
    let multi = MemcachedMultiLimiter::new([wide.clone(), broken]).unwrap();

    // The refund succeeds: the second limit's own error comes back, not charged.
    let e = multi.check_at("k", 1, BASE).await.unwrap_err();
    assert!(matches!(e, MemcachedLimiterError::Server { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::NotCharged);
    assert_eq!(
        server.meta_get(&wide.memcached_key("k")).unwrap().state(),
        0
    );

    // Now the first limit's server dies between the charge and the refund: the second limit
    // is a server that never answers, and memcached is killed while its check waits.
    let slow = MemcachedLimiter::builder(support::fake_server(support::Fake::Mute).0)
        .rate("10/s")
        .prefix("lost-s")
        .timeout(std::time::Duration::from_millis(1500))
        .build()
        .unwrap();
    let multi = MemcachedMultiLimiter::new([wide.clone(), slow]).unwrap();
    let check = tokio::spawn(async move { multi.check_at("k", 1, BASE).await });
    wait_for_charge(&server, &wide.memcached_key("k")).await;
    server.kill();
    let e = check.await.unwrap().unwrap_err();
    match &e {
        MemcachedLimiterError::RefundFailed { limit, key, cause } => {
            assert_eq!(*limit, 0);
            assert_eq!(key.as_bytes(), wide.memcached_key("k").as_slice());
            assert!(
                !cause.is_indeterminate(),
                "the refund's own gets failed: {cause}"
            );
        }
        other => panic!("expected RefundFailed, got {other}"),
    }
    assert_eq!(e.kind(), ErrorKind::Indeterminate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_is_skipped_when_another_check_charged_in_between() {
    let server = Memcached::start();
    let wide = limiter(
        &server,
        "skip-w",
        AlgorithmKind::Gcra,
        Rate::per_second(10),
        None,
    );
    // The second limit never answers, so its check times out after the first was charged,
    // leaving time for another client to charge the first limit's key.
    let slow = MemcachedLimiter::builder(support::fake_server(support::Fake::Mute).0)
        .rate("10/s")
        .prefix("skip-s")
        .timeout(std::time::Duration::from_millis(1500))
        .build()
        .unwrap();
    let multi = MemcachedMultiLimiter::new([wide.clone(), slow]).unwrap();
    let check = tokio::spawn(async move { multi.check_at("k", 1, BASE).await });
    wait_for_charge(&server, &wide.memcached_key("k")).await;
    assert!(wide.check_at("k", 1, BASE).await.unwrap().is_allowed());
    let e = check.await.unwrap().unwrap_err();
    // The refund found another state than its own and left it: the slow limit's own error,
    // not charged there, comes back.
    assert!(matches!(e, MemcachedLimiterError::Timeout { .. }), "{e}");
    // Both charges stand: the multi-check's (skipped refund, only stricter) and the other one.
    assert_eq!(wide.check_at("k", 0, BASE).await.unwrap().remaining(), 8);
}

/// Waits (up to 5 s) until `key` holds a state other than the fresh `0`: the multi-check's
/// first limit has been charged and its second is waiting on the silent server.
async fn wait_for_charge(server: &Memcached, key: &[u8]) {
    for _ in 0..500 {
        if server.meta_get(key).is_some_and(|item| item.state() != 0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the first limit was never charged");
}

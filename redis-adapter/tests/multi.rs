//! `RedisMultiLimiter` against a real `redis-server`: the same decisions as the in-process
//! all-or-nothing check (`traffik_core::check_all`) for identical arrivals, denials that write
//! nothing, keys of one check in one cluster slot, and a real cluster accepting the script.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use support::{RedisCluster, RedisServer, Rng};
use traffik_core::{
    check_all, AnyAlgorithm, CellLeg, ErrorKind, Gcra, LimiterError, ManualClock, Rate, StateCell,
    TokenBucket,
};
use traffik_redis::{RedisAlgorithm, RedisLimiter, RedisMultiLimiter, Target};

const SEC: u64 = 1_000_000_000;

async fn limiter(target: impl Into<Target>, rate: Rate, burst: u64, prefix: &str) -> RedisLimiter {
    RedisLimiter::builder(target)
        .rate(rate)
        .algorithm(RedisAlgorithm::Gcra)
        .burst(burst)
        .prefix(prefix)
        .build()
        .await
        .unwrap()
}

/// Random arrivals and costs for three keys go to the script and to `check_all` over
/// in-process cells at the same instants: every decision is identical, for GCRA and token
/// bucket limits mixed in any order. Refill intervals are at least half a second, so no key's
/// TTL can run out on Redis's wall clock while the test (well under that) runs and the core
/// still holds state.
#[tokio::test]
async fn decides_like_check_all() {
    let server = RedisServer::start();
    let specs = [
        (RedisAlgorithm::Gcra, Rate::per_minute(10), 4),
        (RedisAlgorithm::TokenBucket, Rate::per_hour(30), 12),
        (RedisAlgorithm::Gcra, Rate::per_second(2), 3),
        (RedisAlgorithm::TokenBucket, Rate::per_minute(6), 3),
    ];
    let mut rng = Rng(0x006d_756c_7469);
    for round in 0..4u64 {
        // Each round leaves one limit out and takes the others from a rotated start, so
        // kinds, orders and pairs vary.
        let chosen: Vec<usize> = (0..4)
            .map(|j| (j + round as usize) % 4)
            .filter(|&i| i as u64 != (round + 2) % 4)
            .collect();
        let mut picked = Vec::new();
        let mut algs = Vec::new();
        for &i in &chosen {
            let (alg, rate, burst) = specs[i];
            picked.push(
                RedisLimiter::builder(server.url())
                    .rate(rate)
                    .algorithm(alg)
                    .burst(burst)
                    .prefix(format!("m{round}-{i}"))
                    .build()
                    .await
                    .unwrap(),
            );
            algs.push(match alg {
                RedisAlgorithm::Gcra => AnyAlgorithm::Gcra(Gcra::with_burst(rate, burst).unwrap()),
                _ => AnyAlgorithm::TokenBucket(TokenBucket::with_capacity(rate, burst).unwrap()),
            });
        }
        let multi = RedisMultiLimiter::new(picked).unwrap();
        let base = 1_700_000_000 * SEC + rng.below(86_400 * SEC);
        let clock = ManualClock::starting_at(base);
        let mut cells: HashMap<&str, Vec<StateCell>> = HashMap::new();
        let (mut allowed, mut denied) = (0, 0);
        for _ in 0..150 {
            clock.advance_nanos(match rng.below(4) {
                0 => 0,
                1 => rng.below(SEC / 2),
                2 => rng.below(10 * SEC),
                _ => rng.below(200 * SEC),
            });
            let key = ["ann", "bob", "cat"][rng.below(3) as usize];
            let cost = 1 + rng.below(3);
            let cells = cells
                .entry(key)
                .or_insert_with(|| algs.iter().map(|_| StateCell::new()).collect());
            let legs: Vec<CellLeg<'_, AnyAlgorithm, ManualClock>> = cells
                .iter()
                .zip(&algs)
                .map(|(cell, algorithm)| CellLeg {
                    cell,
                    algorithm,
                    clock: &clock,
                })
                .collect();
            let now = traffik_core::Clock::now(&clock);
            let core = check_all(&legs, cost).unwrap();
            let redis = multi.check_at(key, cost, now).await.unwrap();
            assert_eq!(
                redis, core,
                "round {round}, key {key}, cost {cost}, at {now}"
            );
            if core.is_allowed() {
                allowed += 1;
            } else {
                denied += 1;
            }
        }
        // Both outcomes happened, or the comparison proved little.
        assert!(
            allowed > 20 && denied > 20,
            "{allowed} allowed, {denied} denied"
        );
    }
}

/// `10/min` and `3/min` on one key: three admitted, then denials that leave the first limit
/// exactly as three admissions left it (on Redis the script writes nothing when one denies).
#[tokio::test]
async fn denial_writes_nothing() {
    let server = RedisServer::start();
    let wide = limiter(server.url(), Rate::per_minute(10), 10, "wide").await;
    let narrow = limiter(server.url(), Rate::per_minute(3), 3, "narrow").await;
    let multi = RedisMultiLimiter::new(vec![wide.clone(), narrow]).unwrap();
    let t = 1_700_000_000 * SEC;
    for _ in 0..3 {
        assert!(multi.check_at("k", 1, t).await.unwrap().is_allowed());
    }
    for _ in 0..5 {
        let d = multi.check_at("k", 1, t).await.unwrap();
        assert!(d.is_denied());
        assert_eq!(d.limit(), 3);
        assert_eq!(d.retry_after_nanos(), 20 * SEC);
    }
    assert_eq!(wide.check_at("k", 0, t).await.unwrap().remaining(), 7);
    assert_eq!(multi.peek("k").await.unwrap().limit(), 3);
    multi.reset("k").await.unwrap();
    assert_eq!(wide.check_at("k", 0, t).await.unwrap().remaining(), 10);
}

/// Every key of one check carries the caller key as its hash tag, so they share a cluster slot.
#[tokio::test]
async fn keys_of_one_check_share_a_slot() {
    let server = RedisServer::start();
    let a = limiter(server.url(), Rate::per_second(5), 5, "users").await;
    let b = limiter(server.url(), Rate::per_hour(100), 100, "users-hourly").await;
    let multi = RedisMultiLimiter::new(vec![a, b]).unwrap();
    for key in ["alice", "", "x}y{z", "%", "{tag}"] {
        let keys = multi.redis_keys(key.as_bytes());
        let slots: Vec<u16> = keys.iter().map(|k| support::tag_slot(tag(k))).collect();
        assert!(slots.windows(2).all(|w| w[0] == w[1]), "{key:?}: {keys:?}");
    }
    // Two limiters on the same keys would charge one state twice.
    let c = limiter(server.url(), Rate::per_second(5), 5, "same").await;
    let d = limiter(server.url(), Rate::per_second(9), 9, "same").await;
    assert!(RedisMultiLimiter::new(vec![c, d]).is_err());
}

/// The bytes between a key's first `{` and the next `}`.
fn tag(key: &[u8]) -> &[u8] {
    let open = key.iter().position(|&b| b == b'{').unwrap();
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}').unwrap();
    &rest[..close]
}

/// A real cluster runs the multi-key script (it would refuse keys of different slots with
/// `CROSSSLOT`) and decides as a single server does.
#[tokio::test]
async fn runs_on_a_cluster() {
    let cluster = RedisCluster::start();
    let target = || Target::cluster(cluster.urls());
    let a = limiter(target(), Rate::per_second(4), 4, "c1").await;
    let b = limiter(target(), Rate::per_minute(6), 6, "c2").await;
    let multi = RedisMultiLimiter::new(vec![a, b.clone()]).unwrap();
    let t = 1_700_000_000 * SEC;
    for key in ["u1", "u2", "u3"] {
        let admitted = {
            let mut n = 0;
            for _ in 0..10 {
                n += usize::from(multi.check_at(key, 1, t).await.unwrap().is_allowed());
            }
            n
        };
        assert_eq!(admitted, 4, "{key}");
        let later = {
            let mut n = 0;
            for _ in 0..10 {
                n += usize::from(multi.check_at(key, 1, t + SEC).await.unwrap().is_allowed());
            }
            n
        };
        assert_eq!(later, 2, "{key}: the per-minute limit binds");
        assert_eq!(b.check_at(key, 0, t + SEC).await.unwrap().remaining(), 0);
    }
}

fn node_id(node: &RedisServer) -> String {
    let reply = node.raw(&["CLUSTER", "MYID"]);
    reply.lines().nth(1).unwrap().trim().to_owned()
}

/// A slot migrates under a running multi-limiter. While it migrates, Redis refuses a multi-key
/// command on it whose keys are not all on one side (`TRYAGAIN`, through `ASK` to the target):
/// the check fails as a server error that charged nothing. Once moved, the stale slot map meets
/// `MOVED`, which is followed: the check runs once, on the new owner, and charges both limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_moved_and_ask() {
    let cluster = RedisCluster::start();
    let target = || Target::cluster(cluster.urls());
    let a = limiter(target(), Rate::per_hour(10), 10, "mig-a").await;
    let b = limiter(target(), Rate::per_hour(5), 5, "mig-b").await;
    let multi = RedisMultiLimiter::new(vec![a.clone(), b]).unwrap();
    let keys = multi.redis_keys(b"migrating");
    let name = std::str::from_utf8(&keys[0]).unwrap().to_owned();
    let slot = cluster.nodes[0].raw(&["CLUSTER", "KEYSLOT", &name]);
    let slot = slot.trim().trim_start_matches(':').to_owned();
    // The owner of an empty slot: the node that does not redirect a read of it.
    let from = (0..3)
        .find(|&i| cluster.nodes[i].raw(&["EXISTS", &name]).starts_with(':'))
        .unwrap();
    let to = (from + 1) % 3;
    let (from_id, to_id) = (node_id(&cluster.nodes[from]), node_id(&cluster.nodes[to]));
    let evalsha_on = |i: usize| support::command_calls(cluster.nodes[i].port, "evalsha");
    let set = |i: usize, args: &[&str]| {
        let mut cmd = vec!["CLUSTER", "SETSLOT", &slot];
        cmd.extend_from_slice(args);
        let reply = cluster.nodes[i].raw(&cmd);
        assert!(reply.starts_with("+OK"), "{cmd:?}: {reply}");
    };
    let t = 1_700_000_000 * SEC;
    set(to, &["IMPORTING", &from_id]);
    set(from, &["MIGRATING", &to_id]);
    let err = multi.check_at("migrating", 1, t).await.unwrap_err();
    assert!(format!("{err:?}").contains("TryAgain"), "{err:?}");
    assert_eq!(LimiterError::kind(&err), ErrorKind::NotCharged);

    set(to, &["NODE", &to_id]);
    set(from, &["NODE", &to_id]);
    set(3 - from - to, &["NODE", &to_id]);
    let (from_before, to_before) = (evalsha_on(from), evalsha_on(to));
    // Nothing was charged during the migration: a cost of 2 leaves 3 of 5.
    let d = multi.check_at("migrating", 2, t).await.unwrap();
    assert_eq!((d.limit(), d.remaining()), (5, 3));
    assert_eq!(
        evalsha_on(from) - from_before,
        0,
        "the old owner ran nothing"
    );
    assert_eq!(
        evalsha_on(to) - to_before,
        1,
        "the new owner ran the check once"
    );
    assert_eq!(a.check_at("migrating", 0, t).await.unwrap().remaining(), 8);
}

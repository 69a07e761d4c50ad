//! A real 3-master Redis Cluster on loopback: checks across many keys land on every node, each
//! script touches one slot, and decisions match a standalone server's.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support::RedisCluster;
use traffik_core::Rate;
use traffik_redis::{RedisLimiter, RedisLimiterError, Target, TimeSource};

/// `calls` of `command` in every node's `INFO commandstats`, summed.
fn command_calls(cluster: &RedisCluster, command: &str) -> u64 {
    let needle = format!("cmdstat_{command}:calls=");
    cluster
        .nodes
        .iter()
        .map(|node| {
            let info = node.raw(&["INFO", "commandstats"]);
            info.lines()
                .find_map(|l| l.strip_prefix(needle.as_str()))
                .map_or(0, |rest| {
                    rest.split(',')
                        .next()
                        .unwrap()
                        .trim()
                        .parse::<u64>()
                        .unwrap()
                })
        })
        .sum()
}

fn reset_stats(cluster: &RedisCluster) {
    for node in &cluster.nodes {
        node.raw(&["CONFIG", "RESETSTAT"]);
    }
}

/// The slot Redis itself computes for `key`.
fn server_slot(cluster: &RedisCluster, key: &[u8]) -> u64 {
    let key = std::str::from_utf8(key).unwrap();
    cluster.nodes[0]
        .raw(&["CLUSTER", "KEYSLOT", key])
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap()
}

/// A batch across the cluster: plain keys (one per slot, mostly), four groups of eight keys
/// that share a slot (`teams`, from [`support::same_slot_keys`]), repeated keys, and keys with
/// braces and the escape byte in them, which get a slot of their own like any other key.
fn mixed_batch(round: u64, teams: &[Vec<String>]) -> Vec<(String, u64)> {
    let mut batch = Vec::new();
    for i in 0..120u64 {
        batch.push((format!("user-{i}"), 1 + (i + round) % 3));
        let team = &teams[(i % 4) as usize];
        batch.push((team[(i / 4) as usize % team.len()].clone(), 1));
        if i % 10 == 0 {
            batch.push((format!("user-{}", i / 10), 2));
        }
    }
    for awkward in ["", "}", "}{", "{}", "%", "a}b{c"] {
        batch.push((awkward.to_owned(), 1));
    }
    batch
}

fn teams() -> Vec<Vec<String>> {
    (0..4)
        .map(|t| support::same_slot_keys(&format!("team{t}"), 8))
        .collect()
}

/// `check_many` on a cluster: one `MULTI`/`EXEC` pipeline per slot group of two or more checks,
/// and decisions identical, in order, to sequential `check`s at the same injected times.
async fn batches_match_sequential_checks(cluster: &RedisCluster) {
    // Key TTLs run on the server's clock: the injected times stay far from any window's end
    // (a minute-long window starting here, rounds 7 s apart) so no key expires mid-test.
    const START: u64 = 28_333_334 * 60_000_000_000;
    let clock = Arc::new(AtomicU64::new(START));
    let teams = teams();
    for alg in support::ALL_ALGORITHMS {
        clock.store(START, Ordering::SeqCst);
        let build = |prefix: String| {
            let clock = Arc::clone(&clock);
            RedisLimiter::builder(Target::cluster(cluster.urls()))
                .rate(Rate::per_minute(10))
                .algorithm(alg)
                .prefix(prefix)
                .time_source(TimeSource::Custom(Arc::new(move || {
                    clock.load(Ordering::SeqCst)
                })))
                .build()
        };
        let batched = build(format!("batch{alg:?}")).await.unwrap();
        let sequential = build(format!("seq{alg:?}")).await.unwrap();
        // The slot groups, as Redis computes slots (every round has the same keys).
        let mut groups: HashMap<u64, usize> = HashMap::new();
        for (k, _) in &mixed_batch(0, &teams) {
            *groups
                .entry(server_slot(cluster, &batched.redis_key(k.as_bytes())))
                .or_default() += 1;
        }
        let pipelines = groups.values().filter(|&&n| n > 1).count() as u64;
        assert!(pipelines >= 4, "the same-slot keys form groups");
        let mut denied = 0;
        for round in 0..4u64 {
            let batch = mixed_batch(round, &teams);
            reset_stats(cluster);
            let got = batched.check_many(&batch).await;
            assert_eq!(
                command_calls(cluster, "exec"),
                pipelines,
                "{alg:?} round {round}"
            );
            assert_eq!(command_calls(cluster, "evalsha"), batch.len() as u64);
            let mut allowed = 0;
            for ((k, cost), got) in batch.iter().zip(got) {
                let want = sequential.check(k, *cost).await.unwrap();
                let got = got.unwrap();
                assert_eq!(got, want, "{alg:?} round {round} key {k} cost {cost}");
                allowed += u32::from(got.is_allowed());
                denied += u32::from(got.is_denied());
            }
            assert!(allowed > 0, "{alg:?} round {round}");
            clock.fetch_add(7_000_000_000, Ordering::SeqCst);
        }
        assert!(denied > 0, "{alg:?}: the repeated keys run out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_checks_across_many_keys() {
    let cluster = RedisCluster::start();
    batches_match_sequential_checks(&cluster).await;
    for alg in support::ALL_ALGORITHMS {
        let l = RedisLimiter::builder(Target::cluster(cluster.urls()))
            .rate(Rate::per_hour(2))
            .algorithm(alg)
            .prefix(format!("c{alg:?}"))
            .build()
            .await
            .unwrap();
        let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
        for round in 0..3 {
            for k in &keys {
                let d = l.check(k, 1).await.unwrap();
                assert_eq!(d.is_allowed(), round < 2, "{alg:?} {k} round {round}");
            }
        }
        // Batches across slots work too (one pipeline per slot group on a cluster).
        let batch: Vec<(String, u64)> = keys.iter().map(|k| (k.clone(), 1)).collect();
        let got = l.check_many(&batch).await;
        assert!(
            got.iter().all(|r| r.as_ref().unwrap().is_denied()),
            "{alg:?}"
        );
        for k in keys.iter().take(10) {
            l.reset(k).await.unwrap();
            assert_eq!(l.peek(k).await.unwrap().remaining(), 2);
        }
    }
    // GCRA with per-call parameters: each key's state in its own slot, read under a changed
    // rate. Two units at 30 min each put the TAT 1 h ahead; at four times the rate (15 min,
    // burst 4: a 1 h tolerance) one more unit would need 1 h 15 min, so it is denied.
    let l = RedisLimiter::builder(Target::cluster(cluster.urls()))
        .rate(Rate::per_hour(2))
        .prefix("cdyn")
        .build()
        .await
        .unwrap();
    let slow = traffik_core::GcraParams::new(1_800_000_000_000, 2).unwrap();
    let fast = traffik_core::GcraParams::new(900_000_000_000, 4).unwrap();
    for i in 0..200 {
        let k = format!("user-{i}");
        assert!(l.check_gcra(&k, 2, slow).await.unwrap().is_allowed(), "{k}");
        let d = l.check_gcra(&k, 1, fast).await.unwrap();
        assert!(d.is_denied() && d.limit() == 4 && d.remaining() == 0, "{k}");
    }
    // Every master holds some of the keys.
    for node in &cluster.nodes {
        let size: u64 = node
            .raw(&["DBSIZE"])
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap();
        assert!(size > 100, "node {} holds only {size} keys", node.port);
    }
    // A node restart loses its scripts: NOSCRIPT there is retried by body.
    for node in &cluster.nodes {
        node.raw(&["SCRIPT", "FLUSH"]);
    }
    let l = RedisLimiter::builder(Target::cluster(cluster.urls()))
        .rate(Rate::per_hour(2))
        .prefix("after-flush")
        .build()
        .await
        .unwrap();
    for node in &cluster.nodes {
        node.raw(&["SCRIPT", "FLUSH"]);
    }
    for i in 0..50 {
        assert!(l.check(format!("k{i}"), 1).await.unwrap().is_allowed());
    }
    // The same for batches: each slot group is resent by body once, and no check is counted
    // twice.
    for node in &cluster.nodes {
        node.raw(&["SCRIPT", "FLUSH"]);
    }
    let shared: Vec<Vec<String>> = (0..3)
        .map(|t| support::same_slot_keys(&format!("t{t}"), 20))
        .collect();
    let batch: Vec<(String, u64)> = shared
        .iter()
        .flatten()
        .map(|k| (k.clone(), 1))
        .chain((0..20).map(|i| (format!("b{i}"), 1)))
        .collect();
    reset_stats(&cluster);
    let got = l.check_many(&batch).await;
    assert!(command_calls(&cluster, "eval") > 0, "resent by body");
    for ((k, _), r) in batch.iter().zip(got) {
        assert!(r.unwrap().is_allowed(), "{k}");
        assert_eq!(l.peek(k).await.unwrap().remaining(), 1, "{k} charged once");
    }
    // A foreign value in one key of a slot group: the client reports only the transaction's
    // first error, so every check of that group is indeterminate; other groups are unaffected.
    let bad = support::same_slot_keys("bad", 3);
    let foreign = String::from_utf8(l.redis_key(bad[1].as_bytes())).unwrap();
    for node in &cluster.nodes {
        node.raw(&["RPUSH", &foreign, "x"]); // -MOVED on all but the owner
    }
    let batch = [
        (bad[0].as_str(), 1),
        (bad[1].as_str(), 1),
        (bad[2].as_str(), 1),
        ("good", 1),
    ];
    let got = l.check_many(&batch).await;
    for r in &got[..3] {
        let err = r.as_ref().unwrap_err();
        assert!(err.is_indeterminate(), "{err}");
    }
    assert!(got[3].as_ref().unwrap().is_allowed());
    // A lone bad key is a plain request with its own typed error.
    let got = l.check_many(&[(bad[1].as_str(), 1), ("good2", 1)]).await;
    assert!(
        matches!(
            got[0],
            Err(traffik_redis::RedisLimiterError::WrongType { .. })
        ),
        "{:?}",
        got[0]
    );
    assert!(got[1].as_ref().unwrap().is_allowed());
}

/// Caller keys of any bytes: empty, braces in any order, the escape byte, non-UTF-8. Each
/// limiter key's hash tag is the escaped caller key, never empty and never closed early, so the
/// sliding window log's two keys share a slot (no `CROSSSLOT`), batches are grouped by the slot
/// the server computes, and every key is limited on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_any_bytes_hash_to_one_slot() {
    let cluster = RedisCluster::start();
    let keys: [&[u8]; 9] = [
        b"",
        b"}",
        b"}{",
        b"{}",
        b"{",
        b"%",
        b"%7D",
        b"a}b{c",
        b"\xff\x00}\x80{",
    ];
    let mut direct = redis::Client::open(cluster.urls()[0].as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut keyslot = |name: &[u8]| -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(name)
            .query(&mut direct)
            .unwrap()
    };
    for alg in support::ALL_ALGORITHMS {
        let l = RedisLimiter::builder(Target::cluster(cluster.urls()))
            .rate(Rate::per_hour(2))
            .algorithm(alg)
            .prefix(format!("any{alg:?}"))
            .build()
            .await
            .unwrap();
        for key in keys {
            let name = l.redis_key(key);
            let slot = keyslot(&name);
            let mut meta = name.clone();
            meta.extend_from_slice(b":m");
            assert_eq!(keyslot(&meta), slot, "{alg:?} {key:?}");
            let got: Vec<bool> = {
                let mut v = Vec::new();
                for _ in 0..3 {
                    v.push(l.check(key, 1).await.unwrap().is_allowed());
                }
                v
            };
            assert_eq!(got, [true, true, false], "{alg:?} {key:?}");
        }
        // All of them in one batch, twice: grouped by the slots the server computes.
        let batch: Vec<(&[u8], u64)> = keys.iter().flat_map(|&k| [(k, 1), (k, 1)]).collect();
        for r in l.check_many(&batch).await {
            assert!(r.unwrap().is_denied(), "{alg:?}");
        }
        for key in keys {
            l.reset(key).await.unwrap();
        }
        let got = l.check_many(&batch).await;
        for (i, r) in got.into_iter().enumerate() {
            assert!(r.unwrap().is_allowed(), "{alg:?} {:?}", batch[i].0);
        }
        assert_eq!(l.peek(b"").await.unwrap().remaining(), 0, "{alg:?}");
    }
}

/// The node (index) that owns the slot of `name`: the others answer `-MOVED`.
fn owner(cluster: &RedisCluster, name: &[u8]) -> usize {
    let name = std::str::from_utf8(name).unwrap();
    (0..cluster.nodes.len())
        .find(|&i| cluster.nodes[i].raw(&["EXISTS", name]).starts_with(':'))
        .unwrap()
}

fn node_id(node: &support::RedisServer) -> String {
    let reply = node.raw(&["CLUSTER", "MYID"]);
    reply.lines().nth(1).unwrap().trim().to_owned()
}

/// With the client's retries off (see the next test), the limiter follows `MOVED` and `ASK`
/// itself: a node that redirects did not run the script. A slot is migrated from one master to
/// another under a running limiter: during the migration its keys are created on the target
/// through `ASK`; once moved, the limiter's stale slot map meets `MOVED`. Single checks and
/// slot-group transactions both arrive, each charged once, on the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_ask_redirections_are_followed() {
    let cluster = RedisCluster::start();
    let l = RedisLimiter::builder(Target::cluster(cluster.urls()))
        .rate(Rate::per_hour(10))
        .prefix("mig")
        .build()
        .await
        .unwrap();
    let keys = support::same_slot_keys("migrating", 3);
    let name = l.redis_key(keys[0].as_bytes());
    let from = owner(&cluster, &name);
    let to = (from + 1) % 3;
    let slot = server_slot(&cluster, &name).to_string();
    let (from_id, to_id) = (node_id(&cluster.nodes[from]), node_id(&cluster.nodes[to]));
    let evalsha_on = |i: usize| support::command_calls(cluster.nodes[i].port, "evalsha");

    let set = |i: usize, args: &[&str]| {
        let mut cmd = vec!["CLUSTER", "SETSLOT", &slot];
        cmd.extend_from_slice(args);
        let reply = cluster.nodes[i].raw(&cmd);
        assert!(reply.starts_with("+OK"), "{cmd:?}: {reply}");
    };
    set(to, &["IMPORTING", &from_id]);
    set(from, &["MIGRATING", &to_id]);
    // The keys do not exist on the source: it answers ASK, and the target runs the script.
    let (from_before, to_before) = (evalsha_on(from), evalsha_on(to));
    assert_eq!(l.check(&keys[0], 1).await.unwrap().remaining(), 9);
    let batch = [(&keys[1], 1), (&keys[2], 2)];
    let got: Vec<u64> = l
        .check_many(&batch)
        .await
        .into_iter()
        .map(|r| r.unwrap().remaining())
        .collect();
    assert_eq!(got, [9, 8]);
    assert_eq!(evalsha_on(from) - from_before, 0, "the source ran nothing");
    assert_eq!(
        evalsha_on(to) - to_before,
        3,
        "the target ran each check once"
    );

    // Finish the migration (the target first, which takes the slot); the limiter still routes
    // the slot to the source, which now answers MOVED.
    set(to, &["NODE", &to_id]);
    set(from, &["NODE", &to_id]);
    set(3 - from - to, &["NODE", &to_id]);
    assert_eq!(l.check(&keys[0], 1).await.unwrap().remaining(), 8);
    let got: Vec<u64> = l
        .check_many(&batch)
        .await
        .into_iter()
        .map(|r| r.unwrap().remaining())
        .collect();
    assert_eq!(got, [8, 6]);
    assert_eq!(evalsha_on(from) - from_before, 0);
    assert_eq!(evalsha_on(to) - to_before, 6);
    assert_eq!(
        cluster.nodes[to].raw(&["EXISTS", std::str::from_utf8(&name).unwrap()]),
        ":1\r\n"
    );
}

/// A check whose reply is lost after the script ran is reported as indeterminate and never
/// resent: the key is charged exactly once. (redis-rs's cluster client resends a request after
/// an I/O error by default, which charged it twice.) One master is reached through a proxy
/// that forwards the check and drops the connection instead of passing the reply on: the
/// master announces the proxy's port, so the client's connection to it runs through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_on_a_cluster_is_never_resent() {
    let cluster = RedisCluster::start();
    let proxy = support::ReplyCutter::start(cluster.nodes[0].port);
    let port = proxy.port.to_string();
    let reply = cluster.nodes[0].raw(&["CONFIG", "SET", "cluster-announce-port", &port]);
    assert!(reply.starts_with("+OK"), "{reply}");
    // Every node's view of the cluster names the proxy (gossip takes a moment).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let announced = format!("127.0.0.1:{port}@");
    for node in &cluster.nodes {
        while !node.raw(&["CLUSTER", "NODES"]).contains(&announced) {
            assert!(
                std::time::Instant::now() < deadline,
                "the port never spread"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let l = RedisLimiter::builder(Target::cluster([proxy.url()]))
        .rate(Rate::per_hour(10))
        .prefix("cut")
        .build()
        .await
        .unwrap();
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| owner(&cluster, &l.redis_key(k.as_bytes())) == 0)
        .unwrap();
    assert_eq!(l.check(&key, 1).await.unwrap().remaining(), 9);
    assert_eq!(proxy.evals(), 1, "the check went through the proxy");

    proxy.cut_next(&l.redis_key(key.as_bytes()));
    let before = support::command_calls(cluster.nodes[0].port, "evalsha");
    let err = l.check(&key, 1).await.unwrap_err();
    assert!(
        matches!(err, RedisLimiterError::ReplyLost { .. }) && err.is_indeterminate(),
        "{err}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        support::command_calls(cluster.nodes[0].port, "evalsha") - before,
        1,
        "the script ran once"
    );
    assert_eq!(proxy.evals(), 2, "and was sent once");
    // Once reconnected, the key shows exactly two charges.
    let remaining = loop {
        match l.peek(&key).await {
            Ok(d) => break d.remaining(),
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "never reconnected: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(remaining, 8);
}

//! A real 3-master Redis Cluster on loopback: checks across many keys land on every node, each
//! script touches one slot, and decisions match a standalone server's.
#![allow(clippy::unwrap_used)]

mod support;

use support::RedisCluster;
use traffik_core::Rate;
use traffik_redis::{RedisAlgorithm, RedisLimiter, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_checks_across_many_keys() {
    let cluster = RedisCluster::start();
    for alg in [
        RedisAlgorithm::Gcra,
        RedisAlgorithm::TokenBucket,
        RedisAlgorithm::LeakyBucket,
        RedisAlgorithm::FixedWindow,
        RedisAlgorithm::SlidingWindowCounter,
        RedisAlgorithm::SlidingWindowLog,
    ] {
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
        // Batches across slots work too (one request per check on a cluster).
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
}

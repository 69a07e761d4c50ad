//! `RedisLimiter` under the one contract (`AsyncLimiter`): generic code runs on it unchanged,
//! and every failure is classified by what it means for the key's state.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use support::{fake_server, free_port, Fake, RedisServer};
use traffik_core::{AsyncLimiter, Decision, ErrorKind, LimiterError, Rate};
use traffik_redis::{RedisAlgorithm, RedisLimiter};

/// Written once against the contract, as failover and middleware are.
async fn admitted<K: ?Sized, L: AsyncLimiter<K>>(limiter: &L, key: &K, n: u32) -> u32 {
    let mut admitted = 0;
    for _ in 0..n {
        admitted += u32::from(limiter.check(key, 1).await.unwrap().is_allowed());
    }
    admitted
}

async fn build(url: String) -> RedisLimiter {
    RedisLimiter::builder(url)
        .rate(Rate::per_second(5))
        .algorithm(RedisAlgorithm::Gcra)
        .timeout(Duration::from_millis(300))
        .prefix("c")
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn generic_code_runs_on_redis_with_str_bytes_and_owned_keys() {
    let server = RedisServer::start();
    let limiter = build(server.url()).await;
    assert_eq!(admitted::<str, _>(&limiter, "a", 7).await, 5);
    // The same key as bytes or as an owned string is the same Redis key.
    assert_eq!(admitted::<[u8], _>(&limiter, b"a".as_slice(), 2).await, 0);
    assert_eq!(
        admitted::<String, _>(&limiter, &"b".to_string(), 7).await,
        5
    );
    let peek: Decision = AsyncLimiter::<str>::peek(&limiter, "a").await.unwrap();
    assert_eq!(peek.remaining(), 0);
    AsyncLimiter::<str>::reset(&limiter, "a").await.unwrap();
    assert_eq!(admitted::<str, _>(&limiter, "a", 7).await, 5);
    // Through a shared reference and an Arc as well.
    let shared = std::sync::Arc::new(limiter);
    assert_eq!(admitted::<str, _>(&shared, "c", 6).await, 5);
}

#[tokio::test]
async fn failures_say_whether_anything_was_charged() {
    let server = RedisServer::start();
    let limiter = build(server.url()).await;
    let too_big = AsyncLimiter::<str>::check(&limiter, "k", 6)
        .await
        .unwrap_err();
    assert_eq!(too_big.kind(), ErrorKind::InsufficientCapacity { max: 5 });

    // A server that takes the script and never answers: it may have run.
    let (port, evals) = fake_server(Fake::Silent);
    let silent = build(format!("redis://127.0.0.1:{port}/")).await;
    let err = AsyncLimiter::<str>::check(&silent, "k", 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Indeterminate, "{err}");
    assert_eq!(evals.load(std::sync::atomic::Ordering::SeqCst), 1);

    // One that hangs up after reading it: the same.
    let (port, _) = fake_server(Fake::Hangup);
    let hangup = build(format!("redis://127.0.0.1:{port}/")).await;
    let err = AsyncLimiter::<str>::check(&hangup, "k", 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Indeterminate, "{err}");

    // A server that answers the script with an error it raised before writing.
    let (port, _) = fake_server(Fake::Reply(
        b"-OOM command not allowed when used memory > 'maxmemory'\r\n",
    ));
    let oom = build(format!("redis://127.0.0.1:{port}/")).await;
    let err = AsyncLimiter::<str>::check(&oom, "k", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}");

    // A key someone else wrote: a configuration problem, not an outage.
    server.raw(&["SET", "c:{w}:gcra", "not a state"]);
    let err = AsyncLimiter::<str>::check(&limiter, "w", 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn a_server_that_went_away_is_not_charged() {
    let mut server = RedisServer::start();
    let limiter = build(server.url()).await;
    assert_eq!(admitted::<str, _>(&limiter, "k", 1).await, 1);
    server.kill();
    let err = AsyncLimiter::<str>::check(&limiter, "k", 1)
        .await
        .unwrap_err();
    // The connection is found dead when the request is written or the reply read; which of the
    // two is a race, so the error is one of the two kinds and never an admission.
    assert!(
        matches!(err.kind(), ErrorKind::NotCharged | ErrorKind::Indeterminate),
        "{err}"
    );
    // Nothing listens on a fresh port at all: refused before anything is sent.
    let refused = RedisLimiter::builder(format!("redis://127.0.0.1:{}/", free_port()))
        .rate(Rate::per_second(5))
        .timeout(Duration::from_millis(300))
        .build()
        .await;
    match refused {
        Ok(l) => {
            let err = AsyncLimiter::<str>::check(&l, "k", 1).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}");
        }
        Err(err) => assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}"),
    }
}

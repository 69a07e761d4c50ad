//! Failures against a real `redis-server` on a free loopback port, classified by whether the
//! command can have reached it: a server killed with `kill -9` under a connected limiter, and
//! a call whose deadline passes while it is still connecting. (A
//! reply lost after the server ran the script is in `std-adapters/tests/outage.rs`, through a
//! proxy, and in `contract.rs` with a server that hangs up after reading the command.)
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use support::RedisServer;
use traffik_core::{AsyncLimiter, ErrorKind, LimiterError, Rate};
use traffik_redis::{RedisLimiter, RedisLimiterError};

/// The client error under a limiter error, as redis-rs reported it.
fn client_error(err: &RedisLimiterError) -> &redis::RedisError {
    let source = err.source().unwrap();
    source.downcast_ref::<Arc<redis::RedisError>>().unwrap()
}

#[tokio::test]
async fn after_kill_9_the_first_call_is_indeterminate_and_refused_reconnections_are_not_charged() {
    let mut server = RedisServer::start();
    let limiter = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(5))
        .timeout(Duration::from_secs(5))
        .prefix("bs")
        .build()
        .await
        .unwrap();
    let check = || AsyncLimiter::<str>::check(&limiter, "k", 1);
    assert!(check().await.unwrap().is_allowed());

    server.kill();
    // Let the connection's task see the end of the stream and stop.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // redis-rs reports the same broken pipe whether its dead connection task never took the
    // command (as here) or died with it in flight, so this one cannot be told apart from a
    // lost reply.
    let err = check().await.unwrap_err();
    assert!(
        matches!(err, RedisLimiterError::ReplyLost { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
    let cause = client_error(&err);
    assert!(cause.is_connection_dropped(), "{cause:?}");

    // That failure gave the connection up; the next call connects again, is refused, and has
    // written nothing.
    let err = check().await.unwrap_err();
    assert!(
        matches!(err, RedisLimiterError::Connection { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}");
    let cause = client_error(&err);
    assert!(cause.is_connection_refusal(), "{cause:?}");
    assert!(cause.to_string().contains("nothing sent"), "{cause}");

    // Back on the same port (empty): the next call connects and is admitted.
    server.restart();
    let decision = check().await.unwrap();
    assert!(decision.is_allowed());
    assert_eq!(
        decision.remaining(),
        4,
        "a fresh server: only this check charged"
    );
}

#[tokio::test]
async fn a_deadline_reached_while_connecting_is_not_charged() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let limiter = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(5))
        .timeout(timeout)
        .prefix("bs")
        .build()
        .await
        .unwrap();
    let check = || AsyncLimiter::<str>::check(&limiter, "k", 1);
    assert!(check().await.unwrap().is_allowed());
    server.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The dead connection is found (and given up) by this call.
    assert_eq!(check().await.unwrap_err().kind(), ErrorKind::Indeterminate);

    // Something now listens on the port but never accepts, and its accept queue is full: a
    // new connection's handshake is never answered.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    let _hog = socket.listen(1).unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(s)) = tokio::time::timeout(
        Duration::from_millis(100),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        queued.push(s);
        assert!(queued.len() < 64, "the accept queue never filled");
    }

    let start = tokio::time::Instant::now();
    let err = check().await.unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, RedisLimiterError::Connection { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(200),
        "{took:?}"
    );
    // A pipelined batch waits for the connection the same way.
    let batch = limiter.check_many(&[("a", 1), ("b", 1)]).await;
    assert_eq!(batch.len(), 2);
    for answer in batch {
        let err = answer.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}");
    }
}

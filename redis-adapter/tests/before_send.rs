//! Failures against a real `redis-server` on a free loopback port, classified by whether the
//! command can have reached it: a server killed with `kill -9` under a connected limiter. (A
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
    // A timeout long enough for a call to wait out the connection manager's reconnection.
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

    // That failure made the manager reconnect; the next call waits for the reconnection, which
    // is refused before anything is written.
    let err = check().await.unwrap_err();
    assert!(
        matches!(err, RedisLimiterError::Connection { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}");
    let cause = client_error(&err);
    assert!(cause.is_connection_refusal(), "{cause:?}");
    assert!(
        cause.to_string().starts_with("Reconnecting failed"),
        "{cause}"
    );

    // Back on the same port (empty): calls fail NotCharged until the manager has reconnected,
    // then admit again.
    server.restart();
    let mut refused = 0;
    let decision = loop {
        match check().await {
            Ok(d) => break d,
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::NotCharged, "{err}");
                refused += 1;
                assert!(refused < 5, "never reconnected: {err}");
            }
        }
    };
    assert!(decision.is_allowed());
    assert_eq!(
        decision.remaining(),
        4,
        "a fresh server: only this check charged"
    );
}

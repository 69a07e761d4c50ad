//! Failures: each one a typed error of the right kind, within the timeout, and no write ever
//! resent.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::{fake_server, free_port, Fake, Memcached};
use traffik_core::{ErrorKind, LimiterError};
use traffik_memcached::{MemcachedLimiter, MemcachedLimiterError as E};

fn limiter(addr: &str, timeout_ms: u64) -> MemcachedLimiter {
    MemcachedLimiter::builder(addr)
        .rate("10/s")
        .timeout(Duration::from_millis(timeout_ms))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_not_charged_within_the_timeout() {
    let l = limiter(&format!("127.0.0.1:{}", free_port()), 300);
    for _ in 0..3 {
        let started = Instant::now();
        let e = l.check("k", 1).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(e, E::Connect { .. }), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::NotCharged);
        assert!(std::error::Error::source(&e).is_some());
    }
    let e = l.reset("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotCharged);
    let batch = l.check_many(&[("a", 1), ("b", 1)]).await;
    assert!(batch.iter().all(|r| matches!(r, Err(E::Connect { .. }))));

    // A server that accepts connections but never answers: the timeout, before any write.
    let (addr, _) = fake_server(Fake::Mute);
    let l = limiter(&addr, 200);
    let started = Instant::now();
    let e = l.check("k", 1).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, E::Timeout { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::NotCharged);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(400),
        "{took:?}"
    );
}

/// The write is sent, then the connection closes with no reply: indeterminate, and the write
/// is not resent (the fake counts one `add`, on one connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_write_reply_is_indeterminate_and_never_resent() {
    let (addr, seen) = fake_server(Fake::HangupAfterWrite);
    let l = limiter(&addr, 500);
    let e = l.check("k", 1).await.unwrap_err();
    assert!(matches!(e, E::ReplyLost { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Indeterminate);
    assert!(e.is_indeterminate());
    // Give a resend, if there were one, time to arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.writes.load(Ordering::SeqCst), 1);
    assert_eq!(seen.reads.load(Ordering::SeqCst), 1);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);

    // The next call reconnects (the dead connection was not pooled) and fails the same way.
    let e = l.check("k", 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Indeterminate);
    assert_eq!(seen.writes.load(Ordering::SeqCst), 2);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);

    // In a batch: every key whose write was out is indeterminate.
    let out = l.check_many(&[("a", 1), ("b", 1), ("a", 1)]).await;
    for r in &out {
        assert_eq!(
            r.as_ref().unwrap_err().kind(),
            ErrorKind::Indeterminate,
            "{r:?}"
        );
    }
    // Two distinct keys, two writes pipelined in one send: the fake read the first and hung
    // up. Neither was resent, on this connection or a new one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.writes.load(Ordering::SeqCst), 3);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
}

/// The write is sent and no reply comes before the timeout: indeterminate, not resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_timeout_is_indeterminate_and_never_resent() {
    let (addr, seen) = fake_server(Fake::SilentAfterWrite);
    let l = limiter(&addr, 200);
    let started = Instant::now();
    let e = l.check("k", 1).await.unwrap_err();
    assert!(matches!(e, E::ReplyTimeout { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Indeterminate);
    assert!(started.elapsed() < Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.writes.load(Ordering::SeqCst), 1);
}

/// Replies that are not memcached's are typed errors, classified by whether a write was out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replies_are_typed_errors() {
    // Garbage to the read: nothing was written.
    for garbage in [
        &b"+PONG\r\n"[..],
        b"HTTP/1.1 400 Bad Request\r\n\r\n",
        b"VALUE other-key 29810 8 1\r\n12345678\r\nEND\r\n",
        b"VALUE traffik:gcra:k:k 29810 99999999999 1\r\n",
        b"END\n",
        b"\xff\xfe\x00garbage\r\n",
    ] {
        let (addr, _) = fake_server(Fake::Reply(garbage));
        let e = limiter(&addr, 500).check("k", 1).await.unwrap_err();
        assert!(
            matches!(
                e,
                E::BadReply {
                    after_write: false,
                    ..
                }
            ),
            "{:?}: {e:?}",
            garbage.escape_ascii().to_string()
        );
        assert_eq!(e.kind(), ErrorKind::NotCharged);
    }
    // A line that never ends is refused once it is longer than any reply.
    let endless: &'static [u8] = Box::leak(vec![b'x'; 5000].into_boxed_slice());
    let (addr, _) = fake_server(Fake::Reply(endless));
    let e = limiter(&addr, 500).check("k", 1).await.unwrap_err();
    assert!(matches!(e, E::BadReply { .. }), "{e:?}");

    // Garbage to the write: it may have been applied.
    let (addr, seen) = fake_server(Fake::WriteReply(b"OK\r\n"));
    let e = limiter(&addr, 500).check("k", 1).await.unwrap_err();
    assert!(
        matches!(
            e,
            E::BadReply {
                after_write: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Indeterminate);
    assert_eq!(seen.writes.load(Ordering::SeqCst), 1);

    // Error replies: SERVER_ERROR refuses the write (not charged), ERROR and CLIENT_ERROR
    // mean the server does not take these commands (config).
    let (addr, _) = fake_server(Fake::WriteReply(
        b"SERVER_ERROR out of memory storing object\r\n",
    ));
    let e = limiter(&addr, 500).check("k", 1).await.unwrap_err();
    assert!(matches!(e, E::Server { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::NotCharged);
    assert!(e.to_string().contains("out of memory"), "{e}");
    let (addr, _) = fake_server(Fake::Reply(b"ERROR\r\n"));
    let e = limiter(&addr, 500).check("k", 1).await.unwrap_err();
    assert!(matches!(e, E::Refused { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Config);
    let (addr, _) = fake_server(Fake::Reply(b"CLIENT_ERROR bad command line format\r\n"));
    let e = limiter(&addr, 500).peek("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);

    // Every write conflicting: contention after the configured attempts, nothing written.
    let (addr, seen) = fake_server(Fake::WriteReply(b"NOT_STORED\r\n"));
    let l = MemcachedLimiter::builder(&addr)
        .rate("10/s")
        .cas_attempts(5)
        .build()
        .unwrap();
    let e = l.check("k", 1).await.unwrap_err();
    assert!(matches!(e, E::Contention { attempts: 5 }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::NotCharged);
    assert_eq!(seen.writes.load(Ordering::SeqCst), 5);
    assert_eq!(seen.reads.load(Ordering::SeqCst), 5);
}

/// After a server restart the pooled connections are dead; the first check on each notices
/// at its `gets` and reconnects, so no call fails for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_transparently() {
    let mut server = Memcached::start();
    let l = MemcachedLimiter::builder(server.addr())
        .rate("100/s")
        .pool_size(2)
        .build()
        .unwrap();
    // Open both pooled connections.
    let (a, b) = tokio::join!(l.check("a", 1), l.check("b", 1));
    assert!(a.unwrap().is_allowed() && b.unwrap().is_allowed());
    server.restart();
    for _ in 0..6 {
        let d = l.check("a", 1).await.unwrap();
        assert!(d.is_allowed());
    }
    l.reset("a").await.unwrap();
    // The restarted server is empty: "b" is fresh again.
    assert_eq!(l.peek("b").await.unwrap().remaining(), 100);
}

/// With CAS disabled (`memcached -C`) the limiter cannot work: a config error, not a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_disabled_is_a_config_error() {
    let server = Memcached::start_with(&["-C"]);
    let l = limiter(&server.addr(), 500);
    // The first check adds the key (no token needed); the second needs the token.
    assert!(l.check("k", 1).await.unwrap().is_allowed());
    let e = l.check("k", 1).await.unwrap_err();
    assert!(matches!(e, E::Config(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Config);
}

//! Behaviour against a real memcached: concurrency, expiry, what is stored, several servers,
//! corrupt values, and the `AsyncLimiter` contract.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{fake_server, Fake, Memcached};
use traffik_core::{AlgorithmKind, AsyncLimiter, ErrorKind, LimiterError, ManualClock, Rate};
use traffik_memcached::{MemcachedLimiter, MemcachedLimiterError};

const SEC: u64 = 1_000_000_000;

/// 16 tasks x 50 checks on one key, clock frozen: exactly the burst is admitted, however the
/// compare-and-swap races go.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_admit_exactly_the_burst() {
    let server = Memcached::start();
    let clock = Arc::new(ManualClock::starting_at(1_790_000_000 * SEC));
    let limiter = MemcachedLimiter::builder(server.addr())
        .rate(Rate::per_hour(100))
        .burst(100)
        .pool_size(16)
        .timeout(Duration::from_secs(5))
        .prefix("conc")
        .clock(clock)
        .build()
        .unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let contended = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (limiter, admitted, denied, contended) = (
                limiter.clone(),
                admitted.clone(),
                denied.clone(),
                contended.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..50 {
                    match limiter.check("hot", 1).await {
                        Ok(d) if d.is_allowed() => admitted.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => denied.fetch_add(1, Ordering::Relaxed),
                        // Nothing written: allowed, but counted.
                        Err(MemcachedLimiterError::Contention { .. }) => {
                            contended.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => panic!("{e}"),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (a, d, c) = (
        admitted.load(Ordering::Relaxed),
        denied.load(Ordering::Relaxed),
        contended.load(Ordering::Relaxed),
    );
    assert_eq!(a, 100, "admitted {a}, denied {d}, contended {c}");
    assert_eq!(a + d + c, 800);
    println!("16 x 50 checks: {a} admitted, {d} denied, {c} gave up under contention");
    // The stored state is exactly 100 emission intervals (36 s each) past the frozen time.
    let state = server
        .meta_get(&limiter.memcached_key("hot"))
        .unwrap()
        .state();
    assert_eq!(state, 1_790_000_000 * SEC + 100 * 36 * SEC);
    assert!(limiter.peek("hot").await.unwrap().remaining() == 0);
}

/// The expiry sent is `ceil(reset_after) + 1` s, the key is there until it is fresh and gone
/// soon after; an expiry over 30 days is sent as an absolute time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_once_fresh() {
    let server = Memcached::start();
    // 1 per second, burst 1: one admission leaves a state fresh again in exactly 1 s.
    let limiter = MemcachedLimiter::builder(server.addr())
        .rate("1/s")
        .prefix("ttl")
        .build()
        .unwrap();
    let key = limiter.memcached_key("k");
    let d = limiter.check("k", 1).await.unwrap();
    let written = Instant::now();
    assert!(d.is_allowed());
    assert_eq!(d.reset_after_nanos(), SEC);
    let item = server.meta_get(&key).unwrap();
    // 2 s sent; memcached may have ticked once since.
    assert!((1..=2).contains(&item.ttl), "ttl {}", item.ttl);
    assert_eq!(item.flags, 0x7472);
    // Still there at 0.8 s (memcached drops it between 1 s and 2 s after the write, a little
    // earlier if its once-a-second clock tick runs late on a loaded machine; the exact expiry
    // sent is checked on the wire below)...
    tokio::time::sleep(Duration::from_millis(800).saturating_sub(written.elapsed())).await;
    assert!(
        server.meta_get(&key).is_some(),
        "dropped before it was fresh"
    );
    // ...and gone after 2 s.
    tokio::time::sleep(Duration::from_millis(2_100).saturating_sub(written.elapsed())).await;
    assert!(server.meta_get(&key).is_none(), "not expired after 2.1 s");
    assert_eq!(limiter.peek("k").await.unwrap().remaining(), 1);

    // A 40-day period: 40 days + 1 s, sent as an absolute Unix time with a 60 s margin, which
    // memcached reports back as the remaining seconds.
    let long = MemcachedLimiter::builder(server.addr())
        .rate(Rate::from_nanos(1, 40 * 86_400 * SEC).unwrap())
        .prefix("ttl-long")
        .build()
        .unwrap();
    assert!(long.check("k", 1).await.unwrap().is_allowed());
    let ttl = server.meta_get(&long.memcached_key("k")).unwrap().ttl;
    // memcached's clock ticks once a second and may trail the real time by one.
    let want = 40 * 86_400 + 1 + 60;
    assert!(
        (want - 2..=want + 1).contains(&ttl),
        "ttl {ttl}, want about {want}"
    );
}

/// Exact expiries on the wire, captured by a fake server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_on_the_wire_is_reset_after_rounded_up_plus_one() {
    let (addr, seen) = fake_server(Fake::WriteReply(b"STORED\r\n"));
    // 2 per 3 s, burst 2: after one check at t, the state is fresh after 1.5 s -> 2 + 1 = 3.
    let limiter = MemcachedLimiter::builder(&addr)
        .rate("2/3s")
        .prefix("wire")
        .build()
        .unwrap();
    let d = limiter.check_at("k", 1, 1_000 * SEC).await.unwrap();
    assert_eq!(d.reset_after_nanos(), 1_500_000_000);
    // Cost 2 from fresh: fresh again after 3 s -> 4.
    let d = limiter.check_at("j", 2, 1_000 * SEC).await.unwrap();
    assert_eq!(d.reset_after_nanos(), 3 * SEC);
    let lines = seen.lines.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "gets wire:gcra:k:k",
            "add wire:gcra:k:k 29810 3 8",
            "gets wire:gcra:k:j",
            "add wire:gcra:k:j 29810 4 8",
        ]
    );
}

/// Denials and peeks write nothing: the CAS token does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_and_peeks_write_nothing() {
    let server = Memcached::start();
    let limiter = MemcachedLimiter::builder(server.addr())
        .rate(Rate::per_minute(2))
        .prefix("ro")
        .build()
        .unwrap();
    let key = limiter.memcached_key("k");
    assert!(limiter.peek("k").await.unwrap().is_allowed());
    assert!(server.meta_get(&key).is_none(), "a peek created the key");
    assert!(limiter.check("k", 2).await.unwrap().is_allowed());
    let before = server.meta_get(&key).unwrap();
    let denied = limiter.check("k", 1).await.unwrap();
    assert!(denied.is_denied());
    assert_eq!(limiter.peek("k").await.unwrap().remaining(), 0);
    let after = server.meta_get(&key).unwrap();
    assert_eq!((after.cas, after.value), (before.cas, before.value));
    // Reset deletes it.
    limiter.reset("k").await.unwrap();
    assert!(server.meta_get(&key).is_none());
    assert_eq!(limiter.peek("k").await.unwrap().remaining(), 2);
}

/// A key holding a value this crate did not write is a typed, config-kind error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_are_corrupt_state() {
    let server = Memcached::start();
    let limiter = MemcachedLimiter::builder(server.addr())
        .rate("5/s")
        .prefix("bad")
        .build()
        .unwrap();
    // Wrong length, right flags.
    server.set(&limiter.memcached_key("short"), 0x7472, b"1234567");
    // Right length, wrong flags.
    server.set(&limiter.memcached_key("flags"), 0, b"12345678");
    for key in ["short", "flags"] {
        let e = limiter.check(key, 1).await.unwrap_err();
        assert!(
            matches!(e, MemcachedLimiterError::CorruptState { .. }),
            "{key}: {e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = limiter.peek(key).await.unwrap_err();
        assert!(matches!(e, MemcachedLimiterError::CorruptState { .. }));
    }
    // The value was left alone, and a reset clears it.
    assert_eq!(
        server
            .meta_get(&limiter.memcached_key("short"))
            .unwrap()
            .value,
        b"1234567"
    );
    limiter.reset("short").await.unwrap();
    assert!(limiter.check("short", 1).await.unwrap().is_allowed());
}

/// Two servers: each key lives on the server `server_for` names, and only there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_spread_over_servers_deterministically() {
    let a = Memcached::start();
    let b = Memcached::start();
    let limiter = MemcachedLimiter::builder(a.addr())
        .server(format!("memcache://{}", b.addr()))
        .rate("10/m")
        .prefix("multi")
        .build()
        .unwrap();
    // The same servers listed the other way round place every key identically.
    let reversed = MemcachedLimiter::builder(b.addr())
        .server(a.addr())
        .rate("10/m")
        .prefix("multi")
        .build()
        .unwrap();
    let mut on_a = 0;
    for i in 0..200 {
        let key = format!("user-{i}");
        assert_eq!(limiter.server_for(&key), reversed.server_for(&key));
        assert!(limiter.check(&key, 1).await.unwrap().is_allowed());
        let name = limiter.memcached_key(&key);
        let (here, other) = if limiter.server_for(&key) == a.addr() {
            on_a += 1;
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(here.meta_get(&name).is_some(), "{key} missing");
        assert!(other.meta_get(&name).is_none(), "{key} on both");
        // Through the reversed limiter the key has one check charged already.
        assert_eq!(reversed.peek(&key).await.unwrap().remaining(), 9);
    }
    assert!((60..140).contains(&on_a), "{on_a} of 200 on one server");
    let versions = limiter.versions().await;
    assert_eq!(versions.len(), 2);
    for (server, version) in versions {
        assert!(version.unwrap().starts_with("1."), "{server}");
    }
}

/// Generic code written against `AsyncLimiter` drives the memcached limiter, and the unlimited
/// rate never touches the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_contract() {
    async fn admit<L: AsyncLimiter<str>>(limiter: &L, who: &str) -> Result<bool, L::Error> {
        Ok(limiter.check(who, 1).await?.is_allowed())
    }
    fn assert_send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}

    let server = Memcached::start();
    let limiter = MemcachedLimiter::builder(server.addr())
        .rate("2/h")
        .prefix("contract")
        .build()
        .unwrap();
    assert_send_sync(&limiter);
    assert!(admit(&limiter, "x").await.unwrap());
    assert!(admit(&limiter, "x").await.unwrap());
    assert!(!admit(&limiter, "x").await.unwrap());
    let d = AsyncLimiter::<[u8]>::peek(&limiter, b"x").await.unwrap();
    assert_eq!(d.remaining(), 0);
    AsyncLimiter::<String>::reset(&limiter, &"x".to_owned())
        .await
        .unwrap();
    assert!(admit(&limiter, "x").await.unwrap());
    let e = AsyncLimiter::<str>::check(&limiter, "x", 3)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InsufficientCapacity { max: 2 });

    // Unlimited, pointed at a port nothing listens on: answers anyway.
    let open = MemcachedLimiter::builder(format!("127.0.0.1:{}", support::free_port()))
        .rate("0/0")
        .algorithm(AlgorithmKind::TokenBucket)
        .build()
        .unwrap();
    let d = open.check("anyone", 1_000_000).await.unwrap();
    assert!(d.is_allowed() && d.remaining() == u64::MAX);
    open.reset("anyone").await.unwrap();
}

//! Behaviour against real (and fake) servers: TTLs, restarts, concurrency, failures, batching,
//! the near cache and the blocking API.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{command_calls, fake_server, free_port, Fake, Monitor, RedisServer, ReplyCutter};
use traffik_core::{Decision, Rate};
use traffik_redis::{RedisAlgorithm, RedisLimiter, RedisLimiterError, TimeSource};

const MS: u64 = 1_000_000;

async fn limiter(server: &RedisServer, rate: Rate, alg: RedisAlgorithm) -> RedisLimiter {
    RedisLimiter::builder(server.url())
        .rate(rate)
        .algorithm(alg)
        .prefix("t")
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn key_names_carry_prefix_and_hash_tag() {
    let server = RedisServer::start();
    let l = limiter(&server, Rate::per_second(5), RedisAlgorithm::Gcra).await;
    assert_eq!(l.redis_key(b"user:1"), b"t:{user:1}:gcra".to_vec());
    assert_eq!(l.redis_key(b"a}b%"), b"t:{a%7Db%25}:gcra".to_vec());
    assert_eq!(l.redis_key(b""), b"t:{%}:gcra".to_vec());
    assert!(l.check("user:1", 1).await.unwrap().is_allowed());
    assert_eq!(server.raw(&["EXISTS", "t:{user:1}:gcra"]).trim(), ":1");
    let bad = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(5))
        .prefix("a{b}")
        .build()
        .await;
    assert!(matches!(bad, Err(RedisLimiterError::Config { .. })));
}

/// The TTL a script sets, as seen by `MONITOR`: `SET key value PX ms` or `PEXPIRE key ms`.
fn ttls_set(log: &str, key: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(&format!("\"{key}\"")))
        .filter_map(|l| {
            let words = monitor_words(l);
            match words.first().map(|w| w.to_uppercase()).as_deref() {
                Some("SET") => words
                    .iter()
                    .position(|w| w.eq_ignore_ascii_case("PX"))
                    .map(|i| words[i + 1].parse().unwrap()),
                Some("PEXPIRE") => Some(words[2].parse().unwrap()),
                _ => None,
            }
        })
        .collect()
}

/// The quoted words of one `MONITOR` line. Values are escaped (`\"`, `\\`, `\xNN`, ...), and
/// stored states are binary, so a plain split on quotes is not enough.
fn monitor_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => {
                    if let Some(e) = chars.next() {
                        word.push('\\');
                        word.push(e);
                    }
                }
                c => word.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// A sub-millisecond reset must never give a 0 ms TTL (which would delete the key): every TTL
/// is the reset rounded up to whole milliseconds, plus the one millisecond Redis's truncated
/// expiry stamp can take away.
#[tokio::test]
async fn ttl_rounds_up_never_down() {
    let server = RedisServer::start();
    let mut monitor = Monitor::start(server.port);
    let mut expected = Vec::new();
    for alg in support::ALL_ALGORITHMS {
        for (i, (rate, now)) in [
            // 1 per 300 µs: every reset is below a millisecond.
            (Rate::from_nanos(1, 300_000).unwrap(), 10_000 * MS + 123),
            // Resets of a few seconds and a stray nanosecond.
            (
                Rate::from_nanos(2, 5_000 * MS + 1).unwrap(),
                5_000 * MS * 7 + 1,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let l = limiter(&server, rate, alg).await;
            let key = format!("ttl-{alg:?}-{i}");
            let d = l.check_at(&key, 1, now).await.unwrap();
            assert!(d.is_allowed() && d.reset_after_nanos() > 0);
            if i == 0 {
                assert!(d.reset_after_nanos() < MS, "{alg:?}");
            }
            let name = String::from_utf8(l.redis_key(key.as_bytes())).unwrap();
            expected.push((alg, name, d.reset_after_nanos().div_ceil(MS) + 1));
        }
    }
    let log = monitor.drain();
    for (alg, name, want) in expected {
        let got = ttls_set(&log, &name);
        assert!(!got.is_empty(), "{alg:?}: no TTL set on {name}");
        assert!(
            got.iter().all(|&ms| ms == want && ms >= 1),
            "{alg:?}: TTLs {got:?}, want {want} ms"
        );
    }
}

#[tokio::test]
async fn idle_keys_expire_by_themselves() {
    let server = RedisServer::start();
    for alg in support::ALL_ALGORITHMS {
        let l = limiter(&server, Rate::from_nanos(2, 150 * MS).unwrap(), alg).await;
        assert!(l.check("idle", 2).await.unwrap().is_allowed(), "{alg:?}");
        let name = String::from_utf8(l.redis_key(b"idle")).unwrap();
        assert_eq!(server.raw(&["EXISTS", &name]).trim(), ":1", "{alg:?}");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        server.raw(&["DBSIZE"]).trim(),
        ":0",
        "idle keys should be gone"
    );
}

#[tokio::test]
async fn server_time_is_the_default_and_works() {
    let server = RedisServer::start();
    for alg in support::ALL_ALGORITHMS {
        let l = limiter(&server, Rate::per_hour(3), alg).await;
        let got: Vec<bool> = {
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(l.check("k", 1).await.unwrap().is_allowed());
            }
            v
        };
        assert_eq!(got, [true, true, true, false, false], "{alg:?}");
        let denied = l.peek("k").await.unwrap();
        assert_eq!(denied.remaining(), 0);
        l.reset("k").await.unwrap();
        assert_eq!(l.peek("k").await.unwrap().remaining(), 3, "{alg:?}");
        let sys = RedisLimiter::builder(server.url())
            .rate(Rate::per_hour(3))
            .algorithm(alg)
            .prefix("sys")
            .time_source(TimeSource::System)
            .build()
            .await
            .unwrap();
        assert!(sys.check("k", 3).await.unwrap().is_allowed());
        assert!(sys.check("k", 1).await.unwrap().is_denied());
    }
}

#[tokio::test]
async fn noscript_after_restart_and_flush_is_retried_transparently() {
    let mut server = RedisServer::start();
    let l = limiter(&server, Rate::per_hour(10), RedisAlgorithm::TokenBucket).await;
    assert!(l.check("k", 1).await.unwrap().is_allowed());
    server.raw(&["SCRIPT", "FLUSH"]);
    let before = l.stats().round_trips;
    assert_eq!(l.check("k", 1).await.unwrap().remaining(), 8);
    assert_eq!(
        l.stats().round_trips - before,
        2,
        "EVALSHA, NOSCRIPT, then EVAL"
    );
    // After EVAL the script is cached again: one round trip.
    assert_eq!(l.check("k", 1).await.unwrap().remaining(), 7);
    assert_eq!(l.stats().round_trips - before, 3);
    server.raw(&["SCRIPT", "FLUSH"]);
    let batch = l.check_many(&[("k", 1), ("other", 2)]).await;
    assert_eq!(batch[0].as_ref().unwrap().remaining(), 6);
    assert_eq!(batch[1].as_ref().unwrap().remaining(), 8);

    // A restart loses keys and scripts; the connection manager reconnects by itself. The call
    // that meets the dead connection fails (it may not be resent), later ones succeed.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    let decision = loop {
        match l.check("k", 1).await {
            Ok(d) => break d,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        RedisLimiterError::ReplyLost { .. } | RedisLimiterError::Connection { .. }
                    ),
                    "{e}"
                );
                assert!(Instant::now() < deadline, "never reconnected: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(decision.remaining(), 9, "fresh server, fresh key");
}

/// Many tasks on one key, several connections: never more than the limit admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_never_over_admit() {
    let server = RedisServer::start();
    for alg in support::ALL_ALGORITHMS {
        let limiters = [
            limiter(&server, Rate::per_hour(50), alg).await,
            limiter(&server, Rate::per_hour(50), alg).await,
            limiter(&server, Rate::per_hour(50), alg).await,
        ];
        let mut tasks = Vec::new();
        for i in 0..300usize {
            let l = limiters[i % 3].clone();
            tasks.push(tokio::spawn(async move {
                l.check("hot", 1 + (i % 2) as u64).await.unwrap()
            }));
        }
        for t in tasks {
            let _decision = t.await.unwrap();
        }
        let left = limiters[0].peek("hot").await.unwrap().remaining();
        assert_eq!(left, 0, "{alg:?}");
        // Count exactly: the sum of admitted costs equals what the key holds.
        let mut sum = 0;
        let l = &limiters[0];
        l.reset("hot").await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..300usize {
            let l = limiters[i % 3].clone();
            let cost = 1 + (i % 2) as u64;
            tasks.push(tokio::spawn(async move {
                (cost, l.check("hot", cost).await.unwrap())
            }));
        }
        for t in tasks {
            let (cost, d) = t.await.unwrap();
            if d.is_allowed() {
                sum += cost;
            }
        }
        assert!((49..=50).contains(&sum), "{alg:?}: admitted {sum} of 50");
    }
}

#[tokio::test]
async fn check_many_is_one_round_trip_and_matches_sequential() {
    let server = RedisServer::start();
    let l = limiter(&server, Rate::per_hour(4), RedisAlgorithm::Gcra).await;
    let batch: Vec<(String, u64)> = (0..20).map(|i| (format!("k{}", i % 5), 1)).collect();
    let got = l.check_many(&batch).await;
    let allowed = got
        .iter()
        .filter(|r| r.as_ref().unwrap().is_allowed())
        .count();
    assert_eq!(allowed, 20, "5 keys x 4 = 20 admitted");
    let got = l.check_many(&[("k0", 1), ("k0", 5), ("fresh", 4)]).await;
    assert!(got[0].as_ref().unwrap().is_denied());
    assert!(matches!(
        got[1],
        Err(RedisLimiterError::InsufficientCapacity { max: 4 })
    ));
    assert!(got[2].as_ref().unwrap().is_allowed());
}

#[tokio::test]
async fn near_cache_answers_denied_keys_locally() {
    let server = RedisServer::start();
    let l = RedisLimiter::builder(server.url())
        .rate(Rate::per_hour(5))
        .near_cache(true)
        .build()
        .await
        .unwrap();
    let mut allowed = 0;
    for _ in 0..200 {
        if l.check("k", 1).await.unwrap().is_allowed() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
    let s = l.stats();
    assert_eq!(
        s.round_trips, 6,
        "5 admissions and one denial reached Redis"
    );
    assert_eq!(s.hits, 194);
    // A cheaper check than the one denied is not answered from the cache.
    let big = l.check("k2", 5).await.unwrap();
    assert!(big.is_allowed());
    let _ = l.check("k2", 2).await.unwrap();
    let before = l.stats().round_trips;
    let _ = l.check("k2", 1).await.unwrap();
    assert_eq!(l.stats().round_trips, before + 1);

    // On a caller clock the cached denial ends exactly at retry_after.
    let clock = Arc::new(AtomicU64::new(1_000 * 1_000 * MS));
    let t0 = clock.load(Ordering::SeqCst);
    let l = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(2))
        .prefix("clock")
        .time_source(TimeSource::Custom({
            let clock = Arc::clone(&clock);
            Arc::new(move || clock.load(Ordering::SeqCst))
        }))
        .near_cache(true)
        .build()
        .await
        .unwrap();
    assert!(l.check("x", 2).await.unwrap().is_allowed());
    let denied = l.check("x", 1).await.unwrap();
    assert_eq!(denied.retry_after_nanos(), 500 * MS);
    let hits = l.stats().hits;
    clock.store(t0 + 100 * MS, Ordering::SeqCst);
    let cached = l.check("x", 1).await.unwrap();
    assert_eq!(l.stats().hits, hits + 1);
    assert_eq!(cached, Decision::deny(2, 0, 400 * MS, 900 * MS));
    clock.store(t0 + 500 * MS, Ordering::SeqCst);
    let due = l.check("x", 1).await.unwrap();
    assert!(due.is_allowed());
    assert_eq!(l.stats().hits, hits + 1);
}

/// `check_at` times may be on any clock, so they neither feed nor consult the near cache,
/// which keeps time on the configured source. Before, a denial at a Unix-epoch `check_at` time
/// was cached until that time plus `retry_after` on the cache's monotonic clock, which starts
/// near zero: every `check` of the key was then denied locally for decades.
#[tokio::test]
async fn check_at_and_check_do_not_share_the_near_cache_clock() {
    let server = RedisServer::start();
    let l = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(2))
        .prefix("mixed")
        .near_cache(true)
        .build()
        .await
        .unwrap();
    // An hour ago on the Unix clock: by Redis's own time the key is long fresh again.
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let hour_ago = unix.as_nanos() as u64 - 3_600_000 * MS;
    assert!(l.check_at("k", 2, hour_ago).await.unwrap().is_allowed());
    let denied = l.check_at("k", 1, hour_ago).await.unwrap();
    assert_eq!(denied.retry_after_nanos(), 500 * MS);
    let now = l.check("k", 1).await.unwrap();
    assert!(now.is_allowed(), "{now:?}");
    assert_eq!(now.remaining(), 1);
    assert_eq!(l.stats().hits, 0);
    // And the other way: a denial on the configured source is not consulted by check_at.
    assert!(l.check("k", 1).await.unwrap().is_allowed());
    assert!(l.check("k", 1).await.unwrap().is_denied());
    let before = l.stats();
    assert!(l
        .check_at("k", 1, hour_ago + 1_000 * MS)
        .await
        .unwrap()
        .is_denied());
    assert_eq!(l.stats().hits, before.hits);
    assert_eq!(l.stats().round_trips, before.round_trips + 1);
}

#[tokio::test]
async fn connection_refused_is_a_typed_error_and_fast() {
    let port = free_port();
    let t = Instant::now();
    let err = RedisLimiter::builder(format!("redis://127.0.0.1:{port}/"))
        .rate(Rate::per_second(1))
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, RedisLimiterError::Connection { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("cannot reach Redis"));
}

#[tokio::test]
async fn unreachable_server_fails_fast_never_allows() {
    let mut server = RedisServer::start();
    let l = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(100))
        .timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    assert!(l.check("k", 1).await.unwrap().is_allowed());
    server.kill();
    for _ in 0..5 {
        let t = Instant::now();
        let r = l.check("k", 1).await;
        assert!(r.is_err(), "a dead server must never admit: {r:?}");
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "took {:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    let batch = l.check_many(&[("a", 1), ("b", 1)]).await;
    assert!(batch.iter().all(|r| r.is_err()));
    assert!(t.elapsed() < Duration::from_millis(600));
}

#[tokio::test]
async fn timeout_is_indeterminate_and_not_resent() {
    let (port, evals) = fake_server(Fake::Silent);
    let l = RedisLimiter::builder(format!("redis://127.0.0.1:{port}/"))
        .rate(Rate::per_second(1))
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let t = Instant::now();
    let err = l.check("k", 1).await.unwrap_err();
    assert!(matches!(err, RedisLimiterError::Timeout { .. }), "{err}");
    assert!(err.is_indeterminate());
    assert!(t.elapsed() < Duration::from_millis(500));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        evals.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sent once, never resent"
    );
}

#[tokio::test]
async fn server_dying_mid_call_is_reply_lost_and_not_resent() {
    let (port, evals) = fake_server(Fake::Hangup);
    let l = RedisLimiter::builder(format!("redis://127.0.0.1:{port}/"))
        .rate(Rate::per_second(1))
        .build()
        .await
        .unwrap();
    let err = l.check("k", 1).await.unwrap_err();
    assert!(matches!(err, RedisLimiterError::ReplyLost { .. }), "{err}");
    assert!(err.is_indeterminate());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(evals.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A real server runs the check, and the reply is lost on the way back (a proxy drops the
/// connection instead of passing it on): the call is indeterminate, the script ran once and
/// was sent once, and the key holds exactly the charges that reached it.
#[tokio::test]
async fn a_lost_reply_from_a_real_server_is_never_resent() {
    let server = RedisServer::start();
    let proxy = ReplyCutter::start(server.port);
    let l = RedisLimiter::builder(proxy.url())
        .rate(Rate::per_hour(10))
        .prefix("cut")
        .build()
        .await
        .unwrap();
    assert_eq!(l.check("k", 1).await.unwrap().remaining(), 9);
    proxy.cut_next(&l.redis_key(b"k"));
    let before = command_calls(server.port, "evalsha");
    let err = l.check("k", 1).await.unwrap_err();
    assert!(
        matches!(err, RedisLimiterError::ReplyLost { .. }) && err.is_indeterminate(),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(command_calls(server.port, "evalsha") - before, 1);
    assert_eq!(proxy.evals(), 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    let remaining = loop {
        match l.peek("k").await {
            Ok(d) => break d.remaining(),
            Err(e) => {
                assert!(Instant::now() < deadline, "never reconnected: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(remaining, 8);
}

#[tokio::test]
async fn garbage_replies_are_bad_reply_errors() {
    // The script replies with one bulk string of little-endian doubles.
    let packed = |nums: &[f64]| -> &'static [u8] {
        let body: Vec<u8> = nums.iter().flat_map(|n| n.to_le_bytes()).collect();
        let mut out = format!("${}\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
        Box::leak(out.into_boxed_slice())
    };
    for garbage in [
        &b"+OK\r\n"[..],
        b":1\r\n",
        b"*5\r\n:1\r\n:1\r\n:0\r\n:0\r\n:0\r\n",
        b"$3\r\nabc\r\n",
        packed(&[1.0, 2.0]),
        packed(&[1.0, 1.0, 0.0, 0.0]),
        packed(&[1.0, 1.0, 9.0, 0.0, 0.0]),
        packed(&[1.0, 1.0, 0.0, 5.0, 0.0]),
        packed(&[7.0, 1.0, 0.0, 0.0, 0.0]),
        packed(&[0.0, 1.0, -1.0, 0.0, 0.0]),
        packed(&[1.0, 1.0, 0.5, 0.0, 0.0]),
        packed(&[1.0, 1.0, 0.0, 0.0, f64::NAN]),
        packed(&[1.0, 1.0, 0.0, 0.0, 1e300]),
        // Seven numbers: durations as whole units (of one second here) and a rest.
        packed(&[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        packed(&[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
        packed(&[0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0]),
        packed(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -5.0]),
        packed(&[0.0, 1.0, 0.0, 4e15, 0.0, 0.0, 0.0]),
    ] {
        let (port, _) = fake_server(Fake::Reply(garbage));
        let l = RedisLimiter::builder(format!("redis://127.0.0.1:{port}/"))
            .rate(Rate::per_second(1))
            .build()
            .await
            .unwrap();
        let err = l.check("k", 1).await.unwrap_err();
        assert!(
            matches!(err, RedisLimiterError::BadReply { .. }),
            "{:?}: {err}",
            String::from_utf8_lossy(garbage)
        );
        let batch = l.check_many(&[("k", 1)]).await;
        assert!(matches!(batch[0], Err(RedisLimiterError::BadReply { .. })));
    }
}

#[tokio::test]
async fn foreign_values_are_typed_errors() {
    let server = RedisServer::start();
    for alg in support::ALL_ALGORITHMS {
        let l = limiter(&server, Rate::per_second(5), alg).await;
        let name = String::from_utf8(l.redis_key(b"list")).unwrap();
        server.raw(&["RPUSH", &name, "x"]);
        let err = l.check("list", 1).await.unwrap_err();
        assert!(
            matches!(err, RedisLimiterError::WrongType { .. }),
            "{alg:?}: {err}"
        );
        assert!(err.to_string().contains("wrong Redis type"));
        if alg != RedisAlgorithm::SlidingWindowLog {
            let name = String::from_utf8(l.redis_key(b"junk")).unwrap();
            server.raw(&["SET", &name, "hello:world"]);
            let err = l.check("junk", 1).await;
            assert!(
                matches!(err, Err(RedisLimiterError::CorruptState { .. })),
                "{alg:?}: {err:?}"
            );
        }
    }
}

#[test]
fn blocking_api_works_without_a_runtime() {
    let server = RedisServer::start();
    let l = traffik_redis::blocking::RedisLimiter::connect(
        RedisLimiter::builder(server.url()).rate(Rate::per_hour(2)),
    )
    .unwrap();
    assert!(l.check("b", 1).unwrap().is_allowed());
    assert!(l.check("b", 1).unwrap().is_allowed());
    assert!(l.check("b", 1).unwrap().is_denied());
    assert_eq!(l.check_many(&[("c", 2), ("c", 1)]).len(), 2);
    l.reset("b").unwrap();
    assert_eq!(l.peek("b").unwrap().remaining(), 2);
}

/// The sliding window log stores one entry per admitted unit; its limit is capped so that no
/// single check makes Redis add or remove more than `MAX_LOG_LIMIT` entries at once.
#[tokio::test]
async fn sliding_window_log_limit_is_capped() {
    let server = RedisServer::start();
    let build = |limit: u64| {
        RedisLimiter::builder(server.url())
            .rate(Rate::new(limit, Duration::from_secs(3_600)).unwrap())
            .algorithm(RedisAlgorithm::SlidingWindowLog)
            .prefix(format!("cap{limit}"))
            .build()
    };
    assert_eq!(traffik_redis::MAX_LOG_LIMIT, 10_000);
    match build(10_001).await {
        Err(RedisLimiterError::Config { reason, .. }) => {
            assert!(reason.contains("cap of 10000"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // At the cap, a whole window at once works and is exact.
    let l = build(10_000).await.unwrap();
    let t = 1_700_000_000 * 1_000 * MS;
    assert_eq!(l.check_at("k", 10_000, t).await.unwrap().remaining(), 0);
    assert!(l.check_at("k", 1, t + 1).await.unwrap().is_denied());
    let name = String::from_utf8(l.redis_key(b"k")).unwrap();
    assert_eq!(server.raw(&["ZCARD", &name]).trim(), ":10000");
}

/// Errors that wrap another keep it as their `source`: the server's error for a key of the
/// wrong type, the core's refusal of a configuration; the limiter's own findings have none.
#[tokio::test]
async fn errors_keep_what_they_wrap_as_source() {
    use std::error::Error as _;
    let server = RedisServer::start();
    let l = limiter(&server, Rate::per_second(5), RedisAlgorithm::Gcra).await;
    let name = String::from_utf8(l.redis_key(b"list")).unwrap();
    server.raw(&["RPUSH", &name, "x"]);
    let err = l.check("list", 1).await.unwrap_err();
    let source = err
        .source()
        .and_then(|s| s.downcast_ref::<Arc<redis::RedisError>>())
        .unwrap_or_else(|| panic!("no client error under {err:?}"));
    assert_eq!(source.code(), Some("WRONGTYPE"));

    let refused = RedisLimiter::builder(server.url())
        .rate(Rate::per_second(5))
        .algorithm(RedisAlgorithm::FixedWindow)
        .burst(3)
        .build()
        .await
        .unwrap_err();
    let core = refused
        .source()
        .and_then(|s| s.downcast_ref::<traffik_core::ConfigError>());
    assert_eq!(core, Some(&traffik_core::ConfigError::BurstNotSupported));

    let own = RedisLimiter::builder(server.url())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(own, RedisLimiterError::Config { .. }), "{own}");
    assert!(own.source().is_none());
}

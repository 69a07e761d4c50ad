//! Readings from before a key's stored window (a caller's clock that lags, or Redis `TIME`
//! stepped back) never loosen the window algorithms: the stored window is charged as it is,
//! however many windows behind the reading is, and it is never moved back.
#![allow(clippy::unwrap_used)]

mod support;

use support::RedisServer;
use traffik_core::{Algorithm, AlgorithmKind, AnyAlgorithm, Decision, Rate};
use traffik_redis::{RedisAlgorithm, RedisLimiter};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;
const DAY: u64 = 86_400 * SEC;
/// A whole-second Unix time: windows of one second start on it.
const BASE: u64 = 1_700_000_000 * SEC;

async fn limiter(server: &RedisServer, rate: Rate, alg: RedisAlgorithm) -> RedisLimiter {
    RedisLimiter::builder(server.url())
        .rate(rate)
        .algorithm(alg)
        .prefix(format!("stale{alg:?}"))
        .build()
        .await
        .unwrap()
}

/// The repro: 10 admitted at 5.5 s, then a check carrying 3.2 s (two windows behind), then 10
/// more at 5.6 s. The old scripts treated the reading two windows behind as a fresh window,
/// admitted it and stored window 3, so the checks at 5.6 s saw a stale window again and were
/// all admitted: 21 in one window of a 10/s limit. Now exactly 10 are admitted.
#[tokio::test]
async fn a_reading_two_windows_behind_never_reopens_a_full_window() {
    let server = RedisServer::start();
    // (algorithm, the stale check's retry and reset, the later checks' retry and reset)
    let cases = [
        // Fixed: the stored window 5 ends 2.8 s after 3.2 s and 0.4 s after 5.6 s.
        (
            RedisAlgorithm::FixedWindow,
            (2_800 * MS, 2_800 * MS),
            (400 * MS, 400 * MS),
        ),
        // Sliding: seen from the start of window 5 (1.8 s ahead of 3.2 s) with 10 in it, one
        // more fits 1.1 s later (at 6.1 s window 5 weighs ceil(10 x 0.9) = 9), and the key is
        // fresh at 7.0 s; from 5.6 s the same moments are 0.5 s and 1.4 s away.
        (
            RedisAlgorithm::SlidingWindowCounter,
            (2_900 * MS, 3_800 * MS),
            (500 * MS, 1_400 * MS),
        ),
    ];
    for (alg, (stale_retry, stale_reset), (late_retry, late_reset)) in cases {
        let l = limiter(&server, Rate::per_second(10), alg).await;
        let mut admitted = 0;
        for _ in 0..10 {
            let d = l.check_at("k", 1, BASE + 5_500 * MS).await.unwrap();
            admitted += u32::from(d.is_allowed());
        }
        let stale = l.check_at("k", 1, BASE + 3_200 * MS).await.unwrap();
        assert_eq!(
            stale,
            Decision::deny(10, 0, stale_retry, stale_reset),
            "{alg:?}"
        );
        for _ in 0..10 {
            let d = l.check_at("k", 1, BASE + 5_600 * MS).await.unwrap();
            assert_eq!(d, Decision::deny(10, 0, late_retry, late_reset), "{alg:?}");
            admitted += u32::from(d.is_allowed());
        }
        assert_eq!(admitted, 10, "{alg:?}");
        // Window 5 is still the stored one: at 6.05 s the fixed window is fresh, and the
        // sliding window still weighs window 5's 10 at ceil(10 x 0.95) = 10.
        let next = l.check_at("k", 1, BASE + 6_050 * MS).await.unwrap();
        match alg {
            RedisAlgorithm::FixedWindow => {
                assert_eq!(next, Decision::allow(10, 9, 950 * MS));
            }
            _ => assert_eq!(next, Decision::deny(10, 0, 50 * MS, 950 * MS)),
        }
    }
}

/// An admitted reading from behind is charged to the stored window, and the write keeps the
/// stored index: the old scripts stored the older window, so the next up-to-date check saw a
/// stale state and a fresh limit.
#[tokio::test]
async fn an_admission_from_behind_keeps_the_stored_window() {
    let server = RedisServer::start();
    for (alg, stale_reset) in [
        (RedisAlgorithm::FixedWindow, 2_800 * MS),
        // Window 5 start (1.8 s ahead) + to its end + one more period.
        (RedisAlgorithm::SlidingWindowCounter, 3_800 * MS),
    ] {
        let l = limiter(&server, Rate::per_second(10), alg).await;
        let first = l.check_at("k", 3, BASE + 5_500 * MS).await.unwrap();
        assert_eq!(first.remaining(), 7, "{alg:?}");
        let stale = l.check_at("k", 1, BASE + 3_200 * MS).await.unwrap();
        assert_eq!(stale, Decision::allow(10, 6, stale_reset), "{alg:?}");
        let late = l.check_at("k", 1, BASE + 5_600 * MS).await.unwrap();
        assert_eq!(
            late.remaining(),
            5,
            "{alg:?}: 3 + 1 + 1 charged to window 5"
        );
    }
}

/// Far behind: durations of 2^53 ns or more (here about 200 days) are exact too, and the same
/// as traffik-core's, for every reading from one window behind to 40 windows behind.
#[tokio::test]
async fn far_behind_durations_are_exact() {
    let server = RedisServer::start();
    // 2 per 5 days, windows aligned on whole days from the Unix epoch.
    let rate = Rate::from_nanos(2, 5 * DAY).unwrap();
    let period = rate.period_nanos();
    for (alg, kind) in [
        (RedisAlgorithm::FixedWindow, AlgorithmKind::FixedWindow),
        (
            RedisAlgorithm::SlidingWindowCounter,
            AlgorithmKind::SlidingWindowCounter,
        ),
    ] {
        let l = limiter(&server, rate, alg).await;
        let core = AnyAlgorithm::new(kind, rate, None).unwrap();
        // A key full in window w, 1.5 days into it.
        let w = BASE / period + 1;
        let full_at = w * period + DAY + DAY / 2;
        let t = core.decide(0, full_at, 2).unwrap();
        assert_eq!(l.check_at("k", 2, full_at).await.unwrap(), t.decision);
        let state = t.next.unwrap();
        for behind in [1, 2, 7, 21, 40] {
            // 0.25 days into a window `behind` windows before w.
            let at = (w - behind) * period + DAY / 4;
            let got = l.check_at("k", 1, at).await.unwrap();
            assert_eq!(got, core.decide(state, at, 1).unwrap().decision, "{alg:?}");
            assert!(got.is_denied());
            // The stored window ends behind + 1 windows after the reading's window starts;
            // the sliding window's next admission is 1.5 windows after that start.
            let to_end = (behind + 1) * period - DAY / 4;
            let want_retry = match alg {
                RedisAlgorithm::FixedWindow => to_end,
                _ => to_end + period / 2,
            };
            assert_eq!(got.retry_after_nanos(), want_retry, "{alg:?} {behind}");
            if behind == 40 {
                assert!(got.retry_after_nanos() > 1 << 53);
            }
        }
    }
}

//! A multi-rate limiter (`"2/s, 3/min"`, all or nothing) behind the HTTP layer like any other
//! `AsyncLimiter`, on a real axum server and hyper client.
#![cfg(all(feature = "tower", feature = "axum"))]
#![allow(clippy::unwrap_used, missing_docs)]
mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_support::{policy, routes, Http};
use traffik::http::RateLimitLayer;
use traffik::{ManualClock, MultiKeyed};

#[tokio::test]
async fn both_rates_bind_in_turn_through_the_layer() {
    let clock = Arc::new(ManualClock::new());
    let limiter: Arc<MultiKeyed<[u8], _, _>> = Arc::new(
        traffik::builder()
            .rates("2/s, 3/min")
            .capacity(64)
            .build_multi_with_clock(Arc::clone(&clock))
            .unwrap(),
    );
    let layer = RateLimitLayer::builder()
        .policy(policy("api", "2/s", Arc::clone(&limiter)))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;

    let statuses = |n| {
        let http = &http;
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(http.get("/", "alice").await.status);
            }
            out
        }
    };
    use StatusCode as S;
    // The per-second limit binds first; its denial charged nothing per minute.
    assert_eq!(statuses(3).await, [S::OK, S::OK, S::TOO_MANY_REQUESTS]);
    assert_eq!(limiter.tables()[1].peek(b"alice").remaining(), 1);
    clock.advance(Duration::from_secs(1));
    // Now the per-minute limit has one left.
    assert_eq!(statuses(2).await, [S::OK, S::TOO_MANY_REQUESTS]);
    let r = http.get("/", "alice").await;
    assert_eq!(r.status, S::TOO_MANY_REQUESTS);
    // 3/min: the next unit is 20 s after the first, which is 19 s from now.
    assert_eq!(r.header("retry-after"), Some("19"));
    assert_eq!(http.get("/", "bob").await.status, S::OK);
}

//! The builder-made sliding window log behind the rate-limit layer, in a real axum server on
//! loopback asked by a real hyper client: its exact counts reach the client as statuses and
//! headers.
#![cfg(all(feature = "tower", feature = "axum"))]
#![allow(clippy::unwrap_used, missing_docs)]
mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_support::{policy, routes, Http};
use traffik::http::RateLimitLayer;
use traffik::sliding_log::KeyedSlidingLog;
use traffik::ManualClock;

#[tokio::test]
async fn sliding_log_limits_requests_exactly() {
    let clock = Arc::new(ManualClock::new());
    let log: Arc<KeyedSlidingLog<Vec<u8>, _>> = Arc::new(
        traffik::builder()
            .rate("2/s")
            .capacity(16)
            .build_sliding_log_with_clock(Arc::clone(&clock))
            .unwrap(),
    );
    let layer = RateLimitLayer::builder()
        .policy(policy("log", "2/s", Arc::clone(&log)))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;

    let r = http.get("/", "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit"), Some("\"log\";r=1;t=1"));
    clock.advance(Duration::from_millis(600));
    let r = http.get("/", "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit"), Some("\"log\";r=0;t=1"));
    // The 0 ms entry leaves at 1 s: 400 ms away, rounded up to 1 s.
    let r = http.get("/", "alice").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(http.get("/", "bob").await.status, StatusCode::OK);
    clock.advance(Duration::from_millis(400));
    assert_eq!(http.get("/", "alice").await.status, StatusCode::OK);
    assert_eq!(
        http.get("/", "alice").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(log.len(), 2);
}

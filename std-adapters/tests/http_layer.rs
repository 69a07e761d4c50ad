//! The rate-limit layer in a real axum server on loopback, asked by a real hyper client.
//!
//! Limiters run on a `ManualClock` that never moves unless a test moves it, so every count,
//! header and wait is exact. GCRA with burst = limit: at rate `n/p` each request takes p/n of
//! the window, so a fresh key has `n` requests and frees one every p/n.
#![cfg(all(feature = "tower", feature = "axum"))]
#![allow(clippy::unwrap_used, missing_docs)]
mod http_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use http_support::{left, manual, policy, routes, Http};
use traffik::http::response::Denial;
use traffik::http::{Policy, RateLimitLayer, Rule};
use traffik::ManualClock;

#[tokio::test]
async fn exact_admissions_then_429_with_ietf_headers_and_problem_json() {
    let clock = Arc::new(ManualClock::new());
    let limiter = manual("4/s", &clock);
    let layer = RateLimitLayer::builder()
        .policy(policy("burst", "4/s", limiter.clone()))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;

    // Each admission takes 250 ms of the 1 s window: t is the time to a full reset, rounded up.
    for remaining in [3, 2, 1, 0] {
        let r = http.get("/", "alice").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "ok");
        assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=4;w=1"));
        assert_eq!(
            r.header("ratelimit"),
            Some(format!("\"burst\";r={remaining};t=1").as_str())
        );
        assert_eq!(r.header("retry-after"), None);
    }
    let r = http.get("/", "alice").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("ratelimit"), Some("\"burst\";r=0;t=1"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=4;w=1"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body = r.json();
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["status"], 429);
    assert_eq!(
        body["detail"],
        "the request costs 1 and policy \"burst\" has 0 of 4 left; retry in 1 s"
    );
    assert_eq!(body["violated-policies"], serde_json::json!(["burst"]));
    // Another key is untouched, and the denial charged nothing.
    assert_eq!(http.get("/", "bob").await.status, StatusCode::OK);
    assert_eq!(left(&limiter, b"alice"), 0);

    // 249 ms later nothing is free yet; at 250 ms exactly one request is.
    clock.advance(Duration::from_millis(249));
    assert_eq!(
        http.get("/", "alice").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::from_millis(1));
    let r = http.get("/", "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit"), Some("\"burst\";r=0;t=1"));
    assert_eq!(
        http.get("/", "alice").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn retry_after_is_whole_seconds_rounded_up() {
    let clock = Arc::new(ManualClock::new());
    // 2 per 3 s: one request frees every 1.5 s.
    let slow = manual("2/3s", &clock);
    // 10 per second: one request frees every 100 ms.
    let fast = manual("10/s", &clock);
    let layer = RateLimitLayer::builder()
        .policy(policy("slow", "2/3s", slow).rule(Rule::path("/")))
        .policy(policy("fast", "10/s", fast).rule(Rule::path("/other")))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;

    assert_eq!(http.get("/", "a").await.status, StatusCode::OK);
    assert_eq!(http.get("/", "a").await.status, StatusCode::OK);
    let r = http.get("/", "a").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("ratelimit"), Some("\"slow\";r=0;t=2"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"slow\";q=2;w=3"));

    for _ in 0..10 {
        assert_eq!(http.get("/other", "a").await.status, StatusCode::OK);
    }
    let r = http.get("/other", "a").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("ratelimit"), Some("\"fast\";r=0;t=1"));
}

#[tokio::test]
async fn two_policies_are_all_or_nothing() {
    let clock = Arc::new(ManualClock::new());
    let per_client = manual("4/s", &clock);
    let global = manual("2/s", &clock);
    let layer = RateLimitLayer::builder()
        .policy(policy("per-client", "4/s", per_client.clone()))
        .policy(
            Policy::new("global", "2/s", global.clone())
                .unwrap()
                .global(),
        )
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;

    let r = http.get("/", "a").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"per-client\";q=4;w=1, \"global\";q=2;w=1")
    );
    assert_eq!(
        r.header("ratelimit"),
        Some("\"per-client\";r=3;t=1, \"global\";r=1;t=1")
    );
    assert_eq!(http.get("/", "a").await.status, StatusCode::OK);

    // The global bucket is empty: b is denied by it, and b's own bucket is not charged.
    let r = http.get("/", "b").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["violated-policies"], serde_json::json!(["global"]));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.header("ratelimit"),
        Some("\"per-client\";r=4;t=0, \"global\";r=0;t=1")
    );
    assert_eq!(left(&per_client, b"b"), 4);
    assert_eq!(left(&per_client, b"a"), 2);

    // A second later both buckets have refilled: a's two earlier charges have drained.
    clock.advance(Duration::from_secs(1));
    assert_eq!(http.get("/", "a").await.status, StatusCode::OK);
    let r = http.get("/", "a").await;
    assert_eq!(
        r.header("ratelimit"),
        Some("\"per-client\";r=2;t=1, \"global\";r=0;t=1")
    );
    assert_eq!(left(&per_client, b"a"), 2);
    assert_eq!(left(&global, b""), 0);
}

#[tokio::test]
async fn a_denial_by_the_first_policy_charges_the_second_nothing() {
    let clock = Arc::new(ManualClock::new());
    let first = manual("1/s", &clock);
    let second = manual("10/s", &clock);
    let layer = RateLimitLayer::builder()
        .policy(policy("first", "1/s", first))
        .policy(policy("second", "10/s", second.clone()))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    assert_eq!(http.get("/", "a").await.status, StatusCode::OK);
    for _ in 0..5 {
        let r = http.get("/", "a").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.json()["violated-policies"], serde_json::json!(["first"]));
        // Only the policies looked at so far are listed.
        assert_eq!(r.header("ratelimit"), Some("\"first\";r=0;t=1"));
    }
    assert_eq!(left(&second, b"a"), 9);
}

#[tokio::test]
async fn cost_comes_from_the_request() {
    let clock = Arc::new(ManualClock::new());
    let limiter = manual("10/s", &clock);
    let layer = RateLimitLayer::builder()
        .policy(policy("bytes", "10/s", limiter.clone()).cost_fn(|parts| {
            parts
                .headers
                .get("x-units")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1)
        }))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    let send = |units: &'static str| {
        let http = http.clone();
        async move {
            http.send(
                Method::POST,
                "/upload",
                &[("x-client", "c"), ("x-units", units)],
            )
            .await
        }
    };
    let r = send("4").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit"), Some("\"bytes\";r=6;t=1"));
    // 7 > 6 left: denied, charging nothing; one unit frees in 100 ms.
    let r = send("7").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.json()["detail"],
        "the request costs 7 and policy \"bytes\" has 6 of 10 left; retry in 1 s"
    );
    assert_eq!(left(&limiter, b"c"), 6);
    let r = send("6").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit"), Some("\"bytes\";r=0;t=1"));
    // More than the limit can ever admit: 429 without a Retry-After (waiting cannot help).
    clock.advance(Duration::from_secs(5));
    let r = send("11").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), None);
    assert_eq!(
        r.json()["detail"],
        "the request costs 11 but policy \"bytes\" admits at most 10 at once; retrying cannot help"
    );
    assert_eq!(left(&limiter, b"c"), 10);
}

#[tokio::test]
async fn charge_by_outcome_counts_only_failed_logins() {
    let clock = Arc::new(ManualClock::new());
    let failures = manual("2/minute", &clock);
    let layer = RateLimitLayer::builder()
        .policy(
            policy("login-failures", "2/minute", failures.clone())
                .rule(Rule::path("/login"))
                .charge_if(|res| res.status == StatusCode::UNAUTHORIZED),
        )
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    let login = |password: &'static str| {
        let http = http.clone();
        async move {
            http.send(
                Method::POST,
                "/login",
                &[("x-client", "mallory"), ("x-password", password)],
            )
            .await
        }
    };
    for _ in 0..5 {
        let r = login("right").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("ratelimit"), Some("\"login-failures\";r=2;t=0"));
    }
    let r = login("wrong").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("ratelimit"), Some("\"login-failures\";r=1;t=30"));
    let r = login("wrong").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("ratelimit"), Some("\"login-failures\";r=0;t=60"));
    assert_eq!(left(&failures, b"mallory"), 0);
    // Out of attempts, even with the right password; one failure expires in 30 s.
    let r = login("right").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(
        r.json()["violated-policies"],
        serde_json::json!(["login-failures"])
    );
    clock.advance(Duration::from_secs(30));
    let r = login("right").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(left(&failures, b"mallory"), 1);
}

#[tokio::test]
async fn handlers_read_the_quota_and_headers_are_configurable() {
    let clock = Arc::new(ManualClock::new());
    let layer = RateLimitLayer::builder()
        .policy(policy("burst", "4/s", manual("4/s", &clock)))
        .policy(policy("daily", "1000/day", manual("1000/day", &clock)))
        .headers_on_allowed(false)
        .legacy_headers(true)
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    let r = http.get("/quota", "c").await;
    assert_eq!(r.body, "burst:3/4:250ms,daily:999/1000:86400ms");
    assert_eq!(r.header("ratelimit"), None);
    assert_eq!(r.header("x-ratelimit-remaining"), None);
    for _ in 0..3 {
        assert_eq!(http.get("/quota", "c").await.status, StatusCode::OK);
    }
    let r = http.get("/quota", "c").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("x-ratelimit-limit"), Some("4"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("1"));
    // The burst policy refused at its look, so the daily one was never asked: only what the
    // layer knows is reported.
    assert_eq!(r.header("ratelimit"), Some("\"burst\";r=0;t=1"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=4;w=1"));
}

#[tokio::test]
async fn a_custom_denial_keeps_the_standard_headers() {
    let clock = Arc::new(ManualClock::new());
    let layer = RateLimitLayer::builder()
        .policy(policy("wide", "5/minute", manual("5/minute", &clock)))
        .policy(policy("burst", "1/minute", manual("1/minute", &clock)))
        .on_denied(|d: &Denial<'_>| {
            let others: Vec<_> = d
                .decisions
                .iter()
                .map(|(name, dec)| format!("{name}={}", dec.remaining()))
                .collect();
            let mut res = http::Response::new(Full::new(Bytes::from(format!(
                "slow down, {} (policy {}, {} left; {})",
                d.parts.headers["x-client"].to_str().unwrap(),
                d.policy,
                d.decision.remaining(),
                others.join(" ")
            ))));
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            res
        })
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    assert_eq!(http.get("/", "zoe").await.status, StatusCode::OK);
    let r = http.get("/", "zoe").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.body,
        "slow down, zoe (policy burst, 0 left; wide=4 burst=0)"
    );
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(
        r.header("ratelimit"),
        Some("\"wide\";r=4;t=12, \"burst\";r=0;t=60")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_on_one_key_are_admitted_exactly_the_limit() {
    let clock = Arc::new(ManualClock::new());
    let limiter = manual("10/minute", &clock);
    let layer = RateLimitLayer::builder()
        .policy(policy("shared", "10/minute", limiter.clone()))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    let ok = Arc::new(AtomicUsize::new(0));
    let denied = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let http = http.clone();
            let (ok, denied) = (ok.clone(), denied.clone());
            tokio::spawn(async move {
                let r = http.get("/", "everyone").await;
                match r.status {
                    StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    StatusCode::TOO_MANY_REQUESTS => denied.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected {other}"),
                };
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 10);
    assert_eq!(denied.load(Ordering::Relaxed), 22);
    assert_eq!(left(&limiter, b"everyone"), 0);
}

#[tokio::test]
async fn stacked_layers_add_to_each_others_headers_and_quota() {
    let clock = Arc::new(ManualClock::new());
    let inner = RateLimitLayer::builder()
        .policy(policy("inner", "4/s", manual("4/s", &clock)))
        .build()
        .unwrap();
    let outer = RateLimitLayer::builder()
        .policy(policy("outer", "2/s", manual("2/s", &clock)))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(inner).layer(outer)).await;
    let r = http.get("/quota", "c").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "outer:1/2:500ms,inner:3/4:250ms");
    let lines: Vec<_> = r.headers.get_all("ratelimit").iter().collect();
    assert_eq!(lines, ["\"inner\";r=3;t=1", "\"outer\";r=1;t=1"]);
    let lines: Vec<_> = r.headers.get_all("ratelimit-policy").iter().collect();
    assert_eq!(lines, ["\"inner\";q=4;w=1", "\"outer\";q=2;w=1"]);
}

/// Keys from `X-Forwarded-For` through the layer: from a trusted proxy the right-most address
/// that is not a proxy is the client; from an untrusted peer the header is ignored entirely.
#[tokio::test]
async fn forwarded_client_ips_are_keys_only_through_trusted_proxies() {
    use traffik::http::{ClientIp, ClientIpResolver, ForwardedHeader, TrustedProxies};

    let statuses = |http: Http, xffs: &'static [&'static str]| async move {
        let mut out = Vec::new();
        for xff in xffs {
            let r = http
                .send(Method::GET, "/", &[("x-forwarded-for", xff)])
                .await;
            out.push(r.status.as_u16());
        }
        out
    };

    // The test client connects from 127.0.0.1: here a trusted proxy (as is 10.0.0.0/8).
    let clock = Arc::new(ManualClock::new());
    let trusted = ClientIpResolver::new(
        "127.0.0.1/32, 10.0.0.0/8"
            .parse::<TrustedProxies>()
            .unwrap(),
        ForwardedHeader::XForwardedFor,
    );
    let layer = RateLimitLayer::builder()
        .policy(
            Policy::new("per-client", "2/minute", manual("2/minute", &clock))
                .unwrap()
                .key(ClientIp::new(trusted)),
        )
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    assert_eq!(
        statuses(
            http,
            &[
                "203.0.113.5",
                // The client prepends a spoofed address: the proxy's append still wins.
                "6.6.6.6, 203.0.113.5",
                // Through a second, internal proxy: still the same client.
                "203.0.113.5, 10.1.2.3",
                // Another client.
                "198.51.100.7",
                // Garbage to the left of a real client changes nothing.
                "not-an-ip, 198.51.100.7",
                // Only proxies: the left-most is all that is known.
                "10.9.9.9, 10.1.1.1",
            ]
        )
        .await,
        [200, 200, 429, 200, 200, 200]
    );

    // Nobody trusted: every request is the peer's (127.0.0.1), whatever it claims.
    let clock = Arc::new(ManualClock::new());
    let untrusting = ClientIpResolver::new(TrustedProxies::none(), ForwardedHeader::XForwardedFor);
    let layer = RateLimitLayer::builder()
        .policy(
            Policy::new("per-client", "2/minute", manual("2/minute", &clock))
                .unwrap()
                .key(ClientIp::new(untrusting)),
        )
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    assert_eq!(
        statuses(http, &["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]).await,
        [200, 200, 429, 429]
    );
}

//! The rate-limit layer's configuration in a real axum server on loopback, asked by a real
//! hyper client: rules, bypass, missing and exempt keys, backend failures, and limiters and key
//! extractors that must be awaited.
#![cfg(all(feature = "tower", feature = "axum"))]
#![allow(clippy::unwrap_used, missing_docs)]

mod http_support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, StatusCode};
use http_support::{by_client, left, manual, policy, routes, Failing, Http, Manual};
use traffik::http::response::{problem, BackendFailure};
use traffik::http::{
    BackendErrorOutcome, Extracted, Extraction, KeyExtractor, MissingKeyOutcome, Policy,
    RateLimitLayer, Rule,
};
use traffik::{AsyncLimiter, Decision, KeyedLimiter, ManualClock};

/// One request is allowed per matching key; the second matching request is denied, and a
/// request the rule does not match passes with no rate-limit headers.
async fn check_rule(
    rule: Rule,
    matching: (Method, &str),
    matching_too: (Method, &str),
    not: &[(Method, &str)],
) {
    let clock = Arc::new(ManualClock::new());
    let layer = RateLimitLayer::builder()
        .policy(policy("p", "1/minute", manual("1/minute", &clock)).rule(rule))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    let c = [("x-client", "c")];
    let r = http.send(matching.0, matching.1, &c).await;
    assert_eq!(r.status, StatusCode::OK, "{}", matching.1);
    assert_eq!(r.header("ratelimit"), Some("\"p\";r=0;t=60"));
    for (m, path) in not {
        let r = http.send(m.clone(), path, &c).await;
        assert_eq!(r.status, StatusCode::OK, "{m} {path}");
        assert_eq!(r.header("ratelimit"), None, "{m} {path}");
    }
    let r = http.send(matching_too.0, matching_too.1, &c).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        matching_too.1
    );
    assert_eq!(r.header("retry-after"), Some("60"));
}

#[tokio::test]
async fn rules_select_the_requests_a_policy_covers() {
    check_rule(
        Rule::path("/other"),
        (Method::GET, "/other"),
        (Method::GET, "/other?x=1"),
        &[(Method::GET, "/")],
    )
    .await;
    check_rule(
        Rule::prefix("/items"),
        (Method::GET, "/items/1"),
        (Method::POST, "/items/2"),
        &[(Method::GET, "/other")],
    )
    .await;
    check_rule(
        Rule::glob("/users/*/posts").unwrap(),
        (Method::GET, "/users/1/posts"),
        (Method::GET, "/users/2/posts"),
        &[(Method::GET, "/users/1/x/posts"), (Method::GET, "/")],
    )
    .await;
    check_rule(
        Rule::regex(r"^/v\d+/").unwrap(),
        (Method::GET, "/v2/things"),
        (Method::GET, "/v2/things"),
        &[(Method::GET, "/items/1")],
    )
    .await;
    check_rule(
        Rule::route("/items/{id}"),
        (Method::GET, "/items/1"),
        (Method::GET, "/items/99"),
        &[(Method::GET, "/users/1/posts"), (Method::GET, "/other")],
    )
    .await;
    check_rule(
        Rule::method(Method::POST),
        (Method::POST, "/items/1"),
        (Method::POST, "/items/2"),
        &[(Method::GET, "/items/1")],
    )
    .await;
    check_rule(
        Rule::all([
            Rule::route("/items/{id}"),
            Rule::not(Rule::method(Method::GET)),
        ]),
        (Method::POST, "/items/1"),
        (Method::POST, "/items/3"),
        &[(Method::GET, "/items/1"), (Method::GET, "/")],
    )
    .await;
}

#[tokio::test]
async fn bypassed_requests_skip_the_layer() {
    let clock = Arc::new(ManualClock::new());
    let limiter = manual("1/minute", &clock);
    let layer = RateLimitLayer::builder()
        .policy(policy("p", "1/minute", limiter.clone()))
        .bypass(Rule::path("/health"))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    for _ in 0..5 {
        let r = http.get("/health", "c").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("ratelimit"), None);
    }
    assert_eq!(left(&limiter, b"c"), 1);
    assert_eq!(http.get("/", "c").await.status, StatusCode::OK);
    assert_eq!(
        http.get("/", "c").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(http.get("/health", "c").await.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_keys_are_rejected_shared_or_skipped() {
    let clock = Arc::new(ManualClock::new());
    let app = |outcome| {
        let layer = RateLimitLayer::builder()
            .policy(policy("p", "1/minute", manual("1/minute", &clock)).on_missing_key(outcome))
            .build()
            .unwrap();
        routes().layer(layer)
    };
    let no_key: &[(&str, &str)] = &[];

    let http = Http::new(app(MissingKeyOutcome::Reject(StatusCode::UNAUTHORIZED))).await;
    let r = http.send(Method::GET, "/", no_key).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["detail"], "no rate-limit key: no x-client header");
    assert_eq!(r.json()["status"], 401);

    let http = Http::new(app(MissingKeyOutcome::default())).await;
    let r = http.send(Method::GET, "/", no_key).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["title"], "Bad Request");

    // Every keyless request shares one bucket; keyed requests keep their own.
    let http = Http::new(app(MissingKeyOutcome::Shared)).await;
    assert_eq!(
        http.send(Method::GET, "/", no_key).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.send(Method::GET, "/", no_key).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(http.get("/", "k").await.status, StatusCode::OK);

    let http = Http::new(app(MissingKeyOutcome::Skip)).await;
    for _ in 0..3 {
        let r = http.send(Method::GET, "/", no_key).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("ratelimit"), None);
    }
}

#[tokio::test]
async fn backend_errors_follow_the_configured_outcome() {
    let app = |outcome| {
        let layer = RateLimitLayer::builder()
            .policy(policy("remote", "10/s", Failing))
            .on_backend_error(outcome)
            .build()
            .unwrap();
        routes().layer(layer)
    };

    let http = Http::new(app(BackendErrorOutcome::default())).await;
    let r = http.get("/", "c").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        r.json()["detail"],
        "the rate limiter of policy \"remote\" is unavailable; retry later"
    );

    let http = Http::new(app(BackendErrorOutcome::Unavailable {
        retry_after: Duration::from_millis(4500),
    }))
    .await;
    assert_eq!(http.get("/", "c").await.header("retry-after"), Some("5"));

    let http = Http::new(app(BackendErrorOutcome::Allow)).await;
    let r = http.get("/quota", "c").await;
    assert_eq!(r.status, StatusCode::OK);
    // The failed policy is skipped: no headers, no quota entry.
    assert_eq!(r.body, "");
    assert_eq!(r.header("ratelimit"), None);

    let http = Http::new(app(BackendErrorOutcome::respond(
        |f: &BackendFailure<'_>| {
            problem(
                StatusCode::BAD_GATEWAY,
                "about:blank",
                &format!(
                    "{} ({:?}) for {}",
                    f.error,
                    f.error.kind(),
                    f.parts.uri.path()
                ),
                &[f.policy],
            )
        },
    )))
    .await;
    let r = http.get("/other", "c").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json()["detail"],
        "store unreachable (NotCharged) for /other"
    );
    assert_eq!(r.json()["violated-policies"], serde_json::json!(["remote"]));
}

/// An exact limiter that only answers through futures that wait once, so the layer takes its
/// asynchronous path.
struct Awaited(Manual);

#[allow(clippy::manual_async_fn)]
impl AsyncLimiter<[u8]> for Awaited {
    type Error = traffik::CheckError;
    fn check(
        &self,
        key: &[u8],
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        async move {
            tokio::task::yield_now().await;
            KeyedLimiter::check(&self.0, key, cost)
        }
    }
    fn peek(&self, key: &[u8]) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        async move {
            tokio::task::yield_now().await;
            Ok(KeyedLimiter::peek(&self.0, key))
        }
    }
    fn reset(&self, key: &[u8]) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async move {
            KeyedLimiter::reset(&self.0, key);
            Ok(())
        }
    }
}

/// A key extractor that answers later.
struct LaterKey;

impl KeyExtractor for LaterKey {
    fn extract(&self, parts: &Parts) -> Extraction {
        let found = by_client(parts);
        Extraction::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            found
        }))
    }
}

#[tokio::test]
async fn awaited_limiters_and_keys_decide_exactly_as_the_fast_path() {
    let clock = Arc::new(ManualClock::new());
    let a = manual("2/s", &clock);
    let b = manual("3/s", &clock);
    let failures = manual("1/minute", &clock);
    let layer = RateLimitLayer::builder()
        .policy(
            Policy::new("a", "2/s", Awaited(a.clone()))
                .unwrap()
                .key(LaterKey),
        )
        .policy(policy("b", "3/s", Awaited(b.clone())))
        .policy(
            policy("fails", "1/minute", Awaited(failures.clone()))
                .rule(Rule::path("/login"))
                .charge_if(|res| res.status == StatusCode::UNAUTHORIZED),
        )
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    let r = http.get("/", "c").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit"), Some("\"a\";r=1;t=1, \"b\";r=2;t=1"));
    assert_eq!(http.get("/", "c").await.status, StatusCode::OK);
    let r = http.get("/", "c").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["violated-policies"], serde_json::json!(["a"]));
    assert_eq!(left(&b, b"c"), 1);

    let r = http
        .send(Method::POST, "/login", &[("x-client", "m")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("ratelimit"),
        Some("\"a\";r=1;t=1, \"b\";r=2;t=1, \"fails\";r=0;t=60")
    );
    assert_eq!(left(&failures, b"m"), 0);
    let r = http
        .send(
            Method::POST,
            "/login",
            &[("x-client", "m"), ("x-password", "right")],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["violated-policies"], serde_json::json!(["fails"]));
    // The denial charged neither a nor b for m.
    assert_eq!(left(&a, b"m"), 1);
    assert_eq!(left(&b, b"m"), 2);
}

#[tokio::test]
async fn exempt_requests_skip_only_that_policy() {
    let clock = Arc::new(ManualClock::new());
    let staff = manual("1/minute", &clock);
    let everyone = manual("3/minute", &clock);
    let layer = RateLimitLayer::builder()
        .policy(
            Policy::new("staff-exempt", "1/minute", staff.clone())
                .unwrap()
                .key(|parts: &Parts| {
                    if parts.headers.contains_key("x-staff") {
                        Extracted::Exempt
                    } else {
                        by_client(parts)
                    }
                }),
        )
        .policy(policy("everyone", "3/minute", everyone.clone()))
        .build()
        .unwrap();
    let http = Http::new(routes().layer(layer)).await;
    let staff_req = [("x-client", "s"), ("x-staff", "1")];
    for remaining in [2, 1, 0] {
        let r = http.send(Method::GET, "/", &staff_req).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header("ratelimit"),
            Some(format!("\"everyone\";r={remaining};t={}", 20 * (3 - remaining)).as_str())
        );
    }
    let r = http.send(Method::GET, "/", &staff_req).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.json()["violated-policies"],
        serde_json::json!(["everyone"])
    );
    assert_eq!(left(&staff, b"s"), 1);
}

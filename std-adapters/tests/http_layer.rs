//! The rate-limit layer in a real axum server on loopback, asked by a real hyper client.
//!
//! Limiters run on a `ManualClock` that never moves unless a test moves it, so every count,
//! header and wait is exact. GCRA with burst = limit: at rate `n/p` each request takes p/n of
//! the window, so a fresh key has `n` requests and frees one every p/n.
#![cfg(all(feature = "tower", feature = "axum"))]
#![allow(clippy::unwrap_used, missing_docs)]

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Extension;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use traffik::http::response::{problem, BackendFailure, Denial};
use traffik::http::{
    BackendErrorOutcome, Extracted, Extraction, HttpKey, KeyExtractor, MissingKey,
    MissingKeyOutcome, Policy, RateLimitInfo, RateLimitLayer, Rule,
};
use traffik::{
    AnyAlgorithm, AsyncLimiter, Decision, ErrorKind, KeyedLimiter, LimiterError, ManualClock,
};

type Manual = Arc<KeyedLimiter<[u8], AnyAlgorithm, Arc<ManualClock>>>;

fn manual(rate: &str, clock: &Arc<ManualClock>) -> Manual {
    Arc::new(
        traffik::builder()
            .rate(rate)
            .capacity(1024)
            .build_with_clock::<[u8], _>(Arc::clone(clock))
            .unwrap(),
    )
}

/// What `key` has left now (the table's own peek, not the async contract's).
fn left(limiter: &Manual, key: &[u8]) -> u64 {
    KeyedLimiter::peek(limiter, key).remaining()
}

/// The key is the `x-client` header.
fn by_client(parts: &Parts) -> Extracted {
    match parts.headers.get("x-client") {
        Some(v) => Extracted::Key(HttpKey::from_bytes(v.as_bytes())),
        None => Extracted::Missing(MissingKey::new("no x-client header")),
    }
}

fn policy<L: AsyncLimiter<[u8]>>(name: &str, rate: &str, limiter: L) -> Policy<L> {
    Policy::new(name, rate, limiter).unwrap().key(by_client)
}

fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/other", get(|| async { "ok" }))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/items/{id}",
            get(|| async { "item" }).post(|| async { "posted" }),
        )
        .route("/users/{id}/posts", get(|| async { "posts" }))
        .route("/users/{id}/x/posts", get(|| async { "posts" }))
        .route("/v2/things", get(|| async { "v2" }))
        .route("/upload", post(|| async { "stored" }))
        .route(
            "/login",
            post(|headers: HeaderMap| async move {
                if headers.get("x-password").is_some_and(|p| p == "right") {
                    (StatusCode::OK, "welcome")
                } else {
                    (StatusCode::UNAUTHORIZED, "no")
                }
            }),
        )
        .route(
            "/quota",
            get(|Extension(info): Extension<RateLimitInfo>| async move {
                info.policies()
                    .iter()
                    .map(|q| {
                        format!(
                            "{}:{}/{}:{}ms",
                            q.name,
                            q.remaining,
                            q.limit,
                            q.reset.as_millis()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        )
}

/// Serves `app` on 127.0.0.1 with a port of the OS's choosing.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    async fn new(app: Router) -> Self {
        let addr = serve(app).await;
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, path: &str, client: &str) -> Reply {
        self.send(Method::GET, path, &[("x-client", client)]).await
    }
}

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

#[derive(Debug)]
struct Down;

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("store unreachable")
    }
}

impl std::error::Error for Down {}

impl LimiterError for Down {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NotCharged
    }
}

/// A limiter whose store is down (and which only answers through futures).
struct Failing;

// Not `async fn`: the contract's futures are `Send` by signature.
#[allow(clippy::manual_async_fn)]
impl AsyncLimiter<[u8]> for Failing {
    type Error = Down;
    fn check(&self, _: &[u8], _: u64) -> impl Future<Output = Result<Decision, Down>> + Send {
        async {
            tokio::task::yield_now().await;
            Err(Down)
        }
    }
    fn peek(&self, _: &[u8]) -> impl Future<Output = Result<Decision, Down>> + Send {
        async { Err(Down) }
    }
    fn reset(&self, _: &[u8]) -> impl Future<Output = Result<(), Down>> + Send {
        async { Err(Down) }
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

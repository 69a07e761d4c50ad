//! What the HTTP layer tests share: ManualClock limiters, a key from the `x-client` header,
//! a router with every route the tests use, a real axum server on loopback and a real hyper
//! client.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

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
use traffik::http::{Extracted, HttpKey, MissingKey, Policy, RateLimitInfo};
use traffik::{
    AnyAlgorithm, AsyncLimiter, Decision, ErrorKind, KeyedLimiter, LimiterError, ManualClock,
};

pub type Manual = Arc<KeyedLimiter<[u8], AnyAlgorithm, Arc<ManualClock>>>;

pub fn manual(rate: &str, clock: &Arc<ManualClock>) -> Manual {
    Arc::new(
        traffik::builder()
            .rate(rate)
            .capacity(1024)
            .build_with_clock::<[u8], _>(Arc::clone(clock))
            .unwrap(),
    )
}

/// What `key` has left now (the table's own peek, not the async contract's).
pub fn left(limiter: &Manual, key: &[u8]) -> u64 {
    KeyedLimiter::peek(limiter, key).remaining()
}

/// The key is the `x-client` header.
pub fn by_client(parts: &Parts) -> Extracted {
    match parts.headers.get("x-client") {
        Some(v) => Extracted::Key(HttpKey::from_bytes(v.as_bytes())),
        None => Extracted::Missing(MissingKey::new("no x-client header")),
    }
}

pub fn policy<L: AsyncLimiter<[u8]>>(name: &str, rate: &str, limiter: L) -> Policy<L> {
    Policy::new(name, rate, limiter).unwrap().key(by_client)
}

pub fn routes() -> Router {
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
pub async fn serve(app: Router) -> SocketAddr {
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

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    pub async fn new(app: Router) -> Self {
        let addr = serve(app).await;
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
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

    pub async fn get(&self, path: &str, client: &str) -> Reply {
        self.send(Method::GET, path, &[("x-client", client)]).await
    }
}

#[derive(Debug)]
pub struct Down;

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
pub struct Failing;

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

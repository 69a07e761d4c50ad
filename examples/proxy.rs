//! A small reverse proxy on plain hyper (no axum): each client address gets its own limit,
//! checked before the request is forwarded, so a flood never reaches the upstream.
//!
//! ```sh
//! cargo run --example proxy --features tower                # demo against a built-in upstream
//! SERVE=127.0.0.1:8080 UPSTREAM=127.0.0.1:3000 cargo run --example proxy --features tower
//! # one limit per client shared by several proxies, through Redis (never the usual port 6379):
//! REDIS_URL=redis://127.0.0.1:6380/ cargo run --example proxy --features tower,redis
//! ```
//!
//! Without `SERVE`, the example starts a tiny upstream and the proxy on free loopback ports,
//! sends a burst of requests through the proxy with a real client, prints what came back and
//! how many requests the upstream saw, and exits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use traffik::http::{PeerIp, Policy, RateLimitLayer};
use traffik::route::Either as Store;
use traffik::{Rate, RateLimiter};

type Error = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Forwards one request to `upstream`, adding the client to `X-Forwarded-For`; a failed
/// upstream is a 502, not an error that would drop the client's connection.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Authority,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let peer = req.extensions().get::<SocketAddr>().copied();
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(upstream.clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return Ok(plain(StatusCode::BAD_REQUEST, "cannot forward this URI"));
    };
    *req.uri_mut() = uri;
    if let Ok(host) = HeaderValue::from_str(upstream.as_str()) {
        req.headers_mut().insert(HOST, host);
    }
    if let Some(peer) = peer {
        // Appended, not replaced: the upstream trusts this proxy and walks the list from the
        // right (traffik's `ClientIp` with this proxy in its `TrustedProxies`).
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            req.headers_mut().append("x-forwarded-for", v);
        }
    }
    match client.request(req).await {
        Ok(resp) => Ok(resp.map(Either::Left)),
        Err(e) => Ok(plain(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"))),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(text.to_owned()))));
    *resp.status_mut() = status;
    resp
}

/// Where the per-client counts live: this process, or Redis when `REDIS_URL` is set (with the
/// `redis` feature), so that several proxies share one limit per client.
#[cfg(feature = "redis")]
type Limiter = Store<RateLimiter<[u8]>, traffik::redis::RedisLimiter>;
#[cfg(not(feature = "redis"))]
type Limiter = Store<RateLimiter<[u8]>, RateLimiter<[u8]>>;

async fn limiter(rate: Rate) -> Result<Limiter, Error> {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let redis = traffik::redis::RedisLimiter::builder(url.as_str())
            .rate(rate)
            .prefix("traffik-proxy-example")
            .timeout(std::time::Duration::from_millis(250))
            .build()
            .await?;
        return Ok(Store::Right(redis));
    }
    Ok(Store::Left(traffik::builder().rate(rate).build()?))
}

/// Serves the proxy on `listener`: the rate-limit layer in front of `forward`.
async fn proxy(listener: TcpListener, upstream: Authority) -> Result<(), Error> {
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    // 5 requests a second per client address (GCRA: a burst of 5, then one every 200 ms).
    let rate: Rate = "5/s".parse()?;
    let layer = RateLimitLayer::builder()
        .policy(Policy::new("per-client", rate, limiter(rate).await?)?.key(PeerIp::new()))
        .build()?;
    let service = layer.layer(tower::service_fn(move |req| {
        forward(client.clone(), upstream.clone(), req)
    }));
    loop {
        let (stream, peer) = listener.accept().await?;
        // Plain hyper has no `ConnectInfo`: the peer goes into each request's extensions,
        // where `PeerIp` looks for a `SocketAddr`.
        let service = service
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer);
                req
            });
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = conn.await {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}

/// A stand-in upstream that counts what reaches it.
async fn upstream(listener: TcpListener, seen: Arc<AtomicU64>) -> Result<(), Error> {
    loop {
        let (stream, _) = listener.accept().await?;
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
                let xff = req
                    .headers()
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                async move {
                    let body = format!("upstream request #{n} for {xff}");
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let serve_on = std::env::var("SERVE").ok();
    let seen = Arc::new(AtomicU64::new(0));
    let upstream_addr: Authority = match std::env::var("UPSTREAM") {
        Ok(addr) => addr.parse()?,
        Err(_) => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(upstream(listener, Arc::clone(&seen)));
            addr.to_string().parse()?
        }
    };
    let listener = TcpListener::bind(serve_on.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let addr = listener.local_addr()?;
    let store = if std::env::var_os("REDIS_URL").is_some() && cfg!(feature = "redis") {
        "Redis"
    } else {
        "in-process"
    };
    println!("proxy on http://{addr} -> http://{upstream_addr} ({store} limits)");
    let server = tokio::spawn(proxy(listener, upstream_addr));
    if serve_on.is_some() {
        return server.await?;
    }

    // A burst of 8 from one client: 5 forwarded, 3 refused at the proxy.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for i in 1..=8 {
        let resp = client
            .request(Request::get(format!("http://{addr}/hello")).body(Full::default())?)
            .await?;
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!(" (Retry-After: {v})"))
            .unwrap_or_default();
        let body = resp.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body);
        let first_line = body.lines().next().unwrap_or("");
        println!("request {i}: {status}{retry}  {first_line}");
    }
    println!("the upstream saw {} requests", seen.load(Ordering::Relaxed));
    server.abort();
    Ok(())
}

//! An axum API under traffik's HTTP layer: a per-client-IP limit on everything, a per-API-key
//! limit on `/api`, a login route charged only when the login fails, and a WebSocket chat echo
//! with a per-message limit.
//!
//! ```sh
//! cargo run --example axum_server --features axum          # demo against itself, then exit
//! SERVE=127.0.0.1:3000 cargo run --example axum_server --features axum   # keep serving
//! # the same limits shared through Redis (a server of your own; never the usual port 6379):
//! redis-server --port 6380 --save '' &
//! REDIS_URL=redis://127.0.0.1:6380/ cargo run --example axum_server --features axum,redis
//! ```
//!
//! Without `SERVE`, the example serves on a free loopback port and drives itself with a real
//! HTTP client and a real WebSocket client, printing each answer: the 429s with their
//! `Retry-After`, `RateLimit` headers and problem+json body, the login attempts, and the chat's
//! rate-limit notice.
//!
//! Behind a reverse proxy, set `TRUSTED_PROXIES` (for example `10.0.0.0/8,127.0.0.1`): the
//! client address is then read from `X-Forwarded-For`, right to left, stopping at the first
//! address that is not one of those proxies; a request from anyone else has that header
//! ignored.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::Message as ClientMessage;
use traffik::http::ws::{MessageThrottle, Throttled};
use traffik::http::{
    ClientIp, ClientIpResolver, ForwardedHeader, Header, MissingKeyOutcome, Policy, RateLimitInfo,
    RateLimitLayer, Rule, TrustedProxies,
};
use traffik::route::Either;
use traffik::{Rate, RateLimiter};

/// Where a policy's counts live: this process, or Redis when `REDIS_URL` is set.
#[cfg(feature = "redis")]
type Store = Either<RateLimiter<[u8]>, traffik::redis::RedisLimiter>;
#[cfg(not(feature = "redis"))]
type Store = Either<RateLimiter<[u8]>, RateLimiter<[u8]>>;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The store for one policy: in-process by default, Redis when `REDIS_URL` is set (with the
/// `redis` feature), one key prefix per policy.
async fn store(name: &str, rate: Rate) -> Result<Store, Error> {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let redis = traffik::redis::RedisLimiter::builder(url.as_str())
            .rate(rate)
            .prefix(format!("traffik-axum-example:{name}"))
            .timeout(Duration::from_millis(250))
            .build()
            .await?;
        return Ok(Either::Right(redis));
    }
    let _ = name;
    Ok(Either::Left(traffik::builder().rate(rate).build()?))
}

/// The client address: the peer, or the forwarded address when the peer is a trusted proxy.
fn client_ip() -> Result<ClientIp, Error> {
    let trusted = match std::env::var("TRUSTED_PROXIES") {
        Ok(list) => TrustedProxies::parse(list.split(',').map(str::trim))?,
        Err(_) => TrustedProxies::none(),
    };
    // IPv6 clients are grouped by /64 (the default), so one client cannot rotate addresses.
    Ok(ClientIp::new(ClientIpResolver::new(
        trusted,
        ForwardedHeader::XForwardedFor,
    )))
}

async fn app() -> Result<Router, Error> {
    let per_ip: Rate = "30/minute".parse()?;
    let per_key: Rate = "5 per 10 seconds".parse()?;
    let failed_logins: Rate = "3 per 15 minutes".parse()?;
    let chat: Rate = "3/s".parse()?;

    let layer = RateLimitLayer::builder()
        // Every route, per client address.
        .policy(Policy::new("per-ip", per_ip, store("per-ip", per_ip).await?)?.key(client_ip()?))
        // The API, per API key; a request without one is refused with 401 before any handler.
        .policy(
            Policy::new("per-key", per_key, store("per-key", per_key).await?)?
                .key(Header::try_new("x-api-key")?)
                .rule(Rule::prefix("/api"))
                .on_missing_key(MissingKeyOutcome::Reject(StatusCode::UNAUTHORIZED)),
        )
        // Logins: only failed attempts count (checked before the handler, charged after it
        // answers 401), so a user who types the password right is never locked out by this.
        .policy(
            Policy::new("login", failed_logins, store("login", failed_logins).await?)?
                .key(client_ip()?)
                .rule(Rule::path("/login"))
                .charge_if(|resp| resp.status == StatusCode::UNAUTHORIZED),
        )
        .bypass(Rule::path("/health"))
        .build()?;

    let throttle = MessageThrottle::builder(store("chat", chat).await?)
        .max_violations(3)
        .build()?;

    Ok(Router::new()
        .route("/api/items", get(items))
        .route("/login", post(login))
        .route("/chat", get(chat_socket))
        .route("/health", get(|| async { "ok" }))
        .with_state(throttle)
        .layer(layer))
}

/// Reads what the layer put into the request: the quota of each policy that applied.
async fn items(Extension(info): Extension<RateLimitInfo>) -> String {
    let left: Vec<String> = info
        .policies()
        .iter()
        .map(|q| format!("{}: {} of {} left", q.name, q.remaining, q.limit))
        .collect();
    format!("[\"apple\", \"pear\"] ({})", left.join(", "))
}

async fn login(headers: HeaderMap) -> (StatusCode, &'static str) {
    if headers.get("x-password").is_some_and(|p| p == "hunter2") {
        (StatusCode::OK, "welcome")
    } else {
        (StatusCode::UNAUTHORIZED, "wrong password")
    }
}

/// The upgrade itself went through the layer (per-ip); each message then goes through the
/// connection's own throttle.
async fn chat_socket(
    ws: WebSocketUpgrade,
    State(throttle): State<MessageThrottle<Store>>,
) -> Response {
    ws.on_upgrade(move |socket: WebSocket| async move {
        let mut socket = Throttled::new(socket, throttle.per_connection());
        while let Some(Ok(msg)) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = app().await?;
    let store = if std::env::var_os("REDIS_URL").is_some() && cfg!(feature = "redis") {
        "Redis"
    } else {
        "in-process"
    };
    let serve_on = std::env::var("SERVE").ok();
    let listener =
        tokio::net::TcpListener::bind(serve_on.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    println!("serving on http://{addr} ({store} limits)");
    if serve_on.is_some() {
        server.await??;
        return Ok(());
    }
    demo(addr).await?;
    server.abort();
    Ok(())
}

/// Drives the server with a real HTTP client and a real WebSocket client.
async fn demo(addr: SocketAddr) -> Result<(), Error> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let send = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::default());
        let client = client.clone();
        async move {
            let resp = client.request(req?).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Error>((parts, String::from_utf8_lossy(&body).into_owned()))
        }
    };
    let show = |label: &str, parts: &http::response::Parts, body: &str| {
        let header = |name: &str| {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{label}: {}  RateLimit: {}",
            parts.status,
            header("ratelimit")
        );
        if parts.status == StatusCode::TOO_MANY_REQUESTS {
            println!("    Retry-After: {}", header("retry-after"));
            println!("    RateLimit-Policy: {}", header("ratelimit-policy"));
            println!("    {body}");
        } else {
            println!("    {body}");
        }
    };

    println!("\n-- /api/items with an API key (5 per 10 seconds per key)");
    for i in 1..=6 {
        let (parts, body) = send("GET", "/api/items", &[("x-api-key", "demo-key")]).await?;
        show(&format!("request {i}"), &parts, &body);
    }
    let (parts, body) = send("GET", "/api/items", &[]).await?;
    show("without a key", &parts, &body);

    println!("\n-- /login (3 failures per 15 minutes per address; successes are free)");
    let (parts, body) = send("POST", "/login", &[("x-password", "hunter2")]).await?;
    show("right password", &parts, &body);
    for i in 1..=4 {
        let (parts, body) = send("POST", "/login", &[("x-password", "guess")]).await?;
        show(&format!("wrong password {i}"), &parts, &body);
    }

    println!("\n-- /chat over WebSocket (3 messages a second per connection, closed after 3 violations in a row)");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat")).await?;
    for i in 1..=7 {
        ws.send(ClientMessage::text(format!("hello {i}"))).await?;
    }
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await? {
        match msg? {
            ClientMessage::Text(text) => println!("  received: {}", text.as_str()),
            ClientMessage::Close(frame) => {
                if let Some(frame) = frame {
                    println!(
                        "  closed: {} {}",
                        u16::from(frame.code),
                        frame.reason.as_str()
                    );
                }
                break;
            }
            _ => {}
        }
    }
    Ok(())
}

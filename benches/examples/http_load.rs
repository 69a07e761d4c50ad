//! A loopback load test: one axum router served bare, under traffik's `RateLimitLayer` and
//! under `tower_governor` 0.8 (same limit, same key), driven by real HTTP/1.1 clients in the
//! same process, in four scenarios:
//!
//! * **low**: 8 connections, each sending its next request as soon as the last answer came
//!   back, every request admitted;
//! * **high**: 128 such connections, every request admitted;
//! * **sustained**: an open-loop 4,000 requests a second for the whole run, from 1,000 clients
//!   (4 a second each) each limited to 2 a second with a burst of 2 (over 3 s, 8 of each
//!   client's 12 admitted);
//! * **burst**: 20,000 requests fired at once over 256 connections by 100 clients, each
//!   allowed a burst of 20 (99% refused: the 429 path under load).
//!
//! Reports requests per second, p50 and p99 latency, and how many were refused.
//!
//! ```sh
//! cargo run --release -p traffik-benches --example http_load            # 3 s per run
//! LOAD_SECS=10 cargo run --release -p traffik-benches --example http_load
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::GovernorLayer;
use traffik::http::{Header, Policy, RateLimitLayer};

/// tower_governor keyed by the same `x-client` header as traffik's policy.
#[derive(Clone)]
struct ClientHeader;

impl KeyExtractor for ClientHeader {
    type Key = String;
    fn extract<T>(&self, req: &Request<T>) -> Result<String, tower_governor::GovernorError> {
        req.headers()
            .get("x-client")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

#[derive(Clone, Copy)]
enum Variant {
    Bare,
    Traffik,
    TowerGovernor,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Traffik => "traffik",
            Variant::TowerGovernor => "tower_governor",
        }
    }
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    connections: usize,
    clients: u64,
    /// Per client: a burst of `per_second` and a refill of `per_second` a second.
    per_second: u64,
    /// Open loop at this many requests a second; closed loop when `None`.
    open_rate: Option<u64>,
    /// A fixed number of requests fired at once instead of a timed run.
    total: Option<u64>,
}

fn router(variant: Variant, scenario: Scenario) -> Router {
    let app = Router::new().route("/", get(|| async { "ok" }));
    match variant {
        Variant::Bare => app,
        Variant::Traffik => {
            let rate = format!("{}/s", scenario.per_second);
            let policy =
                Policy::in_process_with("per-client", rate.as_str(), |b| b.capacity(20_000))
                    .unwrap()
                    .key(Header::try_new("x-client").unwrap());
            app.layer(RateLimitLayer::builder().policy(policy).build().unwrap())
        }
        Variant::TowerGovernor => {
            let config = GovernorConfigBuilder::default()
                .period(Duration::from_nanos(1_000_000_000 / scenario.per_second))
                .burst_size(scenario.per_second as u32)
                .key_extractor(ClientHeader)
                .use_headers()
                .finish()
                .unwrap();
            app.layer(GovernorLayer::new(config))
        }
    }
}

struct Outcome {
    latencies: Vec<Duration>,
    refused: u64,
    elapsed: Duration,
}

async fn one(client: &Client<HttpConnector, Body>, addr: SocketAddr, who: u64) -> (Duration, bool) {
    let req = Request::get(format!("http://{addr}/"))
        .header("x-client", who.to_string())
        .body(Body::empty())
        .unwrap();
    let start = Instant::now();
    let resp = client.request(req).await.expect("loopback request");
    let refused = resp.status() == http::StatusCode::TOO_MANY_REQUESTS;
    assert!(refused || resp.status().is_success(), "{}", resp.status());
    resp.into_body().collect().await.expect("body");
    (start.elapsed(), refused)
}

async fn run(addr: SocketAddr, scenario: Scenario, secs: u64) -> Outcome {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(scenario.connections)
        .build_http();
    let next_client = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    if let Some(total) = scenario.total {
        // Burst: `total` requests in flight over `connections` workers, all released at once.
        let sent = Arc::new(AtomicU64::new(0));
        for _ in 0..scenario.connections {
            let (client, sent, refused, next_client) = (
                client.clone(),
                Arc::clone(&sent),
                Arc::clone(&refused),
                Arc::clone(&next_client),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while sent.fetch_add(1, Ordering::Relaxed) < total {
                    let who = next_client.fetch_add(1, Ordering::Relaxed) % scenario.clients;
                    let (d, r) = one(&client, addr, who).await;
                    lat.push(d);
                    refused.fetch_add(u64::from(r), Ordering::Relaxed);
                }
                lat
            }));
        }
    } else if let Some(rate) = scenario.open_rate {
        // Open loop: requests start on schedule whether or not earlier ones have finished.
        let per_worker = Duration::from_secs_f64(scenario.connections as f64 / rate as f64);
        for w in 0..scenario.connections {
            let (client, refused, next_client) = (
                client.clone(),
                Arc::clone(&refused),
                Arc::clone(&next_client),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut at = tokio::time::Instant::from_std(start)
                    + per_worker.mul_f64(w as f64 / scenario.connections as f64);
                while at.into_std() < deadline {
                    tokio::time::sleep_until(at).await;
                    let who = next_client.fetch_add(1, Ordering::Relaxed) % scenario.clients;
                    let (d, r) = one(&client, addr, who).await;
                    lat.push(d);
                    refused.fetch_add(u64::from(r), Ordering::Relaxed);
                    at += per_worker;
                }
                lat
            }));
        }
    } else {
        for _ in 0..scenario.connections {
            let (client, refused, next_client) = (
                client.clone(),
                Arc::clone(&refused),
                Arc::clone(&next_client),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let who = next_client.fetch_add(1, Ordering::Relaxed) % scenario.clients;
                    let (d, r) = one(&client, addr, who).await;
                    lat.push(d);
                    refused.fetch_add(u64::from(r), Ordering::Relaxed);
                }
                lat
            }));
        }
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Outcome {
        latencies,
        refused: refused.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let scenarios = [
        Scenario {
            name: "low",
            connections: 8,
            clients: 1_000,
            per_second: 1_000_000,
            open_rate: None,
            total: None,
        },
        Scenario {
            name: "high",
            connections: 128,
            clients: 1_000,
            per_second: 1_000_000,
            open_rate: None,
            total: None,
        },
        Scenario {
            name: "sustained",
            connections: 64,
            clients: 1_000,
            per_second: 2,
            open_rate: Some(4_000),
            total: None,
        },
        Scenario {
            name: "burst",
            connections: 256,
            clients: 100,
            per_second: 20,
            open_rate: None,
            total: Some(20_000),
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| scenario | variant | requests | req/s | p50 | p99 | refused |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for scenario in scenarios {
        for variant in [Variant::Bare, Variant::Traffik, Variant::TowerGovernor] {
            let outcome = rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let app = router(variant, scenario);
                let server = tokio::spawn(async move {
                    axum::serve(listener, app).await.unwrap();
                });
                let outcome = run(addr, scenario, secs).await;
                server.abort();
                outcome
            });
            let mut lat = outcome.latencies;
            lat.sort_unstable();
            let n = lat.len() as f64;
            println!(
                "| {} | {} | {} | {:.0} | {:.0} µs | {:.0} µs | {} |",
                scenario.name,
                variant.name(),
                lat.len(),
                n / outcome.elapsed.as_secs_f64(),
                percentile(&lat, 0.50).as_secs_f64() * 1e6,
                percentile(&lat, 0.99).as_secs_f64() * 1e6,
                outcome.refused,
            );
        }
    }
}

//! What a rate-limit layer adds to each request of an axum router, in one run and without a
//! network: the same router bare, under traffik's `RateLimitLayer` and under `tower_governor`
//! 0.8, both keyed by the peer address (axum's `ConnectInfo`) and configured for the same
//! limit, high enough that every request is admitted (the common case a layer must make cheap).
//!
//! Requests come from 10,000 client addresses in random order, as a public service sees them.
//! Each variant builds the same request (the `ConnectInfo` extension included) and polls the
//! service's future once with a no-op waker: every one of them is ready on its first poll, so no
//! runtime is involved. The layer's added time is the variant's time minus the bare router's.
//!
//! Two pairings: traffik with its IETF `RateLimit` headers on every response beside
//! tower_governor with `use_headers()` (its `x-ratelimit-*` headers), and both without headers;
//! plus traffik's defaults (headers and the quota in the request's extensions, which
//! tower_governor does not offer). After criterion's figures, interleaved rounds of every variant
//! give the medians that BENCHMARKS.md reports (criterion measures one variant after another, and
//! on a shared machine the load moves in between).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::{Layer, Service};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_governor::GovernorLayer;
use traffik::http::key::PeerIp;
use traffik::http::{Policy, RateLimitLayer};

#[cfg(target_arch = "x86_64")]
#[path = "support/floor.rs"]
mod floor;
#[path = "support/mix.rs"]
mod mix;
use mix::Mix;

const CLIENTS: usize = 10_000;
/// Far above what the bench sends per client, so every request is admitted.
const LIMIT: u64 = 1_000_000;

/// Polls a future that must be ready on its first poll.
#[inline(always)]
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("every variant answers on its first poll"),
    }
}

/// 10,000 client addresses (half IPv4, half IPv6 in distinct /64s), then a visiting order:
/// a random permutation repeated, from a fixed seed so runs compare.
fn clients() -> Vec<SocketAddr> {
    let mut rng = Mix(0x9E37_79B9_7F4A_7C15);
    let mut next = move || rng.next();
    let mut addrs: Vec<SocketAddr> = (0..CLIENTS)
        .map(|i| {
            let r = next();
            let ip = if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(r as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | 1))
            };
            SocketAddr::new(ip, 40_000 + (i % 20_000) as u16)
        })
        .collect();
    // Fisher-Yates with the same generator.
    for i in (1..addrs.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        addrs.swap(i, j);
    }
    addrs
}

fn request(peer: SocketAddr) -> Request<Body> {
    let mut req = Request::get("/api/items").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn router() -> Router {
    Router::new().route("/api/items", get(|| async { "ok" }))
}

/// Runs `svc` over the clients in their random order, one request per iteration.
fn drive<S, B>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
    peers: &[SocketAddr],
) where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            let peer = peers[i];
            i = (i + 1) % peers.len();
            let resp = ready(svc.call(request(peer))).unwrap();
            debug_assert!(resp.status().is_success());
            black_box(resp)
        })
    });
}

/// One variant for the interleaved rounds: sends one request to its own service.
type Send1 = Box<dyn FnMut(SocketAddr)>;

fn sender<S, B>(mut svc: S) -> Send1
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + 'static,
    B: 'static,
{
    Box::new(move |peer| {
        let resp = ready(svc.call(request(peer))).unwrap();
        black_box(resp);
    })
}

/// Interleaved rounds, outside criterion: every variant runs `PER_ROUND` requests in turn,
/// round after round, so background load on a shared machine hits them alike; the added time
/// (variant minus bare, same round) and the traffik/tower_governor ratio are medians over the
/// rounds. Printed after criterion's own figures.
fn interleaved(peers: &[SocketAddr]) {
    const ROUNDS: usize = 41;
    const PER_ROUND: usize = 20_000;
    let mut variants: Vec<(&str, Send1)> = vec![
        ("bare-router", sender(router())),
        (
            "traffik/defaults",
            sender(traffik_layer_with(true, true).layer(router())),
        ),
        (
            "traffik/headers",
            sender(traffik_layer_with(true, false).layer(router())),
        ),
        (
            "tower_governor/headers",
            sender(
                GovernorLayer::new(gov_config().use_headers().finish().unwrap()).layer(router()),
            ),
        ),
        (
            "traffik/no-headers",
            sender(traffik_layer_with(false, false).layer(router())),
        ),
        (
            "tower_governor/no-headers",
            sender(GovernorLayer::new(gov_config().finish().unwrap()).layer(router())),
        ),
        (
            "traffik/no-headers, always-admit limiter",
            sender(noop_layer().layer(router())),
        ),
        (
            "floor layer: extension lookup only",
            sender(Floor {
                inner: router(),
                check: FloorCheck::Nothing,
            }),
        ),
        (
            "floor layer: + `KeyedLimiter<u64, Gcra>` check",
            sender(Floor::keyed(router())),
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    if let Some(layer) = Floor::inline(router(), peers) {
        variants.push(("floor layer: + inline floor check", sender(layer)));
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut at = 0;
    for _ in 0..ROUNDS {
        for (v, (_, send)) in variants.iter_mut().enumerate() {
            let start = std::time::Instant::now();
            for _ in 0..PER_ROUND {
                send(peers[at]);
                at = (at + 1) % peers.len();
            }
            ns[v].push(start.elapsed().as_nanos() as f64 / PER_ROUND as f64);
        }
    }
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let added = |v: usize| -> Vec<f64> { (0..ROUNDS).map(|r| ns[v][r] - ns[0][r]).collect() };
    println!("\ninterleaved: {ROUNDS} rounds x {PER_ROUND} requests per variant, medians");
    println!("| variant | ns/request | added over bare |");
    println!("|---|---:|---:|");
    for (v, (name, _)) in variants.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:+.0} |",
            median(ns[v].clone()),
            median(added(v))
        );
    }
    for (ours, theirs, label) in [(2, 3, "headers"), (4, 5, "no headers")] {
        let ratios: Vec<f64> = (0..ROUNDS)
            .map(|r| (ns[ours][r] - ns[0][r]) / (ns[theirs][r] - ns[0][r]))
            .collect();
        println!(
            "added time, traffik / tower_governor, {label}: median {:.2} (per-round ratios)",
            median(ratios)
        );
    }
}

/// traffik's layer keyed by peer address; `headers`: the IETF headers on allowed responses;
/// `info`: the quota in the request's extensions (both on by default).
fn traffik_layer_with(headers: bool, info: bool) -> RateLimitLayer<traffik::RateLimiter<[u8]>> {
    let policy =
        Policy::in_process_with("api", LIMIT.to_string() + "/s", |b| b.capacity(4 * CLIENTS))
            .unwrap()
            .key(PeerIp::new());
    RateLimitLayer::builder()
        .policy(policy)
        .headers_on_allowed(headers)
        .quota_info(info)
        .build()
        .unwrap()
}

/// A limiter that admits everything on the spot without any state: the layer with it costs
/// the layer's own work (rules, key extraction, request and response plumbing) and no check.
#[derive(Clone, Copy)]
struct AlwaysAdmit;

impl traffik::AsyncLimiter<[u8]> for AlwaysAdmit {
    type Error = traffik::CheckError;
    async fn check(&self, _: &[u8], _: u64) -> Result<traffik::Decision, Self::Error> {
        Ok(traffik::Decision::allow(LIMIT, LIMIT, 0))
    }
    async fn peek(&self, _: &[u8]) -> Result<traffik::Decision, Self::Error> {
        Ok(traffik::Decision::allow(LIMIT, LIMIT, 0))
    }
    async fn reset(&self, _: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
    fn check_now(&self, _: &[u8], _: u64) -> Option<Result<traffik::Decision, Self::Error>> {
        Some(Ok(traffik::Decision::allow(LIMIT, LIMIT, 0)))
    }
}

fn noop_layer() -> RateLimitLayer<AlwaysAdmit> {
    let policy = Policy::new("api", LIMIT.to_string() + "/s", AlwaysAdmit)
        .unwrap()
        .key(PeerIp::new());
    RateLimitLayer::builder()
        .policy(policy)
        .headers_on_allowed(false)
        .quota_info(false)
        .build()
        .unwrap()
}

/// What a [`Floor`] layer asks after reading the key.
#[derive(Clone)]
enum FloorCheck {
    Nothing,
    /// A statically typed `KeyedLimiter<u64, Gcra, _>` with the layer's capacity.
    Keyed(std::sync::Arc<traffik::KeyedLimiter<u64, traffik::Gcra, traffik::QuantaClock>>),
    /// The inline floor of a keyed check (`support/floor.rs`), same slot count.
    #[cfg(target_arch = "x86_64")]
    Inline(std::sync::Arc<floor::FloorTable>),
}

/// Diagnostic: the least a peer-keyed layer can do, with nothing a user configures. It reads
/// `ConnectInfo` from the request's extensions, folds the address into a `u64` (IPv4 exactly,
/// IPv6 by its /64), asks its [`FloorCheck`], then hands the request on untouched and returns
/// the inner future as it is. It never refuses (the bench admits everything), so it has no
/// response of its own to build: a lower bound for any layer, not a layer.
#[derive(Clone)]
struct Floor<S> {
    inner: S,
    check: FloorCheck,
}

fn fold(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => (a.to_bits() >> 64) as u64 | 1 << 63,
    }
}

impl<S> Floor<S> {
    fn keyed(inner: S) -> Self {
        let gcra = traffik::Gcra::new(traffik::Rate::per_second(LIMIT)).unwrap();
        let config = traffik::TableConfig::new(4 * CLIENTS, [1, 2, 3, 4]);
        let table = traffik::KeyedLimiter::new(gcra, traffik::QuantaClock::new(), config).unwrap();
        Floor {
            inner,
            check: FloorCheck::Keyed(std::sync::Arc::new(table)),
        }
    }

    /// `None` on a CPU without the inline floor's instructions.
    #[cfg(target_arch = "x86_64")]
    fn inline(inner: S, peers: &[SocketAddr]) -> Option<Self> {
        let table = floor::FloorTable::new(peers.iter().map(|p| fold(p.ip())), 4 * CLIENTS)?;
        Some(Floor {
            inner,
            check: FloorCheck::Inline(std::sync::Arc::new(table)),
        })
    }
}

impl<S: Service<Request<B>>, B> Service<Request<B>> for Floor<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        let key = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| fold(c.0.ip()));
        match (&self.check, key) {
            (FloorCheck::Keyed(l), Some(k)) => assert!(l.check(&k, 1).unwrap().is_allowed()),
            #[cfg(target_arch = "x86_64")]
            (FloorCheck::Inline(t), Some(k)) => assert!(t.check(k)),
            (_, k) => {
                black_box(k);
            }
        }
        self.inner.call(req)
    }
}

/// tower_governor for the same limit, keyed by peer address: one token every microsecond, a
/// burst of LIMIT (1,000,000 a second).
fn gov_config() -> GovernorConfigBuilder<
    PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
> {
    let mut builder = GovernorConfigBuilder::default();
    builder
        .period(Duration::from_micros(1))
        .burst_size(LIMIT as u32)
        .key_extractor(PeerIpKeyExtractor);
    builder
}

fn layer_overhead(c: &mut Criterion) {
    let peers = clients();
    // Every variant must admit, with the headers it promises: checked once, outside the
    // measurement.
    for (headers, info) in [(true, true), (true, false), (false, false)] {
        let mut svc = traffik_layer_with(headers, info).layer(router());
        let resp = ready(svc.call(request(peers[0]))).unwrap();
        assert!(resp.status().is_success());
        assert_eq!(resp.headers().contains_key("ratelimit"), headers);
    }
    let mut svc = GovernorLayer::new(gov_config().use_headers().finish().unwrap()).layer(router());
    let resp = ready(svc.call(request(peers[0]))).unwrap();
    assert!(resp.status().is_success());
    assert!(resp.headers().contains_key("x-ratelimit-remaining"));

    let mut g = c.benchmark_group("http/layer");
    g.warm_up_time(Duration::from_secs(2));
    drive(&mut g, "bare-router", router(), &peers);
    // traffik's defaults: the IETF headers and the quota in the request's extensions.
    drive(
        &mut g,
        "traffik/defaults",
        traffik_layer_with(true, true).layer(router()),
        &peers,
    );
    // What tower_governor's `use_headers()` does: headers, nothing for handlers.
    drive(
        &mut g,
        "traffik/headers",
        traffik_layer_with(true, false).layer(router()),
        &peers,
    );
    drive(
        &mut g,
        "tower_governor/headers",
        GovernorLayer::new(gov_config().use_headers().finish().unwrap()).layer(router()),
        &peers,
    );
    drive(
        &mut g,
        "traffik/no-headers",
        traffik_layer_with(false, false).layer(router()),
        &peers,
    );
    drive(
        &mut g,
        "tower_governor/no-headers",
        GovernorLayer::new(gov_config().finish().unwrap()).layer(router()),
        &peers,
    );
    g.finish();
    interleaved(&peers);
}

criterion_group!(benches, layer_overhead);
criterion_main!(benches);

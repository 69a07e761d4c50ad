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
//! Two pairings: traffik's defaults (IETF `RateLimit` headers on every response, the quota in
//! the request's extensions) beside tower_governor with `use_headers()` (its `x-ratelimit-*`
//! headers), and both without headers.
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
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
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

fn traffik_layer(headers: bool) -> RateLimitLayer<traffik::RateLimiter<[u8]>> {
    let policy =
        Policy::in_process_with("api", LIMIT.to_string() + "/s", |b| b.capacity(4 * CLIENTS))
            .unwrap()
            .key(PeerIp::new());
    RateLimitLayer::builder()
        .policy(policy)
        .headers_on_allowed(headers)
        .quota_info(headers)
        .build()
        .unwrap()
}

fn layer_overhead(c: &mut Criterion) {
    let peers = clients();
    // Every variant must admit: check once up front, outside the measurement.
    for variant in 0..2 {
        let headers = variant == 0;
        let mut svc = traffik_layer(headers).layer(router());
        let resp = ready(svc.call(request(peers[0]))).unwrap();
        assert!(resp.status().is_success());
        assert_eq!(resp.headers().contains_key("ratelimit"), headers);
    }

    let mut g = c.benchmark_group("http/layer");
    g.warm_up_time(Duration::from_secs(2));
    drive(&mut g, "bare-router", router(), &peers);

    drive(
        &mut g,
        "traffik/headers",
        traffik_layer(true).layer(router()),
        &peers,
    );
    let gov_headers = GovernorConfigBuilder::default()
        // One token every microsecond, a burst of LIMIT: the same 1,000,000 per second.
        .period(Duration::from_micros(1))
        .burst_size(LIMIT as u32)
        .key_extractor(PeerIpKeyExtractor)
        .use_headers()
        .finish()
        .unwrap();
    drive(
        &mut g,
        "tower_governor/headers",
        GovernorLayer::new(gov_headers).layer(router()),
        &peers,
    );

    drive(
        &mut g,
        "traffik/no-headers",
        traffik_layer(false).layer(router()),
        &peers,
    );
    let gov_plain = GovernorConfigBuilder::default()
        .period(Duration::from_micros(1))
        .burst_size(LIMIT as u32)
        .key_extractor(PeerIpKeyExtractor)
        .finish()
        .unwrap();
    drive(
        &mut g,
        "tower_governor/no-headers",
        GovernorLayer::new(gov_plain).layer(router()),
        &peers,
    );
    g.finish();
}

criterion_group!(benches, layer_overhead);
criterion_main!(benches);

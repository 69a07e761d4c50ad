//! The layer's fast path allocates nothing of its own: with in-process limiters and keys
//! extracted at once, an admitted request costs no boxed future and no heap allocation
//! (headers and quota info off, since those are values the caller asked for), while a limiter
//! that must be awaited costs one boxed future. Counted by a global allocator, on this thread
//! only.
#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::request::Parts;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};
use traffik::http::{Extracted, HttpKey, MissingKey, Policy, RateLimitLayer};
use traffik::{AsyncLimiter, CheckError, Decision, RateLimiter};

struct Counting;

thread_local! {
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note() {
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    COUNT.with(|c| c.set(Some(0)));
    let out = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (n, out)
}

fn by_client(parts: &Parts) -> Extracted {
    match parts.headers.get("x-client") {
        Some(v) => Extracted::Key(HttpKey::from_bytes(v.as_bytes())),
        None => Extracted::Missing(MissingKey::new("no x-client header")),
    }
}

/// Calls the service once and polls its future once.
fn call_once<S, B>(svc: &mut S, req: Request<()>) -> Poll<Result<Response<B>, Infallible>>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = pin!(svc.call(req));
    fut.as_mut().poll(&mut cx)
}

fn request(client: &str) -> Request<()> {
    Request::get("/login")
        .header("x-client", client)
        .body(())
        .unwrap()
}

fn inner() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    tower::service_fn(|_req: Request<()>| {
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        std::future::ready(Ok::<_, Infallible>(res))
    })
}

#[test]
fn an_admitted_request_on_in_process_limiters_allocates_nothing() {
    let limiter = |rate: &str| {
        traffik::builder()
            .rate(rate)
            .capacity(64)
            .build::<[u8]>()
            .unwrap()
    };
    let layer = RateLimitLayer::builder()
        .policy(
            Policy::new("burst", "100/s", limiter("100/s"))
                .unwrap()
                .key(by_client),
        )
        .policy(
            Policy::new("fails", "50/minute", limiter("50/minute"))
                .unwrap()
                .key(by_client)
                .charge_if(|res| res.status == StatusCode::UNAUTHORIZED),
        )
        .headers_on_allowed(false)
        .quota_info(false)
        .build()
        .unwrap();
    let mut svc = layer.layer(inner());
    // Warm up: the first key placement and any lazy statics happen outside the count.
    assert!(matches!(
        call_once(&mut svc, request("warm")),
        Poll::Ready(Ok(_))
    ));

    for i in 0..20 {
        let req = request("alice");
        let (n, res) = allocations(|| {
            let res = call_once(&mut svc, req);
            assert!(
                matches!(&res, Poll::Ready(Ok(r)) if r.status() == 401),
                "{i}"
            );
            res
        });
        drop(res);
        assert_eq!(n, 0, "request {i} allocated");
    }
}

/// An exact limiter that answers only through its futures.
struct Awaited(RateLimiter<[u8]>);

#[allow(clippy::manual_async_fn)]
impl AsyncLimiter<[u8]> for Awaited {
    type Error = CheckError;
    fn check(
        &self,
        key: &[u8],
        cost: u64,
    ) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        async move { RateLimiter::check(&self.0, key, cost) }
    }
    fn peek(&self, key: &[u8]) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        async move { Ok(RateLimiter::peek(&self.0, key)) }
    }
    fn reset(&self, key: &[u8]) -> impl Future<Output = Result<(), CheckError>> + Send {
        async move {
            RateLimiter::reset(&self.0, key);
            Ok(())
        }
    }
}

#[test]
fn an_awaited_limiter_costs_a_boxed_future() {
    let limiter = traffik::builder()
        .rate("100/s")
        .capacity(64)
        .build::<[u8]>()
        .unwrap();
    let layer = RateLimitLayer::builder()
        .policy(
            Policy::new("burst", "100/s", Awaited(limiter))
                .unwrap()
                .key(by_client),
        )
        .headers_on_allowed(false)
        .quota_info(false)
        .build()
        .unwrap();
    let mut svc = layer.layer(inner());
    assert!(matches!(
        call_once(&mut svc, request("warm")),
        Poll::Ready(Ok(_))
    ));
    let req = request("alice");
    let (n, res) = allocations(|| call_once(&mut svc, req));
    assert!(matches!(&res, Poll::Ready(Ok(r)) if r.status() == 401));
    // The boxed future (and nothing that scales with the request).
    assert_eq!(n, 1, "{n} allocations");
}

/// With the default headers and quota info, an admitted request costs exactly the values it
/// carries: the `RateLimit` header value and the boxed `RateLimitInfo` extension (the
/// `RateLimit-Policy` value is prebuilt and shared). The inner response here has no headers
/// yet, so its header map's first allocation (indices and entries) counts too; the request's
/// extensions already hold the peer address, as a server's would.
#[test]
fn headers_and_quota_info_cost_their_two_values() {
    let layer = RateLimitLayer::builder()
        .policy(
            // Slow enough that nothing refills during the test.
            Policy::new(
                "burst",
                "100/hour",
                traffik::builder()
                    .rate("100/hour")
                    .capacity(64)
                    .build::<[u8]>()
                    .unwrap(),
            )
            .unwrap()
            .key(by_client),
        )
        .build()
        .unwrap();
    let mut svc = layer.layer(inner());
    let with_peer = |client: &str| {
        let mut req = request(client);
        req.extensions_mut()
            .insert(std::net::SocketAddr::from(([192, 0, 2, 1], 40_000)));
        req
    };
    assert!(matches!(
        call_once(&mut svc, with_peer("warm")),
        Poll::Ready(Ok(_))
    ));
    // The map's own first allocation, measured on an empty response.
    let (map, _) = allocations(|| {
        let mut h = http::HeaderMap::new();
        h.append(
            traffik::http::response::RATELIMIT,
            http::HeaderValue::from_static("1"),
        );
        h
    });
    for i in 0..20 {
        let req = with_peer("alice");
        let (n, res) = allocations(|| call_once(&mut svc, req));
        let Poll::Ready(Ok(res)) = res else {
            panic!("request {i} was not answered at once")
        };
        let value = res.headers()["ratelimit"].to_str().unwrap();
        assert!(
            value.starts_with(&format!("\"burst\";r={};t=", 99 - i)),
            "{value}"
        );
        assert_eq!(res.headers()["ratelimit-policy"], "\"burst\";q=100;w=3600");
        drop(res);
        assert_eq!(n, map + 2, "request {i}: {n} allocations");
    }
}

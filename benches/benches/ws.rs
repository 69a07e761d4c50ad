//! What the WebSocket throttle adds per message, on an in-process limiter that always admits:
//!
//! * `ws/check`: a bare `RateLimiter::check` beside `ConnectionThrottle::check` on the same key
//!   (the cost of judging a message: kind, size, cost, verdict);
//! * `ws/stream`: reading one message from an in-memory socket, unwrapped and through
//!   `Throttled` (the whole per-message path an application sees). The socket yields clones of
//!   one axum text message and discards what it is sent; polls use a no-op waker.
//!
//! The manual clock moves 1 µs per message at 1,000,000 a second, so every check is admitted.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::{Message, Utf8Bytes};
use criterion::{criterion_group, criterion_main, Criterion};
use futures_core::Stream;
use futures_sink::Sink;
use traffik::http::ws::{MessageThrottle, Throttled, Verdict};
use traffik::{AnyAlgorithm, KeyedLimiter, ManualClock, Rate};

type Table = KeyedLimiter<[u8], AnyAlgorithm, Arc<ManualClock>>;

fn limiter() -> (Arc<Table>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let limiter = traffik::builder()
        .rate(Rate::per_second(1_000_000))
        .capacity(1024)
        .build_with_clock(Arc::clone(&clock))
        .unwrap();
    (Arc::new(limiter), clock)
}

fn message() -> Message {
    Message::Text(Utf8Bytes::from_static(r#"{"op":"move","x":12,"y":-3}"#))
}

/// An endless in-memory socket: reads are clones of one message, writes are discarded.
struct MemSocket(Message);

impl Stream for MemSocket {
    type Item = Result<Message, Infallible>;
    #[inline]
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(Some(Ok(self.0.clone())))
    }
}

impl Sink<Message> for MemSocket {
    type Error = Infallible;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Infallible> {
        drop(item);
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
}

#[inline(always)]
fn read<S: Stream + Unpin>(s: &mut S, cx: &mut Context<'_>) -> S::Item {
    match Pin::new(s).poll_next(cx) {
        Poll::Ready(Some(item)) => item,
        _ => panic!("the in-memory socket always has a message"),
    }
}

fn check(c: &mut Criterion) {
    let (table, clock) = limiter();
    let throttle = MessageThrottle::new(Arc::clone(&table));
    let mut conn = throttle.per_connection();
    let key = conn.key().clone();
    let msg = message();

    let mut g = c.benchmark_group("ws/check");
    g.bench_function("ratelimiter-check", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            let d = table.check(black_box(key.as_bytes()), 1).unwrap();
            assert!(black_box(d).is_allowed());
        })
    });
    g.bench_function("connection-throttle-check", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            let v = conn.check(black_box(&msg));
            assert!(matches!(black_box(v), Verdict::Pass));
        })
    });
    g.finish();
}

fn stream(c: &mut Criterion) {
    let (table, clock) = limiter();
    let throttle = MessageThrottle::new(table);
    let mut bare = MemSocket(message());
    let mut throttled = Throttled::new(MemSocket(message()), throttle.per_connection());
    let mut cx = Context::from_waker(Waker::noop());

    let mut g = c.benchmark_group("ws/stream");
    g.bench_function("bare", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            black_box(read(&mut bare, &mut cx).is_ok());
        })
    });
    g.bench_function("throttled", |b| {
        b.iter(|| {
            clock.advance_nanos(1_000);
            black_box(read(&mut throttled, &mut cx).is_ok());
        })
    });
    g.finish();
    assert_eq!(throttled.connection().consecutive_violations(), 0);
}

criterion_group!(benches, check, stream);
criterion_main!(benches);

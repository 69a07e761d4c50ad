//! The WebSocket throttle's in-process path allocates nothing per message: counted by a global
//! allocator that tallies this thread's allocations.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{Sink, Stream};
use traffik::http::ws::{MessageThrottle, Throttled, Verdict};
use traffik::{AnyAlgorithm, KeyedLimiter, ManualClock, Rate};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// The crate under test forbids unsafe code; this test binary needs it for an allocator that
// only forwards to the system's and counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

type Table = KeyedLimiter<[u8], AnyAlgorithm, Arc<ManualClock>>;

fn limiter(rate: Rate) -> (Arc<Table>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let limiter = traffik::builder()
        .rate(rate)
        .capacity(64)
        .build_with_clock(Arc::clone(&clock))
        .unwrap();
    (Arc::new(limiter), clock)
}

fn message() -> Message {
    Message::Text(Utf8Bytes::from_static("hello"))
}

#[test]
fn checking_admitted_and_rejected_messages_allocates_nothing() {
    let (table, clock) = limiter(Rate::per_second(1_000));
    let throttle = MessageThrottle::builder(table)
        .never_close()
        .build()
        .unwrap();
    let mut conn = throttle.per_connection();
    let msg = message();
    // The key's first check places it in the table.
    assert_eq!(conn.check(&msg), Verdict::Pass);
    let before = allocations();
    let mut passed = 0;
    let mut rejected = 0;
    for _ in 0..10_000 {
        clock.advance_nanos(500_000);
        match conn.check(&msg) {
            Verdict::Pass => passed += 1,
            Verdict::Reject {
                notice: Some(n),
                close: None,
            } => {
                assert_eq!(n.retry_after_secs(), Some(1));
                rejected += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(allocations() - before, 0);
    // GCRA, 1 ms apart with a burst of 1,000, one message every 0.5 ms: all pass until the
    // burst is spent (message 1,996), then every other one; 5 s admit 1,000 + 5,000 in all.
    assert_eq!((passed, rejected), (5_999, 4_001));
}

/// Reads are clones of one message; writes are discarded.
struct MemSocket(Message);

impl Stream for MemSocket {
    type Item = Result<Message, Infallible>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(Some(Ok(self.0.clone())))
    }
}

impl Sink<Message> for MemSocket {
    type Error = Infallible;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Infallible> {
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn reading_admitted_messages_through_throttled_allocates_nothing() {
    let (table, clock) = limiter(Rate::per_second(1_000_000));
    let throttle = MessageThrottle::new(table);
    let mut socket = Throttled::new(MemSocket(message()), throttle.per_connection());
    let mut cx = Context::from_waker(Waker::noop());
    let mut read = || match Pin::new(&mut socket).poll_next(&mut cx) {
        Poll::Ready(Some(Ok(m))) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(read(), message());
    let before = allocations();
    for _ in 0..10_000 {
        clock.advance_nanos(1_000);
        let m = read();
        assert!(matches!(m, Message::Text(_)));
    }
    assert_eq!(allocations() - before, 0);
}

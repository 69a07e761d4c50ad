//! Per-request choice of limiter: each key goes to the limiter the closure names, nothing is
//! rebuilt per call, and limiters of different types sit behind one router through `Either`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::task::{Context, Poll, Waker};
use traffik::route::{Either, EitherError, RouteError, Routed};
use traffik::{
    AlgorithmKind, AnyAlgorithm, AsyncLimiter, CheckError, ErrorKind, KeyedLimiter, LimiterError,
    ManualClock, Rate, TableConfig,
};

/// Polls a future that must be ready at once (every limiter here is in-process).
fn now<T>(f: impl Future<Output = T>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-process limiter answered later"),
    }
}

fn table<'c>(
    rate: &str,
    clock: &'c ManualClock,
) -> KeyedLimiter<str, AnyAlgorithm, &'c ManualClock> {
    let rate: Rate = rate.parse().unwrap();
    let alg = AnyAlgorithm::new(AlgorithmKind::Gcra, rate, None).unwrap();
    KeyedLimiter::new(alg, clock, TableConfig::new(64, [1, 2, 3, 4])).unwrap()
}

#[test]
fn each_tenant_is_limited_by_its_own_store() {
    let clock = ManualClock::new();
    let router = Routed::new(
        vec![table("2/s", &clock), table("5/s", &clock)],
        |k: &str| match k.split(':').next() {
            Some("free") => Some(0),
            Some("paid") => Some(1),
            _ => None,
        },
    );
    let admitted = |key: &str| {
        (0..10)
            .filter(|_| now(router.check(key, 1)).unwrap().is_allowed())
            .count()
    };
    assert_eq!(admitted("free:a"), 2);
    assert_eq!(admitted("paid:a"), 5);
    assert_eq!(admitted("free:b"), 2);
    // Each store holds only its own tenants' keys.
    assert_eq!(router.limiters()[0].len(), 2);
    assert_eq!(router.limiters()[1].len(), 1);
    // peek and reset go to the same store.
    assert_eq!(now(router.peek("paid:a")).unwrap().remaining(), 0);
    now(router.reset("paid:a")).unwrap();
    assert_eq!(now(router.peek("paid:a")).unwrap().remaining(), 5);
}

#[test]
fn an_unrouted_key_is_a_config_error_not_an_admission() {
    let clock = ManualClock::new();
    let router = Routed::new(vec![table("2/s", &clock)], |k: &str| {
        // One-letter keys go to the only store; longer ones past the end; none for "".
        k.len().checked_sub(1)
    });
    let none = now(router.check("", 1)).unwrap_err();
    assert!(matches!(
        none,
        RouteError::NoRoute {
            chosen: None,
            available: 1
        }
    ));
    assert_eq!(none.kind(), ErrorKind::Config);
    let past_end = now(router.check("abc", 1)).unwrap_err();
    assert!(matches!(
        past_end,
        RouteError::NoRoute {
            chosen: Some(2),
            available: 1
        }
    ));
    // A limiter's own error keeps its kind through the router.
    let oversized = now(router.check("a", 3)).unwrap_err();
    assert!(matches!(
        oversized,
        RouteError::Limiter(CheckError::InsufficientCapacity { max: 2 })
    ));
    assert_eq!(oversized.kind(), ErrorKind::InsufficientCapacity { max: 2 });
}

#[test]
fn limiters_of_different_types_share_a_router_through_either() {
    let clock = ManualClock::new();
    // The right side is another type: a fixed-window table instead of the runtime-chosen one.
    let window: KeyedLimiter<str, traffik::FixedWindow, &ManualClock> = KeyedLimiter::new(
        traffik::FixedWindow::new(Rate::per_second(3)).unwrap(),
        &clock,
        TableConfig::new(64, [5, 6, 7, 8]),
    )
    .unwrap();
    let router = Routed::new(
        vec![Either::Left(table("1/s", &clock)), Either::Right(window)],
        |k: &str| Some(usize::from(k.starts_with("batch"))),
    );
    let admitted = |key: &str| {
        (0..10)
            .filter(|_| now(router.check(key, 1)).unwrap().is_allowed())
            .count()
    };
    assert_eq!(admitted("web"), 1);
    assert_eq!(admitted("batch"), 3);
    let err = now(router.check("batch", 4)).unwrap_err();
    assert!(matches!(
        err,
        RouteError::Limiter(EitherError::Right(CheckError::InsufficientCapacity {
            max: 3
        }))
    ));
}

/// A limiter with no immediate answer: only its futures decide (as a network store does).
struct AwaitOnly<L>(L);

impl<L: AsyncLimiter<str>> AsyncLimiter<str> for AwaitOnly<L> {
    type Error = L::Error;
    fn check(
        &self,
        key: &str,
        cost: u64,
    ) -> impl Future<Output = Result<traffik::Decision, Self::Error>> + Send {
        self.0.check(key, cost)
    }
    fn peek(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<traffik::Decision, Self::Error>> + Send {
        self.0.peek(key)
    }
    fn reset(&self, key: &str) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.0.reset(key)
    }
}

#[test]
fn check_now_answers_on_the_spot_exactly_as_check_and_only_where_it_can() {
    let clock = ManualClock::new();
    let t = table("3/s", &clock);
    // The in-process table answers at once, charging exactly as `check` does.
    assert_eq!(t.check_now("a", 2).unwrap().unwrap().remaining(), 1);
    assert_eq!(now(AsyncLimiter::check(&t, "a", 1)).unwrap().remaining(), 0);
    let denied = t.check_now("a", 1).unwrap().unwrap();
    assert!(denied.is_denied());
    assert_eq!(denied.retry_after_nanos(), 333_333_334);
    assert_eq!(t.peek_now("a").unwrap().unwrap(), t.peek("a"));
    assert_eq!(
        t.check_now("a", 4).unwrap(),
        Err(CheckError::InsufficientCapacity { max: 3 })
    );
    // Through references and Arcs too.
    let shared = std::sync::Arc::new(table("3/s", &clock));
    assert!(shared.check_now("b", 3).unwrap().unwrap().is_allowed());
    let by_ref = &*shared;
    assert!(AsyncLimiter::check_now(&by_ref, "b", 1)
        .unwrap()
        .unwrap()
        .is_denied());

    // A limiter that must be awaited says so and charges nothing.
    let remote = AwaitOnly(table("3/s", &clock));
    assert!(remote.check_now("a", 1).is_none());
    assert!(remote.peek_now("a").is_none());
    assert_eq!(now(remote.peek("a")).unwrap().remaining(), 3);

    // Routers and Either pass the question to the chosen limiter.
    let router = Routed::new(vec![table("1/s", &clock)], |k: &str| {
        (k != "nobody").then_some(0)
    });
    assert!(router.check_now("a", 1).unwrap().unwrap().is_allowed());
    assert!(router.check_now("a", 1).unwrap().unwrap().is_denied());
    assert!(matches!(
        router.check_now("nobody", 1),
        Some(Err(RouteError::NoRoute {
            chosen: None,
            available: 1
        }))
    ));
    let left: Either<_, AwaitOnly<KeyedLimiter<str, AnyAlgorithm, &ManualClock>>> =
        Either::Left(table("1/s", &clock));
    assert!(left.check_now("a", 1).unwrap().unwrap().is_allowed());
    assert!(left.peek_now("a").unwrap().unwrap().remaining() == 0);
    let right: Either<KeyedLimiter<str, AnyAlgorithm, &ManualClock>, _> =
        Either::Right(AwaitOnly(table("1/s", &clock)));
    assert!(right.check_now("a", 1).is_none());
}

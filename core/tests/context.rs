//! Quota contexts: charges merged per key, seen by later charges, applied or cancelled.
#![cfg(feature = "alloc")]
#![allow(clippy::unwrap_used, missing_docs)]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::sync::Mutex;
use traffik_core::{
    AsyncLimiter, ContextError, Decision, ErrorKind, Gcra, KeyedLimiter, LimiterError, ManualClock,
    Outcome, QuotaContext, Rate, TableConfig,
};

type Table = KeyedLimiter<str, Gcra, ManualClock>;

fn table() -> Table {
    KeyedLimiter::new(
        Gcra::new(Rate::per_second(10)).unwrap(),
        ManualClock::new(),
        TableConfig::new(64, [1, 2, 3, 4]),
    )
    .unwrap()
}

/// Polls a future that is ready without waiting (all limiters in these tests are).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the test limiters answer at once"),
    }
}

#[test]
fn charges_merge_per_key_and_see_the_context() {
    let t = table();
    let mut ctx = QuotaContext::new(&t);
    let a = ctx.charge_now("alice", 3).unwrap();
    assert_eq!(
        (a.accepted, a.pending, a.remaining, a.limit),
        (true, 3, 7, 10)
    );
    let a = ctx.charge_now("alice", 4).unwrap();
    assert_eq!((a.accepted, a.pending, a.remaining), (true, 7, 3));
    // 7 pending + 4 > 10: refused, nothing recorded.
    let a = ctx.charge_now("alice", 4).unwrap();
    assert_eq!((a.accepted, a.pending, a.remaining), (false, 7, 3));
    assert!(ctx.charge_now("bob", 10).unwrap().accepted);
    assert!(!ctx.charge_now("bob", 1).unwrap().accepted);
    // A zero-cost charge is a peek through the context.
    assert_eq!(ctx.charge_now("carol", 0).unwrap().remaining, 10);
    assert_eq!(
        (ctx.len(), ctx.pending("alice"), ctx.pending("carol")),
        (2, 7, 0)
    );
    // Nothing has reached the limiter.
    assert_eq!(t.peek("alice").remaining(), 10);
    assert!(t.is_empty());
    let report = ctx.apply_now();
    assert!(report.all_applied());
    let applied: Vec<(&str, u64, u64)> = report
        .keys
        .iter()
        .map(|(k, c, o)| match o {
            Outcome::Applied(d) => (k.as_str(), *c, d.remaining()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(applied, [("alice", 7, 3), ("bob", 10, 0)]);
    assert_eq!(t.peek("alice").remaining(), 3);
    assert_eq!(t.peek("bob").remaining(), 0);
}

#[test]
fn cancel_and_drop_charge_nothing() {
    let t = table();
    let mut ctx = QuotaContext::new(&t);
    assert!(ctx.charge_now("alice", 9).unwrap().accepted);
    ctx.cancel();
    {
        let mut ctx = QuotaContext::new(&t);
        assert!(ctx.charge_now("alice", 9).unwrap().accepted);
    }
    assert_eq!(t.peek("alice").remaining(), 10);
    assert!(t.is_empty());
}

#[test]
fn a_key_without_room_at_apply_is_reported_and_left_alone() {
    let t = table();
    let mut ctx = QuotaContext::new(&t);
    assert!(ctx.charge_now("alice", 8).unwrap().accepted);
    assert!(ctx.charge_now("bob", 2).unwrap().accepted);
    // Someone else takes 5 of alice's 10 meanwhile: 8 no longer fits.
    assert!(t.check("alice", 5).unwrap().is_allowed());
    let report = ctx.apply_now();
    assert!(!report.all_applied());
    assert_eq!(report.failed().collect::<Vec<_>>(), ["alice"]);
    match &report.keys[0].2 {
        Outcome::Denied(d) => {
            assert_eq!(d.remaining(), 5);
            assert_eq!(d.retry_after_nanos(), 300_000_000);
        }
        other => panic!("{other:?}"),
    }
    assert!(report.keys[1].2.is_applied());
    // All-or-nothing per key: alice keeps exactly what the other caller left.
    assert_eq!(t.peek("alice").remaining(), 5);
    assert_eq!(t.peek("bob").remaining(), 8);
}

#[test]
fn the_async_contract_over_the_table() {
    let t = table();
    let mut ctx = QuotaContext::new(&t);
    assert!(ready(ctx.charge("alice", 6)).unwrap().accepted);
    assert!(!ready(ctx.charge("alice", 5)).unwrap().accepted);
    assert!(ready(ctx.charge("alice", 4)).unwrap().accepted);
    let report = ready(ctx.apply());
    assert!(report.all_applied());
    assert_eq!(report.keys[0].1, 10);
    assert_eq!(t.peek("alice").remaining(), 0);
}

/// A store that answers only through futures and fails on one key, to exercise the outcomes.
struct Remote {
    table: Table,
    log: Mutex<Vec<(String, u64)>>,
}

#[derive(Debug, PartialEq, Eq)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("store down")
    }
}
impl std::error::Error for Down {}
impl LimiterError for Down {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NotCharged
    }
}

impl AsyncLimiter<str> for Remote {
    type Error = Down;
    fn check(&self, key: &str, cost: u64) -> impl Future<Output = Result<Decision, Down>> + Send {
        self.log.lock().unwrap().push((key.to_owned(), cost));
        let r = if key == "down" {
            Err(Down)
        } else {
            Ok(self.table.check(key, cost).unwrap())
        };
        core::future::ready(r)
    }
    fn peek(&self, key: &str) -> impl Future<Output = Result<Decision, Down>> + Send {
        let r = if key == "unreachable" {
            Err(Down)
        } else {
            Ok(self.table.peek(key))
        };
        core::future::ready(r)
    }
    fn reset(&self, key: &str) -> impl Future<Output = Result<(), Down>> + Send {
        self.table.reset(key);
        core::future::ready(Ok(()))
    }
}

#[test]
fn a_network_store_failures_and_the_now_calls() {
    let remote = Remote {
        table: table(),
        log: Mutex::new(Vec::new()),
    };
    let mut ctx = QuotaContext::new(&remote);
    assert_eq!(ctx.charge_now("alice", 1), Err(ContextError::NotImmediate));
    assert_eq!(
        ready(ctx.charge("unreachable", 1)),
        Err(ContextError::Limiter(Down))
    );
    assert!(ready(ctx.charge("alice", 2)).unwrap().accepted);
    assert!(ready(ctx.charge("down", 1)).unwrap().accepted);
    assert!(ready(ctx.charge("alice", 3)).unwrap().accepted);
    assert!(ready(ctx.charge("bob", 1)).unwrap().accepted);
    let report = ready(ctx.apply());
    // One check per key, merged, in first-charged order; a failure does not stop the others.
    assert_eq!(
        *remote.log.lock().unwrap(),
        [
            ("alice".to_owned(), 5),
            ("down".to_owned(), 1),
            ("bob".to_owned(), 1)
        ]
    );
    assert_eq!(report.failed().collect::<Vec<_>>(), ["down"]);
    assert_eq!(report.keys[1].2, Outcome::Failed(Down));
    assert_eq!(remote.table.peek("alice").remaining(), 5);
    // apply_now on a store that cannot answer on the spot charges nothing.
    let mut ctx = QuotaContext::new(&remote);
    assert!(ready(ctx.charge("carol", 1)).unwrap().accepted);
    let report = ctx.apply_now();
    assert_eq!(report.keys[0].2, Outcome::NotImmediate);
    assert_eq!(remote.table.peek("carol").remaining(), 10);
}

//! `Failover::check_now`/`peek_now` against the async `check`/`peek`: the same scenario is run
//! twice on fresh twins, once through the async calls and once through the on-the-spot calls
//! (falling back to the async call only where `check_now` returns `None`, as middleware does),
//! and everything observable must be equal: every answer, the stats, the breaker's state, what
//! the primary was charged, what the fallback has left. Then the cases where `check_now` must
//! give `None` (and charge and count nothing), and the one case where it cannot.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use support::{Scripted, Step};
use traffik::failover::{
    Backoff, BreakerConfig, BreakerState, Failover, FailoverError, FailoverStats, OnError,
    RetryPolicy,
};
use traffik::{
    AnyAlgorithm, AsyncLimiter, CheckError, Decision, ErrorKind, KeyedLimiter, LimiterError,
    ManualClock,
};

const NOT_CHARGED: Step = Step::Fail(ErrorKind::NotCharged);
const INDETERMINATE: Step = Step::Fail(ErrorKind::Indeterminate);

type Local = KeyedLimiter<str, AnyAlgorithm, Arc<ManualClock>>;

/// An in-process fallback (10 a second, burst 10) that answers on the spot, or, like a
/// networked store, only when awaited.
struct Fallback {
    local: Local,
    now: bool,
}

impl Fallback {
    fn new(clock: &Arc<ManualClock>, now: bool) -> Self {
        let local = traffik::builder()
            .rate("10/s")
            .capacity(64)
            .build_with_clock(Arc::clone(clock))
            .unwrap();
        Fallback { local, now }
    }

    fn left(&self, key: &str) -> u64 {
        self.local.peek(key).remaining()
    }
}

impl AsyncLimiter<str> for Fallback {
    type Error = CheckError;
    fn check(
        &self,
        key: &str,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        AsyncLimiter::check(&self.local, key, cost)
    }
    fn peek(&self, key: &str) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        AsyncLimiter::peek(&self.local, key)
    }
    fn reset(&self, key: &str) -> impl Future<Output = Result<(), CheckError>> + Send {
        AsyncLimiter::reset(&self.local, key)
    }
    fn check_now(&self, key: &str, cost: u64) -> Option<Result<Decision, CheckError>> {
        self.now
            .then(|| AsyncLimiter::check_now(&self.local, key, cost))
            .flatten()
    }
    fn peek_now(&self, key: &str) -> Option<Result<Decision, CheckError>> {
        self.now
            .then(|| AsyncLimiter::peek_now(&self.local, key))
            .flatten()
    }
}

type F<'a> = Failover<str, &'a Scripted, &'a Fallback, Arc<ManualClock>>;

#[derive(Clone)]
struct Setup {
    on_error: OnError,
    retry: RetryPolicy,
    breaker: BreakerConfig,
    default: Step,
}

impl Setup {
    fn new(on_error: OnError, default: Step) -> Self {
        Setup {
            on_error,
            // Retries that need no wait are made on the spot too.
            retry: RetryPolicy::attempts(2).backoff(Backoff::Constant(Duration::ZERO)),
            breaker: BreakerConfig::new()
                .failure_threshold(2)
                .success_threshold(2)
                .recovery_timeout(Duration::from_secs(1)),
            default,
        }
    }
}

#[derive(Clone, Debug)]
enum Act {
    Check(&'static str, u64),
    Peek(&'static str),
    Advance(Duration),
    /// The primary's behaviour from now on.
    Primary(Step),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Async,
    Now,
}

/// Everything a caller can observe after a scenario.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    answers: Vec<String>,
    stats: FailoverStats,
    breaker: BreakerState,
    charged: Vec<(String, u64)>,
    fallback_left: Vec<u64>,
}

fn shown<E: Debug>(r: &Result<Decision, E>) -> String {
    format!("{r:?}")
}

/// Runs `acts` on fresh twins; in `Now` mode also returns the indexes of the acts where the
/// on-the-spot call gave `None` (and the async call answered instead).
async fn run(setup: &Setup, acts: &[Act], mode: Mode) -> (Observed, Vec<usize>) {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(setup.default).answering_now();
    let fallback = Fallback::new(&clock, true);
    let f: F<'_> = Failover::builder(&primary)
        .fallback(&fallback)
        .on_error(setup.on_error)
        .retry(setup.retry)
        .breaker(setup.breaker)
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let mut answers = Vec::new();
    let mut nones = Vec::new();
    for (i, act) in acts.iter().enumerate() {
        match *act {
            Act::Check(key, cost) => {
                let now = match mode {
                    Mode::Now => f.check_now(key, cost),
                    Mode::Async => None,
                };
                let answer = match now {
                    Some(answer) => answer,
                    None => {
                        if mode == Mode::Now {
                            nones.push(i);
                        }
                        f.check(key, cost).await
                    }
                };
                answers.push(shown(&answer));
            }
            Act::Peek(key) => {
                let now = match mode {
                    Mode::Now => f.peek_now(key),
                    Mode::Async => None,
                };
                let answer = match now {
                    Some(answer) => answer,
                    None => {
                        if mode == Mode::Now {
                            nones.push(i);
                        }
                        f.peek(key).await
                    }
                };
                answers.push(shown(&answer));
            }
            Act::Advance(d) => clock.advance(d),
            Act::Primary(step) => primary.set_default(step),
        }
    }
    let observed = Observed {
        answers,
        stats: f.stats(),
        breaker: f.breaker().state(),
        charged: primary.charged(),
        fallback_left: ["a", "b", "c"].iter().map(|k| fallback.left(k)).collect(),
    };
    (observed, nones)
}

/// Runs both ways, asserts they agree, and returns what was observed and where `check_now` /
/// `peek_now` gave `None`.
async fn same_both_ways(setup: &Setup, acts: &[Act]) -> (Observed, Vec<usize>) {
    let (by_async, _) = run(setup, acts, Mode::Async).await;
    let (by_now, nones) = run(setup, acts, Mode::Now).await;
    assert_eq!(
        by_now, by_async,
        "check_now/peek_now differ from check/peek"
    );
    (by_now, nones)
}

/// Closed, failing until the breaker opens, open (the policy answers), half-open probes after
/// the recovery timeout, closed again; checks and peeks all along.
fn outage_cycle() -> Vec<Act> {
    use Act::*;
    vec![
        Check("a", 1), // 0: failure 1 (when failing)
        Check("b", 1), // 1: failure 2, opens
        Check("b", 3), // 2: open, short-circuited
        Peek("b"),     // 3: short-circuited
        Check("c", 0), // 4: short-circuited
        Advance(Duration::from_millis(999)),
        Check("a", 1), // 6: still open
        Advance(Duration::from_millis(1)),
        Check("c", 1), // 8: the probe; fails and reopens
        Primary(Step::Allow),
        Check("c", 1), // 10: open again
        Advance(Duration::from_secs(1)),
        Check("a", 1), // 12: probe 1 succeeds
        Peek("a"),     // 13: probe 2 succeeds, closes
        Check("b", 1), // 14
        Peek("a"),
        Primary(Step::Deny(7)),
        Check("b", 1),
        Peek("c"),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_healthy_primary_answers_the_same_on_the_spot() {
    let setup = Setup::new(OnError::Error, Step::Allow);
    let (seen, nones) = same_both_ways(&setup, &outage_cycle()).await;
    assert!(
        nones.is_empty(),
        "every call answered on the spot: {nones:?}"
    );
    assert_eq!(seen.breaker, BreakerState::Closed);
    assert_eq!(seen.stats.trips, 0);
    assert_eq!(seen.charged.len(), 9, "every check with Allow charged");
    assert_eq!(
        seen.answers.last().unwrap(),
        &shown(&Ok::<_, CheckError>(Decision::deny(100, 0, 7, 7)))
    );
}

#[tokio::test(start_paused = true)]
async fn outages_under_every_policy_and_failure_kind_answer_the_same_on_the_spot() {
    let policies = [
        OnError::Allow,
        OnError::Deny {
            retry_after: Duration::from_millis(750),
        },
        OnError::Error,
        OnError::Fallback,
    ];
    for on_error in policies {
        for kind in [ErrorKind::NotCharged, ErrorKind::Indeterminate] {
            let setup = Setup::new(on_error, Step::Fail(kind));
            let (seen, nones) = same_both_ways(&setup, &outage_cycle()).await;
            let s = &seen.stats;
            // Failures 1 and 2, the failed probe: each NotCharged one retried once, on the spot.
            let (failures, retries) = match kind {
                ErrorKind::NotCharged => (6, 3),
                _ => (3, 0),
            };
            let counted = s.errors.not_charged + s.errors.indeterminate;
            assert_eq!(
                (counted, s.retries),
                (failures, retries),
                "{on_error:?} {kind:?}"
            );
            assert_eq!((s.trips, seen.breaker), (2, BreakerState::Closed));
            // Open: checks b/3, c/0, a/1, c/1 and peek b.
            assert_eq!(s.short_circuited, 5, "{on_error:?} {kind:?}");
            if on_error == OnError::Fallback {
                // Admissions after a NotCharged failure or a short-circuit are queued for
                // replay, and a check that would reach the primary while any are queued is left
                // to the async call (which replays after its decision): the second failing
                // check when the first was NotCharged, the probes, and the first check once
                // closed, which drains the queue. Short-circuited checks and peeks send no
                // replays, so they are answered on the spot.
                let expect: &[usize] = match kind {
                    ErrorKind::NotCharged => &[1, 8, 12, 14],
                    _ => &[8, 12, 14],
                };
                assert_eq!(nones, expect, "{on_error:?} {kind:?}");
                assert_eq!(s.replay.pending, 0);
                assert_eq!(s.fallback_decisions, 7, "3 failed checks, 4 open");
            } else {
                assert!(nones.is_empty(), "{on_error:?} {kind:?}: {nones:?}");
                assert_eq!(s.fallback_decisions, 0);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_and_config_errors_are_returned_the_same_on_the_spot() {
    for kind in [
        ErrorKind::InsufficientCapacity { max: 5 },
        ErrorKind::Config,
    ] {
        let setup = Setup::new(OnError::Fallback, Step::Fail(kind));
        let (seen, nones) = same_both_ways(&setup, &outage_cycle()).await;
        assert!(nones.is_empty());
        assert_eq!(seen.breaker, BreakerState::Closed, "never trips");
        assert_eq!(seen.stats.fallback_decisions, 0, "never masked");
        assert_eq!(seen.fallback_left, [10, 10, 10]);
    }
}

#[tokio::test(start_paused = true)]
async fn not_charged_retries_without_wait_are_made_on_the_spot() {
    let mut setup = Setup::new(OnError::Error, Step::Allow);
    setup.retry = RetryPolicy::attempts(4).backoff(Backoff::Constant(Duration::ZERO));
    let acts = [
        Act::Primary(NOT_CHARGED),
        Act::Check("a", 1), // 4 attempts, all fail
        Act::Primary(Step::Allow),
        Act::Check("a", 1),
    ];
    let (seen, nones) = same_both_ways(&setup, &acts).await;
    assert!(nones.is_empty());
    assert_eq!((seen.stats.retries, seen.stats.errors.not_charged), (3, 4));
    assert_eq!(seen.charged, [("a".to_owned(), 1)]);
}

/// A primary that answers on the spot and fails `NotCharged` twice, then admits; 3 attempts.
fn retried_primary() -> Scripted {
    Scripted::new([NOT_CHARGED, NOT_CHARGED], Step::Allow).answering_now()
}

#[tokio::test(start_paused = true)]
async fn zero_backoff_retries_reach_the_same_admission_on_the_spot() {
    let clock = Arc::new(ManualClock::new());
    let primary = retried_primary();
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .retry(RetryPolicy::attempts(3).max_delay(Duration::ZERO))
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let d = f.check_now("k", 1).unwrap().unwrap();
    assert_eq!(d, Decision::allow(100, 99, 1));
    assert_eq!(primary.checks(), 3);
    let s = f.stats();
    assert_eq!((s.retries, s.errors.not_charged), (2, 2));
    assert_eq!(primary.charged(), [("k".to_owned(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_would_wait_is_left_to_the_async_check_with_nothing_counted() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED).answering_now();
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .retry(RetryPolicy::attempts(3).backoff(Backoff::Constant(Duration::from_millis(10))))
        .breaker(BreakerConfig::new().failure_threshold(1))
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    assert!(f.check_now("k", 1).is_none());
    assert_eq!(primary.checks(), 1, "asked once, failed without charging");
    assert_eq!(f.stats(), fresh_stats(&f));
    assert_eq!(
        f.breaker().state(),
        BreakerState::Closed,
        "no failure recorded"
    );
    // The async check does the waiting retries.
    let start = tokio::time::Instant::now();
    let err = f.check("k", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotCharged);
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    assert_eq!(primary.checks(), 4);
    assert_eq!((f.stats().retries, f.stats().errors.not_charged), (2, 3));
    assert_eq!(f.breaker().state(), BreakerState::Open);
}

/// The stats of a failover that has done nothing yet (breaker closed, nothing counted).
fn fresh_stats<K: ?Sized + ToOwned, P, Fb, C: traffik::Clock>(
    f: &Failover<K, P, Fb, C>,
) -> FailoverStats {
    let s = f.stats();
    assert_eq!(s.breaker, BreakerState::Closed);
    assert_eq!(
        (
            s.trips,
            s.short_circuited,
            s.retries,
            s.timeouts,
            s.fallback_decisions,
            s.allowed_on_error,
            s.denied_on_error
        ),
        (0, 0, 0, 0, 0, 0, 0)
    );
    assert_eq!(s.errors, Default::default());
    assert_eq!(s.replay, Default::default());
    s
}

#[tokio::test(start_paused = true)]
async fn a_primary_that_cannot_answer_now_gives_none_and_is_not_charged() {
    // A networked store: its check_now is always None.
    let primary = Scripted::always(Step::Allow);
    let f: Failover<str, _> = Failover::builder(&primary).build().unwrap();
    assert!(f.check_now("k", 1).is_none());
    assert!(f.peek_now("k").is_none());
    assert_eq!(primary.checks(), 0);
    fresh_stats(&f);
    // One that answers on the spot but has to wait for this step.
    let primary =
        Scripted::new([Step::Slow(Duration::from_millis(5))], Step::Allow).answering_now();
    let f: Failover<str, _> = Failover::builder(&primary).build().unwrap();
    assert!(f.check_now("k", 1).is_none());
    assert!(primary.charged().is_empty());
    assert!(f.check("k", 1).await.unwrap().is_allowed(), "the slow step");
    assert_eq!(
        f.check_now("k", 2).unwrap().unwrap(),
        Decision::allow(100, 99, 1)
    );
    assert_eq!(
        primary.charged(),
        [("k".to_owned(), 1), ("k".to_owned(), 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn not_charged_with_a_fallback_that_cannot_answer_now_gives_none() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED).answering_now();
    let fallback = Fallback::new(&clock, false);
    let f: F<'_> = Failover::builder(&primary)
        .fallback(&fallback)
        .breaker(BreakerConfig::new().failure_threshold(1))
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    assert!(f.check_now("a", 1).is_none());
    assert!(f.peek_now("a").is_none());
    fresh_stats(&f);
    assert_eq!(fallback.left("a"), 10);
    // The async check decides with the fallback, and opens the breaker.
    assert!(f.check("a", 1).await.unwrap().is_allowed());
    assert_eq!(fallback.left("a"), 9);
    assert_eq!(f.breaker().state(), BreakerState::Open);
    // Open: the fallback cannot answer on the spot, so neither can the failover, and the
    // short-circuit is not counted until the async check makes it.
    let short = f.stats().short_circuited;
    assert!(f.check_now("a", 1).is_none());
    assert!(f.peek_now("a").is_none());
    assert_eq!(f.stats().short_circuited, short);
    assert_eq!(fallback.left("a"), 9);
}

#[tokio::test(start_paused = true)]
async fn indeterminate_with_a_fallback_that_cannot_answer_now_returns_the_primary_error() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(INDETERMINATE).answering_now();
    let fallback = Fallback::new(&clock, false);
    let f: F<'_> = Failover::builder(&primary)
        .fallback(&fallback)
        .breaker(BreakerConfig::new().failure_threshold(1))
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    // The primary may have counted it: `None` would have the async call ask it again.
    let err = f.check_now("a", 1).unwrap().unwrap_err();
    assert!(matches!(err, FailoverError::Primary(_)));
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
    assert_eq!(primary.checks(), 1);
    assert_eq!(fallback.left("a"), 10, "the fallback was not charged");
    let s = f.stats();
    assert_eq!((s.errors.indeterminate, s.fallback_decisions), (1, 0));
    assert_eq!(
        f.breaker().state(),
        BreakerState::Open,
        "the failure counted"
    );
    // A peek charges nothing, so it can leave the whole call to the async peek.
    let clock2 = Arc::new(ManualClock::new());
    let fallback2 = Fallback::new(&clock2, false);
    let g: F<'_> = Failover::builder(&primary)
        .fallback(&fallback2)
        .breaker(BreakerConfig::new().failure_threshold(1))
        .clock(clock2)
        .build()
        .unwrap();
    assert!(g.peek_now("a").is_none());
    assert_eq!(g.breaker().state(), BreakerState::Closed);
    assert_eq!(g.stats().errors.indeterminate, 0);
}

#[tokio::test(start_paused = true)]
async fn a_probe_the_primary_cannot_answer_now_is_handed_back() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED);
    let fallback = Fallback::new(&clock, true);
    let f: F<'_> = Failover::builder(&primary)
        .fallback(&fallback)
        .on_error(OnError::Allow)
        .breaker(
            BreakerConfig::new()
                .failure_threshold(1)
                .success_threshold(1),
        )
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    assert!(f.check("a", 1).await.unwrap().is_allowed()); // fails: opens
    assert_eq!(f.breaker().state(), BreakerState::Open);
    // Open: the Allow policy answers on the spot.
    let d = f.check_now("a", 1).unwrap().unwrap();
    assert_eq!(d, Decision::allow(0, 0, 0));
    assert_eq!(f.stats().short_circuited, 1);
    clock.advance(Duration::from_secs(10));
    primary.set_default(Step::Allow);
    // The probe goes to a primary that cannot answer on the spot: `None`, probe handed back.
    assert!(f.check_now("b", 1).is_none());
    assert_eq!(f.breaker().state(), BreakerState::HalfOpen);
    assert_eq!(f.stats().short_circuited, 1);
    // So the async check gets the probe, reaches the primary and closes the breaker.
    assert!(f.check("b", 1).await.unwrap().is_allowed());
    assert_eq!(primary.charged(), [("b".to_owned(), 1)]);
    assert_eq!(f.breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn pending_replays_leave_the_check_to_the_async_call() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED).answering_now();
    let fallback = Fallback::new(&clock, true);
    let f: F<'_> = Failover::builder(&primary)
        .fallback(&fallback)
        .breaker(
            BreakerConfig::new()
                .failure_threshold(1)
                .success_threshold(1),
        )
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    // A NotCharged failure (on the spot, answered by the fallback) and a short-circuit.
    assert!(f.check_now("a", 1).unwrap().unwrap().is_allowed());
    assert!(f.check_now("b", 2).unwrap().unwrap().is_allowed());
    assert_eq!(f.stats().replay.pending, 2);
    primary.set_default(Step::Allow);
    clock.advance(Duration::from_secs(10));
    let checks = primary.checks();
    assert!(
        f.check_now("c", 1).is_none(),
        "the replay needs the async call"
    );
    assert_eq!(primary.checks(), checks, "nothing asked");
    // A peek sends no replays: it is answered on the spot (and is the probe that closes).
    assert_eq!(
        f.peek_now("c").unwrap().unwrap(),
        Decision::allow(100, 42, 1)
    );
    assert_eq!(f.breaker().state(), BreakerState::Closed);
    assert!(f.check("c", 1).await.unwrap().is_allowed());
    assert_eq!(
        primary.charged(),
        [
            ("c".to_owned(), 1),
            ("a".to_owned(), 1),
            ("b".to_owned(), 2)
        ]
    );
    assert_eq!(f.stats().replay.pending, 0);
    assert!(f.check_now("c", 1).unwrap().unwrap().is_allowed());
}

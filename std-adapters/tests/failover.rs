//! `Failover` against a scripted primary: which failures are retried (counted in calls), the
//! per-call timeout on Tokio's paused clock, every `OnError` policy, the breaker short-circuit,
//! the fallback's budget, and the replay of fallback charges after recovery.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{Scripted, Step};
use tokio::time::Instant;
use traffik::failover::{
    node_share, Backoff, BreakerConfig, BreakerState, Failover, FailoverBuildError, FailoverError,
    OnError, RetryPolicy,
};
use traffik::{AsyncLimiter, ErrorKind, KeyedLimiter, LimiterError, ManualClock, RateLimiter};

const NOT_CHARGED: Step = Step::Fail(ErrorKind::NotCharged);
const INDETERMINATE: Step = Step::Fail(ErrorKind::Indeterminate);

type Local = KeyedLimiter<str, traffik::AnyAlgorithm, Arc<ManualClock>>;

/// An in-process fallback on a manual clock: `rate`, burst = its limit.
fn local(rate: &str, clock: &Arc<ManualClock>) -> Local {
    traffik::builder()
        .rate(rate)
        .capacity(64)
        .build_with_clock(Arc::clone(clock))
        .unwrap()
}

fn retry_10ms(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts).backoff(Backoff::Constant(Duration::from_millis(10)))
}

#[tokio::test(start_paused = true)]
async fn not_charged_failures_are_retried_until_one_succeeds() {
    let primary = Scripted::new([NOT_CHARGED, NOT_CHARGED], Step::Allow);
    let f: Failover<str, _> = Failover::builder(&primary)
        .retry(retry_10ms(3))
        .build()
        .unwrap();
    let start = Instant::now();
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    assert_eq!(primary.checks(), 3);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(20),
        "two 10 ms backoffs"
    );
    let s = f.stats();
    assert_eq!((s.retries, s.errors.not_charged), (2, 2));
    assert_eq!(primary.charged(), vec![("k".to_owned(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_max_attempts() {
    let primary = Scripted::always(NOT_CHARGED);
    let f: Failover<str, _> = Failover::builder(&primary)
        .retry(retry_10ms(3))
        .build()
        .unwrap();
    let err = f.check("k", 1).await.unwrap_err();
    assert!(matches!(err, FailoverError::Primary(_)));
    assert_eq!(err.kind(), ErrorKind::NotCharged);
    assert_eq!(primary.checks(), 3);
    let s = f.stats();
    assert_eq!((s.retries, s.errors.not_charged), (2, 3));
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_is_capped() {
    let primary = Scripted::new([NOT_CHARGED; 4], Step::Allow);
    let retry = RetryPolicy::attempts(5)
        .backoff(Backoff::Exponential {
            initial: Duration::from_millis(10),
            factor: 3,
        })
        .max_delay(Duration::from_millis(50));
    let f: Failover<str, _> = Failover::builder(&primary).retry(retry).build().unwrap();
    let start = Instant::now();
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    // 10 + 30 + min(90, 50) + min(270, 50)
    assert_eq!(start.elapsed(), Duration::from_millis(140));
    assert_eq!(primary.checks(), 5);
}

#[tokio::test(start_paused = true)]
async fn indeterminate_failures_are_never_retried() {
    let primary = Scripted::new([INDETERMINATE], Step::Allow);
    let f: Failover<str, _> = Failover::builder(&primary)
        .retry(retry_10ms(5))
        .build()
        .unwrap();
    let err = f.check("k", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
    assert_eq!(primary.checks(), 1);
    let s = f.stats();
    assert_eq!((s.retries, s.errors.indeterminate), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_ends_the_call_at_exactly_the_limit_and_is_not_retried() {
    let primary = Scripted::new([Step::Hang], Step::Allow);
    let f: Failover<str, _> = Failover::builder(&primary)
        .retry(retry_10ms(5))
        .timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = f.check("k", 1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert!(matches!(err, FailoverError::Timeout(d) if d == Duration::from_millis(50)));
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
    assert_eq!(primary.checks(), 1);
    let s = f.stats();
    assert_eq!((s.timeouts, s.retries, s.errors.indeterminate), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_within_the_timeout_is_used() {
    let primary = Scripted::always(Step::Slow(Duration::from_millis(49)));
    let f: Failover<str, _> = Failover::builder(&primary)
        .timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    assert_eq!(f.stats().timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn on_error_allow_and_deny_answer_for_the_primary() {
    let primary = Scripted::always(NOT_CHARGED);
    let allow: Failover<str, _> = Failover::builder(&primary)
        .on_error(OnError::Allow)
        .build()
        .unwrap();
    let d = allow.check("k", 1).await.unwrap();
    assert!(d.is_allowed());
    assert_eq!((d.limit(), d.remaining()), (0, 0));
    assert_eq!(allow.stats().allowed_on_error, 1);

    let deny: Failover<str, _> = Failover::builder(&primary)
        .on_error(OnError::Deny {
            retry_after: Duration::from_millis(750),
        })
        .build()
        .unwrap();
    let d = deny.check("k", 1).await.unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Duration::from_millis(750));
    assert_eq!(deny.stats().denied_on_error, 1);
}

#[tokio::test(start_paused = true)]
async fn on_error_error_returns_the_primary_error_with_its_source() {
    let primary = Scripted::always(NOT_CHARGED);
    let f: Failover<str, _> = Failover::builder(&primary).build().unwrap();
    let err = f.check("k", 1).await.unwrap_err();
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "scripted failure (NotCharged)");
}

#[tokio::test(start_paused = true)]
async fn capacity_and_config_errors_are_never_masked_nor_trip_the_breaker() {
    let clock = Arc::new(ManualClock::new());
    for kind in [
        ErrorKind::InsufficientCapacity { max: 5 },
        ErrorKind::Config,
    ] {
        let primary = Scripted::always(Step::Fail(kind));
        let fallback = local("10/s", &clock);
        let f: Failover<str, _, _, _> = Failover::builder(&primary)
            .fallback(&fallback)
            .breaker(BreakerConfig::new().failure_threshold(1))
            .clock(Arc::clone(&clock))
            .build()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(f.check("k", 6).await.unwrap_err().kind(), kind);
        }
        assert_eq!(primary.checks(), 3, "never short-circuited");
        assert_eq!(f.breaker().state(), BreakerState::Closed);
        assert_eq!(fallback.peek("k").remaining(), 10, "fallback never asked");
        assert_eq!(f.stats().fallback_decisions, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_skips_the_primary_until_recovery() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED);
    let fallback = local("100/s", &clock);
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .fallback(&fallback)
        .breaker(
            BreakerConfig::new()
                .failure_threshold(2)
                .recovery_timeout(Duration::from_secs(5)),
        )
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(f.check("k", 1).await.unwrap().is_allowed()); // from the fallback
    }
    assert_eq!(f.breaker().state(), BreakerState::Open);
    for _ in 0..5 {
        assert!(f.check("k", 1).await.unwrap().is_allowed());
    }
    assert_eq!(
        primary.checks(),
        2,
        "the open breaker kept calls off the primary"
    );
    let s = f.stats();
    assert_eq!(
        (s.trips, s.short_circuited, s.fallback_decisions),
        (1, 5, 7)
    );

    // After the recovery timeout one probe reaches the (healthy again) primary and closes it.
    primary.set_default(Step::Allow);
    clock.advance(Duration::from_secs(5));
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    assert_eq!(primary.checks(), 3);
    assert_eq!(
        f.breaker().state(),
        BreakerState::HalfOpen,
        "default: 2 successes"
    );
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    assert_eq!(f.breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_with_error_policy_is_circuit_open() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED);
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .breaker(BreakerConfig::new().failure_threshold(1))
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    assert!(matches!(
        f.check("k", 1).await,
        Err(FailoverError::Primary(_))
    ));
    let err = f.check("k", 1).await.unwrap_err();
    assert!(matches!(err, FailoverError::CircuitOpen));
    assert_eq!(err.kind(), ErrorKind::NotCharged);
    assert_eq!(primary.checks(), 1);
}

#[tokio::test(start_paused = true)]
async fn during_an_outage_a_node_admits_exactly_its_share() {
    // Global 10 a second over 2 nodes: this node's fallback admits 5 at once, then one every
    // 200 ms.
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED);
    let share: Local = node_share("10/s", 2)
        .unwrap()
        .capacity(64)
        .build_with_clock(Arc::clone(&clock))
        .unwrap();
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .fallback(&share)
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let mut admitted = 0;
    for _ in 0..8 {
        if f.check("k", 1).await.unwrap().is_allowed() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
    clock.advance(Duration::from_millis(199));
    assert!(f.check("k", 1).await.unwrap().is_denied());
    clock.advance(Duration::from_millis(1));
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    assert_eq!(f.stats().fallback_decisions, 10);
}

#[tokio::test(start_paused = true)]
async fn fallback_admissions_are_replayed_to_the_primary_after_recovery() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED);
    let fallback = local("100/s", &clock);
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .fallback(&fallback)
        .breaker(
            BreakerConfig::new()
                .failure_threshold(1)
                .success_threshold(1)
                .recovery_timeout(Duration::from_secs(1)),
        )
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    // One NotCharged failure (queued: the primary certainly did not count it), then three
    // short-circuited calls.
    for (key, cost) in [("a", 1), ("a", 2), ("b", 1), ("c", 3)] {
        assert!(f.check(key, cost).await.unwrap().is_allowed());
    }
    assert_eq!(f.stats().replay.queued, 4);
    assert_eq!(f.stats().replay.pending, 4);
    assert!(primary.charged().is_empty());

    primary.set_default(Step::Allow);
    clock.advance(Duration::from_secs(1));
    assert!(f.check("d", 1).await.unwrap().is_allowed()); // the probe closes the breaker
    let expect: Vec<(String, u64)> = [("d", 1), ("a", 1), ("a", 2), ("b", 1), ("c", 3)]
        .iter()
        .map(|&(k, c)| (k.to_owned(), c))
        .collect();
    assert_eq!(primary.charged(), expect);
    let r = f.stats().replay;
    assert_eq!((r.replayed, r.pending, r.dropped), (4, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn admissions_after_a_timeout_are_not_replayed() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::new([Step::Hang], Step::Allow);
    let fallback = local("100/s", &clock);
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .fallback(&fallback)
        .timeout(Some(Duration::from_millis(20)))
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    assert!(f.check("a", 1).await.unwrap().is_allowed()); // timed out: fallback decided
    assert_eq!(f.stats().fallback_decisions, 1);
    assert_eq!(
        f.stats().replay.queued,
        0,
        "the primary may have counted it already"
    );
    assert!(f.check("b", 1).await.unwrap().is_allowed());
    assert_eq!(primary.charged(), vec![("b".to_owned(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn the_replay_queue_is_capped_and_counts_what_it_drops() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED);
    let fallback = local("100/s", &clock);
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .fallback(&fallback)
        .replay_capacity(2)
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    for _ in 0..5 {
        assert!(f.check("k", 1).await.unwrap().is_allowed());
    }
    let r = f.stats().replay;
    assert_eq!((r.queued, r.dropped, r.pending), (2, 3, 2));
}

#[tokio::test(start_paused = true)]
async fn replays_go_in_batches_and_report_denials_and_requeues() {
    let clock = Arc::new(ManualClock::new());
    let primary = Scripted::always(NOT_CHARGED);
    let fallback = local("100/s", &clock);
    let f: Failover<str, _, _, _> = Failover::builder(&primary)
        .fallback(&fallback)
        .breaker(
            BreakerConfig::new()
                .failure_threshold(1)
                .success_threshold(1),
        )
        .replay_batch(2)
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    for key in ["a", "b", "c", "d", "e"] {
        assert!(f.check(key, 1).await.unwrap().is_allowed());
    }
    clock.advance(Duration::from_secs(10));
    // The probe, then one batch of 2 replays: "a" denied by the primary, "b" not charged.
    primary.script([Step::Allow, Step::Deny(5), NOT_CHARGED]);
    primary.set_default(Step::Allow);
    assert!(f.check("p", 1).await.unwrap().is_allowed());
    let r = f.stats().replay;
    assert_eq!((r.replayed, r.denied, r.requeued, r.pending), (0, 1, 1, 4));
    // "b" went back to the front; the rest drain two at a time.
    assert_eq!(f.flush_replay().await, 4);
    let r = f.stats().replay;
    assert_eq!((r.replayed, r.denied, r.requeued, r.pending), (4, 1, 1, 0));
    let keys: Vec<String> = primary.charged().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["p", "b", "c", "d", "e"]);
}

#[tokio::test(start_paused = true)]
async fn build_refuses_incoherent_configurations() {
    let primary = Scripted::always(Step::Allow);
    let e = Failover::builder(&primary)
        .on_error(OnError::Fallback)
        .build::<str>()
        .unwrap_err();
    assert_eq!(e, FailoverBuildError::MissingFallback);
    let e = Failover::builder(&primary)
        .retry(RetryPolicy::attempts(0))
        .build::<str>()
        .unwrap_err();
    assert_eq!(e, FailoverBuildError::ZeroAttempts);
    let e = Failover::builder(&primary)
        .replay_batch(0)
        .build::<str>()
        .unwrap_err();
    assert_eq!(e, FailoverBuildError::ZeroReplayBatch);
    let e = Failover::builder(&primary)
        .breaker(BreakerConfig::new().failure_threshold(0))
        .build::<str>()
        .unwrap_err();
    assert!(matches!(e, FailoverBuildError::Breaker(_)));
}

#[tokio::test(start_paused = true)]
async fn in_process_primary_round_trip() {
    let primary: RateLimiter<str> = traffik::builder().rate("2/s").build().unwrap();
    let f: Failover<str, _> = Failover::builder(primary).build().unwrap();
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    assert!(f.check("k", 1).await.unwrap().is_allowed());
    assert!(f.check("k", 1).await.unwrap().is_denied());
    assert_eq!(f.peek("k").await.unwrap().remaining(), 0);
    f.reset("k").await.unwrap();
    assert_eq!(f.peek("k").await.unwrap().remaining(), 2);
}

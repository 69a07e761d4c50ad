//! `until_ready` on Tokio's paused clock, with an in-process limiter whose clock is Tokio's:
//! exact wake-up times, jitter bounds, deadlines, cancellation, and impossible costs.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;
use support::{Scripted, Step};
use tokio::time::Instant;
use traffik::failover::{Failover, OnError};
use traffik::wait::{until_ready, until_ready_with, WaitError, WaitOptions, MIN_WAIT};
use traffik::{AnyAlgorithm, CheckError, Clock, ErrorKind, KeyedLimiter};

/// A `Clock` that reads Tokio's (pausable) time, so limiter and sleeps share one timeline.
struct TokioClock(Instant);

impl Clock for TokioClock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap()
    }
}

fn limiter(rate: &str, burst: u64) -> KeyedLimiter<str, AnyAlgorithm, TokioClock> {
    traffik::builder()
        .rate(rate)
        .burst(burst)
        .capacity(16)
        .build_with_clock(TokioClock(Instant::now()))
        .unwrap()
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn wakes_exactly_at_retry_after() {
    let l = limiter("1/s", 1);
    let t0 = Instant::now();
    for n in 0..4u32 {
        let d = until_ready(&l, "k", 1).await.unwrap();
        assert!(d.is_allowed());
        assert_eq!(t0.elapsed(), SEC * n, "admission {n}");
    }
}

#[tokio::test(start_paused = true)]
async fn wake_ups_round_up_to_tokio_whole_milliseconds() {
    // 3 a second: GCRA's emission interval is ceil(1e9 / 3) = 333,333,334 ns, which Tokio's
    // millisecond timer rounds up to 334 ms.
    let l = limiter("3/s", 1);
    let t0 = Instant::now();
    assert!(until_ready(&l, "k", 1).await.unwrap().is_allowed());
    let d = until_ready(&l, "k", 1).await.unwrap();
    assert!(d.is_allowed());
    assert_eq!(t0.elapsed(), Duration::from_millis(334));
}

#[tokio::test(start_paused = true)]
async fn jitter_only_delays_and_stays_within_its_bound() {
    let jitter = Duration::from_millis(100);
    let l = limiter("1/s", 1);
    let mut offsets = Vec::new();
    assert!(until_ready(&l, "k", 1).await.unwrap().is_allowed());
    for _ in 0..20 {
        let denied_at = Instant::now();
        let d = until_ready_with(&l, "k", 1, WaitOptions::new().jitter(jitter)).await;
        assert!(d.unwrap().is_allowed());
        let extra = denied_at.elapsed() - SEC;
        // [retry_after, retry_after + jitter), plus at most Tokio's 1 ms rounding.
        assert!(extra < jitter + Duration::from_millis(1), "{extra:?}");
        offsets.push(extra);
    }
    offsets.sort();
    offsets.dedup();
    assert!(
        offsets.len() > 1,
        "20 jittered waits all identical: {offsets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_before_the_next_chance_ends_the_wait_at_once() {
    let l = limiter("1/s", 1);
    let t0 = Instant::now();
    assert!(until_ready(&l, "k", 1).await.unwrap().is_allowed());
    let opts = WaitOptions::new().deadline(t0 + SEC - Duration::from_millis(1));
    match until_ready_with(&l, "k", 1, opts).await {
        Err(WaitError::Deadline(d)) => assert_eq!(d.retry_after(), SEC),
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert_eq!(t0.elapsed(), Duration::ZERO, "gave up without sleeping");
    // Nothing was charged: a deadline of exactly the next chance is met, at exactly 1 s, even
    // with a jitter far longer than the slack (it is cut at the deadline).
    let opts = WaitOptions::new()
        .deadline(t0 + SEC)
        .jitter(Duration::from_secs(5));
    assert!(until_ready_with(&l, "k", 1, opts)
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(t0.elapsed(), SEC);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_wait_mid_sleep_charges_nothing() {
    let l = limiter("1/s", 1);
    let t0 = Instant::now();
    assert!(until_ready(&l, "k", 1).await.unwrap().is_allowed());
    let gave_up = tokio::time::timeout(Duration::from_millis(500), until_ready(&l, "k", 1)).await;
    assert!(gave_up.is_err(), "the wait was cut off mid-sleep");
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Had the abandoned wait charged, the key would be empty until 2 s.
    assert_eq!(l.peek("k").remaining(), 1);
    assert!(l.check("k", 1).unwrap().is_allowed());
}

#[tokio::test(start_paused = true)]
async fn an_impossible_cost_is_an_immediate_error() {
    let l = limiter("5/s", 5);
    let t0 = Instant::now();
    match until_ready(&l, "k", 6).await {
        Err(WaitError::Limiter(CheckError::InsufficientCapacity { max: 5 })) => {}
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_denial_without_a_wait_is_rechecked_after_min_wait() {
    let primary = Scripted::new([Step::Deny(0), Step::Deny(0)], Step::Allow);
    let t0 = Instant::now();
    assert!(until_ready(&primary, "k", 1).await.unwrap().is_allowed());
    assert_eq!(t0.elapsed(), MIN_WAIT * 2);
    assert_eq!(primary.checks(), 3);
}

#[tokio::test(start_paused = true)]
async fn waits_through_a_failover_deny_policy() {
    // The primary is down for two calls; the Deny policy says "come back in 250 ms".
    let primary = Scripted::new(
        [
            Step::Fail(ErrorKind::NotCharged),
            Step::Fail(ErrorKind::NotCharged),
        ],
        Step::Allow,
    );
    let f: Failover<str, _> = Failover::builder(&primary)
        .on_error(OnError::Deny {
            retry_after: Duration::from_millis(250),
        })
        .build()
        .unwrap();
    let t0 = Instant::now();
    assert!(until_ready(&f, "k", 1).await.unwrap().is_allowed());
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
    assert_eq!(primary.checks(), 3);
}

#[tokio::test(start_paused = true)]
async fn limiter_errors_end_the_wait_with_their_kind() {
    let primary = Scripted::always(Step::Fail(ErrorKind::Indeterminate));
    let err = until_ready(&primary, "k", 1).await.unwrap_err();
    assert_eq!(traffik::LimiterError::kind(&err), ErrorKind::Indeterminate);
    assert_eq!(primary.checks(), 1);
}

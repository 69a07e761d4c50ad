//! Every circuit-breaker transition, with exact counts and exact times on a `ManualClock`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;
use traffik::failover::{
    BreakerConfig, BreakerConfigError, BreakerState, CircuitBreaker, Rejected,
};
use traffik::ManualClock;

const MS: u64 = 1_000_000;

fn breaker(clock: &ManualClock, failures: u32, successes: u32) -> CircuitBreaker<&ManualClock> {
    let config = BreakerConfig::new()
        .failure_threshold(failures)
        .success_threshold(successes)
        .recovery_timeout(Duration::from_millis(100));
    CircuitBreaker::new(config, clock).unwrap()
}

fn fail(b: &CircuitBreaker<&ManualClock>) {
    b.acquire().unwrap().fail();
}

fn succeed(b: &CircuitBreaker<&ManualClock>) {
    b.acquire().unwrap().succeed();
}

#[test]
fn opens_after_exactly_n_consecutive_failures() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 3, 1);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.trips(), 0);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.trips(), 1);
    assert_eq!(b.acquire().unwrap_err(), Rejected::Open);
}

#[test]
fn success_while_closed_resets_the_failure_count() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 3, 1);
    fail(&b);
    fail(&b);
    succeed(&b);
    fail(&b);
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "only 2 failures since the success"
    );
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.trips(), 1);
}

#[test]
fn open_turns_calls_away_until_the_recovery_timeout_exactly() {
    let clock = ManualClock::starting_at(5 * MS);
    let b = breaker(&clock, 1, 1);
    fail(&b); // opened at 5 ms: half-open from 105 ms
    clock.set(105 * MS - 1);
    assert_eq!(b.acquire().unwrap_err(), Rejected::Open);
    assert_eq!(b.state(), BreakerState::Open);
    clock.set(105 * MS);
    let probe = b.acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(b.state(), BreakerState::HalfOpen);
    drop(probe);
}

#[test]
fn open_deadline_rounds_up_to_the_next_whole_millisecond() {
    // Opened at 5.5 ms with a 100 ms timeout: 105.5 ms is rounded up to 106 ms, so the breaker
    // is open at least the timeout and at most 1 ms longer.
    let clock = ManualClock::starting_at(5 * MS + MS / 2);
    let b = breaker(&clock, 1, 1);
    fail(&b);
    clock.set(105 * MS + MS / 2);
    assert_eq!(b.acquire().unwrap_err(), Rejected::Open);
    clock.set(106 * MS - 1);
    assert_eq!(b.acquire().unwrap_err(), Rejected::Open);
    clock.set(106 * MS);
    assert!(b.acquire().unwrap().is_probe());
}

#[test]
fn half_open_admits_exactly_one_probe_at_a_time_and_closes_after_m_successes() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 1, 3);
    fail(&b);
    clock.advance(Duration::from_millis(100));
    for round in 1..=3 {
        let probe = b.acquire().unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.acquire().unwrap_err(), Rejected::ProbeInFlight);
        assert_eq!(b.acquire().unwrap_err(), Rejected::ProbeInFlight);
        assert_eq!(b.state(), BreakerState::HalfOpen, "round {round}");
        probe.succeed();
    }
    assert_eq!(b.state(), BreakerState::Closed);
    let p = b.acquire().unwrap();
    assert!(!p.is_probe());
    p.succeed();
    assert_eq!(b.trips(), 1);
}

#[test]
fn a_failed_probe_reopens_for_a_full_timeout() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 2, 2);
    fail(&b);
    fail(&b);
    clock.advance(Duration::from_millis(100));
    succeed(&b); // first of two probes
    assert_eq!(b.state(), BreakerState::HalfOpen);
    b.acquire().unwrap().fail(); // at 100 ms: open again until 200 ms
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.trips(), 2);
    clock.set(200 * MS - 1);
    assert_eq!(b.acquire().unwrap_err(), Rejected::Open);
    clock.set(200 * MS);
    // The earlier successful probe does not count any more: two fresh ones are needed.
    succeed(&b);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    succeed(&b);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn a_dropped_probe_is_handed_back_without_counting() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 1, 2);
    fail(&b);
    clock.advance(Duration::from_millis(100));
    succeed(&b);
    let probe = b.acquire().unwrap();
    drop(probe); // e.g. the caller's future was cancelled mid-call
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let probe = b.acquire().unwrap();
    assert!(probe.is_probe());
    probe.succeed(); // the second success: the dropped probe did not count
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.trips(), 1);
}

#[test]
fn results_from_an_earlier_state_are_ignored() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 2, 1);
    let slow_ok = b.acquire().unwrap(); // granted while closed
    let slow_err = b.acquire().unwrap();
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(Duration::from_millis(100));
    let probe = b.acquire().unwrap();
    // A call granted while closed finishing now must neither close nor reopen the breaker.
    slow_ok.succeed();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    slow_err.fail();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.acquire().unwrap_err(), Rejected::ProbeInFlight);
    probe.succeed();
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.trips(), 1);

    // And a permit from the closed state before the outage cannot count toward a new one.
    let stale = b.acquire().unwrap();
    fail(&b);
    fail(&b);
    assert_eq!(b.trips(), 2);
    clock.advance(Duration::from_millis(100));
    succeed(&b); // closes again (one success needed)
    assert_eq!(b.state(), BreakerState::Closed);
    stale.fail(); // granted before the outage: ignored
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "one failure counted, not two"
    );
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.trips(), 3);
}

#[test]
fn zero_recovery_timeout_probes_on_the_next_call() {
    let clock = ManualClock::new();
    let config = BreakerConfig::new()
        .failure_threshold(1)
        .recovery_timeout(Duration::ZERO);
    let b = CircuitBreaker::new(config, &clock).unwrap();
    b.acquire().unwrap().fail();
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.acquire().unwrap().is_probe());
}

#[test]
fn far_future_deadlines_saturate_instead_of_wrapping() {
    let clock = ManualClock::starting_at(u64::MAX - 5);
    let config = BreakerConfig::new()
        .failure_threshold(1)
        .recovery_timeout(Duration::MAX);
    let b = CircuitBreaker::new(config, &clock).unwrap();
    b.acquire().unwrap().fail();
    assert_eq!(b.acquire().unwrap_err(), Rejected::Open);
    clock.set(u64::MAX);
    assert_eq!(b.acquire().unwrap_err(), Rejected::Open);
}

#[test]
fn zero_thresholds_are_refused() {
    let clock = ManualClock::new();
    let zero_fail = BreakerConfig::new().failure_threshold(0);
    assert_eq!(
        CircuitBreaker::new(zero_fail, &clock).unwrap_err(),
        BreakerConfigError::ZeroFailureThreshold
    );
    let zero_ok = BreakerConfig::new().success_threshold(0);
    assert_eq!(
        CircuitBreaker::new(zero_ok, &clock).unwrap_err(),
        BreakerConfigError::ZeroSuccessThreshold
    );
}

#[test]
fn many_threads_failing_at_once_open_it_once() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 4, 1);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1000 {
                    if let Ok(p) = b.acquire() {
                        p.fail();
                    }
                }
            });
        }
    });
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(
        b.trips(),
        1,
        "time never moved, so it can only have opened once"
    );
}

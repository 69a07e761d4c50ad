//! Loom model checks of the circuit breaker's state word (`traffik::failover::CircuitBreaker`).
//!
//! Every transition is a compare-and-swap on one `u64`, so among threads racing the same
//! transition exactly one may make it. The models check that in every interleaving:
//!
//! * threads racing into half-open get exactly one probe;
//! * threads failing at once open a closed breaker exactly once (one trip), and failures
//!   reported after it opened (from permits granted while closed) are ignored;
//! * a probe handed back (dropped) and a new caller racing for it never both hold a probe.
#![cfg(loom)]
#![allow(clippy::unwrap_used, missing_docs)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;
use traffik::failover::{BreakerConfig, BreakerState, CircuitBreaker, Rejected};
use traffik::ManualClock;
use traffik_loom_tests::explore;

fn breaker(failures: u32, successes: u32) -> CircuitBreaker<ManualClock> {
    let config = BreakerConfig::new()
        .failure_threshold(failures)
        .success_threshold(successes)
        .recovery_timeout(Duration::from_millis(100));
    CircuitBreaker::new(config, ManualClock::new()).unwrap()
}

#[test]
fn racing_into_half_open_admits_exactly_one_probe() {
    explore("half-open race", || {
        let b = Arc::new(breaker(1, 1));
        b.acquire().unwrap().fail();
        b.clock().advance(Duration::from_millis(100));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = Arc::clone(&b);
                thread::spawn(move || match b.acquire() {
                    Ok(probe) => {
                        assert!(probe.is_probe());
                        // Failing reopens it, so the loser can never get a second probe
                        // later in the same run: any second grant would be a race bug.
                        probe.fail();
                        true
                    }
                    Err(Rejected::ProbeInFlight | Rejected::Open) => false,
                })
            })
            .collect();
        let granted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&g| g)
            .count();
        assert_eq!(granted, 1);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.trips(), 2, "the first opening and the failed probe");
    });
}

#[test]
fn concurrent_failures_open_it_exactly_once() {
    explore("failure race", || {
        let b = Arc::new(breaker(2, 1));
        // Three callers; in the interleavings where all are let through before any failure
        // lands, the third failure arrives after the breaker opened and must be ignored.
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = Arc::clone(&b);
                thread::spawn(move || match b.acquire() {
                    Ok(p) => {
                        p.fail();
                        true
                    }
                    Err(_) => false,
                })
            })
            .collect();
        let failed = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&f| f)
            .count();
        assert!(failed >= 2, "two failures are needed to open it");
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.trips(), 1);
    });
}

#[test]
fn a_dropped_probe_and_a_new_caller_never_both_hold_one() {
    explore("probe hand-back", || {
        let b = Arc::new(breaker(1, 2));
        b.acquire().unwrap().fail();
        b.clock().advance(Duration::from_millis(100));
        let probe = b.acquire().unwrap();
        let holders = Arc::new(AtomicUsize::new(1));
        let (b2, h2) = (Arc::clone(&b), Arc::clone(&holders));
        let other = thread::spawn(move || {
            if let Ok(p) = b2.acquire() {
                assert_eq!(h2.fetch_add(1, Ordering::SeqCst), 0, "two probes at once");
                h2.fetch_sub(1, Ordering::SeqCst);
                p.succeed();
                true
            } else {
                false
            }
        });
        holders.fetch_sub(1, Ordering::SeqCst);
        drop(probe); // handed back without counting
        let got = other.join().unwrap();
        // Either the other caller probed (one success of two: still half-open) or it came too
        // early; either way the dropped probe counted for nothing.
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let next = b.acquire().unwrap();
        next.succeed();
        let expect = if got {
            BreakerState::Closed
        } else {
            BreakerState::HalfOpen
        };
        assert_eq!(b.state(), expect);
    });
}

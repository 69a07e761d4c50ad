//! Loom model checks of a checker that holds a stale clock reading: it read the clock, was
//! preempted while another thread moved the clock two windows on and charged the key, and then
//! charges with its old reading. The old reading may only be stricter: it must never reopen the
//! window the other thread charged.
#![cfg(loom)]
#![allow(clippy::unwrap_used)]

use loom::thread;
use std::sync::Arc;
use traffik_core::{
    AnyAlgorithm, FixedWindow, KeyedLimiter, Limiter, ManualClock, Rate, SlidingWindowCounter,
    TableConfig,
};

const SEC: u64 = 1_000_000_000;
/// Two and a half windows of one second on: window 2.
const LATER: u64 = 2 * SEC + SEC / 2;

fn model(f: impl Fn() + Sync + Send + 'static) {
    traffik_loom_tests::explore(module_path!(), f);
}

fn one_per_second() -> [AnyAlgorithm; 2] {
    [
        AnyAlgorithm::FixedWindow(FixedWindow::new(Rate::per_second(1)).unwrap()),
        AnyAlgorithm::SlidingWindowCounter(SlidingWindowCounter::new(Rate::per_second(1)).unwrap()),
    ]
}

/// Thread B moves the clock to window 2 and checks; thread A checks with whatever reading it
/// gets (0 if it read the clock before B moved it). Window 2 then admits exactly one: a third
/// check in window 2 is always denied, however A's stale charge interleaved with B's.
#[test]
fn a_preempted_stale_reading_never_reopens_a_window_single_key() {
    for alg in one_per_second() {
        model(move || {
            let clock = Arc::new(ManualClock::new());
            let limiter = Arc::new(Limiter::new(alg, Arc::clone(&clock)));
            let b = {
                let (clock, limiter) = (Arc::clone(&clock), Arc::clone(&limiter));
                thread::spawn(move || {
                    clock.set(LATER);
                    limiter.check(1).unwrap().is_allowed()
                })
            };
            let a = {
                let limiter = Arc::clone(&limiter);
                thread::spawn(move || limiter.check(1).unwrap().is_allowed())
            };
            let (a, b) = (a.join().unwrap(), b.join().unwrap());
            // B's reading is window 2; it is denied only if A's reading was too and A won.
            assert!(a || b, "nothing admitted at all");
            assert!(
                limiter.check(1).unwrap().is_denied(),
                "window 2 admitted a second check (a: {a}, b: {b})"
            );
        });
    }
}

/// The same race through the keyed table, where the stale reading is also held across the
/// insert lock of a new key.
#[test]
fn a_preempted_stale_reading_never_reopens_a_window_in_the_table() {
    for alg in one_per_second() {
        model(move || {
            let clock = Arc::new(ManualClock::new());
            let mut config = TableConfig::new(1, [1, 2, 3, 4]);
            config.shards = 1;
            let table: Arc<KeyedLimiter<u64, _, _>> =
                Arc::new(KeyedLimiter::new(alg, Arc::clone(&clock), config).unwrap());
            let b = {
                let (clock, table) = (Arc::clone(&clock), Arc::clone(&table));
                thread::spawn(move || {
                    clock.set(LATER);
                    table.check(&7, 1).unwrap().is_allowed()
                })
            };
            let a = {
                let table = Arc::clone(&table);
                thread::spawn(move || table.check(&7, 1).unwrap().is_allowed())
            };
            let (a, b) = (a.join().unwrap(), b.join().unwrap());
            assert!(a || b, "nothing admitted at all");
            assert!(
                table.check(&7, 1).unwrap().is_denied(),
                "window 2 admitted a second check (a: {a}, b: {b})"
            );
            assert_eq!(table.len(), 1);
        });
    }
}

//! The keyed sliding window log: exact counts per key, the key bound, dropping idle keys, the
//! async contract, and concurrent admissions on real threads.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use traffik::sliding_log::KeyedSlidingLog;
use traffik::{
    AsyncLimiter, CheckError, Decision, ManualClock, Rate, SlidingLog, SlidingLogLimiter,
};

const SEC: u64 = 1_000_000_000;

#[test]
fn keys_are_independent_and_exact() {
    let clock = ManualClock::new();
    let l: KeyedSlidingLog<String, _> =
        KeyedSlidingLog::new(SlidingLog::new(Rate::per_second(5)).unwrap(), &clock);
    for i in 0..5 {
        assert_eq!(l.check("a", 1).unwrap(), Decision::allow(5, 4 - i, SEC));
        clock.advance(Duration::from_millis(100));
    }
    // At 500 ms: "a" is full until its entry of 0 ms leaves at 1 s; "b" is untouched.
    assert_eq!(
        l.check("a", 1).unwrap(),
        Decision::deny(5, 0, 500_000_000, 900_000_000)
    );
    assert_eq!(
        l.check("a", 3).unwrap(),
        Decision::deny(5, 0, 700_000_000, 900_000_000)
    );
    assert_eq!(l.check("b", 5).unwrap(), Decision::allow(5, 0, SEC));
    assert_eq!(
        l.check("b", 6),
        Err(CheckError::InsufficientCapacity { max: 5 })
    );
    assert_eq!(
        l.check("c", 6),
        Err(CheckError::InsufficientCapacity { max: 5 })
    );
    assert_eq!(l.len(), 2, "a refused cost creates no ring");
    clock.advance(Duration::from_millis(700));
    // At 1.2 s the entries of 0, 100 and 200 ms have left "a".
    assert_eq!(l.peek("a"), Decision::allow(5, 3, 200_000_000));
    l.reset("a");
    assert_eq!(l.peek("a"), Decision::allow(5, 5, 0));
    assert_eq!(l.check("a", 5).unwrap(), Decision::allow(5, 0, SEC));
}

#[test]
fn key_bound_and_idle_removal() {
    let clock = ManualClock::new();
    let log = SlidingLog::new(Rate::per_second(4)).unwrap();
    assert_eq!(log.bytes_per_key(), 4 * 8 + 64);
    let l: KeyedSlidingLog<u64, _> = KeyedSlidingLog::with_max_keys(log, &clock, 2);
    assert!(l.check(&1, 1).unwrap().is_allowed());
    assert!(l.check(&2, 4).unwrap().is_allowed());
    assert_eq!(l.check(&3, 1), Err(CheckError::TableFull));
    // Peeks never create a ring, so they are not refused.
    assert_eq!(l.peek(&3), Decision::allow(4, 4, 0));
    clock.advance(Duration::from_millis(999));
    assert_eq!(l.remove_idle(), 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(l.remove_idle(), 2);
    assert!(l.is_empty());
    assert!(l.check(&3, 1).unwrap().is_allowed());
}

#[tokio::test]
async fn async_contract() {
    let clock = ManualClock::new();
    let keyed: KeyedSlidingLog<String, _> =
        KeyedSlidingLog::new(SlidingLog::new(Rate::per_minute(1)).unwrap(), &clock);
    let single = SlidingLogLimiter::new(SlidingLog::new(Rate::per_minute(1)).unwrap(), &clock);
    async fn twice<L: AsyncLimiter<str>>(l: &L) -> (bool, bool) {
        let first = l.check("k", 1).await.unwrap().is_allowed();
        let second = l.check("k", 1).await.unwrap().is_allowed();
        (first, second)
    }
    assert_eq!(twice(&keyed).await, (true, false));
    assert_eq!(twice(&single).await, (true, false));
    AsyncLimiter::<str>::reset(&keyed, "k").await.unwrap();
    assert_eq!(
        AsyncLimiter::<str>::peek(&keyed, "k")
            .await
            .unwrap()
            .remaining(),
        1
    );
    assert_eq!(
        AsyncLimiter::<str>::check_now(&single, "x", 1),
        Some(Ok(Decision::deny(1, 0, 60 * SEC, 60 * SEC)))
    );
}

/// Eight threads race for one key's 1,000 units at one instant: exactly 1,000 are admitted,
/// and the `remaining` values they report are each seen once (every admission saw its own
/// state).
#[test]
fn concurrent_admissions_are_exact() {
    let clock = Arc::new(ManualClock::starting_at(5 * SEC));
    let l: Arc<KeyedSlidingLog<u64, _>> = Arc::new(KeyedSlidingLog::new(
        SlidingLog::new(Rate::per_second(1_000)).unwrap(),
        Arc::clone(&clock),
    ));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                // The inherent method, not the `AsyncLimiter` impl for `Arc`.
                let l: &KeyedSlidingLog<u64, _> = &l;
                let mut seen = Vec::new();
                for _ in 0..400 {
                    let d = l.check(&7, 1).unwrap();
                    if d.is_allowed() {
                        seen.push(d.remaining());
                    }
                }
                seen
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..1_000).collect::<Vec<u64>>());
    assert_eq!(KeyedSlidingLog::peek(&l, &7).remaining(), 0);
}

//! Loom model checks of the keyed table's insert, reclaim and evict races.
//!
//! Under `--cfg loom` the table's probe window shrinks to 4 slots, so a one-shard table of
//! capacity 1 is exactly one window, and every slot is in play in every race.
#![cfg(loom)]
#![allow(clippy::unwrap_used)]

use loom::thread;
use std::sync::Arc;
use traffik_core::table::WINDOW;
use traffik_core::{Gcra, KeyedLimiter, ManualClock, OverflowPolicy, Rate, TableConfig};

type Table = KeyedLimiter<u64, Gcra, Arc<ManualClock>>;

const SEC: u64 = 1_000_000_000;

fn table(policy: OverflowPolicy, clock: &Arc<ManualClock>) -> Arc<Table> {
    let mut config = TableConfig::new(1, [1, 2, 3, 4]);
    config.shards = 1;
    config.overflow = policy;
    // One per second, burst 1: one admission makes a key non-fresh for exactly a second.
    let gcra = Gcra::with_burst(Rate::per_second(1), 1).unwrap();
    Arc::new(KeyedLimiter::new(gcra, Arc::clone(clock), config).unwrap())
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    traffik_loom_tests::explore(module_path!(), f);
}

/// Two threads inserting the same new key end with one slot, and exactly one is admitted.
#[test]
fn same_new_key_takes_one_slot() {
    model(|| {
        let clock = Arc::new(ManualClock::new());
        let t = table(OverflowPolicy::Deny, &clock);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let t = Arc::clone(&t);
                thread::spawn(move || t.check(&7, 1).unwrap().is_allowed())
            })
            .collect();
        let admitted: usize = handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(admitted, 1, "burst 1 admits one of two checks");
        assert_eq!(t.len(), 1, "one key, one slot");
        assert!(t.check(&7, 1).unwrap().is_denied());
    });
}

/// A new key reclaiming a fresh slot races a check of the key that owns it: both charges
/// land on the right key, once each.
#[test]
fn reclaim_racing_update_keeps_both_charges() {
    model(|| {
        let clock = Arc::new(ManualClock::new());
        let t = table(OverflowPolicy::Deny, &clock);
        for k in 0..WINDOW as u64 {
            assert!(t.check(&k, 1).unwrap().is_allowed());
        }
        // A second later every key is fresh again, so every slot is reclaimable.
        clock.set(SEC);
        let a = {
            let t = Arc::clone(&t);
            thread::spawn(move || t.check(&0, 1).unwrap().is_allowed())
        };
        let b = {
            let t = Arc::clone(&t);
            thread::spawn(move || t.check(&100, 1).unwrap().is_allowed())
        };
        assert!(a.join().unwrap());
        assert!(b.join().unwrap());
        // Neither charge was lost nor moved to the other key.
        assert!(t.check(&0, 1).unwrap().is_denied());
        assert!(t.check(&100, 1).unwrap().is_denied());
        assert_eq!(t.len(), WINDOW);
    });
}

/// An eviction racing a check of the evicted key: the newcomer's charge is its own, and the
/// old key is either still charged or gone (never charged twice, never charged for another).
#[test]
fn check_racing_eviction_stays_within_bound() {
    model(|| {
        let clock = Arc::new(ManualClock::new());
        let t = table(OverflowPolicy::EvictStalest, &clock);
        for k in 0..WINDOW as u64 {
            assert!(t.check(&k, 1).unwrap().is_allowed());
            clock.set(clock_now(&clock) + 1);
        }
        // Key 0 is the stalest (charged first); nothing is fresh.
        let a = {
            let t = Arc::clone(&t);
            thread::spawn(move || t.check(&0, 1).unwrap())
        };
        let b = {
            let t = Arc::clone(&t);
            thread::spawn(move || t.check(&100, 1).unwrap())
        };
        let (da, db) = (a.join().unwrap(), b.join().unwrap());
        assert!(
            db.is_allowed(),
            "the newcomer is admitted into the evicted slot"
        );
        assert!(
            t.check(&100, 1).unwrap().is_denied(),
            "and charged exactly there"
        );
        // Key 0 is within its bound: at most one admission per second, unless it was evicted
        // (then it starts fresh, as documented for EvictStalest).
        let evicted = t.stats().evictions;
        assert!(evicted >= 1);
        if da.is_allowed() {
            assert!(t.check(&0, 1).unwrap().is_denied() || evicted == 2);
        }
    });
}

fn clock_now(clock: &ManualClock) -> u64 {
    use traffik_core::Clock;
    clock.now()
}

/// A lock-free placement races a locked reuse for the same key: one thread fills the window's
/// last empty slot with another key while two threads place key 100, one of which may still
/// see that slot empty (and claim it without the lock) while the other finds the window full
/// (and reuses a fresh slot under the lock). Key 100 must still end in exactly one slot.
#[test]
fn lock_free_placement_racing_reuse_places_a_key_once() {
    model(|| {
        let clock = Arc::new(ManualClock::new());
        let t = table(OverflowPolicy::Deny, &clock);
        for k in 0..WINDOW as u64 - 1 {
            assert!(t.check(&k, 1).unwrap().is_allowed());
        }
        // A second later those keys are fresh (reusable); one slot is still empty.
        clock.set(SEC);
        let filler = {
            let t = Arc::clone(&t);
            thread::spawn(move || t.check(&50, 1).unwrap().is_allowed())
        };
        let placers: Vec<_> = (0..2)
            .map(|_| {
                let t = Arc::clone(&t);
                thread::spawn(move || t.check(&100, 1).unwrap().is_allowed())
            })
            .collect();
        assert!(filler.join().unwrap());
        let admitted: usize = placers
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(
            admitted, 1,
            "burst 1 admits one of the two checks of key 100"
        );
        // Every placement is counted once: the first keys and the filler fill slots from
        // empty, and key 100 either fills one too or reuses one. A second copy of key 100
        // would make one placement more.
        let stats = t.stats();
        assert_eq!(stats.occupied, WINDOW);
        assert_eq!(stats.occupied as u64 + stats.reclaims, WINDOW as u64 + 1);
        assert!(t.check(&100, 1).unwrap().is_denied());
        assert!(t.check(&50, 1).unwrap().is_denied());
    });
}

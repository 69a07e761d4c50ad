//! A flood of distinct keys against a full table, under a counting allocator: the table never
//! allocates on the check path, keeps limiting the key that matters exactly, and churns the
//! flood through its fixed slots.
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv6Addr};
use traffik::{AlgorithmKind, AnyAlgorithm, KeyedLimiter, Limiter, ManualClock};

/// Counts this thread's heap allocations (the test harness's own threads are not counted).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call goes straight to the system allocator; counting touches only a
// thread-local cell with no destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn a_flood_of_distinct_keys_allocates_nothing_and_keeps_the_steady_key_exact() {
    let clock = ManualClock::new();
    let limiter: KeyedLimiter<IpAddr, AnyAlgorithm, _> = traffik::builder()
        .rate("1000/s")
        .burst(10)
        .capacity(65_536)
        .build_with_clock(&clock)
        .unwrap();
    let reference = Limiter::new(
        AnyAlgorithm::new(AlgorithmKind::Gcra, "1000/s".parse().unwrap(), Some(10)).unwrap(),
        &clock,
    );
    let steady: IpAddr = "192.0.2.1".parse().unwrap();
    let mut x: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0001;
    let mut steady_admitted = 0;
    let mut flood_denied = 0u32;
    let before = allocations();
    for i in 0..1_000_000u32 {
        x = x
            .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
            .wrapping_add(1);
        let flood = IpAddr::V6(Ipv6Addr::from(x));
        flood_denied += u32::from(limiter.check(&flood, 1).unwrap().is_denied());
        if i % 10 == 0 {
            let got = limiter.check(&steady, 1).unwrap();
            assert_eq!(
                got,
                reference.check(1).unwrap(),
                "steady key at flood key {i}"
            );
            steady_admitted += u32::from(got.is_allowed());
        }
        clock.advance_nanos(100);
    }
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "the check path allocated {allocated} times");
    // Every flood key is new, so each gets its burst.
    assert_eq!(flood_denied, 0);
    // Checks every 1 us from 0 to 99.999 ms at 1000/s: the burst of 10, then one per 1 ms.
    assert_eq!(steady_admitted, 10 + 99);
    // A million keys went through 65,536 keys' worth of slots: the table stayed full, and
    // made room by reusing slots of keys that had gone fresh (10 ms after their one check)
    // and, when none had, by evicting the stalest.
    let stats = limiter.stats();
    assert_eq!(stats.occupied, stats.slots);
    assert_eq!(limiter.len(), stats.slots);
    assert!(stats.reclaims + stats.evictions >= 1_000_000 - stats.slots as u64);
}

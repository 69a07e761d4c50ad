//! Memory per key at 1,000,000 keys: traffik's fixed table beside governor's DashMap store,
//! measured with a counting allocator in the same process. Prints a table; no timing.
#![allow(missing_docs, clippy::unwrap_used)]

use governor::{Quota, RateLimiter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: usize = 1_000_000;

fn measure<K, F: Fn(usize) -> K>(name: &str, key: F)
where
    K: std::hash::Hash + Eq + Clone + traffik::Key,
{
    let quota = Quota::per_hour(NonZeroU32::new(1).unwrap());
    let before = LIVE.load(Ordering::Relaxed);
    let gov = RateLimiter::dashmap(quota);
    for i in 0..N {
        let _ = gov.check_key(&key(i));
    }
    let gov_bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(gov);

    let before = LIVE.load(Ordering::Relaxed);
    let ours: traffik::RateLimiter<K> = traffik::builder().rate("1/h").capacity(N).build().unwrap();
    for i in 0..N {
        let _ = ours.check(&key(i), 1).unwrap();
    }
    let our_bytes = LIVE.load(Ordering::Relaxed) - before;
    let tracked = ours.len();
    let (g, t) = (gov_bytes as f64 / N as f64, our_bytes as f64 / N as f64);
    println!(
        "| {name:<8} | {g:>8.1} | {t:>8.1} | {:>5.2} | {tracked} |",
        t / g
    );
}

fn main() {
    // `cargo bench` passes `--bench`; run the measurement whatever the arguments.
    println!("| key      | governor B/key | traffik B/key | ratio | keys tracked |");
    println!("|----------|---------:|---------:|------:|------:|");
    measure("u64", |i| i as u64 * 2_654_435_761);
    measure("IpAddr", |i| {
        if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(i as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from((i as u128) << 64 | 0x2001))
        }
    });
    measure("String", |i| format!("user-{i:08}"));
}

//! A `#![no_std]`, `#![no_main]` program that uses traffik-core and exits with status 0 only if
//! every check passed (otherwise the status is a bit mask of the failed checks).
//!
//! It links against libc for `_start`, `write` and the C `main` entry point, and defines its own
//! `#[panic_handler]`. If anything in the dependency graph pulled in `std`, the link would fail
//! with a duplicate `panic_impl` lang item, so a successful build is the proof.
//!
//! Build and run: `cargo run --release` (add `--features alloc` to also exercise the keyed
//! table over a bump allocator).
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::time::Duration;
use traffik_core::{Gcra, Limiter, ManualClock, Rate, TokenBucket};

#[link(name = "c")]
extern "C" {
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn _exit(status: i32) -> !;
}

/// Writes `s` to standard error (best effort; nothing to do if it fails).
fn say(s: &str) {
    // SAFETY: the pointer and length come from a live `&str`.
    unsafe {
        write(2, s.as_ptr(), s.len());
    }
}

#[panic_handler]
fn panic(_info: &PanicInfo<'_>) -> ! {
    say("nostd-check: panicked\n");
    // SAFETY: `_exit` takes any status and never returns.
    unsafe { _exit(101) }
}

/// The prebuilt `core` (and `alloc`) crates carry unwind tables that name this personality
/// routine. With `panic = "abort"` nothing ever unwinds, so it is never called; it only
/// satisfies the linker. (With `std` linked this symbol would be defined twice.)
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// The global allocator, for the `alloc` build only. Without traffik-core's `alloc` feature the
/// program defines no allocator at all, so the build itself proves the core needs no heap: if
/// anything linked the `alloc` crate, rustc would demand a `#[global_allocator]`.
#[cfg(feature = "alloc")]
mod heap {
    //! A tiny bump allocator over a static array serves the keyed table.

    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    const ARENA: usize = 64 * 1024;

    #[cfg(feature = "alloc")]
    #[repr(C, align(64))]
    pub struct Bump {
        arena: UnsafeCell<[u8; ARENA]>,
        next: AtomicUsize,
    }

    // SAFETY: the arena is only handed out in disjoint pieces, reserved by an atomic bump.
    #[cfg(feature = "alloc")]
    unsafe impl Sync for Bump {}

    #[cfg(feature = "alloc")]
    // SAFETY: each successful call returns a fresh, suitably aligned, in-bounds piece of the
    // arena that no other call returns; null when the arena is exhausted.
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let base = self.arena.get() as usize;
            let mut start = 0;
            let reserved = self
                .next
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
                    let addr = (base + next).checked_next_multiple_of(layout.align())?;
                    let end = addr.checked_add(layout.size())? - base;
                    start = addr - base;
                    (end <= ARENA).then_some(end)
                });
            match reserved {
                Ok(_) => self.arena.get().cast::<u8>().wrapping_add(start),
                Err(_) => core::ptr::null_mut(),
            }
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {
            // A bump allocator never frees; the program is short-lived.
        }
    }

    #[cfg(feature = "alloc")]
    #[global_allocator]
    static HEAP: Bump = Bump {
        arena: UnsafeCell::new([0; ARENA]),
        next: AtomicUsize::new(0),
    };
}

/// Runs the checks; bit `i` of the result is set when check `i` failed.
fn run() -> i32 {
    let mut failed = 0i32;
    let mut check = |bit: u32, ok: bool, what: &str| {
        if !ok {
            say("nostd-check: FAILED: ");
            say(what);
            say("\n");
            failed |= 1 << bit;
        }
    };

    let rate = "10/s".parse::<Rate>();
    check(
        0,
        rate == Ok(Rate::per_second(10)),
        "\"10/s\" parses to 10 per second",
    );
    check(1, "ten/s".parse::<Rate>().is_err(), "\"ten/s\" is refused");
    let Ok(rate) = rate else {
        return failed;
    };

    let clock = ManualClock::new();
    match Gcra::new(rate) {
        Ok(gcra) => {
            let limiter = Limiter::new(gcra, &clock);
            let burst = (0..10).all(|_| matches!(limiter.check(1), Ok(d) if d.is_allowed()));
            check(2, burst, "GCRA admits its burst of 10");
            let denied = limiter.check(1);
            check(
                3,
                matches!(denied, Ok(d) if d.is_denied()
                    && d.retry_after() == Duration::from_millis(100)),
                "the 11th check is denied with a 100 ms retry",
            );
            clock.advance(Duration::from_millis(100));
            check(
                4,
                matches!(limiter.check(1), Ok(d) if d.is_allowed() && d.remaining() == 0),
                "one more is admitted 100 ms later",
            );
            check(
                5,
                limiter.check(11).is_err(),
                "a cost above the burst is an error",
            );
        }
        Err(_) => check(2, false, "GCRA accepts 10/s"),
    }

    match TokenBucket::new(rate) {
        Ok(bucket) => {
            let limiter = Limiter::new(bucket, &clock);
            check(
                6,
                matches!(limiter.check(4), Ok(d) if d.is_allowed() && d.remaining() == 6),
                "token bucket takes 4 of 10",
            );
        }
        Err(_) => check(6, false, "token bucket accepts 10/s"),
    }

    #[cfg(feature = "alloc")]
    {
        use traffik_core::{KeyedLimiter, TableConfig};
        let mut config = TableConfig::new(16, [1, 2, 3, 4]);
        config.shards = 1;
        match Gcra::with_burst(rate, 1) {
            Ok(gcra) => match KeyedLimiter::<u64, _, _>::new(gcra, &clock, config) {
                Ok(table) => {
                    let a = matches!(table.check(&1, 1), Ok(d) if d.is_allowed());
                    let b = matches!(table.check(&1, 1), Ok(d) if d.is_denied());
                    let c = matches!(table.check(&2, 1), Ok(d) if d.is_allowed());
                    check(
                        7,
                        a && b && c && table.len() == 2,
                        "keyed table keeps keys apart",
                    );
                }
                Err(_) => check(7, false, "keyed table builds in the bump arena"),
            },
            Err(_) => check(7, false, "GCRA accepts burst 1"),
        }
    }

    failed
}

/// The C entry point: libc's start-up code calls this and exits with its result.
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let failed = run();
    if failed == 0 {
        say("nostd-check: all checks passed\n");
    }
    failed
}

//! Real clocks.
//!
//! [`QuantaClock`] reads the CPU's time-stamp counter through `quanta`, calibrated against the
//! OS monotonic clock. TSC readings taken on different cores can disagree slightly, so a reading
//! may be a little behind one another thread already stored; the algorithms are written so that
//! such a reading can only make a decision stricter and never underflows. On top of that, each
//! `QuantaClock` value never reports less than the largest reading it has returned on the same
//! thread.

use std::cell::Cell;
use traffik_core::Clock;

/// The default real clock: nanoseconds since the clock was created, read from `quanta`.
///
/// ```
/// use traffik::{Clock, QuantaClock};
///
/// let clock = QuantaClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[derive(Clone, Debug)]
pub struct QuantaClock {
    clock: quanta::Clock,
    start: u64,
}

thread_local! {
    // The largest reading handed out on this thread; a cheap guard against a TSC that steps
    // back when the thread migrates between cores.
    static LAST: Cell<u64> = const { Cell::new(0) };
}

impl QuantaClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        QuantaClock { clock, start }
    }
}

impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for QuantaClock {
    #[inline]
    fn now(&self) -> u64 {
        let raw = self.clock.raw();
        let nanos = self.clock.delta_as_nanos(self.start, raw);
        LAST.with(|last| {
            let t = nanos.max(last.get());
            last.set(t);
            t
        })
    }
}

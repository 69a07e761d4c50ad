//! Real clocks.
//!
//! [`QuantaClock`] reads the CPU's time-stamp counter through `quanta`, calibrated against the
//! OS monotonic clock. TSC readings taken on different cores can disagree slightly, so a reading
//! may be a little behind one another thread already stored; the algorithms are written so that
//! such a reading can only make a decision stricter and never underflows (a property test in
//! `traffik-core` checks exactly that: from any state, a later reading never decides more
//! strictly than an earlier one). So the clock needs no shared "latest reading" word, which
//! would put a contended cache line on every check. Readings are clamped at zero: a TSC that
//! reads below the clock's own start gives 0, never a huge wrapped value.

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
        self.clock.delta_as_nanos(self.start, raw)
    }
}

//! Time sources. Algorithms see time as `u64` nanoseconds since an epoch of the clock's choosing.

use crate::sync::{AtomicU64, Ordering};
use core::time::Duration;

/// A source of time for limiters: nanoseconds since an epoch the clock picks.
///
/// Implementations should be monotonic non-decreasing. The algorithms are written so that a
/// reading behind one another thread already used (as TSC readings can be, across cores, or as
/// any reading is once a preempted thread resumes with it) only ever makes a decision stricter,
/// never looser, and never underflows, however far behind it is: see each algorithm's docs and
/// the `stale` property tests.
pub trait Clock {
    /// Nanoseconds since this clock's epoch.
    fn now(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn now(&self) -> u64 {
        (**self).now()
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    #[inline]
    fn now(&self) -> u64 {
        (**self).now()
    }
}

/// A clock that moves only when told to: for tests, simulations and benchmarks.
///
/// ```
/// use traffik_core::{Clock, ManualClock};
/// use core::time::Duration;
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now(), 1_500_000_000);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::starting_at(0)
    }

    /// A clock at `nanos`.
    pub fn starting_at(nanos: u64) -> Self {
        ManualClock {
            nanos: AtomicU64::new(nanos),
        }
    }

    /// Moves the clock forward (saturating at `u64::MAX`).
    pub fn advance(&self, by: Duration) {
        self.advance_nanos(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Moves the clock forward by `nanos` (saturating).
    pub fn advance_nanos(&self, nanos: u64) {
        // Relaxed: the clock value is independent data; readers only need some recent value.
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(nanos))
            });
    }

    /// Sets the time; tests may also move it backwards to model a skewed clock.
    pub fn set(&self, nanos: u64) {
        // Relaxed: see `advance_nanos`.
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        // Relaxed: see `advance_nanos`.
        self.nanos.load(Ordering::Relaxed)
    }
}

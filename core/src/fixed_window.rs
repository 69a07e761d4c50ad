//! The fixed window counter.
//!
//! State: `index << count_bits | count`, the (truncated) index of the window last charged and
//! the cost charged in it. `0` is fresh (a zero count is fresh in any window).
//!
//! **Admission bound.** Exactly `limit` per aligned window; but any window of one period that
//! straddles a boundary can see up to `2 * limit` (the end of one window and the start of the
//! next).
//!
//! **Stale and skewed readings.** A reading from before the stored window (any number of
//! windows behind) is charged to the stored window, with the time it reports counted from the
//! reading: it can only deny what an up-to-date check would admit, never admit more, and it
//! never moves the stored window back (see the `window` module). Every limit this algorithm
//! accepts leaves at least 2^61 ns (73 years) of window index each way, so no realistic lag or
//! idle time is misread.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition};
use crate::decision::{CheckError, Decision};
use crate::rate::Rate;
use crate::window::{bits_for, Position, Windows};

/// Largest limit a fixed window packs beside a window index of at least 16 bits.
const MAX_LIMIT: u64 = (1 << 47) - 1;

/// A counter per aligned window of one period.
///
/// ```
/// use traffik_core::{Algorithm, FixedWindow, Rate};
///
/// let fw = FixedWindow::new(Rate::per_second(2))?;
/// let a = fw.decide(0, 100, 2)?; // 100 ns into window 0
/// let b = fw.decide(a.next.unwrap(), 200, 1)?;
/// assert!(b.decision.is_denied());
/// assert_eq!(b.decision.retry_after_nanos(), 1_000_000_000 - 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedWindow {
    limit: u64,
    windows: Windows,
    count_bits: u32,
}

impl FixedWindow {
    /// `rate.limit()` per aligned window of `rate.period()`.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        let (limit, period) = finite_rate(rate)?;
        if limit > MAX_LIMIT {
            return Err(ConfigError::LimitTooLarge { max: MAX_LIMIT });
        }
        let count_bits = bits_for(limit);
        Ok(FixedWindow {
            limit,
            windows: Windows::new(period, 1, count_bits, MAX_LIMIT)?,
            count_bits,
        })
    }

    #[inline]
    fn unpack(&self, state: u64) -> (u64, u64) {
        (
            state >> self.count_bits,
            state & ((1u64 << self.count_bits) - 1),
        )
    }

    /// `(window index, count, nanoseconds until that window ends)` as seen from `now`.
    #[inline]
    fn view(&self, state: u64, now: u64) -> (u64, u64, u64) {
        let (current, offset) = self.windows.locate(now);
        let period = self.windows.period;
        // Fresh in any window (a stored state always has a non-zero count), including the
        // window whose truncated index wraps to the fresh state's index 0.
        if state == 0 {
            return (current, 0, period - offset);
        }
        let (stored, count) = self.unpack(state);
        match self.windows.position(stored, current) {
            Position::Same => (current, count, period - offset),
            // The stored window, which ends `behind + 1` windows after this one starts.
            Position::Behind(behind) => (
                stored,
                count,
                self.windows.lead(behind, offset).saturating_add(period),
            ),
            Position::Next | Position::Stale => (current, 0, period - offset),
        }
    }
}

impl Algorithm for FixedWindow {
    #[inline]
    fn capacity(&self) -> u64 {
        self.limit
    }

    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        if cost > self.limit {
            return Err(CheckError::InsufficientCapacity { max: self.limit });
        }
        let (index, count, until_end) = self.view(state, now);
        let available = self.limit.saturating_sub(count);
        if cost <= available {
            let used = count + cost;
            let reset = if used == 0 { 0 } else { until_end };
            let decision = Decision::allow(self.limit, available - cost, reset);
            Ok(Transition::store(
                decision,
                (index << self.count_bits) | used,
                cost,
            ))
        } else {
            let decision = Decision::deny(self.limit, available, until_end, until_end);
            Ok(Transition::keep(decision))
        }
    }

    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        let (_, count, until_end) = self.view(state, now);
        if count == 0 {
            0
        } else {
            until_end
        }
    }
}

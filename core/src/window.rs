//! What the two window algorithms share: locating `now` relative to a stored window index.
//!
//! Windows are aligned to the clock's epoch: window `i` covers `[i * period, (i + 1) * period)`.
//! The index is stored truncated to the bits left over beside the counters, and compared with
//! wrapping arithmetic, so the packing never runs out however long the process lives.
//!
//! **Stale readings.** A clock reading can be older than the stored window: another thread read
//! the clock later and charged first, a reading was held across a CAS retry or a preemption, or
//! a clock stepped back. Such a reading is *behind*, by any number of windows, and the check is
//! charged to the stored window with its counts as they are, so it can only be stricter than an
//! up-to-date check, and the stored index never moves backwards. With a truncated index,
//! "behind by `d`" and "ahead by `2^bits - d`" look alike; the split is at half the index
//! space, and the constructors only accept configurations in which that half spans at least
//! [`HORIZON`] nanoseconds. A reading lagging by less than that is always recognised; a key left
//! idle for longer than that (only possible for very large limits on very short periods) may be
//! misread as being ahead of the clock and denied until the clock catches up, never over-admitted.

use crate::algorithm::{ConfigError, STATE_BITS};
use crate::divisor::WindowDivisor;

/// Readings up to this far behind the stored window (2^50 ns, about 13 days) are always
/// recognised as behind it.
pub(crate) const HORIZON: u64 = 1 << 50;

/// The longest window period accepted (2^60 ns, about 36.5 years), so that every duration a
/// window algorithm reports (a few periods at most) fits in `u64` nanoseconds.
pub(crate) const MAX_PERIOD: u64 = 1 << 60;

/// Where `now` falls relative to a stored window index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// `now` is in the stored window.
    Same,
    /// `now` is in the window right after the stored one.
    Next,
    /// Two or more windows later: the stored counts no longer matter.
    Stale,
    /// `now` reads this many (at least one) windows *before* the stored one. The stored window
    /// is charged, which can only be stricter.
    Behind(u64),
}

/// The window geometry of one limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Windows {
    pub(crate) period: u64,
    length: WindowDivisor,
    /// Mask for the truncated window index.
    index_mask: u64,
    /// Index distances at or above this are readings behind the stored window.
    behind_from: u64,
}

impl Windows {
    /// The geometry for `period`, with `counters` counts of `count_bits` each packed beside the
    /// index in [`STATE_BITS`]. Refuses a period above [`MAX_PERIOD`], and a limit whose counts
    /// leave too few index bits for readings up to [`HORIZON`] behind to be recognised
    /// (`LimitTooLarge` with the largest limit that fits this period, capped at `max_limit`).
    pub(crate) fn new(
        period: u64,
        counters: u32,
        count_bits: u32,
        max_limit: u64,
    ) -> Result<Self, ConfigError> {
        if period > MAX_PERIOD {
            return Err(ConfigError::PeriodTooLong {
                max_nanos: MAX_PERIOD,
            });
        }
        if !spans_horizon(period, counters, count_bits) {
            // The largest count width that still spans the horizon, as a limit.
            let bits = (1..count_bits)
                .rev()
                .find(|b| spans_horizon(period, counters, *b))
                .unwrap_or(0);
            let max = ((1u64 << bits) - 1).min(max_limit);
            return Err(ConfigError::LimitTooLarge { max });
        }
        let index_bits = STATE_BITS - counters * count_bits;
        Ok(Windows {
            period,
            length: WindowDivisor::new(period),
            index_mask: (1u64 << index_bits) - 1,
            behind_from: 1u64 << (index_bits - 1),
        })
    }

    /// `(truncated index, offset into the window)` of `now`.
    #[inline]
    pub(crate) fn locate(&self, now: u64) -> (u64, u64) {
        let (index, offset) = self.length.div_rem(now);
        (index & self.index_mask, offset)
    }

    /// `ceil(x / period)`.
    #[inline]
    pub(crate) fn div_ceil(&self, x: u64) -> u64 {
        self.length.div_ceil(x)
    }

    /// `ceil(x / period)` for a wide `x`.
    #[inline]
    pub(crate) fn div_ceil_wide(&self, x: u128) -> u128 {
        self.length.div_ceil_wide(x)
    }

    #[inline]
    pub(crate) fn position(&self, stored: u64, current: u64) -> Position {
        let ahead = current.wrapping_sub(stored) & self.index_mask;
        if ahead == 0 {
            Position::Same
        } else if ahead == 1 {
            Position::Next
        } else if ahead < self.behind_from {
            Position::Stale
        } else {
            Position::Behind(self.index_mask - ahead + 1)
        }
    }

    /// Nanoseconds from `offset` into the current window to the start of the window `behind`
    /// windows later (saturating; only a misread idle key can get near the limit).
    #[inline]
    pub(crate) fn lead(&self, behind: u64, offset: u64) -> u64 {
        behind.saturating_mul(self.period) - offset
    }
}

/// Whether `counters` counts of `count_bits` leave an index whose half spans [`HORIZON`].
fn spans_horizon(period: u64, counters: u32, count_bits: u32) -> bool {
    let used = counters * count_bits;
    // At least two index bits, so "next" and "behind" are told apart.
    if used + 2 > STATE_BITS {
        return false;
    }
    let half = 1u128 << (STATE_BITS - used - 1);
    half * u128::from(period) >= u128::from(HORIZON)
}

/// Bits needed to hold any value in `0..=max`.
pub(crate) const fn bits_for(max: u64) -> u32 {
    64 - max.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_is_told_apart_from_ahead_across_the_wrap() {
        // 63 - 2 * 23 = 17 index bits: the split is at 2^16 windows.
        let w = Windows::new(1 << 40, 2, 23, u64::MAX).expect("spans the horizon");
        let mask = (1u64 << 17) - 1;
        assert_eq!(w.position(5, 5), Position::Same);
        assert_eq!(w.position(mask, 0), Position::Next); // wraps forward
        assert_eq!(w.position(5, 7), Position::Stale);
        assert_eq!(w.position(5, 5 + (1 << 16) - 1), Position::Stale);
        assert_eq!(w.position(5, 5 + (1 << 16)), Position::Behind(1 << 16));
        assert_eq!(w.position(5, 4), Position::Behind(1));
        assert_eq!(w.position(0, mask), Position::Behind(1)); // wraps backward
        assert_eq!(w.position(5, 2), Position::Behind(3));
    }

    #[test]
    fn short_periods_with_wide_counts_are_refused() {
        // 2^23 - 1 per 2^30 ns leaves half an index span of 2^16 * 2^30 = 2^46 < 2^50.
        assert_eq!(
            Windows::new(1 << 30, 2, 23, (1 << 23) - 1),
            Err(ConfigError::LimitTooLarge { max: (1 << 21) - 1 })
        );
        assert!(Windows::new(1 << 30, 2, 21, (1 << 23) - 1).is_ok());
        assert_eq!(
            Windows::new(MAX_PERIOD + 1, 1, 1, 1),
            Err(ConfigError::PeriodTooLong {
                max_nanos: MAX_PERIOD
            })
        );
    }
}

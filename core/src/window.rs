//! What the two window algorithms share: locating `now` relative to a stored window index.
//!
//! Windows are aligned to the clock's epoch: window `i` covers `[i * period, (i + 1) * period)`.
//! The index is stored truncated to the bits left over beside the counters, and compared with
//! wrapping arithmetic, so the packing never runs out however long the process lives.

use crate::divisor::Divisor;

/// Where `now` falls relative to a stored window index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// `now` is in the stored window.
    Same,
    /// `now` is in the window right after the stored one.
    Next,
    /// `now` reads one window *before* the stored one: another thread's clock ran ahead of ours.
    /// We charge the stored (later) window, which can only be stricter.
    Behind,
    /// Two or more windows later: the stored counts no longer matter.
    Stale,
}

/// The window geometry of one limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Windows {
    pub(crate) period: u64,
    length: Divisor,
    /// Mask for the truncated window index.
    index_mask: u64,
}

impl Windows {
    pub(crate) fn new(period: u64, index_bits: u32) -> Self {
        let index_mask = if index_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << index_bits) - 1
        };
        Windows {
            period,
            length: Divisor::new(period),
            index_mask,
        }
    }

    /// `(truncated index, offset into the window)` of `now`.
    #[inline]
    pub(crate) fn locate(&self, now: u64) -> (u64, u64) {
        ((now / self.period) & self.index_mask, now % self.period)
    }

    /// `ceil(x / period)`.
    #[inline]
    pub(crate) fn div_ceil(&self, x: u64) -> u64 {
        self.length.div_ceil(x)
    }

    #[inline]
    pub(crate) fn position(&self, stored: u64, current: u64) -> Position {
        let ahead = current.wrapping_sub(stored) & self.index_mask;
        if ahead == 0 {
            Position::Same
        } else if ahead == 1 {
            Position::Next
        } else if ahead == self.index_mask {
            Position::Behind
        } else {
            Position::Stale
        }
    }
}

/// Bits needed to hold any value in `0..=max`.
pub(crate) const fn bits_for(max: u64) -> u32 {
    64 - max.leading_zeros()
}

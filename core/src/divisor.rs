//! Division by a divisor fixed when a limiter is built.
//!
//! Hardware 64-bit division costs tens of cycles, more than the whole rest of a GCRA check.
//! Periods and intervals are known at construction, so the hot path divides by
//! multiplication with a precomputed reciprocal (`strength_reduce`), which is exact.

use strength_reduce::StrengthReducedU64;

/// A non-zero divisor with its precomputed reciprocal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Divisor(StrengthReducedU64);

impl Divisor {
    /// `d` must be non-zero; callers validate that before building one.
    #[inline]
    pub(crate) fn new(d: u64) -> Self {
        Divisor(StrengthReducedU64::new(d.max(1)))
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.get()
    }

    #[inline]
    pub(crate) fn div(&self, x: u64) -> u64 {
        x / self.0
    }

    #[inline]
    pub(crate) fn div_rem(&self, x: u64) -> (u64, u64) {
        StrengthReducedU64::div_rem(x, self.0)
    }

    #[inline]
    pub(crate) fn div_ceil(&self, x: u64) -> u64 {
        let (q, r) = self.div_rem(x);
        q + u64::from(r != 0)
    }
}

impl PartialEq for Divisor {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Divisor {}

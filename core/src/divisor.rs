//! Division by a divisor fixed when a limiter is built.
//!
//! Hardware 64-bit division costs tens of cycles, more than the whole rest of a GCRA check.
//! Periods and intervals are known at construction, so the hot path divides by multiplying
//! with a precomputed reciprocal, exactly. Two kinds, each where it measured faster:
//!
//! - [`Divisor`] (`strength_reduce`'s two multiplies, no branch on the numerator) for the
//!   bucket algorithms' intervals: keyed GCRA checks measured slower with the one-multiply kind
//!   (the grid's traffik / inline floor 1.20-1.27 against 1.13-1.19).
//! - [`WindowDivisor`] (one multiply) for the window algorithms, whose window index and weight
//!   are two dependent divisions on every check: the sliding window counter on one key reads
//!   about 0.1x governor faster with it.
//!
//! **Why one multiply is enough.** The numerators on the hot path are clock readings (at most
//! [`MAX_NOW`](crate::algorithm::MAX_NOW) = 2^62) and products of them with small counts, so
//! they are almost always below 2^63. For `d >= 2`, let `l = ceil(log2 d)` and
//! `m = ceil(2^(63 + l) / d)`. Then `2^(63 + l) <= m * d < 2^(63 + l) + d <= 2^(63 + l) + 2^l`,
//! and Granlund and Montgomery's bound (*Division by invariant integers using multiplication*,
//! 1994, theorem 4.2, with N = 63) gives `floor(n / d) = floor(n * m / 2^(63 + l))` for every
//! `n < 2^63`. As `d > 2^(l - 1)`, `m < 2^64` fits a word, and the quotient is the high word of
//! one 64 x 64-bit multiply shifted right by `l - 1`. Numerators of 2^63 and more (and `d = 1`)
//! take a slower path behind a branch that the hot path always predicts: the numerator is
//! halved into the fast range and the quotient doubled and corrected (see `wide`).

use core::num::{NonZeroU128, NonZeroU64};
use strength_reduce::StrengthReducedU64;

/// A non-zero divisor with `strength_reduce`'s reciprocal (two multiplies, any numerator).
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

/// A non-zero divisor with a one-multiply reciprocal for numerators below 2^63 (module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowDivisor {
    d: NonZeroU64,
    /// `ceil(2^(63 + l) / d)`, or 0 for `d = 1`.
    magic: u64,
    /// `l - 1`.
    shift: u32,
    /// Numerators below this take the multiply: 2^63, or 0 for `d = 1` (all take `/`).
    fast_below: u64,
}

impl WindowDivisor {
    /// `d` must be non-zero; callers validate that before building one (zero is taken as 1).
    #[inline]
    pub(crate) fn new(d: u64) -> Self {
        let d = NonZeroU64::new(d).unwrap_or(NonZeroU64::MIN);
        if d.get() == 1 {
            return WindowDivisor {
                d,
                magic: 0,
                shift: 0,
                fast_below: 0,
            };
        }
        let l = 64 - (d.get() - 1).leading_zeros(); // ceil(log2 d), at least 1
        let magic = (1u128 << (63 + l)).div_ceil(u128::from(d.get()));
        WindowDivisor {
            d,
            // Below 2^64 because d > 2^(l - 1) (module docs).
            magic: magic as u64,
            shift: l - 1,
            fast_below: 1 << 63,
        }
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.d.get()
    }

    #[inline]
    pub(crate) fn div(&self, x: u64) -> u64 {
        if x < self.fast_below {
            self.below_2_63(x)
        } else {
            self.wide(x)
        }
    }

    /// `floor(x / d)` for `x < 2^63` and `d >= 2`: one multiply and a shift.
    #[inline]
    fn below_2_63(&self, x: u64) -> u64 {
        ((u128::from(x) * u128::from(self.magic)) >> 64) as u64 >> self.shift
    }

    /// `floor(x / d)` for the rest: `d = 1`, or `x >= 2^63` halved into the fast range. With
    /// `x = 2y + b`, `y = q * d + r`: `x = 2q * d + (2r + b)` where `2r + b < 2d`, so the
    /// quotient is `2q`, plus one when `2r + b >= d`. No hardware division and nothing that can
    /// fail, so the compiler may still drop a quotient nobody reads.
    #[inline]
    fn wide(&self, x: u64) -> u64 {
        let d = self.d.get();
        if d == 1 {
            return x;
        }
        let (y, b) = (x >> 1, x & 1);
        let q = self.below_2_63(y);
        let r = y - q * d;
        // 2r + b >= d, without overflowing for d near 2^64 (r < d, so d - r - b cannot wrap).
        2 * q + u64::from(r >= d - r - b)
    }

    #[inline]
    pub(crate) fn div_rem(&self, x: u64) -> (u64, u64) {
        let q = self.div(x);
        (q, x - q * self.d.get())
    }

    #[inline]
    pub(crate) fn div_ceil(&self, x: u64) -> u64 {
        let (q, r) = self.div_rem(x);
        q + u64::from(r != 0)
    }
}

impl WindowDivisor {
    /// `ceil(x / d)` for a wide `x`, by the hardware (rare: products that overflow 64 bits).
    /// The divisor is known non-zero, so this cannot fail, and a caller that ignores the result
    /// lets the compiler drop it.
    #[inline]
    pub(crate) fn div_ceil_wide(&self, x: u128) -> u128 {
        let d = NonZeroU128::from(self.d);
        x / d + u128::from(x % d != 0)
    }
}

impl PartialEq for WindowDivisor {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for WindowDivisor {}

#[cfg(test)]
mod tests {
    use super::{Divisor, WindowDivisor};
    use proptest::prelude::*;

    fn check(d: u64, x: u64) {
        let (a, b) = (Divisor::new(d), WindowDivisor::new(d));
        assert_eq!(a.div_rem(x), (x / d, x % d), "{x} / {d}");
        assert_eq!(b.div_rem(x), (x / d, x % d), "{x} / {d} (one multiply)");
        assert_eq!(a.div_ceil(x), x.div_ceil(d), "ceil({x} / {d})");
        assert_eq!(
            b.div_ceil(x),
            x.div_ceil(d),
            "ceil({x} / {d}) (one multiply)"
        );
    }

    /// Divisors and numerators where a reciprocal is most likely to be off by one: around
    /// powers of two, around multiples of the divisor, and at both ends of the range.
    #[test]
    fn edges_agree_with_hardware_division() {
        let near_powers = (1..64).flat_map(|k| [(1u64 << k) - 1, 1 << k, (1 << k) + 1]);
        let fixed = [
            1,
            2,
            3,
            5,
            7,
            10,
            1_000,
            1_000_000_007,
            u64::MAX,
            u64::MAX - 1,
        ];
        for d in fixed.into_iter().chain(near_powers.clone()) {
            let ends = [0, 1, d - 1, d, d.saturating_add(1), u64::MAX, u64::MAX - 1];
            // Around the largest multiples of d below 2^62, 2^63 and 2^64.
            let multiples = [1u64 << 62, 1 << 63, u64::MAX].into_iter().flat_map(|top| {
                let m = top / d * d;
                [m.saturating_sub(1), m, m.saturating_add(1)]
            });
            let numerators = ends.into_iter().chain(multiples).chain(near_powers.clone());
            for x in numerators.chain([0]) {
                check(d, x);
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_hardware_division(d in 1u64.., x in any::<u64>(), small in 0u64..1 << 40) {
            check(d, x);
            check(d, x >> 1);
            check(small.max(1), x >> 2);
            check(d, small);
        }
    }
}

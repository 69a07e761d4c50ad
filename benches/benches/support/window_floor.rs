//! The least a one-key sliding window counter check of traffik's design can do, for the single
//! key bench to measure beside the real one.
//!
//! Same packed state as `SlidingWindowCounter` (window index, previous count, current count),
//! a reciprocal division to find the window (one multiply, cheaper than the core's two: exact
//! for readings below 2^63, which is all this bench's clock reaches), admission by one widening
//! multiply-compare,
//! then the cell's CAS. What it leaves out is what a user is told: no `remaining` (a second
//! division), no reset time, no readings from behind the stored window (the bench's clock
//! only moves forward). So the gap between this and governor's GCRA is the cost of locating
//! the window and weighing the previous one, which GCRA does not have.

use traffik::{Algorithm, CheckError, Decision, Rate, Transition};

pub struct WindowFloor {
    limit: u64,
    period: u64,
    /// `ceil(2^(63 + l) / period)` for `l = ceil(log2 period)`, and `l - 1`.
    magic: u64,
    shift: u32,
    count_bits: u32,
    index_mask: u64,
}

impl WindowFloor {
    pub fn new(rate: Rate) -> Self {
        let (limit, period) = (rate.limit(), rate.period_nanos());
        let count_bits = 64 - limit.leading_zeros();
        assert!(
            period >= 2,
            "the floor's reciprocal needs a period of 2 ns or more"
        );
        let l = 64 - (period - 1).leading_zeros();
        WindowFloor {
            limit,
            period,
            magic: (1u128 << (63 + l)).div_ceil(u128::from(period)) as u64,
            shift: l - 1,
            count_bits,
            index_mask: (1u64 << (64 - 2 * count_bits)) - 1,
        }
    }
}

impl Algorithm for WindowFloor {
    fn capacity(&self) -> u64 {
        self.limit
    }

    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        let b = self.count_bits;
        let q = ((u128::from(now) * u128::from(self.magic)) >> 64) as u64 >> self.shift;
        let (index, offset) = (q & self.index_mask, now - q * self.period);
        let counts = (1u64 << b) - 1;
        let stored = state >> (2 * b);
        let (previous, current) = if state != 0 && stored == index {
            ((state >> b) & counts, state & counts)
        } else if state != 0 && (stored + 1) & self.index_mask == index {
            (state & counts, 0)
        } else {
            (0, 0)
        };
        let admitted = current + cost <= self.limit
            && u128::from(previous) * u128::from(self.period - offset)
                <= u128::from(self.limit - current - cost) * u128::from(self.period);
        Ok(if admitted {
            let next = (index << (2 * b)) | (previous << b) | (current + cost);
            Transition::store(Decision::allow(self.limit, 0, 0), next, cost)
        } else {
            Transition::keep(Decision::deny(self.limit, 0, 0, 0))
        })
    }

    fn reset_after(&self, _: u64, _: u64) -> u64 {
        0
    }
}

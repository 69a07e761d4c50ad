//! The token bucket with exact, whole-token refill.
//!
//! Tokens appear on a fixed schedule: by clock time `t`, `P(t) = floor(t * limit / period)`
//! tokens have been produced since the epoch, an exact rational rate with no rounding drift.
//! The state is one number `D`, the count of tokens taken measured on that schedule: the bucket
//! is short `max(0, D - P(now))` tokens of full, and taking `cost` sets
//! `D = max(D, P(now)) + cost`. `0` is fresh (any `D <= P(now)` is a full bucket).
//!
//! **Admission bound.** In any window `[t, t + W)` at most `capacity + P(t + W - 1) - P(t)`
//! tokens are admitted; for `W = period` that is at most `capacity + limit`.
//!
//! **Stale and skewed readings.** A reading behind another thread's, by any amount, sees fewer
//! tokens produced, so it finds the bucket emptier: it is admitted only where an up-to-date
//! reading would be, and since `D` only ever grows (a charge sets `max(D, P(now)) + cost`), it
//! never leaves the key looser than not checking at all. The bound above holds for the readings
//! the checks carried, in whatever order they arrive.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition, MAX_SPAN};
use crate::decision::{CheckError, Decision};
use crate::divisor::Divisor;
use crate::rate::Rate;

/// A token bucket of `capacity` tokens refilled at the rate, one whole token at a time.
///
/// ```
/// use traffik_core::{Algorithm, Rate, TokenBucket};
///
/// // 10 tokens, refilled at 1 per 100 ms.
/// let bucket = TokenBucket::new(Rate::per_second(10))?;
/// let t = bucket.decide(0, 0, 10)?;
/// assert!(t.decision.is_allowed());
/// let denied = bucket.decide(t.next.unwrap(), 0, 3)?;
/// assert_eq!(denied.decision.retry_after_nanos(), 300_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    capacity: u64,
    limit: Divisor,
    period: Divisor,
    /// `period / limit` when the limit divides the period (as in `1000/s`: one token every
    /// 1,000,000 ns), else zero. Then `P(t) = floor(t / interval)` and the first time by which
    /// `n` tokens exist is exactly `n * interval`: one reciprocal division and one multiply per
    /// check instead of two widening multiplies and two reciprocal divisions.
    interval: u64,
    /// The reciprocal of `interval` (of 1 when there is none; then unused).
    per_token: Divisor,
}

impl TokenBucket {
    /// A bucket holding the rate's limit.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        Self::with_capacity(rate, rate.limit())
    }

    /// A bucket of an explicit capacity (at least 1), refilled at `rate`.
    pub fn with_capacity(rate: Rate, capacity: u64) -> Result<Self, ConfigError> {
        let (limit, period) = finite_rate(rate)?;
        if capacity == 0 {
            return Err(ConfigError::ZeroBurst);
        }
        if capacity > MAX_SPAN {
            return Err(ConfigError::BurstOverflow);
        }
        let interval = if period % limit == 0 {
            period / limit
        } else {
            0
        };
        Ok(TokenBucket {
            capacity,
            limit: Divisor::new(limit),
            period: Divisor::new(period),
            interval,
            per_token: Divisor::new(interval),
        })
    }

    /// Tokens produced by clock time `t`: `floor(t * limit / period)`. At most `t`, because the
    /// rate is at most one per nanosecond, so it always fits.
    #[inline]
    pub(crate) fn produced(&self, t: u64) -> u64 {
        if self.interval != 0 {
            // t * limit / period = t / interval exactly, since period = interval * limit.
            return self.per_token.div(t);
        }
        let (limit, period) = (self.limit.get(), self.period.get());
        match t.checked_mul(limit) {
            Some(x) => self.period.div(x),
            None => ((t as u128 * limit as u128) / period as u128) as u64,
        }
    }

    /// The first clock time by which `n` tokens have been produced: `ceil(n * period / limit)`,
    /// saturating at `u64::MAX`.
    #[inline]
    pub(crate) fn time_for(&self, n: u64) -> u64 {
        if self.interval != 0 {
            // n * period / limit = n * interval, an integer: no rounding; saturating exactly
            // where the widening form would.
            return n.saturating_mul(self.interval);
        }
        let (limit, period) = (self.limit.get(), self.period.get());
        match n.checked_mul(period) {
            Some(x) => self.limit.div_ceil(x),
            None => {
                let t = (n as u128 * period as u128).div_ceil(limit as u128);
                u64::try_from(t).unwrap_or(u64::MAX)
            }
        }
    }
}

impl TokenBucket {
    /// Whether `n` tokens have been produced by clock time `t` (`P(t) >= n`), found by
    /// multiplying: `t >= n * period / limit`. Exact for every `n` and `t`, where comparing with
    /// [`time_for`](Self::time_for) would not be once it saturates.
    #[inline]
    pub(crate) fn has_produced(&self, n: u64, t: u64) -> bool {
        if self.interval != 0 {
            return n.checked_mul(self.interval).is_some_and(|x| x <= t);
        }
        let (limit, period) = (self.limit.get(), self.period.get());
        match n.checked_mul(period) {
            Some(x) => self.limit.div_ceil(x) <= t,
            None => (n as u128 * period as u128).div_ceil(limit as u128) <= u128::from(t),
        }
    }
}

impl Algorithm for TokenBucket {
    #[inline]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    // Always inlined (as the cell's CAS loop is): left to the heuristics it was not, and the
    // call and the `Transition` returned through memory cost more than its arithmetic.
    #[inline(always)]
    fn decide(&self, taken: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        if cost > self.capacity {
            return Err(CheckError::InsufficientCapacity { max: self.capacity });
        }
        let produced = self.produced(now);
        // Tokens missing from a full bucket. A clock read behind the last writer's sees fewer
        // produced tokens, so it only ever finds the bucket emptier.
        let short = taken.saturating_sub(produced);
        let available = self.capacity.saturating_sub(short);
        // The same two questions asked by multiplying instead (`P(now) >= n` exactly when
        // `now >= time_for(n)`), so that the write below waits on no division when the bucket
        // is not full: `produced` then feeds only the decision's `remaining`, computed beside
        // the caller's compare-and-swap rather than before it.
        // (A peek is always admitted, even by a reading so far behind that more than the whole
        // capacity is still owed.)
        let admitted = cost == 0
            || match (taken + cost).checked_sub(self.capacity) {
                None | Some(0) => true,
                Some(needed) => self.has_produced(needed, now),
            };
        debug_assert_eq!(admitted, cost <= available);
        if admitted {
            let next = if self.has_produced(taken.saturating_add(1), now) {
                // P(now) > taken: the bucket is full, and refills no further.
                produced
            } else {
                taken
            }
            .saturating_add(cost);
            debug_assert_eq!(next, produced.max(taken).saturating_add(cost));
            let reset = self.time_for(next).saturating_sub(now);
            let decision = Decision::allow(self.capacity, available - cost, reset);
            Ok(Transition::store(decision, next, cost))
        } else {
            // Admitted once P(t) >= taken + cost - capacity; the first such t is exact.
            let ready = self.time_for(taken.saturating_add(cost) - self.capacity);
            let decision = Decision::deny(
                self.capacity,
                available,
                ready.saturating_sub(now),
                self.time_for(taken).saturating_sub(now),
            );
            Ok(Transition::keep(decision))
        }
    }

    #[inline]
    fn reset_after(&self, taken: u64, now: u64) -> u64 {
        if taken <= self.produced(now) {
            0
        } else {
            self.time_for(taken).saturating_sub(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use proptest::prelude::*;

    /// The widening formulas, as they were before the whole-interval shortcut.
    fn produced_ref(limit: u64, period: u64, t: u64) -> u64 {
        (u128::from(t) * u128::from(limit) / u128::from(period)) as u64
    }

    fn time_for_ref(limit: u64, period: u64, n: u64) -> u64 {
        let t = (u128::from(n) * u128::from(period)).div_ceil(u128::from(limit));
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    fn bucket(limit: u64, period: u64) -> TokenBucket {
        let rate = Rate::new(limit, Duration::from_nanos(period)).expect("a valid rate");
        TokenBucket::new(rate).expect("a finite rate")
    }

    #[test]
    fn the_shortcut_is_taken_exactly_when_the_limit_divides_the_period() {
        assert_eq!(bucket(1_000, 1_000_000_000).interval, 1_000_000);
        assert_eq!(bucket(7, 1_000_000_000).interval, 0);
        assert_eq!(bucket(1, 1).interval, 1);
    }

    proptest! {
        // The multiplying test agrees with counting tokens, near zero, near overflow and
        // between, with and without a whole interval.
        #[test]
        fn has_produced_agrees_with_produced(
            limit in 1u64..=1_000_000,
            factor in prop_oneof![1u64..=1_000, 1u64..=1_000_000_000],
            extra in prop_oneof![Just(0u64), 1u64..=1_000],
            n in prop_oneof![0u64..1_000, any::<u64>(), (u64::MAX - 1_000)..=u64::MAX],
            t in prop_oneof![0u64..1_000_000, any::<u64>(), (u64::MAX - 1_000)..=u64::MAX],
        ) {
            let period = limit * factor + extra;
            let b = bucket(limit, period);
            prop_assert_eq!(b.has_produced(n, t), b.produced(t) >= n);
        }

        // Old-vs-new: every production count and refill time matches the widening form, near
        // zero, near overflow and anywhere between, with and without a whole interval.
        #[test]
        fn produced_and_time_for_match_the_widening_formulas(
            limit in 1u64..=1_000_000,
            factor in prop_oneof![1u64..=1_000, 1u64..=1_000_000_000],
            extra in prop_oneof![Just(0u64), 1u64..=1_000],
            x in prop_oneof![0u64..=1_000_000, any::<u64>(), (u64::MAX - 1_000)..=u64::MAX],
        ) {
            // Periods a whole multiple of the limit, or off by `extra` nanoseconds.
            let period = limit * factor + extra;
            prop_assume!(period >= limit);
            let b = bucket(limit, period);
            let (limit, period) = (b.limit.get(), b.period.get());
            prop_assert_eq!(b.produced(x), produced_ref(limit, period, x));
            prop_assert_eq!(b.time_for(x), time_for_ref(limit, period, x));
        }
    }
}

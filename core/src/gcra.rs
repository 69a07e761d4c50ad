//! GCRA, the generic cell rate algorithm, and the leaky bucket (as a meter) built on it.
//!
//! State: the theoretical arrival time (TAT), in clock nanoseconds. Each unit of cost pushes the
//! TAT one emission interval `T = ceil(period / limit)` later; a check is admitted when the new
//! TAT is no more than `burst * T` ahead of now. `0` is fresh (any TAT at or before now is).
//!
//! Rounding `T` up means a rate never admits more than it says: `3/s` has `T = 333_333_334 ns`.
//!
//! **Admission bound.** In any window of `W` nanoseconds, GCRA admits at most
//! `burst + ceil(W / T) - 1` units; for `W = period` that is at most `burst + limit - 1`.
//! Proof sketch: the TAT after the window's admissions is at least its start plus `S * T` and at
//! most the last admission time plus `burst * T`, so `S * T < W + burst * T`.
//!
//! **Stale and skewed readings.** A reading behind the stored TAT (another thread read the clock
//! later and charged first, a preempted thread resumed with an old reading, a core's clock
//! lags) by any amount only makes the check stricter: the TAT never moves back (a charge pushes
//! `max(TAT, now)`), and the horizon `now + burst * T` shrinks with the reading, so such a check
//! is admitted only where an up-to-date one would be, and it never leaves the key looser than
//! not checking at all. The bound above holds for the readings the checks carried, in whatever
//! order they arrive. The leaky bucket inherits all of this.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition, MAX_SPAN};
use crate::decision::{CheckError, Decision};
use crate::divisor::Divisor;
use crate::rate::Rate;

/// The generic cell rate algorithm: exact, smooth, one timestamp of state.
///
/// `burst` is how much cost a fresh key may take at once (default: the rate's limit). With
/// `burst = 1` requests are spaced by at least the emission interval.
///
/// ```
/// use traffik_core::{Algorithm, Gcra, Rate};
///
/// let gcra = Gcra::with_burst(Rate::per_second(10), 2)?;
/// let first = gcra.decide(0, 0, 2)?; // a fresh key takes its whole burst
/// assert!(first.decision.is_allowed());
/// let second = gcra.decide(first.next.unwrap(), 0, 1)?;
/// assert_eq!(second.decision.retry_after_nanos(), 100_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// Emission interval `T`, nanoseconds per unit of cost.
    interval: u64,
    /// `T` again, for division without a hardware divide.
    per_unit: Divisor,
    /// `burst * T`: how far ahead of now the TAT may run.
    tolerance: u64,
    burst: u64,
}

impl Gcra {
    /// GCRA with a burst equal to the rate's limit.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        Self::with_burst(rate, rate.limit())
    }

    /// GCRA with an explicit burst (at least 1).
    pub fn with_burst(rate: Rate, burst: u64) -> Result<Self, ConfigError> {
        let (limit, period) = finite_rate(rate)?;
        let interval = period.div_ceil(limit);
        let tolerance = tolerance(burst, interval)?;
        Ok(Gcra {
            interval,
            per_unit: Divisor::new(interval),
            tolerance,
            burst,
        })
    }

    /// The emission interval in nanoseconds.
    pub const fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// The burst: the most cost one check can take.
    pub const fn burst(&self) -> u64 {
        self.burst
    }

    /// This GCRA's parameters, e.g. to check on a backend that takes them per call.
    pub const fn params(&self) -> GcraParams {
        GcraParams {
            interval: self.interval,
            burst: self.burst,
        }
    }
}

/// The parameters of one GCRA check: the emission interval `T` and the burst (the most cost one
/// check may take, and the limit its decision reports); the tolerance is `burst * T`.
///
/// Every strategy that keeps one TAT word and reads it under the rate in force at the check
/// ([`Gcra`], [`LeakyBucket`], a [`Live`](crate::Live) or [`Tiers`](crate::Tiers) of them,
/// [`Adaptive`](crate::Adaptive), [`Schedule`](crate::Schedule),
/// [`PriorityLevel`](crate::PriorityLevel)) decides a check exactly as [`Gcra`] with the
/// parameters it hands out for that check. So a backend that takes these per call (such as
/// `traffik-redis`'s `check_gcra`) makes the same decisions as the strategy in process.
///
/// ```
/// use traffik_core::{Algorithm, Gcra, GcraParams, Rate};
///
/// let params = Gcra::new(Rate::per_second(4))?.params();
/// assert_eq!(params, GcraParams::new(250_000_000, 4)?);
/// assert_eq!(params.tolerance_nanos(), 1_000_000_000);
/// let t = params.decide(0, 0, 4)?;
/// assert_eq!(t.next, Some(1_000_000_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GcraParams {
    interval: u64,
    burst: u64,
}

impl GcraParams {
    /// Parameters of `interval_nanos` per unit and a burst of `burst` units, both at least 1,
    /// with `burst * interval_nanos` within the span every algorithm accepts.
    pub fn new(interval_nanos: u64, burst: u64) -> Result<Self, ConfigError> {
        if interval_nanos == 0 {
            return Err(ConfigError::RateTooFast {
                limit: 1,
                period_nanos: 0,
            });
        }
        tolerance(burst, interval_nanos)?;
        Ok(GcraParams {
            interval: interval_nanos,
            burst,
        })
    }

    /// From parts a strategy has already validated (`burst * interval` within the span).
    pub(crate) const fn from_parts(interval: u64, burst: u64) -> Self {
        GcraParams { interval, burst }
    }

    /// The emission interval `T` in nanoseconds.
    pub const fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// The burst: the most cost one check may take, and the limit decisions report.
    pub const fn burst(&self) -> u64 {
        self.burst
    }

    /// How far ahead of now the TAT may run: `burst * T`.
    pub const fn tolerance_nanos(&self) -> u64 {
        // Checked at construction.
        self.burst * self.interval
    }

    /// One check under these parameters: what [`Gcra::decide`] with them says.
    pub fn decide(&self, tat: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        if cost > self.burst {
            return Err(CheckError::InsufficientCapacity { max: self.burst });
        }
        Ok(crate::tat::step(
            self.interval,
            |x| x / self.interval,
            self.tolerance_nanos(),
            self.burst,
            tat,
            now,
            cost,
        ))
    }
}

impl Algorithm for Gcra {
    #[inline]
    fn capacity(&self) -> u64 {
        self.burst
    }

    #[inline]
    fn decide(&self, tat: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        if cost > self.burst {
            return Err(CheckError::InsufficientCapacity { max: self.burst });
        }
        // A TAT in the past (or a clock read behind another thread's) counts from now: a
        // backwards reading only shrinks the slack, so it can never admit more.
        let base = if tat > now { tat } else { now };
        // cost <= burst, so cost * T <= tolerance, which fits.
        let new_tat = base.saturating_add(cost * self.interval);
        let horizon = now.saturating_add(self.tolerance);
        if new_tat <= horizon {
            let remaining = self.per_unit.div(horizon - new_tat);
            let decision = Decision::allow(self.burst, remaining, new_tat - now);
            Ok(Transition::store(decision, new_tat, cost))
        } else {
            let remaining = self.per_unit.div(horizon.saturating_sub(base));
            let decision = Decision::deny(self.burst, remaining, new_tat - horizon, base - now);
            Ok(Transition::keep(decision))
        }
    }

    #[inline]
    fn reset_after(&self, tat: u64, now: u64) -> u64 {
        tat.saturating_sub(now)
    }
}

/// The leaky bucket as a meter: each check pours `cost` into a bucket of `capacity` that drains
/// at the rate; a check that would overflow is refused.
///
/// This is the same machine as [`Gcra`] seen from the other side (the bucket level is how far the
/// TAT runs ahead of now), so for equal capacity and burst the two make identical decisions.
/// Capacity defaults to the rate's limit; `capacity = 1` gives perfectly smooth spacing.
/// Admission bound: as [`Gcra`], `capacity + limit - 1` in any window of one period.
///
/// ```
/// use traffik_core::{Algorithm, LeakyBucket, Rate};
///
/// let bucket = LeakyBucket::with_capacity(Rate::per_second(4), 1)?;
/// let t = bucket.decide(0, 0, 1)?;
/// let next = bucket.decide(t.next.unwrap(), 0, 1)?;
/// assert_eq!(next.decision.retry_after_nanos(), 250_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakyBucket(Gcra);

impl LeakyBucket {
    /// A bucket holding the rate's limit.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        Gcra::new(rate).map(LeakyBucket)
    }

    /// A bucket of an explicit capacity (at least 1).
    pub fn with_capacity(rate: Rate, capacity: u64) -> Result<Self, ConfigError> {
        Gcra::with_burst(rate, capacity).map(LeakyBucket)
    }

    /// The bucket's capacity.
    pub const fn bucket_capacity(&self) -> u64 {
        self.0.burst
    }

    /// Nanoseconds for one unit to drain.
    pub const fn drain_interval_nanos(&self) -> u64 {
        self.0.interval
    }

    /// The GCRA parameters this bucket decides with (burst = capacity).
    pub const fn params(&self) -> GcraParams {
        self.0.params()
    }
}

impl Algorithm for LeakyBucket {
    #[inline]
    fn capacity(&self) -> u64 {
        self.0.capacity()
    }
    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        self.0.decide(state, now, cost)
    }
    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        self.0.reset_after(state, now)
    }
}

/// The tolerance `burst * interval` of a GCRA-family limit: refused for a zero burst, and for a
/// tolerance beyond the span every algorithm accepts (so TATs stay exact).
pub(crate) fn tolerance(burst: u64, interval: u64) -> Result<u64, ConfigError> {
    if burst == 0 {
        return Err(ConfigError::ZeroBurst);
    }
    burst
        .checked_mul(interval)
        .filter(|t| *t <= MAX_SPAN)
        .ok_or(ConfigError::BurstOverflow)
}

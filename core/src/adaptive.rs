//! A rate that follows a load signal the application reports: [`Adaptive`].
//!
//! The effective rate is `limit / period` with `limit` moving between a floor and a ceiling.
//! The application calls [`Adaptive::report`] with a load signal (an error rate in per mille, a
//! latency in microseconds, a queue depth: any `u64` where larger means more load) and the
//! limit moves by AIMD (additive increase, multiplicative decrease):
//!
//! * `signal <= target`: `limit = min(ceiling, limit + increase)`;
//! * `signal > target`: `limit = max(floor, floor_div(limit * numerator, denominator))`.
//!
//! The limit is one atomic word, updated by a CAS loop in `report` and read once (one relaxed
//! load) per check; no lock anywhere. Each check runs GCRA with `T = ceil(period / limit)` and a
//! tolerance of `burst * T`, on the key's stored theoretical arrival time (TAT), which is kept as
//! the rate moves (the rule of [`Live`](crate::Live)): a key that has spent its burst stays
//! empty until its TAT comes within the new tolerance.
//!
//! **Admission bound.** Between two changes of the limit, as [`Gcra`](crate::Gcra) at the
//! current rate. Across changes, in any window of `W` nanoseconds at most
//! `ceil((W + burst * T_floor) / T_ceiling) - 1` units, where `T_floor` and `T_ceiling` are the
//! floor's and the ceiling's intervals: each admitted unit pushes the TAT by at least
//! `T_ceiling` from at least the window's start, and an admission leaves the TAT at most
//! `burst * T <= burst * T_floor` ahead of its time. A check that reads the limit just before a
//! `report` lands decides with the old rate; the next one sees the new rate.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition};
use crate::decision::CheckError;
use crate::rate::Rate;
use crate::sync::{AtomicU64, Ordering};
use crate::tat;
use core::fmt;

/// Why an [`Adaptive`] could not be built or its limit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdaptiveError {
    /// The floor or the ceiling is not a valid finite rate.
    Config(ConfigError),
    /// Floor and ceiling must share one period, so the limit moves in whole units of it.
    PeriodMismatch {
        /// The floor's period in nanoseconds.
        floor_nanos: u64,
        /// The ceiling's period in nanoseconds.
        ceiling_nanos: u64,
    },
    /// The floor's limit is above the ceiling's.
    FloorAboveCeiling {
        /// The floor's limit.
        floor: u64,
        /// The ceiling's limit.
        ceiling: u64,
    },
    /// The multiplicative decrease must be a fraction `numerator / denominator` in `(0, 1)`.
    DecreaseFactor {
        /// The numerator given.
        numerator: u64,
        /// The denominator given.
        denominator: u64,
    },
    /// A limit outside `floor..=ceiling` (for the start or [`Adaptive::set_limit`]).
    OutOfRange {
        /// The limit given.
        limit: u64,
        /// The floor's limit.
        floor: u64,
        /// The ceiling's limit.
        ceiling: u64,
    },
}

impl fmt::Display for AdaptiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdaptiveError::Config(e) => write!(f, "invalid adaptive rate: {e}"),
            AdaptiveError::PeriodMismatch {
                floor_nanos,
                ceiling_nanos,
            } => write!(
                f,
                "floor and ceiling must have the same period (floor {floor_nanos} ns, ceiling \
                 {ceiling_nanos} ns)"
            ),
            AdaptiveError::FloorAboveCeiling { floor, ceiling } => {
                write!(f, "floor limit {floor} is above ceiling limit {ceiling}")
            }
            AdaptiveError::DecreaseFactor {
                numerator,
                denominator,
            } => write!(
                f,
                "decrease factor {numerator}/{denominator} must be strictly between 0 and 1"
            ),
            AdaptiveError::OutOfRange {
                limit,
                floor,
                ceiling,
            } => write!(
                f,
                "limit {limit} is outside floor..=ceiling ({floor}..={ceiling})"
            ),
        }
    }
}

impl core::error::Error for AdaptiveError {}

impl From<ConfigError> for AdaptiveError {
    fn from(e: ConfigError) -> Self {
        AdaptiveError::Config(e)
    }
}

/// How an [`Adaptive`] is configured; build with [`Adaptive::builder`].
#[derive(Clone, Copy, Debug)]
#[must_use = "call build() to get the algorithm"]
pub struct AdaptiveBuilder {
    floor: Rate,
    ceiling: Rate,
    target: u64,
    increase: u64,
    decrease: (u64, u64),
    burst: Option<u64>,
    start: Option<u64>,
}

impl AdaptiveBuilder {
    /// Units added to the limit per report at or below the target (default 1).
    pub fn increase(mut self, units: u64) -> Self {
        self.increase = units;
        self
    }

    /// The factor the limit is multiplied by (rounding down) per report above the target
    /// (default 1/2); must be strictly between 0 and 1.
    pub fn decrease(mut self, numerator: u64, denominator: u64) -> Self {
        self.decrease = (numerator, denominator);
        self
    }

    /// The burst, in units, at every rate (default: the floor's limit, so a loaded service is
    /// never handed more at once than its floor allows).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The limit to start at (default: the ceiling's).
    pub fn start(mut self, limit: u64) -> Self {
        self.start = Some(limit);
        self
    }

    /// Checks the configuration and builds the algorithm.
    pub fn build(self) -> Result<Adaptive, AdaptiveError> {
        let (floor, floor_nanos) = finite_rate(self.floor)?;
        let (ceiling, ceiling_nanos) = finite_rate(self.ceiling)?;
        if floor_nanos != ceiling_nanos {
            return Err(AdaptiveError::PeriodMismatch {
                floor_nanos,
                ceiling_nanos,
            });
        }
        if floor > ceiling {
            return Err(AdaptiveError::FloorAboveCeiling { floor, ceiling });
        }
        let (numerator, denominator) = self.decrease;
        if numerator == 0 || numerator >= denominator {
            return Err(AdaptiveError::DecreaseFactor {
                numerator,
                denominator,
            });
        }
        let burst = self.burst.unwrap_or(floor);
        // The floor has the longest interval, so the largest tolerance.
        crate::gcra::tolerance(burst, floor_nanos.div_ceil(floor))?;
        let start = self.start.unwrap_or(ceiling);
        if !(floor..=ceiling).contains(&start) {
            return Err(AdaptiveError::OutOfRange {
                limit: start,
                floor,
                ceiling,
            });
        }
        Ok(Adaptive {
            period: floor_nanos,
            floor,
            ceiling,
            target: self.target,
            increase: self.increase,
            numerator,
            denominator,
            burst,
            limit: AtomicU64::new(start),
        })
    }
}

/// GCRA at a rate that moves between a floor and a ceiling as the application reports load.
///
/// See the [module docs](self) for the exact rule. Share it (it is `Sync`) between the limiter
/// that checks with it and the code that reports load: `limiter.algorithm().report(signal)`.
///
/// ```
/// use traffik_core::{Adaptive, Limiter, ManualClock, Rate};
///
/// // 10..=100 per second; latency target 200 ms; +10/s per good report, x1/2 per bad one.
/// let adaptive = Adaptive::builder(Rate::per_second(10), Rate::per_second(100), 200)
///     .increase(10)
///     .decrease(1, 2)
///     .build()?;
/// let clock = ManualClock::new();
/// let limiter = Limiter::new(adaptive, &clock);
/// assert_eq!(limiter.algorithm().report(350), 50); // overloaded: halve
/// assert_eq!(limiter.algorithm().report(420), 25);
/// assert_eq!(limiter.algorithm().report(120), 35); // recovering: +10
/// assert_eq!(limiter.algorithm().rate(), Rate::per_second(35));
/// assert!(limiter.check(1)?.is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Adaptive {
    period: u64,
    floor: u64,
    ceiling: u64,
    target: u64,
    increase: u64,
    numerator: u64,
    denominator: u64,
    burst: u64,
    /// Units per `period` now; always within `floor..=ceiling`.
    limit: AtomicU64,
}

/// What an [`Adaptive`] key looks like now; see [`Adaptive::details`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveDetails {
    /// The limit per period in force.
    pub limit: u64,
    /// The period in nanoseconds.
    pub period_nanos: u64,
    /// Units the key could take at once now at that limit.
    pub available: u64,
    /// How far the key's TAT runs ahead of now, in nanoseconds.
    pub ahead_nanos: u64,
}

impl Adaptive {
    /// Starts a configuration: the limit moves between `floor`'s and `ceiling`'s limits (which
    /// must share a period) by comparing each reported signal with `target`.
    pub fn builder(floor: Rate, ceiling: Rate, target: u64) -> AdaptiveBuilder {
        AdaptiveBuilder {
            floor,
            ceiling,
            target,
            increase: 1,
            decrease: (1, 2),
            burst: None,
            start: None,
        }
    }

    /// Reports one load signal and returns the limit it leaves (see the module docs).
    pub fn report(&self, signal: u64) -> u64 {
        let step = |limit: u64| {
            if signal <= self.target {
                limit.saturating_add(self.increase).min(self.ceiling)
            } else {
                // u128: limit * numerator may exceed u64; the result is below limit.
                let cut = (u128::from(limit) * u128::from(self.numerator)
                    / u128::from(self.denominator)) as u64;
                cut.max(self.floor)
            }
        };
        // Relaxed: the limit publishes no other memory; the CAS loop alone keeps every
        // report's step (none is lost when reports race).
        match self
            .limit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| Some(step(l)))
        {
            Ok(previous) | Err(previous) => step(previous),
        }
    }

    /// Sets the limit directly (for a controller of the application's own).
    pub fn set_limit(&self, limit: u64) -> Result<(), AdaptiveError> {
        if !(self.floor..=self.ceiling).contains(&limit) {
            return Err(AdaptiveError::OutOfRange {
                limit,
                floor: self.floor,
                ceiling: self.ceiling,
            });
        }
        // Relaxed: see `report`.
        self.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// The limit per period in force.
    pub fn limit(&self) -> u64 {
        // Relaxed: see `report`.
        self.limit.load(Ordering::Relaxed)
    }

    /// The rate in force.
    pub fn rate(&self) -> Rate {
        // The limit is at most the ceiling, which passed `finite_rate` for this period.
        Rate::from_nanos(self.limit(), self.period).unwrap_or(Rate::unlimited())
    }

    /// The burst in units (the same at every rate).
    pub const fn burst(&self) -> u64 {
        self.burst
    }

    /// The GCRA parameters under the limit in force now: a check with them decides exactly as
    /// this algorithm does until the limit moves again.
    pub fn params(&self) -> crate::gcra::GcraParams {
        // The build checked burst * interval for the floor's (longest) interval.
        crate::gcra::GcraParams::from_parts(self.period.div_ceil(self.limit()), self.burst)
    }

    /// What `state` means at `now` under the limit in force.
    pub fn details(&self, state: u64, now: u64) -> AdaptiveDetails {
        let limit = self.limit();
        let interval = self.period.div_ceil(limit);
        AdaptiveDetails {
            limit,
            period_nanos: self.period,
            available: tat::free_units(interval, self.burst * interval, state, now),
            ahead_nanos: state.saturating_sub(now),
        }
    }
}

impl Algorithm for Adaptive {
    #[inline]
    fn capacity(&self) -> u64 {
        self.burst
    }

    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        if cost > self.burst {
            return Err(CheckError::InsufficientCapacity { max: self.burst });
        }
        // One read of the limit per check; burst * interval fits (checked at build for the
        // floor's interval, the longest).
        let interval = self.period.div_ceil(self.limit());
        Ok(tat::step(
            interval,
            |x| x / interval,
            self.burst * interval,
            self.burst,
            state,
            now,
            cost,
        ))
    }

    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        state.saturating_sub(now)
    }
}

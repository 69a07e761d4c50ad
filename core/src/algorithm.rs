//! The contract every algorithm meets, and the runtime-chosen [`AnyAlgorithm`].
//!
//! An algorithm is a pure state transition over one `u64`: given the stored state, the time and
//! a cost, it returns a [`Decision`] and, when something was charged, the next state. The state
//! `0` always means "fresh" (nothing charged that still counts), so a zeroed word is a new key and
//! resetting a key is storing `0`.

use crate::debt_bucket::DebtBucket;
use crate::decision::{CheckError, Decision};
use crate::fixed_window::FixedWindow;
use crate::gcra::{Gcra, LeakyBucket};
use crate::rate::Rate;
use crate::rollover::{QuotaRollover, Rollover};
use crate::sliding_window::SlidingWindowCounter;
use crate::token_bucket::TokenBucket;
use core::fmt;

/// Every state an algorithm stores fits in this many bits, as long as `now` stays below
/// [`MAX_NOW`]; the keyed table uses the remaining top bit to mark a slot occupied.
pub const STATE_BITS: u32 = 63;

/// The latest clock reading the algorithms are specified for: 2^62 ns, about 146 years after
/// the clock's epoch. Later readings are clamped by the keyed table.
pub const MAX_NOW: u64 = 1 << 62;

/// The largest burst duration (`burst * interval`) or bucket capacity accepted, so that states
/// stay within [`STATE_BITS`]: a GCRA state is at most `now + burst * interval` and a token
/// bucket's at most `now + capacity`, both below `MAX_NOW + MAX_SPAN = 2^63` (the table's
/// occupied bit) for every `now <= MAX_NOW`.
pub(crate) const MAX_SPAN: u64 = (1 << 62) - 1;

/// The result of applying an algorithm to a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// What the caller is told.
    pub decision: Decision,
    /// The state to store, or `None` when nothing changes (a denial, or a zero-cost peek).
    pub next: Option<u64>,
}

/// Building transitions, for an [`Algorithm`] of your own.
///
/// ```
/// use traffik_core::{Algorithm, CheckError, Decision, Limiter, ManualClock, Transition};
///
/// /// At most `limit` units ever (a lifetime quota); the state is the amount used.
/// struct Lifetime {
///     limit: u64,
/// }
///
/// impl Algorithm for Lifetime {
///     fn capacity(&self) -> u64 {
///         self.limit
///     }
///     fn decide(&self, used: u64, _now: u64, cost: u64) -> Result<Transition, CheckError> {
///         if cost > self.limit {
///             return Err(CheckError::InsufficientCapacity { max: self.limit });
///         }
///         let left = self.limit - used;
///         Ok(if cost <= left {
///             let decision = Decision::allow(self.limit, left - cost, u64::MAX);
///             Transition::store(decision, used + cost, cost)
///         } else {
///             Transition::keep(Decision::deny(self.limit, left, u64::MAX, u64::MAX))
///         })
///     }
///     fn reset_after(&self, used: u64, _now: u64) -> u64 {
///         if used == 0 { 0 } else { u64::MAX }
///     }
/// }
///
/// let clock = ManualClock::new();
/// let limiter = Limiter::new(Lifetime { limit: 3 }, &clock);
/// assert!(limiter.check(2)?.is_allowed());
/// assert!(limiter.check(2)?.is_denied());
/// assert_eq!(limiter.check(1)?.remaining(), 0);
/// # Ok::<(), CheckError>(())
/// ```
impl Transition {
    /// A decision that writes nothing (a denial, or any peek).
    #[inline]
    pub const fn keep(decision: Decision) -> Self {
        Transition {
            decision,
            next: None,
        }
    }

    /// A decision that stores `next` as the key's state. With a zero `cost` (a peek) nothing
    /// is written whatever `next` is, so peeks never contend with checks.
    #[inline]
    pub const fn store(decision: Decision, next: u64, cost: u64) -> Self {
        Transition {
            decision,
            // A zero cost is a peek: nothing to write, so peeks never contend.
            next: if cost == 0 { None } else { Some(next) },
        }
    }
}

/// A rate-limiting algorithm whose whole per-key state is one `u64`.
///
/// Implementations must be pure: the same `(state, now, cost)` always gives the same answer,
/// which is what lets a CAS loop retry safely and lets tests compare against reference models.
pub trait Algorithm {
    /// The largest cost one check can ever be granted; a larger cost is
    /// [`CheckError::InsufficientCapacity`].
    fn capacity(&self) -> u64;

    /// Decides a check of `cost` at `now` against `state`. A cost of zero is a peek: it is always
    /// allowed, reports what remains, and never asks for a write.
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError>;

    /// Nanoseconds from `now` until `state` is equivalent to a fresh (`0`) state. Zero means the
    /// state can be dropped or reused for another key without changing any future decision.
    fn reset_after(&self, state: u64, now: u64) -> u64;

    /// Whether `state` decides exactly like a fresh state from `now` on.
    #[inline]
    fn is_fresh(&self, state: u64, now: u64) -> bool {
        self.reset_after(state, now) == 0
    }

    /// Runs `work` with the concrete algorithm behind `self`.
    ///
    /// The default hands over `self`. A type that chooses among algorithms at run time (such
    /// as [`AnyAlgorithm`]) overrides it to make the choice once and hand over the chosen
    /// variant, so that a caller's whole check (table probe, CAS loop and all) is compiled once
    /// per concrete algorithm instead of matching on the variant inside its loop. The keyed
    /// table and [`Limiter`](crate::Limiter) call their checks through this.
    #[inline(always)]
    fn dispatch<W: AlgorithmWork>(&self, work: W) -> W::Output
    where
        Self: Sized,
    {
        work.run(self)
    }
}

/// Work generic over the algorithm, run through [`Algorithm::dispatch`].
///
/// ```
/// use traffik_core::{Algorithm, AlgorithmKind, AlgorithmWork, AnyAlgorithm, Rate};
///
/// struct Capacity;
/// impl AlgorithmWork for Capacity {
///     type Output = u64;
///     fn run<A: Algorithm>(self, algorithm: &A) -> u64 {
///         algorithm.capacity() // compiled for the concrete `A`, not for the enum
///     }
/// }
///
/// let any = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(5), None)?;
/// assert_eq!(any.dispatch(Capacity), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AlgorithmWork {
    /// What the work returns.
    type Output;
    /// Does the work with the concrete `algorithm`.
    fn run<A: Algorithm>(self, algorithm: &A) -> Self::Output;
}

impl<A: Algorithm + ?Sized> Algorithm for &A {
    #[inline]
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        (**self).decide(state, now, cost)
    }
    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        (**self).reset_after(state, now)
    }
}

/// Why an algorithm could not be built from a rate and its options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// The algorithm needs a finite rate; use [`AnyAlgorithm`] (which maps an unlimited rate to
    /// [`Unlimited`]) or pick a finite rate.
    UnlimitedRate,
    /// A rate of zero per a non-zero period admits nothing.
    ZeroLimit,
    /// A burst or capacity of zero admits nothing.
    ZeroBurst,
    /// More than one unit per nanosecond cannot be represented exactly.
    RateTooFast {
        /// The rate's limit.
        limit: u64,
        /// The rate's period in nanoseconds.
        period_nanos: u64,
    },
    /// The burst is so large that its duration overflows `u64` nanoseconds.
    BurstOverflow,
    /// Window algorithms admit exactly `limit` per window and take no separate burst.
    BurstNotSupported,
    /// A window limit too large to pack beside the window index in one `u64` (for the sliding
    /// window counter, the largest limit also depends on the period: see its docs).
    LimitTooLarge {
        /// The largest limit this algorithm accepts for this period.
        max: u64,
    },
    /// A window period longer than the window algorithms accept.
    PeriodTooLong {
        /// The longest period accepted, in nanoseconds.
        max_nanos: u64,
    },
    /// A rollover fraction must have a non-zero denominator and be at most 1.
    RolloverFraction {
        /// The fraction's numerator.
        numerator: u32,
        /// The fraction's denominator.
        denominator: u32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnlimitedRate => {
                f.write_str("this algorithm needs a finite rate, not the unlimited rate 0/0")
            }
            ConfigError::ZeroLimit => f.write_str(
                "a rate of zero per period admits nothing; use a positive limit or Rate::unlimited()",
            ),
            ConfigError::ZeroBurst => f.write_str("burst (capacity) must be at least 1"),
            ConfigError::RateTooFast {
                limit,
                period_nanos,
            } => write!(
                f,
                "rate {limit} per {period_nanos} ns is faster than one per nanosecond"
            ),
            ConfigError::BurstOverflow => {
                f.write_str("burst duration (burst x emission interval) or bucket capacity exceeds 2^62")
            }
            ConfigError::BurstNotSupported => f.write_str(
                "window algorithms admit exactly the rate's limit per window; they take no burst",
            ),
            ConfigError::LimitTooLarge { max } => {
                write!(f, "window limit too large to pack: at most {max} for this period")
            }
            ConfigError::PeriodTooLong { max_nanos } => {
                write!(f, "window period too long: at most {max_nanos} ns")
            }
            ConfigError::RolloverFraction {
                numerator,
                denominator,
            } => write!(
                f,
                "rollover fraction {numerator}/{denominator} must have a non-zero denominator \
                 and be at most 1"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Checks a rate is finite, non-zero and at most one unit per nanosecond; returns
/// `(limit, period_nanos)`.
pub(crate) fn finite_rate(rate: Rate) -> Result<(u64, u64), ConfigError> {
    if rate.is_unlimited() {
        return Err(ConfigError::UnlimitedRate);
    }
    let (limit, period) = (rate.limit(), rate.period_nanos());
    if limit == 0 {
        return Err(ConfigError::ZeroLimit);
    }
    if limit > period {
        return Err(ConfigError::RateTooFast {
            limit,
            period_nanos: period,
        });
    }
    Ok((limit, period))
}

/// The algorithm for [`Rate::unlimited`]: admits everything and keeps no state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unlimited;

impl Algorithm for Unlimited {
    #[inline]
    fn capacity(&self) -> u64 {
        u64::MAX
    }
    #[inline]
    fn decide(&self, _state: u64, _now: u64, _cost: u64) -> Result<Transition, CheckError> {
        Ok(Transition::keep(Decision::allow(u64::MAX, u64::MAX, 0)))
    }
    #[inline]
    fn reset_after(&self, _state: u64, _now: u64) -> u64 {
        0
    }
}

/// Names an algorithm for configuration; [`AnyAlgorithm::new`] builds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlgorithmKind {
    /// [`Gcra`]: the default; smooth, exact, one timestamp of state.
    #[default]
    Gcra,
    /// [`TokenBucket`].
    TokenBucket,
    /// [`LeakyBucket`].
    LeakyBucket,
    /// [`FixedWindow`].
    FixedWindow,
    /// [`SlidingWindowCounter`].
    SlidingWindowCounter,
    /// [`DebtBucket`]: a token bucket whose keys may owe up to `max_debt` tokens, repaid before
    /// their next admission. The burst sets the bucket's capacity.
    DebtBucket {
        /// The most tokens a key may owe.
        max_debt: u64,
    },
    /// [`QuotaRollover`]: a quota per fixed period whose unused part partly carries into the
    /// next period.
    QuotaRollover(Rollover),
}

/// An algorithm chosen at run time (from configuration). Dispatch is one predictable branch.
///
/// ```
/// use traffik_core::{AlgorithmKind, AnyAlgorithm, Rate};
///
/// let alg = AnyAlgorithm::new(AlgorithmKind::TokenBucket, "100/m".parse()?, None)?;
/// assert!(matches!(alg, AnyAlgorithm::TokenBucket(_)));
/// let open = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::unlimited(), None)?;
/// assert!(matches!(open, AnyAlgorithm::Unlimited(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnyAlgorithm {
    /// See [`Gcra`].
    Gcra(Gcra),
    /// See [`TokenBucket`].
    TokenBucket(TokenBucket),
    /// See [`LeakyBucket`].
    LeakyBucket(LeakyBucket),
    /// See [`FixedWindow`].
    FixedWindow(FixedWindow),
    /// See [`SlidingWindowCounter`].
    SlidingWindowCounter(SlidingWindowCounter),
    /// See [`DebtBucket`].
    DebtBucket(DebtBucket),
    /// See [`QuotaRollover`].
    QuotaRollover(QuotaRollover),
    /// See [`Unlimited`].
    Unlimited(Unlimited),
}

impl AnyAlgorithm {
    /// The GCRA parameters of a GCRA or leaky bucket (`None` for any other kind): what a
    /// backend that takes them per call needs, e.g. for the tier a [`Tiers`](crate::Tiers)
    /// selects or the algorithm a [`Live`](crate::Live) holds now.
    pub fn gcra_params(&self) -> Option<crate::gcra::GcraParams> {
        match self {
            AnyAlgorithm::Gcra(g) => Some(g.params()),
            AnyAlgorithm::LeakyBucket(b) => Some(b.params()),
            _ => None,
        }
    }

    /// Builds `kind` for `rate`. `burst` sets the burst (GCRA) or capacity (buckets) and defaults
    /// to the rate's limit; window algorithms (and the rollover quota) have no burst and reject
    /// one that differs from the limit. An unlimited rate gives [`AnyAlgorithm::Unlimited`] whatever the kind.
    pub fn new(kind: AlgorithmKind, rate: Rate, burst: Option<u64>) -> Result<Self, ConfigError> {
        if rate.is_unlimited() {
            return Ok(AnyAlgorithm::Unlimited(Unlimited));
        }
        let burst = burst.unwrap_or(rate.limit());
        Ok(match kind {
            AlgorithmKind::Gcra => AnyAlgorithm::Gcra(Gcra::with_burst(rate, burst)?),
            AlgorithmKind::TokenBucket => {
                AnyAlgorithm::TokenBucket(TokenBucket::with_capacity(rate, burst)?)
            }
            AlgorithmKind::LeakyBucket => {
                AnyAlgorithm::LeakyBucket(LeakyBucket::with_capacity(rate, burst)?)
            }
            AlgorithmKind::FixedWindow => {
                AnyAlgorithm::FixedWindow(FixedWindow::new(no_burst(rate, burst)?)?)
            }
            AlgorithmKind::SlidingWindowCounter => AnyAlgorithm::SlidingWindowCounter(
                SlidingWindowCounter::new(no_burst(rate, burst)?)?,
            ),
            AlgorithmKind::DebtBucket { max_debt } => {
                AnyAlgorithm::DebtBucket(DebtBucket::with_capacity(rate, burst, max_debt)?)
            }
            AlgorithmKind::QuotaRollover(rollover) => {
                AnyAlgorithm::QuotaRollover(QuotaRollover::new(no_burst(rate, burst)?, rollover)?)
            }
        })
    }

    /// Which kind this is; `None` for [`AnyAlgorithm::Unlimited`].
    pub fn kind(&self) -> Option<AlgorithmKind> {
        Some(match self {
            AnyAlgorithm::Gcra(_) => AlgorithmKind::Gcra,
            AnyAlgorithm::TokenBucket(_) => AlgorithmKind::TokenBucket,
            AnyAlgorithm::LeakyBucket(_) => AlgorithmKind::LeakyBucket,
            AnyAlgorithm::FixedWindow(_) => AlgorithmKind::FixedWindow,
            AnyAlgorithm::SlidingWindowCounter(_) => AlgorithmKind::SlidingWindowCounter,
            AnyAlgorithm::DebtBucket(a) => AlgorithmKind::DebtBucket {
                max_debt: a.max_debt(),
            },
            AnyAlgorithm::QuotaRollover(a) => AlgorithmKind::QuotaRollover(a.rollover()),
            AnyAlgorithm::Unlimited(_) => return None,
        })
    }
}

fn no_burst(rate: Rate, burst: u64) -> Result<Rate, ConfigError> {
    if burst == rate.limit() {
        Ok(rate)
    } else {
        Err(ConfigError::BurstNotSupported)
    }
}

macro_rules! dispatch {
    ($self:ident, $alg:ident => $e:expr) => {
        match $self {
            AnyAlgorithm::Gcra($alg) => $e,
            AnyAlgorithm::TokenBucket($alg) => $e,
            AnyAlgorithm::LeakyBucket($alg) => $e,
            AnyAlgorithm::FixedWindow($alg) => $e,
            AnyAlgorithm::SlidingWindowCounter($alg) => $e,
            AnyAlgorithm::DebtBucket($alg) => $e,
            AnyAlgorithm::QuotaRollover($alg) => $e,
            AnyAlgorithm::Unlimited($alg) => $e,
        }
    };
}

impl Algorithm for AnyAlgorithm {
    #[inline]
    fn capacity(&self) -> u64 {
        dispatch!(self, a => a.capacity())
    }
    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        dispatch!(self, a => a.decide(state, now, cost))
    }
    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        dispatch!(self, a => a.reset_after(state, now))
    }
    #[inline]
    fn dispatch<W: AlgorithmWork>(&self, work: W) -> W::Output {
        dispatch!(self, a => work.run(a))
    }
}

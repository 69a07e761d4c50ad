//! Per-key quotas: which algorithm (rate, burst, kind) governs a key, chosen at check time.
//!
//! A [`Quotas`] value maps a key to one of a fixed set of algorithms. The keyed
//! `QuotaLimiter` (feature `alloc`) asks it on every check and runs the check with the
//! selected algorithm, in the same single table for every tier. [`Tiers`] is the ready-made
//! set: up to `N` algorithms and a closure from key to tier index, so a lookup costs one call
//! of the closure and one array index however many tiers there are.
//!
//! # The rule for state read under another algorithm
//!
//! A key's state word is written by whichever algorithm governed its last charge, and read by
//! whichever governs its next check. That is only meaningful if both read the word the same
//! way. [`SharedState`] says which algorithms do:
//!
//! * [`Gcra`] and [`LeakyBucket`], at **any** rate and burst: their state is a theoretical
//!   arrival time (TAT), an absolute clock reading. Under the new parameters the key is charged
//!   from `max(TAT, now)` and admitted while the new TAT stays within the new burst of now. So a
//!   key that moves to a faster tier keeps the debt it already ran up (it is not handed a fresh
//!   burst), and one that moves to a slower tier is not punished for what it used under the
//!   faster one beyond its TAT: exactly "what it has used so far, measured in time".
//! * [`Unlimited`] writes nothing, so it is compatible with everything: the word keeps whatever
//!   the last limited tier wrote.
//! * Every other algorithm (token bucket, windows, and any added later) packs counts whose
//!   meaning depends on its parameters (a token schedule, a window index beside counters whose
//!   width depends on the limit), so it shares state only with an identical configuration.
//!
//! [`Tiers::new`] refuses a set in which two tiers do not share state
//! ([`QuotaError::Incompatible`]), so no key's word is ever read under a meaning it was not
//! written with, however its tier changes.

use crate::algorithm::{Algorithm, AlgorithmKind, AnyAlgorithm, ConfigError, Unlimited};
use crate::fixed_window::FixedWindow;
use crate::gcra::{Gcra, LeakyBucket};
use crate::live::{Live, LiveError};
use crate::rate::Rate;
use crate::sliding_window::SlidingWindowCounter;
use crate::token_bucket::TokenBucket;
use core::fmt;

/// Whether two algorithms read a state word the same way, so that a key may move between them
/// without a reset. See the [module docs](self) for the rule.
pub trait SharedState {
    /// Whether a state written by `self` decides correctly under `other`, and back.
    fn shares_state_with(&self, other: &Self) -> bool;

    /// Whether this algorithm ever writes a state (only [`Unlimited`] does not). A live change
    /// is checked against the last algorithm that does, since that one wrote the states.
    fn writes_state(&self) -> bool {
        true
    }
}

impl SharedState for Gcra {
    /// Always: a GCRA state is a TAT, meaningful under any rate and burst.
    fn shares_state_with(&self, _other: &Self) -> bool {
        true
    }
}

impl SharedState for LeakyBucket {
    /// Always: the bucket's state is a GCRA TAT.
    fn shares_state_with(&self, _other: &Self) -> bool {
        true
    }
}

impl SharedState for Unlimited {
    fn shares_state_with(&self, _other: &Self) -> bool {
        true
    }
    fn writes_state(&self) -> bool {
        false
    }
}

macro_rules! identical_only {
    ($($t:ty),*) => {$(
        impl SharedState for $t {
            /// Only with an identical configuration: the state's meaning depends on it.
            fn shares_state_with(&self, other: &Self) -> bool {
                self == other
            }
        }
    )*};
}
identical_only!(TokenBucket, FixedWindow, SlidingWindowCounter);

impl SharedState for AnyAlgorithm {
    fn shares_state_with(&self, other: &Self) -> bool {
        use AnyAlgorithm::{Gcra as G, LeakyBucket as L, Unlimited as U};
        match (self, other) {
            (U(_), _) | (_, U(_)) => true,
            (G(_) | L(_), G(_) | L(_)) => true,
            // Everything else, including kinds added later, only with itself.
            (a, b) => a == b,
        }
    }
    fn writes_state(&self) -> bool {
        !matches!(self, AnyAlgorithm::Unlimited(_))
    }
}

/// Chooses the algorithm that governs a key, at every check.
///
/// Implementations must be cheap (they run on every check) and must only return algorithms
/// that share state with each other (see the [module docs](self)); [`Tiers`] checks that when
/// it is built.
pub trait Quotas<K: ?Sized> {
    /// The algorithms chosen among.
    type Algorithm: Algorithm;

    /// The algorithm for `key`.
    fn select(&self, key: &K) -> &Self::Algorithm;

    /// Nanoseconds until `state` decides like a fresh state under **every** algorithm
    /// [`select`](Self::select) may return. The keyed table reclaims another key's slot only
    /// when this is zero, since it cannot tell which tier that key is in.
    fn reset_after(&self, state: u64, now: u64) -> u64;
}

/// Why a set of quotas could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// A tier's algorithm could not be built.
    Config {
        /// The tier (index into the set).
        tier: usize,
        /// Why.
        error: ConfigError,
    },
    /// Two tiers read a key's state differently, so a key moving between them would be
    /// misjudged (see the [module docs](self)).
    Incompatible {
        /// The first tier.
        first: usize,
        /// A later tier that does not share state with it.
        second: usize,
    },
    /// A tier multiplier of zero (a tier that admits nothing is [`Rate`]'s job, not a
    /// multiplier's).
    ZeroMultiplier {
        /// The tier.
        tier: usize,
    },
    /// A multiplied limit or burst does not fit in `u64`.
    MultiplierOverflow {
        /// The tier.
        tier: usize,
    },
    /// [`Tiers::set_tier`] named a tier past the last.
    NoSuchTier {
        /// The tier named.
        tier: usize,
        /// How many tiers there are.
        tiers: usize,
    },
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::Config { tier, error } => write!(f, "tier {tier}: {error}"),
            QuotaError::Incompatible { first, second } => write!(
                f,
                "tiers {first} and {second} read a key's state differently; only GCRA and \
                 leaky-bucket tiers may differ in rate and burst, other kinds must be identical"
            ),
            QuotaError::ZeroMultiplier { tier } => {
                write!(f, "tier {tier}: a rate multiplier must be at least 1")
            }
            QuotaError::MultiplierOverflow { tier } => {
                write!(
                    f,
                    "tier {tier}: the multiplied limit or burst overflows u64"
                )
            }
            QuotaError::NoSuchTier { tier, tiers } => {
                write!(f, "no tier {tier}: there are {tiers} tiers")
            }
        }
    }
}

impl core::error::Error for QuotaError {}

/// Up to `N` algorithms and a closure that picks one per key by index.
///
/// The closure returns a tier index; an index past the last tier selects tier `0`, the
/// default tier (so a key with an unknown plan gets the base quota, never a missing one). The
/// closure can consult anything cheap: a field of the key, a small map of tenants to plans.
///
/// ```
/// use traffik_core::{AlgorithmKind, AnyAlgorithm, Gcra, Quotas, Rate, Tiers};
///
/// let tiers = Tiers::new(
///     [Gcra::new(Rate::per_second(10))?, Gcra::new(Rate::per_second(100))?],
///     |user: &u64| usize::from(*user >= 1_000), // users from 1000 up are on the paid plan
/// )?;
/// assert_eq!(tiers.select(&7).burst(), 10);
/// assert_eq!(tiers.select(&1_234).burst(), 100);
///
/// // Token buckets read their state under their own rate only: refused.
/// let mixed = Tiers::new(
///     [
///         AnyAlgorithm::new(AlgorithmKind::TokenBucket, Rate::per_second(10), None)?,
///         AnyAlgorithm::new(AlgorithmKind::TokenBucket, Rate::per_second(20), None)?,
///     ],
///     |_: &u64| 0,
/// );
/// assert!(mixed.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Tiers<A, F, const N: usize> {
    tiers: [A; N],
    select: F,
}

impl<A: fmt::Debug, F, const N: usize> fmt::Debug for Tiers<A, F, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiers")
            .field("tiers", &self.tiers)
            .finish_non_exhaustive()
    }
}

impl<A: Algorithm + SharedState, F, const N: usize> Tiers<A, F, N> {
    /// A set of tiers; `select` maps a key to an index into `tiers`. Refuses tiers that do
    /// not all share state (see the [module docs](self)). `N` must be at least 1 (checked at
    /// compile time).
    pub fn new(tiers: [A; N], select: F) -> Result<Self, QuotaError> {
        const { assert!(N >= 1, "a quota set needs at least one tier") };
        for (first, a) in tiers.iter().enumerate() {
            for (second, b) in tiers.iter().enumerate().skip(first + 1) {
                if !a.shares_state_with(b) {
                    return Err(QuotaError::Incompatible { first, second });
                }
            }
        }
        Ok(Tiers { tiers, select })
    }

    /// The tiers, in index order.
    pub fn tiers(&self) -> &[A; N] {
        &self.tiers
    }
}

impl<F, const N: usize> Tiers<AnyAlgorithm, F, N> {
    /// Tiers that multiply one base quota: tier `i` admits `multipliers[i]` times the base
    /// rate, with `multipliers[i]` times the base burst (the base burst defaults to the rate's
    /// limit). Free x1 and premium x5 over "10/s" give 10/s with a burst of 10, and 50/s with a
    /// burst of 50.
    ///
    /// `kind` must let tiers differ in rate ([`AlgorithmKind::Gcra`] or
    /// [`AlgorithmKind::LeakyBucket`]); any other kind is refused with
    /// [`QuotaError::Incompatible`] unless all multipliers are equal.
    ///
    /// ```
    /// use traffik_core::{AlgorithmKind, Quotas, Rate, Algorithm, Tiers};
    ///
    /// #[derive(PartialEq)]
    /// enum Plan { Free, Premium }
    /// let tiers = Tiers::scaled(AlgorithmKind::Gcra, Rate::per_second(10), None, [1, 5],
    ///     |plan: &Plan| if *plan == Plan::Premium { 1 } else { 0 })?;
    /// assert_eq!(tiers.select(&Plan::Free).capacity(), 10);
    /// assert_eq!(tiers.select(&Plan::Premium).capacity(), 50);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scaled(
        kind: AlgorithmKind,
        base: Rate,
        burst: Option<u64>,
        multipliers: [u64; N],
        select: F,
    ) -> Result<Self, QuotaError> {
        let mut tiers = [AnyAlgorithm::Unlimited(Unlimited); N];
        for (tier, (slot, m)) in tiers.iter_mut().zip(multipliers).enumerate() {
            if m == 0 {
                return Err(QuotaError::ZeroMultiplier { tier });
            }
            let rate = if base.is_unlimited() {
                base
            } else {
                let limit = base
                    .limit()
                    .checked_mul(m)
                    .ok_or(QuotaError::MultiplierOverflow { tier })?;
                Rate::from_nanos(limit, base.period_nanos())
                    .map_err(|_| QuotaError::MultiplierOverflow { tier })?
            };
            let burst = match burst {
                Some(b) => Some(
                    b.checked_mul(m)
                        .ok_or(QuotaError::MultiplierOverflow { tier })?,
                ),
                None => None,
            };
            *slot = AnyAlgorithm::new(kind, rate, burst)
                .map_err(|error| QuotaError::Config { tier, error })?;
        }
        Tiers::new(tiers, select)
    }
}

impl<A: Algorithm + Copy + SharedState, F, const N: usize> Tiers<A, F, N> {
    /// The same tiers, each behind a [`Live`] so that it can be changed while the limiter
    /// runs, with [`set_tier`](Tiers::set_tier).
    pub fn live(self) -> Tiers<Live<A>, F, N> {
        Tiers {
            tiers: self.tiers.map(Live::new),
            select: self.select,
        }
    }
}

impl<A: Algorithm + Copy + SharedState, F, const N: usize> Tiers<Live<A>, F, N> {
    /// Replaces tier `tier`'s algorithm while the limiter runs, keeping every key's state, if
    /// the new algorithm shares state with every tier, itself included (see the
    /// [module docs](self): any GCRA
    /// or leaky bucket among GCRA tiers; otherwise refused with
    /// [`QuotaError::Incompatible`], changing nothing).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] {
    /// use traffik_core::{AlgorithmKind, AnyAlgorithm, ManualClock, QuotaLimiter, Rate, TableConfig, Tiers};
    ///
    /// let tiers = Tiers::scaled(AlgorithmKind::Gcra, Rate::per_second(10), None, [1, 5],
    ///     |user: &u64| usize::from(*user >= 100))?.live();
    /// let clock = ManualClock::new();
    /// let limiter = QuotaLimiter::new(tiers, &clock, TableConfig::new(100, [1, 2, 3, 4]))?;
    /// assert!(limiter.check(&500, 25)?.is_allowed()); // 25 x 20 ms: TAT 500 ms ahead
    /// // Premium becomes x10 (100/s, burst 100, so 1 s ahead allowed): key 500 keeps its TAT,
    /// // so 50 more units of 10 ms fit now, not a fresh 100.
    /// let premium = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(100), None)?;
    /// limiter.quotas().set_tier(1, premium)?;
    /// assert!(limiter.check(&500, 50)?.is_allowed());
    /// assert!(limiter.check(&500, 1)?.is_denied());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_tier(&self, tier: usize, algorithm: A) -> Result<(), QuotaError> {
        let target = self
            .tiers
            .get(tier)
            .ok_or(QuotaError::NoSuchTier { tier, tiers: N })?;
        for (other, live) in self.tiers.iter().enumerate() {
            if !live.anchor().shares_state_with(&algorithm) {
                let (first, second) = (other.min(tier), other.max(tier));
                return Err(QuotaError::Incompatible { first, second });
            }
        }
        target.set(algorithm).map_err(|e| match e {
            LiveError::Config(error) => QuotaError::Config { tier, error },
            _ => QuotaError::Incompatible {
                first: tier,
                second: tier,
            },
        })
    }
}

impl<K: ?Sized, A: Algorithm, F: Fn(&K) -> usize, const N: usize> Quotas<K> for Tiers<A, F, N> {
    type Algorithm = A;

    #[inline]
    fn select(&self, key: &K) -> &A {
        let i = (self.select)(key);
        // Out of range: the default tier (documented on the type).
        self.tiers.get(i).unwrap_or(&self.tiers[0])
    }

    fn reset_after(&self, state: u64, now: u64) -> u64 {
        self.tiers
            .iter()
            .map(|a| a.reset_after(state, now))
            .max()
            .unwrap_or(0)
    }
}

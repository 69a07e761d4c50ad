//! The keyed limiter with a quota chosen per key: [`QuotaLimiter`].

use super::{Check, KeyedLimiter, Reclaim, TableConfig, TableError, TableStats};
use crate::algorithm::Algorithm;
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::key::Key;
use crate::quota::Quotas;
use core::fmt;
use core::marker::PhantomData;

/// The table's view of a quota set: it reclaims a slot only when the state is fresh under
/// every tier, since a slot does not record its key's tier.
pub(crate) struct PerKey<K: ?Sized, Q> {
    quotas: Q,
    _key: PhantomData<fn(&K)>,
}

impl<K: ?Sized, Q: Quotas<K>> Reclaim for PerKey<K, Q> {
    /// The slot may belong to a key of another tier than the one checking.
    #[inline]
    fn reclaim_after<G: Algorithm>(&self, _checking: &G, state: u64, now: u64) -> u64 {
        self.quotas.reset_after(state, now)
    }
}

impl<K: ?Sized, Q: fmt::Debug> fmt::Debug for PerKey<K, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.quotas.fmt(f)
    }
}

/// A keyed limiter whose algorithm is chosen per key, at every check, by a [`Quotas`] value
/// (for example [`Tiers`](crate::Tiers): a plan per tenant, a multiplier per tier).
///
/// All keys share one table, whatever their tier; a check costs what a
/// [`KeyedLimiter`] check costs plus one call of [`Quotas::select`]. A key whose tier changes
/// keeps its state, read under the new tier by the rule in the [`quota`](crate::quota) module
/// (GCRA: the TAT is kept).
///
/// ```
/// use traffik_core::{AlgorithmKind, ManualClock, QuotaLimiter, Rate, TableConfig, Tiers};
///
/// // Keys below 100 are free (10/s, burst 10); the rest are premium (x5).
/// let tiers = Tiers::scaled(AlgorithmKind::Gcra, Rate::per_second(10), None, [1, 5],
///     |user: &u64| usize::from(*user >= 100))?;
/// let clock = ManualClock::new();
/// let limiter = QuotaLimiter::new(tiers, &clock, TableConfig::new(1_000, [1, 2, 3, 4]))?;
/// assert!(limiter.check(&1, 10)?.is_allowed());
/// assert!(limiter.check(&1, 1)?.is_denied());
/// assert!(limiter.check(&500, 50)?.is_allowed());
/// assert!(limiter.check(&500, 1)?.is_denied());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct QuotaLimiter<K: ?Sized, Q, C> {
    table: KeyedLimiter<K, PerKey<K, Q>, C>,
}

impl<K: ?Sized, Q: fmt::Debug, C> fmt::Debug for QuotaLimiter<K, Q, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaLimiter")
            .field("quotas", &self.table.algorithm.quotas)
            .field("capacity", &self.table.capacity)
            .finish_non_exhaustive()
    }
}

impl<K: Key + ?Sized, Q: Quotas<K>, C: Clock> QuotaLimiter<K, Q, C> {
    /// A table for `config.capacity` keys of every tier together.
    pub fn new(quotas: Q, clock: C, config: TableConfig) -> Result<Self, TableError> {
        let per_key = PerKey {
            quotas,
            _key: PhantomData,
        };
        Ok(QuotaLimiter {
            table: KeyedLimiter::build(per_key, clock, config)?,
        })
    }

    /// Checks `cost` for `key` under the quota selected for it now, charging it if admitted.
    /// A cost of zero is a peek.
    #[must_use = "a denied check charges nothing: act on the decision"]
    #[inline]
    pub fn check(&self, key: &K, cost: u64) -> Result<Decision, CheckError> {
        let algorithm = self.table.algorithm.quotas.select(key);
        let code = key.encode(&self.table.hasher);
        // Compiled per concrete algorithm, like the fixed table's check.
        algorithm.dispatch(Check {
            table: &self.table,
            code,
            cost,
        })
    }

    /// What is left for `key` under its quota now, without charging; an unknown key reads as
    /// fresh and is not added.
    pub fn peek(&self, key: &K) -> Decision {
        match self.check(key, 0) {
            Ok(decision) => decision,
            // A zero cost is never refused; report "nothing left" rather than fail a peek.
            Err(_) => {
                let capacity = self.table.algorithm.quotas.select(key).capacity();
                Decision::deny(capacity, 0, 0, 0)
            }
        }
    }

    /// Forgets what `key` has been charged.
    pub fn reset(&self, key: &K) {
        self.table.reset(key);
    }

    /// Forgets every key.
    pub fn clear(&self) {
        self.table.clear();
    }

    /// Keys currently holding a slot.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key holds a slot.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The capacity the table was built for.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Occupancy and overflow counters.
    pub fn stats(&self) -> TableStats {
        self.table.stats()
    }

    /// Bytes of slot memory (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// The quotas.
    pub fn quotas(&self) -> &Q {
        &self.table.algorithm.quotas
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        self.table.clock()
    }
}

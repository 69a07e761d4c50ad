//! [`MemcachedQuotas`]: a memcached limiter whose algorithm is picked per key by a
//! [`Quotas`] set.

use std::fmt;

use traffik_core::{AsyncLimiter, Decision, Quotas, SharedState, Tiers};

use super::PerCallAlgorithm;
use crate::error::MemcachedLimiterError as E;
use crate::limiter::MemcachedLimiter;

/// A [`MemcachedLimiter`] whose every check is decided by the algorithm a [`Quotas`] set
/// selects for its key: a tier per tenant with [`Tiers`](traffik_core::Tiers) (live tiers
/// too, changed with [`set_tier`](traffik_core::Tiers::set_tier)), as the core's
/// `QuotaLimiter` does in process. The selection costs what the set's
/// [`select`](Quotas::select) costs (one closure call and an index for `Tiers`), however many
/// tiers there are.
///
/// Each check runs [`MemcachedLimiter::check_with`] with the selected algorithm, so the tiers
/// must read states the way the limiter's keys hold them (see the
/// [module docs](crate::dynamic)): build the limiter with GCRA for GCRA tiers. A key keeps its
/// state when its tier changes, read under the new tier by the core's rule.
///
/// ```no_run
/// use traffik_core::{AlgorithmKind, AsyncLimiter, Rate, Tiers};
/// use traffik_memcached::{MemcachedLimiter, MemcachedQuotas};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// // Free x1 and premium x5 over 10/s.
/// let tiers = Tiers::scaled(AlgorithmKind::Gcra, Rate::per_second(10), None, [1, 5],
///     |key: &[u8]| usize::from(key.starts_with(b"paid:")))?;
/// let memcached = MemcachedLimiter::builder("127.0.0.1:11211")
///     .rate("10/s") // the key format (GCRA); the tiers set the rates
///     .prefix("api")
///     .build()?;
/// let limiter = MemcachedQuotas::new(memcached, tiers);
/// let decision = limiter.check("paid:acme", 1).await?;
/// assert_eq!(decision.limit(), 50);
/// # Ok(()) }
/// ```
pub struct MemcachedQuotas<Q> {
    limiter: MemcachedLimiter,
    quotas: Q,
}

impl<Q: fmt::Debug> fmt::Debug for MemcachedQuotas<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedQuotas")
            .field("limiter", &self.limiter)
            .field("quotas", &self.quotas)
            .finish()
    }
}

impl<Q: Quotas<[u8]>> MemcachedQuotas<Q>
where
    Q::Algorithm: PerCallAlgorithm,
{
    /// Checks on `limiter`'s keys with the algorithm `quotas` selects for each key.
    pub fn new(limiter: MemcachedLimiter, quotas: Q) -> Self {
        MemcachedQuotas { limiter, quotas }
    }

    /// The limiter the checks run on.
    pub fn limiter(&self) -> &MemcachedLimiter {
        &self.limiter
    }

    /// The quota set (to change a live tier, say).
    pub fn quotas(&self) -> &Q {
        &self.quotas
    }

    /// Checks `cost` for `key` now under its selected algorithm, charging it if admitted. A
    /// cost of zero is a peek.
    ///
    /// # Errors
    ///
    /// As [`MemcachedLimiter::check_with`]: a selected algorithm that does not read the
    /// limiter's states is [`MemcachedLimiterError::Config`](E::Config), nothing sent.
    pub async fn check(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision, E> {
        let key = key.as_ref();
        let now = self.limiter.now();
        self.limiter
            .decide_with(key, cost, now, self.quotas.select(key))
            .await
    }

    /// [`check`](Self::check) at `now_nanos` instead of the clock's reading.
    pub async fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        now_nanos: u64,
    ) -> Result<Decision, E> {
        let key = key.as_ref();
        self.limiter
            .decide_with(key, cost, now_nanos, self.quotas.select(key))
            .await
    }

    /// What `key` has left now under its selected algorithm, without charging.
    pub async fn peek(&self, key: impl AsRef<[u8]>) -> Result<Decision, E> {
        self.check(key, 0).await
    }

    /// Forgets everything charged to `key`, whatever its tier (one `delete`).
    pub async fn reset(&self, key: impl AsRef<[u8]>) -> Result<(), E> {
        self.limiter.reset(key).await
    }
}

impl<A, F, const N: usize> MemcachedQuotas<Tiers<A, F, N>>
where
    A: PerCallAlgorithm + SharedState,
    F: Fn(&[u8]) -> usize,
{
    /// [`new`](Self::new) for a [`Tiers`] set, checking first that every tier reads states
    /// the way `limiter`'s keys hold them, so that a mismatch fails here rather than at the
    /// first check of a key in that tier. (A live tier changed later is still checked at every
    /// call.)
    ///
    /// # Errors
    ///
    /// [`MemcachedLimiterError::Config`](E::Config) naming the first tier that does not fit.
    pub fn with_tiers(limiter: MemcachedLimiter, tiers: Tiers<A, F, N>) -> Result<Self, E> {
        for (i, tier) in tiers.tiers().iter().enumerate() {
            limiter.fits(&tier.state_format()).map_err(|e| match e {
                E::Config(why) => E::Config(format!("tier {i}: {why}")),
                other => other,
            })?;
        }
        Ok(MemcachedQuotas::new(limiter, tiers))
    }
}

/// Any byte-like key (`[u8]`, `str`, `String`, ...), as for [`MemcachedLimiter`].
impl<K, Q> AsyncLimiter<K> for MemcachedQuotas<Q>
where
    K: AsRef<[u8]> + ?Sized + Sync,
    Q: Quotas<[u8]> + Send + Sync,
    Q::Algorithm: PerCallAlgorithm + Sync,
{
    type Error = E;

    async fn check(&self, key: &K, cost: u64) -> Result<Decision, E> {
        MemcachedQuotas::check(self, key.as_ref(), cost).await
    }

    async fn peek(&self, key: &K) -> Result<Decision, E> {
        MemcachedQuotas::peek(self, key.as_ref()).await
    }

    async fn reset(&self, key: &K) -> Result<(), E> {
        MemcachedQuotas::reset(self, key.as_ref()).await
    }
}

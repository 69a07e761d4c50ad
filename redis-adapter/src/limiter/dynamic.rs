//! GCRA with its parameters sent per call: the rate of each check comes from the caller, so
//! the core's strategies that read one TAT under the rate in force (live rates, tiers, adaptive
//! limits, schedules, priorities) run on Redis with the same decisions.

use std::fmt;

use traffik_core::{AsyncLimiter, Decision, GcraParams};

use super::{Now, Prepared, RedisLimiter};
use crate::error::RedisLimiterError;
use crate::keys;

/// The unit the dynamic script splits times by: fixed (one second), so that a key's stored
/// TAT is the same absolute time whatever interval a later check brings.
pub(super) const UNIT: u64 = 1_000_000_000;

/// The largest tolerance (`burst * T`) the script computes exactly: a TAT ahead of now by one
/// tolerance plus one more check's cost stays below 2^53.
const MAX_TOLERANCE: u64 = 1 << 51;

/// The key tag of per-call GCRA states: a state of its own, since the fixed-rate scripts split
/// times by a unit of their own configuration.
const TAG: &str = "gcrap";

impl RedisLimiter {
    /// Checks `cost` units for `key` under GCRA with the parameters `params` (from
    /// [`Gcra::params`](traffik_core::Gcra::params),
    /// [`AnyAlgorithm::gcra_params`](traffik_core::AnyAlgorithm::gcra_params) for a
    /// [`Live`](traffik_core::Live) or [`Tiers`](traffik_core::Tiers) selection,
    /// [`Adaptive::params`](traffik_core::Adaptive::params),
    /// [`Schedule::params_at`](traffik_core::Schedule::params_at),
    /// [`PriorityLevel::params`](traffik_core::PriorityLevel::params)), at the configured time
    /// source, whatever rate and algorithm this limiter was built with.
    ///
    /// The decision is the core's for the same state, time, cost and parameters, and the key's
    /// TAT is kept as an absolute time: a key checked under new parameters reads the TAT its
    /// last charge wrote, exactly as in process (no fresh burst on a change of rate, nothing
    /// waited for taken back). Its state lives at [`gcra_key`](Self::gcra_key), apart from
    /// the key's state under the limiter's own algorithm. The near cache is not used.
    ///
    /// The caller picks `params` on its own clock, while with
    /// [`TimeSource::Server`](crate::TimeSource::Server) the check runs at Redis's time: for a
    /// [`Schedule`](traffik_core::Schedule), a check within the clocks' skew of an hour
    /// boundary may run with the other hour's rate. Pass the time the parameters were picked
    /// at to [`check_gcra_at`](Self::check_gcra_at) where that matters.
    ///
    /// ```no_run
    /// use traffik_core::{Adaptive, Rate};
    /// use traffik_redis::RedisLimiter;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RedisLimiter::builder("redis://127.0.0.1:6380/")
    ///     .rate(Rate::per_second(10))
    ///     .build()
    ///     .await?;
    /// let adaptive = Adaptive::builder(Rate::per_second(10), Rate::per_second(100), 50).build()?;
    /// adaptive.report(20); // load below target: the limit goes up
    /// let decision = limiter.check_gcra("client-42", 1, adaptive.params()).await?;
    /// assert_eq!(decision.limit(), adaptive.burst());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RedisLimiterError::InsufficientCapacity`] for a cost above the burst (nothing sent);
    /// [`RedisLimiterError::Config`] for a tolerance above 2^51 ns (about 26 days), beyond
    /// what the script computes exactly; otherwise as [`check`](Self::check).
    pub async fn check_gcra(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        params: GcraParams,
    ) -> Result<Decision, RedisLimiterError> {
        let now = self.now();
        self.gcra_now(key.as_ref(), cost, params, now).await
    }

    /// [`check_gcra`](Self::check_gcra) as if the time were `now_nanos` (caller's clock,
    /// nanoseconds below 2^62), as [`check_at`](Self::check_at).
    pub async fn check_gcra_at(
        &self,
        key: impl AsRef<[u8]>,
        cost: u64,
        params: GcraParams,
        now_nanos: u64,
    ) -> Result<Decision, RedisLimiterError> {
        self.gcra_now(key.as_ref(), cost, params, Now::Nanos(now_nanos))
            .await
    }

    /// What [`check_gcra`](Self::check_gcra) would say, charging nothing.
    pub async fn peek_gcra(
        &self,
        key: impl AsRef<[u8]>,
        params: GcraParams,
    ) -> Result<Decision, RedisLimiterError> {
        self.check_gcra(key, 0, params).await
    }

    /// Forgets `key`'s per-call GCRA state (at [`gcra_key`](Self::gcra_key)).
    pub async fn reset_gcra(&self, key: impl AsRef<[u8]>) -> Result<(), RedisLimiterError> {
        self.delete(self.gcra_key(key.as_ref()), false).await
    }

    /// The Redis key that holds `key`'s per-call GCRA state: `<prefix>:{<key>}:gcrap`, with
    /// the key escaped as in [`redis_key`](Self::redis_key).
    pub fn gcra_key(&self, key: &[u8]) -> Vec<u8> {
        keys::redis_key(&self.inner.prefix, key, TAG)
    }

    /// [`check_gcra`](Self::check_gcra) for many `(key, cost, params)` checks in one pipelined
    /// round trip, batched exactly as [`check_many`](Self::check_many) batches (slot groups on
    /// a cluster, `NOSCRIPT` recovery, each check failing on its own); results in input order.
    /// A check whose cost or parameters [`check_gcra`](Self::check_gcra) refuses fails alone,
    /// without being sent.
    pub async fn check_gcra_many<K: AsRef<[u8]>>(
        &self,
        checks: &[(K, u64, GcraParams)],
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        let now = self.now();
        let prepared = checks
            .iter()
            .map(|(key, cost, params)| self.gcra_prepare(key.as_ref(), *cost, *params, now))
            .collect();
        self.send_many(prepared).await
    }

    async fn gcra_now(
        &self,
        key: &[u8],
        cost: u64,
        params: GcraParams,
        now: Now,
    ) -> Result<Decision, RedisLimiterError> {
        match self.gcra_prepare(key, cost, params, now) {
            Ok(refused) => refused,
            Err(prepared) => self.remote(&prepared).await,
        }
    }

    /// The request for a per-call GCRA check, or (`Ok`) the error that refuses it unsent.
    fn gcra_prepare(
        &self,
        key: &[u8],
        cost: u64,
        params: GcraParams,
        now: Now,
    ) -> Result<Result<Decision, RedisLimiterError>, Prepared> {
        if cost > params.burst() {
            return Ok(Err(RedisLimiterError::InsufficientCapacity {
                max: params.burst(),
            }));
        }
        if params.tolerance_nanos() > MAX_TOLERANCE {
            return Ok(Err(RedisLimiterError::config(format!(
                "GCRA tolerance of {} ns (burst {} x interval {} ns) is above 2^51 ns, beyond \
                 what the Redis script computes exactly",
                params.tolerance_nanos(),
                params.burst(),
                params.interval_nanos()
            ))));
        }
        Err(Prepared {
            key: self.gcra_key(key),
            cost,
            now,
            local: None,
            params: Some(params),
        })
    }
}

/// A Redis limiter whose GCRA parameters are picked per key (and per check) by a closure: a
/// tier per tenant, a [`Live`](traffik_core::Live) rate, an
/// [`Adaptive`](traffik_core::Adaptive) limit, a [`Schedule`](traffik_core::Schedule). Every
/// check runs [`RedisLimiter::check_gcra`] with what the closure returns for its key, so it
/// plugs into anything that takes an [`AsyncLimiter`].
///
/// ```no_run
/// use traffik_core::{AlgorithmKind, AsyncLimiter, Quotas, Rate, Tiers};
/// use traffik_redis::{RedisLimiter, RedisTiered};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tiers = Tiers::scaled(AlgorithmKind::Gcra, Rate::per_second(10), None, [1, 5],
///     |key: &[u8]| usize::from(key.starts_with(b"paid:")))?;
/// // The builder's own rate is required but plays no part in per-call checks.
/// let redis = RedisLimiter::builder("redis://127.0.0.1:6380/")
///     .rate(Rate::per_second(1))
///     .build()
///     .await?;
/// // Every tier is GCRA, so every selection has parameters.
/// let limiter = RedisTiered::new(redis, move |key: &[u8]| tiers.select(key).gcra_params());
/// let decision = limiter.check("paid:acme".as_bytes(), 1).await?;
/// assert_eq!(decision.limit(), 50);
/// # Ok(()) }
/// ```
pub struct RedisTiered<F> {
    redis: RedisLimiter,
    params: F,
}

impl<F> fmt::Debug for RedisTiered<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTiered")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(&[u8]) -> Option<GcraParams> + Send + Sync> RedisTiered<F> {
    /// Checks on `redis` with the parameters `params` picks for each key; a key it gives no
    /// parameters for (`None`: a selection that is not GCRA) fails with
    /// [`RedisLimiterError::Config`], nothing sent.
    pub fn new(redis: RedisLimiter, params: F) -> Self {
        RedisTiered { redis, params }
    }

    /// The limiter the checks run on.
    pub fn redis(&self) -> &RedisLimiter {
        &self.redis
    }

    fn params_for(&self, key: &[u8]) -> Result<GcraParams, RedisLimiterError> {
        (self.params)(key).ok_or_else(|| {
            RedisLimiterError::config(format!(
                "no GCRA parameters for key {:?}: per-call checks on Redis take GCRA or the \
                 leaky bucket only",
                String::from_utf8_lossy(key)
            ))
        })
    }
}

/// Any byte-like key, as for [`RedisLimiter`].
impl<K, F> AsyncLimiter<K> for RedisTiered<F>
where
    K: AsRef<[u8]> + ?Sized + Sync,
    F: Fn(&[u8]) -> Option<GcraParams> + Send + Sync,
{
    type Error = RedisLimiterError;

    async fn check(&self, key: &K, cost: u64) -> Result<Decision, Self::Error> {
        let params = self.params_for(key.as_ref())?;
        self.redis.check_gcra(key, cost, params).await
    }

    async fn peek(&self, key: &K) -> Result<Decision, Self::Error> {
        let params = self.params_for(key.as_ref())?;
        self.redis.peek_gcra(key, params).await
    }

    async fn reset(&self, key: &K) -> Result<(), Self::Error> {
        self.redis.reset_gcra(key).await
    }
}

//! Configuration: the algorithm, the time source, the builder, and the per-limiter constants
//! the scripts are generated with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use traffik_core::{Algorithm, AlgorithmKind, AnyAlgorithm, Rate};

use crate::connection::Target;
use crate::error::RedisLimiterError;
use crate::limiter::RedisLimiter;

/// 2^52: bound on every integer the scripts multiply or store.
const LIMIT_52: u64 = 1 << 52;
const NANOS_PER_SEC: u64 = 1_000_000_000;
/// The largest limit accepted for the sliding window log (it stores one entry per unit).
const MAX_LOG_LIMIT: u64 = 1_000_000;

/// Which algorithm the scripts run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedisAlgorithm {
    /// [`traffik_core::Gcra`]: the default.
    #[default]
    Gcra,
    /// [`traffik_core::TokenBucket`].
    TokenBucket,
    /// [`traffik_core::LeakyBucket`].
    LeakyBucket,
    /// [`traffik_core::FixedWindow`].
    FixedWindow,
    /// [`traffik_core::SlidingWindowCounter`].
    SlidingWindowCounter,
    /// An exact sliding window log: a sorted set of admission times per key, `limit` units in
    /// any window of one period (an entry at `e` counts at `t` while `e > t - period`). Memory
    /// and time are O(limit) per key; there is no in-process counterpart.
    SlidingWindowLog,
}

impl From<AlgorithmKind> for RedisAlgorithm {
    fn from(kind: AlgorithmKind) -> Self {
        match kind {
            AlgorithmKind::TokenBucket => RedisAlgorithm::TokenBucket,
            AlgorithmKind::LeakyBucket => RedisAlgorithm::LeakyBucket,
            AlgorithmKind::FixedWindow => RedisAlgorithm::FixedWindow,
            AlgorithmKind::SlidingWindowCounter => RedisAlgorithm::SlidingWindowCounter,
            _ => RedisAlgorithm::Gcra,
        }
    }
}

impl RedisAlgorithm {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            RedisAlgorithm::Gcra => "gcra",
            RedisAlgorithm::TokenBucket => "tb",
            RedisAlgorithm::LeakyBucket => "lb",
            RedisAlgorithm::FixedWindow => "fw",
            RedisAlgorithm::SlidingWindowCounter => "swc",
            RedisAlgorithm::SlidingWindowLog => "swl",
        }
    }
}

/// Where a check's "now" comes from.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum TimeSource {
    /// Redis's `TIME`, read inside the script (microsecond granularity). All clients agree.
    #[default]
    Server,
    /// The caller's system clock, nanoseconds since the Unix epoch.
    System,
    /// A caller-supplied clock in nanoseconds (below 2^62).
    Custom(Arc<dyn Fn() -> u64 + Send + Sync>),
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeSource::Server => f.write_str("Server"),
            TimeSource::System => f.write_str("System"),
            TimeSource::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Builds a [`RedisLimiter`]; see [`RedisLimiter::builder`].
#[derive(Debug)]
#[must_use]
pub struct RedisLimiterBuilder {
    pub(crate) target: Target,
    pub(crate) rate: Option<Rate>,
    pub(crate) algorithm: RedisAlgorithm,
    pub(crate) burst: Option<u64>,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) time_source: TimeSource,
    pub(crate) near_cache: bool,
}

impl RedisLimiterBuilder {
    /// The rate every key is limited to (required).
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// The algorithm (default GCRA). Takes a [`RedisAlgorithm`] or a core [`AlgorithmKind`].
    pub fn algorithm(mut self, algorithm: impl Into<RedisAlgorithm>) -> Self {
        self.algorithm = algorithm.into();
        self
    }

    /// Burst (GCRA) or capacity (buckets); defaults to the rate's limit. Window algorithms take
    /// none.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The namespace put before every key (default `traffik`). It may not contain braces.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most one call (or one pipelined batch) may take, connecting included (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where "now" comes from (default [`TimeSource::Server`]).
    pub fn time_source(mut self, source: TimeSource) -> Self {
        self.time_source = source;
        self
    }

    /// Answers keys that Redis denied locally until their `retry_after` passes (default off).
    ///
    /// The cache remembers, per key, the smallest cost Redis denied and until when (its
    /// `retry_after`, on the configured time source); a check of at least that cost before then
    /// is denied without a round trip. A cached answer is never an admission, and it is stale
    /// for at most the `retry_after` Redis gave.
    ///
    /// Other clients can only add charges, so a cached denial is one Redis would give too,
    /// **unless the key's state is removed or replaced meanwhile**: a `reset` from another
    /// process (this limiter's own [`reset`](RedisLimiter::reset) clears its entry), a limiter
    /// with a higher limit on the same prefix, or Redis losing the key (restart, failover,
    /// flush). Then the cache keeps denying until that `retry_after` passes. The cached denial
    /// reports the `remaining` Redis last reported (which may understate what has refilled
    /// since) and a `retry_after` counted down from Redis's.
    ///
    /// Only checks on the configured time source ([`check`](RedisLimiter::check),
    /// [`check_many`](RedisLimiter::check_many)) use the cache;
    /// [`check_at`](RedisLimiter::check_at), whose time may be on any clock, bypasses it.
    pub fn near_cache(mut self, enabled: bool) -> Self {
        self.near_cache = enabled;
        self
    }

    /// Validates the configuration and connects.
    pub async fn build(self) -> Result<RedisLimiter, RedisLimiterError> {
        let rate = self
            .rate
            .ok_or_else(|| RedisLimiterError::Config("a rate is required".into()))?;
        if self.prefix.contains(['{', '}']) {
            return Err(RedisLimiterError::Config(
                "the prefix may not contain '{' or '}' (they delimit the cluster hash tag)".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(RedisLimiterError::Config(
                "the timeout must be positive".into(),
            ));
        }
        let plan = Plan::new(self.algorithm, rate, self.burst)?;
        RedisLimiter::connect(self, plan).await
    }
}

/// The per-limiter constants: the time unit `L`, the script arguments, and the capacity.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) unit: u64,
    /// The script constants, in the order its first line names them.
    pub(crate) params: Vec<u64>,
    pub(crate) capacity: u64,
    pub(crate) unlimited: bool,
}

impl Plan {
    pub(crate) fn new(
        alg: RedisAlgorithm,
        rate: Rate,
        burst: Option<u64>,
    ) -> Result<Self, RedisLimiterError> {
        let cfg = |m: String| RedisLimiterError::Config(m);
        if rate.is_unlimited() {
            return Ok(Plan {
                unit: 1,
                params: Vec::new(),
                capacity: u64::MAX,
                unlimited: true,
            });
        }
        let (limit, period) = (rate.limit(), rate.period_nanos());
        if period >= LIMIT_52 {
            return Err(cfg(format!(
                "period {period} ns is too long for exact Lua arithmetic (must be below 2^52 ns, about 52 days)"
            )));
        }
        // The unit: the period, or its smallest multiple of at least one second.
        let k = if period < NANOS_PER_SEC {
            NANOS_PER_SEC.div_ceil(period)
        } else {
            1
        };
        let unit = k * period;
        let (params, capacity) = if alg == RedisAlgorithm::SlidingWindowLog {
            if limit == 0 || limit > period {
                return Err(cfg(format!(
                    "rate {rate} is not a finite rate of at most one per ns"
                )));
            }
            if burst.is_some_and(|b| b != limit) {
                return Err(cfg("the sliding window log takes no burst".into()));
            }
            if limit > MAX_LOG_LIMIT {
                return Err(cfg(format!(
                    "the sliding window log stores one entry per unit; limit at most {MAX_LOG_LIMIT}"
                )));
            }
            (vec![unit, limit, period], limit)
        } else {
            let kind = match alg {
                RedisAlgorithm::TokenBucket => AlgorithmKind::TokenBucket,
                RedisAlgorithm::LeakyBucket => AlgorithmKind::LeakyBucket,
                RedisAlgorithm::FixedWindow => AlgorithmKind::FixedWindow,
                RedisAlgorithm::SlidingWindowCounter => AlgorithmKind::SlidingWindowCounter,
                _ => AlgorithmKind::Gcra,
            };
            let core = AnyAlgorithm::new(kind, rate, burst).map_err(|e| cfg(e.to_string()))?;
            let capacity = core.capacity();
            let params = match alg {
                RedisAlgorithm::Gcra | RedisAlgorithm::LeakyBucket => {
                    let interval = period.div_ceil(limit);
                    let tolerance = capacity.saturating_mul(interval);
                    if tolerance > LIMIT_52 / 2 {
                        return Err(cfg(format!(
                            "burst x interval = {tolerance} ns exceeds 2^51 ns (about 26 days)"
                        )));
                    }
                    vec![unit, interval, tolerance, capacity]
                }
                RedisAlgorithm::TokenBucket => {
                    if capacity > LIMIT_52 / 4 {
                        return Err(cfg("token bucket capacity exceeds 2^50".into()));
                    }
                    vec![unit, capacity, limit, period, k * limit]
                }
                _ => vec![unit, limit, period, k],
            };
            (params, capacity)
        };
        Ok(Plan {
            unit,
            params,
            capacity,
            unlimited: false,
        })
    }
}

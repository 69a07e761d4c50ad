//! Configuration: the algorithm, the time source, the builder, and the per-limiter constants
//! the scripts are generated with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use traffik_core::{Algorithm, AlgorithmKind, AnyAlgorithm, Rate, Rollover};

use crate::connection::Target;
use crate::error::RedisLimiterError;
use crate::limiter::RedisLimiter;

/// 2^52: bound on every integer the scripts multiply or store.
const LIMIT_52: u64 = 1 << 52;
const NANOS_PER_SEC: u64 = 1_000_000_000;
/// The largest limit accepted for the sliding window log. It stores one entry per unit, and a
/// check that admits or expires a whole window at once adds or removes `limit` entries in one
/// script on Redis's single thread: measured (`benches/log_cap.rs`, BENCHMARKS.md) at 13-25 ms
/// for 10,000 on a quiet VM (up to ~55 ms under load), 0.24-0.43 s for 100,000 and 5.7-7.6 s for
/// 1,000,000 (past Redis's 5 s busy-script threshold).
pub const MAX_LOG_LIMIT: u64 = 10_000;

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
    /// any window of one period (an entry at `e` counts at `t` while `e > t - period`). The
    /// in-process counterpart is [`traffik_core::SlidingLogLimiter`] (same decisions for readings
    /// that never go back; it caps the limit at 2^20 rather than 10,000).
    ///
    /// Memory is about 100 bytes per admitted unit still in the window, and a check that admits
    /// or expires many units at once does that much work on Redis's single thread, so the limit
    /// is capped at [`MAX_LOG_LIMIT`] (10,000: at most tens of milliseconds of server time for
    /// a check that fills or empties a whole window).
    SlidingWindowLog,
    /// [`traffik_core::DebtBucket`]: a token bucket whose keys may owe up to `max_debt` tokens,
    /// repaid before their next admission. The burst sets the bucket's capacity.
    DebtBucket {
        /// The most tokens a key may owe.
        max_debt: u64,
    },
    /// [`traffik_core::QuotaRollover`]: a quota per fixed period whose unused part partly
    /// carries into the next period.
    QuotaRollover(Rollover),
}

/// A core algorithm by its [`AlgorithmKind`]. A kind this crate has no script for (one added to
/// the core later) is a [`RedisLimiterError::Config`], never silently another algorithm.
impl TryFrom<AlgorithmKind> for RedisAlgorithm {
    type Error = RedisLimiterError;

    fn try_from(kind: AlgorithmKind) -> Result<Self, Self::Error> {
        match kind {
            AlgorithmKind::Gcra => Ok(RedisAlgorithm::Gcra),
            AlgorithmKind::TokenBucket => Ok(RedisAlgorithm::TokenBucket),
            AlgorithmKind::LeakyBucket => Ok(RedisAlgorithm::LeakyBucket),
            AlgorithmKind::FixedWindow => Ok(RedisAlgorithm::FixedWindow),
            AlgorithmKind::SlidingWindowCounter => Ok(RedisAlgorithm::SlidingWindowCounter),
            AlgorithmKind::DebtBucket { max_debt } => Ok(RedisAlgorithm::DebtBucket { max_debt }),
            AlgorithmKind::QuotaRollover(rollover) => Ok(RedisAlgorithm::QuotaRollover(rollover)),
            other => Err(RedisLimiterError::config(format!(
                "traffik-redis has no script for the core algorithm {other:?}"
            ))),
        }
    }
}

impl RedisAlgorithm {
    /// The in-process algorithm the script decides like, if there is one.
    fn core_kind(self) -> Option<AlgorithmKind> {
        match self {
            RedisAlgorithm::Gcra => Some(AlgorithmKind::Gcra),
            RedisAlgorithm::TokenBucket => Some(AlgorithmKind::TokenBucket),
            RedisAlgorithm::LeakyBucket => Some(AlgorithmKind::LeakyBucket),
            RedisAlgorithm::FixedWindow => Some(AlgorithmKind::FixedWindow),
            RedisAlgorithm::SlidingWindowCounter => Some(AlgorithmKind::SlidingWindowCounter),
            RedisAlgorithm::DebtBucket { max_debt } => Some(AlgorithmKind::DebtBucket { max_debt }),
            RedisAlgorithm::QuotaRollover(rollover) => Some(AlgorithmKind::QuotaRollover(rollover)),
            RedisAlgorithm::SlidingWindowLog => None,
        }
    }

    pub(crate) fn tag(self) -> &'static str {
        match self {
            RedisAlgorithm::Gcra => "gcra",
            RedisAlgorithm::TokenBucket => "tb",
            RedisAlgorithm::LeakyBucket => "lb",
            RedisAlgorithm::FixedWindow => "fw",
            RedisAlgorithm::SlidingWindowCounter => "swc",
            RedisAlgorithm::SlidingWindowLog => "swl",
            RedisAlgorithm::DebtBucket { .. } => "tbd",
            RedisAlgorithm::QuotaRollover(_) => "rq",
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
    /// The algorithm, or why the one asked for cannot be served.
    pub(crate) algorithm: Result<RedisAlgorithm, RedisLimiterError>,
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

    /// The algorithm (default GCRA): a [`RedisAlgorithm`], or a core [`AlgorithmKind`] (one
    /// without a script here makes [`build`](Self::build) fail with a configuration error).
    pub fn algorithm<A>(mut self, algorithm: A) -> Self
    where
        A: TryInto<RedisAlgorithm>,
        A::Error: Into<RedisLimiterError>,
    {
        self.algorithm = algorithm.try_into().map_err(Into::into);
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
    pub async fn build(mut self) -> Result<RedisLimiter, RedisLimiterError> {
        let rate = self
            .rate
            .ok_or_else(|| RedisLimiterError::config("a rate is required"))?;
        if self.prefix.contains(['{', '}']) {
            return Err(RedisLimiterError::config(
                "the prefix may not contain '{' or '}' (they delimit the cluster hash tag)",
            ));
        }
        if self.timeout.is_zero() {
            return Err(RedisLimiterError::config("the timeout must be positive"));
        }
        let algorithm = std::mem::replace(&mut self.algorithm, Ok(RedisAlgorithm::Gcra))?;
        let plan = Plan::new(algorithm, rate, self.burst)?;
        RedisLimiter::connect(self, algorithm, plan).await
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
        let cfg = |reason: String| RedisLimiterError::config(reason);
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
        // What the core accepts, and the most one check can be granted.
        let core_capacity = |kind: AlgorithmKind| {
            AnyAlgorithm::new(kind, rate, burst)
                .map(|core| core.capacity())
                .map_err(|e| {
                    RedisLimiterError::config_from(
                        format!("traffik-core refuses {alg:?} at {rate} with burst {burst:?}"),
                        e,
                    )
                })
        };
        let (params, capacity) = match (alg, alg.core_kind()) {
            (RedisAlgorithm::SlidingWindowLog, _) => {
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
                        "the sliding window log limit {limit} exceeds its cap of {MAX_LOG_LIMIT}: \
                         it stores one entry per unit, and a check that admits or expires a \
                         whole window blocks Redis for the time it takes to add or remove them \
                         all (use the sliding window counter for larger limits)"
                    )));
                }
                (vec![unit, limit, period], limit)
            }
            (RedisAlgorithm::Gcra | RedisAlgorithm::LeakyBucket, Some(kind)) => {
                let capacity = core_capacity(kind)?;
                let interval = period.div_ceil(limit);
                let tolerance = capacity.saturating_mul(interval);
                if tolerance > LIMIT_52 / 2 {
                    return Err(cfg(format!(
                        "burst x interval = {tolerance} ns exceeds 2^51 ns (about 26 days)"
                    )));
                }
                (vec![unit, interval, tolerance, capacity], capacity)
            }
            (RedisAlgorithm::TokenBucket, Some(kind)) => {
                let capacity = core_capacity(kind)?;
                if capacity > LIMIT_52 / 4 {
                    return Err(cfg("token bucket capacity exceeds 2^50".into()));
                }
                (vec![unit, capacity, limit, period, k * limit], capacity)
            }
            (RedisAlgorithm::DebtBucket { max_debt }, Some(kind)) => {
                let most = core_capacity(kind)?;
                if most > LIMIT_52 / 4 {
                    return Err(cfg("debt bucket capacity plus debt exceeds 2^50".into()));
                }
                let capacity = most - max_debt;
                (
                    vec![unit, capacity, max_debt, limit, period, k * limit],
                    most,
                )
            }
            (RedisAlgorithm::QuotaRollover(rollover), Some(kind)) => {
                let most = core_capacity(kind)?;
                // A carry never exceeds the limit, so a larger cap is the limit (and stays an
                // exact Lua integer).
                let cap = rollover.cap().min(limit);
                let params = vec![
                    unit,
                    limit,
                    period,
                    k,
                    u64::from(rollover.numerator()),
                    u64::from(rollover.denominator()),
                    cap,
                    most - limit,
                ];
                (params, most)
            }
            (RedisAlgorithm::FixedWindow | RedisAlgorithm::SlidingWindowCounter, Some(kind)) => {
                (vec![unit, limit, period, k], core_capacity(kind)?)
            }
            (other, None) => {
                return Err(cfg(format!(
                    "{other:?} has no in-process counterpart to validate it against"
                )))
            }
        };
        Ok(Plan {
            unit,
            params,
            capacity,
            unlimited: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_kinds_map_to_their_own_scripts_and_back() {
        for kind in [
            AlgorithmKind::Gcra,
            AlgorithmKind::TokenBucket,
            AlgorithmKind::LeakyBucket,
            AlgorithmKind::FixedWindow,
            AlgorithmKind::SlidingWindowCounter,
            AlgorithmKind::DebtBucket { max_debt: 3 },
            AlgorithmKind::QuotaRollover(Rollover::new(1, 2, 50)),
        ] {
            let alg = RedisAlgorithm::try_from(kind).map_err(|e| e.to_string());
            assert_eq!(alg.map(RedisAlgorithm::core_kind), Ok(Some(kind)));
        }
        assert_eq!(RedisAlgorithm::SlidingWindowLog.core_kind(), None);
    }
}

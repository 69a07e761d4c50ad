//! What to do when the primary cannot answer, how a [`Failover`] is configured, and how to size
//! an in-process fallback as one node's share of a global limit.

use super::breaker::{BreakerConfig, BreakerConfigError, CircuitBreaker};
use super::error::NoFallback;
use super::replay::ReplayQueue;
use super::retry::RetryPolicy;
use super::stats::Counters;
use super::Failover;
use crate::builder::{Builder, IntoRate};
use crate::clock::QuantaClock;
use std::time::Duration;
use traffik_core::{Clock, Rate, RateError, RateParseError};

/// What a [`Failover`] answers when the primary failed (after any retries) or its breaker is
/// open.
///
/// Whatever the policy, two kinds of error are always returned as they are and never turned
/// into an admission, a denial or a fallback decision, because they are not outages:
/// [`InsufficientCapacity`](traffik_core::ErrorKind::InsufficientCapacity) (the cost can never be
/// admitted: a caller error that no other store would answer differently) and
/// [`Config`](traffik_core::ErrorKind::Config) (a misconfigured store; masking it would silently
/// switch rate limiting off). Neither counts as a failure for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Admit the request. The decision reports `limit` and `remaining` 0 (unknown).
    Allow,
    /// Deny the request, telling the caller to come back after `retry_after` (also its
    /// `reset_after`; `limit` and `remaining` are 0, unknown).
    Deny {
        /// The wait to report.
        retry_after: Duration,
    },
    /// Return the error ([`FailoverError`](super::FailoverError)).
    Error,
    /// Ask the fallback limiter given to [`FailoverBuilder::fallback`].
    Fallback,
}

/// Why a [`FailoverBuilder`] could not build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailoverBuildError {
    /// The breaker's thresholds are invalid.
    #[error(transparent)]
    Breaker(#[from] BreakerConfigError),
    /// `OnError::Fallback` was chosen but no fallback limiter was given.
    #[error("on_error is Fallback but no fallback limiter was given")]
    MissingFallback,
    /// A retry policy of zero attempts would never ask the primary.
    #[error("retry policy must allow at least one attempt")]
    ZeroAttempts,
    /// A replay batch of zero would never replay anything; use `replay_capacity(0)` to turn
    /// replay off instead.
    #[error("replay batch size must be at least 1")]
    ZeroReplayBatch,
}

/// Configures a [`Failover`]; start with [`Failover::builder`].
///
/// Defaults: on error, return the error (or ask the fallback once one is given); no retries; a
/// 1 s per-call timeout; the default [`BreakerConfig`] on a [`QuantaClock`]; replay queue of
/// 10,000 charges sent 64 at a time.
#[derive(Debug)]
#[must_use = "call build() to get the Failover"]
pub struct FailoverBuilder<P, F = NoFallback, C = QuantaClock> {
    primary: P,
    fallback: Option<F>,
    on_error: OnError,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    breaker: BreakerConfig,
    clock: C,
    replay_capacity: usize,
    replay_batch: usize,
}

impl<P> FailoverBuilder<P> {
    pub(super) fn new(primary: P) -> Self {
        FailoverBuilder {
            primary,
            fallback: None,
            on_error: OnError::Error,
            retry: RetryPolicy::none(),
            timeout: Some(Duration::from_secs(1)),
            breaker: BreakerConfig::new(),
            clock: QuantaClock::new(),
            replay_capacity: 10_000,
            replay_batch: 64,
        }
    }
}

impl<P, F, C> FailoverBuilder<P, F, C> {
    /// The limiter to ask when the primary cannot answer; also sets the policy to
    /// [`OnError::Fallback`]. Typically an in-process [`RateLimiter`](crate::RateLimiter) sized
    /// with [`node_share`].
    pub fn fallback<F2>(self, fallback: F2) -> FailoverBuilder<P, F2, C> {
        FailoverBuilder {
            primary: self.primary,
            fallback: Some(fallback),
            on_error: OnError::Fallback,
            retry: self.retry,
            timeout: self.timeout,
            breaker: self.breaker,
            clock: self.clock,
            replay_capacity: self.replay_capacity,
            replay_batch: self.replay_batch,
        }
    }

    /// The clock the breaker reads (for example a `ManualClock` in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> FailoverBuilder<P, F, C2> {
        FailoverBuilder {
            primary: self.primary,
            fallback: self.fallback,
            on_error: self.on_error,
            retry: self.retry,
            timeout: self.timeout,
            breaker: self.breaker,
            clock,
            replay_capacity: self.replay_capacity,
            replay_batch: self.replay_batch,
        }
    }

    /// What to answer when the primary cannot.
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = policy;
        self
    }

    /// Retries of failures known not to have charged.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The longest one primary attempt may take (`None`: no limit). An attempt that runs out
    /// is [`Indeterminate`](traffik_core::ErrorKind::Indeterminate): it is never retried.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// When the breaker opens and closes.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Most fallback charges kept for replay to the primary after it recovers; 0 turns replay
    /// off. Charges beyond it are dropped and counted.
    pub fn replay_capacity(mut self, charges: usize) -> Self {
        self.replay_capacity = charges;
        self
    }

    /// Most charges replayed at once, concurrently, by one call.
    pub fn replay_batch(mut self, charges: usize) -> Self {
        self.replay_batch = charges;
        self
    }

    /// The [`Failover`], for keys of type `K`.
    pub fn build<K>(self) -> Result<Failover<K, P, F, C>, FailoverBuildError>
    where
        K: ?Sized + ToOwned,
        C: Clock,
    {
        if self.retry.max_attempts() == 0 {
            return Err(FailoverBuildError::ZeroAttempts);
        }
        if self.replay_batch == 0 {
            return Err(FailoverBuildError::ZeroReplayBatch);
        }
        let on_error = match (self.on_error, self.fallback) {
            (OnError::Allow, _) => Policy::Allow,
            (OnError::Deny { retry_after }, _) => Policy::Deny(retry_after),
            (OnError::Error, _) => Policy::Error,
            (OnError::Fallback, Some(f)) => Policy::Fallback(f),
            (OnError::Fallback, None) => return Err(FailoverBuildError::MissingFallback),
        };
        Ok(Failover {
            primary: self.primary,
            on_error,
            breaker: CircuitBreaker::new(self.breaker, self.clock)?,
            retry: self.retry,
            timeout: self.timeout,
            replay: ReplayQueue::new(self.replay_capacity),
            replay_batch: self.replay_batch,
            counters: Counters::default(),
        })
    }
}

/// The policy with its fallback, once built.
#[derive(Debug)]
pub(super) enum Policy<F> {
    Allow,
    Deny(Duration),
    Error,
    Fallback(F),
}

/// Why [`node_share`] could not size a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The rate string did not parse.
    #[error("invalid rate: {0}")]
    Rate(#[from] RateParseError),
    /// Zero nodes have no share.
    #[error("the number of nodes must be at least 1")]
    NoNodes,
    /// The rate's period times the number of nodes does not fit in `u64` nanoseconds.
    #[error("rate period times node count overflows")]
    TooLong,
    /// The rate has no share to give (a zero limit).
    #[error("invalid rate: {0}")]
    Invalid(RateError),
}

/// A [`Builder`] for one node's share of a global limit: `rate / nodes`, exactly, with a burst
/// of `limit / nodes` rounded down (at least 1), on the default GCRA.
///
/// This is how to size an in-process fallback: while the shared store is down, `nodes` nodes
/// each admitting their share admit together no more than the global rate (plus each node's
/// burst). The rate is kept exact by lengthening the period (`100/minute` over 3 nodes is 100
/// per 3 minutes, not 33 per minute); the burst is what one node may admit at once.
///
/// ```
/// use traffik::failover::node_share;
/// use traffik::RateLimiter;
///
/// // A global limit of 100 a minute across 4 nodes: each falls back to 25 a minute, burst 25.
/// let fallback: RateLimiter<str> = node_share("100/minute", 4)?.capacity(10_000).build()?;
/// for _ in 0..25 {
///     assert!(fallback.check("alice", 1)?.is_allowed());
/// }
/// assert!(fallback.check("alice", 1)?.is_denied());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn node_share(rate: impl IntoRate, nodes: u64) -> Result<Builder, ShareError> {
    let rate = rate.into_rate()?;
    if nodes == 0 {
        return Err(ShareError::NoNodes);
    }
    if rate.is_unlimited() {
        return Ok(crate::builder().rate(rate));
    }
    let g = gcd(rate.limit(), nodes);
    let period = rate
        .period_nanos()
        .checked_mul(nodes / g)
        .ok_or(ShareError::TooLong)?;
    let share = Rate::from_nanos(rate.limit() / g, period).map_err(ShareError::Invalid)?;
    let burst = (rate.limit() / nodes).max(1);
    Ok(crate::builder().rate(share).burst(burst))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

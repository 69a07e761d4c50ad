//! Retries of calls that are known not to have been charged, with backoff, and the per-call
//! timeout.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// How the delay grows from one retry to the next (before the cap and jitter).
///
/// ```
/// use std::time::Duration;
/// use traffik::failover::Backoff;
///
/// let b = Backoff::Exponential { initial: Duration::from_millis(10), factor: 2 };
/// assert_eq!(b.delay(1), Duration::from_millis(10));
/// assert_eq!(b.delay(3), Duration::from_millis(40));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// The same delay before every retry.
    Constant(Duration),
    /// `initial`, then `initial + step`, `initial + 2 x step`, ...
    Linear {
        /// Delay before the first retry.
        initial: Duration,
        /// Added for each further retry.
        step: Duration,
    },
    /// `initial`, then `initial x factor`, `initial x factor^2`, ...
    Exponential {
        /// Delay before the first retry.
        initial: Duration,
        /// Multiplier per further retry.
        factor: u32,
    },
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry), saturating at
    /// `Duration::MAX`; no cap or jitter applied.
    pub fn delay(&self, retry: u32) -> Duration {
        let n = retry.saturating_sub(1);
        match *self {
            Backoff::Constant(d) => d,
            Backoff::Linear { initial, step } => initial.saturating_add(step.saturating_mul(n)),
            Backoff::Exponential { initial, factor } => {
                initial.saturating_mul(factor.checked_pow(n).unwrap_or(u32::MAX))
            }
        }
    }
}

/// How a delay is randomised, so that many clients retrying at once spread out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the (capped) delay.
    #[default]
    None,
    /// Uniform in `[0, delay)`.
    Full,
    /// Uniform in `[delay / 2, delay)`: never less than half the delay.
    Equal,
}

/// Which failures are retried, how often and how far apart.
///
/// Only failures whose [`ErrorKind`](traffik_core::ErrorKind) is
/// [`NotCharged`](traffik_core::ErrorKind::NotCharged) are ever retried: the store is known not
/// to have counted the request. An [`Indeterminate`](traffik_core::ErrorKind::Indeterminate)
/// failure (a timeout, a connection lost after sending) is never retried, because the first
/// attempt may already have been counted and a resend could count the request twice. Nor are
/// configuration and capacity errors, which would fail the same way again.
///
/// ```
/// use std::time::Duration;
/// use traffik::failover::{Backoff, Jitter, RetryPolicy};
///
/// // Up to 4 attempts: retries after 10 ms, 20 ms and 40 ms, never more than 25 ms apart.
/// let retry = RetryPolicy::attempts(4)
///     .backoff(Backoff::Exponential { initial: Duration::from_millis(10), factor: 2 })
///     .max_delay(Duration::from_millis(25))
///     .jitter(Jitter::None);
/// assert_eq!(retry.delay(3, 0), Duration::from_millis(25));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    backoff: Backoff,
    max_delay: Duration,
    jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::none()
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub const fn none() -> Self {
        Self::attempts(1)
    }

    /// Up to `attempts` attempts in all (the first plus `attempts - 1` retries), with
    /// exponential backoff from 10 ms doubling, capped at 1 s, no jitter. `attempts` must be at
    /// least 1 (the failover builder refuses 0).
    pub const fn attempts(attempts: u32) -> Self {
        RetryPolicy {
            attempts,
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(10),
                factor: 2,
            },
            max_delay: Duration::from_secs(1),
            jitter: Jitter::None,
        }
    }

    /// How the delay grows.
    pub const fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest delay between two attempts, before jitter (which only shortens it).
    pub const fn max_delay(mut self, cap: Duration) -> Self {
        self.max_delay = cap;
        self
    }

    /// How delays are randomised.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Attempts in all, the first included.
    pub const fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before retry number `retry` (1-based) given a uniformly random `random`:
    /// the backoff's delay, capped at [`max_delay`](Self::max_delay), then jittered.
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let capped = self.backoff.delay(retry).min(self.max_delay);
        match self.jitter {
            Jitter::None => capped,
            Jitter::Full => scale(capped, random),
            Jitter::Equal => {
                let half = capped / 2;
                half + scale(capped - half, random)
            }
        }
    }

    /// Whether the delay before retry number `retry` is zero whatever the random number (jitter
    /// only shortens a delay, so a zero capped delay stays zero).
    pub(crate) fn never_waits(&self, retry: u32) -> bool {
        self.backoff.delay(retry).min(self.max_delay).is_zero()
    }

    /// [`delay`](Self::delay) with a fresh random number.
    pub(crate) fn next_delay(&self, retry: u32) -> Duration {
        let random = match self.jitter {
            Jitter::None => 0,
            Jitter::Full | Jitter::Equal => fastrand::u64(..),
        };
        self.delay(retry, random)
    }
}

/// `d x random / 2^64`, in `[0, d)` (`d` itself only when `d` is zero).
pub(crate) fn scale(d: Duration, random: u64) -> Duration {
    let nanos = d.as_nanos().saturating_mul(u128::from(random)) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Runs `fut`, giving up after `limit` if it is given.
///
/// The first poll happens before any timer exists: a future that is ready at once (an
/// in-process limiter) never pays for registering one. Only a future that has to wait gets a
/// `tokio::time::timeout` around it, which needs a Tokio runtime with its time driver, as every
/// `tokio::time` user does. `None` means the limit passed.
pub(crate) async fn bounded<T>(fut: impl Future<Output = T>, limit: Option<Duration>) -> Option<T> {
    let mut fut = pin!(fut);
    let Some(limit) = limit else {
        return Some(fut.await);
    };
    if let Poll::Ready(v) = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Some(v);
    }
    tokio::time::timeout(limit, fut).await.ok()
}

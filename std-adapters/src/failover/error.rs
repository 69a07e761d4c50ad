//! What a [`Failover`](super::Failover) call can fail with, and the type that stands for "no
//! fallback".

use std::fmt;
use std::future::Future;
use std::time::Duration;
use traffik_core::{AsyncLimiter, Decision, ErrorKind, LimiterError};

/// An error from a [`Failover`](super::Failover): the primary's or the fallback's own error
/// (kept as the [`source`](std::error::Error::source)), a timeout, or an open breaker.
///
/// Its [`kind`](LimiterError::kind) is the wrapped error's kind; a timeout is
/// [`Indeterminate`](ErrorKind::Indeterminate) (the request may have reached the store) and an
/// open breaker is [`NotCharged`](ErrorKind::NotCharged) (the primary was not asked).
///
/// ```
/// use traffik::failover::{FailoverError, NoFallback};
/// use traffik::{CheckError, ErrorKind, LimiterError};
///
/// let e: FailoverError<CheckError, NoFallback> = FailoverError::CircuitOpen;
/// assert_eq!(e.kind(), ErrorKind::NotCharged);
/// let e: FailoverError<CheckError, NoFallback> =
///     FailoverError::Primary(CheckError::InsufficientCapacity { max: 10 });
/// assert_eq!(e.kind(), ErrorKind::InsufficientCapacity { max: 10 });
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FailoverError<P, F> {
    /// The primary limiter failed (after any retries).
    #[error("primary limiter failed")]
    Primary(#[source] P),
    /// The primary limiter did not answer within the per-call timeout; it may have counted the
    /// request, so the call was not retried.
    #[error("primary limiter did not answer within {0:?}; it may have counted the request")]
    Timeout(Duration),
    /// The circuit breaker is open and the policy is to return an error: the primary was not
    /// asked.
    #[error("circuit breaker is open: the primary limiter was not asked")]
    CircuitOpen,
    /// The fallback limiter failed.
    #[error("fallback limiter failed")]
    Fallback(#[source] F),
}

impl<P: LimiterError, F: LimiterError> LimiterError for FailoverError<P, F> {
    fn kind(&self) -> ErrorKind {
        match self {
            FailoverError::Primary(e) => e.kind(),
            FailoverError::Timeout(_) => ErrorKind::Indeterminate,
            FailoverError::CircuitOpen => ErrorKind::NotCharged,
            FailoverError::Fallback(e) => e.kind(),
        }
    }
}

/// The fallback of a [`Failover`](super::Failover) built without one.
///
/// It has no values, so a `Failover<_, _, NoFallback>` provably never calls it; it is also its
/// own (equally impossible) error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoFallback {}

impl fmt::Display for NoFallback {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for NoFallback {}

impl LimiterError for NoFallback {
    fn kind(&self) -> ErrorKind {
        match *self {}
    }
}

// Not `async fn`: an async fn would capture the key, and so be `Send` only for `K: Sync`.
#[allow(clippy::manual_async_fn)]
impl<K: ?Sized> AsyncLimiter<K> for NoFallback {
    type Error = NoFallback;

    fn check(&self, _: &K, _: u64) -> impl Future<Output = Result<Decision, NoFallback>> + Send {
        async move { match *self {} }
    }

    fn peek(&self, _: &K) -> impl Future<Output = Result<Decision, NoFallback>> + Send {
        async move { match *self {} }
    }

    fn reset(&self, _: &K) -> impl Future<Output = Result<(), NoFallback>> + Send {
        async move { match *self {} }
    }

    fn check_now(&self, _: &K, _: u64) -> Option<Result<Decision, NoFallback>> {
        match *self {}
    }

    fn peek_now(&self, _: &K) -> Option<Result<Decision, NoFallback>> {
        match *self {}
    }
}

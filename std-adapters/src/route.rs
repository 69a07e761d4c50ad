//! Choosing the limiter per request: [`Routed`].
//!
//! A multi-tenant service often keeps each tenant's limits in that tenant's own store (a Redis
//! per region, an in-process table for a free tier), and picks the store when a request comes
//! in. [`Routed`] holds the limiters once, built at start-up, and asks a closure which one
//! answers each call; nothing is rebuilt per request, and it is an [`AsyncLimiter`] itself, so
//! failover, waiting and middleware take it like any other. Limiters of different types go in
//! one `Routed` through [`Either`] (nest it for more than two).

use std::fmt;
use std::future::Future;
use traffik_core::{AsyncLimiter, Decision, ErrorKind, LimiterError};

/// Several limiters of one type, and a closure that picks one per call by index.
///
/// ```
/// use std::future::Future;
/// use std::task::{Context, Poll, Waker};
/// use traffik::route::Routed;
/// use traffik::{AsyncLimiter, RateLimiter};
///
/// // A free plan at 2/s and a paid plan at 100/s, each with its own table.
/// let free: RateLimiter<str> = traffik::builder().rate("2/s").build()?;
/// let paid: RateLimiter<str> = traffik::builder().rate("100/s").build()?;
/// let plans = Routed::new(vec![free, paid], |tenant: &str| {
///     Some(if tenant.starts_with("paid-") { 1 } else { 0 })
/// });
///
/// let mut cx = Context::from_waker(Waker::noop());
/// let mut check = |key: &str, cost| {
///     match std::pin::pin!(plans.check(key, cost)).poll(&mut cx) {
///         Poll::Ready(result) => result.map(|d| d.is_allowed()),
///         Poll::Pending => unreachable!("in-process limiters answer at once"),
///     }
/// };
/// assert!(check("free-7", 2)?); // the free burst of 2...
/// assert!(!check("free-7", 1)?); // ...is spent
/// assert!(check("paid-7", 50)?); // the paid table has room
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Routed<L, F> {
    limiters: Vec<L>,
    choose: F,
}

impl<L, F> Routed<L, F> {
    /// `choose(key)` returns the index of the limiter that answers for `key`, or `None` when
    /// no limiter should (the call then fails with [`RouteError::NoRoute`]).
    pub fn new(limiters: Vec<L>, choose: F) -> Self {
        Routed { limiters, choose }
    }

    /// The limiters, in the order the closure indexes them.
    pub fn limiters(&self) -> &[L] {
        &self.limiters
    }
}

impl<L: fmt::Debug, F> fmt::Debug for Routed<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routed")
            .field("limiters", &self.limiters)
            .finish_non_exhaustive()
    }
}

/// Why a [`Routed`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError<E> {
    /// The closure chose no limiter, or an index past the end (with how many there are).
    #[error("no limiter for this key (chose {chosen:?} of {available})")]
    NoRoute {
        /// What the closure returned.
        chosen: Option<usize>,
        /// How many limiters there are.
        available: usize,
    },
    /// The chosen limiter failed.
    #[error(transparent)]
    Limiter(#[from] E),
}

impl<E: LimiterError> LimiterError for RouteError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            // Nothing was asked, and asking again chooses the same way.
            RouteError::NoRoute { .. } => ErrorKind::Config,
            RouteError::Limiter(e) => e.kind(),
        }
    }
}

impl<K, L, F> AsyncLimiter<K> for Routed<L, F>
where
    K: ?Sized + Sync,
    L: AsyncLimiter<K>,
    F: Fn(&K) -> Option<usize> + Send + Sync,
{
    type Error = RouteError<L::Error>;

    fn check(
        &self,
        key: &K,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        let chosen = self.pick(key);
        async move { Ok(chosen?.check(key, cost).await?) }
    }

    fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        let chosen = self.pick(key);
        async move { Ok(chosen?.peek(key).await?) }
    }

    fn reset(&self, key: &K) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let chosen = self.pick(key);
        async move { Ok(chosen?.reset(key).await?) }
    }

    fn check_now(&self, key: &K, cost: u64) -> Option<Result<Decision, Self::Error>> {
        match self.pick(key) {
            Ok(l) => l
                .check_now(key, cost)
                .map(|r| r.map_err(RouteError::Limiter)),
            Err(e) => Some(Err(e)),
        }
    }

    fn peek_now(&self, key: &K) -> Option<Result<Decision, Self::Error>> {
        match self.pick(key) {
            Ok(l) => l.peek_now(key).map(|r| r.map_err(RouteError::Limiter)),
            Err(e) => Some(Err(e)),
        }
    }
}

impl<L, F> Routed<L, F> {
    fn pick<K: ?Sized, E>(&self, key: &K) -> Result<&L, RouteError<E>>
    where
        F: Fn(&K) -> Option<usize>,
    {
        let chosen = (self.choose)(key);
        chosen
            .and_then(|i| self.limiters.get(i))
            .ok_or(RouteError::NoRoute {
                chosen,
                available: self.limiters.len(),
            })
    }
}

/// One of two limiters of different types, itself a limiter: put different stores behind one
/// [`Routed`] (for example `Either<RateLimiter<str>, RedisLimiter>`).
#[derive(Debug)]
pub enum Either<A, B> {
    /// The first kind.
    Left(A),
    /// The second kind.
    Right(B),
}

/// The error of an [`Either`]: whichever side failed.
#[derive(Debug, thiserror::Error)]
pub enum EitherError<A, B> {
    /// The left limiter failed.
    #[error(transparent)]
    Left(A),
    /// The right limiter failed.
    #[error(transparent)]
    Right(B),
}

impl<A: LimiterError, B: LimiterError> LimiterError for EitherError<A, B> {
    fn kind(&self) -> ErrorKind {
        match self {
            EitherError::Left(e) => e.kind(),
            EitherError::Right(e) => e.kind(),
        }
    }
}

impl<K, A, B> AsyncLimiter<K> for Either<A, B>
where
    K: ?Sized + Sync,
    A: AsyncLimiter<K>,
    B: AsyncLimiter<K>,
{
    type Error = EitherError<A::Error, B::Error>;

    async fn check(&self, key: &K, cost: u64) -> Result<Decision, Self::Error> {
        match self {
            Either::Left(a) => a.check(key, cost).await.map_err(EitherError::Left),
            Either::Right(b) => b.check(key, cost).await.map_err(EitherError::Right),
        }
    }

    async fn peek(&self, key: &K) -> Result<Decision, Self::Error> {
        match self {
            Either::Left(a) => a.peek(key).await.map_err(EitherError::Left),
            Either::Right(b) => b.peek(key).await.map_err(EitherError::Right),
        }
    }

    async fn reset(&self, key: &K) -> Result<(), Self::Error> {
        match self {
            Either::Left(a) => a.reset(key).await.map_err(EitherError::Left),
            Either::Right(b) => b.reset(key).await.map_err(EitherError::Right),
        }
    }

    fn check_now(&self, key: &K, cost: u64) -> Option<Result<Decision, Self::Error>> {
        match self {
            Either::Left(a) => a.check_now(key, cost).map(|r| r.map_err(EitherError::Left)),
            Either::Right(b) => b
                .check_now(key, cost)
                .map(|r| r.map_err(EitherError::Right)),
        }
    }

    fn peek_now(&self, key: &K) -> Option<Result<Decision, Self::Error>> {
        match self {
            Either::Left(a) => a.peek_now(key).map(|r| r.map_err(EitherError::Left)),
            Either::Right(b) => b.peek_now(key).map(|r| r.map_err(EitherError::Right)),
        }
    }
}

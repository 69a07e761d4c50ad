//! The one contract every limiter a service can ask implements: [`AsyncLimiter`].
//!
//! In-process tables, Redis, Memcached and the failover wrapper all answer the same three calls
//! (check, peek, reset) with the same [`Decision`], and fail with an error that says, through
//! [`ErrorKind`], what the failure means for the key's state. Middleware and failover are
//! written once against this trait and work with whichever store they are given.
//!
//! The trait lives in the `no_std` core so every adapter crate can implement it without a
//! dependency cycle; it needs no allocator and no runtime.

use core::future::Future;

use crate::decision::{CheckError, Decision};

/// What a failed call means for the key's state, and so what a caller may do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The cost is larger than this limit can ever admit at once. Nothing was charged;
    /// retrying or asking another store does not help.
    InsufficientCapacity {
        /// The largest cost a single check can be granted.
        max: u64,
    },
    /// The call failed before anything could have been charged (connection refused, error before
    /// the request was sent, script not loaded, table full). Safe to retry or to fall back.
    NotCharged,
    /// The call may or may not have been charged (timeout after sending, connection lost before
    /// the reply). Never retried: a resend could count the request twice.
    Indeterminate,
    /// The store or the limiter is misconfigured, holds data that is not a limiter state, or
    /// answers in a way no limiter store does. Retrying the same call will fail the same way,
    /// and falling back would hide the misconfiguration. Nothing was charged, except when the
    /// store ran the command and its reply could not be read (another server behind the
    /// address, a proxy rewriting replies): then it may have been.
    Config,
}

impl ErrorKind {
    /// Whether the key is known not to have been charged, so a retry cannot double-count.
    #[inline]
    pub const fn is_retry_safe(self) -> bool {
        matches!(self, ErrorKind::NotCharged)
    }

    /// Whether the call may have been charged although no decision came back.
    #[inline]
    pub const fn is_indeterminate(self) -> bool {
        matches!(self, ErrorKind::Indeterminate)
    }
}

/// An error from an [`AsyncLimiter`]: displayable, sendable, and classified by [`ErrorKind`].
pub trait LimiterError: core::error::Error + Send + Sync + 'static {
    /// What this failure means for the key's state.
    fn kind(&self) -> ErrorKind;
}

impl LimiterError for CheckError {
    #[inline]
    fn kind(&self) -> ErrorKind {
        match *self {
            CheckError::InsufficientCapacity { max } => ErrorKind::InsufficientCapacity { max },
            // The table refused to place a new key: nothing was stored.
            CheckError::TableFull => ErrorKind::NotCharged,
        }
    }
}

/// A rate limiter a service can ask, wherever its state lives.
///
/// `K` is the key type the limiter accepts: stores that keep bytes (Redis, Memcached) accept any
/// `K: AsRef<[u8]>` (so `str`, `[u8]`, `String`, `Vec<u8>`), and the in-process table accepts
/// every `Key` (integers and addresses stored exactly, strings and bytes by fingerprint).
///
/// * [`check`](Self::check) charges `cost` all-or-nothing: a denial charges nothing. A cost of
///   zero behaves like [`peek`](Self::peek).
/// * [`peek`](Self::peek) reports what is left without charging.
/// * [`reset`](Self::reset) makes the key fresh.
///
/// The in-process table's futures are ready at once (no allocation, no boxing); the check itself
/// stays the synchronous `KeyedLimiter::check` (feature `alloc`) for callers that do not need
/// the contract.
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use core::future::Future;
/// use traffik_core::{AsyncLimiter, Gcra, KeyedLimiter, ManualClock, Rate, TableConfig};
///
/// // Generic code written once against the contract.
/// async fn admit<L: AsyncLimiter<str>>(limiter: &L, who: &str) -> bool {
///     matches!(limiter.check(who, 1).await, Ok(d) if d.is_allowed())
/// }
///
/// let table: KeyedLimiter<str, _, _> = KeyedLimiter::new(
///     Gcra::new(Rate::per_second(1))?,
///     ManualClock::new(),
///     TableConfig::new(16, [1, 2, 3, 4]),
/// )?;
/// // The in-process table's futures are ready immediately; poll once without a runtime.
/// let mut fut = core::pin::pin!(admit(&table, "alice"));
/// let waker = core::task::Waker::noop();
/// let mut cx = core::task::Context::from_waker(&waker);
/// assert_eq!(fut.as_mut().poll(&mut cx), core::task::Poll::Ready(true));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AsyncLimiter<K: ?Sized>: Send + Sync {
    /// The error every call can end in.
    type Error: LimiterError;

    /// Checks `cost` for `key`, charging it if admitted.
    fn check(
        &self,
        key: &K,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send;

    /// What `key` has left, without charging anything.
    fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, Self::Error>> + Send;

    /// Forgets everything charged to `key`.
    fn reset(&self, key: &K) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// [`check`](Self::check) answered on the spot, for limiters that never wait (the
    /// in-process table); `None`, with nothing charged, when only awaiting
    /// [`check`](Self::check) can answer.
    ///
    /// Middleware calls this first so that in-process limiters cost no future and no
    /// allocation per request. The default returns `None`; a store that answers over a network
    /// keeps it.
    #[inline]
    fn check_now(&self, key: &K, cost: u64) -> Option<Result<Decision, Self::Error>> {
        let _ = (key, cost);
        None
    }

    /// [`peek`](Self::peek) answered on the spot, or `None` as for
    /// [`check_now`](Self::check_now).
    #[inline]
    fn peek_now(&self, key: &K) -> Option<Result<Decision, Self::Error>> {
        let _ = key;
        None
    }
}

impl<K: ?Sized, L: AsyncLimiter<K> + ?Sized> AsyncLimiter<K> for &L {
    type Error = L::Error;
    #[inline]
    fn check(
        &self,
        key: &K,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        (**self).check(key, cost)
    }
    #[inline]
    fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        (**self).peek(key)
    }
    #[inline]
    fn reset(&self, key: &K) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).reset(key)
    }
    #[inline]
    fn check_now(&self, key: &K, cost: u64) -> Option<Result<Decision, Self::Error>> {
        (**self).check_now(key, cost)
    }
    #[inline]
    fn peek_now(&self, key: &K) -> Option<Result<Decision, Self::Error>> {
        (**self).peek_now(key)
    }
}

#[cfg(feature = "alloc")]
mod shared {
    use super::*;
    use alloc::sync::Arc;

    impl<K: ?Sized, L: AsyncLimiter<K> + ?Sized> AsyncLimiter<K> for Arc<L> {
        type Error = L::Error;
        #[inline]
        fn check(
            &self,
            key: &K,
            cost: u64,
        ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
            (**self).check(key, cost)
        }
        #[inline]
        fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
            (**self).peek(key)
        }
        #[inline]
        fn reset(&self, key: &K) -> impl Future<Output = Result<(), Self::Error>> + Send {
            (**self).reset(key)
        }
        #[inline]
        fn check_now(&self, key: &K, cost: u64) -> Option<Result<Decision, Self::Error>> {
            (**self).check_now(key, cost)
        }
        #[inline]
        fn peek_now(&self, key: &K) -> Option<Result<Decision, Self::Error>> {
            (**self).peek_now(key)
        }
    }
}

#[cfg(feature = "alloc")]
mod keyed {
    use super::*;
    use crate::algorithm::Algorithm;
    use crate::clock::Clock;
    use crate::key::Key;
    use crate::quota::Quotas;
    use crate::table::{KeyedLimiter, MultiKeyed, QuotaLimiter};
    use core::future::ready;

    /// The contract for an in-process table whose own `check(&key, cost)`, `peek(&key)` and
    /// `reset(&key)` answer at once: every future is ready on its first poll and does exactly
    /// what the synchronous call does, and `check_now`/`peek_now` always answer.
    macro_rules! answered_on_the_spot {
        ($table:ident<$($param:ident),+> where $($bounds:tt)+) => {
            impl<$($param),+> AsyncLimiter<K> for $table<$($param),+>
            where
                $($bounds)+
            {
                type Error = CheckError;
                #[inline]
                fn check(
                    &self,
                    key: &K,
                    cost: u64,
                ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
                    ready($table::check(self, key, cost))
                }
                #[inline]
                fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
                    ready(Ok($table::peek(self, key)))
                }
                #[inline]
                fn reset(&self, key: &K) -> impl Future<Output = Result<(), Self::Error>> + Send {
                    $table::reset(self, key);
                    ready(Ok(()))
                }
                #[inline]
                fn check_now(&self, key: &K, cost: u64) -> Option<Result<Decision, Self::Error>> {
                    Some($table::check(self, key, cost))
                }
                #[inline]
                fn peek_now(&self, key: &K) -> Option<Result<Decision, Self::Error>> {
                    Some(Ok($table::peek(self, key)))
                }
            }
        };
    }

    // The keyed table.
    answered_on_the_spot!(KeyedLimiter<K, A, C> where K: Key + ?Sized, A: Algorithm, C: Clock, Self: Send + Sync);
    // The per-key-quota table.
    answered_on_the_spot!(QuotaLimiter<K, Q, C> where K: Key + ?Sized, Q: Quotas<K>, C: Clock, Self: Send + Sync);
    // One table per limit, checked all or nothing.
    answered_on_the_spot!(MultiKeyed<K, A, C> where K: Key + ?Sized, A: Algorithm, C: Clock, Self: Send + Sync);
}

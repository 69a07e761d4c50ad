//! [`Failover`]: the wrapper itself, and its [`AsyncLimiter`] implementation.

use super::breaker::{BreakerState, CircuitBreaker, Permit};
use super::check::{Check, Start};
use super::error::{FailoverError, NoFallback};
use super::policy::{FailoverBuilder, Policy};
use super::replay::{JoinAll, ReplayQueue};
use super::retry::{bounded, RetryPolicy};
use super::stats::{Counters, Event, FailoverStats};
use crate::clock::QuantaClock;
use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use traffik_core::{AsyncLimiter, Clock, Decision, ErrorKind, LimiterError};

/// A primary [`AsyncLimiter`] (typically a shared store) guarded by a circuit breaker, retries
/// and a timeout, with a policy for when it cannot answer: see the [module docs](super).
///
/// `K` is the key type; keys are owned (`K::Owned`) only to queue fallback charges for replay.
pub struct Failover<K: ?Sized + ToOwned, P, F = NoFallback, C = QuantaClock> {
    pub(super) primary: P,
    pub(super) on_error: Policy<F>,
    pub(super) breaker: CircuitBreaker<C>,
    pub(super) retry: RetryPolicy,
    pub(super) timeout: Option<Duration>,
    pub(super) replay: ReplayQueue<K::Owned>,
    pub(super) replay_batch: usize,
    pub(super) counters: Counters,
}

impl Failover<(), (), NoFallback, QuantaClock> {
    /// A builder around `primary`; see [`FailoverBuilder`].
    pub fn builder<P>(primary: P) -> FailoverBuilder<P> {
        FailoverBuilder::new(primary)
    }
}

impl<K: ?Sized + ToOwned, P, F, C> fmt::Debug for Failover<K, P, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why the primary gave no decision.
pub(super) enum Failure<E> {
    Error(E),
    Timeout(Duration),
}

impl<E: LimiterError> Failure<E> {
    pub(super) fn kind(&self) -> ErrorKind {
        match self {
            Failure::Error(e) => e.kind(),
            Failure::Timeout(_) => ErrorKind::Indeterminate,
        }
    }

    /// Whether this is a caller or configuration error, returned as it is whatever the policy.
    pub(super) fn is_never_masked(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::InsufficientCapacity { .. } | ErrorKind::Config
        )
    }

    pub(super) fn into_error<F>(self) -> FailoverError<E, F> {
        match self {
            Failure::Error(e) => FailoverError::Primary(e),
            Failure::Timeout(d) => FailoverError::Timeout(d),
        }
    }
}

/// Why the policy is being applied.
pub(super) enum Cause<E> {
    /// The breaker turned the call away: the primary was not asked.
    Open,
    Failed(Failure<E>),
}

impl<E: LimiterError> Cause<E> {
    /// Whether the primary is known not to have counted this request, so a fallback admission
    /// may be replayed to it without counting the request twice.
    fn primary_untouched(&self) -> bool {
        match self {
            Cause::Open => true,
            Cause::Failed(f) => f.kind().is_retry_safe(),
        }
    }

    pub(super) fn into_error<F>(self) -> FailoverError<E, F> {
        match self {
            Cause::Open => FailoverError::CircuitOpen,
            Cause::Failed(f) => f.into_error(),
        }
    }
}

/// What one replay batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Batch {
    sent: usize,
    requeued: usize,
}

/// A check's or a peek's result, with the primary's error type `P` and the fallback's `F`.
pub(super) type Outcome<P, F> = Result<Decision, FailoverError<P, F>>;

/// What the on-error policy says, before any fallback is asked.
pub(super) enum Policed<'a, F, E, X> {
    /// The policy answered by itself (allow or deny).
    Answered(Outcome<E, X>),
    /// The policy is to return the error.
    Error,
    /// The fallback is to be asked.
    Fallback(&'a F),
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<K: ?Sized + ToOwned, P, F, C: Clock> Failover<K, P, F, C> {
    /// A snapshot of what it has done.
    pub fn stats(&self) -> FailoverStats {
        self.counters.snapshot(
            self.breaker.state(),
            self.breaker.trips(),
            self.replay.pending(),
        )
    }

    /// Its circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker<C> {
        &self.breaker
    }

    /// The primary limiter.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The fallback limiter, if the policy is [`OnError::Fallback`](super::OnError::Fallback).
    pub fn fallback(&self) -> Option<&F> {
        match &self.on_error {
            Policy::Fallback(f) => Some(f),
            _ => None,
        }
    }
}

impl<K, P, F, C> Failover<K, P, F, C>
where
    K: ?Sized + ToOwned + PartialEq + Sync,
    K::Owned: Send + Sync,
    P: AsyncLimiter<K>,
    F: AsyncLimiter<K>,
    C: Clock + Send + Sync,
{
    /// Asks the primary, with the timeout around each attempt and retries of failures known
    /// not to have charged.
    async fn ask<T, Fut>(&self, call: impl Fn() -> Fut) -> Result<T, Failure<P::Error>>
    where
        Fut: Future<Output = Result<T, P::Error>>,
    {
        let first = self.attempt(call()).await;
        self.settle(first, call).await
    }

    /// One attempt, bounded by the timeout.
    async fn attempt<T>(
        &self,
        call: impl Future<Output = Result<T, P::Error>>,
    ) -> Result<T, Failure<P::Error>> {
        match bounded(call, self.timeout).await {
            Some(result) => result.map_err(Failure::Error),
            None => Err(Failure::Timeout(self.timeout.unwrap_or(Duration::MAX))),
        }
    }

    /// Counts the outcome of attempt number 1, and retries (calling `call` again) while the
    /// failure is known not to have charged and attempts are left.
    async fn settle<T, Fut>(
        &self,
        mut outcome: Result<T, Failure<P::Error>>,
        call: impl Fn() -> Fut,
    ) -> Result<T, Failure<P::Error>>
    where
        Fut: Future<Output = Result<T, P::Error>>,
    {
        let mut attempt = 1;
        loop {
            let failure = match outcome {
                Ok(v) => return Ok(v),
                Err(failure) => failure,
            };
            let kind = failure.kind();
            if let Failure::Timeout(_) = failure {
                self.counters.bump(Event::Timeout);
            }
            self.counters.bump(Event::error(kind));
            if !kind.is_retry_safe() || attempt >= self.retry.max_attempts() {
                return Err(failure);
            }
            self.counters.bump(Event::Retry);
            let delay = self.retry.next_delay(attempt);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            attempt += 1;
            outcome = self.attempt(call()).await;
        }
    }

    /// Everything of a check but its fast path (see `Check`): one `async fn`, so it is one
    /// concrete future type the hand-written `Check` can box.
    pub(super) async fn check_rest(
        &self,
        key: &K,
        cost: u64,
        start: Start<'_, C, P::Error>,
    ) -> Result<Decision, FailoverError<P::Error, F::Error>> {
        match start {
            Start::Open => self.check_unavailable(key, cost, Cause::Open).await,
            Start::Attempted(permit, first) => self.check_slow(key, cost, permit, first).await,
            Start::Replay(decision) => {
                self.replay_batch_once().await;
                Ok(decision)
            }
        }
    }

    /// The rest of a check whose first attempt did not answer at once.
    async fn check_slow(
        &self,
        key: &K,
        cost: u64,
        permit: Permit<'_, C>,
        first: Result<Decision, Failure<P::Error>>,
    ) -> Result<Decision, FailoverError<P::Error, F::Error>> {
        match self.settle(first, || self.primary.check(key, cost)).await {
            Ok(decision) => {
                permit.succeed();
                if self.replay.has_pending() {
                    self.replay_batch_once().await;
                }
                Ok(decision)
            }
            Err(failure) if failure.is_never_masked() => {
                drop(permit); // the primary answered: neither a success nor an outage
                Err(failure.into_error())
            }
            Err(failure) => {
                permit.fail();
                self.check_unavailable(key, cost, Cause::Failed(failure))
                    .await
            }
        }
    }

    async fn check_unavailable(
        &self,
        key: &K,
        cost: u64,
        cause: Cause<P::Error>,
    ) -> Result<Decision, FailoverError<P::Error, F::Error>> {
        match self.check_policy() {
            Policed::Answered(answer) => answer,
            Policed::Error => Err(cause.into_error()),
            Policed::Fallback(fallback) => {
                let answer = fallback.check(key, cost).await;
                self.fallback_checked(key, cost, &cause, answer)
            }
        }
    }

    /// The on-error policy for a check, counted.
    /// Shared by [`check`](AsyncLimiter::check) and [`check_now`](AsyncLimiter::check_now),
    /// so both count exactly the same things.
    pub(super) fn check_policy(&self) -> Policed<'_, F, P::Error, F::Error> {
        match &self.on_error {
            Policy::Allow => {
                self.counters.bump(Event::AllowedOnError);
                Policed::Answered(Ok(Decision::allow(0, 0, 0)))
            }
            Policy::Deny(wait) => {
                self.counters.bump(Event::DeniedOnError);
                Policed::Answered(Ok(Decision::deny(0, 0, nanos(*wait), nanos(*wait))))
            }
            Policy::Error => Policed::Error,
            Policy::Fallback(fallback) => Policed::Fallback(fallback),
        }
    }

    /// What follows the fallback's answer to a check: counted, and an admission queued for
    /// replay when the primary certainly did not count it.
    pub(super) fn fallback_checked(
        &self,
        key: &K,
        cost: u64,
        cause: &Cause<P::Error>,
        answer: Result<Decision, F::Error>,
    ) -> Result<Decision, FailoverError<P::Error, F::Error>> {
        let decision = answer.map_err(FailoverError::Fallback)?;
        self.counters.bump(Event::Fallback);
        // Only charges the primary certainly did not count are queued: replaying one that it
        // may have counted (a timeout) could count the request twice.
        if decision.is_allowed() && cost > 0 && cause.primary_untouched() {
            if self.replay.push(key.to_owned(), cost) {
                self.counters.bump(Event::ReplayQueued);
            } else if self.replay.capacity() > 0 {
                self.counters.bump(Event::ReplayDropped);
            }
        }
        Ok(decision)
    }

    async fn peek_inner(&self, key: &K) -> Result<Decision, FailoverError<P::Error, F::Error>> {
        let cause = match self.breaker.acquire() {
            Err(_) => {
                self.counters.bump(Event::ShortCircuit);
                Cause::Open
            }
            Ok(permit) => match self.ask(|| self.primary.peek(key)).await {
                Ok(decision) => {
                    permit.succeed();
                    return Ok(decision);
                }
                Err(failure) if failure.is_never_masked() => return Err(failure.into_error()),
                Err(failure) => {
                    permit.fail();
                    Cause::Failed(failure)
                }
            },
        };
        match &self.on_error {
            Policy::Allow => Ok(Decision::allow(0, 0, 0)),
            Policy::Deny(wait) => Ok(Decision::deny(0, 0, nanos(*wait), nanos(*wait))),
            Policy::Error => Err(cause.into_error()),
            Policy::Fallback(fallback) => fallback.peek(key).await.map_err(FailoverError::Fallback),
        }
    }

    async fn reset_inner(&self, key: &K) -> Result<(), FailoverError<P::Error, F::Error>> {
        // Charges queued for this key would charge it again after the reset.
        self.replay.remove(|k| k.borrow() == key);
        if let Policy::Fallback(fallback) = &self.on_error {
            fallback.reset(key).await.map_err(FailoverError::Fallback)?;
        }
        let Ok(permit) = self.breaker.acquire() else {
            self.counters.bump(Event::ShortCircuit);
            return Err(FailoverError::CircuitOpen);
        };
        match self.ask(|| self.primary.reset(key)).await {
            Ok(()) => {
                permit.succeed();
                Ok(())
            }
            Err(failure) => {
                if !failure.is_never_masked() {
                    permit.fail();
                }
                Err(failure.into_error())
            }
        }
    }

    /// Sends one batch of queued fallback charges to the primary, concurrently, if the breaker
    /// is closed and no other call is replaying.
    async fn replay_batch_once(&self) -> Batch {
        if self.breaker.state() != BreakerState::Closed {
            return Batch::default();
        }
        let Some(_claim) = self.replay.claim() else {
            return Batch::default();
        };
        let batch = self.replay.take(self.replay_batch);
        let mut requeued = 0;
        let sends = batch
            .iter()
            .map(|(k, cost)| bounded(self.primary.check(k.borrow(), *cost), self.timeout));
        let done = |i: usize, outcome: Option<Result<Decision, P::Error>>| match outcome {
            Some(Ok(d)) if d.is_allowed() => self.counters.bump(Event::Replayed),
            Some(Ok(_)) => self.counters.bump(Event::ReplayDenied),
            Some(Err(e)) if e.kind().is_retry_safe() => {
                // Not charged: it can go back in the queue for a later batch.
                let (k, cost) = &batch[i];
                let lost = self.replay.requeue(vec![(k.borrow().to_owned(), *cost)]);
                self.counters.add(Event::ReplayDropped, lost as u64);
                self.counters.add(Event::ReplayRequeued, 1 - lost as u64);
                requeued += 1;
            }
            // A timeout or an indeterminate failure may have charged: never resent.
            Some(Err(_)) | None => self.counters.bump(Event::ReplayFailed),
        };
        let cancelled = |left: usize| self.counters.add(Event::ReplayDropped, left as u64);
        JoinAll::new(sends, done, cancelled).await;
        Batch {
            sent: batch.len(),
            requeued,
        }
    }

    /// Replays every queued fallback charge now, batch after batch, until the queue is empty,
    /// the breaker is no longer closed, or a batch had charges that failed (they stay queued).
    /// Returns how many charges were sent.
    ///
    /// Calls that find charges pending already replay one batch each; this is for draining the
    /// queue at a moment of your choosing (for example from a background task).
    pub async fn flush_replay(&self) -> usize {
        let mut sent = 0;
        loop {
            let batch = self.replay_batch_once().await;
            sent += batch.sent;
            if batch.sent == 0 || batch.requeued > 0 {
                return sent;
            }
        }
    }
}

impl<K, P, F, C> AsyncLimiter<K> for Failover<K, P, F, C>
where
    K: ?Sized + ToOwned + PartialEq + Sync,
    K::Owned: Send + Sync,
    P: AsyncLimiter<K>,
    F: AsyncLimiter<K>,
    C: Clock + Send + Sync,
{
    type Error = FailoverError<P::Error, F::Error>;

    #[inline]
    fn check(
        &self,
        key: &K,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        Check::new(
            self,
            move || self.primary.check(key, cost),
            move |start| self.check_rest(key, cost, start),
        )
    }

    fn peek(&self, key: &K) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        self.peek_inner(key)
    }

    fn reset(&self, key: &K) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.reset_inner(key)
    }

    /// The same call as [`check`](Self::check), answered on the spot when every limiter it has
    /// to ask answers on the spot (an in-process primary while the breaker is closed, an
    /// in-process fallback while it is open); `None`, with nothing charged and nothing counted,
    /// otherwise. See the [module docs](super) for the one case where the two differ.
    #[inline]
    fn check_now(&self, key: &K, cost: u64) -> Option<Result<Decision, Self::Error>> {
        self.check_now_inner(key, cost)
    }

    /// The same call as [`peek`](Self::peek), answered on the spot under the same conditions
    /// as [`check_now`](Self::check_now).
    #[inline]
    fn peek_now(&self, key: &K) -> Option<Result<Decision, Self::Error>> {
        self.peek_now_inner(key)
    }
}

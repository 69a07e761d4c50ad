//! [`check_now`](AsyncLimiter::check_now) and [`peek_now`](AsyncLimiter::peek_now) for
//! [`Failover`]: the same call as the async one, answered on the spot when every limiter it
//! has to ask answers on the spot.
//!
//! The rule that keeps them exact: a call either answers with what the async call would have
//! answered (same breaker transitions, same counts, same replay queue), or returns `None`
//! having charged nothing and recorded nothing, so that the async call that follows starts
//! from the same state. So the outcome is worked out first and recorded last:
//!
//! * a `NotCharged` failure is retried on the spot only when its backoff is zero; a retry that
//!   would have to wait gives `None` (every attempt so far failed without charging);
//! * a primary or fallback that cannot answer on the spot gives `None`, unless the primary has
//!   already failed in a way that may have charged (`Indeterminate`) and the fallback cannot
//!   answer: `None` there would let the async call ask the primary a second time, so that one
//!   case answers with the primary's error, as [`OnError::Error`](super::OnError::Error) would
//!   (the one place it differs from the async call, reachable only with a primary that answers
//!   on the spot yet fails indeterminately, and a fallback that never answers on the spot);
//! * a call that finds fallback charges waiting to be replayed gives `None` before asking
//!   anything: the async call sends a replay batch after its decision, which cannot be done on
//!   the spot.

use super::breaker::Permit;
use super::check::rebuilt;
use super::error::FailoverError;
use super::limiter::{Cause, Failover, Failure, Policed};
use super::policy::Policy;
use super::stats::Event;
use traffik_core::{AsyncLimiter, Clock, Decision, ErrorKind, LimiterError};

/// The primary's answer on the spot after the retries that need no wait, with the failures
/// retried on the way (counted only once the call is sure to answer).
struct Settled<T, E> {
    outcome: Result<T, E>,
    retried: u64,
}

type Answer<K, P, F> = Option<
    Result<Decision, FailoverError<<P as AsyncLimiter<K>>::Error, <F as AsyncLimiter<K>>::Error>>,
>;

impl<K, P, F, C> Failover<K, P, F, C>
where
    K: ?Sized + ToOwned + PartialEq + Sync,
    K::Owned: Send + Sync,
    P: AsyncLimiter<K>,
    F: AsyncLimiter<K>,
    C: Clock + Send + Sync,
{
    /// The body of [`AsyncLimiter::check_now`]. Closed breaker, primary answering: one load of
    /// the breaker word, one of the replay queue's length, the primary's check, and one more
    /// load of the breaker word (a success with no failures counted records nothing).
    #[inline]
    pub(super) fn check_now_inner(&self, key: &K, cost: u64) -> Answer<K, P, F> {
        let Ok(permit) = self.breaker.acquire() else {
            return self.check_now_open(key, cost);
        };
        if self.replay.has_pending() {
            return None; // the permit goes back unreported
        }
        match self.primary.check_now(key, cost)? {
            Ok(decision) => {
                permit.succeed();
                Some(Ok(rebuilt(&decision)))
            }
            Err(e) => self.check_now_failed(key, cost, permit, e),
        }
    }

    /// The breaker turned the call away: the policy, without touching the primary.
    #[cold]
    #[inline(never)]
    fn check_now_open(&self, key: &K, cost: u64) -> Answer<K, P, F> {
        let answer = match self.check_policy() {
            Policed::Answered(answer) => answer,
            Policed::Error => Err(FailoverError::CircuitOpen),
            Policed::Fallback(fallback) => {
                let answer = fallback.check_now(key, cost)?;
                self.counters.bump(Event::ShortCircuit);
                return Some(self.fallback_checked(key, cost, &Cause::Open, answer));
            }
        };
        self.counters.bump(Event::ShortCircuit);
        Some(answer)
    }

    /// The primary's first attempt failed on the spot: retries, then the policy.
    #[cold]
    #[inline(never)]
    fn check_now_failed(
        &self,
        key: &K,
        cost: u64,
        permit: Permit<'_, C>,
        first: P::Error,
    ) -> Answer<K, P, F> {
        let settled = self.settle_now(first, || self.primary.check_now(key, cost))?;
        let e = match settled.outcome {
            Ok(decision) => {
                self.count_attempts(settled.retried, None);
                permit.succeed();
                // Nothing was pending when the call began (else it would not be here).
                return Some(Ok(decision));
            }
            Err(e) => e,
        };
        let kind = e.kind();
        let failure = Failure::Error(e);
        if failure.is_never_masked() {
            self.count_attempts(settled.retried, Some(kind));
            drop(permit); // the primary answered: neither a success nor an outage
            return Some(Err(failure.into_error()));
        }
        let cause = Cause::Failed(failure);
        let answer = match self.check_policy() {
            Policed::Answered(answer) => answer,
            Policed::Error => Err(cause.into_error()),
            Policed::Fallback(fallback) => match fallback.check_now(key, cost) {
                Some(answer) => self.fallback_checked(key, cost, &cause, answer),
                // Nothing charged anywhere: the async call starts afresh.
                None if kind.is_retry_safe() => return None,
                // The primary may have charged: asking it again could count the call twice.
                None => Err(cause.into_error()),
            },
        };
        self.count_attempts(settled.retried, Some(kind));
        permit.fail();
        Some(answer)
    }

    /// Retries a failed first attempt on the spot while the async path would retry it without
    /// waiting. `None` when the primary stops answering on the spot or a retry would have to
    /// wait: every attempt so far failed without charging.
    fn settle_now<T>(
        &self,
        first: P::Error,
        call: impl Fn() -> Option<Result<T, P::Error>>,
    ) -> Option<Settled<T, P::Error>> {
        let mut attempt: u32 = 1;
        let mut failed = first;
        loop {
            let retried = u64::from(attempt - 1);
            if !failed.kind().is_retry_safe() || attempt >= self.retry.max_attempts() {
                return Some(Settled {
                    outcome: Err(failed),
                    retried,
                });
            }
            if !self.retry.never_waits(attempt) {
                return None;
            }
            attempt += 1;
            match call()? {
                Ok(v) => {
                    return Some(Settled {
                        outcome: Ok(v),
                        retried: u64::from(attempt - 1),
                    })
                }
                Err(e) => failed = e,
            }
        }
    }

    /// Counts what the async path's retry loop counts: each retried failure (all `NotCharged`)
    /// and its retry, and the last failure if the primary gave no decision.
    fn count_attempts(&self, retried: u64, last: Option<ErrorKind>) {
        if retried > 0 {
            self.counters.add(Event::NotCharged, retried);
            self.counters.add(Event::Retry, retried);
        }
        if let Some(kind) = last {
            self.counters.bump(Event::error(kind));
        }
    }

    /// The body of [`AsyncLimiter::peek_now`]. A peek charges nothing, so `None` is always
    /// safe as long as nothing was recorded.
    #[inline]
    pub(super) fn peek_now_inner(&self, key: &K) -> Answer<K, P, F> {
        let Ok(permit) = self.breaker.acquire() else {
            let answer = self.peek_policy_now(key, Cause::Open)?;
            self.counters.bump(Event::ShortCircuit);
            return Some(answer);
        };
        match self.primary.peek_now(key)? {
            Ok(decision) => {
                permit.succeed();
                Some(Ok(decision))
            }
            Err(e) => self.peek_now_failed(key, permit, e),
        }
    }

    #[cold]
    #[inline(never)]
    fn peek_now_failed(&self, key: &K, permit: Permit<'_, C>, first: P::Error) -> Answer<K, P, F> {
        let settled = self.settle_now(first, || self.primary.peek_now(key))?;
        let e = match settled.outcome {
            Ok(decision) => {
                self.count_attempts(settled.retried, None);
                permit.succeed();
                return Some(Ok(decision));
            }
            Err(e) => e,
        };
        let kind = e.kind();
        let failure = Failure::Error(e);
        if failure.is_never_masked() {
            self.count_attempts(settled.retried, Some(kind));
            drop(permit);
            return Some(Err(failure.into_error()));
        }
        let answer = self.peek_policy_now(key, Cause::Failed(failure))?;
        self.count_attempts(settled.retried, Some(kind));
        permit.fail();
        Some(answer)
    }

    /// The on-error policy for a peek (which counts no policy decisions), on the spot.
    fn peek_policy_now(&self, key: &K, cause: Cause<P::Error>) -> Answer<K, P, F> {
        Some(match &self.on_error {
            Policy::Allow => Ok(Decision::allow(0, 0, 0)),
            Policy::Deny(wait) => {
                let wait = super::limiter::nanos(*wait);
                Ok(Decision::deny(0, 0, wait, wait))
            }
            Policy::Error => Err(cause.into_error()),
            Policy::Fallback(fallback) => fallback.peek_now(key)?.map_err(FailoverError::Fallback),
        })
    }
}

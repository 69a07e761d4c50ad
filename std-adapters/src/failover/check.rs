//! The future of [`Failover::check`](traffik_core::AsyncLimiter::check), written by hand so the
//! common case costs next to nothing over the primary's own check.
//!
//! The breaker is asked when the future is created. If it lets the call through, the primary's
//! future is kept inline (pinned in place) and polled directly. An answer on the first poll (an
//! in-process limiter always answers then) goes straight back to the caller after one more
//! breaker load and one look at the replay queue's length. Everything else (a primary that has
//! to wait gets a timer; failures, retries, the on-error policy and replays run as one boxed
//! `async fn`) allocates, but only off that path.

use super::breaker::Permit;
use super::limiter::{Failover, Failure};
use super::stats::Event;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use traffik_core::{Clock, Decision};

/// Where the boxed rest of a check starts.
pub(super) enum Start<'s, C: Clock, E> {
    /// The breaker turned the call away.
    Open,
    /// The first attempt did not give a decision at once: its outcome, and the permit.
    Attempted(Permit<'s, C>, Result<Decision, Failure<E>>),
    /// The primary admitted or denied; charges are waiting to be replayed.
    Replay(Decision),
}

pin_project! {
    /// A check in flight: the primary's first attempt inline, or the boxed rest.
    pub(super) struct Check<'s, K, P, F, C, E, X, PF, M, R>
    where
        K: ?Sized,
        K: ToOwned,
        C: Clock,
    {
        failover: &'s Failover<K, P, F, C>,
        #[pin]
        first: Option<PF>,
        permit: Option<Permit<'s, C>>,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        // Makes the rest of the check (an `async fn` borrowing the failover and the key).
        make_rest: Option<M>,
        rest: Option<Pin<Box<R>>>,
        errors: std::marker::PhantomData<fn() -> (E, X)>,
    }
}

impl<'s, K, P, F, C, E, X, PF, M, R> Check<'s, K, P, F, C, E, X, PF, M, R>
where
    K: ?Sized + ToOwned,
    C: Clock,
    PF: Future<Output = Result<Decision, E>>,
    M: FnOnce(Start<'s, C, E>) -> R,
    R: Future<Output = Result<Decision, X>>,
{
    /// Asks the breaker; `start` makes the primary's future if it may be asked.
    #[inline]
    pub(super) fn new(
        failover: &'s Failover<K, P, F, C>,
        start: impl FnOnce() -> PF,
        make_rest: M,
    ) -> Self {
        let (first, permit, make_rest, rest) = match failover.breaker.acquire() {
            Ok(permit) => (Some(start()), Some(permit), Some(make_rest), None),
            Err(_) => {
                failover.counters.bump(Event::ShortCircuit);
                (None, None, None, Some(Box::pin(make_rest(Start::Open))))
            }
        };
        Check {
            failover,
            first,
            permit,
            timer: None,
            make_rest,
            rest,
            errors: std::marker::PhantomData,
        }
    }
}

impl<'s, K, P, F, C, E, X, PF, M, R> Future for Check<'s, K, P, F, C, E, X, PF, M, R>
where
    K: ?Sized + ToOwned,
    C: Clock,
    PF: Future<Output = Result<Decision, E>>,
    M: FnOnce(Start<'s, C, E>) -> R,
    R: Future<Output = Result<Decision, X>>,
{
    type Output = Result<Decision, X>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let failover: &'s Failover<K, P, F, C> = this.failover;
        if let Some(fut) = this.first.as_mut().as_pin_mut() {
            let outcome = match fut.poll(cx) {
                Poll::Ready(result) => result.map_err(Failure::Error),
                Poll::Pending => {
                    let Some(limit) = failover.timeout else {
                        return Poll::Pending;
                    };
                    // The timer starts with the first poll that had to wait.
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                    ready!(timer.as_mut().poll(cx));
                    Err(Failure::Timeout(limit))
                }
            };
            this.first.set(None);
            *this.timer = None;
            // Both are set together in `new`, and taken together here, once.
            if let (Some(permit), Some(make_rest)) = (this.permit.take(), this.make_rest.take()) {
                let start = match outcome {
                    Ok(decision) => {
                        permit.succeed();
                        if !failover.replay.has_pending() {
                            return Poll::Ready(Ok(decision));
                        }
                        Start::Replay(decision)
                    }
                    Err(failure) => Start::Attempted(permit, Err(failure)),
                };
                *this.rest = Some(Box::pin(make_rest(start)));
            }
        }
        let Some(rest) = this.rest.as_mut() else {
            // Polled again after it finished: stay pending rather than resume a finished future.
            return Poll::Pending;
        };
        let out = ready!(rest.as_mut().poll(cx));
        *this.rest = None;
        Poll::Ready(out)
    }
}

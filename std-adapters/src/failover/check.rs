//! The future of [`Failover::check`](traffik_core::AsyncLimiter::check), written by hand so the
//! common case costs little over the primary's own check.
//!
//! Creating the future only captures the key and the cost. Its first poll asks the breaker (one
//! atomic load when closed), makes the primary's future in its pinned slot and polls it there.
//! An answer on that poll (an in-process limiter always answers then) goes straight back to the
//! caller after one more breaker load (a success on a closed breaker with no failures counted
//! records nothing) and one load of the replay queue's length; the permit never leaves that
//! poll.
//!
//! Why so little: a `Decision` is 40 bytes with 7 bytes of padding, and every layer it passes
//! through whole (a `Result` mapped into another, an `Option` taken out of a struct, a struct
//! moved into place) is a copy whose odd-sized padding moves defeat the CPU's store-to-load
//! forwarding, a stall of a dozen cycles or so each. The previous version made the primary's
//! future when the `Check` was created, moved it with the `Check` and mapped its answer through
//! two more types, about 30 ns over the bare check. Now the answer is copied into the slot once
//! (the primary's future is made there) and rebuilt field by field into the caller's answer;
//! everything else (a primary that has to wait gets a timer; failures, retries, the on-error
//! policy and replays run as one boxed `async fn`) lives in `#[cold]` functions off that path.

use super::breaker::Permit;
use super::limiter::{Failover, Failure};
use super::stats::Event;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
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
    /// A check in flight: not started, the primary's first attempt inline, or the boxed rest.
    pub(super) struct Check<'s, K, P, F, C, E, X, S, PF, M, R>
    where
        K: ?Sized,
        K: ToOwned,
        C: Clock,
    {
        failover: &'s Failover<K, P, F, C>,
        // Makes the primary's future; taken by the first poll.
        start: Option<S>,
        #[pin]
        first: Option<PF>,
        // The permit and the timer, once the first attempt has had to wait. On the fast path the
        // permit never leaves the poll that took it, and this stays `None`: the check's drop is
        // then a few null tests.
        wait: Option<Box<Wait<'s, C>>>,
        // Makes the rest of the check (an `async fn` borrowing the failover and the key).
        make_rest: Option<M>,
        rest: Option<Pin<Box<R>>>,
        errors: std::marker::PhantomData<fn() -> (E, X)>,
    }
}

impl<'s, K, P, F, C, E, X, S, PF, M, R> Check<'s, K, P, F, C, E, X, S, PF, M, R>
where
    K: ?Sized + ToOwned,
    C: Clock,
    S: FnOnce() -> PF,
    PF: Future<Output = Result<Decision, E>>,
    M: FnOnce(Start<'s, C, E>) -> R,
    R: Future<Output = Result<Decision, X>>,
{
    /// A check that does nothing until polled: `start` makes the primary's future, `make_rest`
    /// everything off the fast path.
    #[inline]
    pub(super) fn new(failover: &'s Failover<K, P, F, C>, start: S, make_rest: M) -> Self {
        Check {
            failover,
            start: Some(start),
            first: None,
            wait: None,
            make_rest: Some(make_rest),
            rest: None,
            errors: std::marker::PhantomData,
        }
    }
}

/// The same decision, written field by field rather than copied whole.
///
/// A whole copy also moves the 7 padding bytes after its `bool`, which the compiler does with
/// two overlapping 4-byte moves; the next copy then loads bytes that two stores wrote, which
/// the CPU cannot forward from its store buffer (a stall of a dozen cycles or so, per copy).
/// The fields alone are whole words and a byte. Exact: `Decision::allow` and `Decision::deny`
/// are the only ways to make a decision, and an admission's `retry_after` is always zero.
#[inline(always)]
pub(super) fn rebuilt(d: &Decision) -> Decision {
    if d.is_allowed() {
        Decision::allow(d.limit(), d.remaining(), d.reset_after_nanos())
    } else {
        Decision::deny(
            d.limit(),
            d.remaining(),
            d.retry_after_nanos(),
            d.reset_after_nanos(),
        )
    }
}

/// Makes the rest of the check and polls it once; keeps it if it has to wait.
#[cold]
#[inline(never)]
fn begin_rest<'s, C, E, X, M, R>(
    make_rest: &mut Option<M>,
    rest: &mut Option<Pin<Box<R>>>,
    start: Start<'s, C, E>,
    cx: &mut Context<'_>,
) -> Poll<Result<Decision, X>>
where
    C: Clock,
    M: FnOnce(Start<'s, C, E>) -> R,
    R: Future<Output = Result<Decision, X>>,
{
    // Taken once: the first poll either answers, or comes here exactly once.
    let Some(make) = make_rest.take() else {
        return Poll::Pending;
    };
    let mut fut = Box::pin(make(start));
    match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(out),
        Poll::Pending => {
            *rest = Some(fut);
            Poll::Pending
        }
    }
}

/// What a first attempt that had to wait keeps between polls.
pub(super) struct Wait<'s, C: Clock> {
    permit: Option<Permit<'s, C>>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The first attempt had to wait: keeps the permit taken in this poll (if any), starts the timer
/// with this first wait and polls it. `Some(limit)` once the limit has passed.
#[cold]
#[inline(never)]
fn first_wait<'s, C: Clock>(
    wait: &mut Option<Box<Wait<'s, C>>>,
    fresh: Option<Permit<'s, C>>,
    limit: Option<std::time::Duration>,
    cx: &mut Context<'_>,
) -> Option<std::time::Duration> {
    let wait = wait.get_or_insert_with(|| {
        Box::new(Wait {
            permit: None,
            timer: None,
        })
    });
    if fresh.is_some() {
        wait.permit = fresh;
    }
    let limit = limit?;
    let timer = wait
        .timer
        .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
    timer.as_mut().poll(cx).is_ready().then_some(limit)
}

/// The permit of a first attempt that had to wait, and the end of its wait (the timer goes).
#[cold]
#[inline(never)]
fn end_wait<'s, C: Clock>(wait: &mut Option<Box<Wait<'s, C>>>) -> Option<Permit<'s, C>> {
    wait.take().and_then(|w| w.permit)
}

impl<'s, K, P, F, C, E, X, S, PF, M, R> Future for Check<'s, K, P, F, C, E, X, S, PF, M, R>
where
    K: ?Sized + ToOwned,
    C: Clock,
    S: FnOnce() -> PF,
    PF: Future<Output = Result<Decision, E>>,
    M: FnOnce(Start<'s, C, E>) -> R,
    R: Future<Output = Result<Decision, X>>,
{
    type Output = Result<Decision, X>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let failover: &'s Failover<K, P, F, C> = this.failover;
        // The permit taken by this poll, if it is the first.
        let mut fresh = None;
        if let Some(start) = this.start.take() {
            match failover.breaker.acquire() {
                Ok(permit) => {
                    fresh = Some(permit);
                    this.first.set(Some(start()));
                }
                Err(_) => {
                    failover.counters.bump(Event::ShortCircuit);
                    return begin_rest(this.make_rest, this.rest, Start::Open, cx);
                }
            }
        }
        if let Some(fut) = this.first.as_mut().as_pin_mut() {
            let failure = match fut.poll(cx) {
                Poll::Ready(Ok(decision)) => {
                    // The answer is put in its final shape first and the bookkeeping done after,
                    // so the decision is not held (and copied again) across it.
                    let out = Poll::Ready(Ok(rebuilt(&decision)));
                    this.first.set(None);
                    let permit = match fresh {
                        Some(p) => Some(p),
                        None => end_wait(this.wait),
                    };
                    if let Some(permit) = permit {
                        permit.succeed();
                    }
                    if !failover.replay.has_pending() {
                        return out;
                    }
                    return begin_rest(this.make_rest, this.rest, Start::Replay(decision), cx);
                }
                Poll::Ready(Err(e)) => Failure::Error(e),
                Poll::Pending => match first_wait(this.wait, fresh, failover.timeout, cx) {
                    None => return Poll::Pending,
                    Some(limit) => {
                        fresh = None;
                        Failure::Timeout(limit)
                    }
                },
            };
            this.first.set(None);
            // Taken with `first`, once: by this poll, or kept in `wait`.
            let Some(permit) = fresh.or_else(|| end_wait(this.wait)) else {
                return Poll::Pending;
            };
            let start = Start::Attempted(permit, Err(failure));
            return begin_rest(this.make_rest, this.rest, start, cx);
        }
        let Some(rest) = this.rest.as_mut() else {
            // Polled again after it finished: stay pending rather than resume a finished future.
            return Poll::Pending;
        };
        let out = std::task::ready!(rest.as_mut().poll(cx));
        *this.rest = None;
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::rebuilt;
    use traffik_core::Decision;

    #[test]
    fn a_rebuilt_decision_is_the_same_decision() {
        for d in [
            Decision::allow(10, 3, 7_000),
            Decision::allow(u64::MAX, 0, u64::MAX),
            Decision::deny(10, 0, 123, 456),
            Decision::deny(0, 0, 0, 0),
        ] {
            assert_eq!(rebuilt(&d), d);
        }
    }
}

//! Waiting until a limiter admits, instead of turning the caller away.
//!
//! * `until_ready` and `until_ready_with` (feature `tokio`) wait on any
//!   [`AsyncLimiter`](traffik_core::AsyncLimiter): check; on a denial sleep for its
//!   `retry_after` (`tokio::time::sleep`), then check again.
//! * [`block_until_ready`] and [`block_until_ready_direct`] do the same for synchronous callers
//!   (game loops, worker threads) on the in-process limiters, with `std::thread::sleep`; they
//!   need no runtime.
//!
//! Common to both:
//!
//! * Only a check that is admitted charges anything: denials charge nothing, so a wait that is
//!   abandoned (a dropped future, a deadline) has charged nothing.
//! * A cost the limiter can never admit is
//!   [`InsufficientCapacity`](traffik_core::CheckError::InsufficientCapacity), returned at once as
//!   [`WaitError::Limiter`]: never an endless wait. Every other error is returned at once too.
//! * With a deadline, a denial whose next wake-up would fall after it ends the wait with
//!   [`WaitError::Deadline`], without sleeping.
//! * A denial that reports no wait at all (a zero `retry_after`, which the in-process algorithms
//!   never give) is checked again after [`MIN_WAIT`], so a limiter that never says how long to
//!   wait cannot make the loop spin.
//!
//! Waiting admits in no particular order: under contention a waiter can be overtaken by a later
//! one that happens to check first. It is a polite retry loop, not a queue.

use std::fmt;
use std::time::{Duration, Instant};
use traffik_core::{
    Algorithm, CheckError, Clock, Decision, ErrorKind, Key, KeyedLimiter, Limiter, LimiterError,
};

/// The wait after a denial that reported a zero `retry_after`.
pub const MIN_WAIT: Duration = Duration::from_millis(1);

/// Why a wait ended without an admission.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError<E> {
    /// The limiter failed (including a cost it can never admit).
    #[error("limiter failed while waiting")]
    Limiter(#[source] E),
    /// The next chance of an admission falls after the deadline; this is the last denial.
    #[error("deadline would pass before the next chance (retry after {:?})", .0.retry_after())]
    Deadline(Decision),
}

impl<E: LimiterError> LimiterError for WaitError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            WaitError::Limiter(e) => e.kind(),
            // Nothing was charged: only admitted checks charge.
            WaitError::Deadline(_) => ErrorKind::NotCharged,
        }
    }
}

/// How long to sleep after `denial`: its `retry_after`, or [`MIN_WAIT`] if that is zero.
fn wait_for(denial: &Decision) -> Duration {
    match denial.retry_after() {
        Duration::ZERO => MIN_WAIT,
        wait => wait,
    }
}

/// Blocks the thread until `limiter` admits `cost` for `key`, or `deadline` (if any) would be
/// passed. Returns the admitting decision.
///
/// ```
/// use std::time::{Duration, Instant};
/// use traffik::wait::block_until_ready;
/// use traffik::RateLimiter;
///
/// // 100 per second, burst 1: the second check waits about 10 ms.
/// let frames: RateLimiter<u32> = traffik::builder().rate("100/s").burst(1).build()?;
/// let start = Instant::now();
/// block_until_ready(&frames, &7, 1, None)?;
/// block_until_ready(&frames, &7, 1, None)?;
/// assert!(start.elapsed() >= Duration::from_millis(9));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn block_until_ready<K, A, C>(
    limiter: &KeyedLimiter<K, A, C>,
    key: &K,
    cost: u64,
    deadline: Option<Instant>,
) -> Result<Decision, WaitError<CheckError>>
where
    K: Key + ?Sized,
    A: Algorithm,
    C: Clock,
{
    block_loop(
        || limiter.check(key, cost),
        deadline,
        Instant::now,
        std::thread::sleep,
    )
}

/// [`block_until_ready`] for a single-key [`Limiter`].
///
/// ```
/// use traffik::wait::block_until_ready_direct;
///
/// let limiter = traffik::builder().rate("1000/s").build_direct()?;
/// let d = block_until_ready_direct(&limiter, 1, None)?;
/// assert!(d.is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn block_until_ready_direct<A: Algorithm, C: Clock>(
    limiter: &Limiter<A, C>,
    cost: u64,
    deadline: Option<Instant>,
) -> Result<Decision, WaitError<CheckError>> {
    block_loop(
        || limiter.check(cost),
        deadline,
        Instant::now,
        std::thread::sleep,
    )
}

/// The blocking loop, with time and sleep passed in so tests can drive them.
fn block_loop(
    mut check: impl FnMut() -> Result<Decision, CheckError>,
    deadline: Option<Instant>,
    mut now: impl FnMut() -> Instant,
    mut sleep: impl FnMut(Duration),
) -> Result<Decision, WaitError<CheckError>> {
    loop {
        let decision = check().map_err(WaitError::Limiter)?;
        if decision.is_allowed() {
            return Ok(decision);
        }
        let wait = wait_for(&decision);
        if let Some(deadline) = deadline {
            match now().checked_add(wait) {
                Some(wake) if wake <= deadline => {}
                _ => return Err(WaitError::Deadline(decision)),
            }
        }
        sleep(wait);
    }
}

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use self::asynchronous::{until_ready, until_ready_with, WaitOptions};

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::{wait_for, WaitError};
    use std::time::Duration;
    use tokio::time::Instant;
    use traffik_core::{AsyncLimiter, Decision};

    /// Jitter and deadline for [`until_ready_with`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik::wait::WaitOptions;
    ///
    /// let options = WaitOptions::new()
    ///     .jitter(Duration::from_millis(20))
    ///     .deadline(tokio::time::Instant::now() + Duration::from_secs(2));
    /// # let _ = options;
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct WaitOptions {
        jitter: Duration,
        deadline: Option<Instant>,
    }

    impl WaitOptions {
        /// No jitter, no deadline.
        pub const fn new() -> Self {
            WaitOptions {
                jitter: Duration::ZERO,
                deadline: None,
            }
        }

        /// Adds a random delay, uniform in `[0, jitter)`, to each sleep, so that waiters
        /// denied together do not all check again at the same instant. It only ever delays:
        /// no wake-up comes before the denial's `retry_after`.
        pub const fn jitter(mut self, jitter: Duration) -> Self {
            self.jitter = jitter;
            self
        }

        /// Gives up, with [`WaitError::Deadline`], as soon as a denial's `retry_after` would
        /// end after `deadline`. Jitter never causes this: it is cut short at the deadline.
        pub const fn deadline(mut self, deadline: Instant) -> Self {
            self.deadline = Some(deadline);
            self
        }
    }

    /// Waits until `limiter` admits `cost` for `key`; [`until_ready_with`] without jitter or
    /// deadline.
    ///
    /// Cancel-safe: dropping the future charges nothing, as only the check that returns an
    /// admission charges. (A remote limiter's check dropped while in flight is that limiter's
    /// business: it may or may not have reached the store.)
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use traffik::wait::until_ready;
    /// use traffik::RateLimiter;
    ///
    /// let jobs: RateLimiter<str> = traffik::builder().rate("10/s").build()?;
    /// let decision = until_ready(&jobs, "tenant-7", 3).await?;
    /// assert!(decision.is_allowed());
    /// # Ok(()) }
    /// ```
    pub async fn until_ready<K, L>(
        limiter: &L,
        key: &K,
        cost: u64,
    ) -> Result<Decision, WaitError<L::Error>>
    where
        K: ?Sized,
        L: AsyncLimiter<K> + ?Sized,
    {
        until_ready_with(limiter, key, cost, WaitOptions::new()).await
    }

    /// Waits until `limiter` admits `cost` for `key`: checks, and after each denial sleeps its
    /// `retry_after` (plus jitter, if set) and checks again. See the [module docs](super).
    ///
    /// Sleeps use Tokio's timer, which wakes on whole milliseconds, rounding up: a wake-up may
    /// come up to 1 ms after the instant asked for, never before it.
    pub async fn until_ready_with<K, L>(
        limiter: &L,
        key: &K,
        cost: u64,
        options: WaitOptions,
    ) -> Result<Decision, WaitError<L::Error>>
    where
        K: ?Sized,
        L: AsyncLimiter<K> + ?Sized,
    {
        loop {
            let decision = limiter.check(key, cost).await.map_err(WaitError::Limiter)?;
            if decision.is_allowed() {
                return Ok(decision);
            }
            let mut wait = wait_for(&decision);
            if !options.jitter.is_zero() {
                wait = wait.saturating_add(crate::failover::retry::scale(
                    options.jitter,
                    fastrand::u64(..),
                ));
            }
            if let Some(deadline) = options.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if wait_for(&decision) > left {
                    return Err(WaitError::Deadline(decision));
                }
                wait = wait.min(left);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

impl<E: fmt::Debug> WaitError<E> {
    /// The last denial, if the wait ended at the deadline.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            WaitError::Deadline(d) => Some(d),
            WaitError::Limiter(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use traffik_core::{Gcra, ManualClock, Rate};

    const SEC: Duration = Duration::from_secs(1);

    /// Drives `block_loop` on a manual clock: each "sleep" advances the clock and is recorded.
    fn run(
        limiter: &Limiter<Gcra, &ManualClock>,
        clock: &ManualClock,
        cost: u64,
        deadline_after: Option<Duration>,
    ) -> (Result<Decision, WaitError<CheckError>>, Vec<Duration>) {
        let base = Instant::now();
        let at = Cell::new(Duration::ZERO);
        let slept = RefCell::new(Vec::new());
        let result = block_loop(
            || limiter.check(cost),
            deadline_after.map(|d| base + d),
            || base + at.get(),
            |d| {
                slept.borrow_mut().push(d);
                at.set(at.get() + d);
                clock.advance(d);
            },
        );
        (result, slept.into_inner())
    }

    #[test]
    fn blocking_sleeps_exactly_retry_after_then_admits() {
        let clock = ManualClock::new();
        let limiter = Limiter::new(Gcra::new(Rate::per_second(1)).expect("rate"), &clock);
        let (first, slept) = run(&limiter, &clock, 1, None);
        assert!(first.expect("fresh").is_allowed());
        assert!(slept.is_empty());
        clock.advance(Duration::from_millis(250));
        let (second, slept) = run(&limiter, &clock, 1, None);
        assert!(second.expect("after waiting").is_allowed());
        assert_eq!(slept, vec![Duration::from_millis(750)]);
        assert_eq!(clock.now(), 1_000_000_000);
    }

    #[test]
    fn blocking_deadline_stops_before_sleeping_past_it() {
        let clock = ManualClock::new();
        let limiter = Limiter::new(Gcra::new(Rate::per_second(1)).expect("rate"), &clock);
        let _ = limiter.check(1).expect("fresh");
        // 999 ms of patience is 1 ms short of the 1 s wait: give up without sleeping.
        let (r, slept) = run(&limiter, &clock, 1, Some(SEC - Duration::from_millis(1)));
        match r {
            Err(WaitError::Deadline(d)) => assert_eq!(d.retry_after(), SEC),
            other => panic!("expected a deadline error, got {other:?}"),
        }
        assert!(slept.is_empty());
        // Exactly enough patience: it sleeps the full second and is admitted.
        let (r, slept) = run(&limiter, &clock, 1, Some(SEC));
        assert!(r.expect("deadline not passed").is_allowed());
        assert_eq!(slept, vec![SEC]);
    }

    #[test]
    fn blocking_never_waits_for_an_impossible_cost() {
        let clock = ManualClock::new();
        let limiter = Limiter::new(Gcra::new(Rate::per_second(5)).expect("rate"), &clock);
        let (r, slept) = run(&limiter, &clock, 6, None);
        assert!(matches!(
            r,
            Err(WaitError::Limiter(CheckError::InsufficientCapacity {
                max: 5
            }))
        ));
        assert!(slept.is_empty());
    }

    #[test]
    fn zero_retry_after_waits_min_wait() {
        let denial = Decision::deny(1, 0, 0, 0);
        assert_eq!(wait_for(&denial), MIN_WAIT);
        let denial = Decision::deny(1, 0, 7, 7);
        assert_eq!(wait_for(&denial), Duration::from_nanos(7));
    }
}

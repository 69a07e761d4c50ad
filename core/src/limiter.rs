//! A limiter for one key: one [`StateCell`], one [`Algorithm`], one [`Clock`].

use crate::algorithm::{Algorithm, AlgorithmWork, AnyAlgorithm};
use crate::cell::StateCell;
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::live::{Live, LiveError};
use crate::quota::SharedState;
use crate::rate::Rate;

/// A rate limiter for a single key (a whole service, one connection, one upstream).
///
/// Thread-safe and lock-free; share it by reference or in an `Arc`. Each check reads the clock
/// once and runs one CAS loop.
///
/// ```
/// use traffik_core::{Limiter, ManualClock, Rate, TokenBucket};
///
/// let clock = ManualClock::new();
/// let limiter = Limiter::new(TokenBucket::new(Rate::per_minute(60))?, &clock);
/// assert_eq!(limiter.check(10)?.remaining(), 50);
/// assert_eq!(limiter.peek().remaining(), 50);
/// limiter.reset();
/// assert_eq!(limiter.peek().remaining(), 60);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Limiter<A, C> {
    algorithm: A,
    clock: C,
    cell: StateCell,
}

impl<A: Algorithm, C: Clock> Limiter<A, C> {
    /// A fresh limiter.
    pub fn new(algorithm: A, clock: C) -> Self {
        Limiter {
            algorithm,
            clock,
            cell: StateCell::new(),
        }
    }

    /// Checks `cost` now, charging it if admitted. A cost of zero is a [`peek`](Self::peek).
    #[must_use = "a denied check charges nothing: act on the decision"]
    #[inline]
    pub fn check(&self, cost: u64) -> Result<Decision, CheckError> {
        self.algorithm.dispatch(Check {
            cell: &self.cell,
            clock: &self.clock,
            cost,
        })
    }

    /// What is left now, without charging anything.
    #[inline]
    pub fn peek(&self) -> Decision {
        self.cell.peek(&self.algorithm, self.clock.now())
    }

    /// Forgets everything charged.
    pub fn reset(&self) {
        self.cell.reset();
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The state cell (for multi-limit checks).
    pub(crate) fn cell(&self) -> &StateCell {
        &self.cell
    }
}

impl<A: Algorithm + Copy + SharedState, C: Clock> Limiter<Live<A>, C> {
    /// Replaces the algorithm without resetting the state; see [`Live`] for the rule (GCRA:
    /// the TAT is kept) and [`Live::set`] for the errors.
    pub fn set_algorithm(&self, algorithm: A) -> Result<(), LiveError> {
        self.algorithm.set(algorithm)
    }
}

impl<C: Clock> Limiter<Live<AnyAlgorithm>, C> {
    /// Replaces the rate (and burst, `None` meaning the rate's limit), keeping the kind and
    /// the state; see [`Live::set_rate`].
    ///
    /// ```
    /// use traffik_core::{AlgorithmKind, AnyAlgorithm, Limiter, Live, ManualClock, Rate};
    ///
    /// let clock = ManualClock::new();
    /// let gcra = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(1), None)?;
    /// let limiter = Limiter::new(Live::new(gcra), &clock);
    /// assert!(limiter.check(1)?.is_allowed());
    /// limiter.set_rate("10/s".parse()?, None)?;
    /// // The TAT (1 s ahead) is kept: 10/s allows 1 s ahead, so nothing more right now.
    /// assert!(limiter.check(1)?.is_denied());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_rate(&self, rate: Rate, burst: Option<u64>) -> Result<(), LiveError> {
        self.algorithm.set_rate(rate, burst)
    }
}

/// One check, compiled per concrete algorithm (see [`Algorithm::dispatch`]).
struct Check<'a, C> {
    cell: &'a StateCell,
    clock: &'a C,
    cost: u64,
}

impl<C: Clock> AlgorithmWork for Check<'_, C> {
    type Output = Result<Decision, CheckError>;
    #[inline(always)]
    fn run<A: Algorithm>(self, algorithm: &A) -> Self::Output {
        self.cell.apply_now(algorithm, self.clock, self.cost)
    }
}

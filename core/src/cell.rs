//! One key's state in one atomic word, and the CAS loop that applies an algorithm to it.

use crate::algorithm::{Algorithm, MAX_NOW};
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::sync::{AtomicU64, Ordering};

/// One key's packed limiter state.
///
/// [`apply`](Self::apply) is the whole concurrency story: load, decide, `compare_exchange_weak`,
/// and on a lost race decide again from the value that won. A denial writes nothing, so a key
/// that is being refused costs readers no cache-line ping-pong.
///
/// ```
/// use traffik_core::{Gcra, Rate, StateCell};
///
/// let gcra = Gcra::new(Rate::per_second(1))?;
/// let cell = StateCell::new();
/// assert!(cell.apply(&gcra, 0, 1)?.is_allowed());
/// assert!(cell.apply(&gcra, 0, 1)?.is_denied());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct StateCell {
    pub(crate) state: AtomicU64,
}

impl StateCell {
    /// A fresh cell.
    pub fn new() -> Self {
        StateCell {
            state: AtomicU64::new(0),
        }
    }

    /// Checks `cost` at `now`, charging it if admitted. Readings past
    /// [`MAX_NOW`] count as `MAX_NOW`, the latest the algorithms are specified
    /// for.
    ///
    /// `now` is read once by the caller and reused if the CAS has to retry. A reading that has
    /// aged meanwhile (or was behind another thread's to begin with) is handled by the
    /// algorithms themselves: a reading older than the stored state only makes the decision
    /// stricter.
    #[must_use = "a denied check charges nothing: act on the decision"]
    #[inline]
    pub fn apply<A: Algorithm + ?Sized>(
        &self,
        algorithm: &A,
        now: u64,
        cost: u64,
    ) -> Result<Decision, CheckError> {
        // Relaxed everywhere: the word is self-contained (it publishes no other memory), and the
        // modification order of a single atomic is total, so the CAS alone rules out lost updates.
        let current = self.state.load(Ordering::Relaxed);
        self.run(algorithm, current, now.min(MAX_NOW), cost)
    }

    /// The CAS loop, from a state already loaded.
    // Always inlined, down from `Limiter::check`: the whole check then sits in the caller's
    // loop with no call, and its `Decision` comes back in registers rather than through memory
    // (token bucket 1.30x -> 1.07x governor's GCRA; see BENCHMARKS.md, "Single key").
    #[inline(always)]
    fn run<A: Algorithm + ?Sized>(
        &self,
        algorithm: &A,
        mut current: u64,
        now: u64,
        cost: u64,
    ) -> Result<Decision, CheckError> {
        loop {
            let transition = algorithm.decide(current, now, cost)?;
            let Some(next) = transition.next else {
                return Ok(transition.decision);
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(transition.decision),
                Err(actual) => current = actual,
            }
        }
    }

    /// Like [`apply`](Self::apply), reading `now` from `clock` after loading the state, so the
    /// clock's latency overlaps the load instead of preceding it. One clock read per call.
    #[must_use = "a denied check charges nothing: act on the decision"]
    #[inline(always)]
    pub fn apply_now<A: Algorithm + ?Sized, C: Clock + ?Sized>(
        &self,
        algorithm: &A,
        clock: &C,
        cost: u64,
    ) -> Result<Decision, CheckError> {
        // Relaxed: see `apply`.
        let current = self.state.load(Ordering::Relaxed);
        self.run(algorithm, current, clock.now().min(MAX_NOW), cost)
    }

    /// What a zero-cost check would say; never writes.
    #[inline]
    pub fn peek<A: Algorithm + ?Sized>(&self, algorithm: &A, now: u64) -> Decision {
        // Relaxed: a snapshot of one self-contained word.
        let state = self.state.load(Ordering::Relaxed);
        match algorithm.decide(state, now.min(MAX_NOW), 0) {
            Ok(t) => t.decision,
            // Unreachable for a zero cost, but a peek must never fail: report "nothing left".
            Err(_) => Decision::deny(algorithm.capacity(), 0, 0, 0),
        }
    }

    /// Forgets everything charged: the key is fresh again.
    #[inline]
    pub fn reset(&self) {
        // Relaxed: storing the fresh state publishes nothing else.
        self.state.store(0, Ordering::Relaxed);
    }

    /// The raw packed state (for tests and diagnostics).
    #[inline]
    pub fn load(&self) -> u64 {
        // Relaxed: a snapshot of one self-contained word.
        self.state.load(Ordering::Relaxed)
    }
}

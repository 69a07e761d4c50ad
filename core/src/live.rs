//! Changing a limiter's algorithm while it runs: [`Live`].
//!
//! [`Live<A>`] holds the algorithm a [`Limiter`](crate::Limiter) or a
//! `KeyedLimiter` (feature `alloc`) checks with, and lets it be replaced at any time
//! without touching any key's state. Checkers never wait: each check copies the current
//! algorithm out of one of two slots and runs with the copy.
//!
//! # How existing state is read under the new algorithm
//!
//! Nothing is reset: the next check of every key reads the state its last charge wrote, under
//! the new algorithm. So the new algorithm must read states the same way as the old one, which
//! is the rule of the [`quota`](crate::quota) module ([`SharedState`]):
//!
//! * GCRA and the leaky bucket, at any rate and burst: the state is the key's theoretical
//!   arrival time (TAT). It is kept; under the new rate a key is admitted once the new TAT
//!   (`max(TAT, now) + cost * T_new`) is within `burst_new * T_new` of now. A key that had
//!   spent its burst stays empty until its TAT comes within the new tolerance: the change
//!   neither hands out a fresh burst nor takes back what was already waited for.
//! * Any other kind: only an identical configuration. A change that would misread states is
//!   refused with [`LiveError::Incompatible`] (reset the keys and build a new limiter instead).
//! * Unlimited writes nothing, so the states it leaves are those of the last limited algorithm;
//!   a change is checked against that one.
//!
//! # Concurrency
//!
//! Two slots, each with a count of readers, and a generation whose low bit names the current
//! slot. A checker loads the generation, counts itself into that slot, checks the generation
//! has not moved (otherwise it steps out and tries again), copies the algorithm and steps out:
//! two loads and two read-modify-writes of a counter shared by all checking threads (under
//! heavy contention, a cache-line transfer per check), and no waiting: it retries only when a
//! change lands in between. A writer, one at a time, waits until no reader is in the other
//! slot, writes the new algorithm there and advances the generation. A change is visible to
//! every check that loads the generation after it; a check that started before it may finish
//! with the old algorithm. A writer waits for checks copying out of the slot it is about to
//! overwrite, so changes are blocking (checks are not).

use crate::algorithm::{
    Algorithm, AlgorithmKind, AlgorithmWork, AnyAlgorithm, ConfigError, Transition,
};
use crate::decision::CheckError;
use crate::quota::SharedState;
use crate::rate::Rate;
use crate::sync::{spin_hint, AtomicBool, AtomicUsize, Ordering, UnsafeCell};
use core::fmt;

/// Why a live change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveError {
    /// The new algorithm reads keys' states differently from the current one (see the
    /// [module docs](self)); the change would misjudge every key. Nothing was changed.
    Incompatible,
    /// The new algorithm could not be built from the rate and burst given.
    Config(ConfigError),
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveError::Incompatible => f.write_str(
                "the new algorithm reads keys' state differently from the current one; only \
                 GCRA and leaky-bucket rates and bursts may change live",
            ),
            LiveError::Config(e) => write!(f, "invalid new algorithm: {e}"),
        }
    }
}

impl core::error::Error for LiveError {}

impl From<ConfigError> for LiveError {
    fn from(e: ConfigError) -> Self {
        LiveError::Config(e)
    }
}

struct Slot<A> {
    readers: AtomicUsize,
    value: UnsafeCell<A>,
}

/// An algorithm that can be replaced while checks run, without resetting any state.
///
/// Build a limiter over `Live::new(algorithm)` and call `set_algorithm` (or, for
/// [`AnyAlgorithm`], `set_rate`) on the limiter or on this value.
///
/// ```
/// use traffik_core::{Gcra, Limiter, Live, ManualClock, Rate};
///
/// let clock = ManualClock::new();
/// let limiter = Limiter::new(Live::new(Gcra::new(Rate::per_second(2))?), &clock);
/// assert!(limiter.check(2)?.is_allowed());
/// assert!(limiter.check(1)?.is_denied());
/// limiter.set_algorithm(Gcra::new(Rate::per_second(4))?)?; // the TAT is kept
/// assert!(limiter.check(1)?.is_denied()); // still 1 s of TAT ahead, and 4 x 250 ms allowed
/// assert_eq!(limiter.algorithm().generation(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Live<A> {
    slots: [Slot<A>; 2],
    /// Number of changes so far; its low bit is the current slot.
    generation: AtomicUsize,
    /// Held by the one writer at a time.
    writing: AtomicBool,
    /// The last installed algorithm that writes state: what a change is checked against.
    /// Only touched by the writer holding `writing`.
    anchor: UnsafeCell<A>,
}

// SAFETY: the slots' values are written only by the writer holding `writing`, and only into the
// slot no reader is counted in (see `store`); readers only copy values out (so `A: Sync` for
// the shared reads and `A: Send` for the values moved in by writers). `anchor` is touched only
// under `writing`.
unsafe impl<A: Copy + Send + Sync> Sync for Live<A> {}

impl<A: fmt::Debug + Copy> fmt::Debug for Live<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("current", &self.load())
            .field("generation", &self.generation())
            .finish()
    }
}

impl<A: Copy> Live<A> {
    /// Starts with `algorithm`, at generation 0.
    pub fn new(algorithm: A) -> Self {
        let slot = |a| Slot {
            readers: AtomicUsize::new(0),
            value: UnsafeCell::new(a),
        };
        Live {
            slots: [slot(algorithm), slot(algorithm)],
            generation: AtomicUsize::new(0),
            writing: AtomicBool::new(false),
            anchor: UnsafeCell::new(algorithm),
        }
    }

    /// A copy of the current algorithm.
    #[inline]
    pub fn load(&self) -> A {
        loop {
            // Acquire: the writer that set this generation wrote its slot before (Release).
            let generation = self.generation.load(Ordering::Acquire);
            let slot = &self.slots[generation & 1];
            // Acquire: if a writer's read-modify-write of this count came first, this reads
            // from its release sequence, so every generation change before that writer's is
            // visible to the re-read below.
            slot.readers.fetch_add(1, Ordering::Acquire);
            // Acquire: as the first load; coherence then makes a stale first reading show here
            // as a newer generation.
            let current = self.generation.load(Ordering::Acquire) == generation;
            // SAFETY: counted in and the generation unchanged, so no writer writes this slot
            // until our decrement (see `store`).
            let value = current.then(|| slot.value.with(|p| unsafe { *p }));
            // Release: our copy happens-before the writer that reads the count back to zero.
            slot.readers.fetch_sub(1, Ordering::Release);
            if let Some(value) = value {
                return value;
            }
            spin_hint();
        }
    }

    /// How many changes have been made.
    pub fn generation(&self) -> usize {
        // Relaxed: a counter for diagnostics; `load` does its own synchronisation.
        self.generation.load(Ordering::Relaxed)
    }

    /// Installs `algorithm` unconditionally. Waits for any other change in progress and for
    /// checks still copying out of the slot being overwritten (a few nanoseconds each).
    fn store(&self, algorithm: A) {
        // Relaxed: only writers change it, and we hold `writing`, whose Acquire ordered the
        // previous writer's store before us.
        let generation = self.generation.load(Ordering::Relaxed);
        let next = generation.wrapping_add(1);
        let slot = &self.slots[next & 1];
        // A read-modify-write, not a load, so it reads the count's latest value: either a
        // reader's increment comes before it (we wait for that reader's decrement), or after
        // it, and then that reader's Acquire increment reads from our Release here and its
        // re-read of the generation sees at least the current one, not the stale one that sent
        // it to this slot, so it steps out without reading. AcqRel: Acquire to order the
        // readers' copies (their Release decrements) before our write, Release for the above.
        while slot.readers.fetch_add(0, Ordering::AcqRel) != 0 {
            spin_hint();
        }
        // SAFETY: we hold `writing` (no other writer), the slot is not the current one, and
        // by the above no reader copies from it until the generation below names it.
        slot.value.with_mut(|p| unsafe { *p = algorithm });
        // Release: publishes the write to readers that Acquire this generation.
        self.generation.store(next, Ordering::Release);
    }

    fn lock(&self) -> WriteGuard<'_, A> {
        // Acquire: the previous writer's changes (generation, anchor) happen-before ours.
        while self
            .writing
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spin_hint();
        }
        WriteGuard(self)
    }
}

struct WriteGuard<'a, A>(&'a Live<A>);

impl<A> Drop for WriteGuard<'_, A> {
    fn drop(&mut self) {
        // Release: hands our changes to the next writer.
        self.0.writing.store(false, Ordering::Release);
    }
}

impl<A: Copy + SharedState> Live<A> {
    /// The last installed algorithm that writes state (the one keys' states were written by).
    pub fn anchor(&self) -> A {
        let _guard = self.lock();
        // SAFETY: `anchor` is only accessed under `writing`, which we hold.
        self.anchor.with(|p| unsafe { *p })
    }

    /// Replaces the algorithm, keeping every key's state, if the new one reads states the way
    /// the current one does (see the [module docs](self)); otherwise changes nothing and
    /// returns [`LiveError::Incompatible`].
    pub fn set(&self, algorithm: A) -> Result<(), LiveError> {
        self.set_with(|_| Ok(algorithm))
    }

    /// Builds the new algorithm from the anchor (the last one that writes state) and installs
    /// it, all under the writer's flag.
    fn set_with(&self, make: impl FnOnce(&A) -> Result<A, LiveError>) -> Result<(), LiveError> {
        let _guard = self.lock();
        // SAFETY: `anchor` is only accessed under `writing`, which we hold.
        let anchor = self.anchor.with(|p| unsafe { *p });
        let algorithm = make(&anchor)?;
        if !anchor.shares_state_with(&algorithm) {
            return Err(LiveError::Incompatible);
        }
        if algorithm.writes_state() {
            // SAFETY: as above.
            self.anchor.with_mut(|p| unsafe { *p = algorithm });
        }
        self.store(algorithm);
        Ok(())
    }
}

impl Live<AnyAlgorithm> {
    /// Replaces the rate (and burst: `None` means the new rate's limit) keeping the current
    /// kind; see [`set`](Self::set) for the rule. While the current algorithm is unlimited, the
    /// kind is that of the last limited one (GCRA if there never was one).
    pub fn set_rate(&self, rate: Rate, burst: Option<u64>) -> Result<(), LiveError> {
        self.set_with(|anchor| {
            let kind = anchor.kind().unwrap_or(AlgorithmKind::Gcra);
            Ok(AnyAlgorithm::new(kind, rate, burst)?)
        })
    }
}

impl<A: Algorithm + Copy> Algorithm for Live<A> {
    #[inline]
    fn capacity(&self) -> u64 {
        self.load().capacity()
    }
    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        self.load().decide(state, now, cost)
    }
    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        self.load().reset_after(state, now)
    }
    /// One copy of the current algorithm for the whole check, then its own dispatch (always
    /// inlined, as the default is: the check then sits whole in the caller).
    #[inline(always)]
    fn dispatch<W: AlgorithmWork>(&self, work: W) -> W::Output {
        self.load().dispatch(work)
    }
}

/// Two live algorithms share state when the algorithms that wrote their states (their
/// anchors) do. Each is read under its own writer flag, so a change racing this comparison may
/// make it stale: [`Tiers::set_tier`](crate::Tiers::set_tier) is the way to change a live tier.
impl<A: Copy + SharedState> SharedState for Live<A> {
    fn shares_state_with(&self, other: &Self) -> bool {
        self.anchor().shares_state_with(&other.anchor())
    }
    fn writes_state(&self) -> bool {
        self.anchor().writes_state()
    }
}

//! The keyed limiter: a sharded, open-addressing table of 16-byte atomic slots.
//!
//! Each slot is one 128-bit atomic word: the key's 64-bit encoding (see [`Key`]) in the high
//! half, and in the low half an "occupied" flag (bit 63) over the algorithm's packed state
//! (bits 0..63). Keeping key and state in one word is what makes the table safe without locks
//! on the hot path: a state update is a CAS that also re-asserts the key, so it can never land
//! on a slot that was meanwhile handed to another key.
//!
//! * **Existing key** (the hot path): hash, probe the key's window of at most [`WINDOW`] slots
//!   (and a second window only if the first is full), CAS the state. No lock of any kind.
//! * **New key, lock-free**: claim the first empty slot of the key's first window with one CAS;
//!   if that window is full, the first empty slot of a second, independently hashed window in
//!   the same shard. Slots never go from occupied back to empty (only [`clear`] empties them),
//!   so every thread placing the same key races for the same first empty slot, and the CAS
//!   lets exactly one win; the others find the key there on their next scan.
//! * **New key, both windows full**: under the shard's reuse lock, a slot whose state is
//!   already equivalent to fresh (reclaimed lazily: no background thread), or whatever the
//!   [`OverflowPolicy`] says. Reuse takes a slot from another key, and which slot is reusable
//!   depends on each thread's clock reading, so two threads could pick different slots for the
//!   same key: the lock serialises reuse per shard. Its holder scans two windows and does one
//!   CAS; waiters spin with exponential backoff.
//!
//! So checks of existing keys and placements of new keys in a table with room never wait for
//! another thread; only reuse of slots in a full neighbourhood does (a thread preempted while
//! holding a shard's lock delays other reuses in that shard until it runs again).
//!
//! [`clear`]: KeyedLimiter::clear
//!
//! Memory is fixed at construction: `ceil(capacity * 3 / 2)` slots of 16 bytes (24 bytes per
//! key of capacity), spread over the shards and rounded up to whole groups of four slots per
//! shard, each shard's header on its own cache line. Filled
//! to exactly `capacity` distinct live keys, a handful per million find both windows full
//! (measured at one million keys; see BENCHMARKS.md).

mod batch;
mod config;
mod multi;
mod place;
mod quota;
mod shard;
mod slot;

pub use config::{OverflowPolicy, TableConfig, TableError, TableStats};
pub use multi::{MultiKeyed, TableLeg};
pub use quota::QuotaLimiter;

use crate::algorithm::{Algorithm, AlgorithmWork, AnyAlgorithm, MAX_NOW};
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::key::{Key, KeyHasher};
use crate::live::{Live, LiveError};
use crate::quota::SharedState;
use crate::rate::Rate;
use crate::sync::{AtomicU128, Ordering, Wide};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use crossbeam_utils::CachePadded;
use shard::{Shard, ShardRef};
use slot::{key_of, occupied, pack, scale, scramble, state_of, Reclaim};

/// Slots probed for one key at most: eight or nine cache lines; a hit usually needs one.
#[cfg(not(loom))]
pub const WINDOW: usize = 32;
/// Under loom, small windows keep the model's state space tractable.
#[cfg(loom)]
pub const WINDOW: usize = GROUP;

/// Slots per group: a 64-byte cache line's worth of 16-byte slots, the unit a shard's slots
/// are rounded up to and a second window starts on. A first window starts at any slot: with
/// group-aligned starts the keys sharing a start pile up behind one another inside the line,
/// so fewer sit at their window's first slot and the probe's data-dependent exit is taken
/// later more often (measured: group-aligned checks 5-14% slower with 7-50% of slots
/// filled, and the same number of overflows when filled to capacity; see BENCHMARKS.md).
const GROUP: usize = 4;

/// A rate limiter over many keys: one packed state per key in a fixed-size table whose checks
/// and new-key placements take no lock (only reusing a slot does; see the [module docs](self)).
///
/// Generic over the key type `K` (see [`Key`]), the [`Algorithm`] and the [`Clock`]. The
/// `traffik` crate wraps this in a builder with a real clock and random seeds.
///
/// ```
/// use traffik_core::{Gcra, KeyedLimiter, ManualClock, Rate, TableConfig};
///
/// let clock = ManualClock::new();
/// let limiter: KeyedLimiter<u64, _, _> = KeyedLimiter::new(
///     Gcra::new(Rate::per_second(2))?,
///     &clock,
///     TableConfig::new(1_000, [1, 2, 3, 4]),
/// )?;
/// assert!(limiter.check(&7, 2)?.is_allowed());
/// assert!(limiter.check(&7, 1)?.is_denied());
/// assert!(limiter.check(&8, 1)?.is_allowed()); // another key, its own budget
/// assert_eq!(limiter.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KeyedLimiter<K: ?Sized, A, C> {
    algorithm: A,
    clock: C,
    shards: Box<[CachePadded<Shard>]>,
    /// Every shard's slots in one flat array (a slot's address is one multiply-add from its
    /// index), shard `i` at slots `i * slots_per_shard ..`.
    slots: Box<[AtomicU128]>,
    /// `64 - log2(shards)`: the hash's top bits pick the shard.
    shard_shift: u32,
    groups_per_shard: usize,
    slots_per_shard: usize,
    hasher: KeyHasher,
    seed: u64,
    multiplier: u64,
    wide: Wide,
    overflow: OverflowPolicy,
    capacity: usize,
    _key: PhantomData<fn(&K)>,
}

impl<K: ?Sized, A: fmt::Debug, C> fmt::Debug for KeyedLimiter<K, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("algorithm", &self.algorithm)
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

/// A key's probe windows: the first as a start slot within its shard; the second, needed
/// only when the first is full, derived from the placement hash on demand.
#[derive(Clone, Copy)]
struct Windows {
    first: usize,
    hash: u64,
    groups: usize,
}

impl Windows {
    /// The second window's start slot: an odd multiple of the hash, rotated, places it
    /// independently of the first.
    #[inline]
    fn second(&self) -> usize {
        let other = self
            .hash
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
        scale(other, self.groups) * GROUP
    }
}

/// Where one window scan ended.
enum Scan {
    Hit(usize, u128),
    Empty,
    Full,
}

/// Where the slow path of a check takes over from the fast one.
enum Resume {
    /// The scan of the first window did not find the key.
    First(Scan),
    /// The CAS on slot `i` with the clock at `now` failed, finding `actual` there.
    Lost { now: u64, i: usize, actual: u128 },
}

/// Where a lookup ended.
enum Found {
    /// The key's slot and its value when read.
    Hit(usize, u128),
    /// Not in the table.
    Miss,
}

impl<K: Key + ?Sized, A: Algorithm, C: Clock> KeyedLimiter<K, A, C> {
    /// A table for `config.capacity` keys.
    pub fn new(algorithm: A, clock: C, config: TableConfig) -> Result<Self, TableError> {
        Self::build(algorithm, clock, config)
    }

    /// Checks `cost` for `key` now, charging it if admitted. A cost of zero is a peek.
    #[must_use = "a denied check charges nothing: act on the decision"]
    #[inline]
    pub fn check(&self, key: &K, cost: u64) -> Result<Decision, CheckError> {
        self.check_at(key.encode(&self.hasher), cost)
    }

    /// The check, compiled per concrete algorithm (see [`Algorithm::dispatch`]).
    #[inline]
    fn check_at(&self, code: u64, cost: u64) -> Result<Decision, CheckError> {
        self.algorithm.dispatch(Check {
            table: self,
            code,
            cost,
        })
    }

    /// What is left for `key` now, without charging; an unknown key reads as fresh and is not
    /// added.
    pub fn peek(&self, key: &K) -> Decision {
        match self.check_at(key.encode(&self.hasher), 0) {
            Ok(decision) => decision,
            // A zero cost is never refused; report "nothing left" rather than fail a peek.
            Err(_) => Decision::deny(self.algorithm.capacity(), 0, 0, 0),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }
}

impl<K: Key + ?Sized, A: Algorithm + Copy + SharedState, C: Clock> KeyedLimiter<K, Live<A>, C> {
    /// Replaces the algorithm for every key without resetting any key's state; see [`Live`]
    /// for the rule (GCRA: each key's TAT is kept) and [`Live::set`] for the errors.
    pub fn set_algorithm(&self, algorithm: A) -> Result<(), LiveError> {
        self.algorithm.set(algorithm)
    }
}

impl<K: Key + ?Sized, C: Clock> KeyedLimiter<K, Live<AnyAlgorithm>, C> {
    /// Replaces the rate (and burst, `None` meaning the rate's limit) for every key, keeping
    /// the kind and every key's state; see [`Live::set_rate`].
    ///
    /// ```
    /// use traffik_core::{AlgorithmKind, AnyAlgorithm, KeyedLimiter, Live, ManualClock, Rate, TableConfig};
    ///
    /// let clock = ManualClock::new();
    /// let gcra = AnyAlgorithm::new(AlgorithmKind::Gcra, Rate::per_second(2), None)?;
    /// let limiter: KeyedLimiter<u64, _, _> =
    ///     KeyedLimiter::new(Live::new(gcra), &clock, TableConfig::new(100, [1, 2, 3, 4]))?;
    /// assert!(limiter.check(&1, 2)?.is_allowed());
    /// limiter.set_rate(Rate::per_second(4), None)?;
    /// assert!(limiter.check(&1, 1)?.is_denied()); // key 1 keeps its TAT, 1 s ahead
    /// assert!(limiter.check(&2, 4)?.is_allowed()); // a fresh key gets the new burst
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_rate(&self, rate: Rate, burst: Option<u64>) -> Result<(), LiveError> {
        self.algorithm.set_rate(rate, burst)
    }
}

impl<K: Key + ?Sized, A: Reclaim, C: Clock> KeyedLimiter<K, A, C> {
    /// Builds the table around `algorithm` (which [`QuotaLimiter`] also uses).
    pub(crate) fn build(algorithm: A, clock: C, config: TableConfig) -> Result<Self, TableError> {
        if config.capacity == 0 {
            return Err(TableError::ZeroCapacity);
        }
        if config.shards == 0 || config.shards > 1 << 16 {
            return Err(TableError::BadShardCount);
        }
        let shards = config.shards.next_power_of_two();
        let total = config
            .capacity
            .checked_mul(3)
            .map(|x| x.div_ceil(2))
            .ok_or(TableError::TooLarge)?;
        // Whole groups per shard, and at least one window's worth.
        let groups_per_shard = total.div_ceil(shards).max(WINDOW).div_ceil(GROUP);
        groups_per_shard
            .checked_mul(shards)
            .and_then(|n| n.checked_mul(GROUP * core::mem::size_of::<AtomicU128>()))
            .filter(|bytes| *bytes <= isize::MAX as usize)
            .ok_or(TableError::TooLarge)?;
        let hasher = KeyHasher::with_seeds(config.seeds);
        Ok(KeyedLimiter {
            algorithm,
            clock,
            shards: (0..shards)
                .map(|_| CachePadded::new(Shard::new()))
                .collect::<Vec<_>>()
                .into(),
            slots: (0..groups_per_shard * GROUP * shards)
                .map(|_| AtomicU128::new(0))
                .collect::<Vec<_>>()
                .into(),
            shard_shift: 64 - shards.trailing_zeros(),
            groups_per_shard,
            slots_per_shard: groups_per_shard * GROUP,
            seed: hasher.fingerprint(&0x0074_7261_6666_696b_u64),
            // Odd, so the multiply loses no input bits.
            multiplier: hasher.fingerprint(&0x6b69_6666_6172_7400_u64) | 1,
            wide: Wide::detect(),
            hasher,
            overflow: config.overflow,
            capacity: config.capacity,
            _key: PhantomData,
        })
    }

    /// Forgets what `key` has been charged. The key keeps its slot (now reclaimable).
    pub fn reset(&self, key: &K) {
        let code = key.encode(&self.hasher);
        let (shard, windows) = self.locate(code);
        while let Found::Hit(i, slot) = self.find(shard, windows, code) {
            // The CAS re-asserts the key: a slot meanwhile given to another key is left alone.
            if shard.swap(i, slot, pack(code, 0)).is_ok() {
                return;
            }
        }
    }

    /// Keys currently holding a slot.
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; exact only when the table is quiescent.
        self.shards
            .iter()
            .map(|s| s.occupied.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether no key holds a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity the table was built for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every key. Checks racing with `clear` may keep what they charge (a key placed
    /// in a slot `clear` has already passed stays).
    pub fn clear(&self) {
        let n = self.slots_per_shard;
        for (i, shard) in self.shards.iter().enumerate() {
            // Excludes reuse; lock-free placements and updates race with the sweep and either
            // land before a slot is emptied (and are forgotten) or after (and are kept).
            let _guard = shard.lock();
            let slots = ShardRef {
                head: shard,
                slots: &self.slots[i * n..(i + 1) * n],
                wide: self.wide,
            };
            let mut emptied = 0;
            for j in 0..n {
                let mut slot = slots.load(j);
                while occupied(slot) {
                    match slots.swap(j, slot, 0) {
                        Ok(_) => {
                            emptied += 1;
                            break;
                        }
                        Err(actual) => slot = actual,
                    }
                }
            }
            // Relaxed: a statistic; counting what was emptied keeps placements that raced
            // with the sweep counted.
            shard.occupied.fetch_sub(emptied, Ordering::Relaxed);
        }
    }

    /// Occupancy and overflow counters.
    pub fn stats(&self) -> TableStats {
        let mut stats = TableStats {
            slots: self.slots_per_shard * self.shards.len(),
            ..TableStats::default()
        };
        for s in self.shards.iter() {
            // Relaxed: statistics.
            stats.occupied += s.occupied.load(Ordering::Relaxed);
            stats.overflows += s.overflows.load(Ordering::Relaxed);
            stats.evictions += s.evictions.load(Ordering::Relaxed);
            stats.reclaims += s.reclaims.load(Ordering::Relaxed);
        }
        stats
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Bytes of slot memory (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<AtomicU128>()
    }

    #[inline]
    fn now(&self) -> u64 {
        self.clock.now().min(MAX_NOW)
    }

    #[inline]
    fn locate(&self, code: u64) -> (ShardRef<'_>, Windows) {
        let h = scramble(code, self.seed, self.multiplier);
        // Top bits pick the shard; the rest, scaled, the slot that starts the first window.
        let shard = h.checked_shr(self.shard_shift).unwrap_or(0) as usize;
        let rest = h << (64 - self.shard_shift);
        let n = self.slots_per_shard;
        let shard = ShardRef {
            head: &self.shards[shard],
            slots: &self.slots[shard * n..(shard + 1) * n],
            wide: self.wide,
        };
        let windows = Windows {
            first: scale(rest, n),
            hash: h,
            groups: self.groups_per_shard,
        };
        (shard, windows)
    }

    /// Scans `len` slots from `start` for `code`.
    #[inline]
    fn scan(&self, shard: ShardRef<'_>, start: usize, len: usize, code: u64) -> Scan {
        let n = self.slots_per_shard;
        let mut i = start;
        for _ in 0..len {
            // A stale "empty" only sends us to the locked insert path, which looks again.
            let slot = shard.load(i);
            if !occupied(slot) {
                return Scan::Empty;
            }
            if key_of(slot) == code {
                return Scan::Hit(i, slot);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        Scan::Full
    }

    /// Looks for `code`. Keys are never moved and slots never emptied (except by `clear`), and
    /// a key goes to its second window only when its first has no empty slot; so a key sits
    /// before the first empty slot of its first window, or, if that window is full, in its
    /// second window before the first empty slot there.
    #[inline(always)]
    fn find(&self, shard: ShardRef<'_>, windows: Windows, code: u64) -> Found {
        let scan = self.scan(shard, windows.first, WINDOW, code);
        self.found(shard, windows, code, scan)
    }

    /// Where a lookup ends, given how the scan of the first window ended.
    #[inline(always)]
    fn found(&self, shard: ShardRef<'_>, windows: Windows, code: u64, scan: Scan) -> Found {
        match scan {
            Scan::Hit(i, slot) => Found::Hit(i, slot),
            Scan::Empty => Found::Miss,
            Scan::Full => self.find_beyond(shard, windows, code),
        }
    }

    /// The second window, for keys whose first window was full when they arrived: rare at
    /// the designed load, so out of line to keep the hot path small.
    #[cold]
    #[inline(never)]
    fn find_beyond(&self, shard: ShardRef<'_>, windows: Windows, code: u64) -> Found {
        match self.scan(shard, windows.second(), WINDOW, code) {
            Scan::Hit(i, slot) => Found::Hit(i, slot),
            Scan::Empty | Scan::Full => Found::Miss,
        }
    }

    /// Checks `key` with `algorithm` in place of the table's own, which must read states the
    /// same way (a priority level of the table's [`PriorityBudget`](crate::PriorityBudget)).
    #[inline]
    pub(crate) fn check_key_with<G: Algorithm>(
        &self,
        key: &K,
        algorithm: &G,
        cost: u64,
    ) -> Result<Decision, CheckError> {
        self.check_with(algorithm, key.encode(&self.hasher), cost)
    }

    /// The check with the concrete algorithm: find the key's slot, read the clock, CAS.
    ///
    /// Only the common case is here, straight-line: the key in its first window and the CAS
    /// landing first time. Anything else (a new key, a key in its second window, a CAS lost to
    /// another thread) goes to [`check_slow`](Self::check_slow), out of line, so this path
    /// keeps its values in registers and its stack frame small.
    #[inline]
    pub(crate) fn check_with<G: Algorithm>(
        &self,
        algorithm: &G,
        code: u64,
        cost: u64,
    ) -> Result<Decision, CheckError> {
        let (shard, windows) = self.locate(code);
        let (i, slot) = match self.scan(shard, windows.first, WINDOW, code) {
            Scan::Hit(i, slot) => (i, slot),
            scan => {
                return self.check_slow(algorithm, shard, windows, code, cost, Resume::First(scan))
            }
        };
        // The clock is read once, after the slot: its latency then overlaps the slot's load
        // rather than delaying it.
        let now = self.now();
        let t = algorithm.decide(state_of(slot), now, cost)?;
        let Some(next) = t.next else {
            return Ok(t.decision);
        };
        // Key and state are one word, so the CAS also re-asserts the key.
        match shard.swap(i, slot, pack(code, next)) {
            Ok(_) => Ok(t.decision),
            Err(actual) => {
                let lost = Resume::Lost { now, i, actual };
                self.check_slow(algorithm, shard, windows, code, cost, lost)
            }
        }
    }

    /// The rest of a check: a key not in its first window, or a CAS lost to another thread.
    /// Decides exactly as one loop over both would.
    #[cold]
    #[inline(never)]
    fn check_slow<G: Algorithm>(
        &self,
        algorithm: &G,
        shard: ShardRef<'_>,
        windows: Windows,
        code: u64,
        cost: u64,
        resume: Resume,
    ) -> Result<Decision, CheckError> {
        let (now, mut found) = match resume {
            Resume::First(scan) => {
                let found = self.found(shard, windows, code, scan);
                (self.now(), found)
            }
            Resume::Lost { now, i, actual } if occupied(actual) && key_of(actual) == code => {
                (now, Found::Hit(i, actual))
            }
            // The slot was reclaimed or cleared: look the key up again.
            Resume::Lost { now, .. } => (now, self.find(shard, windows, code)),
        };
        // A retry reuses the first clock reading, which can only be staler than a
        // competitor's, so only stricter.
        loop {
            match found {
                Found::Hit(i, mut slot) => loop {
                    let t = algorithm.decide(state_of(slot), now, cost)?;
                    let Some(next) = t.next else {
                        return Ok(t.decision);
                    };
                    match shard.swap(i, slot, pack(code, next)) {
                        Ok(_) => return Ok(t.decision),
                        Err(actual) if occupied(actual) && key_of(actual) == code => slot = actual,
                        Err(_) => break,
                    }
                },
                Found::Miss => {
                    if cost == 0 {
                        // A peek at an unknown key: fresh, and nothing to store.
                        return algorithm.decide(0, now, 0).map(|t| t.decision);
                    }
                    if let Some(decision) =
                        self.insert(algorithm, shard, windows, code, now, cost)?
                    {
                        return Ok(decision);
                    }
                }
            }
            found = self.find(shard, windows, code);
        }
    }
}

/// One check, compiled per concrete algorithm (see [`Algorithm::dispatch`]).
struct Check<'a, K: ?Sized, A, C> {
    pub(super) table: &'a KeyedLimiter<K, A, C>,
    pub(super) code: u64,
    pub(super) cost: u64,
}

impl<K: Key + ?Sized, A: Reclaim, C: Clock> AlgorithmWork for Check<'_, K, A, C> {
    type Output = Result<Decision, CheckError>;
    #[inline]
    fn run<G: Algorithm>(self, algorithm: &G) -> Self::Output {
        self.table.check_with(algorithm, self.code, self.cost)
    }
}

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
//! * **New key**: under the shard's insert lock (a spin lock held for one short scan and one
//!   CAS), take the first empty slot of the key's first window; if that window is full, the
//!   first empty slot of a second, independently hashed window in the same shard; if both are
//!   full, a slot whose state is already equivalent to fresh (reclaimed lazily: no background
//!   thread). Serialising inserts per shard is what stops two threads from placing the same new
//!   key in two slots (each could see a different slot as usable, since freshness depends on
//!   each thread's clock reading); checks of existing keys never touch the lock.
//! * **No usable slot** in either window: the [`OverflowPolicy`] decides.
//!
//! Memory is fixed at construction: `ceil(capacity * 3 / 2)` slots of 16 bytes (24 bytes per
//! key of capacity), spread over the shards, each shard's header on its own cache line. Filled
//! to exactly `capacity` distinct live keys, a handful per million find both windows full
//! (measured at one million keys; see BENCHMARKS.md).

use crate::algorithm::{Algorithm, MAX_NOW};
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::key::{Key, KeyHasher};
use crate::sync::{spin_hint, AtomicBool, AtomicU128, AtomicU64, AtomicUsize, Ordering};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use crossbeam_utils::CachePadded;

/// Slots probed for one key at most: eight 64-byte cache lines (a hit usually needs one).
#[cfg(not(loom))]
pub const WINDOW: usize = 32;
/// Under loom, small windows keep the model's state space tractable.
#[cfg(loom)]
pub const WINDOW: usize = 4;

const OCCUPIED: u64 = 1 << 63;

/// What to do when a new key finds no empty or reclaimable slot in its probe window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Refuse the check with [`CheckError::TableFull`].
    Deny,
    /// Admit the check as if the key were fresh, without tracking it.
    Allow,
    /// Evict the slot in the probe window closest to fresh (smallest `reset_after`) and give it
    /// to the new key. The default: the table keeps limiting the keys that are active while a
    /// flood of one-off keys churns through, and the evicted key loses only what it had
    /// charged most long ago. `Deny` would let a flood lock out every new legitimate client;
    /// `Allow` would let the flood itself through.
    #[default]
    EvictStalest,
}

/// How to build a [`KeyedLimiter`].
#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    /// Keys the table must hold (before load-factor slack). At least 1.
    pub capacity: usize,
    /// Number of shards; rounded up to a power of two. More shards spread insert locks and
    /// cache lines; a few per core is plenty.
    pub shards: usize,
    /// What to do when a probe window is full.
    pub overflow: OverflowPolicy,
    /// Secret seeds for fingerprinting non-integer keys.
    pub seeds: [u64; 4],
}

impl TableConfig {
    /// `capacity` keys, [`default_shards`](Self::default_shards) for up to 16 cores, the
    /// default overflow policy, and the given seeds.
    pub fn new(capacity: usize, seeds: [u64; 4]) -> Self {
        TableConfig {
            capacity,
            shards: Self::default_shards(capacity, 16),
            overflow: OverflowPolicy::default(),
            seeds,
        }
    }
}

impl TableConfig {
    /// Four shards per core, but no shard smaller than 4,096 slots (about 2,700 keys): small
    /// shards make probe clusters, and so overflow, likelier.
    pub fn default_shards(capacity: usize, cores: usize) -> usize {
        let by_size = (capacity.saturating_mul(3) / 2 / 4096).max(1);
        cores
            .saturating_mul(4)
            .min(by_size)
            .clamp(1, 1 << 16)
            .next_power_of_two()
    }
}

/// Why a table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TableError {
    /// A capacity of zero.
    ZeroCapacity,
    /// A shard count of zero, or above 65,536.
    BadShardCount,
    /// The slots would not fit in memory addressable here.
    TooLarge,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableError::ZeroCapacity => "table capacity must be at least 1 key",
            TableError::BadShardCount => "shard count must be between 1 and 65536",
            TableError::TooLarge => "table capacity is too large for this address space",
        })
    }
}

impl core::error::Error for TableError {}

/// Readable counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Slots holding a key (including keys whose state has become fresh but whose slot was
    /// not yet reused).
    pub occupied: usize,
    /// Total slots.
    pub slots: usize,
    /// New keys that found no empty or reclaimable slot (whatever the policy did then).
    pub overflows: u64,
    /// Keys evicted while not yet fresh (policy [`OverflowPolicy::EvictStalest`]).
    pub evictions: u64,
    /// Slots of fresh-equivalent keys handed to new keys.
    pub reclaims: u64,
}

/// A shard's header: its insert lock and counters. Its slots live in the table's one slot
/// array, so the hot path reaches a slot without first loading a per-shard pointer.
struct Shard {
    lock: AtomicBool,
    occupied: AtomicUsize,
    overflows: AtomicU64,
    evictions: AtomicU64,
    reclaims: AtomicU64,
}

impl Shard {
    fn new() -> Self {
        Shard {
            lock: AtomicBool::new(false),
            occupied: AtomicUsize::new(0),
            overflows: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            reclaims: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> InsertGuard<'_> {
        loop {
            // Acquire: the next holder must see every slot write made under the lock before.
            if self
                .lock
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return InsertGuard(self);
            }
            // Relaxed: only waiting for the flag to clear; the CAS above does the ordering.
            while self.lock.load(Ordering::Relaxed) {
                spin_hint();
            }
        }
    }
}

/// One shard: its header and its run of slots.
#[derive(Clone, Copy)]
struct ShardRef<'a> {
    head: &'a Shard,
    slots: &'a [AtomicU128],
}

impl core::ops::Deref for ShardRef<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        self.head
    }
}

struct InsertGuard<'a>(&'a Shard);

impl Drop for InsertGuard<'_> {
    fn drop(&mut self) {
        // Release: publish this holder's slot writes to the next holder.
        self.0.lock.store(false, Ordering::Release);
    }
}

/// Adds one to a counter that only insert-lock holders write: a plain load and store, since
/// the lock already excludes other writers (cheaper than a locked read-modify-write).
#[inline]
fn bump<T: Counter>(counter: &T) {
    counter.bump();
}

trait Counter {
    fn bump(&self);
}

impl Counter for AtomicU64 {
    #[inline]
    fn bump(&self) {
        // Relaxed: only lock holders write, and the lock orders them; readers want a statistic.
        self.store(self.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

impl Counter for AtomicUsize {
    #[inline]
    fn bump(&self) {
        // Relaxed: as above.
        self.store(self.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

#[inline]
fn pack(key: u64, state: u64) -> u128 {
    (u128::from(key) << 64) | u128::from(state | OCCUPIED)
}

#[inline]
fn key_of(slot: u128) -> u64 {
    (slot >> 64) as u64
}

#[inline]
fn state_of(slot: u128) -> u64 {
    (slot as u64) & !OCCUPIED
}

#[inline]
fn occupied(slot: u128) -> bool {
    (slot as u64) & OCCUPIED != 0
}

/// 64-bit finaliser (a bijection) over the seeded key, so exact integer keys spread evenly.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A rate limiter over many keys: one packed state per key in a fixed-size lock-free table.
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
    /// Every shard's slots, shard `i` at `i * slots_per_shard ..`.
    slots: Box<[AtomicU128]>,
    /// `64 - log2(shards)`: the hash's top bits pick the shard.
    shard_shift: u32,
    slots_per_shard: usize,
    hasher: KeyHasher,
    seed: u64,
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

/// The two probe windows of a key, as start slots within its shard.
#[derive(Clone, Copy)]
struct Windows {
    first: usize,
    second: usize,
}

/// Where one window scan ended.
enum Scan {
    Hit(usize, u128),
    Empty,
    Full,
}

/// Where an insert survey of one window ended.
enum Survey {
    Present,
    Empty(usize, u128),
    Full,
}

/// Reuse candidates seen while surveying full windows.
#[derive(Default)]
struct Pick {
    reclaimable: Option<(usize, u128)>,
    stalest: Option<(usize, u128, u64)>,
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
        let slots_per_shard = total.div_ceil(shards).max(WINDOW);
        slots_per_shard
            .checked_mul(shards)
            .and_then(|n| n.checked_mul(16))
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
            slots: (0..slots_per_shard * shards)
                .map(|_| AtomicU128::new(0))
                .collect::<Vec<_>>()
                .into(),
            shard_shift: 64 - shards.trailing_zeros(),
            slots_per_shard,
            seed: hasher.fingerprint(&0x0074_7261_6666_696b_u64),
            hasher,
            overflow: config.overflow,
            capacity: config.capacity,
            _key: PhantomData,
        })
    }

    /// Checks `cost` for `key` now, charging it if admitted. A cost of zero is a peek.
    #[inline]
    pub fn check(&self, key: &K, cost: u64) -> Result<Decision, CheckError> {
        self.check_at(key.encode(&self.hasher), cost)
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

    /// Forgets what `key` has been charged. The key keeps its slot (now reclaimable).
    pub fn reset(&self, key: &K) {
        let code = key.encode(&self.hasher);
        let (shard, windows) = self.locate(code);
        while let Found::Hit(i, slot) = self.find(shard, windows, code) {
            // Relaxed: the slot word is self-contained; the CAS re-asserts the key.
            if shard.slots[i]
                .compare_exchange(slot, pack(code, 0), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
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

    /// Forgets every key. Checks racing with `clear` may keep what they charge.
    pub fn clear(&self) {
        let n = self.slots_per_shard;
        for (i, shard) in self.shards.iter().enumerate() {
            let _guard = shard.lock();
            for slot in &self.slots[i * n..(i + 1) * n] {
                // Relaxed: the insert lock orders this against inserters; concurrent updaters
                // either land before (and are forgotten) or see an empty slot and re-insert.
                slot.store(0, Ordering::Relaxed);
            }
            shard.occupied.store(0, Ordering::Relaxed);
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

    /// The algorithm.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Bytes of slot memory (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        self.slots_per_shard * self.shards.len() * 16
    }

    #[inline]
    fn now(&self) -> u64 {
        self.clock.now().min(MAX_NOW)
    }

    #[inline]
    fn locate(&self, code: u64) -> (ShardRef<'_>, Windows) {
        let h = mix(code ^ self.seed);
        // Top bits pick the shard; the rest, scaled (Lemire's multiply-shift), the first window's
        // start. An odd multiple of the hash places the second window independently.
        let shard = if self.shard_shift == 64 {
            0
        } else {
            (h >> self.shard_shift) as usize
        };
        let n_slots = self.slots_per_shard as u128;
        let rest = h << (64 - self.shard_shift);
        let other = h.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        let windows = Windows {
            first: ((u128::from(rest) * n_slots) >> 64) as usize,
            second: ((u128::from(other) * n_slots) >> 64) as usize,
        };
        let n = self.slots_per_shard;
        let shard = ShardRef {
            head: &self.shards[shard],
            slots: &self.slots[shard * n..(shard + 1) * n],
        };
        (shard, windows)
    }

    /// Scans one probe window for `code`.
    #[inline]
    fn scan(&self, shard: ShardRef<'_>, start: usize, code: u64) -> Scan {
        let n = self.slots_per_shard;
        let mut i = start;
        for _ in 0..WINDOW {
            // Relaxed: the word is self-contained; a stale "empty" only sends us to the locked
            // insert path, which looks again.
            let slot = shard.slots[i].load(Ordering::Relaxed);
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
    #[inline]
    fn find(&self, shard: ShardRef<'_>, windows: Windows, code: u64) -> Found {
        match self.scan(shard, windows.first, code) {
            Scan::Hit(i, slot) => Found::Hit(i, slot),
            Scan::Empty => Found::Miss,
            Scan::Full => match self.scan(shard, windows.second, code) {
                Scan::Hit(i, slot) => Found::Hit(i, slot),
                Scan::Empty | Scan::Full => Found::Miss,
            },
        }
    }

    #[inline]
    fn check_at(&self, code: u64, cost: u64) -> Result<Decision, CheckError> {
        let (shard, windows) = self.locate(code);
        let mut found = self.find(shard, windows, code);
        // The clock is read once, after the slot: its latency then overlaps the slot's load
        // rather than delaying it. (A retry below reuses this reading, which can only be staler
        // than a competitor's, so only stricter.)
        let now = self.now();
        loop {
            match found {
                Found::Hit(i, mut slot) => loop {
                    let t = self.algorithm.decide(state_of(slot), now, cost)?;
                    let Some(next) = t.next else {
                        return Ok(t.decision);
                    };
                    // Relaxed: key and state are one word, so the CAS alone decides; nothing
                    // else is published through it.
                    match shard.slots[i].compare_exchange(
                        slot,
                        pack(code, next),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Ok(t.decision),
                        Err(actual) if occupied(actual) && key_of(actual) == code => slot = actual,
                        // The slot was reclaimed or cleared: look the key up again.
                        Err(_) => break,
                    }
                },
                Found::Miss => {
                    if cost == 0 {
                        // A peek at an unknown key: fresh, and nothing to store.
                        return self.algorithm.decide(0, now, 0).map(|t| t.decision);
                    }
                    if let Some(decision) = self.insert(shard, windows, code, now, cost)? {
                        return Ok(decision);
                    }
                }
            }
            found = self.find(shard, windows, code);
        }
    }

    /// Places a new key, charging its first check. `Ok(None)` means the key turned out to be
    /// present after all: go round the lock-free path again.
    #[cold]
    fn insert(
        &self,
        shard: ShardRef<'_>,
        windows: Windows,
        code: u64,
        now: u64,
        cost: u64,
    ) -> Result<Option<Decision>, CheckError> {
        let fresh = self.algorithm.decide(0, now, cost)?;
        let Some(next) = fresh.next else {
            return Ok(Some(fresh.decision));
        };
        let _guard = shard.lock();
        loop {
            // Under the lock no other thread adds or replaces keys in this shard, so these
            // scans see the shard's key set as it stands.
            let mut pick = Pick::default();
            let placed = match self.survey(shard, windows.first, code, now, &mut pick) {
                Survey::Present => return Ok(None),
                Survey::Empty(i, slot) => Some((i, slot, false)),
                Survey::Full => match self.survey(shard, windows.second, code, now, &mut pick) {
                    Survey::Present => return Ok(None),
                    Survey::Empty(i, slot) => Some((i, slot, false)),
                    Survey::Full => pick.reclaimable.map(|(i, slot)| (i, slot, false)),
                },
            };
            let (i, slot, evicting) = match placed {
                Some(p) => p,
                None => {
                    bump(&shard.overflows);
                    match (self.overflow, pick.stalest) {
                        (OverflowPolicy::Deny, _) => return Err(CheckError::TableFull),
                        (OverflowPolicy::Allow, _) => return Ok(Some(fresh.decision)),
                        (_, Some((i, slot, _))) => (i, slot, true),
                        (_, None) => return Err(CheckError::TableFull),
                    }
                }
            };
            // Relaxed: one self-contained word; the lock release publishes it to inserters.
            if shard.slots[i]
                .compare_exchange(slot, pack(code, next), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                if !occupied(slot) {
                    bump(&shard.occupied);
                } else if evicting {
                    bump(&shard.evictions);
                } else {
                    bump(&shard.reclaims);
                }
                return Ok(Some(fresh.decision));
            }
            // A lock-free update charged the slot we meant to reuse: look again.
        }
    }

    /// One window's worth of insert candidates: stops at the key or the first empty slot, and
    /// notes the first reclaimable and the stalest occupied slot on the way.
    fn survey(
        &self,
        shard: ShardRef<'_>,
        start: usize,
        code: u64,
        now: u64,
        pick: &mut Pick,
    ) -> Survey {
        let n = self.slots_per_shard;
        let mut i = start;
        for _ in 0..WINDOW {
            // Relaxed: writes by earlier lock holders are visible through the lock's acquire;
            // lock-free updaters only change states, which the claiming CAS re-checks.
            let slot = shard.slots[i].load(Ordering::Relaxed);
            if !occupied(slot) {
                // Empty beats reclaimable: reusing a fresh key's slot loses nothing, but the
                // displaced key, when it returns, would displace another in turn.
                return Survey::Empty(i, slot);
            }
            if key_of(slot) == code {
                return Survey::Present;
            }
            let wait = self.algorithm.reset_after(state_of(slot), now);
            if wait == 0 && pick.reclaimable.is_none() {
                pick.reclaimable = Some((i, slot));
            }
            if pick.stalest.is_none_or(|(_, _, w)| wait < w) {
                pick.stalest = Some((i, slot, wait));
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        Survey::Full
    }
}

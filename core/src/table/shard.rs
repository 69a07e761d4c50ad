//! A shard's header (reuse lock and counters) and a borrowed view of one shard's slots.

use crate::sync::{spin_hint, AtomicBool, AtomicU128, AtomicU64, AtomicUsize, Ordering, Wide};

/// Most pause hints between two looks at a held reuse lock.
pub(super) const MAX_BACKOFF: u32 = 64;

/// A shard's header: its reuse lock and counters. Its slots live in the table's one slot
/// array, so the hot path reaches a slot without first loading a per-shard pointer.
pub(super) struct Shard {
    lock: AtomicBool,
    pub(super) occupied: AtomicUsize,
    pub(super) overflows: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) reclaims: AtomicU64,
}

impl Shard {
    pub(super) fn new() -> Self {
        Shard {
            lock: AtomicBool::new(false),
            occupied: AtomicUsize::new(0),
            overflows: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            reclaims: AtomicU64::new(0),
        }
    }

    pub(super) fn lock(&self) -> InsertGuard<'_> {
        let mut backoff = 1u32;
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
                // Exponential backoff (up to 64 pause hints between looks), so waiters leave
                // the holder's cache line alone while it works.
                for _ in 0..backoff {
                    spin_hint();
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One shard: its header and its run of slots.
#[derive(Clone, Copy)]
pub(super) struct ShardRef<'a> {
    pub(super) head: &'a Shard,
    pub(super) slots: &'a [AtomicU128],
    pub(super) wide: Wide,
}

impl ShardRef<'_> {
    /// Slot `i` of the shard (`i` below the shard's slot count).
    #[inline]
    pub(super) fn slot(&self, i: usize) -> &AtomicU128 {
        &self.slots[i]
    }

    /// Reads slot `i`.
    #[inline]
    pub(super) fn load(&self, i: usize) -> u128 {
        // Relaxed: a slot word is self-contained (key and state together); it publishes no
        // other memory, and every decision made from it is re-checked by a CAS before it counts.
        self.slot(i).load(self.wide, Ordering::Relaxed)
    }

    /// Replaces slot `i` if it still holds `current`.
    #[inline]
    pub(super) fn swap(&self, i: usize, current: u128, new: u128) -> Result<u128, u128> {
        // Relaxed: as for `load`; the CAS alone decides, and the modification order of one word
        // is total, so no admitted cost is lost.
        self.slot(i).compare_exchange(
            self.wide,
            current,
            new,
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
    }
}

impl core::ops::Deref for ShardRef<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        self.head
    }
}

pub(super) struct InsertGuard<'a>(&'a Shard);

impl Drop for InsertGuard<'_> {
    fn drop(&mut self) {
        // Release: publish this holder's slot writes to the next holder.
        self.0.lock.store(false, Ordering::Release);
    }
}

/// Adds one to a counter that only reuse-lock holders write: a plain load and store, since
/// the lock already excludes other writers (cheaper than a locked read-modify-write).
#[inline]
pub(super) fn bump<T: Counter>(counter: &T) {
    counter.bump();
}

pub(super) trait Counter {
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

//! Placing a new key: lock-free into an empty slot, or under the shard's lock by reusing one.

use super::shard::{bump, ShardRef};
use super::slot::{key_of, occupied, pack, state_of};
use super::{KeyedLimiter, OverflowPolicy, Reclaim, Windows, WINDOW};
use crate::algorithm::{Algorithm, Transition};
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::key::Key;
use crate::sync::Ordering;

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

impl<K: Key + ?Sized, A: Reclaim, C: Clock> KeyedLimiter<K, A, C> {
    /// Places a new key, charging its first check. `Ok(None)` means the key turned out to be
    /// present after all: go round the lock-free path again.
    #[cold]
    pub(super) fn insert<G: Algorithm>(
        &self,
        algorithm: &G,
        shard: ShardRef<'_>,
        windows: Windows,
        code: u64,
        now: u64,
        cost: u64,
    ) -> Result<Option<Decision>, CheckError> {
        let fresh = algorithm.decide(0, now, cost)?;
        let Some(next) = fresh.next else {
            return Ok(Some(fresh.decision));
        };
        // Lock-free: the first empty slot of the first window, or of the second if the first
        // is full. A failed CAS means another thread took that slot: look again.
        loop {
            let empty = match self.first_empty(shard, windows.first, code) {
                Survey::Present => return Ok(None),
                Survey::Empty(i, slot) => (i, slot),
                Survey::Full => match self.first_empty(shard, windows.second(), code) {
                    Survey::Present => return Ok(None),
                    Survey::Empty(i, slot) => (i, slot),
                    Survey::Full => break,
                },
            };
            if shard.swap(empty.0, empty.1, pack(code, next)).is_ok() {
                // Relaxed: a statistic.
                shard.occupied.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(fresh.decision));
            }
        }
        self.reuse(algorithm, shard, windows, code, now, &fresh, next)
    }

    /// Scans one window for `code` or its first empty slot, without the lock.
    #[inline]
    fn first_empty(&self, shard: ShardRef<'_>, start: usize, code: u64) -> Survey {
        let n = self.slots_per_shard;
        let mut i = start;
        for _ in 0..WINDOW {
            let slot = shard.load(i);
            if !occupied(slot) {
                return Survey::Empty(i, slot);
            }
            if key_of(slot) == code {
                return Survey::Present;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        Survey::Full
    }

    /// Both windows were full: reuse a slot under the shard's lock, or apply the overflow
    /// policy.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn reuse<G: Algorithm>(
        &self,
        algorithm: &G,
        shard: ShardRef<'_>,
        windows: Windows,
        code: u64,
        now: u64,
        fresh: &Transition,
        next: u64,
    ) -> Result<Option<Decision>, CheckError> {
        let _guard = shard.lock();
        loop {
            // Under the lock no other thread reuses slots in this shard; lock-free placements
            // only fill empty slots, which the claiming CAS below re-checks.
            let mut pick = Pick::default();
            let placed = match self.survey(algorithm, shard, windows.first, code, now, &mut pick) {
                Survey::Present => return Ok(None),
                Survey::Empty(i, slot) => Some((i, slot, false)),
                Survey::Full => {
                    match self.survey(algorithm, shard, windows.second(), code, now, &mut pick) {
                        Survey::Present => return Ok(None),
                        Survey::Empty(i, slot) => Some((i, slot, false)),
                        Survey::Full => pick.reclaimable.map(|(i, slot)| (i, slot, false)),
                    }
                }
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
            // The lock's release publishes the reuse to later holders.
            if shard.swap(i, slot, pack(code, next)).is_ok() {
                if !occupied(slot) {
                    // An empty slot (only after a `clear` raced with us).
                    // Relaxed: a statistic.
                    shard.occupied.fetch_add(1, Ordering::Relaxed);
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
    fn survey<G: Algorithm>(
        &self,
        algorithm: &G,
        shard: ShardRef<'_>,
        start: usize,
        code: u64,
        now: u64,
        pick: &mut Pick,
    ) -> Survey {
        let n = self.slots_per_shard;
        let mut i = start;
        for _ in 0..WINDOW {
            // Writes by earlier lock holders are visible through the lock's acquire; lock-free
            // updaters only change states, which the claiming CAS re-checks.
            let slot = shard.load(i);
            if !occupied(slot) {
                // Empty beats reclaimable: reusing a fresh key's slot loses nothing, but the
                // displaced key, when it returns, would displace another in turn.
                return Survey::Empty(i, slot);
            }
            if key_of(slot) == code {
                return Survey::Present;
            }
            // Asked of the table, not only of the checking algorithm: under per-key quotas the
            // slot may belong to a key of another tier.
            let wait = self.algorithm.reclaim_after(algorithm, state_of(slot), now);
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

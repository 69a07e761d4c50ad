//! The near cache: denials Redis gave recently, answered locally until their `retry_after`.

use std::collections::HashMap;
use std::sync::Mutex;

use traffik_core::Decision;

/// Entries kept before expired ones are swept.
const NEAR_CACHE_CAP: usize = 65_536;

/// Counters of the near cache and of round trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheStats {
    /// Checks answered locally as denied, without a round trip.
    pub hits: u64,
    /// Checks (and pipelined batch entries) that went to Redis.
    pub round_trips: u64,
}

#[derive(Clone, Copy)]
struct NearEntry {
    /// Smallest cost Redis denied.
    cost: u64,
    /// Local time until which that cost stays denied.
    until: u64,
    /// Local time at which Redis said the key is fresh.
    reset_at: u64,
    remaining: u64,
    limit: u64,
}

/// Recent denials per Redis key, in the limiter's local time base.
#[derive(Default)]
pub(crate) struct NearCache {
    map: Mutex<HashMap<Vec<u8>, NearEntry>>,
}

impl NearCache {
    /// The cached denial of `cost` for `key` at local time `local`, if one still holds.
    pub(crate) fn lookup(&self, key: &[u8], cost: u64, local: u64) -> Option<Decision> {
        let mut map = lock(&self.map);
        let e = map.get(key).copied()?;
        if local < e.until && cost >= e.cost {
            return Some(Decision::deny(
                e.limit,
                e.remaining,
                e.until - local,
                e.reset_at.saturating_sub(local),
            ));
        }
        if local >= e.until {
            map.remove(key);
        }
        None
    }

    /// Remembers that Redis denied `cost` for `key` at local time `local`.
    pub(crate) fn record(&self, key: &[u8], cost: u64, local: u64, decision: &Decision) {
        let entry = NearEntry {
            cost,
            until: local.saturating_add(decision.retry_after_nanos()),
            reset_at: local.saturating_add(decision.reset_after_nanos()),
            remaining: decision.remaining(),
            limit: decision.limit(),
        };
        let mut map = lock(&self.map);
        if map.len() >= NEAR_CACHE_CAP {
            map.retain(|_, e| e.until > local);
            if map.len() >= NEAR_CACHE_CAP {
                map.clear();
            }
        }
        let slot = map.entry(key.to_vec()).or_insert(entry);
        // Keep the smallest denied cost; a later denial of it extends the deadline.
        if entry.cost < slot.cost || (entry.cost == slot.cost && entry.until > slot.until) {
            *slot = entry;
        }
    }

    /// Forgets `key`.
    pub(crate) fn forget(&self, key: &[u8]) {
        lock(&self.map).remove(key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! The sliding window log for many keys: one [`LogRing`] per key in a concurrent map.
//!
//! Each key's ring is the core's [`LogRing`] (see [`traffik_core::sliding_log`] for the exact
//! rule, the representation and the concurrency argument): `limit * 8 + 64` bytes per key, plus
//! the key itself and the map's entry. With [`KeyedSlidingLog::with_max_keys`] the number of
//! keys is bounded too, so the whole limiter's memory is bounded up front: a new key beyond the
//! bound is refused with [`CheckError::TableFull`] (nothing recorded) until
//! [`remove_idle`](KeyedSlidingLog::remove_idle) has dropped keys whose entries have all
//! expired.
//!
//! The map is `dashmap`'s sharded map: a check of a known key runs under its shard's read lock
//! (shared with every other check of that shard), and adding or removing a key takes the
//! shard's write lock. Checks on the ring itself never lock; a peek or a denial writes nothing
//! to the ring (the read lock's reader count is the only shared write on that path).

use std::borrow::Borrow;
use std::future::{ready, Future};
use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;
use traffik_core::{AsyncLimiter, CheckError, Clock, Decision, LogRing, SlidingLog};

/// An exact sliding window log per key.
///
/// ```
/// use traffik::sliding_log::KeyedSlidingLog;
/// use traffik::{ManualClock, Rate, SlidingLog};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let log: KeyedSlidingLog<String, _> =
///     KeyedSlidingLog::with_max_keys(SlidingLog::new(Rate::per_minute(2))?, &clock, 1_000);
/// assert!(log.check("alice", 2)?.is_allowed());
/// assert!(log.check("bob", 1)?.is_allowed());
/// let denied = log.check("alice", 1)?;
/// assert_eq!(denied.retry_after(), Duration::from_secs(60));
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(log.remove_idle(), 2); // every entry expired: both rings dropped
/// assert_eq!(log.peek("alice").remaining(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct KeyedSlidingLog<K: Hash + Eq, C> {
    log: SlidingLog,
    clock: C,
    rings: DashMap<K, Arc<LogRing>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedSlidingLog<K, C> {
    /// A limiter with no bound on the number of keys (call
    /// [`remove_idle`](Self::remove_idle) now and then to drop keys gone quiet).
    pub fn new(log: SlidingLog, clock: C) -> Self {
        Self::with_max_keys(log, clock, usize::MAX)
    }

    /// A limiter holding at most `max_keys` keys: at most `max_keys * log.bytes_per_key()` bytes
    /// of rings.
    pub fn with_max_keys(log: SlidingLog, clock: C, max_keys: usize) -> Self {
        KeyedSlidingLog {
            log,
            clock,
            rings: DashMap::new(),
            max_keys,
        }
    }

    /// The ring of `key`, if it has one (the shard lock is released on return).
    fn ring<Q>(&self, key: &Q) -> Option<Arc<LogRing>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.rings.get(key).map(|r| Arc::clone(r.value()))
    }

    /// Checks `cost` for `key` now, recording it if admitted. A cost of zero is a
    /// [`peek`](Self::peek). A new key beyond the key bound is [`CheckError::TableFull`].
    #[must_use = "a denied check charges nothing: act on the decision"]
    pub fn check<Q>(&self, key: &Q, cost: u64) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if cost == 0 {
            return Ok(self.peek(key));
        }
        // The common case checks under the shard's read lock, which is cheaper than sharing
        // the ring out (two reference-count updates) and keeps `remove_idle` out meanwhile.
        if let Some(ring) = self.rings.get(key) {
            return ring.check(self.clock.now(), cost);
        }
        if cost > self.log.limit() {
            return Err(CheckError::InsufficientCapacity {
                max: self.log.limit(),
            });
        }
        // The bound is checked before inserting; racing inserts of different new keys may pass
        // it together by at most one key per racing thread.
        if self.rings.len() >= self.max_keys {
            return Err(CheckError::TableFull);
        }
        let ring = Arc::clone(
            self.rings
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(LogRing::new(&self.log)))
                .value(),
        );
        ring.check(self.clock.now(), cost)
    }

    /// What `key` has left now, without recording anything (a key with no ring is fresh).
    pub fn peek<Q>(&self, key: &Q) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.rings.get(key) {
            Some(ring) => ring.peek(self.clock.now()),
            None => Decision::allow(self.log.limit(), self.log.limit(), 0),
        }
    }

    /// Forgets `key`'s entries ([`LogRing::reset`]: the ring stays, so a check racing with the
    /// reset is never recorded in a ring that is thrown away).
    pub fn reset<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(ring) = self.ring(key) {
            ring.reset();
        }
    }

    /// Drops the rings whose entries have all expired (they decide like fresh ones) and that no
    /// check is using; returns how many were dropped.
    pub fn remove_idle(&self) -> usize {
        let now = self.clock.now();
        let before = self.rings.len();
        // `retain` holds each shard's write lock, so no lookup can share a ring out meanwhile;
        // a ring some check already holds (count above 1) stays, or that check's entries would
        // be recorded in a ring no later check sees.
        self.rings
            .retain(|_, ring| Arc::strong_count(ring) > 1 || !ring.is_idle(now));
        before.saturating_sub(self.rings.len())
    }

    /// How many keys hold a ring.
    pub fn len(&self) -> usize {
        self.rings.len()
    }

    /// Whether no key holds a ring.
    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// The configuration.
    pub fn log(&self) -> &SlidingLog {
        &self.log
    }
}

/// Every future is ready on its first poll and does what the synchronous call does.
impl<K, Q, C> AsyncLimiter<Q> for KeyedSlidingLog<K, C>
where
    K: Hash + Eq + Clone + Borrow<Q> + Send + Sync,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    C: Clock + Send + Sync,
{
    type Error = CheckError;

    fn check(
        &self,
        key: &Q,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        ready(KeyedSlidingLog::check(self, key, cost))
    }

    fn peek(&self, key: &Q) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        ready(Ok(KeyedSlidingLog::peek(self, key)))
    }

    fn reset(&self, key: &Q) -> impl Future<Output = Result<(), CheckError>> + Send {
        KeyedSlidingLog::reset(self, key);
        ready(Ok(()))
    }

    fn check_now(&self, key: &Q, cost: u64) -> Option<Result<Decision, CheckError>> {
        Some(KeyedSlidingLog::check(self, key, cost))
    }

    fn peek_now(&self, key: &Q) -> Option<Result<Decision, CheckError>> {
        Some(Ok(KeyedSlidingLog::peek(self, key)))
    }
}

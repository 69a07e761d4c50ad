//! The sliding window log, in process: exact, with a fixed ring of `limit` expiries per key.
//!
//! **Rule.** A check of `cost` at `now` is admitted iff the cost admitted in the trailing period
//! (entries recorded at `t` with `t > now - period`) plus `cost` is at most `limit`. Each unit
//! of cost is one entry; the entries of one admission share its time. This is the rule of the
//! Redis script `sliding_log.lua`, and the reported numbers are the script's too: `remaining` is
//! `limit` less the live cost (less `cost` when admitted), `retry_after` is when enough of the
//! oldest live entries have expired for `cost` to fit, `reset_after` is when the newest expires.
//!
//! **Memory, stated up front.** Only the newest `limit` entries can ever decide anything (an
//! admission of `cost` needs the `limit - cost + 1`-th newest entry to have expired), so a key
//! keeps exactly `limit` slots of 8 bytes plus a fixed part (a 16-byte head, the slots'
//! pointer and the configuration): `limit * 8 + 64` bytes on 64-bit targets, whatever the
//! traffic ([`SlidingLog::bytes_per_key`]). `limit` is capped at [`MAX_LOG_LIMIT`] (2^20, so
//! at most 8 MiB per key); a larger limit is [`ConfigError::LimitTooLarge`].
//!
//! **Representation.** Entries are numbered `0, 1, 2, ...` in admission order; entry `j` lives in
//! slot `j mod limit` as its *expiry* (`t + period`, so a zeroed slot is an entry that expired
//! long ago). Expiries never decrease along the numbering (an entry records
//! `max(now + period, newest expiry)`), so the live entries are always a suffix, found by binary
//! search. The head is one 128-bit word: the count of entries `n` (modulo a multiple of `limit`
//! below 2^43), the size of the newest admission's batch, and that batch's expiry.
//!
//! **Concurrency.** An admission reads the head, decides, and claims its entries with one CAS of
//! the head, which also records their expiry, so the claim and the values are published in the
//! same instant. The slots of the previous batch are filled in by whoever moves the head next,
//! before its CAS (with `fetch_max`, so a slow helper holding an old value changes nothing), so
//! every entry older than the newest batch is in its slot whenever the head names it. Readers
//! (peeks and denials) never write: they read the head, the slots they need, and the head again,
//! and start over if it moved; the slots a reader of a given head reads never change value
//! while that head stands (a late helper's `fetch_max` there finds a value at least its own).
//! Every check is linearizable at its successful CAS (admissions) or at its last head read
//! (denials and peeks).
//!
//! **Stale readings.** A clock reading behind the newest entry's time only makes a check
//! stricter: the entry it records is clamped to the newest, and fewer entries have expired at
//! an older reading.

use crate::algorithm::{finite_rate, ConfigError, MAX_NOW, MAX_SPAN};
use crate::backend::AsyncLimiter;
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::rate::Rate;
use crate::sync::{AtomicU128, AtomicU64, Ordering, Wide};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::{ready, Future};

/// The largest limit a sliding window log accepts: 2^20 entries, 8 MiB of slots per key.
pub const MAX_LOG_LIMIT: u64 = 1 << 20;

/// Bits of the head holding the newest batch's size (at most `MAX_LOG_LIMIT`).
const BATCH_BITS: u32 = 21;
/// Bits of the head holding the entry count, kept modulo a multiple of `limit` below 2^43.
const COUNT_BITS: u32 = 64 - BATCH_BITS;

/// The configuration of a sliding window log: the limit and the period, exact nanoseconds.
///
/// ```
/// use traffik_core::{Rate, SlidingLog};
///
/// let log = SlidingLog::new(Rate::per_second(100))?;
/// assert_eq!(log.limit(), 100);
/// assert_eq!(log.bytes_per_key(), 100 * 8 + core::mem::size_of::<traffik_core::LogRing>() as u64);
/// assert!(SlidingLog::new(Rate::per_hour(2_000_000)).is_err()); // above MAX_LOG_LIMIT
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingLog {
    limit: u64,
    period: u64,
    /// The modulus of the head's entry count: the largest multiple of `limit` below 2^43, so
    /// `count mod limit` (the slot) survives the count wrapping.
    modulus: u64,
}

impl SlidingLog {
    /// A log admitting `rate.limit()` per `rate.period()`, exactly.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        let (limit, period) = finite_rate(rate)?;
        if limit > MAX_LOG_LIMIT {
            return Err(ConfigError::LimitTooLarge { max: MAX_LOG_LIMIT });
        }
        if period > MAX_SPAN {
            return Err(ConfigError::PeriodTooLong {
                max_nanos: MAX_SPAN,
            });
        }
        let modulus = ((1u64 << COUNT_BITS) / limit) * limit;
        Ok(SlidingLog {
            limit,
            period,
            modulus,
        })
    }

    /// The most cost admitted in any trailing period.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The period in nanoseconds.
    pub const fn period_nanos(&self) -> u64 {
        self.period
    }

    /// The memory one key's ring takes: `limit` slots of 8 bytes and the fixed part of a
    /// [`LogRing`] (its 16-byte head, the slots' pointer and this configuration: 64 bytes on
    /// 64-bit targets), not counting the allocator's headers or whatever map holds the key.
    pub const fn bytes_per_key(&self) -> u64 {
        self.limit * 8 + core::mem::size_of::<LogRing>() as u64
    }
}

/// The unpacked head word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    /// Entries ever admitted, modulo [`SlidingLog::modulus`].
    count: u64,
    /// How many of the newest entries came in the newest admission (their expiry is `expiry`).
    batch: u64,
    /// The newest admission's expiry (0 when nothing was admitted since the last reset).
    expiry: u64,
}

impl Head {
    fn unpack(word: u128) -> Self {
        let low = word as u64;
        Head {
            count: low >> BATCH_BITS,
            batch: low & ((1 << BATCH_BITS) - 1),
            expiry: (word >> 64) as u64,
        }
    }

    fn pack(self) -> u128 {
        (u128::from(self.expiry) << 64) | u128::from((self.count << BATCH_BITS) | self.batch)
    }
}

/// One key's log: a ring of `limit` expiries, the head, and its configuration (so a ring can
/// never be read with another limit than the one it was sized for).
///
/// [`SlidingLogLimiter`] wraps one ring with its configuration and a clock; keyed limiters keep
/// one ring per key.
#[derive(Debug)]
pub struct LogRing {
    head: AtomicU128,
    slots: Box<[AtomicU64]>,
    log: SlidingLog,
    wide: Wide,
}

impl LogRing {
    /// A fresh ring for `log` (allocates `log.limit()` slots).
    pub fn new(log: &SlidingLog) -> Self {
        let mut slots = Vec::with_capacity(log.limit as usize);
        slots.resize_with(log.limit as usize, || AtomicU64::new(0));
        LogRing {
            head: AtomicU128::new(0),
            slots: slots.into_boxed_slice(),
            log: *log,
            wide: Wide::detect(),
        }
    }

    fn load_head(&self) -> Head {
        Head::unpack(self.head.load(self.wide, Ordering::Acquire))
    }

    /// The slot of the entry `back` places behind the newest, given `newest_next`, the slot
    /// the next entry goes to (`count mod limit`); `1 <= back <= limit`. No division: this is
    /// on every probe of the binary search.
    #[inline]
    fn slot(log: &SlidingLog, newest_next: u64, back: u64) -> usize {
        let i = newest_next + log.limit - back;
        (if i >= log.limit { i - log.limit } else { i }) as usize
    }

    /// The expiry of the entry `back` places behind the newest (`back = 1` is the newest).
    #[inline]
    fn expiry(&self, log: &SlidingLog, head: Head, next_slot: u64, back: u64) -> u64 {
        if back <= head.batch {
            return head.expiry;
        }
        // Acquire: a slot written by a helper of a later head orders that head before our
        // re-read of the head, so the re-read sees that the head moved.
        self.slots[Self::slot(log, next_slot, back)].load(Ordering::Acquire)
    }

    /// How many of the newest `limit` entries are live at `now` (expiry after `now`).
    fn live(&self, log: &SlidingLog, head: Head, next_slot: u64, now: u64) -> u64 {
        // Expiries never decrease along the entries, so the live ones are a suffix: find the
        // largest `back` whose entry is live.
        if head.expiry <= now {
            return 0;
        }
        let (mut lo, mut hi) = (head.batch.min(log.limit), log.limit);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.expiry(log, head, next_slot, mid) > now {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Checks `cost` at `now` against this ring, recording it if admitted. A cost of zero is a
    /// [`peek`](Self::peek). Readings past [`MAX_NOW`] count as `MAX_NOW`.
    #[must_use = "a denied check charges nothing: act on the decision"]
    pub fn check(&self, now: u64, cost: u64) -> Result<Decision, CheckError> {
        let log = &self.log;
        if cost > log.limit {
            return Err(CheckError::InsufficientCapacity { max: log.limit });
        }
        let now = now.min(MAX_NOW);
        let mut head = self.load_head();
        loop {
            // The modulus is a multiple of `limit`, so this is the next entry's slot even after
            // the count wrapped.
            let next_slot = head.count % log.limit;
            let live = self.live(log, head, next_slot, now);
            let reset = head.expiry.saturating_sub(now);
            if live + cost > log.limit {
                // The `need`-th oldest live entry must expire first: it is `limit - cost + 1`
                // places behind the newest.
                let retry = self.expiry(log, head, next_slot, log.limit - cost + 1) - now;
                let again = self.load_head();
                if again != head {
                    head = again;
                    continue;
                }
                return Ok(Decision::deny(log.limit, log.limit - live, retry, reset));
            }
            if cost == 0 {
                let again = self.load_head();
                if again != head {
                    head = again;
                    continue;
                }
                return Ok(Decision::allow(log.limit, log.limit - live, reset));
            }
            // Fill in the newest batch's slots before the head forgets which entries they are.
            for back in 1..=head.batch.min(log.limit) {
                // AcqRel: published to readers by our CAS below (Release); fetch_max, so a
                // helper late with an older head's value leaves a newer value alone.
                self.slots[Self::slot(log, next_slot, back)]
                    .fetch_max(head.expiry, Ordering::AcqRel);
            }
            let expiry = now.saturating_add(log.period).max(head.expiry);
            let next = Head {
                count: (head.count + cost) % log.modulus,
                batch: cost,
                expiry,
            };
            match self.head.compare_exchange(
                self.wide,
                head.pack(),
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Decision::allow(
                        log.limit,
                        log.limit - live - cost,
                        expiry - now,
                    ))
                }
                Err(actual) => head = Head::unpack(actual),
            }
        }
    }

    /// What a zero-cost check would say; never writes.
    pub fn peek(&self, now: u64) -> Decision {
        let log = &self.log;
        match self.check(now, 0) {
            Ok(d) => d,
            // Unreachable for a zero cost; a peek must not fail.
            Err(_) => Decision::deny(log.limit, 0, 0, 0),
        }
    }

    /// The configuration the ring was built for.
    pub fn log(&self) -> &SlidingLog {
        &self.log
    }

    /// Whether every entry has expired at `now`, so the ring decides like a fresh one (a keyed
    /// limiter may then drop it).
    pub fn is_idle(&self, now: u64) -> bool {
        self.load_head().expiry <= now.min(MAX_NOW)
    }

    /// Forgets every entry.
    ///
    /// The slots are zeroed first, then the head is moved `limit` entries on with an expiry of
    /// zero, so all the entries a check can look at are expired. An admission racing with the
    /// reset may survive it, and may leave a pre-reset expiry in a slot: that only makes later
    /// checks stricter (an entry counted longer), never looser.
    pub fn reset(&self) {
        let log = &self.log;
        for slot in self.slots.iter() {
            // Release: ordered before the head CAS below.
            slot.store(0, Ordering::Release);
        }
        let mut head = self.load_head();
        loop {
            let next = Head {
                count: (head.count + log.limit) % log.modulus,
                batch: log.limit,
                expiry: 0,
            };
            match self.head.compare_exchange(
                self.wide,
                head.pack(),
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => head = Head::unpack(actual),
            }
        }
    }
}

/// A sliding window log limiter for one key: exact over every trailing period, `limit * 8 + 64`
/// bytes, lock-free (peeks and denials never write).
///
/// ```
/// use traffik_core::{ManualClock, Rate, SlidingLog, SlidingLogLimiter};
/// use core::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = SlidingLogLimiter::new(SlidingLog::new(Rate::per_second(3))?, &clock);
/// assert!(limiter.check(2)?.is_allowed()); // at 0 s
/// clock.advance(Duration::from_millis(400));
/// assert!(limiter.check(1)?.is_allowed()); // at 0.4 s: 3 in the last second
/// let denied = limiter.check(1)?;
/// assert!(denied.is_denied());
/// // The two entries of 0 s leave the window at 1 s: 600 ms from now.
/// assert_eq!(denied.retry_after(), Duration::from_millis(600));
/// clock.advance(Duration::from_millis(600));
/// assert_eq!(limiter.check(2)?.remaining(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SlidingLogLimiter<C> {
    ring: LogRing,
    clock: C,
}

impl<C: Clock> SlidingLogLimiter<C> {
    /// A fresh limiter; allocates the ring of `log.limit()` slots.
    pub fn new(log: SlidingLog, clock: C) -> Self {
        SlidingLogLimiter {
            ring: LogRing::new(&log),
            clock,
        }
    }

    /// Checks `cost` now, recording it if admitted. A cost of zero is a [`peek`](Self::peek).
    #[must_use = "a denied check charges nothing: act on the decision"]
    pub fn check(&self, cost: u64) -> Result<Decision, CheckError> {
        self.ring.check(self.clock.now(), cost)
    }

    /// What is left now, without recording anything.
    pub fn peek(&self) -> Decision {
        self.ring.peek(self.clock.now())
    }

    /// Forgets every entry (see [`LogRing::reset`] for a reset racing with checks).
    pub fn reset(&self) {
        self.ring.reset();
    }

    /// The configuration.
    pub fn log(&self) -> &SlidingLog {
        &self.ring.log
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

/// The single-key limiter answers for every key (the key is ignored), with futures ready on
/// their first poll.
impl<K: ?Sized, C: Clock + Send + Sync> AsyncLimiter<K> for SlidingLogLimiter<C> {
    type Error = CheckError;

    fn check(
        &self,
        _key: &K,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        ready(SlidingLogLimiter::check(self, cost))
    }

    fn peek(&self, _key: &K) -> impl Future<Output = Result<Decision, CheckError>> + Send {
        ready(Ok(SlidingLogLimiter::peek(self)))
    }

    fn reset(&self, _key: &K) -> impl Future<Output = Result<(), CheckError>> + Send {
        SlidingLogLimiter::reset(self);
        ready(Ok(()))
    }

    fn check_now(&self, _key: &K, cost: u64) -> Option<Result<Decision, CheckError>> {
        Some(SlidingLogLimiter::check(self, cost))
    }

    fn peek_now(&self, _key: &K) -> Option<Result<Decision, CheckError>> {
        Some(Ok(SlidingLogLimiter::peek(self)))
    }
}

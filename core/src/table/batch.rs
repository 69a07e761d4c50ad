//! Checking many keys at once, with their cache misses overlapped.
//!
//! A check of a key whose slot is not in cache waits for one memory access before it can do
//! anything else, and a loop of checks waits for them one after another: each check's CAS
//! and branches depend on its own load. A batch first reads the first slot of every key's
//! window (loads with no dependence on each other, so the CPU has them all in flight at once),
//! then checks the keys in order with the lines already on their way.

use super::KeyedLimiter;
use crate::algorithm::Algorithm;
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::key::Key;
use core::borrow::Borrow;

/// Keys whose lines are requested before the first of them is checked: enough to cover a
/// memory access with checks of lines already in cache, few enough for the CPU's miss buffers.
const BATCH: usize = 8;

impl<K: Key + ?Sized, A: Algorithm, C: Clock> KeyedLimiter<K, A, C> {
    /// Checks `cost` for every key of `keys`, in order, handing each result to `each` with the
    /// key's index. The decisions are those of calling [`check`](Self::check) on the keys one
    /// after another (a key that appears twice is charged twice, the second check seeing the
    /// first's charge); only the memory accesses overlap.
    ///
    /// ```
    /// use traffik_core::{Gcra, KeyedLimiter, ManualClock, Rate, TableConfig};
    ///
    /// let clock = ManualClock::new();
    /// let limiter: KeyedLimiter<u64, _, _> = KeyedLimiter::new(
    ///     Gcra::new(Rate::per_second(1))?,
    ///     &clock,
    ///     TableConfig::new(1_000, [1, 2, 3, 4]),
    /// )?;
    /// let mut allowed = Vec::new();
    /// limiter.check_many(&[7, 8, 7], 1, |i, decision| {
    ///     allowed.push((i, decision.map(|d| d.is_allowed())));
    /// });
    /// assert_eq!(allowed, [(0, Ok(true)), (1, Ok(true)), (2, Ok(false))]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_many<Q: Borrow<K>>(
        &self,
        keys: &[Q],
        cost: u64,
        mut each: impl FnMut(usize, Result<Decision, CheckError>),
    ) {
        let mut codes = [0u64; BATCH];
        for (c, chunk) in keys.chunks(BATCH).enumerate() {
            // First pass: encode every key and start the load of its first slot.
            for (code, key) in codes.iter_mut().zip(chunk) {
                *code = key.borrow().encode(&self.hasher);
                self.touch(*code);
            }
            // Second pass: the checks themselves, in order.
            for (j, code) in codes[..chunk.len()].iter().enumerate() {
                each(c * BATCH + j, self.check_at(*code, cost));
            }
        }
    }

    /// Reads the first slot of `code`'s window and drops the value: a load the CPU can start
    /// without waiting for any other, so the line is in cache (or on its way) for the check.
    #[inline]
    fn touch(&self, code: u64) {
        let (shard, windows) = self.locate(code);
        let _ = shard.load(windows.first);
    }
}

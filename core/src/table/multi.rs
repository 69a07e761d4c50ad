//! One key of a keyed table as a [`Leg`] of an all-or-nothing multi-check, and
//! [`MultiKeyed`]: several limits (`"10/s, 1000/h"`) on the same keys.

use super::{Found, KeyedLimiter};
use crate::algorithm::{Algorithm, AlgorithmWork};
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::key::Key;
use crate::multi::{check_each, Leg, Receipt};
use crate::rates::MAX_RATES;
use alloc::vec::Vec;

use super::slot::{key_of, occupied, pack, state_of};

/// One key of a [`KeyedLimiter`], charged as part of a multi-check (see [`crate::multi`]).
pub struct TableLeg<'a, K: ?Sized, A, C> {
    table: &'a KeyedLimiter<K, A, C>,
    code: u64,
}

impl<K: Key + ?Sized, A: Algorithm, C: Clock> KeyedLimiter<K, A, C> {
    /// `key` of this table as a [`Leg`] for [`check_all`](crate::check_all):
    ///
    /// ```
    /// use traffik_core::{check_all, Gcra, KeyedLimiter, ManualClock, Rate, TableConfig};
    ///
    /// let clock = ManualClock::new();
    /// let config = TableConfig::new(100, [1, 2, 3, 4]);
    /// let users: KeyedLimiter<str, _, _> =
    ///     KeyedLimiter::new(Gcra::new(Rate::per_second(3))?, &clock, config)?;
    /// let tenants: KeyedLimiter<str, _, _> =
    ///     KeyedLimiter::new(Gcra::new(Rate::per_second(4))?, &clock, config)?;
    /// // Two users of one tenant: the tenant's 4/s binds, and a denied check charges no user.
    /// let mut admitted = 0;
    /// for user in ["ann", "bob", "ann", "bob", "ann", "bob"] {
    ///     let legs = [tenants.leg("acme"), users.leg(user)];
    ///     admitted += usize::from(check_all(&legs, 1)?.is_allowed());
    /// }
    /// assert_eq!(admitted, 4);
    /// assert_eq!(users.peek("ann").remaining(), 1);
    /// assert_eq!(users.peek("bob").remaining(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn leg(&self, key: &K) -> TableLeg<'_, K, A, C> {
        TableLeg {
            table: self,
            code: key.encode(&self.hasher),
        }
    }

    /// The check of `check_with`, also returning what it wrote and where.
    #[inline]
    fn charge_with<G: Algorithm>(
        &self,
        algorithm: &G,
        code: u64,
        cost: u64,
    ) -> Result<(Decision, Option<Receipt>), CheckError> {
        let (shard, windows) = self.locate(code);
        let mut found = self.find(shard, windows, code);
        let now = self.now();
        loop {
            match found {
                Found::Hit(i, mut slot) => loop {
                    let t = algorithm.decide(state_of(slot), now, cost)?;
                    let Some(next) = t.next else {
                        return Ok((t.decision, None));
                    };
                    match shard.swap(i, slot, pack(code, next)) {
                        Ok(_) => {
                            let receipt = Receipt {
                                prev: state_of(slot),
                                next,
                                slot: i,
                                code,
                            };
                            return Ok((t.decision, Some(receipt)));
                        }
                        Err(actual) if occupied(actual) && key_of(actual) == code => slot = actual,
                        Err(_) => break,
                    }
                },
                Found::Miss => {
                    if cost == 0 {
                        return algorithm.decide(0, now, 0).map(|t| (t.decision, None));
                    }
                    if let Some(decision) =
                        self.insert(algorithm, shard, windows, code, now, cost)?
                    {
                        return Ok((decision, self.placed(algorithm, code, now, cost)));
                    }
                }
            }
            found = self.find(shard, windows, code);
        }
    }

    /// The receipt of a charge that placed a new key: from fresh (`0`) to what a fresh key
    /// stores, if the key's slot still holds exactly that (if another check has charged it
    /// meanwhile, no receipt: the charge will stay, which is only stricter).
    #[cold]
    fn placed<G: Algorithm>(
        &self,
        algorithm: &G,
        code: u64,
        now: u64,
        cost: u64,
    ) -> Option<Receipt> {
        let next = algorithm.decide(0, now, cost).ok()?.next?;
        let (shard, windows) = self.locate(code);
        match self.find(shard, windows, code) {
            Found::Hit(i, slot) if state_of(slot) == next => Some(Receipt {
                prev: 0,
                next,
                slot: i,
                code,
            }),
            _ => None,
        }
    }

    /// Undoes the charge behind `receipt` if the key's slot still holds exactly what it wrote.
    fn refund_at(&self, receipt: Receipt) -> bool {
        if receipt.slot >= self.slots_per_shard {
            // Not a receipt of this table.
            return false;
        }
        let (shard, _) = self.locate(receipt.code);
        let current = pack(receipt.code, receipt.next);
        shard
            .swap(receipt.slot, current, pack(receipt.code, receipt.prev))
            .is_ok()
    }
}

/// A table's charge, compiled per concrete algorithm.
struct Charge<'a, K: ?Sized, A, C> {
    table: &'a KeyedLimiter<K, A, C>,
    code: u64,
    cost: u64,
}

impl<K: Key + ?Sized, A: Algorithm, C: Clock> AlgorithmWork for Charge<'_, K, A, C> {
    type Output = Result<(Decision, Option<Receipt>), CheckError>;
    #[inline]
    fn run<G: Algorithm>(self, algorithm: &G) -> Self::Output {
        self.table.charge_with(algorithm, self.code, self.cost)
    }
}

impl<K: Key + ?Sized, A: Algorithm, C: Clock> Leg for TableLeg<'_, K, A, C> {
    #[inline]
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError> {
        self.table.algorithm.dispatch(Charge {
            table: self.table,
            code: self.code,
            cost,
        })
    }
    #[inline]
    fn refund(&self, receipt: Receipt) -> bool {
        receipt.code == self.code && self.table.refund_at(receipt)
    }
}

/// Several limits on the same keys, checked all or nothing: one [`KeyedLimiter`] per limit
/// (for example one for `10/s` and one for `1000/h`), charged as in [`check_all`](crate::check_all).
///
/// It is itself an [`AsyncLimiter`](crate::AsyncLimiter), so middleware takes it like any other limiter; the
/// `traffik` builder makes one from a rate list such as `"10/s, 1000/h"`.
///
/// ```
/// use traffik_core::{Gcra, KeyedLimiter, ManualClock, MultiKeyed, Rate, TableConfig};
/// use core::time::Duration;
///
/// let clock = ManualClock::new();
/// let config = TableConfig::new(100, [1, 2, 3, 4]);
/// let limits: MultiKeyed<u64, _, _> = MultiKeyed::new(vec![
///     KeyedLimiter::new(Gcra::new(Rate::per_second(10))?, &clock, config)?,
///     KeyedLimiter::new(Gcra::new(Rate::per_minute(15))?, &clock, config)?,
/// ]);
/// let burst = (0..20).filter(|_| limits.check(&1, 1).unwrap().is_allowed()).count();
/// assert_eq!(burst, 10);
/// clock.advance(Duration::from_secs(1));
/// let next = (0..20).filter(|_| limits.check(&1, 1).unwrap().is_allowed()).count();
/// assert_eq!(next, 5); // the per-minute limit now binds
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MultiKeyed<K: ?Sized, A, C> {
    tables: Vec<KeyedLimiter<K, A, C>>,
}

impl<K: ?Sized, A: core::fmt::Debug, C> core::fmt::Debug for MultiKeyed<K, A, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MultiKeyed")
            .field("tables", &self.tables)
            .finish()
    }
}

impl<K: Key + ?Sized, A: Algorithm, C: Clock> MultiKeyed<K, A, C> {
    /// The limits, charged in this order (put the one most likely to deny first). With no
    /// table, every check is admitted.
    pub fn new(tables: Vec<KeyedLimiter<K, A, C>>) -> Self {
        MultiKeyed { tables }
    }

    /// Checks `cost` for `key` against every limit, all or nothing.
    #[inline]
    pub fn check(&self, key: &K, cost: u64) -> Result<Decision, CheckError> {
        if self.tables.len() > MAX_RATES {
            // Every table encodes keys with its own hasher, so each leg encodes for itself.
            return check_each(
                &|i: usize| self.tables[i].leg(key),
                0,
                self.tables.len(),
                cost,
            );
        }
        // The same as `check_each`, as a loop with the receipts in an array.
        let mut receipts: [Option<Receipt>; MAX_RATES] = [None; MAX_RATES];
        let mut binding: Option<Decision> = None;
        let mut reset = 0;
        for (i, table) in self.tables.iter().enumerate() {
            let leg = table.leg(key);
            let outcome = leg.charge(cost);
            let decision = match outcome {
                Ok((d, receipt)) if d.is_allowed() => {
                    receipts[i] = receipt;
                    d
                }
                _ => {
                    // Refund what this check charged, latest first.
                    for (j, receipt) in receipts[..i].iter().enumerate().rev() {
                        if let Some(r) = receipt {
                            self.tables[j].leg(key).refund(*r);
                        }
                    }
                    return outcome.map(|(d, _)| d);
                }
            };
            // The least left, the earliest on a tie (as `check_all` combines).
            if binding.is_none_or(|b| decision.remaining() < b.remaining()) {
                binding = Some(decision);
            }
            reset = reset.max(decision.reset_after_nanos());
        }
        Ok(match binding {
            Some(b) => Decision::allow(b.limit(), b.remaining(), reset),
            None => Decision::allow(u64::MAX, u64::MAX, 0),
        })
    }

    /// What is left for `key` under the tightest limit, without charging.
    pub fn peek(&self, key: &K) -> Decision {
        self.tables
            .iter()
            .map(|t| t.peek(key))
            .min_by_key(|d| (d.is_allowed(), d.remaining()))
            .unwrap_or(Decision::allow(u64::MAX, u64::MAX, 0))
    }

    /// Forgets what `key` has been charged under every limit.
    pub fn reset(&self, key: &K) {
        for t in &self.tables {
            t.reset(key);
        }
    }

    /// The tables, one per limit.
    pub fn tables(&self) -> &[KeyedLimiter<K, A, C>] {
        &self.tables
    }
}

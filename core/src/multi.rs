//! Several limits checked together, all or nothing: `10/s` *and* `1000/h` for one key, or a
//! per-user *and* a per-tenant limit.
//!
//! # Design
//!
//! Each limit keeps its own packed state, and [`check_all`] charges them one after another, each
//! with its own CAS loop (a [`Leg`]). When a limit denies, the limits already charged by this
//! check are refunded in reverse order, and a refund is a single compare-and-swap **from exactly
//! the word this check wrote back to exactly the word it replaced**. If anything else has
//! changed that word in between, the refund is skipped and the charge stays.
//!
//! A refund that recomputes the state instead (for GCRA, `tat - cost * T`) would be wrong: a
//! charge is `max(tat, now) + cost * T`, and the `max` forgets how far the state had drained,
//! so after other checks have charged on top, subtracting can leave the key looser than if the
//! refunded check had never run. Restoring the replaced word only when nothing happened since
//! is exact, and skipping otherwise is only ever stricter.
//!
//! # Guarantees
//!
//! * **No single limit ever over-admits.** For every limit, the checks that finally count as
//!   admitted on it (admitted multi-checks, and single checks) are a set its algorithm alone
//!   would admit, in the order their charges landed. Proof sketch: every algorithm's charge
//!   moves the state strictly up in its strictness order (a GCRA or token-bucket charge
//!   increases the stored number; a window charge increases the count of the stored window or
//!   moves to a later window), so the words a cell has held since any charge are distinct while
//!   that charge stands. A refund succeeds only while its own word is still in the cell, which
//!   means every charge made on top of it has itself been refunded, so it pops the top of a
//!   stack and restores a state that was in the cell before: the cell is exactly as if the
//!   refunded check had never run. A skipped refund leaves a charge that no admitted check
//!   needed, which by the algorithms' monotonicity can only make later decisions stricter.
//!   The loom models in `loom-tests/tests/multi.rs` check this for every interleaving of
//!   three concurrent checks (two multi-checks in opposite orders and a single check), on
//!   cells and on keyed tables.
//!
//!   What the proof needs of an algorithm: a charge always changes the word, and never back to
//!   a word the cell held while that charge stands. Every algorithm in this crate meets it; the
//!   window algorithms store their window index truncated, so there a word could recur only
//!   after the index wraps (at least 2^51 ns, about 26 days, of windows; see the window
//!   docs) while a refund is pending. A custom [`Algorithm`] whose charge can leave the word
//!   unchanged should not be used in a multi-check.
//! * **A denied multi-check charges nothing, unless it raced.** It leaves a charge only on a
//!   limit whose word another check changed between this check's charge and its refund (the
//!   time it takes to charge the following limits, longer only if the thread is preempted
//!   there); then it leaves at most its own `cost` on that limit (for GCRA, `cost * T`
//!   of extra wait that drains at the limit's rate like any charge). Nothing else ever stays.
//! * Without contention (one thread per key, or sequential tests on a
//!   [`ManualClock`](crate::ManualClock)) the result is exactly that of a single algorithm
//!   enforcing all the limits: see the tests with exact counts.
//!
//! Resetting a limit (or the table reclaiming an idle key's slot) forgives what was charged, for
//! multi-checks as for single ones.
//!
//! ```
//! use traffik_core::{check_all, Gcra, Limiter, ManualClock, Rate};
//!
//! let clock = ManualClock::new();
//! let per_second = Limiter::new(Gcra::new(Rate::per_second(10))?, &clock);
//! let per_minute = Limiter::new(Gcra::new(Rate::per_minute(15))?, &clock);
//! let both = [&per_second as &dyn traffik_core::Leg, &per_minute];
//! let admitted = (0..20).filter(|_| check_all(&both, 1).unwrap().is_allowed()).count();
//! assert_eq!(admitted, 10); // the per-second limit binds first...
//! // ...and the 10 denied checks charged neither limit.
//! assert_eq!(per_minute.peek().remaining(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::algorithm::{Algorithm, MAX_NOW};
use crate::cell::StateCell;
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::limiter::Limiter;
use crate::sync::Ordering;

/// What one charge wrote, so that exactly this charge can be undone.
///
/// Only the [`Leg`] that issued a receipt can use it; handing it to another leg refunds nothing
/// there (the words differ) or, for a keyed table, is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The word the charge replaced.
    pub(crate) prev: u64,
    /// The word the charge wrote.
    pub(crate) next: u64,
    /// Where it was written, for stores of many words (0 for a single cell).
    pub(crate) slot: usize,
    /// The key's code, for stores of many keys (0 for a single cell).
    pub(crate) code: u64,
}

/// One limit a multi-check charges: charge with a receipt, refund by that receipt.
///
/// Implemented by [`Limiter`], by a [`StateCell`] paired with its algorithm and a clock
/// reading ([`CellLeg`]), and by one key of a `KeyedLimiter` (feature `alloc`)
/// (`KeyedLimiter::leg`, feature `alloc`).
pub trait Leg {
    /// Checks `cost`, charging it if admitted; the receipt is `Some` exactly when something was
    /// written.
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError>;

    /// Undoes the charge behind `receipt` if the state still holds exactly the word it wrote;
    /// returns whether it did. Otherwise the charge stays (which is only ever stricter).
    fn refund(&self, receipt: Receipt) -> bool;
}

impl StateCell {
    /// [`apply`](Self::apply) that also returns a [`Receipt`] of what it wrote (`None` when
    /// nothing was: a denial or a peek).
    #[inline]
    pub fn charge<A: Algorithm + ?Sized>(
        &self,
        algorithm: &A,
        now: u64,
        cost: u64,
    ) -> Result<(Decision, Option<Receipt>), CheckError> {
        let now = now.min(MAX_NOW);
        // Relaxed: as in `apply`, the word is self-contained.
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let t = algorithm.decide(current, now, cost)?;
            let Some(next) = t.next else {
                return Ok((t.decision, None));
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let receipt = Receipt {
                        prev: current,
                        next,
                        slot: 0,
                        code: 0,
                    };
                    return Ok((t.decision, Some(receipt)));
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Restores the word `receipt`'s charge replaced, if the cell still holds exactly the word
    /// that charge wrote; returns whether it did (see the [module docs](crate::multi) for why
    /// this is exact and why a failed refund is safe).
    #[inline]
    pub fn refund(&self, receipt: Receipt) -> bool {
        // Strong CAS: a spurious failure would leave a charge for no reason. Relaxed: as in
        // `apply`.
        self.state
            .compare_exchange(
                receipt.next,
                receipt.prev,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// A [`StateCell`] with its algorithm and clock, as a [`Leg`].
#[derive(Debug)]
pub struct CellLeg<'a, A: ?Sized, C: ?Sized> {
    /// The cell.
    pub cell: &'a StateCell,
    /// Its algorithm.
    pub algorithm: &'a A,
    /// The clock read at each charge.
    pub clock: &'a C,
}

impl<A: Algorithm + ?Sized, C: Clock + ?Sized> Leg for CellLeg<'_, A, C> {
    #[inline]
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError> {
        self.cell.charge(self.algorithm, self.clock.now(), cost)
    }
    #[inline]
    fn refund(&self, receipt: Receipt) -> bool {
        self.cell.refund(receipt)
    }
}

impl<A: Algorithm, C: Clock> Leg for Limiter<A, C> {
    #[inline]
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError> {
        self.cell()
            .charge(self.algorithm(), self.clock().now(), cost)
    }
    #[inline]
    fn refund(&self, receipt: Receipt) -> bool {
        self.cell().refund(receipt)
    }
}

impl<L: Leg + ?Sized> Leg for &L {
    #[inline]
    fn charge(&self, cost: u64) -> Result<(Decision, Option<Receipt>), CheckError> {
        (**self).charge(cost)
    }
    #[inline]
    fn refund(&self, receipt: Receipt) -> bool {
        (**self).refund(receipt)
    }
}

/// Checks `cost` against every leg, all or nothing (see the [module docs](crate::multi) for
/// the exact guarantee).
///
/// Legs are charged in order, so put the limit most likely to deny first: a check it denies
/// then writes nothing at all. Admitted, the decision is the binding limit's (the one with the
/// least `remaining`; `reset_after` is the longest of all). Denied, it is the first denying
/// limit's, so its `retry_after` is a lower bound on when the whole check can pass. An error
/// from any leg (a cost above one limit's capacity, a full table) refunds the others and is
/// returned.
pub fn check_all<L: Leg>(legs: &[L], cost: u64) -> Result<Decision, CheckError> {
    check_each(&|i: usize| &legs[i], 0, legs.len(), cost)
}

/// [`check_all`] over legs `from..n` made on demand by `leg`.
pub(crate) fn check_each<L: Leg, F: Fn(usize) -> L>(
    leg: &F,
    from: usize,
    n: usize,
    cost: u64,
) -> Result<Decision, CheckError> {
    if from >= n {
        // No limit left: nothing to refuse.
        return Ok(Decision::allow(u64::MAX, u64::MAX, 0));
    }
    let first = leg(from);
    let (decision, receipt) = first.charge(cost)?;
    if decision.is_denied() {
        return Ok(decision);
    }
    // Recursion keeps the receipts on the stack without an allocator, and refunds in reverse
    // order of charging (a later leg on the same state is undone before an earlier one).
    let others = check_each(leg, from + 1, n, cost);
    match others {
        Ok(d) if d.is_allowed() => Ok(combine_admissions(decision, d)),
        _ => {
            if let Some(receipt) = receipt {
                first.refund(receipt);
            }
            others
        }
    }
}

/// Two admissions as one, as [`check_all`] reports them: the counts of the one with less
/// `remaining` (`a` on a tie), and the longer `reset_after`.
///
/// For stores that run their own legs (a multi-check over the network) and must answer exactly
/// as [`check_all`] does: fold the admitted legs' decisions from the last one back, starting
/// from the no-limit admission `Decision::allow(u64::MAX, u64::MAX, 0)`.
///
/// ```
/// use traffik_core::{combine_admissions, Decision};
///
/// let per_second = Decision::allow(10, 4, 100);
/// let per_minute = Decision::allow(15, 4, 60_000);
/// let both = combine_admissions(per_second, per_minute);
/// // A tie on `remaining` keeps the first one's counts; the reset is the longer one.
/// assert_eq!((both.limit(), both.remaining(), both.reset_after_nanos()), (10, 4, 60_000));
/// let tighter = combine_admissions(per_second, Decision::allow(15, 3, 50));
/// assert_eq!((tighter.limit(), tighter.remaining(), tighter.reset_after_nanos()), (15, 3, 100));
/// ```
pub fn combine_admissions(a: Decision, b: Decision) -> Decision {
    let binding = if b.remaining() < a.remaining() { b } else { a };
    Decision::allow(
        binding.limit(),
        binding.remaining(),
        a.reset_after_nanos().max(b.reset_after_nanos()),
    )
}

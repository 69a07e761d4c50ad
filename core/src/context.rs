//! Charges collected during a unit of work and applied together at its end: [`QuotaContext`].
//!
//! A context is opened over any [`AsyncLimiter`] (the in-process tables, Redis, Memcached, the
//! failover wrapper). [`charge`](QuotaContext::charge) records a cost for a key in the
//! context, merged with what the context already holds for that key, after checking that the
//! key could take the merged cost now; nothing reaches the limiter yet.
//! [`apply`](QuotaContext::apply) then sends one check per key with its merged cost, and
//! dropping the context (or [`cancel`](QuotaContext::cancel)) forgets everything.
//!
//! # Exact rules
//!
//! * **A charge sees the context.** A charge of `cost` for `key` is accepted when
//!   `pending(key) + cost <= remaining`, `remaining` being what a peek at the key reports
//!   now. For every built-in algorithm and store, a check of cost `c` at an instant is admitted
//!   exactly when `c <= remaining` at that instant, so an accepted charge is one the limiter
//!   would have admitted together with the context's earlier ones, at that instant. A refused
//!   charge records nothing.
//! * **Nothing is held.** Pending charges live in the context only: other callers are not
//!   slowed by them, and time keeps refilling the key. So by the time of `apply` the key may
//!   have less room than when the charges were accepted.
//! * **Apply is all-or-nothing per key, not across keys.** Each key's merged cost is one
//!   check, which either charges all of it or nothing. Keys are applied in the order they
//!   were first charged; every key is tried, whatever happened to the others. The
//!   [`ApplyReport`] says per key whether it was charged ([`Applied`](Outcome::Applied)),
//!   refused with nothing charged ([`Denied`](Outcome::Denied)), or failed with the limiter's
//!   error ([`Failed`](Outcome::Failed), whose [`ErrorKind`](crate::ErrorKind) says whether a
//!   charge may have happened). To charge several limits all-or-nothing, use a multi-limit.
//!
//! Each charge is a linear scan of the context's keys: contexts are meant for the handful of
//! keys one unit of work touches.

use crate::backend::AsyncLimiter;
use crate::decision::Decision;
use alloc::borrow::ToOwned;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::fmt;

/// What a [`QuotaContext::charge`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContextCharge {
    /// Whether the charge was accepted into the context.
    pub accepted: bool,
    /// The context's pending cost for the key after this call.
    pub pending: u64,
    /// What the key has left now beyond the context's pending cost for it.
    pub remaining: u64,
    /// The key's limit, as the limiter reports it.
    pub limit: u64,
}

/// Why a context call could not be answered.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextError<E> {
    /// The limiter failed (nothing was recorded in the context).
    Limiter(E),
    /// A `_now` call on a limiter that only answers through its futures (a network store);
    /// use the async call.
    NotImmediate,
}

impl<E: fmt::Display> fmt::Display for ContextError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::Limiter(e) => write!(f, "limiter failed: {e}"),
            ContextError::NotImmediate => f.write_str(
                "this limiter answers only asynchronously; use charge/apply instead of the _now calls",
            ),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for ContextError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ContextError::Limiter(e) => Some(e),
            ContextError::NotImmediate => None,
        }
    }
}

/// What applying one key's merged cost did.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome<E> {
    /// The whole merged cost was charged.
    Applied(Decision),
    /// The key had no room for the merged cost: nothing was charged.
    Denied(Decision),
    /// The limiter failed; see the error's kind for whether anything was charged.
    Failed(E),
    /// An [`apply_now`](QuotaContext::apply_now) on a limiter that could not answer on the
    /// spot: nothing was charged.
    NotImmediate,
}

impl<E> Outcome<E> {
    /// Whether the merged cost was charged.
    pub fn is_applied(&self) -> bool {
        matches!(self, Outcome::Applied(_))
    }
}

/// Per key, in first-charged order: its merged cost and what applying it did.
#[derive(Debug, PartialEq, Eq)]
pub struct ApplyReport<O, E> {
    /// `(key, merged cost, outcome)` for every key the context charged.
    pub keys: Vec<(O, u64, Outcome<E>)>,
}

impl<O, E> ApplyReport<O, E> {
    /// Whether every key's merged cost was charged.
    pub fn all_applied(&self) -> bool {
        self.keys.iter().all(|(_, _, o)| o.is_applied())
    }

    /// The keys whose merged cost was not (or not known to be) charged.
    pub fn failed(&self) -> impl Iterator<Item = &O> {
        self.keys
            .iter()
            .filter(|(_, _, o)| !o.is_applied())
            .map(|(k, _, _)| k)
    }
}

/// Charges collected for a unit of work, applied together or cancelled; see the
/// [module docs](self).
///
/// ```
/// use traffik_core::{Gcra, KeyedLimiter, ManualClock, QuotaContext, Rate, TableConfig};
///
/// let table: KeyedLimiter<str, _, _> = KeyedLimiter::new(
///     Gcra::new(Rate::per_second(10))?,
///     ManualClock::new(),
///     TableConfig::new(64, [1, 2, 3, 4]),
/// )?;
/// let mut ctx = QuotaContext::new(&table);
/// assert!(ctx.charge_now("alice", 6)?.accepted);
/// assert!(ctx.charge_now("bob", 2)?.accepted);
/// let more = ctx.charge_now("alice", 5)?; // 6 pending + 5 > 10
/// assert!(!more.accepted);
/// assert_eq!(table.peek("alice").remaining(), 10); // nothing charged yet
/// let report = ctx.apply_now();
/// assert!(report.all_applied());
/// assert_eq!(table.peek("alice").remaining(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a context charges nothing until apply; dropping it cancels"]
pub struct QuotaContext<'l, K: ?Sized + ToOwned, L> {
    limiter: &'l L,
    pending: Vec<(K::Owned, u64)>,
}

impl<K: ?Sized + ToOwned, L> fmt::Debug for QuotaContext<'_, K, L>
where
    K::Owned: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaContext")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

type Report<K, L> = ApplyReport<<K as ToOwned>::Owned, <L as AsyncLimiter<K>>::Error>;

impl<'l, K, L> QuotaContext<'l, K, L>
where
    K: ?Sized + ToOwned + PartialEq,
    L: AsyncLimiter<K>,
{
    /// An empty context over `limiter`.
    pub fn new(limiter: &'l L) -> Self {
        QuotaContext {
            limiter,
            pending: Vec::new(),
        }
    }

    /// The context's pending cost for `key`.
    pub fn pending(&self, key: &K) -> u64 {
        self.position(key).map_or(0, |i| self.pending[i].1)
    }

    /// How many distinct keys the context holds charges for.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether the context holds no charge.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn position(&self, key: &K) -> Option<usize> {
        self.pending.iter().position(|(k, _)| k.borrow() == key)
    }

    /// Records `cost` for `key` if the key could take it with the context's pending cost now.
    fn record(&mut self, key: &K, cost: u64, peek: Decision) -> ContextCharge {
        let at = self.position(key);
        let before = at.map_or(0, |i| self.pending[i].1);
        let remaining = peek.remaining();
        match before.checked_add(cost).filter(|total| *total <= remaining) {
            Some(total) => {
                match at {
                    Some(i) => self.pending[i].1 = total,
                    None if cost > 0 => self.pending.push((key.to_owned(), total)),
                    None => {}
                }
                ContextCharge {
                    accepted: true,
                    pending: total,
                    remaining: remaining - total,
                    limit: peek.limit(),
                }
            }
            None => ContextCharge {
                accepted: false,
                pending: before,
                remaining: remaining.saturating_sub(before),
                limit: peek.limit(),
            },
        }
    }

    /// Charges `cost` for `key` into the context (see the [module docs](self) for the rule).
    pub async fn charge(
        &mut self,
        key: &K,
        cost: u64,
    ) -> Result<ContextCharge, ContextError<L::Error>> {
        let peek = self
            .limiter
            .peek(key)
            .await
            .map_err(ContextError::Limiter)?;
        Ok(self.record(key, cost, peek))
    }

    /// [`charge`](Self::charge) answered on the spot, for limiters that never wait (the
    /// in-process tables); [`ContextError::NotImmediate`] otherwise.
    pub fn charge_now(
        &mut self,
        key: &K,
        cost: u64,
    ) -> Result<ContextCharge, ContextError<L::Error>> {
        let peek = self
            .limiter
            .peek_now(key)
            .ok_or(ContextError::NotImmediate)?
            .map_err(ContextError::Limiter)?;
        Ok(self.record(key, cost, peek))
    }

    /// Applies every key's merged cost, one all-or-nothing check per key.
    pub async fn apply(self) -> Report<K, L> {
        let mut keys = Vec::with_capacity(self.pending.len());
        for (key, cost) in self.pending {
            let outcome = outcome(self.limiter.check(key.borrow(), cost).await);
            keys.push((key, cost, outcome));
        }
        ApplyReport { keys }
    }

    /// [`apply`](Self::apply) on the spot; a key the limiter cannot check on the spot is
    /// reported [`Outcome::NotImmediate`], uncharged.
    pub fn apply_now(self) -> Report<K, L> {
        let keys = self
            .pending
            .into_iter()
            .map(|(key, cost)| {
                let outcome = match self.limiter.check_now(key.borrow(), cost) {
                    Some(result) => outcome(result),
                    None => Outcome::NotImmediate,
                };
                (key, cost, outcome)
            })
            .collect();
        ApplyReport { keys }
    }

    /// Forgets every pending charge (as dropping the context does).
    pub fn cancel(self) {}
}

fn outcome<E>(result: Result<Decision, E>) -> Outcome<E> {
    match result {
        Ok(d) if d.is_allowed() => Outcome::Applied(d),
        Ok(d) => Outcome::Denied(d),
        Err(e) => Outcome::Failed(e),
    }
}

//! The GCRA step shared by the strategies whose rate or allowance moves between checks
//! ([`Adaptive`](crate::Adaptive), [`Schedule`](crate::Schedule),
//! [`PriorityBudget`](crate::PriorityBudget)).
//!
//! All of them store one word, the key's theoretical arrival time (TAT), and read it the way
//! [`Gcra`](crate::Gcra) and [`Live`](crate::Live) do: the TAT is kept whatever the current
//! interval `T` and tolerance, a check of `cost` is admitted when
//! `max(TAT, now) + cost * T <= now + tolerance`, and a charge stores that new TAT. So a change
//! of rate neither hands out a fresh burst nor takes back what was already waited for.

use crate::algorithm::Transition;
use crate::decision::Decision;

/// One GCRA step with the interval and tolerance in force at this check. `limit` is what the
/// decision reports as the limit (the allowance at this level); `cost * interval` must not
/// exceed `tolerance` (the caller checks `cost` against the allowance first). `per_unit`
/// divides by `interval` (a precomputed reciprocal where the interval is fixed).
#[inline]
pub(crate) fn step(
    interval: u64,
    per_unit: impl Fn(u64) -> u64,
    tolerance: u64,
    limit: u64,
    tat: u64,
    now: u64,
    cost: u64,
) -> Transition {
    let base = if tat > now { tat } else { now };
    let new_tat = base.saturating_add(cost.saturating_mul(interval));
    let horizon = now.saturating_add(tolerance);
    if new_tat <= horizon {
        let remaining = per_unit(horizon - new_tat);
        Transition::store(
            Decision::allow(limit, remaining, new_tat - now),
            new_tat,
            cost,
        )
    } else {
        let remaining = per_unit(horizon.saturating_sub(base));
        Transition::keep(Decision::deny(
            limit,
            remaining,
            new_tat - horizon,
            base - now,
        ))
    }
}

/// Whole units still free under `tolerance` for a stored TAT at `now`.
#[inline]
pub(crate) fn free_units(interval: u64, tolerance: u64, tat: u64, now: u64) -> u64 {
    let base = if tat > now { tat } else { now };
    now.saturating_add(tolerance).saturating_sub(base) / interval
}

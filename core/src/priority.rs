//! One budget per key shared by several priorities: [`PriorityBudget`].
//!
//! A key has one budget of `budget` units, refilled at a rate, kept as one state word (the
//! GCRA theoretical arrival time, TAT). Every priority draws on that same budget, but priority
//! `p` may only take from it while what is left after the charge stays at or above its
//! reserve, `reserve(p)`. Priorities are numbered from 0 (lowest); reserves must not grow with
//! the priority, so as the budget drains the lowest priority is refused first and the highest
//! (usually reserve 0) keeps access longest. A low-priority check never charges the high
//! priorities' reserve, and a high-priority charge is seen at once by every priority.
//!
//! Exact rule, with `T = ceil(period / limit)`: priority `p` is admitted for `cost` at `now`
//! when `max(TAT, now) + cost * T <= now + (budget - reserve(p)) * T`, and the charge stores
//! that new TAT. What is left of the shared budget is
//! `floor((now + budget * T - max(TAT, now)) / T)`.
//!
//! **Admission bound.** The budget as a whole is GCRA with burst `budget`: at most
//! `budget + ceil(W / T) - 1` units over all priorities in any window of `W` nanoseconds
//! (each priority's horizon is within the highest's). Priority `p` alone gets at most
//! `budget - reserve(p) + ceil(W / T) - 1`.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition};
use crate::cell::StateCell;
use crate::clock::Clock;
use crate::decision::{CheckError, Decision};
use crate::divisor::Divisor;
use crate::rate::Rate;
use crate::tat;
use core::fmt;

/// The most priorities one budget serves.
pub const MAX_PRIORITIES: usize = 8;

/// Why a [`PriorityBudget`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriorityError {
    /// The rate or budget is not valid for GCRA.
    Config(ConfigError),
    /// No reserves were given, or more than [`MAX_PRIORITIES`].
    Levels {
        /// How many were given.
        count: usize,
    },
    /// A reserve must be below the budget, or its priority could never be admitted.
    ReserveTooLarge {
        /// The priority.
        priority: usize,
        /// Its reserve.
        reserve: u64,
        /// The budget.
        budget: u64,
    },
    /// A higher priority may not reserve more than a lower one (it would be refused first).
    ReserveIncreases {
        /// The priority whose reserve is above the one below it.
        priority: usize,
    },
}

impl fmt::Display for PriorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriorityError::Config(e) => write!(f, "invalid priority budget: {e}"),
            PriorityError::Levels { count } => write!(
                f,
                "a priority budget takes 1 to {MAX_PRIORITIES} reserves, not {count}"
            ),
            PriorityError::ReserveTooLarge {
                priority,
                reserve,
                budget,
            } => write!(
                f,
                "priority {priority}'s reserve {reserve} must be below the budget {budget}"
            ),
            PriorityError::ReserveIncreases { priority } => write!(
                f,
                "priority {priority} reserves more than priority {}; reserves must not grow \
                 with the priority",
                priority - 1
            ),
        }
    }
}

impl core::error::Error for PriorityError {}

impl From<ConfigError> for PriorityError {
    fn from(e: ConfigError) -> Self {
        PriorityError::Config(e)
    }
}

/// Why a priority check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriorityCheckError {
    /// No such priority: the budget has `levels` of them, numbered from 0.
    UnknownPriority {
        /// The priority asked for.
        priority: usize,
        /// How many the budget has.
        levels: usize,
    },
    /// The check itself failed (the cost is above this priority's share, or a full table).
    Check(CheckError),
}

impl fmt::Display for PriorityCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriorityCheckError::UnknownPriority { priority, levels } => write!(
                f,
                "priority {priority} is unknown: this budget has priorities 0 to {}",
                levels - 1
            ),
            PriorityCheckError::Check(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for PriorityCheckError {}

impl From<CheckError> for PriorityCheckError {
    fn from(e: CheckError) -> Self {
        PriorityCheckError::Check(e)
    }
}

/// A budget shared by priorities, the lowest refused first; see the [module docs](self).
///
/// As an [`Algorithm`] on its own it checks as the highest priority. Check a priority through
/// [`level`](Self::level), [`PriorityLimiter`], or
/// `KeyedLimiter::check_priority` (feature `alloc`).
///
/// ```
/// use traffik_core::{Algorithm, PriorityBudget, Rate};
///
/// // 100 units refilled at 100/s; low keeps 50 back, normal 20, high nothing.
/// let budget = PriorityBudget::new(Rate::per_second(100), 100, &[50, 20, 0])?;
/// let low = budget.level(0)?;
/// let t = low.decide(0, 0, 50)?; // low may take 50 ...
/// assert!(t.decision.is_allowed());
/// let tat = t.next.unwrap();
/// assert!(low.decide(tat, 0, 1)?.decision.is_denied()); // ... and no more
/// assert!(budget.level(2)?.decide(tat, 0, 50)?.decision.is_allowed()); // high takes the rest
/// assert_eq!(budget.remaining(tat, 0), 50);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorityBudget {
    interval: u64,
    per_unit: Divisor,
    budget: u64,
    levels: usize,
    reserves: [u64; MAX_PRIORITIES],
}

/// One priority of a [`PriorityBudget`], checkable as an [`Algorithm`] on the shared state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorityLevel {
    interval: u64,
    per_unit: Divisor,
    /// `budget - reserve`: what this priority may take from a full budget.
    share: u64,
}

/// What a [`PriorityBudget`] key looks like now; see [`PriorityBudget::details`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PriorityDetails {
    /// Units left of the shared budget.
    pub remaining: u64,
    /// How many priorities may still take at least one unit now (the top ones).
    pub open_levels: usize,
    /// How far the key's TAT runs ahead of now, in nanoseconds.
    pub ahead_nanos: u64,
}

impl PriorityBudget {
    /// A budget of `budget` units refilled at `rate`, with `reserves[p]` kept back from
    /// priority `p` (0 is the lowest).
    pub fn new(rate: Rate, budget: u64, reserves: &[u64]) -> Result<Self, PriorityError> {
        let (limit, period) = finite_rate(rate)?;
        let interval = period.div_ceil(limit);
        crate::gcra::tolerance(budget, interval)?;
        if reserves.is_empty() || reserves.len() > MAX_PRIORITIES {
            return Err(PriorityError::Levels {
                count: reserves.len(),
            });
        }
        let mut kept = [0; MAX_PRIORITIES];
        for (priority, &reserve) in reserves.iter().enumerate() {
            if reserve >= budget {
                return Err(PriorityError::ReserveTooLarge {
                    priority,
                    reserve,
                    budget,
                });
            }
            if priority > 0 && reserve > reserves[priority - 1] {
                return Err(PriorityError::ReserveIncreases { priority });
            }
            kept[priority] = reserve;
        }
        Ok(PriorityBudget {
            interval,
            per_unit: Divisor::new(interval),
            budget,
            levels: reserves.len(),
            reserves: kept,
        })
    }

    /// The number of priorities.
    pub const fn levels(&self) -> usize {
        self.levels
    }

    /// The whole budget.
    pub const fn budget(&self) -> u64 {
        self.budget
    }

    /// Priority `priority`, as an algorithm on the shared state.
    pub fn level(&self, priority: usize) -> Result<PriorityLevel, PriorityCheckError> {
        if priority >= self.levels {
            return Err(PriorityCheckError::UnknownPriority {
                priority,
                levels: self.levels,
            });
        }
        Ok(PriorityLevel {
            interval: self.interval,
            per_unit: self.per_unit,
            share: self.budget - self.reserves[priority],
        })
    }

    fn top(&self) -> PriorityLevel {
        PriorityLevel {
            interval: self.interval,
            per_unit: self.per_unit,
            share: self.budget - self.reserves[self.levels - 1],
        }
    }

    /// Units left of the shared budget for `state` at `now`.
    pub fn remaining(&self, state: u64, now: u64) -> u64 {
        tat::free_units(self.interval, self.budget * self.interval, state, now)
    }

    /// What `state` means at `now`.
    pub fn details(&self, state: u64, now: u64) -> PriorityDetails {
        let remaining = self.remaining(state, now);
        let open_levels = self.reserves[..self.levels]
            .iter()
            .filter(|&&r| remaining > r)
            .count();
        PriorityDetails {
            remaining,
            open_levels,
            ahead_nanos: state.saturating_sub(now),
        }
    }
}

impl PriorityLevel {
    /// This priority's GCRA parameters: the shared interval, and its share (the budget less
    /// its reserve) as the burst.
    pub const fn params(&self) -> crate::gcra::GcraParams {
        crate::gcra::GcraParams::from_parts(self.interval, self.share)
    }
}

impl Algorithm for PriorityLevel {
    /// This priority's share: the budget less its reserve.
    #[inline]
    fn capacity(&self) -> u64 {
        self.share
    }

    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        if cost > self.share {
            return Err(CheckError::InsufficientCapacity { max: self.share });
        }
        Ok(tat::step(
            self.interval,
            |x| self.per_unit.div(x),
            self.share * self.interval,
            self.share,
            state,
            now,
            cost,
        ))
    }

    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        state.saturating_sub(now)
    }
}

/// As the highest priority.
impl Algorithm for PriorityBudget {
    #[inline]
    fn capacity(&self) -> u64 {
        self.top().capacity()
    }
    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        self.top().decide(state, now, cost)
    }
    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        state.saturating_sub(now)
    }
}

/// A single key's [`PriorityBudget`]: one state word, one clock.
///
/// ```
/// use traffik_core::{ManualClock, PriorityBudget, PriorityLimiter, Rate};
///
/// const LOW: usize = 0;
/// const HIGH: usize = 1;
/// let clock = ManualClock::new();
/// let budget = PriorityBudget::new(Rate::per_second(10), 10, &[4, 0])?;
/// let limiter = PriorityLimiter::new(budget, &clock);
/// assert!(limiter.check(LOW, 6)?.is_allowed()); // 4 left: low's reserve
/// assert!(limiter.check(LOW, 1)?.is_denied());
/// assert!(limiter.check(HIGH, 4)?.is_allowed());
/// assert_eq!(limiter.remaining(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PriorityLimiter<C> {
    budget: PriorityBudget,
    clock: C,
    cell: StateCell,
}

impl<C: Clock> PriorityLimiter<C> {
    /// A fresh (full) budget.
    pub fn new(budget: PriorityBudget, clock: C) -> Self {
        PriorityLimiter {
            budget,
            clock,
            cell: StateCell::new(),
        }
    }

    /// Checks `cost` at `priority`, charging the shared budget if admitted.
    #[must_use = "a denied check charges nothing: act on the decision"]
    #[inline]
    pub fn check(&self, priority: usize, cost: u64) -> Result<Decision, PriorityCheckError> {
        let level = self.budget.level(priority)?;
        Ok(self.cell.apply_now(&level, &self.clock, cost)?)
    }

    /// What `priority` could take now, without charging.
    pub fn peek(&self, priority: usize) -> Result<Decision, PriorityCheckError> {
        let level = self.budget.level(priority)?;
        Ok(self.cell.peek(&level, self.clock.now()))
    }

    /// Units left of the shared budget now.
    pub fn remaining(&self) -> u64 {
        self.budget.remaining(self.cell.load(), self.clock.now())
    }

    /// The typed state now.
    pub fn details(&self) -> PriorityDetails {
        self.budget.details(self.cell.load(), self.clock.now())
    }

    /// Refills the budget.
    pub fn reset(&self) {
        self.cell.reset();
    }

    /// The budget's configuration.
    pub fn budget(&self) -> &PriorityBudget {
        &self.budget
    }
}

#[cfg(feature = "alloc")]
mod keyed {
    use super::*;
    use crate::key::Key;
    use crate::table::KeyedLimiter;

    impl<K: Key + ?Sized, C: Clock> KeyedLimiter<K, PriorityBudget, C> {
        /// Checks `cost` for `key` at `priority`, all priorities of a key sharing one state
        /// word (see [`PriorityBudget`]).
        ///
        /// ```
        /// use traffik_core::{KeyedLimiter, ManualClock, PriorityBudget, Rate, TableConfig};
        ///
        /// let budget = PriorityBudget::new(Rate::per_second(100), 100, &[50, 20, 0])?;
        /// let table: KeyedLimiter<str, _, _> =
        ///     KeyedLimiter::new(budget, ManualClock::new(), TableConfig::new(64, [1, 2, 3, 4]))?;
        /// assert!(table.check_priority("tenant", 0, 50)?.is_allowed());
        /// assert!(table.check_priority("tenant", 0, 1)?.is_denied());
        /// assert!(table.check_priority("other", 0, 1)?.is_allowed()); // its own budget
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        #[must_use = "a denied check charges nothing: act on the decision"]
        #[inline]
        pub fn check_priority(
            &self,
            key: &K,
            priority: usize,
            cost: u64,
        ) -> Result<Decision, PriorityCheckError> {
            let level = self.algorithm().level(priority)?;
            Ok(self.check_key_with(key, &level, cost)?)
        }

        /// What `key` could take at `priority` now, without charging; an unknown key reads as
        /// a full budget and is not added.
        pub fn peek_priority(
            &self,
            key: &K,
            priority: usize,
        ) -> Result<Decision, PriorityCheckError> {
            let level = self.algorithm().level(priority)?;
            Ok(self.check_key_with(key, &level, 0)?)
        }
    }
}

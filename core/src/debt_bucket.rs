//! The token bucket with debt: a key may borrow up to `max_debt` tokens beyond what it holds,
//! and must repay all of it before its next admission.
//!
//! **Rule.** With `balance` tokens (at most `capacity`, negative while in debt), a check of
//! `cost` is admitted when the key owes nothing (`balance >= 0`) and the charge leaves it owing
//! at most `max_debt` (`balance - cost >= -max_debt`). Tokens refill at the rate, exactly as in
//! [`TokenBucket`], repaying debt first. So "10/s" with capacity 10 and
//! debt 10 admits a cost of 20 at once (balance -10), then nothing for one second while the
//! debt is repaid, then one per 100 ms: the refill rate. With `max_debt = 0` it decides exactly
//! like the token bucket.
//!
//! **Why not a bigger bucket.** A bucket of `capacity + max_debt` tokens would admit the same
//! first burst, but it lets a key keep borrowing in small steps; here a key in debt is refused
//! until it is out of debt, so borrowing is only ever the tail of one admission. Unit-cost
//! checks from a full bucket take `capacity + 1` (the last one borrows one token), and a key
//! that has borrowed waits for the whole debt to be repaid.
//!
//! State: exactly the token bucket's `D`, tokens taken measured on the production schedule
//! `P(t) = floor(t * limit / period)`; the balance is `capacity - max(0, D - P(now))`, so `0`
//! is fresh. `D` runs at most `capacity + max_debt` ahead of `P(now)`.
//!
//! **Admission bound.** In any window `[t, t + W)` at most
//! `capacity + max_debt + P(t + W - 1) - P(t)` is admitted; for `W = period` that is at most
//! `capacity + max_debt + limit`. Proof sketch: the balance is at most `capacity` at `t`, gains
//! only what is produced in the window, and every admission leaves it at `-max_debt` or above.
//! The bound is reached (a full bucket spends `capacity` at `t`, then `limit + max_debt` in one
//! check at the window's end), but over longer spans the debt is repaid before the key is
//! admitted again, so the average stays at the rate.
//!
//! **Stale and skewed readings.** As for the token bucket: a reading behind another thread's
//! sees fewer tokens produced, so a larger shortfall, which only makes both conditions above
//! stricter; `D` never decreases.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition, MAX_SPAN};
use crate::decision::{CheckError, Decision};
use crate::rate::Rate;
use crate::token_bucket::TokenBucket;

/// A token bucket whose keys may go into debt up to `max_debt` tokens, repaid before the next
/// admission.
///
/// ```
/// use traffik_core::{Algorithm, DebtBucket, Rate};
///
/// // 10 tokens, refilled at 1 per 100 ms, 10 tokens of debt allowed.
/// let bucket = DebtBucket::new(Rate::per_second(10), 10)?;
/// let big = bucket.decide(0, 0, 20)?; // 10 held + 10 borrowed
/// assert!(big.decision.is_allowed());
/// let state = big.next.unwrap();
/// assert_eq!(bucket.balance(state, 0).debt(), 10);
/// // Refused until the debt is repaid: 10 tokens, one second.
/// let denied = bucket.decide(state, 0, 1)?;
/// assert_eq!(denied.decision.retry_after_nanos(), 1_000_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebtBucket {
    bucket: TokenBucket,
    capacity: u64,
    max_debt: u64,
}

/// What a [`DebtBucket`] key holds at some moment: tokens in hand, or tokens owed (never both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DebtBalance {
    tokens: u64,
    debt: u64,
}

impl DebtBalance {
    /// Tokens in hand (zero while in debt).
    #[inline]
    pub const fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Tokens owed (zero unless in debt); the key is refused until this is zero.
    #[inline]
    pub const fn debt(&self) -> u64 {
        self.debt
    }

    /// Whether the key owes tokens.
    #[inline]
    pub const fn in_debt(&self) -> bool {
        self.debt > 0
    }
}

impl DebtBucket {
    /// A bucket holding the rate's limit, with `max_debt` tokens of debt allowed.
    pub fn new(rate: Rate, max_debt: u64) -> Result<Self, ConfigError> {
        Self::with_capacity(rate, rate.limit(), max_debt)
    }

    /// A bucket of an explicit capacity (at least 1) with `max_debt` tokens of debt allowed;
    /// `capacity + max_debt` must not exceed 2^62 - 1.
    pub fn with_capacity(rate: Rate, capacity: u64, max_debt: u64) -> Result<Self, ConfigError> {
        finite_rate(rate)?;
        if capacity == 0 {
            return Err(ConfigError::ZeroBurst);
        }
        match capacity.checked_add(max_debt) {
            Some(span) if span <= MAX_SPAN => {}
            _ => return Err(ConfigError::BurstOverflow),
        }
        Ok(DebtBucket {
            bucket: TokenBucket::with_capacity(rate, capacity)?,
            capacity,
            max_debt,
        })
    }

    /// The bucket's capacity (tokens held when full).
    pub const fn bucket_capacity(&self) -> u64 {
        self.capacity
    }

    /// The most tokens a key may owe.
    pub const fn max_debt(&self) -> u64 {
        self.max_debt
    }

    /// Tokens missing from a full bucket at `now`: `0..=capacity + max_debt`.
    #[inline]
    fn short(&self, taken: u64, now: u64) -> u64 {
        taken.saturating_sub(self.bucket.produced(now))
    }

    /// The tokens or debt a key with `state` has at `now`: the typed detail behind a peek.
    pub fn balance(&self, state: u64, now: u64) -> DebtBalance {
        let short = self.short(state, now);
        DebtBalance {
            tokens: self.capacity.saturating_sub(short),
            debt: short.saturating_sub(self.capacity),
        }
    }

    /// The largest cost admitted with a shortfall of `short`.
    #[inline]
    fn admissible(&self, short: u64) -> u64 {
        if short > self.capacity {
            0
        } else {
            self.capacity + self.max_debt - short
        }
    }
}

impl Algorithm for DebtBucket {
    #[inline]
    fn capacity(&self) -> u64 {
        self.capacity + self.max_debt
    }

    #[inline]
    fn decide(&self, taken: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        let most = self.capacity + self.max_debt;
        if cost > most {
            return Err(CheckError::InsufficientCapacity { max: most });
        }
        let produced = self.bucket.produced(now);
        let short = taken.saturating_sub(produced);
        let available = self.admissible(short);
        if cost <= available {
            let next = produced.max(taken).saturating_add(cost);
            let reset = self.bucket.time_for(next).saturating_sub(now);
            let decision = Decision::allow(most, self.admissible(short + cost), reset);
            Ok(Transition::store(decision, next, cost))
        } else {
            // Admitted once the shortfall is at most `capacity` (out of debt) and at most
            // `capacity + max_debt - cost`: once P(t) >= taken - min of the two.
            let room = self.capacity.min(most - cost);
            let ready = self.bucket.time_for(taken - room);
            let decision = Decision::deny(
                most,
                available,
                ready.saturating_sub(now),
                self.bucket.time_for(taken).saturating_sub(now),
            );
            Ok(Transition::keep(decision))
        }
    }

    #[inline]
    fn reset_after(&self, taken: u64, now: u64) -> u64 {
        self.bucket.reset_after(taken, now)
    }
}

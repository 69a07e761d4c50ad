//! A quota per fixed period whose unused part partly carries into the next period.
//!
//! **Rule.** Periods are the aligned windows of the rate's period. Each period grants the rate's
//! `limit` plus what the previous period carried over. When a period ends having used `used`
//! of its quota, the next period receives
//! `carry = min(floor((limit - used) * numerator / denominator), cap)` (zero when
//! `used >= limit`): a fraction of what was left of the period's *own* limit, up to an
//! absolute cap. Quota carried in is spent after the period's own limit and never carries
//! again, so carry only ever comes from the immediately previous period. A period nobody
//! checked in left its whole limit unused, so the period after it receives the largest carry,
//! `max_carry = min(floor(limit * numerator / denominator), cap)`; a fresh key (`0`) is treated
//! the same way and starts with `limit + max_carry`.
//!
//! Traffik's example, "100/s" with rollover 1/2 and a cap of 50: a period that uses 60 leaves
//! 40 of its own limit, carries `min(20, 50) = 20`, and the next period admits 120; the 121st
//! is denied.
//!
//! State: `index << (u + c) | used << c | (max_carry - carried)`, where `u` and `c` are the bits
//! for `limit + max_carry` and `max_carry`; storing the carry as its shortfall from the maximum
//! makes `0` fresh.
//!
//! **Admission bound.** At most `limit + max_carry` in any aligned period, and at most
//! `2 * limit + max_carry` in any window of one period: a window straddling a boundary sees the
//! tail of period `k` (at most its use `u`) and the head of `k + 1` (at most
//! `limit + carry(u)`). If `u >= limit` nothing carries and the sum is at most
//! `limit + max_carry + limit`; otherwise `u + carry(u) <= u + (limit - u) = limit` because the
//! fraction is at most 1.
//!
//! **Stale and skewed readings.** As for [`FixedWindow`](crate::FixedWindow): a reading from
//! before the stored period is charged to the stored period with its counts as they are, which
//! only makes it stricter (more use also means less carry), and the stored period never moves
//! back.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition};
use crate::decision::{CheckError, Decision};
use crate::rate::Rate;
use crate::window::{bits_for, Position, Windows};

/// Largest limit accepted: the use and carry counts plus a window index of at least 16 bits
/// fit in the state whatever the rollover.
const MAX_LIMIT: u64 = (1 << 22) - 1;

/// How much unused quota carries into the next period: an exact fraction
/// (`numerator / denominator`, at most 1) of what the period left unused, up to `cap`.
///
/// ```
/// use traffik_core::Rollover;
///
/// let half_up_to_50 = Rollover::new(1, 2, 50);
/// assert_eq!(half_up_to_50.carry(100, 40), 20);
/// assert_eq!(half_up_to_50.carry(100, 100), 50);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rollover {
    numerator: u32,
    denominator: u32,
    cap: u64,
}

impl Rollover {
    /// `numerator / denominator` of the unused quota, at most `cap` (use `u64::MAX` for no
    /// cap). Validated when the algorithm is built: the denominator must be non-zero and the
    /// fraction at most 1.
    pub const fn new(numerator: u32, denominator: u32, cap: u64) -> Self {
        Rollover {
            numerator,
            denominator,
            cap,
        }
    }

    /// The fraction's numerator.
    pub const fn numerator(&self) -> u32 {
        self.numerator
    }

    /// The fraction's denominator.
    pub const fn denominator(&self) -> u32 {
        self.denominator
    }

    /// The absolute cap on carried quota.
    pub const fn cap(&self) -> u64 {
        self.cap
    }

    /// What a period of `limit` that left `unused` of it unused carries into the next one:
    /// `min(floor(unused * numerator / denominator), cap)` (zero for a zero denominator).
    pub const fn carry(&self, limit: u64, unused: u64) -> u64 {
        if self.denominator == 0 {
            return 0;
        }
        let unused = if unused < limit { unused } else { limit };
        let share = (unused as u128 * self.numerator as u128) / self.denominator as u128;
        if share < self.cap as u128 {
            share as u64
        } else {
            self.cap
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.denominator == 0 || self.numerator > self.denominator {
            return Err(ConfigError::RolloverFraction {
                numerator: self.numerator,
                denominator: self.denominator,
            });
        }
        Ok(())
    }
}

/// A fixed-period quota whose unused part partly rolls over into the next period.
///
/// ```
/// use traffik_core::{Algorithm, QuotaRollover, Rate, Rollover};
///
/// let quota = QuotaRollover::new(Rate::per_second(100), Rollover::new(1, 2, 50))?;
/// // A fresh key starts as if the period before had gone unused: 100 + 50.
/// let t = quota.decide(0, 0, 60)?;
/// let seen = quota.quota(t.next.unwrap(), 0);
/// assert_eq!((seen.used(), seen.carried(), seen.remaining()), (60, 50, 90));
/// // The next period receives half of the 40 left of the own limit.
/// assert_eq!(quota.quota(t.next.unwrap(), 1_000_000_000).remaining(), 120);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaRollover {
    limit: u64,
    rollover: Rollover,
    max_carry: u64,
    windows: Windows,
    carry_bits: u32,
    used_bits: u32,
}

/// A [`QuotaRollover`] key's period as seen at some moment: the typed detail behind a peek.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuotaView {
    used: u64,
    carried: u64,
    remaining: u64,
}

impl QuotaView {
    /// Cost admitted so far in the period.
    pub const fn used(&self) -> u64 {
        self.used
    }

    /// Quota the period received from the one before.
    pub const fn carried(&self) -> u64 {
        self.carried
    }

    /// Quota left in the period: `limit + carried - used`.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// The state as seen from `now`.
#[derive(Clone, Copy)]
struct View {
    index: u64,
    used: u64,
    carried: u64,
    /// Nanoseconds from now to the end of the viewed period.
    until_end: u64,
}

impl QuotaRollover {
    /// `rate.limit()` per aligned period of `rate.period()`, with `rollover`.
    pub fn new(rate: Rate, rollover: Rollover) -> Result<Self, ConfigError> {
        let (limit, period) = finite_rate(rate)?;
        rollover.validate()?;
        if limit > MAX_LIMIT {
            return Err(ConfigError::LimitTooLarge { max: MAX_LIMIT });
        }
        let max_carry = rollover.carry(limit, limit);
        let carry_bits = bits_for(max_carry);
        let used_bits = bits_for(limit + max_carry);
        let windows = Windows::new(period, 1, used_bits + carry_bits, MAX_LIMIT).map_err(|e| {
            match e {
                // Report the largest limit that packs at this period whatever the rollover:
                // `b` bits of limit need at most `2b + 1` bits of counts.
                ConfigError::LimitTooLarge { .. } => {
                    let bits = (1..bits_for(MAX_LIMIT))
                        .rev()
                        .find(|b| Windows::new(period, 1, 2 * b + 1, MAX_LIMIT).is_ok())
                        .unwrap_or(0);
                    ConfigError::LimitTooLarge {
                        max: (1u64 << bits) - 1,
                    }
                }
                other => other,
            }
        })?;
        Ok(QuotaRollover {
            limit,
            rollover,
            max_carry,
            windows,
            carry_bits,
            used_bits,
        })
    }

    /// The rollover rule.
    pub const fn rollover(&self) -> Rollover {
        self.rollover
    }

    /// The most a period can receive from the one before.
    pub const fn max_carry(&self) -> u64 {
        self.max_carry
    }

    #[inline]
    fn unpack(&self, state: u64) -> (u64, u64, u64) {
        let carry_mask = (1u64 << self.carry_bits) - 1;
        let used_mask = (1u64 << self.used_bits) - 1;
        (
            state >> (self.used_bits + self.carry_bits),
            (state >> self.carry_bits) & used_mask,
            self.max_carry.saturating_sub(state & carry_mask),
        )
    }

    #[inline]
    fn pack(&self, index: u64, used: u64, carried: u64) -> u64 {
        (index << (self.used_bits + self.carry_bits))
            | (used << self.carry_bits)
            | (self.max_carry - carried)
    }

    /// What a period that used `used` carries into the next.
    #[inline]
    fn carry_after(&self, used: u64) -> u64 {
        self.rollover
            .carry(self.limit, self.limit.saturating_sub(used))
    }

    #[inline]
    fn view(&self, state: u64, now: u64) -> View {
        let (current, offset) = self.windows.locate(now);
        let period = self.windows.period;
        let fresh = View {
            index: current,
            used: 0,
            carried: self.max_carry,
            until_end: period - offset,
        };
        if state == 0 {
            return fresh;
        }
        let (stored, used, carried) = self.unpack(state);
        match self.windows.position(stored, current) {
            Position::Same => View {
                used,
                carried,
                ..fresh
            },
            Position::Next => View {
                carried: self.carry_after(used),
                ..fresh
            },
            Position::Stale => fresh,
            Position::Behind(behind) => View {
                index: stored,
                used,
                carried,
                until_end: self.windows.lead(behind, offset).saturating_add(period),
            },
        }
    }

    /// Nanoseconds until a period seen as `view` is equivalent to a fresh key.
    #[inline]
    fn fresh_after(&self, view: &View) -> u64 {
        if view.used == 0 && view.carried == self.max_carry {
            0
        } else if self.carry_after(view.used) == self.max_carry {
            view.until_end
        } else {
            view.until_end.saturating_add(self.windows.period)
        }
    }

    /// The period a key with `state` is in at `now`: use, carried-in quota and what remains.
    pub fn quota(&self, state: u64, now: u64) -> QuotaView {
        let v = self.view(state, now);
        QuotaView {
            used: v.used,
            carried: v.carried,
            remaining: (self.limit + v.carried).saturating_sub(v.used),
        }
    }
}

impl Algorithm for QuotaRollover {
    #[inline]
    fn capacity(&self) -> u64 {
        self.limit + self.max_carry
    }

    #[inline]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        let most = self.limit + self.max_carry;
        if cost > most {
            return Err(CheckError::InsufficientCapacity { max: most });
        }
        let v = self.view(state, now);
        let available = (self.limit + v.carried).saturating_sub(v.used);
        if cost <= available {
            let used = v.used + cost;
            let next = View { used, ..v };
            let decision = Decision::allow(most, available - cost, self.fresh_after(&next));
            Ok(Transition::store(
                decision,
                self.pack(v.index, used, v.carried),
                cost,
            ))
        } else {
            // The next period grants `limit + carry`; the one after always grants the most.
            let retry = if cost <= self.limit + self.carry_after(v.used) {
                v.until_end
            } else {
                v.until_end.saturating_add(self.windows.period)
            };
            let decision = Decision::deny(most, available, retry, self.fresh_after(&v));
            Ok(Transition::keep(decision))
        }
    }

    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        self.fresh_after(&self.view(state, now))
    }
}

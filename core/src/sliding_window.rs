//! The sliding window counter: the current window's count plus the previous window's count
//! weighted by how much of it the sliding window still overlaps.
//!
//! State: `index << 2b | previous << b | current`, where `b` is the bits needed for the limit.
//! A check at offset `e` into the window is admitted when
//! `previous * (period - e) + (current + cost) * period <= limit * period`, compared exactly in
//! integers (equivalently `current + cost + ceil(previous * (period - e) / period) <= limit`).
//! `0` is fresh.
//!
//! **Admission bound.** At most `limit` per aligned window, and at most `2 * limit - 1` in any
//! window of one period: a window straddling a boundary holds the tail of window `k` (at most
//! its count `A`) and the head of window `k + 1`, where admissions are held to
//! `limit - A * (1 - overlap)`; together that is below `limit + A <= 2 * limit`.
//!
//! **Stale and skewed readings.** As for [`FixedWindow`](crate::FixedWindow), a reading from
//! before the stored window (any number of windows behind) is charged to the stored window with
//! both its counts at full weight, so it can only be stricter, and the stored window never
//! moves back. The window index is stored truncated beside two counts; a limit is accepted only
//! if the index still spans 2^50 ns (about 13 days) each way at its period: up to 2^23 - 1 for
//! periods of 2^34 ns (about 17 s) or more, and `2^b - 1` for periods of at least `2^(2b - 12)`
//! ns below that (for example up to 1,048,575 per 2^28 ns, about 0.27 s, or 65,535 per 2^20 ns,
//! about 1.05 ms). A larger limit on a shorter period is `ConfigError::LimitTooLarge` naming the
//! largest that fits.

use crate::algorithm::{finite_rate, Algorithm, ConfigError, Transition};
use crate::decision::{CheckError, Decision};
use crate::rate::Rate;
use crate::window::{bits_for, Position, Windows};

/// Largest limit that packs two counts beside a window index of at least 16 bits.
const MAX_LIMIT: u64 = (1 << 23) - 1;

/// The sliding window counter (Cloudflare-style weighted estimate), with exact integer maths.
///
/// ```
/// use traffik_core::{Algorithm, Rate, SlidingWindowCounter};
///
/// let sw = SlidingWindowCounter::new(Rate::per_second(10))?;
/// let full = sw.decide(0, 0, 10)?; // window 0 full
/// // Half-way through window 1 the previous window still weighs 5.
/// let half = sw.decide(full.next.unwrap(), 1_500_000_000, 0)?;
/// assert_eq!(half.decision.remaining(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindowCounter {
    limit: u64,
    windows: Windows,
    count_bits: u32,
}

/// The state as seen from `now`.
#[derive(Clone, Copy)]
struct View {
    index: u64,
    previous: u64,
    current: u64,
    /// Offset into the viewed window.
    offset: u64,
    /// Nanoseconds from now until the viewed moment (non-zero only when our clock is behind).
    lead: u64,
}

impl SlidingWindowCounter {
    /// `rate.limit()` per sliding window of `rate.period()`.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        let (limit, period) = finite_rate(rate)?;
        if limit > MAX_LIMIT {
            return Err(ConfigError::LimitTooLarge { max: MAX_LIMIT });
        }
        let count_bits = bits_for(limit);
        Ok(SlidingWindowCounter {
            limit,
            windows: Windows::new(period, 2, count_bits, MAX_LIMIT)?,
            count_bits,
        })
    }

    #[inline]
    fn view(&self, state: u64, now: u64) -> View {
        let mask = (1u64 << self.count_bits) - 1;
        let stored = state >> (2 * self.count_bits);
        let previous = (state >> self.count_bits) & mask;
        let current = state & mask;
        let (index, offset) = self.windows.locate(now);
        // Fresh in any window (a stored state always has a non-zero current count), including
        // the window whose truncated index wraps to the fresh state's index 0.
        let position = if state == 0 {
            Position::Stale
        } else {
            self.windows.position(stored, index)
        };
        match position {
            Position::Same => View {
                index,
                previous,
                current,
                offset,
                lead: 0,
            },
            Position::Next => View {
                index,
                previous: current,
                current: 0,
                offset,
                lead: 0,
            },
            Position::Behind(behind) => View {
                index: stored,
                previous,
                current,
                offset: 0,
                lead: self.windows.lead(behind, offset),
            },
            Position::Stale => View {
                index,
                previous: 0,
                current: 0,
                offset,
                lead: 0,
            },
        }
    }

    /// `floor(a * b / c)` without overflow.
    #[inline]
    fn mul_div(a: u64, b: u64, c: u64) -> u64 {
        match a.checked_mul(b) {
            Some(x) => x / c,
            None => ((a as u128 * b as u128) / c as u128) as u64,
        }
    }

    /// The previous window's weight at `offset`, rounded up: `ceil(previous * (period - offset) / period)`.
    #[inline]
    fn weighted(&self, previous: u64, offset: u64) -> u64 {
        let period = self.windows.period;
        let overlap = period - offset;
        match previous.checked_mul(overlap) {
            Some(x) => self.windows.div_ceil(x),
            None => self
                .windows
                .div_ceil_wide(previous as u128 * overlap as u128) as u64,
        }
    }

    /// Nanoseconds from the viewed moment until `cost` more would be admitted (the view is
    /// known to deny it now).
    fn wait(&self, v: &View, cost: u64) -> u64 {
        let period = self.windows.period;
        // Later in this window, as the previous window's weight fades.
        if v.previous > 0 && v.current + cost <= self.limit {
            let room = self.limit - v.current - cost;
            // Need previous * (period - e) <= room * period.
            let fade = Self::mul_div(room, period, v.previous).min(period);
            let at = period - fade;
            if at < period {
                return at - v.offset;
            }
        }
        // In the next window, where this window's count becomes the previous one.
        let to_next = period - v.offset;
        let at = if v.current == 0 {
            0
        } else {
            period - Self::mul_div(self.limit - cost, period, v.current).min(period)
        };
        // `at == period` means the next window never admits it: the one after is empty.
        to_next + at
    }

    /// The common case in straight line: a stored state, `now` in its window, `cost` (not a
    /// peek) admitted; everything else is left to the general path. It admits by multiplying:
    /// with `room = limit - current - cost`, the general `cost <= available` is
    /// `ceil(previous * overlap / period) <= room`, that is `previous * overlap <= room *
    /// period`. The rounded-up weight (a division) then only feeds `remaining`: off the path to
    /// the write, and dropped by a caller that never reads it.
    #[inline(always)]
    fn same_window(&self, state: u64, now: u64, cost: u64) -> Option<Transition> {
        let (index, offset) = self.windows.locate(now);
        let b = self.count_bits;
        if state == 0
            || cost == 0
            || self.windows.position(state >> (2 * b), index) != Position::Same
        {
            return None;
        }
        let mask = (1u64 << b) - 1;
        let (previous, current) = ((state >> b) & mask, state & mask);
        let room = self.limit.checked_sub(current + cost)?;
        let period = self.windows.period;
        if u128::from(previous) * u128::from(period - offset)
            > u128::from(room) * u128::from(period)
        {
            return None;
        }
        let remaining = room - self.weighted(previous, offset);
        // A stored window with a count: fresh once this window and the next have passed.
        let reset = (period - offset) + period;
        Some(Transition::store(
            Decision::allow(self.limit, remaining, reset),
            state + cost,
            cost,
        ))
    }

    #[inline]
    fn until_fresh(&self, v: &View, current: u64) -> u64 {
        let to_next = self.windows.period - v.offset;
        // Saturating: `lead` is only huge for a misread idle key (see the `window` module).
        if current > 0 {
            v.lead.saturating_add(to_next + self.windows.period)
        } else if v.previous > 0 {
            v.lead.saturating_add(to_next)
        } else {
            0
        }
    }
}

impl Algorithm for SlidingWindowCounter {
    #[inline]
    fn capacity(&self) -> u64 {
        self.limit
    }

    #[inline(always)]
    fn decide(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        if cost > self.limit {
            return Err(CheckError::InsufficientCapacity { max: self.limit });
        }
        if let Some(t) = self.same_window(state, now, cost) {
            debug_assert_eq!(Ok(t), self.decide_general(state, now, cost));
            return Ok(t);
        }
        self.decide_general(state, now, cost)
    }

    #[inline]
    fn reset_after(&self, state: u64, now: u64) -> u64 {
        let v = self.view(state, now);
        self.until_fresh(&v, v.current)
    }
}

impl SlidingWindowCounter {
    /// Every case of a check (`cost` already known to fit the limit). Always inlined, as
    /// `decide` is: as a call, its result comes back through memory, and the fast path's
    /// decision, written to the same place, could no longer be dropped unread.
    #[inline(always)]
    fn decide_general(&self, state: u64, now: u64, cost: u64) -> Result<Transition, CheckError> {
        let v = self.view(state, now);
        let used = v.current + self.weighted(v.previous, v.offset);
        let available = self.limit.saturating_sub(used);
        if cost <= available {
            let current = v.current + cost;
            let decision =
                Decision::allow(self.limit, available - cost, self.until_fresh(&v, current));
            let next =
                (v.index << (2 * self.count_bits)) | (v.previous << self.count_bits) | current;
            Ok(Transition::store(decision, next, cost))
        } else {
            let decision = Decision::deny(
                self.limit,
                available,
                v.lead.saturating_add(self.wait(&v, cost)),
                self.until_fresh(&v, v.current),
            );
            Ok(Transition::keep(decision))
        }
    }
}

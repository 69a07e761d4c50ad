// An independent reference model for the strategies whose rate or allowance moves between
// checks (Adaptive, Schedule, PriorityBudget), and a differential runner.
//
// The packed algorithms store a theoretical arrival time. This model is the other classic
// formulation: a bucket level in nanoseconds of work that drains one nanosecond per
// nanosecond, and the last time it was looked at. It defines only whether a cost is admitted
// at a time under the interval and allowance in force, and what admitting it does; every
// number of a `Decision` (remaining, retry_after, reset_after) is then found by search over
// that predicate. Time only moves forward here (stale readings are the core's own tests).
//
// Included with `#[path]` by the core's tests.

#![allow(dead_code)]

use traffik_core::Decision;

/// The bucket-level model of one key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Level {
    /// Nanoseconds of work in the bucket at `last`.
    level: u128,
    last: u128,
}

impl Level {
    fn level_at(&self, t: u128) -> u128 {
        self.level.saturating_sub(t - self.last)
    }

    /// Whether `cost` units of `interval` ns each fit under `allowance` units at `t`.
    pub fn admits(&self, t: u128, cost: u128, interval: u128, allowance: u128) -> bool {
        self.level_at(t) + cost * interval <= allowance * interval
    }

    /// Decides `cost` at `t` (never before the last check) and charges it if admitted and
    /// non-zero. `allowance` is what this check may fill the bucket to, in units.
    pub fn decide(&mut self, t: u64, cost: u64, interval: u64, allowance: u64) -> Decision {
        let (t, c, i, a) = (t as u128, cost as u128, interval as u128, allowance as u128);
        assert!(t >= self.last, "the model runs forward only");
        // Largest admissible cost beyond this one, by search.
        let most = |from: u128| {
            (0..=a)
                .rev()
                .find(|k| self.admits(t, from + k, i, a))
                .unwrap_or(0)
        };
        if self.admits(t, c, i, a) {
            let remaining = most(c);
            let level = self.level_at(t) + c * i;
            if c > 0 {
                self.level = level;
                self.last = t;
            }
            Decision::allow(allowance, remaining as u64, level as u64)
        } else {
            // Earliest delay that admits, by binary search (admission is monotone in delay).
            let (mut lo, mut hi) = (0u128, self.level_at(t) + c * i);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if self.admits(t + mid, c, i, a) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let remaining = (0..=a)
                .rev()
                .find(|k| self.admits(t, *k, i, a))
                .unwrap_or(0);
            Decision::deny(
                allowance,
                remaining as u64,
                lo as u64,
                self.level_at(t) as u64,
            )
        }
    }
}

/// The AIMD rule of the adaptive limit, restated.
pub struct Aimd {
    pub target: u64,
    pub floor: u64,
    pub ceiling: u64,
    pub increase: u64,
    pub numerator: u64,
    pub denominator: u64,
}

impl Aimd {
    pub fn next(&self, limit: u64, signal: u64) -> u64 {
        if signal <= self.target {
            (limit + self.increase).min(self.ceiling)
        } else {
            let cut = limit as u128 * self.numerator as u128 / self.denominator as u128;
            (cut as u64).max(self.floor)
        }
    }
}

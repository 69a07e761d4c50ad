// The reference models' state and maths: one naive model per packed algorithm.
//
// Each model keeps its state as plain fields in u128 and defines only two things in its own
// terms: whether a cost is admitted at a time (`admits`, `fresh_at`), and what admitting it does
// (`charge`). `decide` then finds every number a `Decision` carries by search over that
// predicate, so nothing here shares the packed algorithms' closed forms.

use traffik_core::{CheckError, Decision};

#[derive(Clone, Debug)]
pub enum State {
    /// Continuous-state leaky bucket: `level` nanoseconds of backlog as of time `at`.
    Meter {
        interval: u128,
        burst: u128,
        level: u128,
        at: u128,
    },
    /// Whole tokens; `seen` is how many the schedule had produced at the last update.
    Bucket {
        limit: u128,
        period: u128,
        capacity: u128,
        tokens: u128,
        seen: u128,
    },
    Fixed {
        limit: u128,
        period: u128,
        window: u128,
        count: u128,
    },
    Sliding {
        limit: u128,
        period: u128,
        window: u128,
        prev: u128,
        cur: u128,
    },
    /// Signed balance: tokens in hand, negative while in debt; `seen` as for `Bucket`.
    Debt {
        limit: u128,
        period: u128,
        capacity: i128,
        max_debt: i128,
        balance: i128,
        seen: u128,
    },
    /// The period last charged, its use and the quota it received from the one before;
    /// `started` is false until the first charge (as if every earlier period went unused).
    Rollover {
        limit: u128,
        period: u128,
        numerator: u128,
        denominator: u128,
        cap: u128,
        started: bool,
        window: u128,
        used: u128,
        carried: u128,
    },
}

#[derive(Clone, Debug)]
pub struct Model {
    pub st: State,
}

impl Model {
    pub fn capacity(&self) -> u128 {
        match self.st {
            State::Meter { burst, .. } => burst,
            State::Bucket { capacity, .. } => capacity,
            State::Fixed { limit, .. } | State::Sliding { limit, .. } => limit,
            State::Debt {
                capacity, max_debt, ..
            } => (capacity + max_debt) as u128,
            State::Rollover { limit, .. } => limit + self.carry_for(limit),
        }
    }

    /// Rollover: what a period that left `unused` of its own limit passes on.
    fn carry_for(&self, unused: u128) -> u128 {
        match self.st {
            State::Rollover {
                numerator,
                denominator,
                cap,
                ..
            } => (unused * numerator / denominator).min(cap),
            _ => unreachable!(),
        }
    }

    /// Rollover: (used, carried) of the period holding `t`, walking period by period from the
    /// last one charged (two steps settle everything: an unused period passes the most on).
    fn quota_at(&self, t: u128) -> (u128, u128) {
        match self.st {
            State::Rollover {
                limit,
                period,
                started,
                window,
                used,
                carried,
                ..
            } => {
                if !started {
                    return (0, self.carry_for(limit));
                }
                let (mut u, mut c) = (used, carried);
                let mut w = window;
                while w < t / period && w < window + 3 {
                    c = self.carry_for(limit - u.min(limit));
                    u = 0;
                    w += 1;
                }
                (u, c)
            }
            _ => unreachable!(),
        }
    }

    /// Debt bucket: the signed balance at `t`.
    fn balance_at(&self, t: u128) -> i128 {
        match self.st {
            State::Debt {
                limit,
                period,
                capacity,
                balance,
                seen,
                ..
            } => {
                let produced = t * limit / period;
                (balance + produced.saturating_sub(seen) as i128).min(capacity)
            }
            _ => unreachable!(),
        }
    }

    fn meter_level(level: u128, at: u128, t: u128) -> u128 {
        level.saturating_sub(t.saturating_sub(at))
    }

    fn tokens_at(&self, t: u128) -> u128 {
        match self.st {
            State::Bucket {
                limit,
                period,
                capacity,
                tokens,
                seen,
            } => {
                let produced = t * limit / period;
                (tokens + produced.saturating_sub(seen)).min(capacity)
            }
            _ => unreachable!(),
        }
    }

    /// (prev, cur) as seen at `t`.
    fn windows_at(&self, t: u128) -> (u128, u128) {
        match self.st {
            State::Fixed {
                period,
                window,
                count,
                ..
            } => {
                if t / period == window {
                    (0, count)
                } else {
                    (0, 0)
                }
            }
            State::Sliding {
                period,
                window,
                prev,
                cur,
                ..
            } => {
                let w = t / period;
                if w == window {
                    (prev, cur)
                } else if w == window + 1 {
                    (cur, 0)
                } else {
                    (0, 0)
                }
            }
            _ => unreachable!(),
        }
    }

    pub fn admits(&self, t: u128, cost: u128) -> bool {
        match self.st {
            State::Meter {
                interval,
                burst,
                level,
                at,
            } => Self::meter_level(level, at, t) + cost * interval <= burst * interval,
            State::Bucket { .. } => self.tokens_at(t) >= cost,
            State::Fixed { limit, .. } => self.windows_at(t).1 + cost <= limit,
            State::Sliding { limit, period, .. } => {
                let (prev, cur) = self.windows_at(t);
                let e = t % period;
                prev * (period - e) + (cur + cost) * period <= limit * period
            }
            State::Debt { max_debt, .. } => {
                let b = self.balance_at(t);
                // A zero cost is a peek, admitted even in debt.
                cost == 0 || (b >= 0 && b - cost as i128 >= -max_debt)
            }
            State::Rollover { limit, .. } => {
                let (used, carried) = self.quota_at(t);
                used + cost <= limit + carried
            }
        }
    }

    pub fn fresh_at(&self, t: u128) -> bool {
        match self.st {
            State::Meter { level, at, .. } => Self::meter_level(level, at, t) == 0,
            State::Bucket { capacity, .. } => self.tokens_at(t) == capacity,
            State::Fixed { .. } | State::Sliding { .. } => self.windows_at(t) == (0, 0),
            State::Debt { capacity, .. } => self.balance_at(t) == capacity,
            State::Rollover { limit, .. } => self.quota_at(t) == (0, self.carry_for(limit)),
        }
    }

    fn charge(&mut self, t: u128, cost: u128) {
        let tokens = match self.st {
            State::Bucket { .. } => self.tokens_at(t),
            _ => 0,
        };
        let (p, c) = match self.st {
            State::Fixed { .. } | State::Sliding { .. } => self.windows_at(t),
            State::Rollover { .. } => self.quota_at(t),
            _ => (0, 0),
        };
        let signed = match self.st {
            State::Debt { .. } => self.balance_at(t),
            _ => 0,
        };
        match &mut self.st {
            State::Meter {
                interval,
                level,
                at,
                ..
            } => {
                *level = Self::meter_level(*level, *at, t) + cost * *interval;
                *at = t;
            }
            State::Bucket {
                limit,
                period,
                tokens: tk,
                seen,
                ..
            } => {
                *tk = tokens - cost;
                *seen = t * *limit / *period;
            }
            State::Fixed {
                period,
                window,
                count,
                ..
            } => {
                *window = t / *period;
                *count = c + cost;
            }
            State::Sliding {
                period,
                window,
                prev,
                cur,
                ..
            } => {
                *window = t / *period;
                *prev = p;
                *cur = c + cost;
            }
            State::Debt {
                limit,
                period,
                balance,
                seen,
                ..
            } => {
                *balance = signed - cost as i128;
                *seen = t * *limit / *period;
            }
            State::Rollover {
                period,
                started,
                window,
                used,
                carried,
                ..
            } => {
                *started = true;
                *window = t / *period;
                *used = p + cost;
                *carried = c;
            }
        }
    }

    pub fn reset(&mut self) {
        match &mut self.st {
            State::Meter { level, .. } => *level = 0,
            State::Bucket {
                capacity,
                tokens,
                seen,
                ..
            } => {
                *tokens = *capacity;
                *seen = 0;
            }
            State::Fixed { count, .. } => *count = 0,
            State::Sliding { prev, cur, .. } => {
                *prev = 0;
                *cur = 0;
            }
            State::Debt {
                capacity,
                balance,
                seen,
                ..
            } => {
                *balance = *capacity;
                *seen = 0;
            }
            State::Rollover { started, .. } => *started = false,
        }
    }

    /// Earliest `t` in `[lo, lo + span]` where `pred` holds; `pred` is monotone in `t`.
    pub(super) fn first(lo: u128, span: u128, pred: impl Fn(u128) -> bool) -> u128 {
        let (mut lo, mut hi) = (lo, lo + span);
        assert!(pred(hi), "reference search found no admitting time");
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        lo
    }

    pub(super) fn span(&self) -> u128 {
        let unit = match self.st {
            State::Meter { interval, .. } => interval,
            State::Bucket { period, .. }
            | State::Fixed { period, .. }
            | State::Sliding { period, .. }
            | State::Debt { period, .. }
            | State::Rollover { period, .. } => period,
        };
        (self.capacity() + 4) * unit.max(1) * 2
    }

    fn largest_admissible(&self, t: u128) -> u128 {
        let (mut lo, mut hi) = (0u128, self.capacity());
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.admits(t, mid) {
                lo = mid
            } else {
                hi = mid - 1
            }
        }
        lo
    }

    /// The decision the model makes, applying the charge when admitted.
    pub fn decide(&mut self, now: u64, cost: u64) -> Result<Decision, CheckError> {
        let (t, c) = (now as u128, cost as u128);
        let cap = self.capacity();
        if c > cap {
            return Err(CheckError::InsufficientCapacity { max: cap as u64 });
        }
        let span = self.span();
        if self.admits(t, c) {
            self.charge(t, c);
            let remaining = self.largest_admissible(t);
            let reset = Self::first(t, span, |x| self.fresh_at(x)) - t;
            Ok(Decision::allow(cap as u64, remaining as u64, reset as u64))
        } else {
            let remaining = self.largest_admissible(t);
            let retry = Self::first(t, span, |x| self.admits(x, c)) - t;
            let reset = Self::first(t, span, |x| self.fresh_at(x)) - t;
            Ok(Decision::deny(
                cap as u64,
                remaining as u64,
                retry as u64,
                reset as u64,
            ))
        }
    }
}

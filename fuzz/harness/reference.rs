// Naive reference models of every packed algorithm, and a differential runner.
//
// Each model keeps its state as plain fields in u128 and defines only two things in its own
// terms: whether a cost is admitted at a time, and what admitting it does. Every number a
// `Decision` carries is then found by search over that predicate (largest admissible cost,
// earliest admitting time, earliest fresh time), so the packed algorithms' closed-form maths is
// checked against an independent formulation.
//
// Included with `#[path]` by the core's tests and by the cargo-fuzz targets.

#![allow(dead_code)]

use traffik_core::{
    Algorithm, AlgorithmKind, AnyAlgorithm, CheckError, DebtBucket, Decision, FixedWindow, Gcra,
    LeakyBucket, QuotaRollover, Rate, Rollover, SlidingWindowCounter, TokenBucket,
};

/// Which algorithm, with which parameters.
#[derive(Clone, Copy, Debug)]
pub enum Spec {
    Gcra {
        rate: Rate,
        burst: u64,
    },
    LeakyBucket {
        rate: Rate,
        capacity: u64,
    },
    TokenBucket {
        rate: Rate,
        capacity: u64,
    },
    FixedWindow {
        rate: Rate,
    },
    SlidingWindow {
        rate: Rate,
    },
    DebtBucket {
        rate: Rate,
        capacity: u64,
        max_debt: u64,
    },
    Rollover {
        rate: Rate,
        numerator: u32,
        denominator: u32,
        cap: u64,
    },
}

/// Rollover fractions the decoders pick from (numerator, denominator).
const FRACTIONS: [(u32, u32); 5] = [(0, 1), (1, 2), (2, 3), (1, 1), (7, 10)];

impl Spec {
    /// Spec number `kind % 7` (GCRA, leaky bucket, token bucket, fixed window, sliding window,
    /// debt bucket, rollover quota) for `rate`, with `burst` as the burst or capacity where the
    /// algorithm takes one; `kind / 7` picks the debt (0 to 1.5 times the capacity) or the
    /// rollover fraction and cap (none, or half the burst).
    pub fn from_parts(kind: u8, rate: Rate, burst: u64) -> Spec {
        let extra = usize::from(kind / 7);
        match kind % 7 {
            5 => Spec::DebtBucket {
                rate,
                capacity: burst,
                max_debt: burst * (extra as u64 % 4) / 2,
            },
            6 => {
                let (numerator, denominator) = FRACTIONS[extra % FRACTIONS.len()];
                let cap = if extra / FRACTIONS.len() % 2 == 0 {
                    u64::MAX
                } else {
                    burst / 2
                };
                Spec::Rollover {
                    rate,
                    numerator,
                    denominator,
                    cap,
                }
            }
            0 => Spec::Gcra { rate, burst },
            1 => Spec::LeakyBucket {
                rate,
                capacity: burst,
            },
            2 => Spec::TokenBucket {
                rate,
                capacity: burst,
            },
            3 => Spec::FixedWindow { rate },
            _ => Spec::SlidingWindow { rate },
        }
    }

    pub fn kind(&self) -> AlgorithmKind {
        match *self {
            Spec::Gcra { .. } => AlgorithmKind::Gcra,
            Spec::LeakyBucket { .. } => AlgorithmKind::LeakyBucket,
            Spec::TokenBucket { .. } => AlgorithmKind::TokenBucket,
            Spec::FixedWindow { .. } => AlgorithmKind::FixedWindow,
            Spec::SlidingWindow { .. } => AlgorithmKind::SlidingWindowCounter,
            Spec::DebtBucket { max_debt, .. } => AlgorithmKind::DebtBucket { max_debt },
            Spec::Rollover {
                numerator,
                denominator,
                cap,
                ..
            } => AlgorithmKind::QuotaRollover(Rollover::new(numerator, denominator, cap)),
        }
    }

    pub fn rate(&self) -> Rate {
        match *self {
            Spec::Gcra { rate, .. }
            | Spec::LeakyBucket { rate, .. }
            | Spec::TokenBucket { rate, .. }
            | Spec::FixedWindow { rate }
            | Spec::SlidingWindow { rate }
            | Spec::DebtBucket { rate, .. }
            | Spec::Rollover { rate, .. } => rate,
        }
    }

    /// The burst or capacity, for the algorithms that take one.
    pub fn burst(&self) -> Option<u64> {
        match *self {
            Spec::Gcra { burst, .. } => Some(burst),
            Spec::LeakyBucket { capacity, .. }
            | Spec::TokenBucket { capacity, .. }
            | Spec::DebtBucket { capacity, .. } => Some(capacity),
            Spec::FixedWindow { .. } | Spec::SlidingWindow { .. } | Spec::Rollover { .. } => None,
        }
    }

    pub fn packed(&self) -> AnyAlgorithm {
        let built = match *self {
            Spec::Gcra { rate, burst } => Gcra::with_burst(rate, burst).map(AnyAlgorithm::Gcra),
            Spec::LeakyBucket { rate, capacity } => {
                LeakyBucket::with_capacity(rate, capacity).map(AnyAlgorithm::LeakyBucket)
            }
            Spec::TokenBucket { rate, capacity } => {
                TokenBucket::with_capacity(rate, capacity).map(AnyAlgorithm::TokenBucket)
            }
            Spec::FixedWindow { rate } => FixedWindow::new(rate).map(AnyAlgorithm::FixedWindow),
            Spec::SlidingWindow { rate } => {
                SlidingWindowCounter::new(rate).map(AnyAlgorithm::SlidingWindowCounter)
            }
            Spec::DebtBucket {
                rate,
                capacity,
                max_debt,
            } => DebtBucket::with_capacity(rate, capacity, max_debt).map(AnyAlgorithm::DebtBucket),
            Spec::Rollover {
                rate,
                numerator,
                denominator,
                cap,
            } => QuotaRollover::new(rate, Rollover::new(numerator, denominator, cap))
                .map(AnyAlgorithm::QuotaRollover),
        };
        built.expect("reference specs are valid")
    }

    pub fn reference(&self) -> Model {
        let st = match *self {
            Spec::Gcra { rate, burst }
            | Spec::LeakyBucket {
                rate,
                capacity: burst,
            } => {
                let t = (rate.period_nanos() as u128).div_ceil(rate.limit() as u128);
                State::Meter {
                    interval: t,
                    burst: burst as u128,
                    level: 0,
                    at: 0,
                }
            }
            Spec::TokenBucket { rate, capacity } => State::Bucket {
                limit: rate.limit() as u128,
                period: rate.period_nanos() as u128,
                capacity: capacity as u128,
                tokens: capacity as u128,
                seen: 0,
            },
            Spec::FixedWindow { rate } => State::Fixed {
                limit: rate.limit() as u128,
                period: rate.period_nanos() as u128,
                window: 0,
                count: 0,
            },
            Spec::SlidingWindow { rate } => State::Sliding {
                limit: rate.limit() as u128,
                period: rate.period_nanos() as u128,
                window: 0,
                prev: 0,
                cur: 0,
            },
            Spec::DebtBucket {
                rate,
                capacity,
                max_debt,
            } => State::Debt {
                limit: rate.limit() as u128,
                period: rate.period_nanos() as u128,
                capacity: capacity as i128,
                max_debt: max_debt as i128,
                balance: capacity as i128,
                seen: 0,
            },
            Spec::Rollover {
                rate,
                numerator,
                denominator,
                cap,
            } => State::Rollover {
                limit: rate.limit() as u128,
                period: rate.period_nanos() as u128,
                numerator: numerator as u128,
                denominator: denominator as u128,
                cap: cap as u128,
                started: false,
                window: 0,
                used: 0,
                carried: 0,
            },
        };
        Model { st }
    }

    /// One period of the spec's rate, in nanoseconds.
    pub fn period(&self) -> u64 {
        self.rate().period_nanos()
    }

    /// The documented bound on cost admitted in any window of one period.
    pub fn period_bound(&self) -> u128 {
        match *self {
            Spec::Gcra { rate, burst }
            | Spec::LeakyBucket {
                rate,
                capacity: burst,
            } => {
                let t = rate.period_nanos().div_ceil(rate.limit()) as u128;
                burst as u128 + (rate.period_nanos() as u128).div_ceil(t) - 1
            }
            Spec::TokenBucket { rate, capacity } => capacity as u128 + rate.limit() as u128,
            Spec::FixedWindow { rate } => 2 * rate.limit() as u128,
            Spec::SlidingWindow { rate } => 2 * rate.limit() as u128 - 1,
            Spec::DebtBucket {
                rate,
                capacity,
                max_debt,
            } => capacity as u128 + max_debt as u128 + rate.limit() as u128,
            Spec::Rollover { .. } => {
                let limit = self.rate().limit() as u128;
                // capacity = limit + the largest carry.
                limit + self.reference().capacity()
            }
        }
    }
}

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
    fn first(lo: u128, span: u128, pred: impl Fn(u128) -> bool) -> u128 {
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

    fn span(&self) -> u128 {
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

/// One step of a differential run.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Advance(u64),
    Check(u64),
    Reset,
}

/// Runs `ops` through the packed algorithm and the reference model side by side and panics on
/// the first difference or broken invariant. Returns the admitted (time, cost) pairs.
pub fn differential(spec: Spec, ops: &[Op]) -> Vec<(u64, u64)> {
    let packed = spec.packed();
    let mut model = spec.reference();
    let mut state = 0u64;
    let mut now = 0u64;
    let mut admitted = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Advance(dt) => now = now.saturating_add(dt),
            Op::Reset => {
                state = 0;
                model.reset();
            }
            Op::Check(cost) => {
                let got = packed.decide(state, now, cost);
                let want = model.decide(now, cost);
                let got_decision = got.map(|t| t.decision);
                assert_eq!(got_decision, want, "op {i} {op:?} at {now} ({spec:?})");
                // A peek (cost 0) never asks for a write, a denial never writes.
                let peek = packed.decide(state, now, 0).expect("peek cannot fail");
                assert!(peek.next.is_none(), "peek wanted a write");
                if let Ok(t) = got {
                    let d = t.decision;
                    assert!(d.remaining() <= d.limit(), "remaining above limit");
                    if d.is_denied() {
                        assert!(t.next.is_none(), "a denial wanted a write");
                        // retry_after is exact.
                        let at = now + d.retry_after_nanos();
                        assert!(d.retry_after_nanos() > 0);
                        assert!(packed
                            .decide(state, at, cost)
                            .unwrap()
                            .decision
                            .is_allowed());
                        assert!(packed
                            .decide(state, at - 1, cost)
                            .unwrap()
                            .decision
                            .is_denied());
                    } else {
                        assert_eq!(d.retry_after_nanos(), 0);
                        if cost > 0 {
                            admitted.push((now, cost));
                        }
                        if let Some(next) = t.next {
                            state = next;
                        }
                    }
                    assert_eq!(
                        packed.reset_after(state, now),
                        model_reset_after(&model, now)
                    );
                }
            }
        }
    }
    admitted
}

fn model_reset_after(model: &Model, now: u64) -> u64 {
    let t = now as u128;
    (Model::first(t, model.span(), |x| model.fresh_at(x)) - t) as u64
}

/// Panics if the admitted cost in some window of one period exceeds the documented bound.
pub fn check_period_bound(spec: Spec, admitted: &[(u64, u64)]) {
    let period = spec.period();
    let bound = spec.period_bound();
    let mut start = 0;
    let mut sum: u128 = 0;
    for &(t, c) in admitted {
        sum += c as u128;
        while admitted[start].0 + period <= t {
            sum -= admitted[start].1 as u128;
            start += 1;
        }
        assert!(
            sum <= bound,
            "{sum} admitted within one period, bound {bound} ({spec:?})"
        );
    }
}

/// One step of a run whose checks may carry a stale clock reading.
#[derive(Clone, Copy, Debug)]
pub enum LagOp {
    Advance(u64),
    /// A check whose reading is `lag` nanoseconds behind the latest time.
    Check {
        lag: u64,
        cost: u64,
    },
    Reset,
}

/// Runs `ops` through the packed algorithm with readings that lag the latest time by any
/// amount, and panics unless a stale reading only ever makes things stricter:
///
/// * a decision at a stale reading is no looser than one at the latest time from the same state
///   (admitted only if that one is, and no more remaining);
/// * a denial's `retry_after`, counted from the stale reading, is exact;
/// * a stale admission leaves every later decision at least as strict as not checking at all
///   (probed over several periods, for a unit cost and the full capacity);
/// * the documented bound per period holds, counting each admission at its effective time: its
///   reading, or for the window algorithms the start of the window it was charged to when the
///   reading was behind it.
pub fn lagged(spec: Spec, ops: &[LagOp]) {
    let alg = spec.packed();
    let period = spec.period();
    let cap = alg.capacity();
    let windowed = matches!(
        spec,
        Spec::FixedWindow { .. } | Spec::SlidingWindow { .. } | Spec::Rollover { .. }
    );
    let allowed =
        |state: u64, t: u64, c: u64| alg.decide(state, t, c).unwrap().decision.is_allowed();
    let remaining = |state: u64, t: u64| alg.decide(state, t, 0).unwrap().decision.remaining();
    let mut state = 0u64;
    let mut now = 0u64;
    let mut admitted: Vec<(u64, u64)> = Vec::new();
    // The latest reading admitted: for the window algorithms, its window is the stored one.
    let mut latest: Option<u64> = None;
    let mut resets = false;
    for (i, op) in ops.iter().enumerate() {
        match *op {
            LagOp::Advance(dt) => now = now.saturating_add(dt),
            LagOp::Reset => {
                state = 0;
                latest = None;
                resets = true;
            }
            LagOp::Check { lag, cost } => {
                let reading = now.saturating_sub(lag);
                let Ok(t) = alg.decide(state, reading, cost) else {
                    assert!(cost > cap, "op {i}: only an oversized cost may fail");
                    continue;
                };
                let d = t.decision;
                let up_to_date = alg.decide(state, now, cost).unwrap().decision;
                assert!(
                    !d.is_allowed() || up_to_date.is_allowed(),
                    "op {i} {op:?}: admitted at {reading} but not at {now} ({spec:?})"
                );
                assert!(
                    remaining(state, reading) <= remaining(state, now),
                    "op {i} {op:?}: more remaining at {reading} than at {now} ({spec:?})"
                );
                if d.is_denied() {
                    assert!(t.next.is_none(), "op {i}: a denial wanted a write");
                    let at = reading + d.retry_after_nanos();
                    assert!(
                        allowed(state, at, cost),
                        "op {i} {op:?}: retry_after too short"
                    );
                    assert!(
                        !allowed(state, at - 1, cost),
                        "op {i} {op:?}: retry_after too long"
                    );
                    continue;
                }
                let Some(next) = t.next else { continue };
                for probe in [0, period / 3, period, 2 * period + 1, 5 * period] {
                    let at = now.saturating_add(probe);
                    for c in [1, cap] {
                        assert!(
                            !allowed(next, at, c) || allowed(state, at, c),
                            "op {i} {op:?}: the admission at {reading} loosened a check of {c} \
                             at {at} ({spec:?})"
                        );
                    }
                    assert!(remaining(next, at) <= remaining(state, at));
                }
                let effective = match (windowed, latest) {
                    (true, Some(l)) => reading.max(l / period * period),
                    _ => reading,
                };
                admitted.push((effective, cost));
                latest = Some(latest.map_or(reading, |l| l.max(reading)));
                state = next;
            }
        }
    }
    if !resets {
        admitted.sort_unstable();
        check_period_bound(spec, &admitted);
    }
}

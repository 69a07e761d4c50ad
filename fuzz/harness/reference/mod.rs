// Naive reference models of every packed algorithm, and a differential runner.
//
// Each model keeps its state as plain fields in u128 and defines only two things in its own
// terms: whether a cost is admitted at a time, and what admitting it does. Every number a
// `Decision` carries is then found by search over that predicate (largest admissible cost,
// earliest admitting time, earliest fresh time), so the packed algorithms' closed-form maths is
// checked against an independent formulation.
//
// Included with `#[path]` by tests of both crates and by the cargo-fuzz targets. This file holds
// `Spec` (which algorithm, built both packed and as a model); `model.rs` the models and
// `drive.rs` the runners, re-exported here so callers name everything as `reference::...`.

#![allow(dead_code)]

mod drive;
mod model;

// Each includer uses only some of these, like the items `dead_code` is allowed for above.
#[allow(unused_imports)]
pub use drive::{check_period_bound, differential, lagged, LagOp, Op};
#[allow(unused_imports)]
pub use model::{Model, State};

use traffik_core::{
    AlgorithmKind, AnyAlgorithm, DebtBucket, FixedWindow, Gcra, LeakyBucket, QuotaRollover, Rate,
    Rollover, SlidingWindowCounter, TokenBucket,
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

//! # traffik-core
//!
//! The `no_std` heart of traffik: exact rate maths, and per-key limiter state packed into a
//! single `u64` that is updated with a compare-and-swap loop.
//!
//! The data path reads top to bottom:
//!
//! 1. [`Rate`]: parse or build "how many per how long", in exact integer nanoseconds.
//! 2. An [`Algorithm`] ([`Gcra`], [`TokenBucket`], [`LeakyBucket`], [`FixedWindow`],
//!    [`SlidingWindowCounter`], [`DebtBucket`], [`QuotaRollover`], or the runtime-chosen
//!    [`AnyAlgorithm`]): a pure function from
//!    `(state, now, cost)` to a [`Decision`] and, when something was admitted, the next state.
//! 3. A [`StateCell`]: one atomic word and the CAS loop that applies the transition.
//! 4. A [`Limiter`]: one cell, one algorithm, one [`Clock`].
//!
//! ```
//! use traffik_core::{Gcra, Limiter, ManualClock, Rate};
//! use core::time::Duration;
//!
//! let clock = ManualClock::new();
//! let limiter = Limiter::new(Gcra::new(Rate::per_second(2))?, &clock);
//! assert!(limiter.check(1)?.is_allowed());
//! assert!(limiter.check(1)?.is_allowed());
//! let denied = limiter.check(1)?;
//! assert!(denied.is_denied());
//! assert_eq!(denied.retry_after(), Duration::from_millis(500));
//! clock.advance(Duration::from_millis(500));
//! assert!(limiter.check(1)?.is_allowed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(loom)]
extern crate std;

#[cfg(feature = "alloc")]
extern crate alloc;

pub(crate) mod sync;

pub mod adaptive;
pub mod algorithm;
pub mod backend;
pub mod cell;
pub mod clock;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod context;
pub mod debt_bucket;
pub mod decision;
pub mod details;
mod divisor;
pub mod fixed_window;
pub mod format;
pub mod gcra;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod key;
pub mod limiter;
pub mod live;
pub mod multi;
pub mod priority;
pub mod quota;
pub mod rate;
pub mod rates;
pub mod rollover;
pub mod schedule;
pub mod shape;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod sliding_log;
pub mod sliding_window;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod table;
mod tat;
pub mod token_bucket;
mod window;

pub use adaptive::{Adaptive, AdaptiveBuilder, AdaptiveDetails, AdaptiveError};
pub use algorithm::{
    Algorithm, AlgorithmKind, AlgorithmWork, AnyAlgorithm, ConfigError, Transition, Unlimited,
    MAX_NOW, STATE_BITS,
};
pub use backend::{AsyncLimiter, ErrorKind, LimiterError};
pub use cell::StateCell;
pub use clock::{Clock, ManualClock};
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use context::{ApplyReport, ContextCharge, ContextError, Outcome, QuotaContext};
pub use debt_bucket::{DebtBalance, DebtBucket};
pub use decision::{CheckError, Decision};
pub use details::Details;
pub use fixed_window::FixedWindow;
pub use format::{PerCallAlgorithm, StateFormat};
pub use gcra::{Gcra, GcraParams, LeakyBucket};
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use key::{Hashed, Key, KeyHasher};
pub use limiter::Limiter;
pub use live::{Live, LiveError};
pub use multi::{check_all, combine_admissions, CellLeg, Leg, Receipt};
pub use priority::{
    PriorityBudget, PriorityCheckError, PriorityDetails, PriorityError, PriorityLevel,
    PriorityLimiter, MAX_PRIORITIES,
};
pub use quota::{QuotaError, Quotas, SharedState, Tiers};
pub use rate::{Rate, RateBuilder, RateError, RateParseError, RateParseErrorKind};
pub use rates::{Rates, RatesError, RatesParseError, RatesParseErrorKind, MAX_RATES};
pub use rollover::{QuotaRollover, QuotaView, Rollover};
pub use schedule::{
    Schedule, ScheduleBuilder, ScheduleDetails, ScheduleError, ScheduleRate, Weekday,
    MAX_SCHEDULE_RATES,
};
pub use shape::ShapeError;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use sliding_log::{LogRing, SlidingLog, SlidingLogLimiter, MAX_LOG_LIMIT};
pub use sliding_window::SlidingWindowCounter;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use table::{KeyedLimiter, OverflowPolicy, QuotaLimiter, TableConfig, TableError, TableStats};
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use table::{MultiKeyed, TableLeg};
pub use token_bucket::TokenBucket;

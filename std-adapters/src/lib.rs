//! # traffik
//!
//! Exact rate limiting for Rust: one key or millions, from any number of threads, with checks
//! that never take a lock.
//!
//! This crate re-exports the `no_std` engine ([`traffik_core`]) and adds what a std program
//! needs: a real clock ([`QuantaClock`]), random seeds, and a [`builder()`] with sensible
//! defaults.
//!
//! ```
//! use traffik::{AlgorithmKind, RateLimiter};
//!
//! let per_user: RateLimiter<str> = traffik::builder()
//!     .rate("5/s")
//!     .algorithm(AlgorithmKind::TokenBucket)
//!     .capacity(10_000)
//!     .build()?;
//! let d = per_user.check("alice", 1)?;
//! assert!(d.is_allowed());
//! assert_eq!(d.remaining(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod builder;
pub mod clock;
pub mod failover;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod http;
pub mod route;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod shape;
pub mod sliding_log;
mod sync;
pub mod wait;

pub use builder::{
    builder, BuildError, Builder, DirectLimiter, IntoRate, IntoRates, LiveDirectLimiter,
    LiveRateLimiter, MultiRateLimiter, RateLimiter, TieredRateLimiter,
};
pub use clock::QuantaClock;

/// The whole engine, for its modules and anything not re-exported below (for example
/// `traffik::traffik_core::table::WINDOW`).
pub use traffik_core;

// The engine's API, item by item (not a glob, so what this crate exports is written here).

// Rates.
pub use traffik_core::{Rate, RateBuilder, RateError, RateParseError, RateParseErrorKind};
// Algorithms, the runtime-chosen one, and what a custom algorithm implements.
pub use traffik_core::{
    Algorithm, AlgorithmKind, AlgorithmWork, AnyAlgorithm, ConfigError, DebtBalance, DebtBucket,
    FixedWindow, Gcra, GcraParams, LeakyBucket, QuotaRollover, QuotaView, Rollover,
    SlidingWindowCounter, TokenBucket, Transition, Unlimited, MAX_NOW, STATE_BITS,
};
// The sliding window log (not a one-word algorithm: a ring per key).
pub use traffik_core::{LogRing, SlidingLog, SlidingLogLimiter, MAX_LOG_LIMIT};
// Decisions and errors.
pub use traffik_core::{CheckError, Decision};
// Clocks (the real one is [`QuantaClock`] above).
pub use traffik_core::{Clock, ManualClock};
// One key: a limiter and the atomic state cell under it.
pub use traffik_core::{Limiter, StateCell};
// Many keys: the sharded table and its keys.
pub use traffik_core::{
    Hashed, Key, KeyHasher, KeyedLimiter, OverflowPolicy, TableConfig, TableError, TableStats,
};
// Per-key quotas, tiers, and algorithms that change while limiters run.
pub use traffik_core::{
    Live, LiveError, PerCallAlgorithm, QuotaError, QuotaLimiter, Quotas, SharedState, StateFormat,
    Tiers,
};
// Several limits at once, all or nothing.
pub use traffik_core::{
    check_all, CellLeg, Leg, MultiKeyed, Rates, RatesError, RatesParseError, RatesParseErrorKind,
    Receipt, TableLeg, MAX_RATES,
};
// Rates that move (load, calendar), budgets shared by priorities, deferred charges, details.
pub use traffik_core::{
    Adaptive, AdaptiveBuilder, AdaptiveDetails, AdaptiveError, ApplyReport, ContextCharge,
    ContextError, Details, Outcome, PriorityBudget, PriorityCheckError, PriorityDetails,
    PriorityError, PriorityLevel, PriorityLimiter, QuotaContext, Schedule, ScheduleBuilder,
    ScheduleDetails, ScheduleError, ScheduleRate, Weekday, MAX_PRIORITIES, MAX_SCHEDULE_RATES,
};
// The contract every backend (in-process table, Redis, ...) implements.
pub use traffik_core::{AsyncLimiter, ErrorKind, LimiterError};

/// The Redis store: one limit per key shared by every process, decided by Lua scripts that
/// match the in-process algorithms (the `traffik-redis` crate, feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use traffik_redis as redis;

/// The Memcached store: the core's algorithms applied with `gets`/`cas` (the
/// `traffik-memcached` crate, feature `memcached`).
#[cfg(feature = "memcached")]
#[cfg_attr(docsrs, doc(cfg(feature = "memcached")))]
pub use traffik_memcached as memcached;

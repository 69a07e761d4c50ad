//! # traffik
//!
//! Exact, lock-free rate limiting for Rust: one key or millions, from any number of threads.
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

pub mod builder;
pub mod clock;

pub use builder::{builder, BuildError, Builder, DirectLimiter, IntoRate, RateLimiter};
pub use clock::QuantaClock;
pub use traffik_core::*;

//! # traffik
//!
//! Exact, lock-free rate limiting. This crate re-exports the `no_std` engine
//! ([`traffik_core`]) and adds what a std program needs: real clocks.
#![forbid(unsafe_code)]

pub mod clock;

pub use clock::QuantaClock;
pub use traffik_core::*;

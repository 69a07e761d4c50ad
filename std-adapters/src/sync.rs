//! The one place this crate's atomics come from.
//!
//! The circuit breaker's state word and counters are imported from here, so that building with
//! `RUSTFLAGS="--cfg loom"` swaps them for loom's model-checked types in one move (the loom
//! tests in `loom-tests/tests/breaker.rs` rely on it), as `traffik-core`'s own `sync` module does
//! for the engine.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

//! The one place atomics come from.
//!
//! Every atomic in the crate is imported from here, so that building with
//! `RUSTFLAGS="--cfg loom"` swaps them all for loom's model-checked types in one move.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

/// Hint to the CPU that we are spinning; under loom, a yield so the model can make progress.
#[inline]
#[allow(dead_code)]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

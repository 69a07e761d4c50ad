//! The one place atomics come from.
//!
//! Every atomic in the crate is imported from here, so that building with
//! `RUSTFLAGS="--cfg loom"` swaps them all for loom's model-checked types in one move.
//! Loom has no 128-bit atomic; under loom [`AtomicU128`] is a loom mutex around a `u128`, which
//! the model checker explores like any other synchronisation (each operation is linearizable,
//! as `cmpxchg16b` is).

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(loom))]
pub(crate) use self::cell::UnsafeCell;

#[cfg(all(not(loom), feature = "alloc"))]
pub(crate) use self::wide::{AtomicU128, Wide};

#[cfg(all(loom, feature = "alloc"))]
pub(crate) use self::loom_u128::{AtomicU128, Wide};

#[cfg(all(not(loom), feature = "alloc"))]
mod wide;

#[cfg(not(loom))]
mod cell {
    /// `core::cell::UnsafeCell` with loom's closure API, so code using it is model-checked
    /// unchanged under `--cfg loom` (where loom tracks every access for races).
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(core::cell::UnsafeCell::new(value))
        }
        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(all(loom, feature = "alloc"))]
mod loom_u128 {
    use super::Ordering;

    /// Under loom there is only one way to do a 128-bit operation.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Wide;

    impl Wide {
        pub(crate) fn detect() -> Self {
            Wide
        }
    }

    /// A loom-modelled stand-in for `portable_atomic::AtomicU128` (the subset the table uses).
    #[derive(Debug)]
    pub(crate) struct AtomicU128(loom::sync::Mutex<u128>);

    impl AtomicU128 {
        pub(crate) fn new(v: u128) -> Self {
            AtomicU128(loom::sync::Mutex::new(v))
        }
        fn lock(&self) -> loom::sync::MutexGuard<'_, u128> {
            match self.0.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            }
        }
        pub(crate) fn load(&self, _: Wide, _: Ordering) -> u128 {
            *self.lock()
        }
        pub(crate) fn compare_exchange(
            &self,
            _: Wide,
            current: u128,
            new: u128,
            _: Ordering,
            _: Ordering,
        ) -> Result<u128, u128> {
            let mut g = self.lock();
            if *g == current {
                *g = new;
                Ok(current)
            } else {
                Err(*g)
            }
        }
    }
}

/// Hint to the CPU that we are spinning; under loom, a yield so the model can make progress.
#[inline]
#[allow(dead_code)]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

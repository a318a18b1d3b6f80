//! The synchronisation primitives the ring is built on, behind one shim so that the same code runs
//! under [loom](https://docs.rs/loom) (`RUSTFLAGS="--cfg loom"`), which model-checks every
//! interleaving of the atomics, as bytes does in its `src/loom.rs`.
//!
//! Only what the ring uses is here. Everything is `pub(crate)`.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic::{
        AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering, fence,
    };

    pub(crate) mod thread {
        pub(crate) use std::thread::{Thread, current, park, park_timeout};
    }

    /// `std::cell::UnsafeCell` with loom's closure-based API, so loom can track each access.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared pointer to the value. The caller upholds the aliasing rules.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a unique pointer to the value. The caller upholds the aliasing rules.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// What a spinning thread does between attempts.
    #[inline(always)]
    pub(crate) fn spin(attempt: u32) {
        if attempt < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{
        AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering, fence,
    };

    pub(crate) mod thread {
        pub(crate) use loom::thread::{Thread, current, park};
    }

    /// Under loom a spin loop must yield, or the model never lets the other thread run.
    pub(crate) fn spin(_attempt: u32) {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;

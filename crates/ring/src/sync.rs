//! The synchronisation primitives the ring is built on, behind one shim so that the same code runs
//! under [loom](https://docs.rs/loom) (`RUSTFLAGS="--cfg loom"`), which model-checks every
//! interleaving of the atomics, as bytes does in its `src/loom.rs`.
//!
//! Only what the ring uses is here. Everything is `pub(crate)`.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering, fence,
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

    /// Before parking, a blocking reader retries a little: spinning, then yielding, as
    /// crossbeam's `Backoff` does. A reader that parks costs the writer a wake (a syscall) on
    /// its next push; one that finds the frame while snoozing costs it nothing. In the flooded
    /// benchmark with 16 readers this halved the time per frame (docs/benchmarks.md).
    #[derive(Debug)]
    pub(crate) struct Backoff(u32);

    impl Backoff {
        pub(crate) fn new() -> Self {
            Backoff(0)
        }

        /// Waits a little; false once it is time to park instead.
        #[inline]
        pub(crate) fn snooze(&mut self) -> bool {
            const SPIN_LIMIT: u32 = 6;
            const YIELD_LIMIT: u32 = 10;
            if self.0 <= SPIN_LIMIT {
                for _ in 0..1u32 << self.0 {
                    std::hint::spin_loop();
                }
            } else if self.0 <= YIELD_LIMIT {
                std::thread::yield_now();
            } else {
                return false;
            }
            self.0 += 1;
            true
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering, fence,
    };

    pub(crate) mod thread {
        pub(crate) use loom::thread::{Thread, current, park};
    }

    /// Under loom a reader parks at once: snoozing only repeats `try_recv`, which the models
    /// already cover, and every retry would multiply their size.
    #[derive(Debug)]
    pub(crate) struct Backoff;

    impl Backoff {
        pub(crate) fn new() -> Self {
            Backoff
        }

        pub(crate) fn snooze(&mut self) -> bool {
            false
        }
    }
}

pub(crate) use imp::*;

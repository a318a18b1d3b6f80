//! Parking: the list of wakers of readers waiting for a frame, which the writer wakes without
//! ever waiting for it.
//!
//! A reader that finds nothing new registers a [`Waker`] here, then sets the `WAITERS` bit in the
//! ring's tail word with a `fetch_or` and checks the tail it gets back. The writer publishes a
//! frame by swapping the tail word (clearing the bit) and wakes the list only if the bit was set.
//! Both sides act on one atomic word, so one of them sees the other: either the reader sees the
//! new frame, or the writer sees the bit (and then finds the waker, registered before the bit was
//! set). With no reader parked, a push costs no lock and no syscall.
//!
//! The list itself is guarded by a one-word lock whose holder also serves wake requests: the
//! writer sets `NOTIFY | LOCKED` in one `fetch_or`; if the lock was free it now holds it, else the
//! holder finds `NOTIFY` when it unlocks and wakes the list itself. So the writer never spins on
//! a lock a reader holds (the readers spin briefly on each other; they hold it for a `Vec` push).

use std::fmt;
use std::task::Waker;

use crate::sync::{AtomicU8, AtomicU64, Ordering, UnsafeCell, spin};

const LOCKED: u8 = 1;
const NOTIFY: u8 = 2;

/// Where a reader's waker sits in the list: valid while the list's generation is `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registration {
    generation: u64,
    index: usize,
}

pub(crate) struct WaitList {
    state: AtomicU8,
    /// Bumped (under the lock) each time the list is drained; readable without the lock.
    generation: AtomicU64,
    wakers: UnsafeCell<Vec<Waker>>,
}

// SAFETY: `wakers` is only accessed by the holder of the `LOCKED` bit of `state`, acquired with
// Acquire and released with Release, so accesses are serialised. `Waker` is Send + Sync.
unsafe impl Sync for WaitList {}
// SAFETY: as above; nothing in the list is tied to a thread.
unsafe impl Send for WaitList {}

impl fmt::Debug for WaitList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitList")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WaitList {
    pub(crate) fn new() -> Self {
        WaitList {
            state: AtomicU8::new(0),
            generation: AtomicU64::new(0),
            wakers: UnsafeCell::new(Vec::new()),
        }
    }

    /// Reader: adds `waker` to the list, or replaces the one `reg` points at if it is still
    /// there. Returns the registration to pass next time.
    pub(crate) fn register(&self, waker: &Waker, reg: Option<Registration>) -> Registration {
        self.lock();
        let generation = self.generation.load(Ordering::Relaxed);
        // SAFETY: we hold the lock (see the `Sync` impl).
        let reg = self.wakers.with_mut(|p| {
            let wakers = unsafe { &mut *p };
            match reg {
                Some(r) if r.generation == generation && r.index < wakers.len() => {
                    if !wakers[r.index].will_wake(waker) {
                        wakers[r.index] = waker.clone();
                    }
                    r
                }
                _ => {
                    wakers.push(waker.clone());
                    Registration {
                        generation,
                        index: wakers.len() - 1,
                    }
                }
            }
        });
        let mut woken = Vec::new();
        self.unlock(&mut woken);
        wake_all(&mut woken);
        reg
    }

    /// Reader: withdraws a registration (a dropped future), so its waker is not kept alive.
    pub(crate) fn cancel(&self, reg: Registration) {
        // Cheap check first: a drained registration needs no lock.
        if self.generation.load(Ordering::Acquire) != reg.generation {
            return;
        }
        self.lock();
        if self.generation.load(Ordering::Relaxed) == reg.generation {
            // SAFETY: we hold the lock.
            self.wakers.with_mut(|p| {
                if let Some(w) = unsafe { &mut *p }.get_mut(reg.index) {
                    *w = Waker::noop().clone();
                }
            });
        }
        let mut woken = Vec::new();
        self.unlock(&mut woken);
        wake_all(&mut woken);
    }

    /// Writer: wakes every registered waker, now or (if a reader holds the lock) when that
    /// reader unlocks. Never blocks. `buf` is an empty vector the caller keeps to avoid an
    /// allocation per wake.
    pub(crate) fn notify(&self, buf: &mut Vec<Waker>) {
        let prev = self.state.fetch_or(LOCKED | NOTIFY, Ordering::AcqRel);
        if prev & LOCKED == 0 {
            // The lock was free: we hold it now, and `unlock` serves the NOTIFY we set.
            self.unlock(buf);
            wake_all(buf);
        }
    }

    fn lock(&self) {
        let mut attempt = 0u32;
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & LOCKED == 0 {
                match self.state.compare_exchange_weak(
                    s,
                    s | LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(actual) => s = actual,
                }
            } else {
                spin(attempt);
                attempt = attempt.saturating_add(1);
                s = self.state.load(Ordering::Relaxed);
            }
        }
    }

    /// Releases the lock, first serving any NOTIFY: the drained wakers are moved into `woken`
    /// for the caller to wake after the lock is released.
    fn unlock(&self, woken: &mut Vec<Waker>) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & NOTIFY != 0 {
                // Clear NOTIFY but keep the lock, then drain.
                self.state.fetch_and(!NOTIFY, Ordering::AcqRel);
                // SAFETY: we hold the lock.
                self.wakers.with_mut(|p| {
                    let wakers = unsafe { &mut *p };
                    if woken.is_empty() {
                        std::mem::swap(woken, wakers);
                    } else {
                        woken.append(wakers);
                    }
                });
                let g = self.generation.load(Ordering::Relaxed);
                self.generation.store(g.wrapping_add(1), Ordering::Release);
                s = self.state.load(Ordering::Acquire);
                continue;
            }
            // Only LOCKED is set (NOTIFY can only have been added by the writer, with LOCKED).
            match self
                .state
                .compare_exchange(s, 0, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    /// Test support: takes the lock as a registering reader would.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn lock_for_test(&self) {
        self.lock();
    }

    /// Test support: releases [`WaitList::lock_for_test`].
    #[cfg(all(test, not(loom)))]
    pub(crate) fn unlock_for_test(&self, woken: &mut Vec<Waker>) {
        self.unlock(woken);
    }

    /// Test support: registered wakers.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.lock();
        // SAFETY: we hold the lock.
        let n = self.wakers.with(|p| unsafe { &*p }.len());
        let mut woken = Vec::new();
        self.unlock(&mut woken);
        wake_all(&mut woken);
        n
    }
}

fn wake_all(wakers: &mut Vec<Waker>) {
    for w in wakers.drain(..) {
        w.wake();
    }
}

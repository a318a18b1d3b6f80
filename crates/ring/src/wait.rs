//! Parking: how a reader with nothing to read waits, and how the writer wakes it without ever
//! waiting itself.
//!
//! A reader that finds nothing new stores its [`Waker`] in its own [`WaitNode`], pushes the node
//! onto the ring's [`WaitList`] (a lock-free stack) unless it is there already, then sets the
//! `WAITERS` bit in the ring's tail word with a `fetch_or` and checks the tail it gets back. The
//! writer publishes a frame by swapping the tail word (clearing the bit) and, only if the bit was
//! set, takes the whole stack with one `swap` and wakes every node on it. Both sides act on one
//! atomic word, so one of them sees the other: either the reader sees the new frame, or the writer
//! sees the bit and then the node, pushed before the bit was set. With no reader parked, a push
//! costs no syscall and touches no wait state beyond the tail word.
//!
//! Nobody holds a lock: readers push with a CAS, the writer takes all with a swap (so the stack
//! has no ABA problem: nodes are only ever removed all at once), and a node's waker is an
//! [`AtomicWaker`], the algorithm of `futures`' `AtomicWaker`, in which a wake racing a
//! registration is handed to the registering side instead of waiting for it. (An earlier version
//! guarded a `Vec<Waker>` with a spin lock whose holder served the writer's wake; on a loaded
//! machine a preempted holder delayed wakes by tens of milliseconds.)

use std::fmt;
use std::ptr;
use std::task::Waker;

use crate::sync::{Arc, AtomicBool, AtomicPtr, AtomicU8, Ordering, UnsafeCell};

const WAITING: u8 = 0;
const REGISTERING: u8 = 0b01;
const WAKING: u8 = 0b10;

/// A waker slot that one registrant and any number of wakers share without a lock.
pub(crate) struct AtomicWaker {
    state: AtomicU8,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: `waker` is only accessed by the thread that moved `state` from WAITING to REGISTERING
// (the registrant) or set WAKING while it was WAITING (a waker); the state machine excludes the
// two from each other, with Acquire on entry and Release on exit. `Waker` is Send + Sync.
unsafe impl Sync for AtomicWaker {}
// SAFETY: as above.
unsafe impl Send for AtomicWaker {}

impl fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicWaker")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AtomicWaker {
    pub(crate) fn new() -> Self {
        AtomicWaker {
            state: AtomicU8::new(WAITING),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` (cloning it only if it would not wake the same task). One registrant at a
    /// time: the reader that owns the node, through `&mut Reader`.
    pub(crate) fn register(&self, waker: &Waker) {
        match self
            .state
            .compare_exchange(WAITING, REGISTERING, Ordering::Acquire, Ordering::Acquire)
            .unwrap_or_else(|s| s)
        {
            WAITING => {
                // SAFETY: we moved the state to REGISTERING, which excludes `take`'s access.
                self.waker.with_mut(|p| {
                    // SAFETY: as just said: no `take` touches the slot while we hold REGISTERING.
                    let slot = unsafe { &mut *p };
                    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        *slot = Some(waker.clone());
                    }
                });
                if self
                    .state
                    .compare_exchange(REGISTERING, WAITING, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // A wake came while we were storing: it left the waker to us.
                    // SAFETY: the state is REGISTERING | WAKING, so `take` stays out until we
                    // reset it below.
                    let w = self.waker.with_mut(|p| unsafe { (*p).take() });
                    self.state.swap(WAITING, Ordering::AcqRel);
                    if let Some(w) = w {
                        w.wake();
                    }
                }
            }
            WAKING => {
                // A wake is running on the old waker: wake the new one ourselves.
                waker.wake_by_ref();
            }
            _ => {
                // REGISTERING: a second registrant, which the reader's `&mut self` rules out.
                debug_assert!(false, "concurrent registration of one AtomicWaker");
            }
        }
    }

    /// Test support: the first half of [`AtomicWaker::register`], as a registrant preempted
    /// there leaves it.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn begin_register_for_test(&self) {
        assert_eq!(self.state.swap(REGISTERING, Ordering::Acquire), WAITING);
    }

    /// Test support: the second half of [`AtomicWaker::register`].
    #[cfg(all(test, not(loom)))]
    pub(crate) fn finish_register_for_test(&self, waker: &Waker) {
        // SAFETY: the state is REGISTERING (with WAKING perhaps): `take` stays out.
        self.waker.with_mut(|p| unsafe { *p = Some(waker.clone()) });
        if self
            .state
            .compare_exchange(REGISTERING, WAITING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: as above.
            let w = self.waker.with_mut(|p| unsafe { (*p).take() });
            self.state.swap(WAITING, Ordering::AcqRel);
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    /// Takes the waker out, unless a registration is in progress (that registrant then wakes
    /// its waker itself) or another take is.
    pub(crate) fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            WAITING => {
                // SAFETY: we moved the state from WAITING to WAKING, which excludes `register`'s
                // access and every other `take`.
                let w = self.waker.with_mut(|p| unsafe { (*p).take() });
                self.state.fetch_and(!WAKING, Ordering::Release);
                w
            }
            _ => None,
        }
    }
}

/// One reader's entry in the wait list; the reader keeps it across parks.
pub(crate) struct WaitNode {
    waker: AtomicWaker,
    /// True while the node is on the stack (or about to be pushed by its reader).
    queued: AtomicBool,
    /// The next node down the stack; written by the pushing reader before the push, read by the
    /// writer after it has taken the stack.
    next: UnsafeCell<*mut WaitNode>,
}

// SAFETY: `next` is written only by the node's reader while the node is off the stack (`queued`
// went false → true under its own swap) and read only by the writer after taking the stack; the
// push (Release CAS) and take (Acquire swap) order the two. The rest is atomic.
unsafe impl Sync for WaitNode {}
// SAFETY: as above; the raw pointer is only a stack link.
unsafe impl Send for WaitNode {}

impl fmt::Debug for WaitNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitNode")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WaitNode {
    pub(crate) fn new() -> Self {
        WaitNode {
            waker: AtomicWaker::new(),
            queued: AtomicBool::new(false),
            next: UnsafeCell::new(ptr::null_mut()),
        }
    }

    /// Reader: withdraws its waker (a dropped future), so a later wake finds nothing to wake.
    pub(crate) fn cancel(&self) {
        drop(self.waker.take());
    }

    /// Test support: true if no waker is stored.
    #[cfg(all(test, loom))]
    pub(crate) fn waker_is_empty_for_test(&self) -> bool {
        self.waker.take().is_none()
    }
}

/// The readers waiting for a frame: a stack of [`WaitNode`]s, each holding one `Arc` reference.
pub(crate) struct WaitList {
    head: AtomicPtr<WaitNode>,
}

impl fmt::Debug for WaitList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitList")
            .field("empty", &self.head.load(Ordering::Relaxed).is_null())
            .finish()
    }
}

impl WaitList {
    pub(crate) fn new() -> Self {
        WaitList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Reader: stores `waker` in `node` and puts the node on the list if it is not there.
    pub(crate) fn register(&self, node: &Arc<WaitNode>, waker: &Waker) {
        node.waker.register(waker);
        // AcqRel: Release so that a writer whose `swap(false)` reads this `true` also sees the
        // waker stored above; Acquire to read the writer's `false`.
        if node.queued.swap(true, Ordering::AcqRel) {
            return; // Still on the list: the writer will find the new waker there.
        }
        let raw = Arc::into_raw(node.clone()).cast_mut();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the node is off the list (`queued` was false and we set it), so nobody
            // else reads or writes its link until the CAS below publishes it.
            node.next.with_mut(|p| unsafe { *p = head });
            match self
                .head
                .compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Writer: wakes every node on the list and empties it. Never blocks, never spins.
    pub(crate) fn notify(&self) {
        // Acquire: pairs with the pushes' Release, so the links and wakers are visible.
        let mut p = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: `p` came from `Arc::into_raw` in `register`, and taking the whole list
            // made that reference ours.
            let node = unsafe { Arc::from_raw(p.cast_const()) };
            // SAFETY: the node is off the list and its reader does not touch the link until it
            // has seen `queued` false, which we store below.
            p = node.next.with(|n| unsafe { *n });
            // A swap, not a store: reading the reader's last `true` orders the waker it stored
            // before that before our `take`.
            node.queued.swap(false, Ordering::AcqRel);
            if let Some(w) = node.waker.take() {
                w.wake();
            }
        }
    }
}

impl Drop for WaitList {
    fn drop(&mut self) {
        let mut p = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: as in `notify`: each node on the list holds one reference from
            // `Arc::into_raw`; nothing else can reach the list any more.
            let node = unsafe { Arc::from_raw(p.cast_const()) };
            // SAFETY: the node is off the list; no reader can be pushing it (we are dropped).
            p = node.next.with(|n| unsafe { *n });
        }
    }
}

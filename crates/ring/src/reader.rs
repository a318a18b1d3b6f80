//! [`Reader`]: one consumer, at its own pace. Blocking, async and non-blocking receive.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
#[cfg(not(loom))]
use std::time::{Duration, Instant};

use nvrkit_media::Frame;

#[cfg(not(loom))]
use crate::error::RecvTimeoutError;
use crate::error::{RecvError, TryRecvError};
use crate::shared::{CLOSED, Ring, Shared, TAIL_SHIFT, WAITERS};
use crate::sync::{Arc, Backoff, Ordering, thread};
use crate::wait::WaitNode;

/// The consumer side of a ring: reads every frame from its start on, in push order.
///
/// A reader never receives a frame whose keyframe it did not receive: it starts at a keyframe,
/// and when the writer evicts frames it has not read yet it gets [`RecvError::Lagged`] once and
/// continues at the oldest retained keyframe. It holds no frame in the ring (eviction never
/// waits for it) and costs the writer nothing unless it is parked.
pub struct Reader {
    shared: Arc<Shared>,
    /// Sequence number of the next frame to return.
    next: u64,
    /// The last tail seen, so that a reader behind the writer does not load it per frame.
    tail: u64,
    /// This reader's entry in the wait list, made the first time it parks.
    node: Option<Arc<WaitNode>>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, next: u64) -> Self {
        Reader {
            shared,
            next,
            tail: 0,
            node: None,
        }
    }

    /// The next frame if there is one now.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if the reader is at the newest frame, [`TryRecvError::Lagged`] as
    /// [`RecvError::Lagged`], [`TryRecvError::Closed`] once the writer is gone and every frame
    /// read.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Frame, TryRecvError> {
        if self.next >= self.tail {
            let word = self.shared.tail.load(Ordering::Acquire);
            self.tail = word >> TAIL_SHIFT;
            if self.next >= self.tail {
                return Err(if word & CLOSED != 0 {
                    TryRecvError::Closed
                } else {
                    TryRecvError::Empty
                });
            }
        }
        match self.shared.read(self.next) {
            Some(frame) => {
                self.next += 1;
                Ok(frame)
            }
            None => Err(TryRecvError::Lagged {
                skipped: self.lagged(),
            }),
        }
    }

    /// Frame `next` is gone: jump to the oldest retained keyframe. Returns the frames skipped.
    #[cold]
    fn lagged(&mut self) -> u64 {
        // The slot we found untagged (or the index entry overwritten by a later frame) was
        // released by the writer after it stored a `head` beyond `next` (see `Writer`), and our
        // Acquire pin or index load synchronised with that, so `head > next` here.
        let head = self.shared.head();
        debug_assert!(
            head > self.next,
            "lag without eviction: head {head}, next {}",
            self.next
        );
        let skipped = head.saturating_sub(self.next);
        self.next = self.next.max(head);
        skipped
    }

    /// Registers `waker`, then announces it in the tail word. Returns true if a frame (or the
    /// close) arrived meanwhile, so the caller must try again rather than sleep.
    fn prepare_park(&mut self, waker: &Waker) -> bool {
        let node = self.node.get_or_insert_with(|| Arc::new(WaitNode::new()));
        self.shared.waits.register(node, waker);
        // The same word the writer swaps when it publishes: whichever comes second sees the
        // other (the writer sees WAITERS and wakes us, or we see its frame here).
        let word = self.shared.tail.fetch_or(WAITERS, Ordering::AcqRel);
        self.tail = word >> TAIL_SHIFT;
        self.next < self.tail || word & CLOSED != 0
    }

    /// The next frame, parking the thread until there is one. Do not call it from an async task
    /// (use [`Reader::recv_async`]).
    ///
    /// # Errors
    /// [`RecvError::Lagged`] if frames this reader had not read were evicted (the next call
    /// returns the oldest retained keyframe); [`RecvError::Closed`] once the writer is gone and
    /// every frame read.
    pub fn recv(&mut self) -> Result<Frame, RecvError> {
        let mut waker = None;
        let mut backoff = Backoff::new();
        let result = loop {
            match self.try_recv() {
                Ok(frame) => break Ok(frame),
                Err(TryRecvError::Lagged { skipped }) => break Err(RecvError::Lagged { skipped }),
                Err(TryRecvError::Closed) => break Err(RecvError::Closed),
                Err(TryRecvError::Empty) => {}
            }
            if backoff.snooze() {
                continue;
            }
            let waker = waker.get_or_insert_with(thread_waker);
            if !self.prepare_park(waker) {
                thread::park();
            }
        };
        if waker.is_some() {
            self.cancel_wait();
        }
        result
    }

    /// Withdraws a registered waker, so that a later push does not wake it for nothing.
    fn cancel_wait(&self) {
        if let Some(node) = &self.node {
            node.cancel();
        }
    }

    /// As [`Reader::recv`], giving up after `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if no frame arrived in time; otherwise as
    /// [`Reader::recv`].
    #[cfg(not(loom))]
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Frame, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut waker = None;
        let mut backoff = Backoff::new();
        let result = loop {
            match self.try_recv() {
                Ok(frame) => break Ok(frame),
                Err(TryRecvError::Lagged { skipped }) => {
                    break Err(RecvTimeoutError::Lagged { skipped });
                }
                Err(TryRecvError::Closed) => break Err(RecvTimeoutError::Closed),
                Err(TryRecvError::Empty) => {}
            }
            if backoff.snooze() {
                continue;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => break Err(RecvTimeoutError::Timeout),
                Some(d) => Some(d - now),
                None => None,
            };
            let waker = waker.get_or_insert_with(thread_waker);
            if !self.prepare_park(waker) {
                match left {
                    Some(left) => thread::park_timeout(left),
                    None => thread::park(),
                }
            }
        };
        if waker.is_some() {
            self.cancel_wait();
        }
        result
    }

    /// The next frame, waiting without blocking the thread: usable from any async runtime
    /// (the ring does not depend on one). Cancel-safe: dropping the future loses no frame.
    ///
    /// # Errors
    /// As [`Reader::recv`].
    pub fn recv_async(&mut self) -> Recv<'_> {
        Recv {
            reader: self,
            registered: false,
        }
    }

    /// Frames published but not read yet (some may already be evicted): how far behind the
    /// writer this reader is.
    pub fn pending(&self) -> u64 {
        let tail = self.shared.tail.load(Ordering::Acquire) >> TAIL_SHIFT;
        tail.saturating_sub(self.next)
    }

    /// A handle on the ring this reader reads.
    pub fn ring(&self) -> Ring {
        Ring {
            shared: self.shared.clone(),
        }
    }
}

/// The future of [`Reader::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a> {
    reader: &'a mut Reader,
    registered: bool,
}

impl fmt::Debug for Recv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl Future for Recv<'_> {
    type Output = Result<Frame, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match this.reader.try_recv() {
                Ok(frame) => return Poll::Ready(Ok(frame)),
                Err(TryRecvError::Lagged { skipped }) => {
                    return Poll::Ready(Err(RecvError::Lagged { skipped }));
                }
                Err(TryRecvError::Closed) => return Poll::Ready(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => {}
            }
            this.registered = true;
            if !this.reader.prepare_park(cx.waker()) {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.reader.cancel_wait();
        }
    }
}

/// Wakes a thread parked in [`Reader::recv`].
struct ThreadWaker(thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

fn thread_waker() -> Waker {
    Waker::from(std::sync::Arc::new(ThreadWaker(thread::current())))
}

//! The two lock-free building blocks: a frame [`Slot`] that readers pin while they clone from it,
//! and the keyframe side index, a ring of [`KeyEntry`]s read under a seqlock of atomics.
//!
//! # Why pins, not a seqlock, for frames
//! A seqlock lets a reader copy racily and retry, which is unsound for a `Frame`: cloning its
//! `Bytes` calls through a vtable into a reference count that the writer may have freed. So a
//! reader announces itself on the slot (a pin) before it touches the frame, and the writer never
//! drops or overwrites a frame while a pin is up. The writer never waits for a pin to go down
//! either: it takes another free slot (the ring maps sequence numbers to slots through an index
//! for exactly this) and reclaims the pinned one on a later push.

use nvrkit_media::Frame;

use crate::sync::{AtomicI64, AtomicU64, Ordering, UnsafeCell, fence};

/// Bits of a slot's state word that count pins (readers inside the slot).
const PIN_BITS: u32 = 20;
const PIN: u64 = 1;
const PIN_MASK: u64 = (1 << PIN_BITS) - 1;
/// Tags are 44 bits: `seq % TAG_MODULUS + 1`, so 0 means "no frame". 2^44 - 1 frames is 557
/// years at 1,000 frames/s before a tag repeats.
const TAG_MODULUS: u64 = (1 << (64 - PIN_BITS)) - 1;

/// The tag of sequence number `seq`: never 0.
#[inline(always)]
fn tag(seq: u64) -> u64 {
    (seq % TAG_MODULUS + 1) << PIN_BITS
}

/// One frame's storage.
///
/// The state word is `tag << 20 | pins`. The tag says which sequence number the slot holds
/// (0: none); pins count the readers between their pin and unpin. Readers only ever add and
/// subtract [`PIN`]; the writer only ever adds or subtracts a tag. Both are plain `fetch_add` and
/// `fetch_sub` on one word, so neither side loops and their order is the word's modification
/// order.
#[derive(Debug)]
#[repr(align(128))] // Two cache lines: the writer fills slot n while readers pin slot n - 1.
pub(crate) struct Slot {
    state: AtomicU64,
    frame: UnsafeCell<Option<Frame>>,
}

// SAFETY: `frame` is only written by the single writer while the slot's tag is 0 and no reader
// that saw a matching tag still holds a pin, and only read by readers whose pin saw a matching
// tag; the `state` word orders the two (see `publish`, `evict`, `read`). `Frame` is Send + Sync.
unsafe impl Sync for Slot {}

impl Slot {
    pub(crate) fn new() -> Self {
        Slot {
            state: AtomicU64::new(0),
            frame: UnsafeCell::new(None),
        }
    }

    /// Reader: clones the frame if the slot holds `seq`, else `None` (evicted or reused).
    #[inline]
    pub(crate) fn read(&self, seq: u64) -> Option<Frame> {
        // Acquire: if we see `seq`'s tag we see the frame the writer stored before tagging it.
        let prev = self.state.fetch_add(PIN, Ordering::Acquire);
        let frame = if prev & !PIN_MASK == tag(seq) {
            // SAFETY: our pin went up while the slot was tagged `seq`. The writer removes the tag
            // (`evict`) before it touches the frame again, and then only touches it once it has
            // seen the pin count at zero, which cannot happen before our unpin below. So no
            // `&mut` exists while we read, and the value is the one published with the tag.
            self.frame.with(|p| unsafe { (*p).clone() })
        } else {
            None
        };
        // Release: our reads of the frame happen before the writer's reclaim sees the pin gone.
        self.state.fetch_sub(PIN, Ordering::Release);
        frame
    }

    /// Writer: stores `frame` as `seq` in a free slot (tag 0; see [`Slot::try_reclaim`]).
    ///
    /// # Safety
    /// The caller is the ring's single writer and the slot is free: taken from the free list,
    /// never published since it was last reclaimed.
    #[inline]
    pub(crate) unsafe fn publish(&self, seq: u64, frame: Frame) {
        // SAFETY: the slot is free (caller's contract): its tag is 0, so any reader that pins it
        // now sees a mismatch and leaves without touching `frame`, and no reader that saw a
        // matching tag is still inside (the reclaim saw zero pins after the tag was removed).
        self.frame.with_mut(|p| unsafe { *p = Some(frame) });
        // Release: the frame is written before any reader can see the tag. Pins may be nonzero
        // (readers passing through); adding the tag leaves them intact.
        self.state.fetch_add(tag(seq), Ordering::Release);
    }

    /// Writer: removes `seq`'s tag. Returns true if no reader is inside, in which case the caller
    /// may [`Slot::take`] the frame at once; else it must retry [`Slot::try_reclaim`] later.
    #[inline]
    pub(crate) fn evict(&self, seq: u64) -> bool {
        // AcqRel: Acquire so that, with zero pins, every earlier reader's clone happened before
        // us; Release so that a reader who sees the tag gone also sees the new `head` stored
        // before this call (the lag path relies on it).
        let prev = self.state.fetch_sub(tag(seq), Ordering::AcqRel);
        debug_assert_eq!(
            prev & !PIN_MASK,
            tag(seq),
            "evicting a slot that does not hold seq"
        );
        prev & PIN_MASK == 0
    }

    /// Writer: true once no reader is inside an untagged slot; then [`Slot::take`] is allowed.
    #[inline]
    pub(crate) fn try_reclaim(&self) -> bool {
        // Acquire: pairs with the readers' Release unpin.
        self.state.load(Ordering::Acquire) & PIN_MASK == 0
    }

    /// Writer: takes the frame out of an evicted slot, so its payload is freed now.
    ///
    /// # Safety
    /// The caller is the ring's single writer, and [`Slot::evict`] or [`Slot::try_reclaim`]
    /// returned true since the slot's tag was removed.
    #[inline]
    pub(crate) unsafe fn take(&self) -> Option<Frame> {
        // SAFETY: the tag is gone, so new pins leave without reading; the caller saw zero pins
        // after the tag was removed (with Acquire), so every reader that saw the tag is done.
        self.frame.with_mut(|p| unsafe { (*p).take() })
    }

    /// Test support: the pin count.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn pins(&self) -> u64 {
        self.state.load(Ordering::Relaxed) & PIN_MASK
    }

    /// Test support: holds a pin, as a reader stalled mid-clone would.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn pin_for_test(&self) {
        self.state.fetch_add(PIN, Ordering::Acquire);
    }

    /// Test support: releases [`Slot::pin_for_test`].
    #[cfg(all(test, not(loom)))]
    pub(crate) fn unpin_for_test(&self) {
        self.state.fetch_sub(PIN, Ordering::Release);
    }
}

/// One entry of the keyframe side index: GOP number `k` starts at sequence number `seq` and
/// wall-clock time `wall` (µs). Written by the writer, read by anyone, under a seqlock made of
/// atomics (every field is atomic, so a racing read is stale, never undefined).
#[derive(Debug)]
pub(crate) struct KeyEntry {
    /// `k + 1` of the GOP stored, 0 while being written.
    tag: AtomicU64,
    seq: AtomicU64,
    wall: AtomicI64,
}

impl KeyEntry {
    pub(crate) fn new() -> Self {
        KeyEntry {
            tag: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            wall: AtomicI64::new(0),
        }
    }

    /// Writer only.
    pub(crate) fn write(&self, k: u64, seq: u64, wall: i64) {
        self.tag.store(0, Ordering::Relaxed);
        // A reader whose field loads see the stores below also sees the 0 above in its recheck.
        fence(Ordering::Release);
        self.seq.store(seq, Ordering::Relaxed);
        self.wall.store(wall, Ordering::Relaxed);
        self.tag.store(k + 1, Ordering::Release);
    }

    /// `(seq, wall)` if the entry still holds GOP `k`.
    pub(crate) fn read(&self, k: u64) -> Option<(u64, i64)> {
        if self.tag.load(Ordering::Acquire) != k + 1 {
            return None;
        }
        let seq = self.seq.load(Ordering::Relaxed);
        let wall = self.wall.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.tag.load(Ordering::Relaxed) == k + 1).then_some((seq, wall))
    }
}

//! [`Writer`]: the one producer. It alone evicts, a whole GOP at a time, and never waits.

use std::collections::VecDeque;
use std::fmt;

use nvrkit_media::Frame;

use crate::error::PushError;
use crate::reader::Reader;
use crate::shared::{CLOSED, Ring, Shared, Start, Stats, TAIL_SHIFT, WAITERS};
use crate::sync::{Arc, Ordering};

/// What [`Writer::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// Retained as sequence number `seq` (0 for the first retained frame, then +1 each).
    Retained {
        /// The frame's sequence number in this ring.
        seq: u64,
    },
    /// Not retained: the ring holds no keyframe to hang it on. That is the case before the first
    /// video keyframe, and after a GOP was dropped whole because it alone outgrew `max_frames`
    /// (or, in theory, every slot was held by a reader mid-copy). No reader could decode the
    /// frame, so none sees it; retention resumes at the next video keyframe.
    AwaitingKeyframe,
}

/// One retained GOP, in the writer's own books.
#[derive(Debug, Clone, Copy)]
struct Gop {
    /// Sequence number of its keyframe.
    start: u64,
    /// Its number in the keyframe index.
    key: u64,
    /// Its keyframe's wall-clock time as indexed (µs, never below the previous GOP's).
    wall: i64,
    frames: u64,
    bytes: u64,
}

/// The producer side of a ring. There is exactly one; dropping it (or [`Writer::close`]) closes
/// the ring, and readers end with [`RecvError::Closed`](crate::RecvError::Closed) once drained.
pub struct Writer {
    shared: Arc<Shared>,
    /// Next sequence number; equal to the published tail between pushes.
    tail: u64,
    gops: VecDeque<Gop>,
    next_key: u64,
    /// Slots holding nothing, ready for a frame.
    free: Vec<u32>,
    /// Evicted slots a reader was still inside; reclaimed on a later push.
    deferred: Vec<u32>,
    frames: u64,
    bytes: u64,
    newest_wall: i64,
    last_key_wall: i64,
    pushed: u64,
    dropped: u64,
    evicted: u64,
    max_duration_us: i64,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("tail", &self.tail)
            .field("gops", &self.gops.len())
            .field("frames", &self.frames)
            .field("bytes", &self.bytes)
            .field("free", &self.free.len())
            .field("deferred", &self.deferred.len())
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let slots = shared.slots.len() as u32;
        let max_duration_us =
            i64::try_from(shared.config.max_duration.as_micros()).unwrap_or(i64::MAX);
        Writer {
            shared,
            tail: 0,
            gops: VecDeque::new(),
            next_key: 0,
            // Reversed so that slots are used in address order at first (pop takes the last).
            free: (0..slots).rev().collect(),
            deferred: Vec::new(),
            frames: 0,
            bytes: 0,
            newest_wall: i64::MIN,
            last_key_wall: i64::MIN,
            pushed: 0,
            dropped: 0,
            evicted: 0,
            max_duration_us,
        }
    }

    /// Appends `frame`, evicting the oldest GOPs as the bounds require. Never blocks, never waits
    /// for a reader, and makes no syscall unless a reader is parked waiting (then it wakes it).
    ///
    /// A frame is a keyframe, starting a GOP, if `frame.keyframe` is set and it belongs to the
    /// [video stream](crate::Config::video_stream). Frames before the first such keyframe are
    /// not retained ([`Pushed::AwaitingKeyframe`]).
    ///
    /// # Errors
    /// [`PushError::MissingWallTime`] if `frame.wall` is `None`; the ring is then unchanged.
    pub fn push(&mut self, frame: Frame) -> Result<Pushed, PushError> {
        let Some(wall) = frame.wall else {
            return Err(PushError::MissingWallTime {
                stream: frame.stream,
                dts: frame.dts,
            });
        };
        let wall = wall.as_micros();
        self.pushed += 1;
        if !self.deferred.is_empty() {
            self.reclaim_deferred();
        }
        let is_key = frame.keyframe && frame.stream == self.shared.config.video_stream;
        if !is_key && self.gops.is_empty() {
            return Ok(self.not_retained());
        }

        // Room for one more frame: a slot, and below max_frames. Old GOPs go first; the GOP
        // being written stays unless this frame starts a new one.
        let max_frames = self.shared.config.max_frames as u64;
        let keep = usize::from(!is_key);
        while (self.frames >= max_frames || self.free.is_empty()) && self.gops.len() > keep {
            self.evict_oldest();
        }
        let id = match self.free.pop() {
            Some(id) if self.frames < max_frames => id,
            other => {
                // The GOP being written alone fills the ring (or every slot is held by a reader
                // mid-copy): this frame cannot be kept, and the rest of its GOP would be
                // undecodable without it. Drop the GOP and wait for the next keyframe.
                self.free.extend(other);
                while !self.gops.is_empty() {
                    self.evict_oldest();
                }
                return Ok(self.not_retained());
            }
        };

        let seq = self.tail;
        let len = frame.data.len() as u64;
        if is_key {
            let key_wall = wall.max(self.last_key_wall);
            self.last_key_wall = key_wall;
            self.gops.push_back(Gop {
                start: seq,
                key: self.next_key,
                wall: key_wall,
                frames: 0,
                bytes: 0,
            });
        }
        if let Some(gop) = self.gops.back_mut() {
            gop.frames += 1;
            gop.bytes += len;
        }
        self.frames += 1;
        self.bytes += len;
        self.newest_wall = self.newest_wall.max(wall);

        // Bytes and duration: never the GOP being written.
        let max_bytes = self.shared.config.max_bytes;
        while self.gops.len() > 1
            && (self.bytes > max_bytes
                || self.gops[1].wall <= self.newest_wall.saturating_sub(self.max_duration_us))
        {
            self.evict_oldest();
        }

        // Publish: slot, index, keyframe index, then the tail that makes it all visible.
        let shared = &*self.shared;
        // SAFETY: we are the only writer and `id` came off the free list.
        unsafe { shared.slots[id as usize].publish(seq, frame) };
        shared.index[(seq & shared.mask) as usize].store(id, Ordering::Release);
        if is_key {
            let k = self.next_key;
            shared.keys[(k & shared.mask) as usize].write(k, seq, self.last_key_wall);
            self.next_key += 1;
            shared
                .bounds
                .key_tail
                .store(self.next_key, Ordering::Release);
        }
        self.tail = seq + 1;
        // AcqRel: Release publishes the frame; Acquire, when WAITERS was set, makes the node
        // the reader pushed before setting it visible to `notify`.
        let prev = shared.tail.swap(self.tail << TAIL_SHIFT, Ordering::AcqRel);
        if prev & WAITERS != 0 {
            shared.waits.notify();
        }
        self.publish_counters();
        Ok(Pushed::Retained { seq })
    }

    fn not_retained(&mut self) -> Pushed {
        self.dropped += 1;
        self.publish_counters();
        Pushed::AwaitingKeyframe
    }

    /// Evicts the oldest GOP: moves `head` past it, then untags its slots.
    fn evict_oldest(&mut self) {
        let Some(gop) = self.gops.pop_front() else {
            return;
        };
        let end = self.gops.front().map_or(self.tail, |g| g.start);
        let shared = &*self.shared;
        // Head first: a reader that finds a slot untagged must find `head` already past it (the
        // untagging below is a Release that carries this store along).
        shared.bounds.head.store(end, Ordering::Release);
        shared.bounds.key_head.store(gop.key + 1, Ordering::Release);
        for seq in gop.start..end {
            let id = shared.index[(seq & shared.mask) as usize].load(Ordering::Relaxed);
            let slot = &shared.slots[id as usize];
            if slot.evict(seq) {
                // SAFETY: we are the only writer and `evict` saw no reader inside.
                drop(unsafe { slot.take() });
                self.free.push(id);
            } else {
                self.deferred.push(id);
            }
        }
        self.frames -= gop.frames;
        self.bytes -= gop.bytes;
        self.evicted += gop.frames;
    }

    fn reclaim_deferred(&mut self) {
        let shared = &*self.shared;
        let free = &mut self.free;
        self.deferred.retain(|&id| {
            let slot = &shared.slots[id as usize];
            if slot.try_reclaim() {
                // SAFETY: we are the only writer, the slot was evicted and no reader is inside.
                drop(unsafe { slot.take() });
                free.push(id);
                false
            } else {
                true
            }
        });
    }

    /// Stores the counters [`Writer::stats`] reads. Left out under loom: these Relaxed stores
    /// synchronise nothing, and each would be one more scheduling point for the model to
    /// explore (they made the models several times slower).
    #[cfg(loom)]
    fn publish_counters(&self) {}

    #[cfg(not(loom))]
    fn publish_counters(&self) {
        let c = &self.shared.counters;
        c.frames.store(self.frames, Ordering::Relaxed);
        c.bytes.store(self.bytes, Ordering::Relaxed);
        c.gops.store(self.gops.len() as u64, Ordering::Relaxed);
        c.pushed.store(self.pushed, Ordering::Relaxed);
        c.dropped.store(self.dropped, Ordering::Relaxed);
        c.evicted.store(self.evicted, Ordering::Relaxed);
        let oldest = self.gops.front().map_or(crate::shared::NO_WALL, |g| g.wall);
        c.oldest.store(oldest, Ordering::Relaxed);
        let newest = if self.gops.is_empty() {
            crate::shared::NO_WALL
        } else {
            self.newest_wall
        };
        c.newest.store(newest, Ordering::Relaxed);
    }

    /// A handle on this ring, to make readers and snapshots from other threads.
    pub fn ring(&self) -> Ring {
        Ring {
            shared: self.shared.clone(),
        }
    }

    /// Shorthand for `self.ring().reader(start)`.
    pub fn reader(&self, start: Start) -> Reader {
        Reader::new(self.shared.clone(), self.shared.start(start))
    }

    /// The ring's counters (exact here: the writer's own books).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Closes the ring: readers read what is retained, then get
    /// [`RecvError::Closed`](crate::RecvError::Closed). Same as dropping the writer.
    pub fn close(self) {}

    /// Test support: slots waiting for a reader to leave.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn deferred_slots(&self) -> usize {
        self.deferred.len()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let prev = self.shared.tail.fetch_or(CLOSED, Ordering::AcqRel);
        if prev & WAITERS != 0 {
            self.shared.waits.notify();
        }
    }
}

//! The state shared by the writer and every reader, and [`Ring`], the handle that makes readers
//! and snapshots.

use std::fmt;
use std::ops::Deref;

use nvrkit_media::{Frame, WallTime};

use crate::config::Config;
use crate::error::ConfigError;
use crate::reader::Reader;
use crate::slot::{KeyEntry, Slot};
use crate::sync::{Arc, AtomicI64, AtomicU32, AtomicU64, Ordering};
use crate::wait::WaitList;

/// Tail word bit: the writer is gone.
pub(crate) const CLOSED: u64 = 0b10;
/// Tail word bit: some reader registered a waker since the last publish.
pub(crate) const WAITERS: u64 = 0b01;
/// The tail word is `next_seq << TAIL_SHIFT | CLOSED | WAITERS`.
pub(crate) const TAIL_SHIFT: u32 = 2;

/// Where a new [`Reader`] starts. Every start is a keyframe of the video stream (or, in a ring
/// that holds none yet, the next frame to be retained, which will be one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Start {
    /// The newest retained keyframe: a live join, at most one GOP behind.
    NewestKeyframe,
    /// The oldest retained keyframe: everything the ring holds.
    OldestKeyframe,
    /// The newest keyframe whose wall-clock time is at or before this instant; the oldest
    /// retained keyframe if every retained one is later.
    AtOrBefore(WallTime),
}

/// A snapshot of a ring's counters (each read separately, so they may be one push apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames retained.
    pub frames: u64,
    /// Payload bytes retained.
    pub bytes: u64,
    /// GOPs retained.
    pub gops: u64,
    /// Frames offered to `push` (with a wall-clock time).
    pub pushed: u64,
    /// Frames not retained because the ring was waiting for a keyframe.
    pub dropped: u64,
    /// Frames evicted.
    pub evicted: u64,
    /// Wall-clock time of the oldest retained keyframe.
    pub oldest: Option<WallTime>,
    /// Newest wall-clock time retained.
    pub newest: Option<WallTime>,
}

/// Aligns its content to its own pair of cache lines, so that the words the writer stores on
/// every push do not share a line with words readers write.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Where a ring's oldest content starts; stored by the writer on eviction.
#[derive(Debug)]
pub(crate) struct Bounds {
    /// Sequence number of the oldest retained frame (a keyframe), or, when nothing is retained,
    /// of the next frame to be retained (which will be a keyframe).
    pub(crate) head: AtomicU64,
    /// Number of the oldest retained GOP.
    pub(crate) key_head: AtomicU64,
    /// Number of GOPs ever published.
    pub(crate) key_tail: AtomicU64,
}

/// Counters for [`Stats`], stored Relaxed by the writer.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) frames: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) gops: AtomicU64,
    pub(crate) pushed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) oldest: AtomicI64,
    pub(crate) newest: AtomicI64,
}

pub(crate) struct Shared {
    /// `next_seq << 2 | CLOSED | WAITERS`: stored by the writer on every push, loaded by readers.
    pub(crate) tail: Padded<AtomicU64>,
    pub(crate) bounds: Padded<Bounds>,
    pub(crate) counters: Padded<Counters>,
    /// `seq & mask` → slot id, for every retained frame.
    pub(crate) index: Box<[AtomicU32]>,
    /// `k & mask` → GOP `k`'s keyframe.
    pub(crate) keys: Box<[KeyEntry]>,
    pub(crate) mask: u64,
    pub(crate) slots: Box<[Slot]>,
    pub(crate) waits: WaitList,
    pub(crate) config: Config,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("tail", &self.tail.load(Ordering::Relaxed))
            .field("bounds", &self.bounds)
            .field("slots", &self.slots.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A boxed slice of `n` values of `make`, or `None` if the memory cannot be had.
fn try_collect<T>(n: usize, make: impl Fn() -> T) -> Option<Box<[T]>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.extend((0..n).map(|_| make()));
    Some(v.into_boxed_slice())
}

/// No wall-clock time yet, in [`Counters`].
pub(crate) const NO_WALL: i64 = i64::MIN;

impl Shared {
    /// `slots` was checked by [`Config::slots`]: at most 2^30. Allocation failure is an error,
    /// not an abort, since `max_frames` comes from the caller's configuration (where the system
    /// refuses the allocation: with memory overcommit it may not, and the pages fail later).
    pub(crate) fn new(config: Config, slots: usize) -> Result<Self, ConfigError> {
        // The index must hold every retained sequence number without wrapping onto another:
        // at most `max_frames` are retained, so a power of two above it does.
        let index_len = (config.max_frames + 1).next_power_of_two();
        let bytes = slots * size_of::<Slot>()
            + index_len * (size_of::<AtomicU32>() + size_of::<KeyEntry>());
        let oom = || ConfigError::OutOfMemory { bytes };
        Ok(Shared {
            tail: Padded(AtomicU64::new(0)),
            bounds: Padded(Bounds {
                head: AtomicU64::new(0),
                key_head: AtomicU64::new(0),
                key_tail: AtomicU64::new(0),
            }),
            counters: Padded(Counters {
                frames: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                gops: AtomicU64::new(0),
                pushed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                oldest: AtomicI64::new(NO_WALL),
                newest: AtomicI64::new(NO_WALL),
            }),
            // The slots first: the largest allocation fails before the others are touched.
            slots: try_collect(slots, Slot::new).ok_or_else(oom)?,
            index: try_collect(index_len, || AtomicU32::new(0)).ok_or_else(oom)?,
            keys: try_collect(index_len, KeyEntry::new).ok_or_else(oom)?,
            mask: index_len as u64 - 1,
            waits: WaitList::new(),
            config,
        })
    }

    /// Clones frame `seq` if it is still retained (the caller saw it published).
    #[inline]
    pub(crate) fn read(&self, seq: u64) -> Option<Frame> {
        // Acquire: pairs with the writer's Release store, so that an index entry written for a
        // later frame (this one is gone) comes with the `head` stored before it.
        let id = self.index[(seq & self.mask) as usize].load(Ordering::Acquire);
        self.slots.get(id as usize)?.read(seq)
    }

    pub(crate) fn head(&self) -> u64 {
        self.bounds.head.load(Ordering::Acquire)
    }

    /// The sequence number a reader starting at `start` begins with.
    pub(crate) fn start(&self, start: Start) -> u64 {
        match start {
            Start::OldestKeyframe => self.head(),
            Start::NewestKeyframe => {
                let key_tail = self.bounds.key_tail.load(Ordering::Acquire);
                let newest = key_tail
                    .checked_sub(1)
                    .and_then(|k| self.keys[(k & self.mask) as usize].read(k));
                let head = self.head();
                // A key entry that is gone or older than `head` was evicted: `head` is then the
                // newest keyframe we can stand on.
                newest.map_or(head, |(seq, _)| seq.max(head))
            }
            Start::AtOrBefore(t) => self.at_or_before(t.as_micros()),
        }
    }

    /// Binary search of the keyframe index for the newest keyframe at or before `t`.
    fn at_or_before(&self, t: i64) -> u64 {
        let lo = self.bounds.key_head.load(Ordering::Acquire);
        let hi = self.bounds.key_tail.load(Ordering::Acquire);
        let entry = |k: u64| self.keys[(k & self.mask) as usize].read(k);
        // Entries are evicted oldest first, so a missing entry is older than any present one:
        // treat it as "at or before t", which keeps the predicate a prefix.
        let (mut l, mut r) = (lo, hi);
        while l < r {
            let m = l + (r - l) / 2;
            if entry(m).is_none_or(|(_, wall)| wall <= t) {
                l = m + 1;
            } else {
                r = m;
            }
        }
        let head = self.head();
        match l.checked_sub(1).filter(|&k| k >= lo).and_then(entry) {
            Some((seq, _)) => seq.max(head),
            None => head,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let wall = |v: i64| (v != NO_WALL).then(|| WallTime::from_micros(v));
        Stats {
            frames: c.frames.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            gops: c.gops.load(Ordering::Relaxed),
            pushed: c.pushed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            oldest: wall(c.oldest.load(Ordering::Relaxed)),
            newest: wall(c.newest.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn snapshot(&self, since: WallTime) -> Vec<Frame> {
        let mut seq = self.start(Start::AtOrBefore(since));
        // "Now" is the tail after the start was found, so it is at or after the start.
        let end = self.tail.load(Ordering::Acquire) >> TAIL_SHIFT;
        let expected = end.saturating_sub(seq).min(self.config.max_frames as u64);
        let mut frames = Vec::with_capacity(expected as usize);
        while seq < end {
            match self.read(seq) {
                Some(frame) => {
                    frames.push(frame);
                    seq += 1;
                }
                None => {
                    // Evicted under us: what we have lost its keyframe. Start again from the
                    // oldest retained keyframe, which is after the frames we lost.
                    frames.clear();
                    seq = self.head().max(seq + 1);
                }
            }
        }
        frames
    }
}

/// A handle on a ring, to make [`Reader`]s and snapshots. Cheap to clone; it does not keep the
/// ring open (the [`Writer`](crate::Writer) does), only its memory alive.
#[derive(Clone)]
pub struct Ring {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("shared", &self.shared)
            .finish()
    }
}

impl Ring {
    /// A new reader at `start`. It reads every frame from there on, in push order, with no gap
    /// unless it lags (see [`RecvError::Lagged`](crate::RecvError::Lagged)).
    pub fn reader(&self, start: Start) -> Reader {
        Reader::new(self.shared.clone(), self.shared.start(start))
    }

    /// The retained frames from the keyframe at or before `since` (as [`Start::AtOrBefore`]) to
    /// the newest, as clones (payloads are shared, not copied). The first frame is a keyframe
    /// unless the result is empty. A binary search of the keyframe index finds the start.
    pub fn snapshot(&self, since: WallTime) -> Vec<Frame> {
        self.shared.snapshot(since)
    }

    /// The ring's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// True once the writer is gone (readers still drain what is retained).
    pub fn is_closed(&self) -> bool {
        self.shared.tail.load(Ordering::Acquire) & CLOSED != 0
    }

    /// The configuration the ring was made with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }
}

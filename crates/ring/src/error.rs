//! Errors, one enum per operation: the caller of `push` reacts differently from the caller of
//! `recv`, and both differently from the one building a ring.

/// Why a [`Config`](crate::Config) cannot make a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_frames` is zero: the ring could never hold a keyframe.
    #[error("max_frames is 0: a ring must be able to hold at least one frame")]
    ZeroFrames,
    /// `max_frames` plus `spare_slots` is more slots than the ring can address.
    #[error(
        "max_frames ({max_frames}) + spare_slots ({spare_slots}) exceeds the limit of {limit} slots"
    )]
    TooManySlots {
        /// The configured `max_frames`.
        max_frames: usize,
        /// The configured `spare_slots`.
        spare_slots: usize,
        /// The most slots a ring can have.
        limit: usize,
    },
    /// The memory for the ring's slots and indexes could not be allocated.
    #[error("cannot allocate {bytes} bytes for the ring's slots and indexes")]
    OutOfMemory {
        /// How much was asked for.
        bytes: usize,
    },
}

/// Why [`Writer::push`](crate::Writer::push) refused a frame. The ring is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The frame has no wall-clock time. The ring bounds its span, starts readers and takes
    /// snapshots by wall-clock time, so every frame must carry one (`Frame::wall`).
    #[error("frame of stream {stream} at dts {dts} has no wall-clock time")]
    MissingWallTime {
        /// The frame's stream index.
        stream: usize,
        /// The frame's decode time, in its timescale.
        dts: i64,
    },
}

/// Why [`Reader::recv`](crate::Reader::recv) or [`Reader::recv_async`](crate::Reader::recv_async)
/// returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The writer evicted frames this reader had not read yet. The reader has moved on to the
    /// oldest retained keyframe; the next call returns it (or reports a further lag).
    #[error("reader lagged behind eviction: {skipped} frames skipped")]
    Lagged {
        /// How many frames the reader will never see.
        skipped: u64,
    },
    /// The writer is gone and this reader has read every frame.
    #[error("the ring is closed and drained")]
    Closed,
}

/// Why [`Reader::try_recv`](crate::Reader::try_recv) returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No new frame yet.
    #[error("no frame available yet")]
    Empty,
    /// As [`RecvError::Lagged`].
    #[error("reader lagged behind eviction: {skipped} frames skipped")]
    Lagged {
        /// How many frames the reader will never see.
        skipped: u64,
    },
    /// As [`RecvError::Closed`].
    #[error("the ring is closed and drained")]
    Closed,
}

/// Why [`Reader::recv_timeout`](crate::Reader::recv_timeout) returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No frame arrived before the timeout.
    #[error("no frame arrived before the timeout")]
    Timeout,
    /// As [`RecvError::Lagged`].
    #[error("reader lagged behind eviction: {skipped} frames skipped")]
    Lagged {
        /// How many frames the reader will never see.
        skipped: u64,
    },
    /// As [`RecvError::Closed`].
    #[error("the ring is closed and drained")]
    Closed,
}

/// Any error of this crate, for callers that only propagate (`?` in examples and binaries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`PushError`].
    #[error(transparent)]
    Push(#[from] PushError),
    /// See [`RecvError`].
    #[error(transparent)]
    Recv(#[from] RecvError),
}

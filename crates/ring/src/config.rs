//! [`Config`]: how much a ring keeps and which stream's keyframes delimit its GOPs.

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// The most slots a ring can address (slot ids are `u32`; this leaves room for the index).
pub(crate) const MAX_SLOTS: usize = 1 << 30;

/// How much a ring retains and how it finds GOP boundaries.
///
/// The writer evicts the oldest whole GOP while any of these holds (and more than one GOP is
/// retained):
/// - the retained payload bytes exceed [`Config::max_bytes`];
/// - the second-oldest GOP alone already reaches back [`Config::max_duration`] from the newest
///   wall-clock time seen, so the oldest is not needed to cover it;
/// - one more frame would exceed [`Config::max_frames`].
///
/// The defaults fit a 30 s pre-event buffer of one camera at up to 16 Mbit/s with audio:
/// 64 MiB, 30 s, 4096 frames, GOPs from stream 0.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) max_bytes: u64,
    pub(crate) max_duration: Duration,
    pub(crate) max_frames: usize,
    pub(crate) spare_slots: Option<usize>,
    pub(crate) video_stream: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_bytes: 64 << 20,
            max_duration: Duration::from_secs(30),
            max_frames: 4096,
            spare_slots: None,
            video_stream: 0,
        }
    }
}

impl Config {
    /// The defaults (see [`Config`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Payload bytes (`Frame::data` lengths) to retain. Retained bytes never exceed
    /// `max(max_bytes, bytes of the GOP being written)`: the GOP being written is never evicted
    /// for bytes, since its frames depend on its keyframe.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Wall-clock span to retain. The ring keeps the fewest whole GOPs that reach back this far
    /// from the newest frame: once enough has been pushed (and the byte and frame bounds allow),
    /// the oldest retained keyframe is at or before `newest - max_duration`, and the retained
    /// span is less than `max_duration` plus the oldest GOP's length.
    pub fn max_duration(mut self, duration: Duration) -> Self {
        self.max_duration = duration;
        self
    }

    /// Frames to retain, at least 1. Slots for them are allocated once, when the ring is made
    /// (about 128 bytes each). A GOP that alone would exceed this is dropped whole, and the ring
    /// waits for the next keyframe.
    pub fn max_frames(mut self, frames: usize) -> Self {
        self.max_frames = frames;
        self
    }

    /// Slots beyond `max_frames` for frames a reader was still copying when they were evicted
    /// (each reader holds at most one, for the time of a `Frame::clone`). Default
    /// `max(8, max_frames / 16)`. Should every slot be held, the writer drops the frame (and
    /// the rest of its GOP) rather than wait: see [`Pushed::AwaitingKeyframe`](crate::Pushed).
    pub fn spare_slots(mut self, slots: usize) -> Self {
        self.spare_slots = Some(slots);
        self
    }

    /// The stream whose keyframes start a GOP (default 0). Keyframes of other streams (every
    /// AAC frame is one) do not: their frames are kept, in push order, within the video GOPs.
    /// So a ring holds one video stream; the others should be ones whose every frame decodes on
    /// its own (audio). A second video stream's frames would reach a reader that joined at the
    /// first one's keyframe without their own: give each video stream its own ring.
    pub fn video_stream(mut self, stream: usize) -> Self {
        self.video_stream = stream;
        self
    }

    /// See [`Config::max_bytes`].
    pub fn get_max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// See [`Config::max_duration`].
    pub fn get_max_duration(&self) -> Duration {
        self.max_duration
    }

    /// See [`Config::max_frames`].
    pub fn get_max_frames(&self) -> usize {
        self.max_frames
    }

    /// See [`Config::spare_slots`]; the default resolved.
    pub fn get_spare_slots(&self) -> usize {
        self.spare_slots
            .unwrap_or_else(|| (self.max_frames / 16).max(8))
    }

    /// See [`Config::video_stream`].
    pub fn get_video_stream(&self) -> usize {
        self.video_stream
    }

    /// Total slots, checked.
    pub(crate) fn slots(&self) -> Result<usize, ConfigError> {
        if self.max_frames == 0 {
            return Err(ConfigError::ZeroFrames);
        }
        let spare = self.get_spare_slots();
        match self.max_frames.checked_add(spare) {
            Some(n) if n <= MAX_SLOTS => Ok(n),
            _ => Err(ConfigError::TooManySlots {
                max_frames: self.max_frames,
                spare_slots: spare,
                limit: MAX_SLOTS,
            }),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_bytes", &self.max_bytes)
            .field("max_duration", &self.max_duration)
            .field("max_frames", &self.max_frames)
            .field("spare_slots", &self.get_spare_slots())
            .field("video_stream", &self.video_stream)
            .finish()
    }
}

impl fmt::Display for Config {
    /// One line for a binary to print at start: `64 MiB, 30 s, 4096 frames, GOPs from stream 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.max_bytes as f64 / f64::from(1 << 20);
        write!(
            f,
            "{mib} MiB, {} s, {} frames, GOPs from stream {}",
            self.max_duration.as_secs_f64(),
            self.max_frames,
            self.video_stream
        )
    }
}

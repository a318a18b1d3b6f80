//! [`Frame`]: one encoded access unit, the unit every nvrkit crate passes around.

use std::fmt;

use bytes::Bytes;

use crate::time::{WallTime, rescale};

/// One encoded access unit (a video picture or an AAC frame) with its timing.
///
/// Video payloads are always a sequence of NAL units, each prefixed by a 4-byte big-endian
/// length (the MP4 `avcC`/`hvcC` layout with `lengthSizeMinusOne = 3`), whatever the source used;
/// [`crate::nal`] converts to and from Annex B. Audio payloads are one raw AAC access unit (no
/// ADTS header), or a run of G.711 samples (one byte per sample and channel, interleaved).
///
/// Cloning is cheap: the payload is a reference-counted [`Bytes`].
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Index of the stream (track) this frame belongs to, as listed by its source.
    pub stream: usize,
    /// Ticks per second of `dts`, `pts` and `duration`.
    pub timescale: u32,
    /// Decode time, in `timescale` ticks.
    pub dts: i64,
    /// Presentation time, in `timescale` ticks (`pts >= dts` except in sources with negative
    /// composition offsets).
    pub pts: i64,
    /// How long the frame lasts, in `timescale` ticks.
    pub duration: u32,
    /// Wall-clock time of `pts`, where the source knows it (an RTCP sender report, a store
    /// segment's start time, a loop's pacing clock).
    pub wall: Option<WallTime>,
    /// A random-access point: a decoder can start here (an IDR/IRAP picture; every AAC frame).
    pub keyframe: bool,
    /// Decode but do not present (for example the AAC priming frame an edit list cuts away).
    pub discard: bool,
    /// There is a gap in the stream before this frame (a reconnect, a loop seam with dropped
    /// frames): timestamps before and after it are not contiguous.
    pub discontinuity: bool,
    /// The payload: 4-byte length-prefixed NAL units, one AAC access unit, or G.711 samples.
    pub data: Bytes,
}

impl Frame {
    /// `dts + duration`: the decode time of the next frame if there is no gap.
    pub fn end_dts(&self) -> i64 {
        self.dts.saturating_add(i64::from(self.duration))
    }

    /// `pts + duration`: when this frame stops being presented.
    pub fn end_pts(&self) -> i64 {
        self.pts.saturating_add(i64::from(self.duration))
    }

    /// Wall-clock time of `dts` (`wall` moved back by the composition offset), where the source
    /// knows `wall`. Frames arrive in decode order, so this is the time to compare with a cut-off:
    /// once one frame's decode time is past it, every later frame's presentation time is too.
    pub fn decode_wall(&self) -> Option<WallTime> {
        self.wall
            .map(|w| w.add_ticks(self.dts.saturating_sub(self.pts), self.timescale))
    }

    /// The presentation time in `rate` Hz (for example 90 kHz for RTP), rounded to nearest.
    pub fn pts_at(&self, rate: u32) -> i64 {
        rescale(self.pts, self.timescale, rate)
    }

    /// The decode time in `rate` Hz, rounded to nearest.
    pub fn dts_at(&self, rate: u32) -> i64 {
        rescale(self.dts, self.timescale, rate)
    }

    /// Payload size in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload is summarised: a frame's bytes are never useful in a log line.
        let mut d = f.debug_struct("Frame");
        d.field("stream", &self.stream)
            .field("timescale", &self.timescale)
            .field("dts", &self.dts)
            .field("pts", &self.pts)
            .field("duration", &self.duration);
        if let Some(w) = self.wall {
            d.field("wall", &format_args!("{w}"));
        }
        d.field("keyframe", &self.keyframe)
            .field("discard", &self.discard)
            .field("discontinuity", &self.discontinuity)
            .field("len", &self.data.len())
            .finish()
    }
}

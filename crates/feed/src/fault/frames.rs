//! The frame and timestamp faults of a path (issue 16, "Fault modes"), as pure code: frames
//! and loop geometry go in, decisions and bent frames come out, so each fault is unit-tested
//! without sockets.
//!
//! Two kinds:
//!
//! - **Per session**, bending what one session sends and nobody else's
//!   ([`Playout`](crate::rtsp::play::Playout) holds them): [`NoIdr`] (`noidr=5s`: no keyframe
//!   for that long after PLAY) and [`SeamRetimer`] (`ts_reset_at_seam`, `dts_backwards_at_seam`:
//!   the RTP timestamps of every track jump at each loop seam).
//! - **Per loop**, changing the frames of the loop itself, so a path with them gets its own
//!   [`LoopSource`](crate::LoopSource) and ring: [`thin_clip`] (`fps=12.5`: only non-reference
//!   frames dropped) and [`alternate`] (`sps_change_at_seam=OTHER`: every other loop comes from
//!   the served clip `OTHER`, of another size).
//!
//! Timestamp faults act on media time (a frame's PTS), never on wall time: which frames they
//! touch depends on the loop alone, so a test knows exactly what to expect.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use nvrkit_media::nal::{self, VideoCodec};
use nvrkit_media::time::{cmp_ticks, rescale, rescale_floor};
use nvrkit_media::{CodecParams, Frame};

use super::{FaultSet, MilliFps, SpsChange};
use crate::loop_source::{Clip, retime_decode};

/// Why a frame fault cannot be applied to a clip: the path is refused when its loop starts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameFaultError {
    /// `fps` below what dropping non-reference frames alone reaches.
    #[error(
        "clip {clip}: fps={asked} is out of reach: dropping only its non-reference frames takes \
         its {rate:.3} fps down to {reachable:.3} fps at the least (ask for fps={reachable:.3} \
         or more)"
    )]
    RateOutOfReach {
        /// The clip.
        clip: String,
        /// The rate asked for.
        asked: f64,
        /// The clip's own rate (frames per loop over the loop period).
        rate: f64,
        /// The lowest rate reachable: its reference frames alone.
        reachable: f64,
    },
    /// `fps` above the clip's own rate: frames are only ever dropped.
    #[error(
        "clip {clip}: fps={asked} is above its own {rate:.3} fps: frames are only dropped, never added"
    )]
    RateAbove {
        /// The clip.
        clip: String,
        /// The rate asked for.
        asked: f64,
        /// The clip's own rate.
        rate: f64,
    },
    /// `fps` that is not a positive, finite number.
    #[error("clip {clip}: fps={asked} is not a frame rate")]
    NotARate {
        /// The clip.
        clip: String,
        /// The value given.
        asked: f64,
    },
    /// `sps_change_at_seam=OTHER` with a clip that cannot follow this one.
    #[error("clip {clip}: sps_change_at_seam={other} cannot be served: {why}")]
    Incompatible {
        /// The clip served at the path.
        clip: String,
        /// The clip named to alternate with.
        other: String,
        /// Why not.
        why: String,
    },
}

/// Where a clip's loop seams fall in media time: lap `k` of the master (video) stream presents
/// from `origin + k × period` on, in `timescale` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopGeometry {
    /// The master stream's index.
    pub master: usize,
    /// Ticks per second of the master.
    pub timescale: u32,
    /// The first presented PTS of lap 0.
    pub origin: i64,
    /// The loop period (> 0).
    pub period: i64,
    /// One frame of the master (its first frame's duration, at least 1 tick).
    pub frame_step: i64,
}

impl LoopGeometry {
    /// The geometry of `clip`'s loop ([`LoopSource`](crate::LoopSource) puts lap `k` at
    /// `k × period` after lap 0).
    pub fn of(clip: &Clip) -> Self {
        let master = clip.master();
        let timescale = clip
            .tracks()
            .get(master)
            .map_or(90_000, |t| t.timescale.max(1));
        let frame_step = clip
            .frames(master)
            .first()
            .map_or(1, |f| i64::from(f.duration))
            .max(1);
        LoopGeometry {
            master,
            timescale,
            origin: clip.first_pts(master),
            period: clip.period_ticks().max(1),
            frame_step,
        }
    }

    /// A frame's presentation time in master ticks (rounded down).
    fn media_time(&self, f: &Frame) -> i64 {
        rescale_floor(f.pts, f.timescale, self.timescale)
    }

    /// The lap whose media time `f` presents in (any stream: by its PTS, against the master's
    /// lap starts).
    pub fn lap(&self, f: &Frame) -> i64 {
        self.media_time(f)
            .saturating_sub(self.origin)
            .div_euclid(self.period.max(1))
    }

    /// Where lap `lap` starts, in master ticks.
    pub fn lap_start(&self, lap: i64) -> i64 {
        self.origin
            .saturating_add(lap.saturating_mul(self.period.max(1)))
    }
}

/// `noidr=DURATION`: for that long (media time) after each PLAY, the session is sent no
/// keyframe of the video, only the frames between keyframes, as a camera does that joins a
/// client mid-GOP and then loses its IDR pictures. The first keyframe it gets presents at least
/// `DURATION` after the frame PLAY started at. Audio is untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoIdr {
    window: Duration,
    /// Keyframes presenting before this (ticks, timescale) are withheld.
    until: Option<(i64, u32)>,
}

impl NoIdr {
    /// Withholds keyframes for `window` after each PLAY.
    pub fn new(window: Duration) -> Self {
        NoIdr {
            window,
            until: None,
        }
    }

    /// PLAY started at `first` (a frame of any stream; its PTS is the start).
    pub fn start(&mut self, first: &Frame) {
        let micros = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        let window = rescale(micros, 1_000_000, first.timescale);
        self.until = Some((first.pts.saturating_add(window), first.timescale));
    }

    /// Whether `f` may be sent: not when it is a keyframe of stream `master` presenting inside
    /// the window.
    pub fn keep(&self, f: &Frame, master: usize) -> bool {
        let Some((until, timescale)) = self.until else {
            return true;
        };
        !(f.stream == master
            && f.keyframe
            && cmp_ticks(f.pts, f.timescale, until, timescale).is_lt())
    }
}

/// Which timestamp fault a [`SeamRetimer`] plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeamTimestamps {
    /// `ts_reset_at_seam`: at each seam every track's RTP timestamps start again from where the
    /// session started (RTP-Info's `rtptime`), as `ffmpeg -stream_loop -1 … -f rtsp` does to
    /// a VMS: the timeline restarts while SSRC and sequence numbers run on.
    Reset,
    /// `dts_backwards_at_seam`: at each seam the timestamps step back by two video frames, so
    /// the first frame of the new loop is stamped one frame *before* the last frame of the loop
    /// before (for a clip without B-frames that is its DTS going backwards); half a loop later
    /// they are on time again (a gap of two frames forward), so nothing drifts.
    Backwards,
}

/// Bends one session's timestamps at the loop seams ([`SeamTimestamps`]). The frames before
/// the first seam after PLAY are stamped as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeamRetimer {
    geometry: LoopGeometry,
    mode: SeamTimestamps,
    /// The lap PLAY started in, and the media time (master ticks) of its first frame.
    start: Option<(i64, i64)>,
}

impl SeamRetimer {
    /// A retimer of a loop with this geometry.
    pub fn new(geometry: LoopGeometry, mode: SeamTimestamps) -> Self {
        SeamRetimer {
            geometry,
            mode,
            start: None,
        }
    }

    /// PLAY started (or resumed) at `first`: timestamps are unbent until the next seam.
    pub fn start(&mut self, first: &Frame) {
        self.start = Some((self.geometry.lap(first), self.geometry.media_time(first)));
    }

    /// How many ticks (of `f`'s timescale) to add to `f`'s PTS and DTS before it is stamped.
    pub fn shift(&self, f: &Frame) -> i64 {
        let Some((start_lap, start_time)) = self.start else {
            return 0;
        };
        let g = &self.geometry;
        let lap = g.lap(f);
        if lap <= start_lap {
            return 0;
        }
        let seam = g.lap_start(lap);
        let master_ticks = match self.mode {
            // The seam's media time is stamped as the session's first frame was.
            SeamTimestamps::Reset => start_time.saturating_sub(seam),
            SeamTimestamps::Backwards => {
                let hold = (g.period / 2).max(g.frame_step);
                if g.media_time(f).saturating_sub(seam) < hold {
                    g.frame_step.saturating_mul(-2)
                } else {
                    0
                }
            }
        };
        rescale(master_ticks, g.timescale, f.timescale)
    }

    /// `f` with its timestamps bent, or `None` when they stay as they are.
    pub fn bend(&self, f: &Frame) -> Option<Frame> {
        let shift = self.shift(f);
        (shift != 0).then(|| {
            let mut bent = f.clone();
            bent.pts = bent.pts.saturating_add(shift);
            bent.dts = bent.dts.saturating_add(shift);
            bent
        })
    }
}

/// The per-session faults of this module one session plays, from its [`FaultSet`]: `noidr`
/// ([`NoIdr`]), and `ts_reset_at_seam` or `dts_backwards_at_seam` ([`SeamRetimer`], given where
/// the loop's seams are). Empty for a set without them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFaults {
    no_idr: Option<NoIdr>,
    seams: Option<SeamRetimer>,
}

impl SessionFaults {
    /// The faults of `faults` that bend one session, for a loop of `geometry` (`None`: a
    /// stream whose seams are not known, where the seam faults do nothing).
    /// `ts_reset_at_seam` wins over `dts_backwards_at_seam` when both are given.
    pub fn new(faults: &FaultSet, geometry: Option<LoopGeometry>) -> Self {
        let mode = if faults.ts_reset_at_seam {
            Some(SeamTimestamps::Reset)
        } else if faults.dts_backwards_at_seam {
            Some(SeamTimestamps::Backwards)
        } else {
            None
        };
        SessionFaults {
            no_idr: faults.no_idr.map(NoIdr::new),
            seams: geometry.zip(mode).map(|(g, m)| SeamRetimer::new(g, m)),
        }
    }

    /// No fault: every frame passes unchanged.
    pub fn is_empty(&self) -> bool {
        self.no_idr.is_none() && self.seams.is_none()
    }

    /// PLAY started (or resumed) at `first`.
    pub fn start(&mut self, first: &Frame) {
        if let Some(n) = self.no_idr.as_mut() {
            n.start(first);
        }
        if let Some(s) = self.seams.as_mut() {
            s.start(first);
        }
    }

    /// Whether `f` is sent at all ([`NoIdr::keep`]).
    pub fn keep(&self, f: &Frame, master: usize) -> bool {
        self.no_idr.as_ref().is_none_or(|n| n.keep(f, master))
    }

    /// `f` with its timestamps bent, or `None` to send it as it is ([`SeamRetimer::bend`]).
    pub fn bend(&self, f: &Frame) -> Option<Frame> {
        self.seams.as_ref().and_then(|s| s.bend(f))
    }
}

/// The VCL (slice) NAL units of a length-prefixed video frame.
fn vcl_nals(codec: VideoCodec, data: &[u8]) -> impl Iterator<Item = &[u8]> {
    nal::length_prefixed(data, 4)
        .map_while(std::result::Result::ok)
        .filter(move |n| match codec {
            VideoCodec::H264 => matches!(codec.nal_type(n), 1..=5),
            VideoCodec::H265 => n.len() >= 2 && codec.nal_type(n) < 32,
        })
}

/// H.265 `TemporalId` of a NAL unit (`nuh_temporal_id_plus1 − 1`; 0 for a malformed header).
fn temporal_id(n: &[u8]) -> u8 {
    n.get(1).map_or(0, |b| (b & 7).saturating_sub(1))
}

/// Whether a video frame may be dropped without breaking any other frame: every slice of it is
/// a non-reference one. H.264: `nal_ref_idc` 0 (ITU-T H.264 §7.4.1). H.265: a sub-layer
/// non-reference type (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, RSV_VCL_N10/12/14: the even
/// types below 16, §7.4.2.2) in the highest sub-layer `max_tid` of the stream: such a picture
/// is no reference for its own sub-layer, and no higher one exists. A frame without slices is
/// kept.
pub fn droppable(codec: VideoCodec, data: &[u8], max_tid: u8) -> bool {
    let mut any = false;
    for n in vcl_nals(codec, data) {
        any = true;
        let free = match codec {
            VideoCodec::H264 => n[0] & 0x60 == 0,
            VideoCodec::H265 => {
                let t = codec.nal_type(n);
                t < 16 && t.is_multiple_of(2) && temporal_id(n) >= max_tid
            }
        };
        if !free {
            return false;
        }
    }
    any
}

/// The highest H.265 `TemporalId` among the frames' slices (0 for H.264).
fn max_temporal_id(codec: VideoCodec, frames: &[Frame]) -> u8 {
    if codec == VideoCodec::H264 {
        return 0;
    }
    frames
        .iter()
        .flat_map(|f| vcl_nals(codec, &f.data).map(temporal_id))
        .max()
        .unwrap_or(0)
}

/// `fps=RATE`: one loop of video frames (decode order, `timescale` ticks, ending at `end`, the
/// end of the last presented frame) thinned to `rate` frames a second by dropping
/// non-reference frames only ([`droppable`]), spread evenly in presentation order (error
/// diffusion: each frame earns `rate × its duration` of credit, a kept frame costs one). The
/// first presented frame is always kept, and each kept frame lasts until the next kept one, so
/// the loop keeps its start and period. Refused when the reference frames alone exceed the
/// rate, or the rate exceeds the clip's.
pub fn thin(
    clip: &str,
    codec: VideoCodec,
    frames: &[Frame],
    timescale: u32,
    end: i64,
    rate: f64,
) -> Result<Vec<Frame>, FrameFaultError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(FrameFaultError::NotARate {
            clip: clip.into(),
            asked: rate,
        });
    }
    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by_key(|&i| frames[i].pts);
    let start = order.first().map_or(0, |&i| frames[i].pts);
    let seconds = (end.saturating_sub(start)).max(1) as f64 / f64::from(timescale.max(1));
    let max_tid = max_temporal_id(codec, frames);
    let free: Vec<bool> = frames
        .iter()
        .map(|f| droppable(codec, &f.data, max_tid))
        .collect();
    let own = frames.len() as f64 / seconds;
    // The first presented frame is kept whatever it is.
    let fixed = order
        .iter()
        .enumerate()
        .filter(|&(k, &i)| k == 0 || !free[i])
        .count();
    let reachable = fixed as f64 / seconds;
    // A thousandth of a frame a second of slack for rates printed rounded (29.97).
    const SLACK: f64 = 1e-3;
    if rate > own + SLACK {
        return Err(FrameFaultError::RateAbove {
            clip: clip.into(),
            asked: rate,
            rate: own,
        });
    }
    if rate + SLACK < reachable {
        return Err(FrameFaultError::RateOutOfReach {
            clip: clip.into(),
            asked: rate,
            rate: own,
            reachable,
        });
    }
    // The non-reference frames kept beside the fixed ones: the rate's frames per loop, rounded.
    let mut extra = ((rate * seconds).round() as usize).saturating_sub(fixed);
    let mut keep = vec![false; frames.len()];
    let mut credit = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        let next = order.get(k + 1).map_or(end, |&j| frames[j].pts);
        credit += rate * (next.saturating_sub(frames[i].pts)) as f64 / f64::from(timescale.max(1));
        let fixed = k == 0 || !free[i];
        if fixed || (credit >= 0.5 && extra > 0) {
            extra -= usize::from(!fixed);
            keep[i] = true;
            credit -= 1.0;
        }
    }
    // Each kept frame lasts until the next kept one (presentation order).
    let kept_order: Vec<usize> = order.iter().copied().filter(|&i| keep[i]).collect();
    let mut duration = vec![0u32; frames.len()];
    for (k, &i) in kept_order.iter().enumerate() {
        let next = kept_order.get(k + 1).map_or(end, |&j| frames[j].pts);
        let d = next.saturating_sub(frames[i].pts).max(1);
        duration[i] = u32::try_from(d).unwrap_or(u32::MAX);
    }
    Ok(frames
        .iter()
        .enumerate()
        .filter(|&(i, _)| keep[i])
        .map(|(i, f)| {
            let mut f = f.clone();
            f.duration = duration[i];
            f
        })
        .collect())
}

/// [`thin`] applied to the video of a clip: a new clip (same name, tracks and period; audio
/// untouched) whose video runs at `rate` frames a second.
pub fn thin_clip(clip: &Clip, rate: f64) -> crate::Result<Arc<Clip>> {
    let master = clip.master();
    let track = &clip.tracks()[master];
    let Some(codec) = track.params.video_codec() else {
        return Err(crate::Error::Unusable {
            name: clip.name().into(),
            what: format!("fps={rate} needs a video track"),
        });
    };
    let end = clip.first_pts(master).saturating_add(clip.period_ticks());
    let video = thin(
        clip.name(),
        codec,
        clip.frames(master),
        track.timescale,
        end,
        rate,
    )?;
    let mut all = Vec::new();
    for s in 0..clip.tracks().len() {
        if s == master {
            all.extend(video.iter().cloned());
        } else {
            all.extend(clip.frames(s).iter().cloned());
        }
    }
    Clip::from_frames(clip.name(), clip.tracks().to_vec(), all)
}

/// A keyframe's payload with `params` (length-prefixed) in front, unless it carries an SPS of
/// its own.
fn with_parameter_sets(codec: VideoCodec, data: &Bytes, params: &[Bytes]) -> Bytes {
    let sps = if codec == VideoCodec::H264 { 7 } else { 33 };
    if params.is_empty()
        || nal::length_prefixed(data, 4)
            .map_while(std::result::Result::ok)
            .any(|n| codec.nal_type(n) == sps)
    {
        return data.clone();
    }
    let mut b =
        BytesMut::with_capacity(data.len() + params.iter().map(|p| p.len() + 4).sum::<usize>());
    for p in params {
        b.put_u32(u32::try_from(p.len()).unwrap_or(0));
        b.put_slice(p);
    }
    b.put_slice(data);
    b.freeze()
}

/// The frames of one lap of `clip`, moved to start at `at` (ticks of `joined`, the timescales
/// of the clip they join, master first), followers trimmed to what starts within half a frame of
/// the lap's end (the rule [`LoopSource`](crate::LoopSource) loops them by), and video keyframes
/// carrying `params` in band.
fn lap_frames(
    clip: &Clip,
    joined: &[u32],
    at: i64,
    params: Option<(VideoCodec, &[Bytes])>,
) -> Vec<Frame> {
    let master = clip.master();
    let own = clip.tracks()[master].timescale;
    let joined_master = joined.get(master).copied().unwrap_or(own);
    let mut out = Vec::new();
    for (s, track) in clip.tracks().iter().enumerate() {
        let to = joined.get(s).copied().unwrap_or(track.timescale);
        let at = rescale(at, joined_master, to);
        // The lap's start and end in this stream's own ticks.
        let lap_start = rescale(clip.first_pts(master), own, track.timescale);
        let lap_end = rescale(
            clip.first_pts(master).saturating_add(clip.period_ticks()),
            own,
            track.timescale,
        );
        let moved =
            |t: i64| at.saturating_add(rescale(t.saturating_sub(lap_start), track.timescale, to));
        for f in clip.frames(s) {
            if s != master && f.pts.saturating_add(i64::from(f.duration / 2)) > lap_end {
                continue;
            }
            let mut g = f.clone();
            g.pts = moved(f.pts);
            g.dts = moved(f.dts);
            g.duration = u32::try_from(rescale(i64::from(f.duration), track.timescale, to))
                .unwrap_or(u32::MAX);
            g.timescale = to;
            if s == master
                && f.keyframe
                && let Some((codec, params)) = params
            {
                g.data = with_parameter_sets(codec, &f.data, params);
            }
            out.push(g);
        }
    }
    out
}

/// `sps_change_at_seam=OTHER`: a clip whose loops alternate between `first` (the path's clip)
/// and `second` (the served clip named `OTHER`): lap 0 is `first`, lap 1 `second`, and so on, so
/// every seam changes the video's parameter sets (its size) in band, as a camera does whose
/// resolution is changed while a client records. `second`'s keyframes carry its parameter sets
/// in band; the SDP keeps `first`'s. Both need the same track layout: the same video codec and,
/// for every other track, the same codec parameters. `second`'s audio plays after `first`'s,
/// each trimmed to its own loop.
pub fn alternate(first: &Clip, second: &Clip) -> crate::Result<Arc<Clip>> {
    let refuse = |why: String| FrameFaultError::Incompatible {
        clip: first.name().into(),
        other: second.name().into(),
        why,
    };
    let (a, b) = (first.tracks(), second.tracks());
    let master = first.master();
    if a.len() != b.len() || second.master() != master {
        return Err(refuse(format!(
            "it has {} tracks (video at {}), this clip {} (video at {master})",
            b.len(),
            second.master(),
            a.len()
        ))
        .into());
    }
    let (Some(va), Some(vb)) = (a[master].params.video(), b[master].params.video()) else {
        return Err(refuse("both need video".into()).into());
    };
    let codec = a[master].params.video_codec();
    if codec != b[master].params.video_codec() {
        return Err(refuse(format!(
            "its video is {}, this clip's {}",
            b[master].params.name(),
            a[master].params.name()
        ))
        .into());
    }
    if va.parameter_sets().eq(vb.parameter_sets()) {
        return Err(refuse(format!(
            "its video has the same parameter sets ({}x{}): nothing would change at the seam",
            vb.width, vb.height
        ))
        .into());
    }
    for (s, (ta, tb)) in a.iter().zip(b).enumerate() {
        if s != master && !same_codec(&ta.params, &tb.params) {
            return Err(refuse(format!(
                "track {s} differs ({} against {}): the other tracks must match",
                tb.params.name(),
                ta.params.name()
            ))
            .into());
        }
    }
    let joined: Vec<u32> = a.iter().map(|t| t.timescale).collect();
    let origin = first.first_pts(master);
    let params: Vec<Bytes> = vb.parameter_sets().cloned().collect();
    let lap_a = lap_frames(first, &joined, origin, None);
    let lap_b = lap_frames(
        second,
        &joined,
        origin.saturating_add(first.period_ticks()),
        codec.map(|c| (c, &params[..])),
    );
    let mut all = Vec::new();
    for s in 0..a.len() {
        let mut frames: Vec<Frame> = lap_a
            .iter()
            .chain(&lap_b)
            .filter(|f| f.stream == s)
            .cloned()
            .collect();
        if s == master {
            // The clips' reorder delays may differ (B-frames in one only): with each clip's own
            // decode times the first frame of the one could decode before the last of the
            // other (at either seam). Re-derived from the presentation times with one delay,
            // they strictly increase across both.
            retime_decode(&mut frames);
        }
        all.extend(frames);
    }
    Clip::from_frames(first.name(), a.to_vec(), all)
}

/// The clip a path with `faults` loops: `clip` itself when none of them changes frames, else
/// `clip` with `sps_change_at_seam` (alternating with the served clip it names, or with bare
/// `sps_change_at_seam` the first of `served` in name order whose parameter sets differ and
/// that can follow it) and then `fps` applied. An error names the clip and why the path is
/// refused (the rate it reaches, the clip that cannot follow).
pub fn loop_clip(
    clip: &Arc<Clip>,
    faults: &FaultSet,
    served: &[Arc<Clip>],
) -> crate::Result<Arc<Clip>> {
    let mut out = clip.clone();
    match &faults.sps_change_at_seam {
        None => {}
        Some(SpsChange::Clip(name)) => {
            let Some(other) = served.iter().find(|c| c.name() == name) else {
                return Err(FrameFaultError::Incompatible {
                    clip: clip.name().into(),
                    other: name.clone(),
                    why: "no clip of that name is served".into(),
                }
                .into());
            };
            out = alternate(clip, other)?;
        }
        Some(SpsChange::AnyOther) => {
            let mut others: Vec<&Arc<Clip>> =
                served.iter().filter(|c| c.name() != clip.name()).collect();
            others.sort_by(|a, b| a.name().cmp(b.name()));
            out = others
                .iter()
                .find_map(|o| alternate(clip, o).ok())
                .ok_or_else(|| FrameFaultError::Incompatible {
                    clip: clip.name().into(),
                    other: "(any)".into(),
                    why: "no other served clip has the same track layout and other parameter \
                          sets; name one with sps_change_at_seam=CLIP"
                        .into(),
                })?;
        }
    }
    if let Some(MilliFps(milli)) = faults.fps {
        out = thin_clip(&out, f64::from(milli) / 1000.0)?;
    }
    Ok(out)
}

/// The same codec configuration (video size aside, which is the point of the alternation).
fn same_codec(a: &CodecParams, b: &CodecParams) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoopSource;
    use nvrkit_media::{Demuxer, WallTime};

    fn clip_from(path: &str) -> Arc<Clip> {
        let p = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        let name = std::path::Path::new(path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Clip::load(name, &Demuxer::open(&p).unwrap()).unwrap()
    }

    fn sample() -> Arc<Clip> {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        Clip::load("sample", &d).unwrap()
    }

    /// A video frame of stream 0 at 25 fps (90 kHz): frame `n` in presentation order.
    fn video(n: i64, keyframe: bool, nal_header: &[u8]) -> Frame {
        let mut nal = nal_header.to_vec();
        nal.extend_from_slice(&[0x88, 0x84, 0x00]);
        Frame {
            stream: 0,
            timescale: 90_000,
            dts: n * 3600,
            pts: n * 3600,
            duration: 3600,
            wall: None,
            keyframe,
            discard: false,
            discontinuity: false,
            data: nal::join([&nal[..]]),
        }
    }

    #[test]
    fn noidr_withholds_keyframes_for_its_window_after_play_only() {
        let clip = sample();
        let frames: Vec<Frame> = LoopSource::new(clip.clone(), WallTime::EPOCH)
            .take(2000)
            .collect();
        // PLAY at the third keyframe (2 s in, 1 s GOPs), noidr=2.5s.
        let first = frames
            .iter()
            .filter(|f| f.stream == 0 && f.keyframe)
            .nth(2)
            .unwrap();
        let mut f = NoIdr::new(Duration::from_millis(2500));
        assert!(
            frames.iter().all(|x| f.keep(x, 0)),
            "nothing withheld before PLAY"
        );
        f.start(first);
        let sent: Vec<&Frame> = frames
            .iter()
            .filter(|x| x.wall >= first.wall && f.keep(x, 0))
            .collect();
        let key = sent.iter().find(|x| x.stream == 0 && x.keyframe).unwrap();
        // The keyframes at +0, +1 s and +2 s are withheld; the one at +3 s is the first sent.
        assert_eq!(key.pts - first.pts, 3 * clip.tracks()[0].timescale as i64);
        let withheld = frames
            .iter()
            .filter(|x| x.wall >= first.wall && !f.keep(x, 0))
            .count();
        assert_eq!(withheld, 3);
        // Every other frame goes: the P-frames between, and all audio.
        let total = frames.iter().filter(|x| x.wall >= first.wall).count();
        assert_eq!(sent.len(), total - 3);
        assert!(sent.iter().any(|x| x.stream == 1 && x.wall < key.wall));
    }

    #[test]
    fn noidr_of_absurd_length_does_not_overflow() {
        let mut f = NoIdr::new(Duration::MAX);
        let mut v = video(0, true, &[0x65]);
        v.pts = i64::MAX / 2;
        f.start(&v);
        assert!(!f.keep(&v, 0));
    }

    fn geometry_of_sample() -> (Arc<Clip>, LoopGeometry) {
        let clip = sample();
        let g = LoopGeometry::of(&clip);
        (clip, g)
    }

    #[test]
    fn the_geometry_puts_each_frame_in_its_lap() {
        let (clip, g) = geometry_of_sample();
        assert_eq!(g.period, 10 * 12_800);
        assert_eq!(g.frame_step, 512);
        let src = LoopSource::new(clip.clone(), WallTime::EPOCH);
        for f in src.take(3000).filter(|f| f.stream == 0) {
            let lap = (f.pts - g.origin) / g.period;
            assert_eq!(g.lap(&f), lap);
        }
    }

    /// Video and audio stamped as a session sees them (PTS shifted by the retimer, in seconds),
    /// and the time of the keyframe PLAY started at.
    fn bent_times(mode: SeamTimestamps, from: usize, n: usize) -> (Vec<(usize, f64)>, f64) {
        let (clip, g) = geometry_of_sample();
        let frames: Vec<Frame> = LoopSource::new(clip, WallTime::EPOCH)
            .take(from + n)
            .collect();
        let mut r = SeamRetimer::new(g, mode);
        let first = frames[from..]
            .iter()
            .find(|f| f.stream == 0 && f.keyframe)
            .unwrap();
        r.start(first);
        let start = first.pts as f64 / f64::from(first.timescale);
        let times = frames[from..]
            .iter()
            .map(|f| {
                let b = r.bend(f).unwrap_or_else(|| f.clone());
                (b.stream, b.pts as f64 / f64::from(b.timescale))
            })
            .collect();
        (times, start)
    }

    #[test]
    fn ts_reset_restarts_every_track_at_each_seam_where_the_session_began() {
        // The sample: 10 s loops, video 25 fps, AAC 48 kHz. PLAY at 4 s (frame 100 of video is
        // at 4 s; the frames in between are audio and video interleaved).
        let (times, start) = bent_times(SeamTimestamps::Reset, 250, 2200);
        let video: Vec<f64> = times.iter().filter(|t| t.0 == 0).map(|t| t.1).collect();
        let backs: Vec<(f64, f64)> = video
            .windows(2)
            .filter(|w| w[1] < w[0])
            .map(|w| (w[0], w[1]))
            .collect();
        assert!(
            backs.len() >= 2,
            "two seams in {} s: {backs:?}",
            video.len() / 25
        );
        for (before, after) in &backs {
            assert!((after - start).abs() < 1e-9, "restarts at {start}: {after}");
            assert!(before - after > 5.0, "a jump back of most of a loop");
        }
        // Audio restarts with the video: after each jump its times are within a frame of the
        // video's again.
        let audio: Vec<f64> = times.iter().filter(|t| t.0 == 1).map(|t| t.1).collect();
        assert_eq!(
            audio.windows(2).filter(|w| w[1] < w[0]).count(),
            backs.len()
        );
    }

    #[test]
    fn dts_backwards_steps_back_one_frame_at_each_seam_and_catches_up() {
        let (times, _) = bent_times(SeamTimestamps::Backwards, 250, 2200);
        let video: Vec<f64> = times.iter().filter(|t| t.0 == 0).map(|t| t.1).collect();
        let steps: Vec<f64> = video.windows(2).map(|w| w[1] - w[0]).collect();
        let back: Vec<&f64> = steps.iter().filter(|s| **s < 0.0).collect();
        let gaps: Vec<&f64> = steps.iter().filter(|s| **s > 0.05).collect();
        assert!(back.len() >= 2, "{back:?}");
        for s in &back {
            assert!((**s + 0.04).abs() < 1e-9, "one frame back: {s}");
        }
        // Back on time half a loop later (the last seam's may lie past the frames taken).
        assert!(
            gaps.len() + 1 >= back.len() && gaps.len() <= back.len(),
            "{gaps:?}"
        );
        for s in &gaps {
            assert!((**s - 0.12).abs() < 1e-9, "two frames forward: {s}");
        }
    }

    #[test]
    fn a_retimer_that_never_started_or_before_the_seam_changes_nothing() {
        let (clip, g) = geometry_of_sample();
        let frames: Vec<Frame> = LoopSource::new(clip, WallTime::EPOCH).take(300).collect();
        let mut r = SeamRetimer::new(g, SeamTimestamps::Reset);
        assert!(frames.iter().all(|f| r.bend(f).is_none()));
        r.start(&frames[0]);
        assert!(frames.iter().all(|f| r.bend(f).is_none()), "all in lap 0");
        // A frame of absurd time does not overflow.
        let mut huge = frames[0].clone();
        huge.pts = i64::MAX;
        let _ = r.shift(&huge);
        huge.pts = i64::MIN;
        let _ = r.shift(&huge);
    }

    #[test]
    fn h264_and_h265_non_reference_frames_are_told_apart() {
        // H.264: nal_ref_idc in bits 5..6.
        assert!(droppable(
            VideoCodec::H264,
            &video(0, false, &[0x01]).data,
            0
        ));
        assert!(!droppable(
            VideoCodec::H264,
            &video(0, false, &[0x21]).data,
            0
        ));
        assert!(!droppable(
            VideoCodec::H264,
            &video(0, true, &[0x65]).data,
            0
        ));
        // SEI (nal_ref_idc 0) beside a reference slice: kept.
        let mixed = nal::join([&[0x06u8, 5, 1][..], &[0x41, 0x88, 0x84][..]]);
        assert!(!droppable(VideoCodec::H264, &mixed, 0));
        // No slice at all: kept.
        assert!(!droppable(
            VideoCodec::H264,
            &nal::join([&[0x06u8, 5][..]]),
            0
        ));
        // H.265: TRAIL_N (0) and RASL_N (8) droppable, TRAIL_R (1) not; TemporalId 0 of 1.
        assert!(droppable(
            VideoCodec::H265,
            &video(0, false, &[0x00, 0x01]).data,
            0
        ));
        assert!(droppable(
            VideoCodec::H265,
            &video(0, false, &[0x10, 0x01]).data,
            0
        ));
        assert!(!droppable(
            VideoCodec::H265,
            &video(0, false, &[0x02, 0x01]).data,
            0
        ));
        // A TRAIL_N below the highest sub-layer may be a reference for the one above.
        assert!(!droppable(
            VideoCodec::H265,
            &video(0, false, &[0x00, 0x01]).data,
            1
        ));
        assert!(droppable(
            VideoCodec::H265,
            &video(0, false, &[0x00, 0x02]).data,
            1
        ));
        // Truncated or garbage payloads never panic.
        assert!(!droppable(VideoCodec::H265, &[0, 0, 0, 9, 1], 0));
        assert!(!droppable(VideoCodec::H264, &[], 0));
    }

    /// I b b P b b P …: two of every three frames are non-reference.
    fn ibbp(n: i64) -> Vec<Frame> {
        (0..n)
            .map(|i| match i % 3 {
                0 if i % 24 == 0 => video(i, true, &[0x65]),
                0 => video(i, false, &[0x41]),
                _ => video(i, false, &[0x01]),
            })
            .collect()
    }

    #[test]
    fn thinning_keeps_every_reference_frame_and_spreads_the_drops() {
        let frames = ibbp(48); // 1.92 s at 25 fps
        let end = 48 * 3600;
        let kept = thin("c", VideoCodec::H264, &frames, 90_000, end, 12.5).unwrap();
        assert_eq!(kept.len(), 24, "half of 48");
        let refs = frames.iter().filter(|f| f.data[4] & 0x60 != 0).count();
        assert_eq!(kept.iter().filter(|f| f.data[4] & 0x60 != 0).count(), refs);
        // Evenly: no gap longer than two frames, durations cover the loop exactly.
        // (16 reference frames every third frame and 8 of the 32 others: every other gap
        // between two reference frames gets one.)
        assert!(kept.windows(2).all(|w| w[1].pts - w[0].pts <= 3 * 3600));
        assert_eq!(kept.iter().map(|f| i64::from(f.duration)).sum::<i64>(), end);
        assert!(kept.iter().all(|f| f.pts + i64::from(f.duration) <= end));
        // The rate of the clip itself leaves it whole.
        let all = thin("c", VideoCodec::H264, &frames, 90_000, end, 25.0).unwrap();
        assert_eq!(all, frames);
    }

    #[test]
    fn thinning_below_the_reference_frames_or_above_the_clip_is_refused_with_the_reachable_rate() {
        let frames = ibbp(48);
        let end = 48 * 3600;
        let e = thin("bikes", VideoCodec::H264, &frames, 90_000, end, 5.0).unwrap_err();
        let FrameFaultError::RateOutOfReach { reachable, .. } = &e else {
            panic!("{e}");
        };
        assert!((reachable - 16.0 / 1.92).abs() < 1e-9);
        let text = e.to_string();
        assert!(
            text.contains("clip bikes") && text.contains("8.333 fps"),
            "{text}"
        );
        assert!(matches!(
            thin("bikes", VideoCodec::H264, &frames, 90_000, end, 30.0),
            Err(FrameFaultError::RateAbove { .. })
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                thin("bikes", VideoCodec::H264, &frames, 90_000, end, bad),
                Err(FrameFaultError::NotARate { .. })
            ));
        }
    }

    /// A real clip: libx264 with 3 B-frames and B-pyramid (testdata's
    /// h264_high_bframes_longaudio.mp4, 50 frames in 2 s) has 24 non-reference frames, so 13
    /// fps is the least it reaches: 12.5 is refused naming both.
    #[test]
    fn a_b_pyramid_clip_cannot_reach_half_its_rate() {
        let clip = clip_from("testdata/h264_high_bframes_longaudio.mp4");
        let e = thin_clip(&clip, 12.5).unwrap_err().to_string();
        assert!(
            e.contains("h264_high_bframes_longaudio")
                && e.contains("fps=12.5")
                && e.contains("13.000 fps"),
            "{e}"
        );
        let thinned = thin_clip(&clip, 13.0).unwrap();
        assert_eq!(thinned.frames(0).len(), 26);
        assert_eq!(thinned.period_ticks(), clip.period_ticks());
        assert_eq!(
            thinned.frames(1).len(),
            clip.frames(1).len(),
            "audio untouched"
        );
    }

    /// Open-GOP H.265 (h265_open_gop.mp4: 75 frames in 3 s, 37 of them TRAIL_N or RASL_N):
    /// thinned to 15 fps it keeps 45 frames, all 38 reference ones among them, and loops on with
    /// strictly increasing decode times and the period unchanged.
    #[test]
    fn an_open_gop_h265_clip_thins_to_15_fps_and_loops() {
        let clip = clip_from("testdata/h265_open_gop.mp4");
        let thinned = thin_clip(&clip, 15.0).unwrap();
        let v = thinned.frames(0);
        assert_eq!(v.len(), 45);
        let free = |f: &Frame| droppable(VideoCodec::H265, &f.data, 0);
        assert_eq!(v.iter().filter(|f| !free(f)).count(), 38);
        assert_eq!(thinned.period_ticks(), clip.period_ticks());
        let mut last = i64::MIN;
        for f in LoopSource::new(thinned, WallTime::EPOCH).take(300) {
            assert!(f.dts > last);
            last = f.dts;
        }
    }

    /// The 720p clip alternating with the sample (640x360): lap 0 from the first, lap 1 from
    /// the second with its SPS in band on every keyframe, lap 2 the first again; decode times
    /// strictly increase across both seams and the period is the sum of both.
    #[test]
    fn sps_change_alternates_two_clips_loop_by_loop() {
        let big = clip_from("testdata/h264_main_720p25_aac.mp4");
        let small = sample();
        let both = alternate(&big, &small).unwrap();
        assert_eq!(both.name(), big.name());
        assert_eq!(
            both.period_ticks(),
            big.period_ticks() + small.period_ticks()
        );
        let sps_of = |f: &Frame| -> Option<Vec<u8>> {
            nal::length_prefixed(&f.data, 4)
                .map_while(Result::ok)
                .find(|n| n[0] & 0x1f == 7)
                .map(<[u8]>::to_vec)
        };
        let small_sps = small.tracks()[0].params.video().unwrap().sps[0].to_vec();
        let g = LoopGeometry::of(&both);
        let mut last = [i64::MIN; 2];
        let mut seen = std::collections::BTreeSet::new();
        for f in LoopSource::new(both.clone(), WallTime::EPOCH).take(2000) {
            assert!(
                f.dts > last[f.stream],
                "DTS increase in stream {}: {f:?} after {}",
                f.stream,
                last[f.stream]
            );
            last[f.stream] = f.dts;
            if f.stream == 0 && f.keyframe {
                let in_second = (f.pts - g.origin).rem_euclid(g.period) >= big.period_ticks();
                assert_eq!(
                    sps_of(&f).is_some(),
                    in_second,
                    "in-band SPS only in the second"
                );
                if in_second {
                    assert_eq!(sps_of(&f).unwrap(), small_sps);
                }
                seen.insert(in_second);
            }
        }
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn sps_change_with_a_clip_that_cannot_follow_is_refused() {
        let big = clip_from("testdata/h264_main_720p25_aac.mp4");
        // H.265 after H.264.
        let e = alternate(&big, &clip_from("testdata/h265_hvc1.mp4"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sps_change_at_seam=h265_hvc1"), "{e}");
        // The same clip: nothing changes.
        let e = alternate(&big, &big).unwrap_err().to_string();
        assert!(e.contains("same parameter sets"), "{e}");
        // Audio of another kind (G.711 against AAC).
        let e = alternate(&big, &clip_from("testdata/h264_pcmu8k.mov"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("track 1"), "{e}");
    }

    #[test]
    fn a_path_loop_clip_applies_the_frame_faults_of_its_set() {
        let big = clip_from("testdata/h264_main_720p25_aac.mp4");
        let small = sample();
        let ntsc = clip_from("testdata/h264_ntsc_29.97.mp4");
        let served = vec![big.clone(), small.clone(), ntsc];
        let set = |q: &str| -> FaultSet { q.parse().unwrap() };
        // No frame fault: the clip itself, not a copy.
        let same = loop_clip(&big, &set("noidr=1s&ts_reset_at_seam"), &served).unwrap();
        assert!(Arc::ptr_eq(&same, &big));
        let both = loop_clip(&big, &set("sps_change_at_seam=sample"), &served).unwrap();
        assert_eq!(
            both.period_ticks(),
            big.period_ticks() + small.period_ticks()
        );
        // Bare: the first other clip in name order that can follow (h264_ntsc_29.97, whose
        // AAC differs from the 720p clip's, cannot; the sample can).
        let any = loop_clip(&big, &set("sps_change_at_seam"), &served).unwrap();
        assert_eq!(any.period_ticks(), both.period_ticks());
        let e = loop_clip(&big, &set("sps_change_at_seam=nope"), &served).unwrap_err();
        assert!(e.to_string().contains("no clip of that name"), "{e}");
        // fps after the alternation: thinned over both clips' frames.
        let e = loop_clip(&big, &set("fps=5"), &served)
            .unwrap_err()
            .to_string();
        assert!(e.contains("clip h264_main_720p25_aac: fps=5"), "{e}");
        let slow = loop_clip(&big, &set("fps=20"), &served).unwrap();
        assert_eq!(slow.frames(0).len(), 40);
    }
}

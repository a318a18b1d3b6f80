//! [`LoopSource`]: an MP4 clip as an endless stream of frames on one continuous timeline.
//!
//! The loop period is the presented duration of the clip's first video stream (the master): its
//! frames come back every period with timestamps advanced by exactly the period, so a timestamp
//! never repeats or jumps and the step across the seam is a normal frame step (bikes.mp4: last
//! DTS 126,464, first DTS of the next loop −1,024 + 128,000 = 126,976, a step of 512 like every
//! other).
//!
//! Other streams (AAC) cannot be cut inside a frame, and a period is rarely a whole number of
//! audio frames (bigbuckbunny.mp4: 5.28 s is 247.5 AAC frames at 48 kHz). So each follower keeps
//! its own continuous timeline and, each loop, sends as many whole frames of the clip as keep its
//! end within half a frame of where the master's loop ends. The target is computed from the loop
//! number with exact integer math, not accumulated, so audio never drifts from video however many
//! loops run; audio timestamps only increase. A follower shorter than the period leaves a gap
//! (marked `discontinuity`) rather than repeating anything.

use std::sync::Arc;
use std::time::Duration;

use nvrkit_media::nal::{self, VideoCodec};
use nvrkit_media::time::{cmp_ticks, rescale};
use nvrkit_media::{CodecParams, Demuxer, Frame, TrackInfo, WallTime};

use crate::error::{Error, Result};

/// Where a loop's laps start, to tell the seam from a frame alone: lap `k`'s master frames
/// have their decode times in `first_dts + k × period .. first_dts + (k + 1) × period` (the
/// master's frames come back every period advanced by exactly the period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Laps {
    /// The master (video) stream.
    pub stream: usize,
    /// The master's first DTS in lap 0, in its ticks.
    pub first_dts: i64,
    /// The period, in the master's ticks (above zero).
    pub period: i64,
}

impl Laps {
    /// The lap of a master frame; `None` for a frame of another stream.
    pub fn lap(&self, f: &Frame) -> Option<i64> {
        (f.stream == self.stream && self.period > 0)
            .then(|| f.dts.saturating_sub(self.first_dts).div_euclid(self.period))
    }
}

/// A clip held in memory, ready to loop: its tracks and frames (discarded frames, such as AAC
/// priming, are left out: a live stream has no place for them).
#[derive(Debug)]
pub struct Clip {
    name: String,
    tracks: Vec<TrackInfo>,
    /// Per stream, in decode order.
    frames: Vec<Vec<Frame>>,
    master: usize,
    /// Master period in master ticks.
    period: i64,
    /// Per stream: DTS of its first frame, in its own ticks.
    first_dts: Vec<i64>,
    /// Per stream: PTS of its first presented frame, in its own ticks.
    first_pts: Vec<i64>,
    /// Leading pictures of the clip's first keyframe left out ([`Clip::leading_dropped`]).
    leading_dropped: usize,
    /// Video frames before the first keyframe left out ([`Clip::before_keyframe`]).
    before_keyframe: usize,
}

impl Clip {
    /// Reads every frame of a demuxed file. `name` is the stream's name (the URL path).
    pub fn load(name: impl Into<String>, demux: &Demuxer) -> Result<Arc<Self>> {
        let name = name.into();
        let mut frames = Vec::new();
        for f in demux.frames() {
            frames.push(f.map_err(|source| Error::Clip {
                name: name.clone(),
                source,
            })?);
        }
        Self::from_frames(name, demux.tracks().to_vec(), frames)
    }

    /// A clip from frames read elsewhere (a synthetic clip in a test, another container): each
    /// frame's `stream` indexes `tracks`, and frames of one stream come in decode order.
    /// Discarded frames are left out, as [`Clip::load`] does.
    pub fn from_frames(
        name: impl Into<String>,
        tracks: Vec<TrackInfo>,
        all: Vec<Frame>,
    ) -> Result<Arc<Self>> {
        let name = name.into();
        let mut frames = vec![Vec::new(); tracks.len()];
        let mut discarded = vec![false; tracks.len()];
        for f in all {
            if f.discard {
                if let Some(d) = discarded.get_mut(f.stream) {
                    *d = true;
                }
                continue;
            }
            let Some(v) = frames.get_mut(f.stream) else {
                return Err(Error::Unusable {
                    name,
                    what: format!("a frame of stream {} beyond the clip's tracks", f.stream),
                });
            };
            v.push(f);
        }
        for (track, frames) in tracks.iter().zip(frames.iter_mut()) {
            full_coded_durations(track, frames);
        }
        let master = tracks.iter().position(|t| t.params.is_video()).unwrap_or(0);
        // A badly cut file starts inside a GOP: what comes before its first keyframe references
        // pictures cut away, so the loop starts at that keyframe.
        let before_keyframe = match frames.get_mut(master) {
            Some(v) if tracks[master].params.is_video() => {
                let k = v.iter().position(|f| f.keyframe).unwrap_or(0);
                v.drain(..k);
                k
            }
            _ => 0,
        };
        if before_keyframe > 0 {
            // The audio of what was cut would play with no picture, and put each loop's audio
            // out of step with its video: it goes too.
            let start = frames[master].iter().map(|f| (f.pts, f.timescale)).min();
            if let Some((start, timescale)) = start {
                for (s, v) in frames.iter_mut().enumerate() {
                    if s != master {
                        v.retain(|f| cmp_ticks(f.end_pts(), f.timescale, start, timescale).is_gt());
                    }
                }
            }
        }
        let leading_dropped = match (tracks.get(master), frames.get_mut(master)) {
            (Some(t), Some(v)) => drop_unreferenced_leading(t, v),
            _ => 0,
        };
        if (before_keyframe > 0
            || leading_dropped > 0
            || discarded.get(master).copied().unwrap_or(false))
            && let Some(v) = frames.get_mut(master)
        {
            retime_decode(v);
        }
        if frames.is_empty() || frames.iter().any(Vec::is_empty) {
            return Err(Error::Unusable {
                name,
                what: "a track has no presented frames".into(),
            });
        }
        if !frames[master][0].keyframe {
            return Err(Error::Unusable {
                name,
                what: "the video has no keyframe".into(),
            });
        }
        let first_pts: Vec<i64> = frames
            .iter()
            .map(|v| v.iter().map(|f| f.pts).min().unwrap_or(0))
            .collect();
        let end = frames[master].iter().map(Frame::end_pts).max().unwrap_or(0);
        let period = end - first_pts[master];
        if period <= 0 {
            return Err(Error::Unusable {
                name,
                what: "the clip has no duration".into(),
            });
        }
        let first_dts = frames.iter().map(|v| v[0].dts).collect();
        Ok(Arc::new(Clip {
            name,
            tracks,
            frames,
            master,
            period,
            first_dts,
            first_pts,
            leading_dropped,
            before_keyframe,
        }))
    }

    /// Video frames before the clip's first keyframe, left out of the loop (a file cut inside
    /// a GOP: they reference pictures the clip does not have). 0 for a clip that starts with a
    /// keyframe, as encoders write them.
    pub fn before_keyframe(&self) -> usize {
        self.before_keyframe
    }

    /// Leading pictures of the video left out of the loop: those of a clip that starts at an
    /// H.265 CRA (or BLA) picture and are RASL (they reference pictures before the CRA, which
    /// the clip does not have), or, for H.264 starting at a non-IDR keyframe (a recovery
    /// point), the frames of its first GOP that present before it. 0 for a clip that starts
    /// at an IDR picture, as encoders write them.
    pub fn leading_dropped(&self) -> usize {
        self.leading_dropped
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The clip's streams.
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// The stream whose duration is the loop period (the first video stream).
    pub fn master(&self) -> usize {
        self.master
    }

    /// The loop period in ticks of the master stream (exact).
    pub fn period_ticks(&self) -> i64 {
        self.period
    }

    /// The first presented PTS of `stream` in lap 0, in its ticks (0 for a stream it lacks).
    pub fn first_pts(&self, stream: usize) -> i64 {
        self.first_pts.get(stream).copied().unwrap_or(0)
    }

    /// Which loop lap a frame of the master belongs to ([`Laps`]).
    pub fn laps(&self) -> Laps {
        Laps {
            stream: self.master,
            first_dts: self.first_dts[self.master],
            period: self.period,
        }
    }

    /// The loop period in microseconds (rounded).
    pub fn period_micros(&self) -> i64 {
        rescale(self.period, self.tracks[self.master].timescale, 1_000_000)
    }

    /// Frames of one stream, decode order, one loop.
    pub fn frames(&self, stream: usize) -> &[Frame] {
        self.frames.get(stream).map_or(&[], Vec::as_slice)
    }

    /// The longest GOP of the master stream in microseconds, the wrap from the last keyframe
    /// round to the first one included (a clip with one keyframe has one GOP: the period).
    pub fn max_gop_micros(&self) -> i64 {
        let frames = self.frames(self.master);
        let keys: Vec<i64> = frames
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.dts)
            .collect();
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return self.period_micros();
        };
        let wrap = first + self.period - last;
        let ticks = keys.windows(2).map(|w| w[1] - w[0]).fold(wrap, i64::max);
        rescale(ticks, self.tracks[self.master].timescale, 1_000_000)
    }

    /// How many frames of `streams` a ring needs room for to keep `keep` of the loop: the
    /// ring holds `keep` plus the GOP being written and, until the writer evicts it, the GOP
    /// before (see `nvrkit_ring`'s bounds), so the most frames of `streams` that fall in any
    /// `keep + 2 × max_gop_micros()` span of the endless loop (counted over the loop's real
    /// timestamps, so a clip whose frame rate varies gets room for its densest stretch), plus a
    /// little slack for audio, whose frame count varies by one from loop to loop. Sizing the
    /// ring by the clip rather than by the ring's default saves a few hundred kilobytes per
    /// served clip.
    pub fn ring_frames(&self, streams: &[usize], keep: Duration) -> usize {
        const SLACK: usize = 16;
        let per_loop: usize = streams.iter().map(|&s| self.frames(s).len()).sum();
        let period = self.period_micros().max(1);
        let window = i64::try_from(keep.as_micros())
            .unwrap_or(i64::MAX / 4)
            .saturating_add(self.max_gop_micros().saturating_mul(2))
            .max(1);
        // A span of `window` touches at most this many loops.
        let loops = (window / period).saturating_add(2);
        if loops > 8 {
            // Long spans of a short clip: whole loops bound it closely enough.
            let loops = usize::try_from(loops).unwrap_or(usize::MAX);
            return per_loop.saturating_mul(loops).saturating_add(SLACK);
        }
        let mut times: Vec<i64> = Vec::with_capacity(per_loop * loops as usize);
        for lap in 0..loops {
            for &s in streams {
                times.extend(
                    self.frames(s).iter().map(|f| {
                        rescale(f.dts, f.timescale, 1_000_000).saturating_add(lap * period)
                    }),
                );
            }
        }
        densest(&mut times, window).saturating_add(SLACK).max(SLACK)
    }
}

/// The most of `times` (any order; sorted here) that fall in one closed span of `window`.
fn densest(times: &mut [i64], window: i64) -> usize {
    times.sort_unstable();
    let mut first = 0;
    let mut most = 0;
    for (last, &t) in times.iter().enumerate() {
        while times[first] < t.saturating_sub(window) {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// Per-stream position in the endless timeline.
#[derive(Debug, Clone)]
struct Cursor {
    /// Loop number of the next frame.
    lap: i64,
    /// Index of the next frame in the clip.
    index: usize,
    /// Followers: frames to send in this lap, and the next PTS on their own timeline.
    limit: usize,
    next_pts: i64,
    gap_before_next: bool,
}

/// Gives every AAC frame its full coded duration (1024 or 960 samples), which is what a decoder
/// presents for it over RTP, where an edit list's trim cannot be signalled. (G.711 frames need
/// nothing: the demuxer cuts a trimmed frame's payload with its duration, so a frame presents
/// exactly what it says.) An MP4 whose audio
/// is not a whole number of frames (ffmpeg writes one whenever audio and video durations differ)
/// trims its last frame by the edit list, and the demuxer reports that frame shorter: looped
/// with that duration, the next loop's first frame would overlap it on the wire. A frame within
/// one tick of the full duration is left alone (a timescale that is not the sample rate
/// alternates, say, 2,089 and 2,090 ticks).
fn full_coded_durations(track: &TrackInfo, frames: &mut [Frame]) {
    let Some(full) = full_frame_ticks(track) else {
        return;
    };
    for f in frames {
        if f.duration.saturating_add(1) < full {
            f.duration = full;
        }
    }
}

/// The type of the first slice (VCL) NAL unit of a video frame, if any.
fn picture_nal_type(codec: VideoCodec, data: &[u8]) -> Option<u8> {
    nal::length_prefixed(data, 4)
        .map_while(std::result::Result::ok)
        .map(|n| codec.nal_type(n))
        .find(|&t| match codec {
            VideoCodec::H264 => (1..=5).contains(&t),
            VideoCodec::H265 => t < 32,
        })
}

/// H.265 RASL_N and RASL_R: leading pictures that reference pictures before their CRA.
const HEVC_RASL: [u8; 2] = [8, 9];

/// Leaves out the leading pictures of the clip's first keyframe that reference pictures the
/// clip does not have ([`Clip::leading_dropped`]); returns how many. A continuous reader of the
/// loop would decode them against the end of the previous loop, which is not what they were
/// encoded against.
fn drop_unreferenced_leading(track: &TrackInfo, frames: &mut Vec<Frame>) -> usize {
    let (Some(codec), Some(first)) = (track.params.video_codec(), frames.first()) else {
        return 0;
    };
    if !first.keyframe {
        return 0;
    }
    let start_pts = first.pts;
    let first_type = picture_nal_type(codec, &first.data);
    let leading: fn(&Frame, i64, Option<u8>) -> bool = match (codec, first_type) {
        // CRA, or BLA: its RASL pictures cannot be decoded.
        (VideoCodec::H265, Some(16..=18 | 21)) => {
            |_, _, t| t.is_some_and(|t| HEVC_RASL.contains(&t))
        }
        // A recovery point (not IDR): what presents before it refers to what came before.
        (VideoCodec::H264, Some(t)) if t != 5 => |f, start, _| f.pts < start,
        _ => return 0,
    };
    let gop_end = frames
        .iter()
        .skip(1)
        .position(|f| f.keyframe)
        .map_or(frames.len(), |i| i + 1);
    let before = frames.len();
    let mut index = 0;
    frames.retain(|f| {
        index += 1;
        !(index > 1 && index <= gop_end && leading(f, start_pts, picture_nal_type(codec, &f.data)))
    });
    before - frames.len()
}

/// Gives video frames left after some were taken out (leading pictures, frames an edit list
/// discards: an open-GOP clip cut by `ffmpeg -ss … -c copy`) decode times that fit the
/// presentation times they have: the k-th frame in decode order decodes at the k-th
/// presentation time minus the reordering delay, the smallest that keeps every frame's DTS at
/// or before its PTS. Without it the decode times keep the holes, the clip decodes for longer
/// than it presents, and the next loop's first DTS (one period later) would fall before the
/// last one's.
pub(crate) fn retime_decode(frames: &mut [Frame]) {
    let mut presented: Vec<i64> = frames.iter().map(|f| f.pts).collect();
    presented.sort_unstable();
    let delay = frames
        .iter()
        .zip(&presented)
        .map(|(f, p)| p - f.pts)
        .max()
        .unwrap_or(0);
    for (f, p) in frames.iter_mut().zip(&presented) {
        f.dts = p - delay;
    }
}

/// The duration every frame of `track` presents on the wire whatever its sample table says, in
/// the track's ticks: AAC's 1,024 or 960 samples. `None` for codecs whose frames vary.
pub(crate) fn full_frame_ticks(track: &TrackInfo) -> Option<u32> {
    let CodecParams::Aac(aac) = &track.params else {
        return None;
    };
    if aac.sample_rate == 0 {
        return None;
    }
    let full = rescale(
        i64::from(aac.frame_length),
        aac.sample_rate,
        track.timescale,
    );
    u32::try_from(full).ok()
}

/// The endless stream of a [`Clip`], in decode order across streams.
///
/// Sans-I/O: it only computes frames and their deadlines ([`LoopSource::deadline_micros`]); the
/// [`server`](crate::server)'s pacer sleeps until each deadline and pushes the frame into the
/// clip's ring.
#[derive(Debug, Clone)]
pub struct LoopSource {
    clip: Arc<Clip>,
    cursors: Vec<Cursor>,
    start_wall: WallTime,
    /// The earliest first DTS of any stream, in µs: deadlines count from there.
    origin_micros: i64,
    /// [`LoopSource::stamped`]: the index of the next video frame.
    stamp: Option<u64>,
}

impl LoopSource {
    /// Numbers every video frame from 0 in decode order, across laps, with an SEI stamp in
    /// front of its NAL units ([`crate::stamp`]).
    pub fn stamped(mut self) -> Self {
        self.stamp = Some(0);
        self
    }

    /// Starts the loop; frames get wall-clock times from `start_wall` (the presentation start
    /// of lap 0).
    pub fn new(clip: Arc<Clip>, start_wall: WallTime) -> Self {
        let origin_micros = (0..clip.tracks.len())
            .map(|s| rescale(clip.first_dts[s], clip.tracks[s].timescale, 1_000_000))
            .min()
            .unwrap_or(0);
        let mut src = LoopSource {
            cursors: Vec::new(),
            start_wall,
            origin_micros,
            clip,
            stamp: None,
        };
        src.cursors = (0..src.clip.tracks.len())
            .map(|s| {
                let mut c = Cursor {
                    lap: 0,
                    index: 0,
                    limit: src.clip.frames[s].len(),
                    next_pts: src.clip.first_pts[s],
                    gap_before_next: false,
                };
                if s != src.clip.master {
                    src.plan_follower_lap(s, &mut c);
                }
                c
            })
            .collect();
        src
    }

    /// The clip.
    pub fn clip(&self) -> &Arc<Clip> {
        &self.clip
    }

    /// Where a follower's lap `lap` should start on its own timeline.
    pub(crate) fn follower_lap_start(&self, stream: usize, lap: i64) -> i64 {
        let c = &self.clip;
        let master_ts = c.tracks[c.master].timescale;
        let ts = c.tracks[stream].timescale;
        // Exact: lap × period converted once, never accumulated.
        c.first_pts[stream] + rescale(lap.saturating_mul(c.period), master_ts, ts)
    }

    /// Chooses how many whole frames a follower sends in `cursor.lap`.
    fn plan_follower_lap(&self, stream: usize, cursor: &mut Cursor) {
        let frames = &self.clip.frames[stream];
        let target_end = self.follower_lap_start(stream, cursor.lap + 1);
        let half = i64::from(frames[0].duration.max(1)) / 2;
        let mut end = cursor.next_pts;
        let mut n = 0;
        while n < frames.len() && end + i64::from(frames[n].duration) <= target_end + half {
            end += i64::from(frames[n].duration);
            n += 1;
        }
        cursor.limit = n;
    }

    /// The next frame of `stream` without advancing.
    fn peek(&self, stream: usize) -> Frame {
        let c = &self.clip;
        let cur = &self.cursors[stream];
        let src = &c.frames[stream][cur.index];
        let mut f = src.clone();
        if stream == c.master {
            let shift = cur.lap * c.period;
            f.dts += shift;
            f.pts += shift;
        } else {
            // Followers keep their own timeline: PTS = the running position; DTS moves with it.
            let delta = cur.next_pts - src.pts;
            f.pts += delta;
            f.dts += delta;
            f.discontinuity = cur.gap_before_next;
        }
        let master_ts = c.tracks[c.master].timescale;
        let rel = rescale(f.pts, f.timescale, 1_000_000)
            - rescale(c.first_pts[c.master], master_ts, 1_000_000);
        f.wall = Some(self.start_wall.add_micros(rel));
        f
    }

    fn advance(&mut self, stream: usize) {
        let master = self.clip.master;
        let len = self.clip.frames[stream].len();
        let mut cur = self.cursors[stream].clone();
        if stream != master {
            cur.next_pts += i64::from(self.clip.frames[stream][cur.index].duration);
            cur.gap_before_next = false;
        }
        cur.index += 1;
        let lap_done = if stream == master {
            cur.index == len
        } else {
            cur.index >= cur.limit
        };
        if lap_done {
            cur.index = 0;
            cur.lap += 1;
            if stream != master {
                let start = self.follower_lap_start(stream, cur.lap);
                let half = i64::from(self.clip.frames[stream][0].duration.max(1)) / 2;
                if cur.next_pts < start - half {
                    // The follower is shorter than the period: leave a gap, never repeat.
                    cur.next_pts = start;
                    cur.gap_before_next = true;
                }
                self.plan_follower_lap(stream, &mut cur);
                if cur.limit == 0 {
                    cur.limit = 1; // a follower longer than one frame per lap always sends one
                }
            }
        }
        self.cursors[stream] = cur;
    }

    /// When the frame should be sent: microseconds after the loop started (its decode time).
    pub fn deadline_micros(&self, frame: &Frame) -> i64 {
        rescale(frame.dts, frame.timescale, 1_000_000) - self.origin_micros
    }
}

impl LoopSource {
    /// The next frame with its place in the loop: its lap and its index among the clip's
    /// frames of its stream (what [`check`](crate::check) measures seams with).
    pub(crate) fn next_placed(&mut self) -> Option<(i64, usize, Frame)> {
        let mut best: Option<(usize, Frame)> = None;
        for s in 0..self.cursors.len() {
            let f = self.peek(s);
            let earlier = match &best {
                None => true,
                Some((_, b)) => cmp_ticks(f.dts, f.timescale, b.dts, b.timescale).is_lt(),
            };
            if earlier {
                best = Some((s, f));
            }
        }
        let (s, f) = best?;
        let (lap, index) = (self.cursors[s].lap, self.cursors[s].index);
        self.advance(s);
        Some((lap, index, f))
    }
}

impl Iterator for LoopSource {
    type Item = Frame;

    /// The next frame in decode order across streams (ties: the lower stream first). Never
    /// `None`.
    fn next(&mut self) -> Option<Frame> {
        let (_, _, mut f) = self.next_placed()?;
        if let Some(n) = self.stamp.as_mut()
            && f.stream == self.clip.master
        {
            let h265 = matches!(
                self.clip.tracks[f.stream].params,
                nvrkit_media::CodecParams::H265(_)
            );
            f.data = crate::stamp::stamp(&f.data, *n, h265);
            *n += 1;
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_clip() -> Arc<Clip> {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        Clip::load("sample", &d).unwrap()
    }

    fn clip_from(path: &str) -> Arc<Clip> {
        let p = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        let d = Demuxer::open(&p).unwrap();
        Clip::load("c", &d).unwrap()
    }

    /// Runs `laps` loops and checks the invariants the issue asks for.
    fn check(clip: Arc<Clip>, laps: i64) {
        let master = clip.master();
        let period_us = clip.period_micros();
        let master_ts = clip.tracks()[master].timescale;
        let period = rescale(period_us, 1_000_000, master_ts);
        let src = LoopSource::new(clip.clone(), WallTime::EPOCH);
        let mut last: Vec<Option<Frame>> = vec![None; clip.tracks().len()];
        let mut master_pts: Vec<i64> = Vec::new();
        let mut follower_laps = vec![0i64; clip.tracks().len()];
        for f in src.take_while(|f| f.wall.unwrap().as_micros() < laps * period_us) {
            if let Some(prev) = &last[f.stream] {
                assert!(
                    f.dts > prev.dts,
                    "DTS strictly increase: {prev:?} then {f:?}"
                );
            }
            if f.stream == master {
                master_pts.push(f.pts);
            } else {
                if let Some(prev) = &last[f.stream] {
                    // Followers are continuous unless a gap is announced.
                    assert!(f.discontinuity || f.pts == prev.end_pts());
                    // Over the wire an AAC frame presents all its samples: consecutive frames
                    // are never closer than one full frame (the seam included).
                    if let CodecParams::Aac(aac) = &clip.tracks()[f.stream].params {
                        let full =
                            rescale(i64::from(aac.frame_length), aac.sample_rate, f.timescale);
                        assert!(
                            f.pts - prev.pts >= full - 1,
                            "stream {}: AAC step {} below a frame of {full} at PTS {}",
                            f.stream,
                            f.pts - prev.pts,
                            f.pts
                        );
                    }
                }
                let expect = rescale(f.pts, f.timescale, 1_000_000);
                assert_eq!(
                    f.wall.unwrap().as_micros(),
                    expect,
                    "wall clock follows PTS"
                );
                if f.data.as_ptr() == clip.frames(f.stream)[0].data.as_ptr() {
                    // Each lap of a follower starts within half a frame of the master's lap.
                    let lap = follower_laps[f.stream];
                    let want = rescale(lap * period, master_ts, f.timescale);
                    let half = i64::from(f.duration) / 2;
                    assert!(
                        (f.pts - want).abs() <= half,
                        "stream {} lap {lap} starts at {}, the video lap at {want}",
                        f.stream,
                        f.pts
                    );
                    follower_laps[f.stream] += 1;
                }
            }
            let s = f.stream;
            last[s] = Some(f);
        }
        // Presentation times of the master: unique and evenly spaced across every seam.
        master_pts.sort_unstable();
        let steps: std::collections::BTreeSet<i64> =
            master_pts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            steps.len(),
            1,
            "one frame step everywhere, seams included: {steps:?}"
        );
        for (s, n) in follower_laps.iter().enumerate() {
            assert!(s == master || *n >= laps - 1, "stream {s} ran {n} laps");
        }
    }

    /// Audio of 2 s at 8 kHz is 15.6 AAC frames: the edit list trims the last to 640 samples.
    /// Over RTP it still presents 1,024, so the next loop must start a whole frame later.
    #[test]
    fn a_partial_last_aac_frame_never_overlaps_the_next_loop() {
        let clip = clip_from("testdata/h264_aac8k_partial_tail.mp4");
        let audio = 1 - clip.master();
        assert!(clip.frames(audio).iter().all(|f| f.duration == 1024));
        check(clip, 20);
    }

    /// G.711 frames are exact (a payload byte per sample and channel): the 10 ms last frame of
    /// 2.99 s of audio under 3 s of video ends where it says, and the next loop's first frame
    /// starts at or after that end, never inside it. The 10 ms left over is an announced gap.
    #[test]
    fn a_partial_last_g711_frame_never_overlaps_the_next_loop() {
        for (path, laps) in [
            ("testdata/h264_pcmu8k.mov", 12),
            ("testdata/h264_pcma16k_stereo.mov", 8),
        ] {
            let clip = clip_from(path);
            let audio = 1 - clip.master();
            let g = *clip.tracks()[audio].params.g711().expect("G.711");
            let bps = u64::from(g.bytes_per_sample());
            assert!(
                clip.frames(audio)
                    .iter()
                    .all(|f| f.data.len() as u64 == u64::from(f.duration) * bps)
            );
            check(clip.clone(), laps);
            let mut prev: Option<Frame> = None;
            let mut gaps = 0;
            let period_us = clip.period_micros();
            let src = LoopSource::new(clip.clone(), WallTime::EPOCH);
            for f in src
                .filter(|f| f.stream == audio)
                .take_while(|f| f.wall.unwrap().as_micros() < laps * period_us)
            {
                if let Some(p) = &prev {
                    assert!(
                        f.pts >= p.end_pts(),
                        "{path}: {f:?} overlaps the frame before, {p:?}"
                    );
                    gaps += usize::from(f.pts > p.end_pts());
                }
                prev = Some(f);
            }
            let short = clip.frames(audio).last().unwrap().duration < g.samples_in(20);
            assert_eq!(
                gaps > 0,
                short,
                "{path}: a gap at each seam of the 2.99 s clip"
            );
        }
    }

    /// A clip cut at a CRA without an edit list (`ffmpeg -ss … -c copy -use_editlist 0`)
    /// starts with the CRA's three RASL pictures, which reference the GOP cut away: they are
    /// left out of every loop, so the loop starts at the CRA and presents nothing before it.
    #[test]
    fn the_rasl_pictures_of_a_clip_start_cra_are_dropped() {
        let clip = clip_from("testdata/cuts/h265_open_gop_cra_start.mp4");
        assert_eq!(clip.leading_dropped(), 3);
        let video = clip.frames(clip.master());
        assert!(video[0].keyframe);
        assert!(video.iter().all(|f| f.pts >= video[0].pts));
        assert_eq!(clip.first_pts[clip.master()], video[0].pts);
        check(clip, 4);
    }

    /// The same cut with an edit list (what `ffmpeg -ss … -c copy` writes) discards the RASL
    /// pictures instead: their decode times leave a hole, and kept as they were the next loop's
    /// first DTS would fall three frames before the last one's. Decode times are re-derived
    /// from the presentation times.
    #[test]
    fn an_edit_list_cut_of_an_open_gop_loops_forward() {
        let clip = clip_from("testdata/cuts/h265_open_gop_cut_editlist.mp4");
        assert_eq!(
            clip.leading_dropped(),
            0,
            "the edit list already left them out"
        );
        let video = clip.frames(clip.master());
        assert!(video.iter().all(|f| f.dts <= f.pts));
        check(clip, 4);
    }

    /// Open GOPs inside the clip are kept whole: a continuous reader of the loop has the
    /// pictures their RASL pictures reference (the loop's joiners are the server's concern).
    #[test]
    fn open_gops_after_an_idr_start_keep_their_leading_pictures() {
        let clip = clip_from("testdata/h265_open_gop.mp4");
        assert_eq!(clip.leading_dropped(), 0);
        assert_eq!(clip.frames(clip.master()).len(), 75);
        check(clip, 4);
    }

    #[test]
    fn sample_loops_seamlessly() {
        check(sample_clip(), 5);
    }

    #[test]
    fn b_frames_and_long_audio_loop_seamlessly() {
        check(clip_from("testdata/h264_high_bframes_longaudio.mp4"), 7);
    }

    #[test]
    fn ntsc_rate_loops_without_drift_for_a_thousand_laps() {
        // 30000/1001 fps: a period is not a whole number of AAC frames (nor of samples).
        let clip = clip_from("testdata/h264_ntsc_29.97.mp4");
        let master = clip.master();
        let audio = 1 - master;
        let first_audio = clip.frames(audio)[0].data.as_ptr();
        let video_ts = clip.tracks()[master].timescale;
        let period = rescale(clip.period_micros(), 1_000_000, video_ts);
        let src = LoopSource::new(clip.clone(), WallTime::EPOCH);
        let mut lap = 0i64;
        let mut last_pts = i64::MIN;
        for f in src.filter(|f| f.stream == audio) {
            assert!(f.pts > last_pts, "audio only moves forward");
            last_pts = f.pts;
            if f.data.as_ptr() == first_audio {
                // Lap `lap` of the audio starts within half an AAC frame of the video's lap.
                let want = rescale(lap * period, video_ts, f.timescale);
                assert!(
                    (f.pts - want).abs() <= 512,
                    "lap {lap}: audio starts at {} and video at {want}",
                    f.pts
                );
                lap += 1;
                if lap == 1000 {
                    break;
                }
            }
        }
    }

    #[test]
    fn main_720p_loops() {
        check(clip_from("testdata/h264_main_720p25_aac.mp4"), 5);
    }

    #[test]
    fn hevc_loops() {
        check(clip_from("testdata/h265_hvc1.mp4"), 4);
    }

    /// The sizing counts the densest stretch, not the mean: nine 2 s GOPs at 2 fps and one
    /// at 60 fps (a camera whose frame rate rises with motion) need room for the 120 frames of
    /// the fast GOP plus the slow ones around it, where the loop's mean rate (5.4 fps) would
    /// allow about 43 in 8 s.
    #[test]
    fn densest_counts_the_busiest_span_of_a_variable_frame_rate() {
        let mut times: Vec<i64> = Vec::new();
        for gop in 0..10i64 {
            let (n, step) = if gop == 4 {
                (120, 16_667)
            } else {
                (4, 500_000)
            };
            times.extend((0..n).map(|k| gop * 2_000_000 + k * step));
        }
        // 8 s around the fast GOP: 120 + the slow GOPs' frames in the other 6 s (4 per 2 s).
        assert_eq!(densest(&mut times.clone(), 8_000_000), 120 + 12 + 1);
        assert_eq!(densest(&mut times.clone(), 0), 1);
        assert_eq!(densest(&mut times, i64::MAX), 156);
        assert_eq!(densest(&mut [], 1), 0);
    }

    /// A ring sized by `ring_frames` never drops a GOP for lack of slots and still keeps the
    /// asked-for span, for every clip shape in testdata (one keyframe per loop, short GOPs,
    /// B-frames, 29.97 fps, HEVC), with all streams and with the video alone.
    #[test]
    fn ring_frames_fit_the_span_asked_for() {
        let clips = [
            sample_clip(),
            clip_from("testdata/h264_high_bframes_longaudio.mp4"),
            clip_from("testdata/h264_ntsc_29.97.mp4"),
            clip_from("testdata/h264_main_720p25_aac.mp4"),
            clip_from("testdata/h265_hvc1.mp4"),
        ];
        for clip in clips {
            for keep in [Duration::from_secs(1), Duration::from_secs(4)] {
                let all: Vec<usize> = (0..clip.tracks().len()).collect();
                for streams in [all, vec![clip.master()]] {
                    let n = clip.ring_frames(&streams, keep);
                    let config = nvrkit_ring::Config::new()
                        .max_duration(keep)
                        .max_bytes(1 << 30)
                        .max_frames(n)
                        .video_stream(clip.master());
                    let (mut writer, _ring) = nvrkit_ring::ring(config).unwrap();
                    let span = keep.as_micros() as i64 + 3 * clip.max_gop_micros();
                    let src = LoopSource::new(clip.clone(), WallTime::EPOCH);
                    for f in src
                        .filter(|f| streams.contains(&f.stream))
                        .take_while(|f| f.wall.unwrap().as_micros() < span)
                    {
                        writer.push(f).unwrap();
                    }
                    let st = writer.stats();
                    assert_eq!(
                        st.dropped, 0,
                        "{n} slots, streams {streams:?}, keep {keep:?}"
                    );
                    let (oldest, newest) = (st.oldest.unwrap(), st.newest.unwrap());
                    assert!(
                        newest.as_micros() - oldest.as_micros() >= keep.as_micros() as i64,
                        "{n} slots keep only {} µs of {keep:?}",
                        newest.as_micros() - oldest.as_micros()
                    );
                }
            }
        }
    }

    #[test]
    fn deadlines_follow_decode_time() {
        let clip = clip_from("testdata/h264_high_bframes_longaudio.mp4");
        let src = LoopSource::new(clip, WallTime::EPOCH);
        let mut prev = 0;
        for f in src.clone().take(500) {
            let d = src.deadline_micros(&f);
            assert!(d >= 0);
            assert!(
                d >= prev,
                "decode order is deadline order: {d} after {prev}"
            );
            prev = d;
        }
    }
}

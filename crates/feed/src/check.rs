//! [`check_clip`]: whether a clip loops seamlessly, measured by running its real [`LoopSource`]
//! offline (no sockets, no sleeping: the frames and their deadlines are read as fast as the
//! loop computes them) for many loops.
//!
//! Per track it measures what a reader on the wire would see: the presentation step across each
//! seam against the frame duration, frames of the clip left out at the seam (audio longer than
//! the video) or gaps inserted there (audio shorter), and, for audio, how far each loop's audio
//! starts from where the video's loop starts (the A/V offset) after 1, 10 and 1,000 loops. The
//! [`Verdict`]:
//!
//! - [`Verdict::Ok`]: every step is a whole frame, nothing is repeated or goes back, audio stays
//!   within half a frame of video.
//! - [`Verdict::Gap`]: audio is shorter than the video, so each seam leaves a gap, announced to
//!   the reader (`discontinuity`); nothing is repeated or overlaps. Not a failure.
//! - [`Verdict::Overlap`]: a frame starts before the previous one ends (an AAC access unit
//!   always presents its whole 1,024 samples on the wire), or a video PTS repeats.
//! - [`Verdict::Backwards`]: a decode time, an audio presentation time or a send deadline goes
//!   back.
//! - [`Verdict::OffsetTooLarge`]: audio starts a loop more than half a frame from the video.
//!
//! `loopcam check` prints the report as a table (or JSON), `nvr probe` prints
//! [`CheckReport::summary`].
//!
//! ```
//! use nvrkit_feed::{Clip, check::{check_clip, Verdict}};
//!
//! let demux = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
//! let clip = Clip::load("sample", &demux)?;
//! let report = check_clip(&clip, 20);
//! assert_eq!(report.verdict(), Verdict::Ok);
//! assert!(report.passed());
//! # Ok::<(), nvrkit_feed::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use nvrkit_media::{Frame, WallTime};

use crate::loop_source::{Clip, LoopSource, full_frame_ticks};

/// How many loops `loopcam check` and `nvr probe` run.
pub const DEFAULT_LOOPS: u32 = 1_000;

/// After how many loops the A/V offset is reported (those not above the loops run).
pub const OFFSET_AFTER: [u32; 3] = [1, 10, 1_000];

/// The outcome for a track or a clip, from best to worst (a clip's is its worst track's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Seamless.
    Ok,
    /// Audio shorter than the video: a gap at each seam, announced; not a failure.
    Gap,
    /// Audio more than half a frame away from the video at a loop's start.
    OffsetTooLarge,
    /// A frame presented before the previous one ends, or a repeated video PTS.
    Overlap,
    /// A timestamp or deadline going back.
    Backwards,
}

impl Verdict {
    /// True for the verdicts that make `loopcam check` exit 1.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Verdict::OffsetTooLarge | Verdict::Overlap | Verdict::Backwards
        )
    }

    /// The verdict as printed (`ok`, `gap announced`, `offset too large`, `overlap`,
    /// `backwards`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Gap => "gap announced",
            Verdict::OffsetTooLarge => "offset too large",
            Verdict::Overlap => "overlap",
            Verdict::Backwards => "backwards",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one track did over the loops run. Times are in the track's ticks (`timescale`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackCheck {
    /// The stream index.
    pub stream: usize,
    /// The codec (`h264`, `h265`, `aac`...).
    pub codec: &'static str,
    /// The loop's master (the video whose duration is the period).
    pub master: bool,
    /// Ticks per second.
    pub timescale: u32,
    /// Frames of this track in one pass of the clip.
    pub clip_frames: usize,
    /// The frame duration: video, the most common presentation step; audio, the first frame's
    /// duration (AAC: its full coded 1,024 or 960 samples).
    pub frame_duration: i64,
    /// The smallest and largest presentation step across a seam (`None` before one seam).
    pub seam_step: Option<(i64, i64)>,
    /// The smallest presentation step anywhere, seams included.
    pub min_step: Option<i64>,
    /// Frames of the clip left out of a loop (the smallest and largest count of any loop):
    /// audio longer than the video is cut at the seam.
    pub dropped: (usize, usize),
    /// Leading pictures left out of every loop: the RASL pictures of an H.265 CRA that starts
    /// the clip, which reference pictures the clip does not have.
    pub leading_dropped: usize,
    /// Video frames before the clip's first keyframe, left out of every loop (a file cut
    /// inside a GOP).
    pub before_keyframe: usize,
    /// Seams at which a gap was inserted (audio shorter than the video).
    pub gaps: u64,
    /// Of those, the longest gap.
    pub max_gap: i64,
    /// Gaps not announced with `discontinuity` (always 0 unless the loop is broken).
    pub unannounced_gaps: u64,
    /// Audio: where a loop starts minus where the video's loop starts, after each of
    /// [`OFFSET_AFTER`] loops (those run). Empty for the master.
    pub offsets: Vec<(u32, i64)>,
    /// Audio: the largest offset of any loop, in absolute value.
    pub max_offset: i64,
    /// The largest offset allowed: half a frame.
    pub offset_limit: i64,
    /// Frames that started before the previous one ended (or repeated a video PTS).
    pub overlaps: u64,
    /// Decode or presentation times, or send deadlines, that went back.
    pub backwards: u64,
    /// The verdict for this track.
    pub verdict: Verdict,
}

/// The outcome of [`check_clip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The clip's name.
    pub name: String,
    /// Loops run.
    pub loops: u32,
    /// The loop period in microseconds.
    pub period_micros: i64,
    /// Frames the loop produced and were checked.
    pub frames: u64,
    /// One entry per track, in stream order.
    pub tracks: Vec<TrackCheck>,
}

impl CheckReport {
    /// The clip's verdict: its worst track's.
    pub fn verdict(&self) -> Verdict {
        self.tracks
            .iter()
            .map(|t| t.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    /// False when the verdict is a failure ([`Verdict::is_failure`]).
    pub fn passed(&self) -> bool {
        !self.verdict().is_failure()
    }

    /// One line: the verdict and, per track, its seam step against its frame and (audio) its
    /// offsets, e.g. `ok after 1000 loops: stream 0 h264 seam step 3600 (frame 3600); stream 1
    /// aac seam step 1024..1024 (frame 1024), offset after 1/10/1000 loops +64/-128/+0 (limit
    /// ±512)`.
    pub fn summary(&self) -> String {
        let tracks: Vec<String> = self.tracks.iter().map(track_summary).collect();
        format!(
            "{} after {} loops: {}",
            self.verdict(),
            self.loops,
            tracks.join("; ")
        )
    }
}

fn track_summary(t: &TrackCheck) -> String {
    let mut s = format!("stream {} {} seam step ", t.stream, t.codec);
    match t.seam_step {
        Some((a, b)) if a == b => s.push_str(&a.to_string()),
        Some((a, b)) => s.push_str(&format!("{a}..{b}")),
        None => s.push_str("none"),
    }
    s.push_str(&format!(" (frame {})", t.frame_duration));
    if t.verdict != Verdict::Ok {
        s.push_str(&format!(" {}", t.verdict));
    }
    if t.leading_dropped > 0 {
        s.push_str(&format!(
            ", {} leading pictures of the clip-start CRA dropped",
            t.leading_dropped
        ));
    }
    if t.before_keyframe > 0 {
        s.push_str(&format!(
            ", {} frames before the first keyframe dropped",
            t.before_keyframe
        ));
    }
    if t.dropped.1 > 0 {
        s.push_str(&format!(
            ", {}..{} frames dropped per loop",
            t.dropped.0, t.dropped.1
        ));
    }
    if t.gaps > 0 {
        s.push_str(&format!(", gaps at {} seams (up to {})", t.gaps, t.max_gap));
    }
    if !t.offsets.is_empty() {
        let (after, off): (Vec<String>, Vec<String>) = t
            .offsets
            .iter()
            .map(|(n, o)| (n.to_string(), format!("{o:+}")))
            .unzip();
        s.push_str(&format!(
            ", offset after {} loops {} (limit ±{})",
            after.join("/"),
            off.join("/"),
            t.offset_limit
        ));
    }
    s
}

/// [`check_clip_with`] without progress reports.
pub fn check_clip(clip: &Arc<Clip>, loops: u32) -> CheckReport {
    check_clip_with(clip, loops, |_| {})
}

/// Runs `clip`'s loop for `loops` loops (at least 1) and measures every track.
/// `on_loop(n)` is called as the video starts loop `n` (for a progress bar).
pub fn check_clip_with(clip: &Arc<Clip>, loops: u32, mut on_loop: impl FnMut(u32)) -> CheckReport {
    let loops = loops.max(1);
    let master = clip.master();
    let mut tracks: Vec<Track> = clip
        .tracks()
        .iter()
        .enumerate()
        .map(|(s, _)| Track::new(clip, s))
        .collect();
    let mut src = LoopSource::new(clip.clone(), WallTime::EPOCH);
    let mut last_deadline = i64::MIN;
    let mut frames = 0u64;
    let mut open = tracks.len();
    // The loop never ends; this bounds the run should a stream stop advancing.
    let per_loop: u64 = (0..tracks.len())
        .map(|s| clip.frames(s).len() as u64 + 1)
        .sum();
    let budget = per_loop.saturating_mul(u64::from(loops) + 3);
    let mut produced = 0u64;
    while open > 0 && produced < budget {
        let Some((lap, index, f)) = src.next_placed() else {
            break;
        };
        produced += 1;
        let deadline = src.deadline_micros(&f);
        let t = &mut tracks[f.stream];
        if t.finished {
            continue;
        }
        if deadline < last_deadline {
            t.backwards += 1;
        }
        last_deadline = last_deadline.max(deadline);
        // The master reads loop `loops` too, so the seam into it is complete; followers stop
        // after their first frame of loop `loops` (the offset after `loops` loops).
        let loops_run = i64::from(loops);
        let past = lap > loops_run || (f.stream != master && lap == loops_run && index > 0);
        if past {
            t.finished = true;
            open -= 1;
            continue;
        }
        frames += 1;
        if f.stream == master {
            t.video_frame(lap, &f);
            if index == 0
                && lap > 0
                && let Ok(n) = u32::try_from(lap)
            {
                on_loop(n.min(loops));
            }
        } else {
            let expected = (index == 0).then(|| src.follower_lap_start(f.stream, lap));
            t.audio_frame(lap, &f, expected, loops);
        }
    }
    if let Some(t) = tracks.get_mut(master) {
        t.end_video_lap();
    }
    CheckReport {
        name: clip.name().to_owned(),
        loops,
        period_micros: clip.period_micros(),
        frames,
        tracks: tracks
            .into_iter()
            .enumerate()
            .map(|(s, t)| t.finish(clip, s))
            .collect(),
    }
}

#[derive(Debug, Clone, Copy)]
struct Last {
    lap: i64,
    dts: i64,
    pts: i64,
    end_pts: i64,
}

impl Last {
    /// `full`: the duration the frame presents on the wire when its codec fixes one.
    fn of(lap: i64, f: &Frame, full: Option<u32>) -> Self {
        let duration = f.duration.max(full.unwrap_or(0));
        Last {
            lap,
            dts: f.dts,
            pts: f.pts,
            end_pts: f.pts.saturating_add(i64::from(duration)),
        }
    }
}

/// Running measurements of one track.
#[derive(Debug)]
struct Track {
    master: bool,
    clip_frames: usize,
    /// What each frame presents on the wire, when the codec fixes it (AAC).
    full: Option<u32>,
    finished: bool,
    /// The previous frame: its loop, DTS, PTS and end of presentation.
    last: Option<Last>,
    /// Master: the PTS of the loop being read, and the largest PTS of the loop before.
    lap: i64,
    lap_pts: Vec<i64>,
    prev_lap_max: Option<i64>,
    /// Master: the presentation steps of the first loop (their mode is the frame duration).
    first_lap_steps: Vec<i64>,
    /// Followers: frames sent in the loop being read.
    sent: usize,
    seam_step: Option<(i64, i64)>,
    min_step: Option<i64>,
    dropped: Option<(usize, usize)>,
    gaps: u64,
    max_gap: i64,
    unannounced_gaps: u64,
    offsets: Vec<(u32, i64)>,
    max_offset: i64,
    overlaps: u64,
    backwards: u64,
}

fn widen(range: &mut Option<(i64, i64)>, v: i64) {
    *range = Some(match *range {
        None => (v, v),
        Some((a, b)) => (a.min(v), b.max(v)),
    });
}

impl Track {
    fn new(clip: &Clip, stream: usize) -> Self {
        Track {
            master: stream == clip.master(),
            clip_frames: clip.frames(stream).len(),
            full: full_frame_ticks(&clip.tracks()[stream]),
            finished: false,
            last: None,
            lap: 0,
            lap_pts: Vec::with_capacity(clip.frames(stream).len()),
            prev_lap_max: None,
            first_lap_steps: Vec::new(),
            sent: 0,
            seam_step: None,
            min_step: None,
            dropped: None,
            gaps: 0,
            max_gap: 0,
            unannounced_gaps: 0,
            offsets: Vec::new(),
            max_offset: 0,
            overlaps: 0,
            backwards: 0,
        }
    }

    fn step(&mut self, step: i64) {
        self.min_step = Some(self.min_step.map_or(step, |m| m.min(step)));
    }

    /// A video frame: decode times must increase; presentation order is checked per loop.
    fn video_frame(&mut self, lap: i64, f: &Frame) {
        if let Some(prev) = self.last
            && f.dts <= prev.dts
        {
            self.backwards += 1;
        }
        if lap != self.lap {
            self.end_video_lap();
            self.lap = lap;
        }
        self.lap_pts.push(f.pts);
        self.last = Some(Last::of(lap, f, self.full));
    }

    /// The loop just read is complete: its presentation steps, and the seam before it.
    fn end_video_lap(&mut self) {
        if self.lap_pts.is_empty() {
            return;
        }
        self.lap_pts.sort_unstable();
        let (first, last) = (self.lap_pts[0], self.lap_pts[self.lap_pts.len() - 1]);
        if let Some(prev_max) = self.prev_lap_max {
            let seam = first - prev_max;
            widen(&mut self.seam_step, seam);
            self.step(seam);
            if seam <= 0 {
                self.overlaps += 1;
            }
        }
        let steps: Vec<i64> = self.lap_pts.windows(2).map(|w| w[1] - w[0]).collect();
        for &s in &steps {
            self.step(s);
            if s <= 0 {
                self.overlaps += 1;
            }
        }
        if self.first_lap_steps.is_empty() {
            self.first_lap_steps = steps;
        }
        self.prev_lap_max = Some(last);
        self.lap_pts.clear();
    }

    /// An audio (follower) frame, with where its loop should start when it is a loop's first.
    fn audio_frame(&mut self, lap: i64, f: &Frame, expected: Option<i64>, loops: u32) {
        if let Some(prev) = self.last {
            let step = f.pts - prev.pts;
            self.step(step);
            if f.dts <= prev.dts || f.pts < prev.pts {
                self.backwards += 1;
            } else if f.pts < prev.end_pts - 1 {
                self.overlaps += 1;
            } else if f.pts > prev.end_pts + 1 {
                self.gaps += 1;
                self.max_gap = self.max_gap.max(f.pts - prev.end_pts);
                if !f.discontinuity {
                    self.unannounced_gaps += 1;
                }
            }
            if prev.lap != lap {
                widen(&mut self.seam_step, step);
                let left_out = self.clip_frames.saturating_sub(self.sent);
                self.dropped = Some(match self.dropped {
                    None => (left_out, left_out),
                    Some((a, b)) => (a.min(left_out), b.max(left_out)),
                });
                self.sent = 0;
            }
        }
        self.sent += 1;
        if let Some(want) = expected {
            let offset = f.pts - want;
            self.max_offset = self.max_offset.max(offset.abs());
            if let Ok(n) = u32::try_from(lap)
                && (OFFSET_AFTER.contains(&n) || n == loops)
                && n > 0
                && !self.offsets.iter().any(|(m, _)| *m == n)
            {
                self.offsets.push((n, offset));
            }
        }
        self.last = Some(Last::of(lap, f, self.full));
    }

    fn finish(self, clip: &Clip, stream: usize) -> TrackCheck {
        let track = &clip.tracks()[stream];
        let first = clip
            .frames(stream)
            .first()
            .map_or(0, |f| i64::from(f.duration.max(self.full.unwrap_or(0))));
        let frame_duration = if self.master {
            mode(&self.first_lap_steps).unwrap_or(first)
        } else {
            first
        };
        let offset_limit = first / 2;
        let verdict = if self.backwards > 0 {
            Verdict::Backwards
        } else if self.overlaps > 0 {
            Verdict::Overlap
        } else if !self.master && self.max_offset > offset_limit {
            Verdict::OffsetTooLarge
        } else if self.gaps > 0 {
            Verdict::Gap
        } else {
            Verdict::Ok
        };
        TrackCheck {
            stream,
            codec: track.params.name(),
            master: self.master,
            timescale: track.timescale,
            clip_frames: self.clip_frames,
            frame_duration,
            seam_step: self.seam_step,
            min_step: self.min_step,
            dropped: self.dropped.unwrap_or((0, 0)),
            leading_dropped: if self.master {
                clip.leading_dropped()
            } else {
                0
            },
            before_keyframe: if self.master {
                clip.before_keyframe()
            } else {
                0
            },
            gaps: self.gaps,
            max_gap: self.max_gap,
            unannounced_gaps: self.unannounced_gaps,
            offsets: self.offsets,
            max_offset: self.max_offset,
            offset_limit,
            overlaps: self.overlaps,
            backwards: self.backwards,
            verdict,
        }
    }
}

/// The most common value (the smallest of equally common ones).
fn mode(values: &[i64]) -> Option<i64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let mut best: Option<(i64, usize)> = None;
    let mut i = 0;
    while i < v.len() {
        let n = v[i..].iter().take_while(|&&x| x == v[i]).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((v[i], n));
        }
        i += n;
    }
    best.map(|(x, _)| x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nvrkit_media::{AacParams, CodecParams, Demuxer, TrackInfo, VideoParams};

    fn clip_from(path: &str) -> Arc<Clip> {
        let p = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        let d = Demuxer::open(&p).unwrap();
        Clip::load("c", &d).unwrap()
    }

    /// 25 fps video at 90 kHz for `video_secs`, one keyframe a second, beside AAC at 48 kHz
    /// lasting `audio_frames` frames of 1,024 samples.
    fn synthetic(video_secs: i64, audio_frames: i64) -> Arc<Clip> {
        let (tracks, frames) = synthetic_parts(video_secs, audio_frames);
        Clip::from_frames("synthetic", tracks, frames).unwrap()
    }

    fn synthetic_parts(video_secs: i64, audio_frames: i64) -> (Vec<TrackInfo>, Vec<Frame>) {
        let video = TrackInfo {
            stream: 0,
            track_id: 1,
            timescale: 90_000,
            params: CodecParams::H264(VideoParams {
                width: 320,
                height: 180,
                profile: 66,
                level: 30,
                vps: Vec::new(),
                sps: Vec::new(),
                pps: Vec::new(),
            }),
            sample_entry: "avc1".into(),
            frames: (video_secs * 25) as usize,
            duration: video_secs * 90_000,
            language: None,
        };
        let audio = TrackInfo {
            stream: 1,
            track_id: 2,
            timescale: 48_000,
            params: CodecParams::Aac(AacParams {
                config: Bytes::from_static(&[0x11, 0x88]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 1,
                frame_length: 1024,
            }),
            sample_entry: "mp4a".into(),
            frames: audio_frames as usize,
            duration: audio_frames * 1024,
            language: None,
        };
        let frame = |stream, timescale, t: i64, duration, keyframe| Frame {
            stream,
            timescale,
            dts: t,
            pts: t,
            duration,
            wall: None,
            keyframe,
            discard: false,
            discontinuity: false,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        };
        let mut frames: Vec<Frame> = (0..video_secs * 25)
            .map(|i| frame(0, 90_000, i * 3600, 3600, i % 25 == 0))
            .collect();
        frames.extend((0..audio_frames).map(|i| frame(1, 48_000, i * 1024, 1024, true)));
        (vec![video, audio], frames)
    }

    /// A file cut inside a GOP: the 10 frames before its first keyframe are left out of every
    /// loop (they reference pictures cut away), and the loop is seamless from the keyframe on.
    #[test]
    fn frames_before_the_first_keyframe_are_dropped() {
        let (tracks, mut frames) = synthetic_parts(3, 141);
        frames.drain(..15);
        for f in frames.iter_mut().filter(|f| f.stream == 0).take(10) {
            f.keyframe = false;
        }
        let clip = Clip::from_frames("cut", tracks.clone(), frames.clone()).unwrap();
        assert_eq!(clip.before_keyframe(), 10);
        assert!(clip.frames(0)[0].keyframe);
        let r = check_clip(&clip, 100);
        assert_eq!(r.tracks[0].before_keyframe, 10);
        assert_eq!(r.tracks[0].seam_step, Some((3600, 3600)));
        assert!(r.passed(), "{}", r.summary());
        // The audio of the second cut away goes too: it starts with the keyframe.
        assert_eq!(
            clip.frames(1)[0].pts,
            46 * 1024,
            "{:?}",
            &clip.frames(1)[..2]
        );
        assert!(
            r.summary()
                .contains("10 frames before the first keyframe dropped"),
            "{}",
            r.summary()
        );
        // No keyframe at all: not loopable.
        for f in &mut frames {
            f.keyframe = f.stream == 1;
        }
        let e = Clip::from_frames("nokey", tracks, frames).unwrap_err();
        assert!(e.to_string().contains("has no keyframe"), "{e}");
    }

    #[test]
    fn audio_shorter_than_video_is_an_announced_gap() {
        // 3 s of video, 2 s of audio (93 frames): a gap of about 1 s at every seam.
        let r = check_clip(&synthetic(3, 93), 1000);
        let audio = &r.tracks[1];
        assert_eq!(audio.verdict, Verdict::Gap, "{}", r.summary());
        assert_eq!(r.verdict(), Verdict::Gap);
        assert!(r.passed(), "a gap is not a failure");
        assert_eq!(audio.gaps, 1000);
        assert_eq!(audio.unannounced_gaps, 0);
        assert!(audio.max_gap > 40_000, "{}", r.summary());
        assert_eq!(audio.dropped, (0, 0));
        assert_eq!(audio.overlaps + audio.backwards, 0);
        assert_eq!(audio.max_offset, 0, "each loop restarts on the video's");
        let video = &r.tracks[0];
        assert_eq!(video.verdict, Verdict::Ok);
        assert_eq!(video.seam_step, Some((3600, 3600)));
        assert_eq!(video.frame_duration, 3600);
        assert!(r.summary().starts_with("gap announced after 1000 loops"));
    }

    #[test]
    fn audio_as_long_as_video_is_ok_and_never_drifts() {
        // 3 s is 140.625 frames at 48 kHz: 140 or 141 frames a loop, within half a frame.
        let r = check_clip(&synthetic(3, 141), 1000);
        let audio = &r.tracks[1];
        assert_eq!(r.verdict(), Verdict::Ok, "{}", r.summary());
        assert_eq!(audio.seam_step, Some((1024, 1024)));
        assert_eq!(audio.min_step, Some(1024));
        assert_eq!(audio.dropped, (0, 1));
        assert!(audio.max_offset <= 512);
        let after: Vec<u32> = audio.offsets.iter().map(|(n, _)| *n).collect();
        assert_eq!(after, [1, 10, 1000]);
    }

    #[test]
    fn the_partial_tail_regression_clip_is_ok() {
        let clip = clip_from("testdata/h264_aac8k_partial_tail.mp4");
        let r = check_clip(&clip, 1000);
        assert_eq!(r.verdict(), Verdict::Ok, "{}", r.summary());
        let audio = &r.tracks[1 - clip.master()];
        assert_eq!(audio.frame_duration, 1024);
        let (lo, _) = audio.seam_step.unwrap();
        assert!(lo >= 1024, "{}", r.summary());
    }

    #[test]
    fn every_committed_clip_passes() {
        for path in [
            "testdata/h264_high_bframes_longaudio.mp4",
            "testdata/h264_main_720p25_aac.mp4",
            "testdata/h264_ntsc_29.97.mp4",
            "testdata/h265_hvc1.mp4",
        ] {
            let r = check_clip(&clip_from(path), 100);
            assert!(r.passed(), "{path}: {}", r.summary());
            let video = &r.tracks[r.tracks.iter().position(|t| t.master).unwrap()];
            let (a, b) = video.seam_step.unwrap();
            assert!(
                (a - video.frame_duration).abs() <= 1 && (b - video.frame_duration).abs() <= 1,
                "{path}: {}",
                r.summary()
            );
        }
    }

    #[test]
    fn leading_pictures_of_a_clip_start_cra_are_reported() {
        let r = check_clip(&clip_from("testdata/cuts/h265_open_gop_cra_start.mp4"), 100);
        assert_eq!(r.verdict(), Verdict::Ok, "{}", r.summary());
        assert_eq!(r.tracks[0].leading_dropped, 3);
        assert!(
            r.summary()
                .contains("3 leading pictures of the clip-start CRA dropped"),
            "{}",
            r.summary()
        );
        let open = check_clip(&clip_from("testdata/h265_open_gop.mp4"), 100);
        assert_eq!(open.verdict(), Verdict::Ok, "{}", open.summary());
        assert_eq!(open.tracks[0].leading_dropped, 0);
        assert_eq!(open.tracks[0].seam_step, Some((512, 512)));
    }

    #[test]
    fn long_audio_is_cut_at_the_seam() {
        let r = check_clip(&clip_from("testdata/h264_high_bframes_longaudio.mp4"), 10);
        let audio = &r.tracks[1];
        assert!(audio.dropped.0 >= 20, "{}", r.summary());
        assert_eq!(audio.verdict, Verdict::Ok);
    }

    #[test]
    fn progress_reports_every_loop() {
        let mut seen = Vec::new();
        check_clip_with(&synthetic(1, 47), 5, |n| seen.push(n));
        assert_eq!(seen, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_thousand_loops_of_a_short_clip_are_fast() {
        let clip = clip_from("testdata/h264_aac8k_partial_tail.mp4");
        let t = std::time::Instant::now();
        let r = check_clip(&clip, 1000);
        // A hang guard, not a benchmark: well under a second in debug on a shared machine.
        assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
        assert!(r.frames > 1000 * 40);
    }

    #[test]
    fn verdicts_order_from_best_to_worst() {
        assert!(Verdict::Ok < Verdict::Gap && Verdict::Gap < Verdict::OffsetTooLarge);
        assert!(
            Verdict::OffsetTooLarge < Verdict::Overlap && Verdict::Overlap < Verdict::Backwards
        );
        assert!(!Verdict::Gap.is_failure() && Verdict::Overlap.is_failure());
        assert_eq!(mode(&[3, 1, 3, 2]), Some(3));
        assert_eq!(mode(&[]), None);
    }
}

//! Reading footage back: frames from any time ([`Store::frames`]), export of a time range to one
//! MP4 ([`Store::export`]), and writing a clip as if it had been recorded ([`Store::import`]).

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use nvrkit_media::mux::{FragmentedMuxer, ProgressiveMuxer};
use nvrkit_media::time::rescale;
use nvrkit_media::{Demuxer, Frame, TrackInfo, WallTime};

use crate::error::{Error, Result};
use crate::meta::SegmentMeta;
use crate::store::{Segment, Store};

/// Frames of one camera over a time range, across segments, in decode order. Made by
/// [`Store::frames`].
///
/// It starts at the keyframe at or before the range's start (so the first frame decodes) and
/// ends with the last frame presented before the range's end (for video, every frame decoded
/// before it, whose PTS may be later: B-frames). Each frame's [`Frame::wall`] is set, and the
/// first frame of each stream after a gap has [`Frame::discontinuity`] set.
#[derive(Debug)]
pub struct Frames {
    camera: String,
    from_us: i64,
    to_us: i64,
    pending: VecDeque<Segment>,
    current: Option<Current>,
    tracks: Vec<TrackInfo>,
    prev: Option<SegmentMeta>,
    failed: bool,
}

#[derive(Debug)]
struct Current {
    demux: Demuxer,
    meta: SegmentMeta,
    order: Vec<(usize, usize)>,
    pos: usize,
    /// Per stream: the next frame is its first of this segment and follows a gap.
    gap: Vec<bool>,
}

fn decode_order(d: &Demuxer) -> Vec<(usize, usize)> {
    let mut order: Vec<(i64, usize, usize)> = d
        .tracks()
        .iter()
        .flat_map(|t| {
            d.samples(t.stream)
                .iter()
                .enumerate()
                .map(move |(i, s)| (rescale(s.dts, t.timescale, 1_000_000), t.stream, i))
        })
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, s, i)| (s, i)).collect()
}

impl Frames {
    fn new(store: &Store, camera: &str, from: WallTime, to: WallTime) -> Result<Frames> {
        if to <= from {
            return Err(Error::InvalidArgument(format!(
                "empty time range {from} .. {to}"
            )));
        }
        let segments = store.segments(camera, from, to);
        if segments.is_empty() {
            return Err(Error::NoFootage {
                camera: camera.to_owned(),
                from,
                to,
            });
        }
        let mut it = Frames {
            camera: camera.to_owned(),
            from_us: from.as_micros(),
            to_us: to.as_micros(),
            pending: segments.into(),
            current: None,
            tracks: Vec::new(),
            prev: None,
            failed: false,
        };
        it.open_next()?;
        if it.current.is_none() {
            return Err(Error::NoFootage {
                camera: camera.to_owned(),
                from,
                to,
            });
        }
        Ok(it)
    }

    /// The streams (those of the first segment; a later segment with other codec parameters
    /// ends the iteration with [`Error::ParamsChange`]).
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// Opens the next segment that has frames in the range. `Ok` with no current segment at
    /// the end.
    fn open_next(&mut self) -> Result<()> {
        self.current = None;
        {
            let Some(seg) = self.pending.pop_front() else {
                return Ok(());
            };
            if seg.start.as_micros() >= self.to_us {
                self.pending.clear();
                return Ok(());
            }
            if !seg.open {
                let len = std::fs::metadata(&seg.path)
                    .map_err(|e| Error::io(&seg.path, e))?
                    .len();
                if len != seg.meta.bytes {
                    return Err(Error::corrupt(
                        &seg.path,
                        format!(
                            "segment is {len} bytes, its sidecar says {} (run `segstore verify`)",
                            seg.meta.bytes
                        ),
                    ));
                }
            }
            let demux = Demuxer::open(&seg.path).map_err(|e| Error::media(&seg.path, e))?;
            if self.tracks.is_empty() {
                self.tracks = demux.tracks().to_vec();
            } else if !same_streams(&self.tracks, demux.tracks()) {
                return Err(Error::ParamsChange {
                    camera: self.camera.clone(),
                    at: seg.start,
                });
            }
            let order = decode_order(&demux);
            let meta = seg.meta;
            let mut pos = 0;
            let anchor = meta.anchor_stream as usize;
            if self.prev.is_none() {
                // The keyframe at or before the start.
                let ts = demux.tracks()[anchor].timescale;
                let key = demux
                    .samples(anchor)
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.keyframe && meta.wall_of(s.pts, ts) <= self.from_us)
                    .map(|(i, _)| i)
                    .next_back();
                // From the segment's first keyframe: from the start of the segment, with the
                // other streams' frames that precede it (an AAC priming frame).
                if let Some(k) = key.filter(|&k| k > 0) {
                    pos = order.iter().position(|&o| o == (anchor, k)).unwrap_or(0);
                }
            }
            let jumped = self.prev.as_ref().is_some_and(|p| {
                let first = demux.samples(anchor).first();
                let ts = demux.tracks()[anchor].timescale;
                meta.discontinuity
                    || first.is_none_or(|s| {
                        (p.wall_of(s.pts, ts) - meta.wall_of(s.pts, ts)).abs() > 1_000
                    })
            });
            self.current = Some(Current {
                gap: vec![jumped; demux.tracks().len()],
                demux,
                order,
                pos,
                meta: meta.clone(),
            });
            self.prev = Some(meta);
        }
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            let Some(cur) = self.current.as_mut() else {
                return Ok(None);
            };
            let Some(&(s, i)) = cur.order.get(cur.pos) else {
                self.open_next()?;
                continue;
            };
            cur.pos += 1;
            let info = &cur.demux.samples(s)[i];
            let ts = cur.demux.tracks()[s].timescale;
            let video = cur.demux.tracks()[s].params.is_video();
            let wall_pts = cur.meta.wall_of(info.pts, ts);
            let past_end = if video {
                cur.meta.wall_of(info.dts, ts) >= self.to_us
            } else {
                wall_pts >= self.to_us
            };
            if past_end {
                continue;
            }
            let mut f = cur
                .demux
                .frame(s, i)
                .map_err(|e| Error::media(cur.demux.name(), e))?;
            f.wall = Some(WallTime::from_micros(wall_pts));
            f.discontinuity = std::mem::take(&mut cur.gap[s]);
            return Ok(Some(f));
        }
    }
}

fn same_streams(a: &[TrackInfo], b: &[TrackInfo]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.params == y.params && x.timescale == y.timescale)
}

impl Iterator for Frames {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_frame() {
            Ok(f) => f.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The container of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExportFormat {
    /// A progressive ("faststart") MP4: `moov` first, plays and seeks everywhere. Starts
    /// exactly at the asked time: frames from the keyframe before it are kept for decoding and
    /// cut by an edit list. Built in memory (the `moov` needs every frame's size), then written.
    #[default]
    Mp4,
    /// A fragmented MP4, produced one GOP at a time, so it streams with bounded memory
    /// (an HTTP response). The pre-roll before the asked time is cut by an edit list, which
    /// players apply to fragmented files less consistently than to progressive ones.
    Fragmented,
}

/// An export in progress: an iterator of output chunks. Made by [`Store::export`].
#[derive(Debug)]
pub struct Export {
    frames: Frames,
    format: ExportFormat,
    from_us: i64,
    to_us: i64,
    offset: Vec<Option<i64>>,
    last_out: Vec<Option<i64>>,
    fragmented: Option<FragmentedMuxer>,
    done: bool,
    estimated_bytes: u64,
    frames_out: u64,
}

impl Export {
    /// The streams of the output.
    pub fn tracks(&self) -> &[TrackInfo] {
        self.frames.tracks()
    }

    /// About how many bytes the output will have (the segments' bytes over the range), for a
    /// progress bar.
    pub fn estimated_bytes(&self) -> u64 {
        self.estimated_bytes
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames_out
    }

    /// Writes the whole export to `out`, calling `progress(bytes written)` after each chunk.
    /// Returns the bytes written.
    pub fn write_to(mut self, out: &mut impl Write, mut progress: impl FnMut(u64)) -> Result<u64> {
        let mut n = 0u64;
        for chunk in self.by_ref() {
            let chunk = chunk?;
            out.write_all(&chunk)
                .map_err(|e| Error::io("export output", e))?;
            n += chunk.len() as u64;
            progress(n);
        }
        out.flush().map_err(|e| Error::io("export output", e))?;
        Ok(n)
    }

    /// The frame as it goes into the output, or `None` when it is left out.
    fn transform(&mut self, mut f: Frame) -> Option<Frame> {
        let s = f.stream;
        let video = self.frames.tracks()[s].params.is_video();
        let wall = f.wall.map_or(0, WallTime::as_micros);
        // Frames shown at some instant of the range: the first one may start before `from`
        // (the frame on screen at `from`), which keeps the output frame-accurate.
        let wall_end = wall + rescale(i64::from(f.duration), f.timescale, 1_000_000);
        let outside = wall_end <= self.from_us || wall >= self.to_us;
        if outside && !video {
            return None;
        }
        // Video before the start is kept for decoding and hidden by the edit list; after the
        // end, B-frames' references are kept the same way.
        f.discard |= outside;
        let stale = self.offset[s].is_none_or(|off| {
            f.discontinuity || self.last_out[s].is_some_and(|l| f.dts + off <= l)
        });
        if stale {
            let mut off = rescale(wall - self.from_us, 1_000_000, f.timescale) - f.pts;
            if let Some(l) = self.last_out[s]
                && f.dts + off <= l
            {
                off = l + 1 - f.dts;
            }
            self.offset[s] = Some(off);
        }
        let off = self.offset[s].unwrap_or(0);
        f.dts += off;
        f.pts += off;
        f.discontinuity = false;
        self.last_out[s] = Some(f.dts);
        self.frames_out += 1;
        Some(f)
    }

    fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        match self.format {
            ExportFormat::Mp4 => {
                self.done = true;
                let mut mux = ProgressiveMuxer::new(self.frames.tracks())
                    .map_err(|e| Error::media("export", e))?;
                while let Some(f) = self.frames.next().transpose()? {
                    if let Some(f) = self.transform(f) {
                        mux.push(f).map_err(|e| Error::media("export", e))?;
                    }
                }
                if self.frames_out == 0 {
                    return Err(self.no_footage());
                }
                Ok(Some(mux.finish().map_err(|e| Error::media("export", e))?))
            }
            ExportFormat::Fragmented => {
                if self.fragmented.is_none() {
                    self.fragmented = Some(
                        FragmentedMuxer::new(self.frames.tracks())
                            .map_err(|e| Error::media("export", e))?,
                    );
                }
                while let Some(f) = self.frames.next().transpose()? {
                    if let Some(f) = self.transform(f) {
                        let mux = self.fragmented.as_mut().expect("created above");
                        let out = mux.push(f).map_err(|e| Error::media("export", e))?;
                        if !out.is_empty() {
                            return Ok(Some(out));
                        }
                    }
                }
                self.done = true;
                if self.frames_out == 0 {
                    return Err(self.no_footage());
                }
                let mux = self.fragmented.as_mut().expect("created above");
                let out = mux.finish().map_err(|e| Error::media("export", e))?;
                Ok((!out.is_empty()).then_some(out))
            }
        }
    }

    fn no_footage(&self) -> Error {
        Error::NoFootage {
            camera: self.frames.camera.clone(),
            from: WallTime::from_micros(self.from_us),
            to: WallTime::from_micros(self.to_us),
        }
    }
}

impl Iterator for Export {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(c) => c.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// How [`Store::import`] dates and paces a clip.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Wall time of the clip's first frame. Default: so that the clip ends now (or, with
    /// `realtime`, starts now).
    pub start: Option<WallTime>,
    /// Play the clip this many times back to back, timestamps continuing (default 1).
    pub loops: u32,
    /// Write at the pace of the wall clock, like a camera (default: as fast as possible).
    pub realtime: bool,
}

impl ImportOptions {
    /// Sets the start time.
    pub fn start(mut self, t: WallTime) -> Self {
        self.start = Some(t);
        self
    }

    /// Sets the number of loops.
    pub fn loops(mut self, n: u32) -> Self {
        self.loops = n;
        self
    }

    /// Paces the import to the wall clock.
    pub fn realtime(mut self, on: bool) -> Self {
        self.realtime = on;
        self
    }
}

/// What [`Store::import`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Wall time of the first frame.
    pub start: WallTime,
    /// Wall time at which the last frame ends.
    pub end: WallTime,
    /// Frames written.
    pub frames: u64,
    /// Segments sealed.
    pub segments: u64,
}

impl Store {
    /// Frames of `camera` over `[from, to)`, starting at the keyframe at or before `from`.
    pub fn frames(&self, camera: &str, from: WallTime, to: WallTime) -> Result<Frames> {
        Frames::new(self, camera, from, to)
    }

    /// Exports `[from, to)` of `camera` to one MP4 that starts exactly at `from` (an edit list
    /// hides the frames from the keyframe before it). The export is an iterator of chunks to
    /// write in order; see [`Export::write_to`].
    pub fn export(
        &self,
        camera: &str,
        from: WallTime,
        to: WallTime,
        format: ExportFormat,
    ) -> Result<Export> {
        let frames = Frames::new(self, camera, from, to)?;
        let n = frames.tracks().len();
        let estimated_bytes = self
            .segments(camera, from, to)
            .iter()
            .map(|s| {
                let span = (s.end.as_micros() - s.start.as_micros()).max(1);
                let inside = s.end.as_micros().min(to.as_micros())
                    - s.start.as_micros().max(from.as_micros());
                (s.bytes as i128 * i128::from(inside.clamp(0, span)) / i128::from(span)) as u64
            })
            .sum();
        Ok(Export {
            frames,
            format,
            from_us: from.as_micros(),
            to_us: to.as_micros(),
            offset: vec![None; n],
            last_out: vec![None; n],
            fragmented: None,
            done: false,
            estimated_bytes,
            frames_out: 0,
        })
    }

    /// Writes a clip into `camera` as if it had been recorded: frames get wall times from
    /// `options.start` plus their media time. Calls `progress(frames written)` now and then.
    pub fn import(
        &self,
        camera: &str,
        clip: &Demuxer,
        options: &ImportOptions,
        mut progress: impl FnMut(u64),
    ) -> Result<ImportReport> {
        let tracks = clip.tracks();
        let anchor = crate::segment::anchor_stream(tracks);
        let anchor_ts = tracks[anchor].timescale;
        let pts0 = clip
            .samples(anchor)
            .iter()
            .find(|s| !s.discard)
            .or(clip.samples(anchor).first())
            .map_or(0, |s| s.pts);
        // One loop lasts as long as the anchor stream's decode span.
        let samples = clip.samples(anchor);
        let period_us = match (samples.first(), samples.last()) {
            (Some(a), Some(b)) => {
                rescale(b.dts + i64::from(b.duration) - a.dts, anchor_ts, 1_000_000)
            }
            _ => 0,
        };
        let loops = options.loops.max(1);
        let total_us = period_us * i64::from(loops);
        let start = options.start.unwrap_or_else(|| {
            if options.realtime {
                WallTime::now()
            } else {
                WallTime::now().add_micros(-total_us)
            }
        });
        let origin_us = rescale(pts0, anchor_ts, 1_000_000);
        let began = std::time::Instant::now();
        let mut w = self.writer(camera, tracks)?;
        let mut last_dts: Vec<Option<i64>> = vec![None; tracks.len()];
        let mut frames = 0u64;
        let mut end = start;
        for l in 0..loops {
            for f in clip.frames() {
                let mut f = f.map_err(|e| Error::media(clip.name(), e))?;
                let shift = rescale(period_us * i64::from(l), 1_000_000, f.timescale);
                if l > 0 && f.discard {
                    continue;
                }
                f.dts += shift;
                f.pts += shift;
                if last_dts[f.stream].is_some_and(|d| f.dts <= d) {
                    continue; // audio longer than the loop overlaps the next loop
                }
                last_dts[f.stream] = Some(f.dts);
                let offset_us = rescale(f.pts, f.timescale, 1_000_000) - origin_us;
                let wall = start.add_micros(offset_us);
                if options.realtime {
                    let due = Duration::from_micros(offset_us.max(0) as u64);
                    if let Some(wait) = due.checked_sub(began.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                end = end.max(
                    start.add_micros(rescale(f.end_pts(), f.timescale, 1_000_000) - origin_us),
                );
                f.wall = Some(wall);
                w.push(f)?;
                frames += 1;
                if frames.is_multiple_of(256) {
                    progress(frames);
                }
            }
        }
        w.seal()?;
        progress(frames);
        Ok(ImportReport {
            start,
            end,
            frames,
            segments: w.sealed_segments(),
        })
    }
}

//! [`Writer`]: frames of one camera in, sealed segments out.

use std::fs::File;
use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use nvrkit_media::mux::FragmentedMuxer;
use nvrkit_media::nal::{self, VideoCodec};
use nvrkit_media::{CodecParams, Frame, TrackInfo, VideoParams, WallTime};

use crate::error::{Error, Result};
use crate::io::{self as sio, WriteBackState};
use crate::layout::{self, SegmentPaths};
use crate::meta::{FORMAT_VERSION, SegmentMeta};
use crate::queue;
use crate::segment;
use crate::store::{OpenInfo, Store};

/// Writes one camera's frames into segments. Get one with [`Store::writer`].
///
/// Frames are pushed in decode order per stream (streams interleaved by time, as a demuxer or
/// an RTSP session yields them). A segment starts at a keyframe of the first video stream
/// (frames before the first keyframe are dropped: they cannot be decoded) and is cut at the
/// first keyframe after [`crate::Options::segment_duration`], when the codec parameters change
/// (an SPS in a keyframe that differs, or [`Writer::set_tracks`]), and at a discontinuity (a
/// frame flagged `discontinuity`, or a decode time that does not increase), which is recorded
/// in the next segment's sidecar as a gap.
///
/// A segment's name and wall-clock anchor is its first frame's [`Frame::wall`] (where a frame
/// has none, the time follows from the previous frames' media time, or else the system clock).
/// Each GOP is written as one fragment as soon as it is complete, so a crash loses at most the
/// GOP in progress. Dropping a writer seals its segment; [`Writer::finish`] does so and reports
/// errors.
#[derive(Debug)]
pub struct Writer {
    store: Store,
    camera: String,
    tracks: Vec<TrackInfo>,
    anchor: usize,
    video: bool,
    seg: Option<OpenSegment>,
    last_dts: Vec<Option<i64>>,
    /// The next segment follows a gap.
    gap: bool,
    /// The wall-clock mapping of the last segment, for frames without a wall time.
    clock: Option<SegmentMeta>,
    dropped: u64,
    sealed: u64,
    /// How long the last seal took (fdatasync + sidecar).
    last_seal: Option<std::time::Duration>,
    /// Frames of other streams that arrived before the keyframe that starts a segment.
    held: Vec<Frame>,
}

/// At most this many frames are held waiting for a keyframe (about 2 s of 48 kHz AAC).
const MAX_HELD: usize = 96;

#[derive(Debug)]
struct OpenSegment {
    paths: SegmentPaths,
    file: Option<File>,
    mux: FragmentedMuxer,
    hasher: blake3::Hasher,
    written: u64,
    meta: SegmentMeta,
    frames: Vec<u64>,
    /// Wall time of the frame that starts the fragment in progress.
    fragment_wall: i64,
    write_back: WriteBackState,
}

impl Store {
    /// A writer for `camera` with these streams (from a demuxer's `tracks()` or an RTSP
    /// session's description). One writer per camera at a time; writers of different cameras
    /// are independent and may run on different threads.
    pub fn writer(&self, camera: &str, tracks: &[TrackInfo]) -> Result<Writer> {
        self.check_writable()?;
        layout::check_camera(camera)?;
        check_tracks(camera, tracks)?;
        {
            let mut st = self.state();
            let cam = st.cameras.entry(camera.to_owned()).or_default();
            if cam.writer {
                return Err(Error::WriterBusy {
                    camera: camera.to_owned(),
                });
            }
            cam.writer = true;
        }
        let anchor = segment::anchor_stream(tracks);
        Ok(Writer {
            store: self.clone(),
            camera: camera.to_owned(),
            anchor,
            video: tracks[anchor].params.is_video(),
            tracks: tracks.to_vec(),
            seg: None,
            last_dts: vec![None; tracks.len()],
            gap: false,
            clock: None,
            dropped: 0,
            sealed: 0,
            last_seal: None,
            held: Vec::new(),
        })
    }
}

fn check_tracks(camera: &str, tracks: &[TrackInfo]) -> Result<()> {
    if tracks.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "camera {camera}: no streams"
        )));
    }
    for (i, t) in tracks.iter().enumerate() {
        if t.stream != i {
            return Err(Error::Frame {
                camera: camera.to_owned(),
                stream: i,
                what: format!("track {i} says it is stream {}", t.stream),
            });
        }
    }
    // The muxer checks parameter sets and timescales.
    FragmentedMuxer::new(tracks).map_err(|e| Error::media(camera, e))?;
    Ok(())
}

impl Writer {
    /// The camera.
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// The streams frames are written as (updated when a keyframe brings a new SPS).
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// Frames dropped because no keyframe had started a segment yet.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// Segments sealed so far.
    pub fn sealed_segments(&self) -> u64 {
        self.sealed
    }

    /// How long the last seal (fdatasync, directory sync, sidecar) took.
    pub fn last_seal_time(&self) -> Option<std::time::Duration> {
        self.last_seal
    }

    /// The open segment's start, if one is open.
    pub fn open_segment(&self) -> Option<WallTime> {
        self.seg.as_ref().map(|s| s.meta.start())
    }

    /// Adds a frame.
    pub fn push(&mut self, frame: Frame) -> Result<()> {
        let s = frame.stream;
        let Some(track) = self.tracks.get(s) else {
            return Err(self.frame_err(s, "no such stream".into()));
        };
        if frame.timescale != track.timescale {
            return Err(self.frame_err(
                s,
                format!(
                    "timescale {} but the stream's is {}",
                    frame.timescale, track.timescale
                ),
            ));
        }
        if u32::try_from(frame.data.len()).is_err() {
            return Err(self.frame_err(s, "frame larger than 4 GiB".into()));
        }
        let backwards = self.last_dts[s].is_some_and(|d| frame.dts <= d);
        if frame.discontinuity || backwards {
            if backwards {
                tracing::debug!(
                    camera = self.camera,
                    stream = s,
                    dts = frame.dts,
                    "decode time does not increase: discontinuity"
                );
            }
            self.seal()?;
            self.gap = true;
            self.clock = None;
            self.held.clear();
            self.last_dts.iter_mut().for_each(|d| *d = None);
        }
        let starts_segment = if self.video {
            s == self.anchor && frame.keyframe
        } else {
            s == self.anchor
        };
        if self.seg.is_none() && !starts_segment {
            if s == self.anchor {
                // Video that cannot be decoded without its keyframe; audio held so far
                // would precede it.
                self.dropped += 1 + self.held.len() as u64;
                self.held.clear();
            } else if self.held.len() < MAX_HELD {
                // Audio before the first keyframe (an AAC priming frame): kept for the segment
                // the keyframe starts.
                self.held.push(frame);
            } else {
                self.dropped += 1;
            }
            return Ok(());
        }
        if starts_segment {
            let new_params = if self.video && self.seg.is_some() {
                self.parameter_change(&frame)
            } else {
                None
            };
            let due = self.seg.as_ref().is_some_and(|seg| {
                let elapsed = seg.meta.wall_of(frame.pts, frame.timescale) - seg.meta.start_us;
                elapsed >= self.store.options().segment_duration.as_micros() as i64
            });
            if new_params.is_some() || due {
                self.seal()?;
            }
            if let Some(p) = new_params {
                tracing::info!(
                    camera = self.camera,
                    stream = s,
                    "codec parameters changed: new segment"
                );
                self.tracks[s].params = p;
            }
            if self.seg.is_none() {
                self.start_segment(&frame)?;
                for held in std::mem::take(&mut self.held) {
                    self.push_into_segment(held)?;
                }
            }
        }
        self.push_into_segment(frame)
    }

    fn push_into_segment(&mut self, frame: Frame) -> Result<()> {
        let s = frame.stream;
        let seg = self.seg.as_mut().expect("a segment is open");
        let wall_pts = seg.meta.wall_of(frame.pts, frame.timescale);
        let end = seg
            .meta
            .wall_of(frame.end_pts(), frame.timescale)
            .max(wall_pts);
        let dts = frame.dts;
        let out = seg
            .mux
            .push(frame)
            .map_err(|e| Error::media(&seg.paths.segment, e))?;
        if !out.is_empty() {
            let fragment_start = seg.fragment_wall;
            write_fragment(seg, out, fragment_start)?;
            seg.fragment_wall = wall_pts;
            seg.meta.end_us = seg.meta.end_us.max(end);
            seg.frames[s] += 1;
            self.last_dts[s] = Some(dts);
            self.publish_open();
            return Ok(());
        }
        seg.frames[s] += 1;
        seg.meta.end_us = seg.meta.end_us.max(end);
        self.last_dts[s] = Some(dts);
        Ok(())
    }

    /// Seals the open segment (if any) and makes later frames start a new one with these
    /// streams (a new resolution, a new audio track). Frames until the next keyframe are dropped.
    pub fn set_tracks(&mut self, tracks: &[TrackInfo]) -> Result<()> {
        check_tracks(&self.camera, tracks)?;
        self.seal()?;
        self.anchor = segment::anchor_stream(tracks);
        self.video = tracks[self.anchor].params.is_video();
        self.tracks = tracks.to_vec();
        self.last_dts = vec![None; tracks.len()];
        self.clock = None;
        Ok(())
    }

    /// Seals the open segment now: writes its last fragment, syncs it, writes its sidecar.
    /// Returns its metadata (`None` when no segment was open).
    pub fn seal(&mut self) -> Result<Option<SegmentMeta>> {
        let Some(mut seg) = self.seg.take() else {
            return Ok(None);
        };
        let t0 = Instant::now();
        let result = seal_segment(&mut seg);
        let camera = self.camera.clone();
        let mut queued = None;
        {
            let mut st = self.store.state();
            let cam = st.cameras.entry(camera.clone()).or_default();
            cam.open = None;
            if let Ok(Some(m)) = &result {
                cam.max_len_us = cam.max_len_us.max(m.duration_us());
                cam.bytes += m.bytes;
                cam.segments.insert(m.start_us, m.clone());
                queued = Some(queue::seal_record(
                    &camera,
                    m,
                    &cam.tags_of(m.start_us, m.end_us),
                ));
            }
        }
        // The replication queue, in the same step (when replication is set up).
        if let Some(r) = queued {
            queue::hook(self.store.root(), &[r]);
        }
        let meta = result?;
        self.last_seal = Some(t0.elapsed());
        if let Some(m) = &meta {
            self.sealed += 1;
            self.clock = Some(m.clone());
            if let Some(policy) = &self.store.options().retention
                && let Err(e) = self.store.retain(policy)
            {
                tracing::error!(camera, "retention failed: {e}");
            }
        }
        Ok(meta)
    }

    /// Seals the open segment and closes the writer.
    pub fn finish(mut self) -> Result<Option<SegmentMeta>> {
        self.seal()
    }

    fn frame_err(&self, stream: usize, what: String) -> Error {
        Error::Frame {
            camera: self.camera.clone(),
            stream,
            what,
        }
    }

    /// New parameters if this keyframe carries an SPS other than the stream's.
    fn parameter_change(&self, frame: &Frame) -> Option<CodecParams> {
        let params = &self.tracks[frame.stream].params;
        let codec = params.video_codec()?;
        let current = params.video()?;
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        for unit in nal::length_prefixed(&frame.data, 4) {
            let Ok(unit) = unit else { return None };
            match (codec, codec.nal_type(unit)) {
                (VideoCodec::H264, 7) | (VideoCodec::H265, 33) => {
                    sps.push(frame.data.slice_ref(unit))
                }
                (VideoCodec::H264, 8) | (VideoCodec::H265, 34) => {
                    pps.push(frame.data.slice_ref(unit))
                }
                (VideoCodec::H265, 32) => vps.push(frame.data.slice_ref(unit)),
                _ => {}
            }
        }
        if sps.is_empty() || sps == current.sps {
            return None;
        }
        let pps = if pps.is_empty() {
            current.pps.clone()
        } else {
            pps
        };
        let built = match codec {
            VideoCodec::H264 => VideoParams::h264(sps, pps).map(CodecParams::H264),
            VideoCodec::H265 => {
                let vps = if vps.is_empty() {
                    current.vps.clone()
                } else {
                    vps
                };
                VideoParams::h265(vps, sps, pps).map(CodecParams::H265)
            }
        };
        match built {
            Ok(p) if p != *params => Some(p),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(
                    camera = self.camera,
                    "keyframe with an unreadable SPS ({e}): keeping the old parameters"
                );
                None
            }
        }
    }

    fn start_segment(&mut self, first: &Frame) -> Result<()> {
        let wall = match (first.wall, &self.clock) {
            (Some(w), _) => w,
            (None, Some(prev)) => WallTime::from_micros(prev.wall_of(first.pts, first.timescale)),
            (None, None) => WallTime::now(),
        };
        let paths = self.store.paths(&self.camera, wall);
        // A new day: the previous day's summary is complete.
        if let Some(prev) = &self.clock
            && layout::day_name(prev.start()) != layout::day_name(wall)
            && let Err(e) = self.store.write_summary(&self.camera, prev.start())
        {
            tracing::warn!(camera = self.camera, "day summary: {e}");
        }
        let mux =
            FragmentedMuxer::new(&self.tracks).map_err(|e| Error::media(&paths.segment, e))?;
        let meta = SegmentMeta {
            version: FORMAT_VERSION,
            start_us: wall.as_micros(),
            end_us: wall.as_micros(),
            bytes: 0,
            blake3: String::new(),
            tracks: self
                .tracks
                .iter()
                .map(|t| segment::track_meta(t, 0))
                .collect(),
            anchor_stream: self.anchor as u32,
            anchor_pts: first.pts,
            discontinuity: std::mem::take(&mut self.gap),
            recovered: false,
            fragments: Vec::new(),
        };
        self.seg = Some(OpenSegment {
            paths,
            file: None,
            mux,
            hasher: blake3::Hasher::new(),
            written: 0,
            frames: vec![0; self.tracks.len()],
            fragment_wall: wall.as_micros(),
            write_back: WriteBackState::new(self.store.options().write_back),
            meta,
        });
        Ok(())
    }

    fn publish_open(&self) {
        if let Some(seg) = &self.seg {
            let mut st = self.store.state();
            let cam = st.cameras.entry(self.camera.clone()).or_default();
            match &mut cam.open {
                Some(o) if o.meta.start_us == seg.meta.start_us => {
                    o.meta.end_us = seg.meta.end_us;
                    o.meta.bytes = seg.written;
                }
                _ => {
                    let mut meta = seg.meta.clone();
                    meta.bytes = seg.written;
                    cam.open = Some(OpenInfo { meta });
                }
            }
        }
    }
}

fn write_fragment(seg: &mut OpenSegment, out: Bytes, fragment_wall: i64) -> Result<()> {
    let path = &seg.paths.segment;
    if seg.file.is_none() {
        sio::create_dirs(&seg.paths.dir)?;
        seg.file = Some(sio::create_new(path)?);
        sio::sync_dir(&seg.paths.dir)?;
    }
    let file = seg.file.as_mut().expect("created above");
    let moof = if seg.written == 0 {
        seg.mux.init_segment().map_or(0, |i| i.len() as u64)
    } else {
        seg.written
    };
    file.write_all(&out).map_err(|e| Error::io(path, e))?;
    seg.hasher.update(&out);
    seg.write_back.written(file, seg.written, out.len() as u64);
    seg.written += out.len() as u64;
    let w = fragment_wall.max(seg.meta.fragments.last().map_or(i64::MIN, |f| f.1));
    seg.meta.fragments.push((moof, w));
    Ok(())
}

fn seal_segment(seg: &mut OpenSegment) -> Result<Option<SegmentMeta>> {
    let out = seg
        .mux
        .finish()
        .map_err(|e| Error::media(&seg.paths.segment, e))?;
    if seg.written == 0 && seg.frames.iter().all(|&n| n == 0) {
        return Ok(None);
    }
    if !out.is_empty() {
        let w = seg.fragment_wall;
        write_fragment(seg, out, w)?;
    }
    let path = &seg.paths.segment;
    let file = seg.file.as_ref().expect("a fragment was written");
    file.sync_data().map_err(|e| Error::io(path, e))?;
    sio::sync_dir(&seg.paths.dir)?;
    let mut meta = seg.meta.clone();
    meta.bytes = seg.written;
    meta.blake3 = seg.hasher.finalize().to_hex().to_string();
    for (t, n) in meta.tracks.iter_mut().zip(&seg.frames) {
        t.frames = *n;
    }
    sio::write_atomic(&seg.paths.sidecar, &meta.to_json())?;
    Ok(Some(meta))
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Err(e) = self.seal() {
            tracing::error!(camera = self.camera, "sealing the last segment: {e}");
        }
        let mut st = self.store.state();
        if let Some(cam) = st.cameras.get_mut(&self.camera) {
            cam.writer = false;
        }
    }
}

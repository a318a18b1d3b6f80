//! Camera ingest: an RTSP client (retina) per camera, feeding frames into the camera's ring.
//!
//! Each frame gets a wall-clock time on the NVR's clock: anchored at the receive time of the
//! session's first frame, then advanced by RTP time (smooth, no network jitter), and, once the
//! camera sends RTCP sender reports, by the camera's NTP ↔ RTP mapping per stream (which keeps
//! audio and video on one clock and follows the camera's crystal), shifted onto the NVR's clock.
//!
//! RTP carries presentation times only. For a camera that sends B-frames the decode times are
//! rebuilt per GOP: frames are held until the next keyframe, then DTS are the sorted PTS shifted by
//! the reorder depth (constant, learned, never decreasing), so decode times increase and never
//! exceed presentation times. Audio and video leave the GOP buffer together, in decode order.
//!
//! Once a whole GOP has arrived in presentation order with no reorder depth learned (no
//! B-frames: most cameras), frames pass through: each leaves when the next video frame arrives
//! (DTS = PTS, its duration the distance to the next), so the ring, the live view and the
//! recorder get it one frame interval after the camera sent it instead of a GOP later. A frame
//! that then arrives out of order turns GOP buffering back on (that GOP's late frames have their
//! decode times nudged forward, as after a camera clock step).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nvrkit_media::time::rescale;
use nvrkit_media::{AacParams, CodecParams, Frame, TrackInfo, VideoParams, WallTime};
use retina::client::{
    PlayOptions, SessionOptions, SetupOptions, TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tokio::sync::watch;

use crate::IngestError;

/// What the rest of the NVR can see of a camera.
#[derive(Debug, Default)]
pub struct CameraState {
    /// Tracks of the current session (video first), once known.
    pub tracks: Mutex<Option<Vec<TrackInfo>>>,
    /// Bumped when the tracks change (a new session, new parameters).
    pub tracks_generation: AtomicU64,
    /// The tracks as a watch, sent only a set different from the last one (a reconnect with
    /// the same tracks sends nothing): what a restream's sessions follow
    /// (`nvrkit_feed::source::LiveSource`).
    pub tracks_watch: watch::Sender<Option<Vec<TrackInfo>>>,
    /// A session is playing.
    pub connected: AtomicBool,
    /// Frames pushed into the ring.
    pub frames: AtomicU64,
    /// Sessions started (1 = never reconnected).
    pub sessions: AtomicU64,
    /// The last error, for the API.
    pub last_error: Mutex<Option<String>>,
}

/// How to reach a camera.
#[derive(Debug, Clone)]
pub struct CameraSource {
    /// The camera's name.
    pub name: String,
    /// Its RTSP URL (credentials included).
    pub url: url::Url,
    /// RTP over UDP instead of TCP.
    pub udp: bool,
}

impl CameraSource {
    /// The URL without credentials, for logs and the API.
    pub fn display_url(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.to_string()
    }
}

/// The largest access unit (one video or audio frame) a camera may send, as mediamtx's
/// `MaxAccessUnitSize`: a larger one ends the session ([`IngestError::FrameTooLarge`]) and
/// ingest reconnects. retina 0.4 assembles a frame whole before handing it over, with no cap
/// of its own, so what bounds its buffer meanwhile is time: [`NO_VIDEO`] counts video frames
/// only (an RTCP report or audio no longer keeps a session that sends endless FU-A pieces).
pub const MAX_FRAME_BYTES: usize = 8 << 20;

/// A playing session with no complete video frame for this long is ended and reconnected.
pub const NO_VIDEO: Duration = Duration::from_secs(20);

/// In-band parameter changes a session may make per [`PARAM_CHANGE_WINDOW`]: each one is a new
/// track (a sealed segment, every live and restream viewer restarted), so a camera alternating
/// its SPS every GOP would seal a segment a second. Past this the session ends
/// ([`IngestError::ParameterChanges`]) and the reconnect backoff applies.
pub const MAX_PARAM_CHANGES: usize = 4;

/// The window of [`MAX_PARAM_CHANGES`].
pub const PARAM_CHANGE_WINDOW: Duration = Duration::from_secs(60);

/// The recent parameter changes of a session.
#[derive(Debug, Default)]
struct ParamChanges {
    at: std::collections::VecDeque<std::time::Instant>,
}

impl ParamChanges {
    /// Notes a change at `now`; an error past [`MAX_PARAM_CHANGES`] in the window.
    fn note(&mut self, now: std::time::Instant) -> Result<(), IngestError> {
        while self
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) >= PARAM_CHANGE_WINDOW)
        {
            self.at.pop_front();
        }
        self.at.push_back(now);
        if self.at.len() > MAX_PARAM_CHANGES {
            return Err(IngestError::ParameterChanges {
                changes: self.at.len(),
                window: PARAM_CHANGE_WINDOW,
            });
        }
        Ok(())
    }
}

/// Bytes of a GOP held for its decode times at most: past them it is passed on as is.
const MAX_GOP_BYTES: usize = 64 << 20;

/// The longest DESCRIBE, each SETUP and PLAY may take (retina waits for an answer forever): a
/// camera, or a host that took its address, that accepts TCP and says nothing is retried.
pub const RTSP_STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a camera until `stop`: connect, play, push frames; on any failure, log, wait (1 s,
/// doubling to 30 s; reset after a session that ran a minute) and reconnect. DESCRIBE, SETUP
/// and PLAY each have [`RTSP_STEP_TIMEOUT`].
pub async fn run(
    source: CameraSource,
    writer: nvrkit_ring::Writer,
    state: Arc<CameraState>,
    stop: watch::Receiver<bool>,
) {
    run_with(source, writer, state, stop, RTSP_STEP_TIMEOUT).await;
}

/// [`run`] with `step` as the deadline of DESCRIBE, SETUP and PLAY.
async fn run_with(
    source: CameraSource,
    mut writer: nvrkit_ring::Writer,
    state: Arc<CameraState>,
    mut stop: watch::Receiver<bool>,
    step: Duration,
) {
    let mut backoff = Duration::from_secs(1);
    let mut timeline = Timeline::default();
    loop {
        state.sessions.fetch_add(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let mut session_stop = stop.clone();
        // Biased: at shutdown the session is polled first, sees the stop and flushes its held
        // GOP; the outer branch only ends a session stuck in DESCRIBE/SETUP/PLAY.
        let result = tokio::select! {
            biased;
            r = session(&source, &mut writer, &state, &mut timeline, &mut session_stop, step) => r,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        state.connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => tracing::warn!(camera = source.name, "stream ended; reconnecting"),
            Err(e) => {
                tracing::warn!(camera = source.name, "{e}; reconnecting in {backoff:?}");
                if let Ok(mut l) = state.last_error.lock() {
                    *l = Some(e.to_string());
                }
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        timeline.reconnected();
    }
}

/// Output timestamps that run on across reconnects (a gap, flagged, never papered over).
#[derive(Debug, Default)]
struct Timeline {
    /// Wall-clock time of tick 0 of every stream.
    epoch: Option<WallTime>,
    /// A reconnect happened: flag the next frame of each stream.
    gap: [bool; 2],
    last_dts: [Option<i64>; 2],
    /// Reorder depth of the video, in ticks.
    reorder: i64,
    /// A video frame arrived with a PTS not after the one before it, since the last keyframe
    /// (B-frames: decode times must be rebuilt per GOP).
    reordered: bool,
    /// The PTS of the last video frame, in arrival order.
    last_video_pts: Option<i64>,
    /// A whole GOP arrived in presentation order with no reorder depth learned: each frame
    /// leaves as soon as the next video frame arrives, instead of at the next keyframe.
    passthrough: bool,
}

impl Timeline {
    fn reconnected(&mut self) {
        self.gap = [true, true];
        // A new session may send another structure: learn it again.
        self.reordered = false;
        self.last_video_pts = None;
        self.passthrough = false;
    }

    /// Notes a video frame's PTS in arrival order; returns whether the frames held must be
    /// pushed now (`keyframe`, or in pass-through mode every frame).
    fn on_video(&mut self, pts: i64, keyframe: bool) -> bool {
        if self.last_video_pts.is_some_and(|p| pts <= p) {
            self.reordered = true;
            if self.passthrough {
                self.passthrough = false;
                tracing::info!(
                    "video frames arrive out of presentation order (B-frames): decode times are rebuilt per GOP again"
                );
            }
        }
        self.last_video_pts = Some(pts);
        if keyframe {
            if !self.reordered && self.reorder == 0 && !self.passthrough {
                self.passthrough = true;
                tracing::debug!("a GOP in presentation order: frames pass through one at a time");
            }
            self.reordered = false;
        }
        keyframe || self.passthrough
    }
}

/// The farthest a frame's wall-clock time may be from when it was received: past it the
/// camera's RTP or RTCP time is not trusted (a jump of hours, a sender report years ahead,
/// which would date footage into the future and let it outlive every other camera's under
/// retention), and the clock is anchored again on the receive time.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(10);

/// Per-session clock mapping.
#[derive(Debug, Default)]
struct Clock {
    /// (wall at anchor, elapsed seconds at anchor), from the first frame's receive time.
    anchor: Option<(WallTime, f64)>,
    /// Per stream: the latest SR as (camera NTP wall, elapsed seconds).
    sr: [Option<(WallTime, f64)>; 2],
    /// Camera clock → NVR clock, fixed at the first SR.
    offset_micros: Option<i64>,
    /// Anchored again since the last [`Clock::take_reanchored`] (the frame is a discontinuity).
    reanchored: bool,
}

impl Clock {
    fn wall(&mut self, stream: usize, elapsed: f64, received: WallTime) -> WallTime {
        let (w0, e0) = *self.anchor.get_or_insert((received, elapsed));
        let anchored = w0.add_micros(((elapsed - e0) * 1e6).round() as i64);
        let wall = match (self.sr[stream], self.offset_micros) {
            (Some((ntp, e)), Some(off)) => {
                ntp.add_micros(((elapsed - e) * 1e6).round() as i64 + off)
            }
            _ => anchored,
        };
        if wall.micros_since(received).unsigned_abs() > MAX_CLOCK_SKEW.as_micros() as u64 {
            tracing::warn!(
                "camera time {wall} is {} s from the receive time {received}: anchored again on the receive time",
                wall.micros_since(received) / 1_000_000
            );
            *self = Clock {
                anchor: Some((received, elapsed)),
                reanchored: true,
                ..Clock::default()
            };
            return received;
        }
        wall
    }

    /// Whether the clock was anchored again since the last call.
    fn take_reanchored(&mut self) -> bool {
        std::mem::take(&mut self.reanchored)
    }

    fn sender_report(&mut self, stream: usize, ntp: WallTime, elapsed: f64) {
        if let Some((w0, e0)) = self.anchor
            && self.offset_micros.is_none()
        {
            let anchored = w0.add_micros(((elapsed - e0) * 1e6).round() as i64);
            self.offset_micros = Some(anchored.micros_since(ntp));
        }
        self.sr[stream] = Some((ntp, elapsed));
    }
}

/// Frames of the current GOP, held until the next video keyframe fixes their decode times.
#[derive(Debug, Default)]
struct GopBuffer {
    frames: Vec<Frame>,
}

async fn session(
    source: &CameraSource,
    writer: &mut nvrkit_ring::Writer,
    state: &CameraState,
    timeline: &mut Timeline,
    stop: &mut watch::Receiver<bool>,
    step: Duration,
) -> Result<(), IngestError> {
    let timed_out = |what: &'static str| {
        move |_| IngestError::Timeout {
            step: what,
            after: step,
        }
    };
    let mut session = tokio::time::timeout(
        step,
        retina::client::Session::describe(
            source.url.clone(),
            SessionOptions::default().user_agent("nvrkit nvr".into()),
        ),
    )
    .await
    .map_err(timed_out("DESCRIBE"))?
    .map_err(IngestError::Describe)?;
    // Our stream 0 is the first H.264/H.265 video, stream 1 the first AAC audio.
    let mut map: Vec<Option<usize>> = vec![None; session.streams().len()];
    let (mut have_video, mut have_audio) = (false, false);
    for (i, s) in session.streams().iter().enumerate() {
        let enc = s.encoding_name();
        match (s.media(), enc) {
            ("video", "h264" | "h265") if !have_video => {
                map[i] = Some(0);
                have_video = true;
            }
            ("audio", "mpeg4-generic") if !have_audio => {
                map[i] = Some(1);
                have_audio = true;
            }
            (media, enc) => tracing::info!(
                camera = source.name,
                "track {i} ({media}/{enc}) is not recorded (H.264, H.265 and AAC are)"
            ),
        }
    }
    if !have_video {
        return Err(IngestError::NoVideo);
    }
    let transport = if source.udp {
        Transport::Udp(UdpTransportOptions::default())
    } else {
        Transport::Tcp(TcpTransportOptions::default())
    };
    for (i, m) in map.iter().enumerate() {
        if m.is_some() {
            let setup = session.setup(
                i,
                SetupOptions::default()
                    .transport(transport.clone())
                    .frame_format(FrameFormat::MP4),
            );
            tokio::time::timeout(step, setup)
                .await
                .map_err(timed_out("SETUP"))?
                .map_err(|source| IngestError::Setup { track: i, source })?;
        }
    }
    // Permissive: many cameras leave `rtptime` out of RTP-Info; refusing them would only loop
    // on reconnects. Their streams are aligned by the RTCP sender reports (`Clock`).
    let play = PlayOptions::default()
        .initial_timestamp(retina::client::InitialTimestampPolicy::Permissive);
    let playing = tokio::time::timeout(step, session.play(play))
        .await
        .map_err(timed_out("PLAY"))?
        .map_err(IngestError::Play)?;
    let mut demuxed = playing.demuxed().map_err(IngestError::Depacketizer)?;
    state.connected.store(true, Ordering::Relaxed);
    tracing::info!(camera = source.name, url = source.display_url(), "playing");

    let mut clock = Clock::default();
    let mut gop = GopBuffer::default();
    let mut tracks: Vec<Option<TrackInfo>> = vec![None, None];
    let mut published: Vec<TrackInfo> = Vec::new();
    let mut waiting_for_key = true;
    let mut gop_bytes = 0usize;
    let mut changes = ParamChanges::default();
    let mut video_deadline = tokio::time::Instant::now() + NO_VIDEO;
    loop {
        let next = tokio::time::timeout_at(video_deadline, demuxed.next());
        let item = tokio::select! {
            item = next => item.map_err(|_| IngestError::NoMedia(NO_VIDEO))?,
            _ = stop.changed() => {
                // Shutting down: the held GOP goes into the ring, so an open event range ends
                // with it instead of losing up to a GOP.
                if !gop.frames.is_empty() {
                    flush(&mut gop, writer, state, timeline)?;
                }
                return Ok(());
            }
        };
        let item = match item {
            None => return Ok(()),
            Some(r) => r.map_err(IngestError::Stream)?,
        };
        match item {
            CodecItem::VideoFrame(f) => {
                if f.data().len() > MAX_FRAME_BYTES {
                    return Err(IngestError::FrameTooLarge {
                        bytes: f.data().len(),
                        max: MAX_FRAME_BYTES,
                    });
                }
                let Some(Some(s)) = map.get(f.stream_id()) else {
                    continue;
                };
                video_deadline = tokio::time::Instant::now() + NO_VIDEO;
                if f.has_new_parameters() || tracks[*s].is_none() {
                    let params = demuxed.streams()[f.stream_id()].parameters();
                    if let Some(p) = params.and_then(video_params) {
                        let new = track(*s, 90_000, p);
                        if tracks[*s].as_ref().is_some_and(|t| t.params != new.params) {
                            changes.note(std::time::Instant::now())?;
                        }
                        tracks[*s] = Some(new);
                    }
                }
                if tracks[*s].is_none() {
                    continue; // no parameter sets yet
                }
                if waiting_for_key {
                    if !f.is_random_access_point() {
                        continue;
                    }
                    waiting_for_key = false;
                }
                let ts = f.timestamp();
                let elapsed = ts.elapsed_secs();
                let received = WallTime::from_system(f.start_ctx().received_wall().into());
                let wall = clock.wall(*s, elapsed, received);
                if clock.take_reanchored() {
                    timeline.gap = [true, true];
                }
                let keyframe = f.is_random_access_point();
                let pts = out_ticks(timeline, wall, elapsed, ts.elapsed(), 90_000, &mut clock);
                let passthrough = timeline.passthrough;
                if timeline.on_video(pts, keyframe) && !gop.frames.is_empty() {
                    if passthrough {
                        // One video frame is held: its duration is the distance to this one.
                        if let Some(held) = gop.frames.iter_mut().rev().find(|f| f.stream == 0)
                            && pts > held.pts
                        {
                            held.duration = (pts - held.pts).min(i64::from(u32::MAX)) as u32;
                        }
                    }
                    flush(&mut gop, writer, state, timeline)?;
                    gop_bytes = 0;
                }
                gop_bytes += f.data().len();
                gop.frames.push(Frame {
                    stream: *s,
                    timescale: 90_000,
                    dts: pts,
                    pts,
                    duration: 0,
                    wall: Some(wall),
                    keyframe,
                    discard: false,
                    discontinuity: false,
                    data: f.into_data().into(),
                });
            }
            CodecItem::AudioFrame(f) => {
                if f.data().len() > MAX_FRAME_BYTES {
                    return Err(IngestError::FrameTooLarge {
                        bytes: f.data().len(),
                        max: MAX_FRAME_BYTES,
                    });
                }
                let Some(Some(s)) = map.get(f.stream_id()) else {
                    continue;
                };
                if tracks[*s].is_none() {
                    if let Some(ParametersRef::Audio(a)) =
                        demuxed.streams()[f.stream_id()].parameters()
                        && let Ok(p) =
                            AacParams::parse(bytes::Bytes::copy_from_slice(a.extra_data()))
                    {
                        let rate = a.clock_rate();
                        tracks[*s] = Some(track(*s, rate, CodecParams::Aac(p)));
                    } else {
                        continue;
                    }
                }
                if waiting_for_key {
                    continue; // audio before the first keyframe has nothing to hang on
                }
                let ts = f.timestamp();
                let clock_rate = ts.clock_rate().get();
                let received = WallTime::from_system(f.ctx().received_wall().into());
                let wall = clock.wall(*s, ts.elapsed_secs(), received);
                if clock.take_reanchored() {
                    timeline.gap = [true, true];
                }
                let pts = out_ticks(
                    timeline,
                    wall,
                    ts.elapsed_secs(),
                    ts.elapsed(),
                    clock_rate,
                    &mut clock,
                );
                gop_bytes += f.data().len();
                gop.frames.push(Frame {
                    stream: *s,
                    timescale: clock_rate,
                    dts: pts,
                    pts,
                    duration: f.frame_length().get(),
                    wall: Some(wall),
                    keyframe: true,
                    discard: false,
                    discontinuity: false,
                    data: bytes::Bytes::copy_from_slice(f.data()),
                });
            }
            CodecItem::Rtcp(rtcp) => {
                let Some(Some(s)) = map.get(rtcp.stream_id()) else {
                    continue;
                };
                let Some(ts) = rtcp.rtp_timestamp() else {
                    continue;
                };
                if let Some(Ok(Some(sr))) = rtcp.pkts().next().map(|p| p.as_sender_report()) {
                    let ntp = WallTime::from_ntp(sr.ntp_timestamp().0);
                    clock.sender_report(*s, ntp, ts.elapsed_secs());
                }
            }
            _ => {}
        }
        let known: Vec<TrackInfo> = tracks.iter().flatten().cloned().collect();
        if !waiting_for_key && known != published {
            publish(state, &known);
            published = known;
        }
        if gop.frames.len() > 4_000 || gop_bytes > MAX_GOP_BYTES {
            // A GOP longer than ~2 minutes at 30 fps, or over 64 MiB: do not hold it all; pass
            // it on as is.
            flush(&mut gop, writer, state, timeline)?;
            gop_bytes = 0;
        }
    }
}

fn track(stream: usize, timescale: u32, params: CodecParams) -> TrackInfo {
    let sample_entry = match &params {
        CodecParams::H264(_) => "avc1",
        CodecParams::H265(_) => "hvc1",
        _ => "mp4a",
    };
    TrackInfo {
        stream,
        track_id: stream as u32 + 1,
        timescale,
        params,
        sample_entry: sample_entry.into(),
        frames: 0,
        duration: 0,
        language: None,
    }
}

/// The codec parameters of a video stream, if they are H.264/H.265 ones nvrkit-media accepts.
fn video_params(p: ParametersRef<'_>) -> Option<CodecParams> {
    let ParametersRef::Video(v) = p else {
        return None;
    };
    Some(match v.codec_params() {
        VideoParametersCodec::H264 { sps, pps } => {
            CodecParams::H264(VideoParams::h264(vec![sps.clone()], vec![pps.clone()]).ok()?)
        }
        VideoParametersCodec::H265 { vps, sps, pps } => CodecParams::H265(
            VideoParams::h265(vec![vps.clone()], vec![sps.clone()], vec![pps.clone()]).ok()?,
        ),
        _ => return None,
    })
}

fn publish(state: &CameraState, tracks: &[TrackInfo]) {
    if let Ok(mut t) = state.tracks.lock() {
        *t = Some(tracks.to_vec());
    }
    state.tracks_generation.fetch_add(1, Ordering::Relaxed);
    state.tracks_watch.send_if_modified(|t| {
        let changed = t.as_deref() != Some(tracks);
        if changed {
            *t = Some(tracks.to_vec());
        }
        changed
    });
}

/// Ticks of a frame on the output timeline. The first frame of the session anchors the stream's
/// base on the wall clock; later frames follow RTP time exactly.
fn out_ticks(
    timeline: &mut Timeline,
    wall: WallTime,
    _elapsed_secs: f64,
    elapsed_ticks: i64,
    rate: u32,
    clock: &mut Clock,
) -> i64 {
    let epoch = *timeline.epoch.get_or_insert(wall);
    let (w0, e0) = clock.anchor.unwrap_or((wall, 0.0));
    // Base: the anchor's wall time on the output timeline, minus its RTP progress.
    let anchor_ticks = rescale(w0.micros_since(epoch), 1_000_000, rate);
    let e0_ticks = (e0 * f64::from(rate)).round() as i64;
    anchor_ticks + elapsed_ticks - e0_ticks
}

/// Fixes the decode times of the held GOP and pushes it, audio and video in decode order.
fn flush(
    gop: &mut GopBuffer,
    writer: &mut nvrkit_ring::Writer,
    state: &CameraState,
    timeline: &mut Timeline,
) -> Result<(), IngestError> {
    let mut frames = std::mem::take(&mut gop.frames);
    // Video: DTS = the sorted PTS, shifted by the reorder depth.
    let video: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i].stream == 0)
        .collect();
    let mut sorted: Vec<i64> = video.iter().map(|&i| frames[i].pts).collect();
    sorted.sort_unstable();
    for (j, &i) in video.iter().enumerate() {
        timeline.reorder = timeline.reorder.max(sorted[j] - frames[i].pts);
    }
    for (j, &i) in video.iter().enumerate() {
        frames[i].dts = sorted[j] - timeline.reorder;
    }
    // Durations: to the next frame of the stream in this GOP (the last keeps its guess).
    for s in 0..2 {
        let idx: Vec<usize> = (0..frames.len())
            .filter(|&i| frames[i].stream == s)
            .collect();
        for w in idx.windows(2) {
            let d = frames[w[1]].dts - frames[w[0]].dts;
            if d > 0 && s == 0 {
                frames[w[0]].duration = d.min(i64::from(u32::MAX)) as u32;
            }
        }
        if let (Some(&last), Some(&prev)) = (idx.last(), idx.iter().rev().nth(1))
            && s == 0
        {
            frames[last].duration = frames[prev].duration;
        }
    }
    frames.sort_by(|a, b| {
        nvrkit_media::time::cmp_ticks(a.dts, a.timescale, b.dts, b.timescale)
            .then(a.stream.cmp(&b.stream))
    });
    for mut f in frames {
        let s = f.stream.min(1);
        if let Some(last) = timeline.last_dts[s]
            && f.dts <= last
        {
            // Never go backwards (a camera clock step, a reorder depth that grew): nudge.
            let shift = last + 1 - f.dts;
            f.dts += shift;
            f.pts = f.pts.max(f.dts);
        }
        if timeline.gap[s] {
            f.discontinuity = true;
            timeline.gap[s] = false;
        }
        timeline.last_dts[s] = Some(f.dts);
        writer.push(f)?;
        state.frames.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// M8 (review-nvr.md): a "camera" that accepts TCP and never answers DESCRIBE does not
    /// hold its ingest forever: the step times out and ingest connects again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_camera_times_out_and_is_retried() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s); // read nothing, answer nothing
                let _ = accepted_tx.send(());
            }
        });
        let (writer, _ring) =
            nvrkit_ring::ring(nvrkit_ring::Config::new().video_stream(0)).unwrap();
        let state = Arc::new(CameraState::default());
        let (stop_tx, stop) = watch::channel(false);
        let source = CameraSource {
            name: "silent".into(),
            url: format!("rtsp://{addr}/stream").parse().unwrap(),
            udp: false,
        };
        let task = tokio::spawn(run_with(
            source,
            writer,
            state.clone(),
            stop,
            Duration::from_millis(300),
        ));
        for n in 1..=2 {
            tokio::time::timeout(Duration::from_secs(20), accepted.recv())
                .await
                .unwrap_or_else(|_| panic!("hang guard: connection {n} never came"));
        }
        let err = state.last_error.lock().unwrap().clone().unwrap();
        assert!(
            err.contains("DESCRIBE") && err.contains("no answer"),
            "{err}"
        );
        assert!(state.sessions.load(Ordering::Relaxed) >= 2);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("hang guard: ingest stops")
            .unwrap();
    }

    /// M4 (review-nvr.md): a sender report far from the NVR's clock, or an RTP jump of hours,
    /// does not date frames away from when they were received: the clock is anchored again.
    #[test]
    fn camera_time_far_from_the_receive_time_is_not_trusted() {
        let now = WallTime::parse_rfc3339("2026-12-03T10:00:00Z").unwrap();
        let mut c = Clock::default();
        assert_eq!(c.wall(0, 0.0, now), now);
        // A sane SR (camera clock 3 s off, fixed once), then one 100 years ahead.
        c.sender_report(0, now.add_micros(3_000_000), 0.0);
        let w = c.wall(0, 1.0, now.add_micros(1_000_000));
        assert_eq!(
            w,
            now.add_micros(1_000_000),
            "the first SR only sets the offset"
        );
        assert!(!c.take_reanchored());
        let century = 100 * 365 * 86_400 * 1_000_000i64;
        c.sender_report(0, now.add_micros(2_000_000 + 3_000_000 + century), 2.0);
        let received = now.add_micros(2_040_000);
        let w = c.wall(0, 2.04, received);
        assert_eq!(w, received, "a report 100 years ahead is not believed");
        assert!(
            c.take_reanchored(),
            "and the frame is flagged a discontinuity"
        );
        // An RTP jump of 6.6 hours between two frames.
        let w = c.wall(0, 2.08 + 23_860.0, now.add_micros(2_080_000));
        assert_eq!(w, now.add_micros(2_080_000));
        // Then the clock follows RTP time again from there.
        let w = c.wall(0, 2.12 + 23_860.0, now.add_micros(2_130_000));
        assert_eq!(w, now.add_micros(2_120_000));
    }

    /// M5 (review-nvr.md): a fifth parameter change within a minute ends the session; spread
    /// over more than a minute they do not.
    #[test]
    fn parameter_changes_past_four_a_minute_end_the_session() {
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut c = ParamChanges::default();
        for s in [0, 10, 20, 30] {
            c.note(at(s)).unwrap();
        }
        let e = c.note(at(40)).unwrap_err();
        assert!(
            e.to_string().contains("5 video parameter changes in 60 s"),
            "{e}"
        );
        let mut c = ParamChanges::default();
        for s in (0..20).map(|i| i * 16) {
            c.note(at(s))
                .expect("one change every 16 s is under 4 a minute");
        }
    }

    /// H3 (review-nvr.md): a camera (the loop feeder, a real RTSP server) whose stream holds
    /// an access unit over [`MAX_FRAME_BYTES`] has its session ended, saying so, and ingest
    /// reconnects; the frames before it reached the ring.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oversized_frame_ends_the_session_and_ingest_reconnects() {
        let d = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let mut frames: Vec<Frame> = d.frames().map(Result::unwrap).collect();
        let v = d.tracks().iter().position(|t| t.params.is_video()).unwrap();
        // Video frame 30 gets a filler NAL (type 12) that makes it 9 MiB.
        let big = frames.iter().filter(|f| f.stream == v).nth(30).unwrap().dts;
        for f in frames.iter_mut().filter(|f| f.stream == v && f.dts == big) {
            let filler = 9usize << 20;
            let mut data = f.data.to_vec();
            data.extend_from_slice(&(filler as u32).to_be_bytes());
            data.push(12);
            data.resize(data.len() + filler - 1, 0xFF);
            f.data = data.into();
        }
        let clip = nvrkit_feed::loop_source::Clip::from_frames(
            "big".to_owned(),
            d.tracks().to_vec(),
            frames,
        )
        .unwrap();
        let server = nvrkit_feed::server::Server::start(
            nvrkit_feed::server::Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
            vec![clip],
        )
        .await
        .unwrap();
        let (writer, ring) = nvrkit_ring::ring(nvrkit_ring::Config::new().video_stream(0)).unwrap();
        let state = Arc::new(CameraState::default());
        let (stop_tx, stop) = watch::channel(false);
        let source = CameraSource {
            name: "big".into(),
            url: server.urls("127.0.0.1")[0].parse().unwrap(),
            udp: false,
        };
        let task = tokio::spawn(run(source, writer, state.clone(), stop));
        let t = std::time::Instant::now();
        loop {
            let err = state.last_error.lock().unwrap().clone();
            if let Some(e) = err {
                assert!(e.contains("over the limit of 8388608"), "{e}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "hang guard: the oversized frame never ended the session"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ring.stats().frames > 0, "the frames before it were kept");
        // And it connects again (the backoff is 1 s).
        while state.sessions.load(Ordering::Relaxed) < 2 {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "hang guard: no reconnect"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("hang guard: ingest stops")
            .unwrap();
    }
}

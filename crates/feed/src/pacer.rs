//! The pacers: each clip's frames released into its rings at their deadlines (the
//! [`LoopSource`]'s, on tokio's monotonic clock), and [`Looper`] (a clip looping into a ring of
//! its own, for `loopcam push`). The loop's business, not the RTSP server's: the server's
//! catalog ([`crate::feeds`]) starts one per served loop, `loopcam push` a [`Looper`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvrkit_media::{Frame, WallTime};
use nvrkit_ring::Ring;
use tokio::sync::watch;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Result;
use crate::loop_source::{Clip, LoopSource};

/// How late the pacer pushed frames, against their deadlines: a histogram in 100 µs buckets
/// (the last bucket holds everything from 100 ms on).
#[derive(Debug, Clone)]
pub(crate) struct Lateness {
    buckets: Vec<u64>,
    max_us: u64,
}

impl Lateness {
    const BUCKET_US: u64 = 100;

    pub(crate) fn new() -> Self {
        Lateness {
            buckets: vec![0; 1001],
            max_us: 0,
        }
    }

    fn record(&mut self, late: Duration) {
        let us = late.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = ((us / Self::BUCKET_US) as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.max_us = self.max_us.max(us);
    }

    /// The stream's punctuality so far.
    pub(crate) fn stats(&self) -> PacingStats {
        PacingStats {
            frames: self.buckets.iter().sum(),
            p50_us: self.quantile_us(0.5),
            p99_us: self.quantile_us(0.99),
            max_us: self.max_us,
        }
    }

    fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return (i as u64 + 1) * Self::BUCKET_US;
            }
        }
        self.max_us
    }
}

/// How punctually a stream's frames were released to its ring: lateness of each push after
/// its deadline (start + DTS on the monotonic clock). Quantiles are upper bounds to 100 µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingStats {
    /// Frames pushed.
    pub frames: u64,
    /// Median lateness, µs.
    pub p50_us: u64,
    /// 99th percentile lateness, µs.
    pub p99_us: u64,
    /// Largest lateness, µs.
    pub max_us: u64,
}

/// A clip looping into a ring of its own, paced exactly as the server's streams are: the source
/// of an RTMP push that runs without an RTSP server (`loopcam push`).
#[derive(Debug)]
pub struct Looper {
    ring: Ring,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Looper {
    /// Starts looping `clip` into a new ring that keeps `ring_duration` (and always the current
    /// GOP). Needs a tokio runtime.
    pub fn start(clip: Arc<Clip>, ring_duration: Duration) -> Result<Looper> {
        let ring_config = nvrkit_ring::Config::new()
            .max_duration(ring_duration.max(Duration::from_secs(1)))
            .max_bytes(256 << 20)
            .video_stream(clip.master());
        let all: Vec<usize> = (0..clip.tracks().len()).collect();
        let frames = clip.ring_frames(&all, ring_duration.max(Duration::from_secs(1)));
        let (writer, ring) = nvrkit_ring::ring(ring_config.max_frames(frames))?;
        let (stop, task) = spawn_pacer(clip, writer, Timing::WithMaster);
        Ok(Looper { ring, stop, task })
    }

    /// The ring the loop fills.
    pub fn ring(&self) -> Ring {
        self.ring.clone()
    }

    /// Stops the pacer; readers of the ring see it close.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts a pacer looping `clip` into `writer` from now; send `true` to stop it.
fn spawn_pacer(
    clip: Arc<Clip>,
    writer: nvrkit_ring::Writer,
    timing: Timing,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stop_rx) = watch::channel(false);
    let source = LoopSource::new(clip, WallTime::now());
    let pacing = Arc::new(Mutex::new(Lateness::new()));
    let task = tokio::spawn(pace(source, writer, None, pacing, stop_rx, timing, None));
    (stop, task)
}

/// How the pacer times the frames of the streams other than the master (audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    /// Every frame at its own deadline (RTSP: audio leaves when it is due).
    EachFrame,
    /// Other streams' frames wait for the next master frame and are pushed with it, at its
    /// deadline: at most one video frame interval late, and one wakeup per video frame instead
    /// of one per frame. For a lone RTMP push (`Looper`), where the server only forwards FLV
    /// tags by their timestamps, this cuts wakeups and sends from 72 to 25 a second for a
    /// 25 fps clip with 48 kHz AAC.
    WithMaster,
}

/// Pushes a clip's frames into its ring at their deadlines (start + DTS on the monotonic clock),
/// so pacing never accumulates drift. A video frame an alarm is cued on is reported to `cues`
/// once it is in the ring.
pub(crate) async fn pace(
    mut source: LoopSource,
    mut writer: nvrkit_ring::Writer,
    mut video_only: Option<nvrkit_ring::Writer>,
    pacing: Arc<Mutex<Lateness>>,
    mut stop: watch::Receiver<bool>,
    timing: Timing,
    cues: Option<crate::alarm::Cues>,
) {
    let master = source.clip().master();
    let start = Instant::now();
    let mut held: Vec<Frame> = Vec::new();
    loop {
        let Some((lap, index, frame)) = source.next_placed() else {
            break;
        };
        // A clip whose video pauses for long (or has none for a while) still sends its audio:
        // at most 16 frames wait.
        if timing == Timing::WithMaster && frame.stream != master && held.len() < 16 {
            held.push(frame);
            continue;
        }
        let due = start + Duration::from_micros(source.deadline_micros(&frame).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stopped(&mut stop) => break,
        }
        if let Ok(mut p) = pacing.lock() {
            p.record(Instant::now().saturating_duration_since(due));
        }
        let mut failed = false;
        for f in held.drain(..) {
            if let Err(e) = writer.push(f) {
                tracing::error!(clip = source.clip().name(), "ring push failed: {e}");
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
        if frame.stream == master
            && let Some(v) = video_only.as_mut()
            && let Err(e) = v.push(frame.clone())
        {
            tracing::error!(clip = source.clip().name(), "ring push failed: {e}");
            break;
        }
        let cued = (frame.stream == master).then_some(frame.wall);
        if let Err(e) = writer.push(frame) {
            tracing::error!(clip = source.clip().name(), "ring push failed: {e}");
            break;
        }
        if let (Some(c), Some(wall)) = (&cues, cued) {
            c.released(lap, index, wall);
        }
    }
}

/// Resolves once shutdown was signalled, also when that happened before `stop` was subscribed
/// (a task that subscribes in its own body may do so after
/// [`Server::shutdown`](crate::server::Server::shutdown) sent it: waiting for a *change* would
/// then wait for ever).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;
    use nvrkit_ring::Start;

    fn sample_clip() -> Arc<Clip> {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        Clip::load("sample", &d).unwrap()
    }

    /// Arrival instant (paused tokio clock, so exact) of each of the first `n` frames a reader
    /// of `ring` gets, with the frame's stream.
    async fn arrivals(ring: &Ring, n: usize) -> Vec<(usize, Instant)> {
        let mut reader = ring.reader(Start::OldestKeyframe);
        let mut out = Vec::new();
        while out.len() < n {
            let f = reader.recv_async().await.unwrap();
            out.push((f.stream, Instant::now()));
        }
        out
    }

    /// `loopcam push`'s pacer hands audio over together with the next video frame: every
    /// frame arrives at an instant a video frame arrives at, so a 25 fps clip wakes the
    /// publisher 25 times a second, not 72. The RTSP server's pacer keeps each frame's own
    /// deadline, so there audio arrives between video frames.
    #[tokio::test(start_paused = true)]
    async fn a_lone_push_gets_audio_with_its_video_frame_and_rtsp_does_not() {
        let clip = sample_clip();
        let master = clip.master();
        let looper = Looper::start(clip.clone(), Duration::from_secs(4)).unwrap();
        let got = arrivals(&looper.ring(), 200).await;
        looper.stop().await;
        let video: std::collections::HashSet<Instant> = got
            .iter()
            .filter(|(s, _)| *s == master)
            .map(|&(_, t)| t)
            .collect();
        assert!(
            got.iter().any(|(s, _)| *s != master),
            "the sample has audio"
        );
        assert!(got.iter().all(|(_, t)| video.contains(t)));

        let (writer, ring) = nvrkit_ring::ring(
            nvrkit_ring::Config::new()
                .max_duration(Duration::from_secs(4))
                .video_stream(master),
        )
        .unwrap();
        let (stop, task) = spawn_pacer(clip, writer, Timing::EachFrame);
        let got = arrivals(&ring, 200).await;
        let _ = stop.send(true);
        let _ = task.await;
        let video: std::collections::HashSet<Instant> = got
            .iter()
            .filter(|(s, _)| *s == master)
            .map(|&(_, t)| t)
            .collect();
        let apart = got
            .iter()
            .filter(|(s, t)| *s != master && !video.contains(t))
            .count();
        assert!(
            apart > 50,
            "only {apart} of 200 frames arrived apart from video"
        );
    }
}

//! Scripted alarms: at a loop position of a clip, every loop, an ONVIF motion event and (for an
//! `smtp://` target) a Hikvision-style alarm mail with the snapshot JPEG (loopcam's `--alarm
//! CLIP@POS=smtp://HOST:PORT` and `--alarm CLIP@POS=onvif`).
//!
//! - **Exact to the frame.** A position names the video frame presented at it: the frame whose
//!   presentation interval `[pts, pts + duration)` of the loop holds it. [`Cues`] maps that
//!   frame's index to the alarm, and the server's pacer reports it ([`Fired`]) the moment it
//!   releases that frame into the clip's ring, every lap. The event's time is the frame's
//!   wall-clock time (the one its RTP timestamp and RTCP sender reports map to), so a VMS can
//!   line its alarm up with its recording to the frame.
//! - The pacer never waits for an alarm: [`Cues::released`] is a `try_send` into a bounded
//!   channel (a full one drops the report with a warning).
//! - The dispatcher (`run`, feature `alarm`) sends ONVIF motion ON at once and OFF after
//!   [`hold`] (1 s, or half the loop when that is shorter, so OFF always comes before the next
//!   ON), and mails with nvrkit-smtp's client: at most [`MAILS_IN_FLIGHT`] mails in flight per
//!   alarm (a lap past that is skipped with a warning), each tried
//!   [`MAIL_ATTEMPTS`] times with a [`MAIL_TIMEOUT`] deadline per reply; a mail that fails
//!   them all is a warning. Nothing of this can stall the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nvrkit_media::WallTime;
use nvrkit_media::time::rescale;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::loop_source::Clip;

/// What an alarm raises besides the ONVIF motion event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The ONVIF motion event only (`=onvif`).
    Onvif,
    /// Also a Hikvision-style alarm mail to this SMTP server (`=smtp://HOST:PORT`).
    Smtp(SocketAddr),
}

/// One scripted alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The clip (stream name).
    pub clip: String,
    /// The loop position, µs from the loop's first presented video frame.
    pub position_micros: i64,
    /// Where it goes.
    pub target: Target,
}

/// An alarm's frame was released by the pacer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Index into the alarm list given to [`Tap::new`].
    pub alarm: usize,
    /// The lap (0 for the first loop).
    pub lap: i64,
    /// The frame's index among the clip's video frames.
    pub frame: usize,
    /// The frame's presentation time in the loop, µs from its first presented frame.
    pub frame_position_micros: i64,
    /// The frame's wall-clock (presentation) time.
    pub wall: WallTime,
    /// The keyframe the mail's snapshot is of: the one presented at or before the alarm
    /// frame, what the camera last had a full picture of when the alarm fired (never a later
    /// one, however late the mail is made). Its index among the clip's video frames.
    pub keyframe: usize,
    /// That keyframe's lap: `lap`, or `lap - 1` when the loop presents no keyframe at or before
    /// the alarm position (the previous lap's last one).
    pub keyframe_lap: i64,
    /// That keyframe's presentation time in its loop, µs.
    pub keyframe_position_micros: i64,
}

/// Where an alarm mail's JPEG came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    /// Decoded from [`Fired::keyframe`].
    Keyframe,
    /// The clip's sidecar JPEG (an H.265 clip): the same picture every time.
    Sidecar,
}

/// Capacity of the channel from the pacers to the dispatcher.
pub const CHANNEL: usize = 256;

/// The alarms of a server, and where their reports go (`Config::alarms` of
/// [`crate::server::Config`]).
#[derive(Debug, Clone)]
pub struct Tap {
    alarms: Arc<Vec<Alarm>>,
    tx: mpsc::Sender<Fired>,
}

impl Tap {
    /// A tap for `alarms`, and the receiver of their reports.
    pub fn new(alarms: Vec<Alarm>) -> (Tap, mpsc::Receiver<Fired>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        (
            Tap {
                alarms: Arc::new(alarms),
                tx,
            },
            rx,
        )
    }

    /// The alarms.
    pub fn alarms(&self) -> &[Alarm] {
        &self.alarms
    }

    /// The cues of `clip` (`None` when it has no alarm). Refuses a position outside the loop.
    pub fn cues(&self, clip: &Clip) -> Result<Option<Cues>> {
        let mut at = Vec::new();
        for (i, a) in self.alarms.iter().enumerate() {
            if a.clip != clip.name() {
                continue;
            }
            let (frame, position) = frame_at(clip, a.position_micros)?;
            let key = keyframe_before(clip, position)?;
            at.push(Cue {
                frame,
                alarm: i,
                position,
                key,
            });
        }
        if at.is_empty() {
            return Ok(None);
        }
        at.sort_unstable_by_key(|c| (c.frame, c.alarm));
        Ok(Some(Cues {
            at,
            tx: self.tx.clone(),
        }))
    }
}

fn unusable(clip: &Clip, what: String) -> Error {
    Error::Unusable {
        name: clip.name().to_owned(),
        what,
    }
}

/// Each video frame of `clip`'s loop: (index, position µs from the first presented frame,
/// keyframe).
fn presented(clip: &Clip) -> impl Iterator<Item = (usize, i64, bool)> + '_ {
    let frames = clip.frames(clip.master());
    let first = frames.iter().map(|f| f.pts).min().unwrap_or(0);
    frames.iter().enumerate().map(move |(i, f)| {
        (
            i,
            rescale(f.pts - first, f.timescale, 1_000_000),
            f.keyframe,
        )
    })
}

/// The keyframe presented at or before `position_micros` of `clip`'s loop: its index, how many
/// laps back it is (0, or 1 when the loop has none that early: the previous lap's last) and its
/// position (µs).
pub fn keyframe_before(clip: &Clip, position_micros: i64) -> Result<(usize, i64, i64)> {
    let mut latest: Option<(usize, i64)> = None;
    let mut last: Option<(usize, i64)> = None;
    for (i, start, key) in presented(clip) {
        if !key {
            continue;
        }
        if start <= position_micros && latest.is_none_or(|(_, b)| start > b) {
            latest = Some((i, start));
        }
        if last.is_none_or(|(_, b)| start > b) {
            last = Some((i, start));
        }
    }
    match (latest, last) {
        (Some((i, p)), _) => Ok((i, 0, p)),
        (None, Some((i, p))) => Ok((i, 1, p)),
        (None, None) => Err(unusable(clip, "the clip has no video keyframe".into())),
    }
}

/// The frame presented at `position_micros` of `clip`'s loop: its index among the video frames
/// and its own position (µs).
pub fn frame_at(clip: &Clip, position_micros: i64) -> Result<(usize, i64)> {
    let period = clip.period_micros();
    let unusable = |what: String| unusable(clip, what);
    if position_micros < 0 || position_micros >= period {
        return Err(unusable(format!(
            "alarm position {:.6} s is outside the loop (0 to {:.6} s)",
            position_micros as f64 / 1e6,
            period as f64 / 1e6
        )));
    }
    let mut best: Option<(usize, i64)> = None;
    for (i, start, _) in presented(clip) {
        // The latest frame presented at or before the position.
        if start <= position_micros && best.is_none_or(|(_, b)| start > b) {
            best = Some((i, start));
        }
    }
    best.ok_or_else(|| unusable("no video frame is presented at the alarm position".into()))
}

/// One alarm cued on a frame.
#[derive(Debug, Clone, Copy)]
struct Cue {
    frame: usize,
    alarm: usize,
    /// The frame's position, µs.
    position: i64,
    /// [`keyframe_before`] the frame.
    key: (usize, i64, i64),
}

/// The alarms of one clip, by video frame index: what its pacer checks each frame against.
#[derive(Debug, Clone)]
pub struct Cues {
    /// Sorted by frame, then alarm.
    at: Vec<Cue>,
    tx: mpsc::Sender<Fired>,
}

impl Cues {
    /// The pacer released video frame `index` of lap `lap`, presented at `wall`: reports every
    /// alarm cued on it. Never waits.
    pub fn released(&self, lap: i64, index: usize, wall: Option<WallTime>) {
        let from = self.at.partition_point(|c| c.frame < index);
        for c in &self.at[from..] {
            if c.frame != index {
                break;
            }
            let alarm = c.alarm;
            let (keyframe, back, keyframe_position_micros) = c.key;
            let fired = Fired {
                alarm,
                lap,
                frame: c.frame,
                frame_position_micros: c.position,
                wall: wall.unwrap_or_else(WallTime::now),
                keyframe,
                keyframe_lap: lap - back,
                keyframe_position_micros,
            };
            if self.tx.try_send(fired).is_err() {
                tracing::warn!("alarm {alarm}: lap {lap} dropped (the dispatcher is behind)");
            }
        }
    }
}

/// How long motion stays ON: 1 s, or half the loop period when that is shorter.
pub fn hold(period_micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(period_micros / 2).unwrap_or(0)).min(Duration::from_secs(1))
}

/// The most mails of one alarm in flight at once (a lap past it is skipped with a warning).
pub const MAILS_IN_FLIGHT: usize = 4;
/// Attempts per alarm mail.
pub const MAIL_ATTEMPTS: u32 = 3;
/// Deadline of each SMTP reply (and of connecting).
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(5);

/// The snapshot JPEG of a clip's video frame `index` (a keyframe, [`Fired::keyframe`]), by
/// clip name, and where it came from (`None`: none; the mail goes without one). A future, so a
/// decode runs in the mail's task, never in the dispatcher's loop (loopcam gives the ONVIF
/// device's `snapshot::Snapshotter`, `Snapshotter::keyframe`, which decodes each alarm's
/// keyframe once).
pub type JpegSource = Arc<
    dyn Fn(
            &str,
            usize,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<(Bytes, Picture)>> + Send>>
        + Send
        + Sync,
>;

/// The alarm mail's parts: (subject, body, attachment name), as a Hikvision IP camera writes
/// them (`X-Mailer: HIKMailer`, `EVENT TYPE: Motion Detected`, `IPC NAME`), which nvrkit-smtp
/// reads as `Vendor::Hikvision` motion. `EVENT TIME` is the
/// frame's wall time in UTC to the second (Hikvision writes local time without a zone); the
/// attachment's name carries the exact alarm frame and the keyframe the picture is of:
/// `<clip>_<UTC µs, compact>_lap<N>_pos<S.ffffff>s_key<K.ffffff>s.jpg` (the keyframe's
/// position; `_key<K>s` is `_lap<M>key<K>s` when it is of the previous lap, and `_sidecar` for
/// a sidecar JPEG, see [`snapshot_header`]).
pub fn mail_text(clip: &str, fired: &Fired, picture: Picture) -> (String, String, String) {
    let (date, time) = {
        let s = fired.wall.to_rfc3339();
        (
            s.get(0..10).unwrap_or_default().to_owned(),
            s.get(11..19).unwrap_or_default().to_owned(),
        )
    };
    let body = format!(
        "This is an automatically generated e-mail from your IPC.\n\n\
         EVENT TYPE:    Motion Detected\n\
         EVENT TIME:    {date},{time}\n\
         IPC NAME:      {clip}\n\
         IPC S/N:       loopcam-{clip}\n\
         CHANNEL NUMBER:    1\n"
    );
    let key = match picture {
        Picture::Sidecar => "sidecar".to_owned(),
        Picture::Keyframe if fired.keyframe_lap != fired.lap => format!(
            "lap{}key{:.6}s",
            fired.keyframe_lap,
            fired.keyframe_position_micros as f64 / 1e6
        ),
        Picture::Keyframe => format!("key{:.6}s", fired.keyframe_position_micros as f64 / 1e6),
    };
    let name = format!(
        "{clip}_{}_lap{}_pos{:.6}s_{key}.jpg",
        fired.wall.to_compact(),
        fired.lap,
        fired.frame_position_micros as f64 / 1e6
    );
    ("IPC: Motion Detected".to_owned(), body, name)
}

/// The alarm mail's `X-Loopcam-Alarm` header: the frame that raised it (`lap=2; frame=30;
/// pos=1.200000s; utc=…`).
pub fn alarm_header(fired: &Fired) -> String {
    format!(
        "lap={}; frame={}; pos={:.6}s; utc={}",
        fired.lap,
        fired.frame,
        fired.frame_position_micros as f64 / 1e6,
        fired.wall.to_rfc3339()
    )
}

/// The alarm mail's `X-Loopcam-Snapshot` header: which frame the attached JPEG is of
/// (`keyframe; lap=2; frame=25; pos=1.000000s`), or `sidecar` (the clip's sidecar JPEG).
pub fn snapshot_header(fired: &Fired, picture: Picture) -> String {
    match picture {
        Picture::Sidecar => "sidecar".to_owned(),
        Picture::Keyframe => format!(
            "keyframe; lap={}; frame={}; pos={:.6}s",
            fired.keyframe_lap,
            fired.keyframe,
            fired.keyframe_position_micros as f64 / 1e6
        ),
    }
}

#[cfg(feature = "alarm")]
mod dispatch;
#[cfg(feature = "alarm")]
pub use dispatch::{Dispatcher, run};

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;

    fn sample() -> Arc<Clip> {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        Clip::load("sample", &d).unwrap()
    }

    #[test]
    fn a_position_names_the_frame_presented_there() {
        let clip = sample();
        // 25 fps: 3.2 s is frame 80 exactly; 3.239 s is still frame 80; 3.24 s is frame 81.
        assert_eq!(frame_at(&clip, 3_200_000).unwrap(), (80, 3_200_000));
        assert_eq!(frame_at(&clip, 3_239_999).unwrap(), (80, 3_200_000));
        assert_eq!(frame_at(&clip, 3_240_000).unwrap(), (81, 3_240_000));
        assert_eq!(frame_at(&clip, 0).unwrap(), (0, 0));
        assert!(frame_at(&clip, clip.period_micros()).is_err());
        assert!(frame_at(&clip, -1).is_err());
    }

    #[test]
    fn the_snapshot_keyframe_is_the_one_at_or_before_the_alarm_frame() {
        let clip = sample();
        // The sample has a keyframe every second (frames 0, 25, 50, ...); 25 fps.
        let keys: Vec<i64> = presented(&clip)
            .filter(|(_, _, k)| *k)
            .map(|(_, p, _)| p)
            .collect();
        assert_eq!(&keys[..2], [0, 1_000_000], "{keys:?}");
        assert_eq!(
            keyframe_before(&clip, 3_200_000).unwrap(),
            (75, 0, 3_000_000)
        );
        assert_eq!(
            keyframe_before(&clip, 3_000_000).unwrap(),
            (75, 0, 3_000_000)
        );
        assert_eq!(
            keyframe_before(&clip, 2_999_999).unwrap(),
            (50, 0, 2_000_000)
        );
        assert_eq!(keyframe_before(&clip, 0).unwrap(), (0, 0, 0));
        // Reported with the alarm, lap by lap.
        let (tap, mut rx) = Tap::new(vec![Alarm {
            clip: "sample".into(),
            position_micros: 3_200_000,
            target: Target::Onvif,
        }]);
        let cues = tap.cues(&clip).unwrap().unwrap();
        cues.released(3, 80, Some(WallTime::from_micros(1)));
        let f = rx.try_recv().unwrap();
        assert_eq!(
            (f.keyframe, f.keyframe_lap, f.keyframe_position_micros),
            (75, 3, 3_000_000)
        );
        assert_eq!(
            snapshot_header(&f, Picture::Keyframe),
            "keyframe; lap=3; frame=75; pos=3.000000s"
        );
        assert_eq!(snapshot_header(&f, Picture::Sidecar), "sidecar");
        assert_eq!(
            alarm_header(&f),
            "lap=3; frame=80; pos=3.200000s; utc=1970-01-01T00:00:00.000001Z"
        );
    }

    #[test]
    fn cues_fire_on_their_frame_only() {
        let clip = sample();
        let alarm = |us| Alarm {
            clip: "sample".into(),
            position_micros: us,
            target: Target::Onvif,
        };
        let other = Alarm {
            clip: "other".into(),
            ..alarm(0)
        };
        let (tap, mut rx) = Tap::new(vec![alarm(3_200_000), other, alarm(1_000_000)]);
        let cues = tap.cues(&clip).unwrap().unwrap();
        let wall = WallTime::from_micros(1_000);
        for lap in 0..2 {
            for i in 0..clip.frames(clip.master()).len() {
                cues.released(lap, i, Some(wall));
            }
        }
        let got: Vec<(usize, i64, usize)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|f| (f.alarm, f.lap, f.frame))
            .collect();
        assert_eq!(got, [(2, 0, 25), (0, 0, 80), (2, 1, 25), (0, 1, 80)]);
        let (tap, _rx) = Tap::new(vec![alarm(60_000_000)]);
        assert!(tap.cues(&clip).is_err(), "beyond the 10 s loop");
    }

    #[test]
    fn a_full_channel_drops_reports_instead_of_waiting() {
        let clip = sample();
        let (tap, mut rx) = Tap::new(vec![Alarm {
            clip: "sample".into(),
            position_micros: 0,
            target: Target::Onvif,
        }]);
        let cues = tap.cues(&clip).unwrap().unwrap();
        for lap in 0..(CHANNEL as i64 + 10) {
            cues.released(lap, 0, None);
        }
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), CHANNEL);
    }

    #[test]
    fn hold_is_shorter_than_half_the_loop() {
        assert_eq!(hold(10_000_000), Duration::from_secs(1));
        assert_eq!(hold(1_000_000), Duration::from_millis(500));
    }

    #[test]
    fn the_mail_reads_as_hikvision() {
        let fired = Fired {
            alarm: 0,
            lap: 2,
            frame: 80,
            frame_position_micros: 3_200_000,
            wall: WallTime::parse_rfc3339("2026-12-03T15:25:58.2Z").unwrap(),
            keyframe: 50,
            keyframe_lap: 2,
            keyframe_position_micros: 2_000_000,
        };
        let (subject, body, name) = mail_text("bikes", &fired, Picture::Keyframe);
        assert_eq!(subject, "IPC: Motion Detected");
        assert!(body.contains("EVENT TIME:    2026-12-03,15:25:58\n"));
        assert!(body.contains("IPC NAME:      bikes\n"));
        assert_eq!(
            name,
            "bikes_20261203T152558.200000Z_lap2_pos3.200000s_key2.000000s.jpg"
        );
        let (_, _, name) = mail_text("bikes", &fired, Picture::Sidecar);
        assert_eq!(
            name,
            "bikes_20261203T152558.200000Z_lap2_pos3.200000s_sidecar.jpg"
        );
        let back = Fired {
            keyframe_lap: 1,
            keyframe_position_micros: 9_000_000,
            ..fired
        };
        let (_, _, name) = mail_text("bikes", &back, Picture::Keyframe);
        assert_eq!(
            name,
            "bikes_20261203T152558.200000Z_lap2_pos3.200000s_lap1key9.000000s.jpg"
        );
    }
}

//! What a session sends once PLAY starts it, sans-I/O: the per-track RTP sender state
//! ([`TrackSender`]), where RTP-Info says the stream starts, the join filter, sender reports and
//! BYE. Frames go in, packets come out as data ([`Outgoing`](crate::rtp::Outgoing), into a [`Sink`]), so the I/O layer only writes them
//! (and a later change can batch them across sessions).
//!
//! Every frame and every RTCP packet a session sends passes through [`Playout`]: a per-session
//! fault set (dropped keyframes, stalls, timestamp resets, BYE at the seam) belongs here, beside
//! the state it bends, so each fault is unit-testable without sockets.

use std::time::Instant;

use nvrkit_media::Frame;

use super::core::{Session, Transport};
use crate::fault::frames::SessionFaults;
use crate::fault::session::{Admit, Shaped, Shaper};
use crate::join::JoinFilter;
use crate::rtp::sender::Scratch;
use crate::rtp::{Sink, TrackSender};

/// RTP settings of a connection's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpConfig {
    /// Largest RTP packet, header included.
    pub mtu: usize,
    /// Every session's first RTP timestamp; random when `None`.
    pub initial_rtptime: Option<u32>,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            mtu: 1400,
            initial_rtptime: None,
        }
    }
}

/// A session's sending state, from PLAY to TEARDOWN (kept across PAUSE).
#[derive(Debug)]
pub struct Playout {
    tracks: Vec<TrackSender>,
    playing: bool,
    /// Leaves out the leading pictures of the keyframe this session joined or resumed at.
    join: JoinFilter,
    scratch: Scratch,
    /// This session's frame and timestamp faults (`noidr`, `ts_reset_at_seam`,
    /// `dts_backwards_at_seam`), applied before the join filter.
    frame_faults: SessionFaults,
    /// The session's stall, BYE-at-seam, drop and jitter faults ([`crate::fault::session`]).
    shaper: Shaper,
}

impl Playout {
    /// Starts (or, after PAUSE, resumes) playing `session` at `first`, the keyframe of stream
    /// `master` the I/O layer will send first. A track set up before keeps its SSRC, sequence
    /// and clock (RTP time continues with media time); one set up (or set up again with
    /// another transport) since starts afresh.
    pub fn start(
        session: &Session,
        first: &Frame,
        master: usize,
        config: &RtpConfig,
        previous: Option<Playout>,
    ) -> Playout {
        let (mut before, scratch, shaper) = match previous {
            Some(p) => (p.tracks, p.scratch, Some(p.shaper)),
            None => Default::default(),
        };
        let shaper = shaper.unwrap_or_else(|| Self::new_shaper(session));
        let tracks = session
            .tracks
            .iter()
            .filter_map(|s| {
                if let Some(i) = before
                    .iter()
                    .position(|t| t.stream() == s.stream && t.transport() == s.transport)
                {
                    return Some(before.swap_remove(i));
                }
                let track = session.stream.tracks.get(s.stream)?;
                Some(TrackSender::new(
                    s.stream,
                    s.transport,
                    s.ssrc,
                    track,
                    config.mtu,
                    rand::random(),
                    config.initial_rtptime.unwrap_or_else(rand::random),
                    (first.pts, first.timescale),
                ))
            })
            .collect();
        let mut p = Playout {
            tracks,
            playing: true,
            join: JoinFilter::new(master),
            scratch,
            frame_faults: SessionFaults::default(),
            shaper,
        };
        p.arm_frame_faults(
            SessionFaults::new(&session.faults, session.stream.geometry),
            first,
        );
        // RTP-Info announces the timestamp of the first frame sent, for every track.
        for t in &mut p.tracks {
            t.anchor(first.pts, first.timescale);
        }
        // A sender report goes before the first RTP packet: clients (ffmpeg) can place the
        // streams on one clock at once instead of guessing.
        if let Some(w) = first.wall {
            for t in &mut p.tracks {
                t.start_at(w);
            }
        }
        p
    }

    /// Per track: (track index, first sequence number, first RTP timestamp), for RTP-Info.
    pub fn rtp_info(&self) -> Vec<(usize, u16, u32)> {
        self.tracks
            .iter()
            .map(|t| (t.stream(), t.seq(), t.rtp_base()))
            .collect()
    }

    /// The tracks, in SETUP order.
    pub fn tracks(&self) -> &[TrackSender] {
        &self.tracks
    }

    /// Playing (not paused).
    pub fn playing(&self) -> bool {
        self.playing
    }

    /// PAUSE: nothing more is sent until the next PLAY.
    pub fn pause(&mut self) {
        self.playing = false;
        self.shaper.clear();
    }

    /// Whether every track is interleaved on the connection.
    pub fn all_tcp(&self) -> bool {
        self.tracks
            .iter()
            .all(|t| matches!(t.transport(), Transport::Tcp { .. }))
    }

    /// The client RTCP ports of the UDP tracks.
    pub fn udp_rtcp_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.tracks.iter().filter_map(|t| match t.transport() {
            Transport::Udp { rtcp, .. } => Some(rtcp),
            Transport::Tcp { .. } => None,
        })
    }

    /// How frames of `stream` travel, if that track is set up.
    pub fn transport_of(&self, stream: usize) -> Option<Transport> {
        self.tracks
            .iter()
            .find(|t| t.stream() == stream)
            .map(|t| t.transport())
    }

    /// The reader skipped ahead to a keyframe (it lagged): that keyframe is a join point.
    pub fn rejoin(&mut self) {
        self.join.rejoin();
    }

    /// Arms this session's frame and timestamp faults ([`SessionFaults`]) from `first`, the
    /// frame PLAY started at: `noidr` counts from it, the seam faults start at the next seam.
    /// [`Playout::start`] arms the session's own at every PLAY.
    pub fn arm_frame_faults(&mut self, mut faults: SessionFaults, first: &Frame) {
        faults.start(first);
        self.frame_faults = faults;
    }

    /// Appends the packets of `f` to `out`: none while paused, for a track not set up, for a
    /// frame a fault withholds, or for a leading picture of the keyframe this session joined
    /// at. A timestamp fault stamps it bent.
    pub fn frame(&mut self, f: &Frame, out: &mut impl Sink) {
        self.frame_at(f, Instant::now(), out);
    }

    /// [`Playout::frame`] at `now`, the I/O layer's clock: the faults of the session
    /// (its [`SessionFaults`], then `stall`, `bye_at_seam`, `drop` and `jitter`) apply.
    pub fn frame_at(&mut self, f: &Frame, now: Instant, out: &mut impl Sink) {
        if !self.playing || !self.frame_faults.keep(f, self.join.master()) || !self.join.keep(f) {
            return;
        }
        let bent = self.frame_faults.bend(f);
        self.faulted_frame(bent.as_ref().unwrap_or(f), now, out);
    }

    /// Appends a sender report of every track that has sent (or is about to send) media
    /// (none once a fault silenced the session).
    pub fn sender_reports(&self, out: &mut impl Sink) {
        if self.shaper.silent() {
            return;
        }
        for t in &self.tracks {
            t.sender_report(out);
        }
    }

    /// Appends every track's last sender report and BYE: the session ends. Nothing when
    /// `bye_at_seam` already sent them, or `stall` silenced the session.
    pub fn bye(&self, out: &mut impl Sink) {
        if self.shaper.silent() {
            return;
        }
        for t in &self.tracks {
            t.bye(out);
        }
    }

    /// The shaper of a new session's faults.
    fn new_shaper(session: &Session) -> Shaper {
        Shaper::new(&session.faults, session.stream.laps, rand::random())
    }

    /// Sends `f` through the session's faults: `stall` and `bye_at_seam` decide whether it
    /// goes at all, `drop` and `jitter` bend its UDP packets (held ones leave by
    /// [`Playout::release`]).
    fn faulted_frame(&mut self, f: &Frame, now: Instant, out: &mut impl Sink) {
        match self.shaper.admit(f) {
            Admit::Hold => return,
            Admit::ByeAtSeam => {
                for t in &self.tracks {
                    t.bye(out);
                }
                return;
            }
            Admit::Send => {}
        }
        let Some(t) = self.tracks.iter_mut().find(|t| t.stream() == f.stream) else {
            return;
        };
        if self.shaper.shapes() {
            let mut shaped = Shaped {
                shaper: &mut self.shaper,
                now,
                out,
            };
            t.frame(f, &mut self.scratch, &mut shaped);
        } else {
            t.frame(f, &mut self.scratch, out);
        }
    }

    /// When the next packet `jitter` holds is due (the I/O layer's timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.shaper.next_due()
    }

    /// Appends the held packets due by `now`.
    pub fn release(&mut self, now: Instant, out: &mut impl Sink) {
        self.shaper.release(now, out);
    }
}

#[cfg(test)]
mod tests {
    use nvrkit_media::{Demuxer, WallTime};
    use rtsp_types::HeaderName;

    use super::*;
    use crate::rtp::Route;
    use crate::rtsp::core::tests::{One, catalog, conn_with, req};
    use crate::rtsp::core::{Action, Connection};

    /// The sample's frames with wall times, from its first video keyframe on.
    fn frames() -> Vec<Frame> {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        d.frames()
            .map(Result::unwrap)
            .skip_while(|f| f.stream != 0 || !f.keyframe)
            .map(|mut f| {
                f.wall = Some(WallTime::from_micros(1_000_000).add_ticks(f.dts, f.timescale));
                f
            })
            .collect()
    }

    fn send(c: &mut Connection, cat: &One, text: &str) -> Action {
        c.handle(&req(text), cat).1
    }

    fn rtp_info(r: &rtsp_types::Response<Vec<u8>>) -> Vec<(u16, u32)> {
        let name = HeaderName::from_static_str("RTP-Info").unwrap();
        r.header(&name)
            .unwrap()
            .as_str()
            .split(',')
            .map(|t| {
                let field = |k: &str| t.split(';').find_map(|p| p.strip_prefix(k)).unwrap();
                (
                    field("seq=").parse().unwrap(),
                    field("rtptime=").parse().unwrap(),
                )
            })
            .collect()
    }

    /// A session that set up both tracks of the sample (video interleaved, audio over UDP,
    /// RTP time starting just below 2³²) and sent PLAY, and the sample's frames.
    fn set_up() -> (One, Connection, Vec<Frame>) {
        let cat = catalog();
        let rtp = RtpConfig {
            mtu: 1400,
            initial_rtptime: Some(u32::MAX - 100),
        };
        let mut c = conn_with(None, rtp);
        let setup = "SETUP rtsp://h/sample/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n";
        send(&mut c, &cat, setup);
        let setup = "SETUP rtsp://h/sample/trackID=1 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n";
        send(&mut c, &cat, setup);
        let play = "PLAY rtsp://h/sample/ RTSP/1.0\r\nCSeq: 3\r\n\r\n";
        assert_eq!(send(&mut c, &cat, play), Action::Play);
        (cat, c, frames())
    }

    #[test]
    fn play_announces_the_first_packet_and_reports_before_it() {
        let (_, mut c, frames) = set_up();
        let mut out = Vec::new();
        let r = c.play("3", &frames[0], 0, &mut out);
        let info = rtp_info(&r);
        assert_eq!(
            info.iter().map(|i| i.1).collect::<Vec<_>>(),
            [u32::MAX - 100; 2]
        );
        // One SR per track, before any RTP: interleaved for video, to the RTCP port for audio.
        assert_eq!(
            out.iter().map(|o| o.route).collect::<Vec<_>>(),
            [Route::Interleaved, Route::UdpRtcp(5001)]
        );
        assert_eq!(out[0].head[5], 200, "an SR");
        out.clear();
        c.frame(&frames[0], &mut out);
        let h = &out[0].head[4..];
        assert_eq!(
            u16::from_be_bytes([h[2], h[3]]),
            info[0].0,
            "RTP-Info's seq"
        );
        assert_eq!(u32::from_be_bytes([h[4], h[5], h[6], h[7]]), u32::MAX - 100);
    }

    #[test]
    fn play_after_pause_runs_sequence_and_clock_on() {
        let (cat, mut c, frames) = set_up();
        let mut out = Vec::new();
        let first = rtp_info(&c.play("3", &frames[0], 0, &mut out));
        out.clear();
        let video: Vec<&Frame> = frames.iter().filter(|f| f.stream == 0).collect();
        for f in &video[..10] {
            c.frame(f, &mut out);
        }
        let sent = out.len() as u16;
        assert_eq!(
            send(
                &mut c,
                &cat,
                "PAUSE rtsp://h/sample/ RTSP/1.0\r\nCSeq: 4\r\n\r\n"
            ),
            Action::Pause
        );
        out.clear();
        c.frame(video[10], &mut out);
        c.sender_reports(&mut out);
        assert!(out.is_empty(), "nothing while paused");
        // Resumed at the next keyframe: the next sequence number, RTP time advanced by the
        // media time.
        let again = video.iter().skip(1).find(|f| f.keyframe).unwrap();
        send(
            &mut c,
            &cat,
            "PLAY rtsp://h/sample/ RTSP/1.0\r\nCSeq: 5\r\n\r\n",
        );
        let resumed = rtp_info(&c.play("5", again, 0, &mut out));
        assert_eq!(resumed[0].0, first[0].0.wrapping_add(sent));
        let elapsed =
            nvrkit_media::time::rescale(again.pts - video[0].pts, again.timescale, 90_000) as u32;
        assert_eq!(resumed[0].1, first[0].1.wrapping_add(elapsed));
    }

    #[test]
    fn teardown_says_bye_once() {
        let (cat, mut c, frames) = set_up();
        let mut out = Vec::new();
        let _ = c.play("3", &frames[0], 0, &mut out);
        out.clear();
        assert_eq!(
            send(
                &mut c,
                &cat,
                "TEARDOWN rtsp://h/sample/ RTSP/1.0\r\nCSeq: 4\r\n\r\n"
            ),
            Action::Teardown
        );
        c.frame(&frames[1], &mut out);
        assert!(out.is_empty(), "nothing after TEARDOWN");
        c.bye(&mut out);
        assert_eq!(out.len(), 2, "a BYE per track");
        assert!(
            out.iter()
                .all(|o| o.head.windows(2).any(|w| w == [0x81, 203]))
        );
        out.clear();
        c.bye(&mut out);
        assert!(out.is_empty());
        assert!(c.playout().is_none());
    }

    /// A playout of the sample's video alone (interleaved), PLAY at the keyframe 4 s in, with
    /// `faults` armed; the loop's frames from there on, and the RTP-Info of the start.
    fn faulty_playout(q: &str) -> (Playout, Vec<Frame>, (usize, u16, u32)) {
        use crate::fault::frames::LoopGeometry;
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let clip = crate::Clip::load("sample", &d).unwrap();
        let info = crate::rtsp::core::StreamInfo {
            geometry: Some(LoopGeometry::of(&clip)),
            ..crate::rtsp::core::StreamInfo::new("sample", clip.tracks().to_vec())
        };
        let session = Session {
            id: "1".into(),
            stream: std::sync::Arc::new(info),
            faults: q.parse().unwrap(),
            url_query: None,
            created: Instant::now(),
            tracks: vec![super::super::core::TrackSetup {
                stream: 0,
                transport: Transport::Tcp { rtp: 0, rtcp: 1 },
                ssrc: 7,
            }],
            state: super::super::core::State::Playing,
        };
        let frames: Vec<Frame> = crate::LoopSource::new(clip.clone(), WallTime::EPOCH)
            .filter(|f| f.stream == 0)
            .skip(100)
            .take(750)
            .collect();
        let rtp = RtpConfig {
            mtu: 1400,
            initial_rtptime: Some(1000),
        };
        let p = Playout::start(&session, &frames[0], 0, &rtp, None);
        let info = p.rtp_info()[0];
        (p, frames, info)
    }

    /// Per frame sent: (RTP timestamp, whether the frame was a keyframe).
    fn sent(p: &mut Playout, frames: &[Frame]) -> Vec<(u32, bool)> {
        let mut stamps = Vec::new();
        for f in frames {
            let mut out = Vec::new();
            p.frame(f, &mut out);
            if let Some(o) = out.first() {
                let h = &o.head[4..];
                stamps.push((u32::from_be_bytes([h[4], h[5], h[6], h[7]]), f.keyframe));
            }
        }
        stamps
    }

    #[test]
    fn ts_reset_at_seam_restarts_rtp_time_at_rtp_infos_rtptime() {
        let (mut p, frames, (_, _, rtptime)) = faulty_playout("ts_reset_at_seam");
        let stamps = sent(&mut p, &frames);
        assert_eq!(stamps.len(), frames.len());
        assert_eq!(stamps[0].0, rtptime);
        // 30 s of a 10 s loop from 4 s in: seams at 10, 20 and 30 s, each back to the start.
        let resets: Vec<usize> = (1..stamps.len())
            .filter(|&i| stamps[i].0 < stamps[i - 1].0)
            .collect();
        assert_eq!(resets.len(), 3, "{resets:?}");
        for i in resets {
            assert_eq!(stamps[i].0, rtptime, "frame {i}");
            assert!(frames[i].keyframe, "the seam's first frame");
        }
    }

    #[test]
    fn dts_backwards_at_seam_stamps_the_seam_one_frame_before_the_last() {
        let (mut p, frames, _) = faulty_playout("dts_backwards_at_seam");
        let stamps = sent(&mut p, &frames);
        let steps: Vec<i64> = stamps
            .windows(2)
            .map(|w| i64::from(w[1].0.wrapping_sub(w[0].0) as i32))
            .collect();
        // 3,600 ticks of 90 kHz a frame; one step of −3,600 at each seam (10, 20, 30 s),
        // +10,800 half a loop on (15, 25 s).
        let back = steps.iter().filter(|&&s| s == -3600).count();
        let gap = steps.iter().filter(|&&s| s == 10_800).count();
        assert_eq!((back, gap), (3, 2), "{steps:?}");
        assert!(steps.iter().all(|&s| [3600, -3600, 10_800].contains(&s)));
    }

    #[test]
    fn noidr_sends_no_keyframe_for_its_window_after_play() {
        let (mut p, frames, (_, _, rtptime)) = faulty_playout("noidr=2500ms");
        let stamps = sent(&mut p, &frames);
        assert!(!stamps[0].1, "PLAY's own keyframe withheld");
        let first_key = stamps.iter().position(|s| s.1).unwrap();
        // Keyframes at +0, +1, +2 s withheld: the first sent is 3 s in, and the frames
        // between were sent.
        let at = stamps[first_key].0.wrapping_sub(rtptime);
        assert_eq!(at, 3 * 90_000);
        assert_eq!(stamps.len(), frames.len() - 3);
        assert!(
            stamps.iter().filter(|s| s.1).count() > 20,
            "keyframes later on"
        );
    }
}

//! What a session sends once PLAY starts it, sans-I/O: the per-track RTP sender state
//! ([`TrackSender`]), where RTP-Info says the stream starts, the join filter, sender reports and
//! BYE. Frames go in, packets come out as data ([`Outgoing`]), so the I/O layer only writes them
//! (and a later change can batch them across sessions).
//!
//! Every frame and every RTCP packet a session sends passes through [`Playout`]: a per-session
//! fault set (dropped keyframes, stalls, timestamp resets, BYE at the seam) belongs here, beside
//! the state it bends, so each fault is unit-testable without sockets.

use nvrkit_media::Frame;

use super::core::{Session, Transport};
use crate::join::JoinFilter;
use crate::rtp::sender::Scratch;
use crate::rtp::{Outgoing, TrackSender};

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
        let (mut before, scratch) = match previous {
            Some(p) => (p.tracks, p.scratch),
            None => Default::default(),
        };
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
        };
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

    /// Appends the packets of `f` to `out`: none while paused, for a track not set up, or for
    /// a leading picture of the keyframe this session joined at.
    pub fn frame(&mut self, f: &Frame, out: &mut Vec<Outgoing>) {
        if !self.playing || !self.join.keep(f) {
            return;
        }
        if let Some(t) = self.tracks.iter_mut().find(|t| t.stream() == f.stream) {
            t.frame(f, &mut self.scratch, out);
        }
    }

    /// Appends a sender report of every track that has sent (or is about to send) media.
    pub fn sender_reports(&self, out: &mut Vec<Outgoing>) {
        for t in &self.tracks {
            t.sender_report(out);
        }
    }

    /// Appends every track's last sender report and BYE: the session ends.
    pub fn bye(&self, out: &mut Vec<Outgoing>) {
        for t in &self.tracks {
            t.bye(out);
        }
    }
}

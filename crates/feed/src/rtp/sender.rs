//! One track's RTP sender state (RFC 3550), sans-I/O: its SSRC, sequence numbers, the RTP
//! clock anchored at PLAY, the counts sender reports carry, and the packets of a frame, composed
//! as data ([`Outgoing`]) for the I/O layer to write.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nvrkit_media::nal::{self, VideoCodec};
use nvrkit_media::time::rescale;
use nvrkit_media::{Frame, TrackInfo, WallTime};

use super::{Packetizer, Payload, RTP_HEADER_LEN, rtcp};
use crate::rtsp::core::Transport;
use crate::sdp;

/// The CNAME of every sender report's SDES.
pub const CNAME: &str = "loopcam@nvrkit";

/// Room for packet headers reserved at a time (a few frames' worth); the buffer is reclaimed
/// once the I/O layer drops a write's slices of it, so a steady stream allocates nothing.
/// Small, because it is per client: 500 clients hold 500 of them.
const HEADER_BUF: usize = 512;

/// Most header bytes one packet takes over TCP: 4 (interleave) + 12 (RTP) + 4 (the largest
/// payload-format header, AAC's AU header section).
const MAX_PACKET_HEADERS: usize = 20;

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the RTSP connection: [`Outgoing::head`] starts with the `$` interleave header
    /// (RFC 2326 §10.12).
    Interleaved,
    /// RTP over UDP, from the server's RTP port to this client port.
    UdpRtp(u16),
    /// RTCP over UDP, from the server's RTCP port to this client port.
    UdpRtcp(u16),
}

/// One packet, as data: `head` (composed for this client: interleave header, RTP header,
/// payload-format header; or a whole RTCP packet) then `body` (a slice of the frame, shared by
/// every client: never copied per client). A UDP datagram is `head` followed by `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where it goes.
    pub route: Route,
    /// The bytes composed per client.
    pub head: Bytes,
    /// The payload slice (empty for RTCP).
    pub body: Bytes,
}

/// Where a session's packets go, in order: a `Vec<Outgoing>` (to batch or inspect), or the I/O
/// layer's own write queue.
pub trait Sink {
    /// Takes the next packet.
    fn push(&mut self, packet: Outgoing);
}

impl Sink for Vec<Outgoing> {
    fn push(&mut self, packet: Outgoing) {
        Vec::push(self, packet);
    }
}

/// What a connection writes, in order: byte chunks (responses, packet heads, payload slices of
/// the ring's frames, never copied per client), as a [`Buf`] whose
/// [`chunks_vectored`](Buf::chunks_vectored) gives the I/O layer's vectored writes their slices
/// and whose [`advance`](Buf::advance) drops what a write took, splitting a chunk written in part.
#[derive(Debug, Default)]
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    len: usize,
}

impl Chunks {
    /// Appends a chunk (an empty one is left out).
    pub fn push_back(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.chunks.push_back(b);
        }
    }

    /// How many chunks are queued.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// The chunks, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |b| b.as_ref())
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut k = 0;
        for (s, c) in dst.iter_mut().zip(self.chunks.iter()) {
            *s = std::io::IoSlice::new(c);
            k += 1;
        }
        k
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while let Some(front) = self.chunks.front_mut() {
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

/// A [`Sink`] for a connection's writer: interleaved packets go straight into its [`Chunks`]
/// (head, then body), so no list of packets is kept per client; UDP ones are set aside to send
/// as datagrams.
#[derive(Debug)]
pub struct Queue<'a> {
    /// What the connection writes, in order.
    pub chunks: &'a mut Chunks,
    /// UDP packets, in order.
    pub udp: &'a mut Vec<Outgoing>,
}

impl Sink for Queue<'_> {
    fn push(&mut self, o: Outgoing) {
        if o.route != Route::Interleaved {
            return self.udp.push(o);
        }
        self.chunks.push_back(o.head);
        self.chunks.push_back(o.body);
    }
}

/// Buffers one session reuses for every frame, so composing a frame's packets allocates nothing
/// in the steady state.
#[derive(Debug, Default)]
pub struct Scratch {
    heads: BytesMut,
    payloads: Vec<Payload>,
    ends: Vec<usize>,
}

/// The sending state of one set-up track of a playing (or paused) session.
#[derive(Debug)]
pub struct TrackSender {
    stream: usize,
    transport: Transport,
    ssrc: u32,
    pt: u8,
    /// RTP clock rate.
    clock: u32,
    /// The track's own timescale (of its frames' PTS).
    timescale: u32,
    packetizer: Packetizer,
    seq: u16,
    ts_base: u32,
    /// The PTS (track ticks) that maps to `ts_base`.
    ref_pts: i64,
    packets: u32,
    octets: u32,
    /// Wall-clock and RTP time of the last frame sent: the NTP ↔ RTP pair of the next SR.
    last: Option<(WallTime, u32)>,
    /// Parameter sets to put in front of a keyframe that lacks them.
    params: Vec<Bytes>,
    codec: Option<VideoCodec>,
}

impl TrackSender {
    /// A sender for track `stream` (described by `track`) whose first packet has sequence
    /// number `seq` and RTP timestamp `ts_base`, for the frame presenting at `first_pts`
    /// (`first_timescale` ticks; any stream's).
    #[allow(clippy::too_many_arguments)] // reason: one argument per field a SETUP and PLAY fix
    pub fn new(
        stream: usize,
        transport: Transport,
        ssrc: u32,
        track: &TrackInfo,
        mtu: usize,
        seq: u16,
        ts_base: u32,
        (first_pts, first_timescale): (i64, u32),
    ) -> Self {
        TrackSender {
            stream,
            transport,
            ssrc,
            pt: sdp::payload_type(track),
            clock: sdp::clock_rate(track),
            timescale: track.timescale,
            packetizer: Packetizer::new(&track.params, mtu),
            seq,
            ts_base,
            ref_pts: rescale(first_pts, first_timescale, track.timescale),
            packets: 0,
            octets: 0,
            last: None,
            params: track
                .params
                .video()
                .map(|v| v.parameter_sets().cloned().collect())
                .unwrap_or_default(),
            codec: track.params.video_codec(),
        }
    }

    /// The track's index in the stream.
    pub fn stream(&self) -> usize {
        self.stream
    }

    /// How its packets travel.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Its SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number of the next packet.
    pub fn seq(&self) -> u16 {
        self.seq
    }

    /// The RTP timestamp of the frame the clock is anchored at (RTP-Info's `rtptime`).
    pub fn rtp_base(&self) -> u32 {
        self.ts_base
    }

    /// The RTP timestamp of a frame of this track.
    pub fn rtp_time(&self, f: &Frame) -> u32 {
        // Wrapping on purpose: RTP timestamps are modulo 2³² (RFC 3550 §5.1).
        self.ts_base
            .wrapping_add(rescale(f.pts - self.ref_pts, f.timescale, self.clock) as u32)
    }

    /// Re-anchors the clock at the frame presenting at `pts` (`timescale` ticks): its RTP
    /// timestamp (media time elapsed since the old anchor, so RTP time runs on across a PAUSE)
    /// becomes [`TrackSender::rtp_base`].
    pub fn anchor(&mut self, pts: i64, timescale: u32) {
        let at = rescale(pts, timescale, self.timescale);
        self.ts_base =
            self.ts_base
                .wrapping_add(rescale(at - self.ref_pts, self.timescale, self.clock) as u32);
        self.ref_pts = at;
    }

    /// The next sender report pairs `wall` with the anchor, unless a frame was sent already.
    pub fn start_at(&mut self, wall: WallTime) {
        self.last.get_or_insert((wall, self.ts_base));
    }

    /// Appends the packets of `f` (a frame of this track) to `out`, and counts them.
    pub fn frame(&mut self, f: &Frame, scratch: &mut Scratch, out: &mut impl Sink) {
        let Scratch {
            heads,
            payloads,
            ends,
        } = scratch;
        payloads.clear();
        let needs_params = f.keyframe
            && self.codec.is_some_and(|c| {
                !nal::length_prefixed(&f.data, 4)
                    .filter_map(|n| n.ok())
                    .any(|n| c.nal_type(n) == if c == VideoCodec::H264 { 7 } else { 33 })
            });
        let extra: &[Bytes] = if needs_params { &self.params } else { &[] };
        self.packetizer.packetize(f, extra, payloads);
        let ts = self.rtp_time(f);
        // Every packet's headers go into one buffer, frozen once and sliced per packet (no
        // allocation or reference-count promotion per packet).
        let need = MAX_PACKET_HEADERS * payloads.len();
        if heads.capacity() < need {
            // Reclaims the buffer the previous write used once its slices are gone.
            heads.reserve(HEADER_BUF.max(need));
        }
        ends.clear();
        for p in payloads.iter() {
            if let Transport::Tcp { rtp, .. } = self.transport {
                heads.put_u8(b'$');
                heads.put_u8(rtp);
                heads.put_u16((RTP_HEADER_LEN + p.len()) as u16);
            }
            p.write_header(heads, self.pt, self.seq, ts, self.ssrc);
            ends.push(heads.len());
            self.seq = self.seq.wrapping_add(1);
            self.packets = self.packets.wrapping_add(1);
            self.octets = self.octets.wrapping_add(p.len() as u32);
        }
        if let Some(&all) = ends.last() {
            let route = match self.transport {
                Transport::Tcp { .. } => Route::Interleaved,
                Transport::Udp { rtp, .. } => Route::UdpRtp(rtp),
            };
            let all = heads.split_to(all).freeze();
            let mut start = 0;
            for (p, &end) in payloads.iter().zip(ends.iter()) {
                out.push(Outgoing {
                    route,
                    head: all.slice(start..end),
                    body: p.body.clone(),
                });
                start = end;
            }
        }
        if let Some(w) = f.wall {
            self.last = Some((w, ts));
        }
    }

    /// Appends a sender report (with its SDES), once a frame was sent or the clock started.
    pub fn sender_report(&self, out: &mut impl Sink) {
        if self.last.is_some() {
            out.push(self.rtcp(|b| self.write_sr(b)));
        }
    }

    /// Appends the last sender report and a BYE (RFC 3550 §6.6), in one compound packet.
    pub fn bye(&self, out: &mut impl Sink) {
        out.push(self.rtcp(|b| {
            self.write_sr(b);
            rtcp::bye(b, self.ssrc);
        }));
    }

    fn write_sr(&self, b: &mut BytesMut) {
        if let Some((wall, rtp)) = self.last {
            let (packets, octets) = (self.packets, self.octets);
            rtcp::sender_report(b, self.ssrc, wall.to_ntp(), rtp, packets, octets, CNAME);
        }
    }

    /// An RTCP packet composed by `write`, with its interleave header over TCP.
    fn rtcp(&self, write: impl FnOnce(&mut BytesMut)) -> Outgoing {
        let mut b = BytesMut::with_capacity(68);
        let route = match self.transport {
            Transport::Tcp { rtcp, .. } => {
                b.put_slice(&[b'$', rtcp, 0, 0]);
                Route::Interleaved
            }
            Transport::Udp { rtcp, .. } => Route::UdpRtcp(rtcp),
        };
        write(&mut b);
        if route == Route::Interleaved {
            let n = (b.len() - 4) as u16;
            b[2..4].copy_from_slice(&n.to_be_bytes());
        }
        Outgoing {
            route,
            head: b.freeze(),
            body: Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;

    fn tracks() -> (Vec<TrackInfo>, Vec<Frame>) {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let frames = d.frames().take(40).map(Result::unwrap).collect();
        (d.tracks().to_vec(), frames)
    }

    fn video(frames: &[Frame]) -> Vec<&Frame> {
        frames.iter().filter(|f| f.stream == 0).collect()
    }

    fn rtp_fields(o: &Outgoing, skip: usize) -> (bool, u8, u16, u32, u32) {
        let h = &o.head[skip..];
        (
            h[1] & 0x80 != 0,
            h[1] & 0x7f,
            u16::from_be_bytes([h[2], h[3]]),
            u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        )
    }

    #[test]
    fn interleaved_packets_count_up_and_wrap() {
        let (tracks, frames) = tracks();
        let v = video(&frames);
        let tcp = Transport::Tcp { rtp: 4, rtcp: 5 };
        let first = (v[0].pts, v[0].timescale);
        let mut t = TrackSender::new(
            0,
            tcp,
            0xabcd,
            &tracks[0],
            1400,
            0xfffe,
            u32::MAX - 10,
            first,
        );
        let (mut scratch, mut out) = (Scratch::default(), Vec::new());
        t.frame(v[0], &mut scratch, &mut out);
        t.frame(v[1], &mut scratch, &mut out);
        assert!(out.len() > 3, "a keyframe takes several packets");
        let mut seq = 0xfffeu16;
        for o in &out {
            assert_eq!(o.route, Route::Interleaved);
            assert_eq!((o.head[0], o.head[1]), (b'$', 4));
            let len = u16::from_be_bytes([o.head[2], o.head[3]]) as usize;
            assert_eq!(len, o.head.len() - 4 + o.body.len());
            let (_, pt, s, _, ssrc) = rtp_fields(o, 4);
            assert_eq!((pt, s, ssrc), (96, seq, 0xabcd));
            seq = seq.wrapping_add(1);
        }
        assert_eq!(t.seq(), seq);
        // The first frame at the base, the next one a frame later (90 kHz), wrapping past 2³².
        let (marker, _, _, ts0, _) = rtp_fields(&out[0], 4);
        let (_, _, _, ts1, _) = rtp_fields(out.last().unwrap(), 4);
        assert!(!marker);
        assert_eq!(ts0, u32::MAX - 10);
        let step = rescale(v[1].pts - v[0].pts, v[0].timescale, 90_000) as u32;
        assert_eq!(ts1, (u32::MAX - 10).wrapping_add(step));
        // The payload bytes are the frame's, not copies (after the parameter sets the
        // keyframe lacked, from the track's parameters).
        let body = &out[out.len() - 1].body;
        let data = &v[1].data;
        let inside = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
        assert!(inside.contains(&(body.as_ptr() as usize)));
    }

    #[test]
    fn a_queue_takes_interleaved_bytes_and_sets_udp_aside() {
        let (mut chunks, mut udp) = (Chunks::default(), Vec::new());
        let mut q = Queue {
            chunks: &mut chunks,
            udp: &mut udp,
        };
        let packet = |route, head: &'static [u8], body: &'static [u8]| Outgoing {
            route,
            head: Bytes::from_static(head),
            body: Bytes::from_static(body),
        };
        q.push(packet(Route::Interleaved, b"$h", b"body"));
        q.push(packet(Route::UdpRtp(5000), b"h", b"b"));
        q.push(packet(Route::Interleaved, b"$rtcp", b""));
        assert_eq!(
            chunks.iter().collect::<Vec<_>>(),
            [&b"$h"[..], b"body", b"$rtcp"]
        );
        assert_eq!(udp.len(), 1);
        // A write that took 5 bytes: the first chunk, and part of the second.
        assert_eq!(chunks.remaining(), 11);
        let mut slices = [std::io::IoSlice::new(&[]); 2];
        assert_eq!(chunks.chunks_vectored(&mut slices), 2);
        chunks.advance(5);
        assert_eq!(chunks.chunk(), b"y");
        assert_eq!(chunks.remaining(), 6);
        chunks.advance(6);
        assert!(chunks.is_empty() && !chunks.has_remaining());
    }

    #[test]
    fn udp_packets_carry_no_interleave_header() {
        let (tracks, frames) = tracks();
        let v = video(&frames);
        let udp = Transport::Udp {
            rtp: 5000,
            rtcp: 5001,
        };
        let mut t = TrackSender::new(0, udp, 7, &tracks[0], 1400, 1, 1000, (0, 1));
        let (mut scratch, mut out) = (Scratch::default(), Vec::new());
        t.frame(v[1], &mut scratch, &mut out);
        assert!(out.iter().all(|o| o.route == Route::UdpRtp(5000)));
        assert_eq!(out[0].head[0], 0x80, "RTP version 2 first");
        let (marker, ..) = rtp_fields(out.last().unwrap(), 0);
        assert!(marker, "the last packet of the frame is marked");
    }

    #[test]
    fn anchoring_runs_rtp_time_on_with_media_time() {
        let (tracks, _) = tracks();
        let tcp = Transport::Tcp { rtp: 0, rtcp: 1 };
        // Audio at its sample rate: anchored at 1 s of 90 kHz time, re-anchored 2 s later.
        let mut t = TrackSender::new(1, tcp, 1, &tracks[1], 1400, 0, 100, (90_000, 90_000));
        assert_eq!(t.rtp_base(), 100);
        t.anchor(270_000, 90_000);
        let rate = sdp::clock_rate(&tracks[1]);
        assert_eq!(t.rtp_base(), 100 + 2 * rate);
    }

    #[test]
    fn sender_reports_and_bye_are_rtcp_compounds() {
        let (tracks, frames) = tracks();
        let v = video(&frames);
        let tcp = Transport::Tcp { rtp: 0, rtcp: 1 };
        let mut t = TrackSender::new(0, tcp, 9, &tracks[0], 1400, 0, 0, (0, 1));
        let mut out = Vec::new();
        t.sender_report(&mut out);
        assert!(out.is_empty(), "no SR before the clock starts");
        t.start_at(WallTime::from_micros(0));
        t.sender_report(&mut out);
        let sr = out.pop().unwrap();
        assert_eq!(
            (sr.route, sr.head[0], sr.head[1]),
            (Route::Interleaved, b'$', 1)
        );
        assert_eq!(
            u16::from_be_bytes([sr.head[2], sr.head[3]]) as usize,
            sr.head.len() - 4
        );
        assert_eq!(sr.head[5], 200);
        let mut f = v[0].clone();
        f.wall = Some(WallTime::from_micros(1_000_000));
        t.frame(&f, &mut Scratch::default(), &mut out);
        let sent = out.len() as u32;
        out.clear();
        t.bye(&mut out);
        let b = &out[0].head[4..];
        assert_eq!(b[1], 200);
        assert_eq!(
            u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
            sent,
            "packets"
        );
        assert_eq!(&b[b.len() - 8..b.len() - 4], [0x81, 203, 0, 1], "BYE last");
        let udp = Transport::Udp {
            rtp: 6000,
            rtcp: 6001,
        };
        let t = TrackSender::new(0, udp, 9, &tracks[0], 1400, 0, 0, (0, 1));
        out.clear();
        t.bye(&mut out);
        assert_eq!(out[0].route, Route::UdpRtcp(6001));
        assert_eq!(
            &out[0].head[..],
            [0x81, 203, 0, 1, 0, 0, 0, 9],
            "a BYE alone"
        );
    }
}

//! RTP packetization (RFC 3550) of H.264 (RFC 6184), H.265 (RFC 7798), AAC (RFC 3640,
//! `mpeg4-generic` AAC-hbr) and G.711 (RFC 3551 §4.5.14 PCMU/PCMA), and RTCP sender reports,
//! SDES and BYE.
//!
//! Packetizers are pure: a frame goes in, RTP payloads (zero-copy slices of the frame where the
//! format allows) come out with their marker bit; the caller adds the 12-byte header with its own
//! SSRC, sequence number and timestamp, so one payload split serves many clients.

use bytes::{BufMut, Bytes, BytesMut};

use nvrkit_media::nal::{self, VideoCodec};
use nvrkit_media::{CodecParams, Frame};

/// Size of the fixed RTP header (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// One RTP payload: up to two small header pieces (FU/AU headers) and a body slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Payload-format header bytes that precede `body` (FU indicator and header, AU header
    /// section); at most 4 bytes.
    pub head: [u8; 4],
    /// How many bytes of `head` are used.
    pub head_len: u8,
    /// The rest of the payload: a slice of the frame, not a copy.
    pub body: Bytes,
    /// RTP marker bit: the last packet of an access unit (video) or of an AU (AAC), the first
    /// packet after a gap (G.711).
    pub marker: bool,
    /// Added to the frame's RTP timestamp for this packet: the samples before it, when a G.711
    /// frame too large for one packet is split (0 otherwise).
    pub ts_offset: u32,
}

impl Payload {
    fn new(head: &[u8], body: Bytes, marker: bool) -> Self {
        let mut h = [0u8; 4];
        h[..head.len()].copy_from_slice(head);
        Payload {
            head: h,
            head_len: head.len() as u8,
            body,
            marker,
            ts_offset: 0,
        }
    }

    /// Total payload length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the payload after an RTP header built from the arguments.
    pub fn write_packet(&self, out: &mut BytesMut, pt: u8, seq: u16, timestamp: u32, ssrc: u32) {
        self.write_header(out, pt, seq, timestamp, ssrc);
        out.put_slice(&self.body);
    }

    /// Writes the RTP header and the payload-format header, not the body: a sender that can
    /// write the body from its own buffer (a vectored write of [`Payload::body`]) copies nothing.
    /// `timestamp` is the frame's; the header carries it plus [`Payload::ts_offset`].
    pub fn write_header(&self, out: &mut BytesMut, pt: u8, seq: u16, timestamp: u32, ssrc: u32) {
        out.put_u8(0x80); // V=2, no padding, no extension, no CSRC
        out.put_u8(if self.marker { 0x80 | pt } else { pt });
        out.put_u16(seq);
        out.put_u32(timestamp.wrapping_add(self.ts_offset));
        out.put_u32(ssrc);
        out.put_slice(&self.head[..usize::from(self.head_len)]);
    }
}

/// Splits frames of one stream into RTP payloads no larger than `max_payload` bytes.
#[derive(Debug, Clone)]
pub struct Packetizer {
    kind: Kind,
    max_payload: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Video(VideoCodec),
    Aac,
    /// G.711, with the bytes of one sample of every channel.
    G711 {
        bytes_per_sample: usize,
    },
    /// A codec with no RTP payload format here: nothing is sent.
    Unsupported,
}

impl Packetizer {
    /// A packetizer for a stream with these parameters, for packets of at most `mtu` bytes of
    /// RTP (header included).
    pub fn new(params: &CodecParams, mtu: usize) -> Self {
        let kind = match params {
            CodecParams::H264(_) => Kind::Video(VideoCodec::H264),
            CodecParams::H265(_) => Kind::Video(VideoCodec::H265),
            CodecParams::Aac(_) => Kind::Aac,
            CodecParams::G711(g) => Kind::G711 {
                bytes_per_sample: g.bytes_per_sample() as usize,
            },
            _ => Kind::Unsupported,
        };
        Packetizer {
            kind,
            // Never less than room for an FU header and one byte, whatever the caller asks.
            max_payload: mtu.saturating_sub(RTP_HEADER_LEN).max(16),
        }
    }

    /// The payloads of one frame, in order. `extra_nals` (parameter sets to put before a
    /// keyframe) are sent first as their own NAL units. A malformed video payload yields the
    /// NAL units before the fault.
    pub fn packetize(&self, frame: &Frame, extra_nals: &[Bytes], out: &mut Vec<Payload>) {
        match self.kind {
            Kind::Video(codec) => {
                // Per client and frame: no allocation (nothing is collected).
                let own = nal::length_prefixed(&frame.data, 4)
                    .map_while(Result::ok)
                    .filter(|n| !n.is_empty())
                    .map(|n| frame.data.slice_ref(n));
                let mut nals = extra_nals.iter().cloned().chain(own).peekable();
                while let Some(n) = nals.next() {
                    self.video_nal(codec, &n, nals.peek().is_none(), out);
                }
            }
            Kind::Aac => self.aac(&frame.data, out),
            Kind::G711 { bytes_per_sample } => {
                self.g711(&frame.data, bytes_per_sample, frame.discontinuity, out)
            }
            Kind::Unsupported => {}
        }
    }

    /// RFC 3551 §4.5.14: a G.711 payload is the samples, one byte each, channels interleaved
    /// (§4.1). A frame is sent whole (the demuxer's 20 ms: 160 bytes at 8 kHz mono); one larger
    /// than a packet (20 ms of 48 kHz stereo is 1,920 bytes) goes in equal runs of whole
    /// samples, each with its own timestamp. The marker bit starts a talkspurt (§4.1): set
    /// after a gap, never in continuous audio.
    fn g711(&self, data: &Bytes, bps: usize, after_gap: bool, out: &mut Vec<Payload>) {
        let samples = data.len() / bps;
        if samples == 0 {
            return;
        }
        let per_packet_max = (self.max_payload / bps).max(1);
        let packets = samples.div_ceil(per_packet_max);
        let per_packet = samples.div_ceil(packets);
        let mut at = 0;
        while at < samples {
            let n = per_packet.min(samples - at);
            let mut p = Payload::new(
                &[],
                data.slice(at * bps..(at + n) * bps),
                after_gap && at == 0,
            );
            p.ts_offset = at as u32;
            out.push(p);
            at += n;
        }
    }

    /// RFC 6184 §5.6 single NAL unit / §5.8 FU-A; RFC 7798 §4.4.1 / §4.4.3 FU.
    fn video_nal(&self, codec: VideoCodec, nal: &Bytes, last_of_au: bool, out: &mut Vec<Payload>) {
        if nal.len() <= self.max_payload {
            out.push(Payload::new(&[], nal.clone(), last_of_au));
            return;
        }
        // The FU indicator (or payload header) and FU header, in an array: no allocation.
        let (head, head_len, skip) = match codec {
            VideoCodec::H264 => {
                let indicator = (nal[0] & 0xe0) | 28;
                ([indicator, nal[0] & 0x1f, 0], 2, 1)
            }
            VideoCodec::H265 => {
                if nal.len() < 3 {
                    return;
                }
                let t = (nal[0] >> 1) & 0x3f;
                // PayloadHdr: F and LayerId/TID from the NAL header, type 49.
                ([(nal[0] & 0x81) | (49 << 1), nal[1], t], 3, 2)
            }
        };
        let fu_header_at = head_len - 1;
        let chunk = self.max_payload - head_len;
        let body = nal.slice(skip..);
        let mut pos = 0;
        while pos < body.len() {
            let end = (pos + chunk).min(body.len());
            let mut h = head;
            if pos == 0 {
                h[fu_header_at] |= 0x80; // S
            }
            if end == body.len() {
                h[fu_header_at] |= 0x40; // E
            }
            out.push(Payload::new(
                &h[..head_len],
                body.slice(pos..end),
                end == body.len() && last_of_au,
            ));
            pos = end;
        }
    }

    /// RFC 3640 §3.3.6 AAC-hbr: one AU per packet, a 16-bit AU header (13-bit size, 3-bit
    /// index); an AU larger than a packet is fragmented (§3.2.3), every fragment carrying the
    /// AU header with the whole AU's size.
    fn aac(&self, au: &Bytes, out: &mut Vec<Payload>) {
        // 13 bits of AU-size (RFC 3640 AAC-hbr): a larger AU cannot be described, so it is not
        // sent at all rather than sent with a wrong size (AAC frames are < 6144 bytes per
        // channel element; only a damaged file has one this large).
        if au.len() > 0x1fff {
            return;
        }
        let size = au.len() as u16;
        let header = [0x00, 0x10, (size >> 5) as u8, ((size & 0x1f) << 3) as u8];
        let chunk = self.max_payload - header.len();
        if au.is_empty() {
            return;
        }
        let mut pos = 0;
        while pos < au.len() {
            let end = (pos + chunk).min(au.len());
            out.push(Payload::new(&header, au.slice(pos..end), end == au.len()));
            pos = end;
        }
    }
}

pub mod rtcp;
pub mod sender;

pub use sender::{Outgoing, Route, Sink, TrackSender};

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: Bytes) -> Frame {
        Frame {
            stream: 0,
            timescale: 90_000,
            dts: 0,
            pts: 0,
            duration: 3000,
            wall: None,
            keyframe: true,
            discard: false,
            discontinuity: false,
            data,
        }
    }

    fn h264() -> CodecParams {
        CodecParams::H264(nvrkit_media::VideoParams {
            width: 16,
            height: 16,
            profile: 66,
            level: 30,
            vps: vec![],
            sps: vec![],
            pps: vec![],
        })
    }

    /// Reassembles FU-A payloads the way a receiver does (RFC 6184 §5.8).
    fn depacketize_h264(payloads: &[Payload]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut cur: Vec<u8> = Vec::new();
        for p in payloads {
            let mut bytes = p.head[..p.head_len as usize].to_vec();
            bytes.extend_from_slice(&p.body);
            if bytes[0] & 0x1f == 28 {
                let fu = bytes[1];
                if fu & 0x80 != 0 {
                    cur = vec![(bytes[0] & 0xe0) | (fu & 0x1f)];
                }
                cur.extend_from_slice(&bytes[2..]);
                if fu & 0x40 != 0 {
                    nals.push(std::mem::take(&mut cur));
                }
            } else {
                nals.push(bytes);
            }
        }
        nals
    }

    #[test]
    fn h264_small_nals_go_whole_large_ones_in_fu_a() {
        let big: Vec<u8> = std::iter::once(0x65)
            .chain((0..3000).map(|i| i as u8))
            .collect();
        let small = vec![0x41u8, 1, 2, 3];
        let data = nal::join([&small[..], &big[..]]);
        let sps = Bytes::from_static(&[0x67, 0x42, 0, 30]);
        let p = Packetizer::new(&h264(), 1400);
        let mut out = Vec::new();
        p.packetize(&frame(data), std::slice::from_ref(&sps), &mut out);
        assert!(out.iter().all(|x| x.len() <= 1400 - RTP_HEADER_LEN));
        assert_eq!(out.iter().filter(|x| x.marker).count(), 1);
        assert!(
            out.last().unwrap().marker,
            "marker on the last packet of the AU"
        );
        // FU indicator keeps NRI, type 28; FU header S on the first fragment.
        assert_eq!(out[2].head[..2], [0x60 | 28, 0x80 | 5]);
        let nals = depacketize_h264(&out);
        assert_eq!(nals, vec![sps.to_vec(), small, big]);
    }

    #[test]
    fn h265_fu_headers_follow_rfc_7798() {
        // IDR_W_RADL (19): header 0x26 0x01.
        let big: Vec<u8> = [0x26, 0x01]
            .into_iter()
            .chain((0..2000).map(|i| i as u8))
            .collect();
        let params = CodecParams::H265(nvrkit_media::VideoParams {
            width: 16,
            height: 16,
            profile: 1,
            level: 93,
            vps: vec![],
            sps: vec![],
            pps: vec![],
        });
        let mut out = Vec::new();
        Packetizer::new(&params, 1000).packetize(&frame(nal::join([&big[..]])), &[], &mut out);
        assert!(out.len() >= 3);
        assert_eq!(out[0].head[..3], [49 << 1, 0x01, 0x80 | 19]);
        assert_eq!(out.last().unwrap().head[2], 0x40 | 19);
        let body: Vec<u8> = out.iter().flat_map(|p| p.body.to_vec()).collect();
        assert_eq!(body, big[2..]);
    }

    #[test]
    fn aac_hbr_au_header() {
        let params = CodecParams::Aac(
            nvrkit_media::AacParams::parse(Bytes::from_static(&[0x11, 0x90])).unwrap(),
        );
        let au = Bytes::from(vec![7u8; 300]);
        let mut out = Vec::new();
        Packetizer::new(&params, 1400).packetize(&frame(au), &[], &mut out);
        assert_eq!(out.len(), 1);
        // AU-headers-length = 16 bits; AU-size 300 << 3, index 0.
        assert_eq!(
            out[0].head,
            [0x00, 0x10, (300 >> 5) as u8, ((300 & 0x1f) << 3) as u8]
        );
        assert!(out[0].marker);
        out.clear();
        Packetizer::new(&params, 1400).packetize(
            &frame(Bytes::from(vec![0u8; 9000])),
            &[],
            &mut out,
        );
        assert!(
            out.is_empty(),
            "an AU too large for 13 bits is not sent with a wrong size"
        );
    }

    fn g711(rate: u32, channels: u8) -> CodecParams {
        CodecParams::G711(nvrkit_media::G711Params {
            law: nvrkit_media::G711Law::Mulaw,
            sample_rate: rate,
            channels,
        })
    }

    #[test]
    fn g711_frames_go_whole_or_in_equal_runs_of_samples() {
        // 20 ms at 8 kHz mono: one packet of 160 bytes, no marker, timestamp unchanged.
        let mut out = Vec::new();
        let twenty_ms = Bytes::from((0..160u8).collect::<Vec<_>>());
        Packetizer::new(&g711(8000, 1), 1400).packetize(&frame(twenty_ms.clone()), &[], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].head_len, out[0].marker, out[0].ts_offset),
            (0, false, 0)
        );
        assert_eq!(out[0].body, twenty_ms);
        // After a gap the first packet starts a talkspurt.
        out.clear();
        let mut f = frame(twenty_ms);
        f.discontinuity = true;
        Packetizer::new(&g711(8000, 1), 1400).packetize(&f, &[], &mut out);
        assert!(out[0].marker);
        // 20 ms of 48 kHz stereo (1,920 bytes) in two 10 ms packets of whole samples.
        out.clear();
        let big = Bytes::from((0..1920u32).map(|i| i as u8).collect::<Vec<_>>());
        Packetizer::new(&g711(48_000, 2), 1400).packetize(&frame(big.clone()), &[], &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out.iter()
                .map(|p| (p.body.len(), p.ts_offset))
                .collect::<Vec<_>>(),
            [(960, 0), (960, 480)]
        );
        let joined: Vec<u8> = out.iter().flat_map(|p| p.body.to_vec()).collect();
        assert_eq!(joined, big.to_vec());
        let mut b = BytesMut::new();
        out[1].write_packet(&mut b, 97, 1, 1000, 7);
        assert_eq!(
            b[4..8],
            1480u32.to_be_bytes(),
            "the second packet's timestamp"
        );
        // A stray byte that is not a whole stereo sample is not sent.
        out.clear();
        Packetizer::new(&g711(8000, 2), 1400).packetize(
            &frame(Bytes::from_static(&[1, 2, 3])),
            &[],
            &mut out,
        );
        assert_eq!(out[0].body.len(), 2);
    }

    #[test]
    fn rtp_header_layout() {
        let p = Payload::new(&[], Bytes::from_static(b"xy"), true);
        let mut b = BytesMut::new();
        p.write_packet(&mut b, 96, 0xfffe, 0xffff_ff00, 0x1234_5678);
        assert_eq!(
            &b[..],
            [
                0x80,
                0x80 | 96,
                0xff,
                0xfe,
                0xff,
                0xff,
                0xff,
                0x00,
                0x12,
                0x34,
                0x56,
                0x78,
                b'x',
                b'y'
            ]
        );
    }

    #[test]
    fn rtcp_compound_is_word_aligned() {
        let mut b = BytesMut::new();
        rtcp::sender_report(&mut b, 1, 2, 3, 4, 5, "loopcam@example");
        assert_eq!(b.len() % 4, 0);
        assert_eq!(b[1], 200);
        let sdes_len = (u16::from_be_bytes([b[30], b[31]]) as usize + 1) * 4;
        assert_eq!(28 + sdes_len, b.len());
        assert!(rtcp::is_receiver_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 1]));
        assert!(!rtcp::is_receiver_rtcp(&b));
    }
}

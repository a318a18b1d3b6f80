//! The load client's per-packet bookkeeping, sans-I/O: RTP header fields, sequence continuity,
//! keyframe detection and delivery lateness. Nothing here allocates per packet.

/// The RTP header fields the load client reads (RFC 3550 §5.1); the payload is not depacketized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit: on video, the last packet of a frame.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Where the payload starts in the packet (after CSRCs and the header extension).
    pub payload_start: usize,
}

impl RtpHeader {
    /// Reads the header of `packet`; `None` when it is not RTP version 2 or is too short for
    /// its own CSRC list and extension.
    pub fn parse(packet: &[u8]) -> Option<RtpHeader> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return None;
        }
        let csrcs = usize::from(packet[0] & 0x0f);
        let mut start = 12 + 4 * csrcs;
        if packet[0] & 0x10 != 0 {
            let ext = packet.get(start + 2..start + 4)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        if start > packet.len() {
            return None;
        }
        Some(RtpHeader {
            marker: packet[1] & 0x80 != 0,
            payload_type: packet[1] & 0x7f,
            seq: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            payload_start: start,
        })
    }
}

/// How many sequence numbers behind the highest one a late packet is still told apart as a
/// reorder (it fills a gap) or a duplicate (it was already seen).
pub const REORDER_WINDOW: u64 = 128;

/// A jump of more than this many sequence numbers ahead (or behind, beyond the window) is taken
/// as the sender restarting its numbering: counted in [`SeqCounter::resyncs`], not as loss.
pub const MAX_JUMP: u64 = 3000;

/// Sequence continuity of one RTP stream (one SSRC), with the 16-bit wrap extended.
#[derive(Debug, Clone, Default)]
pub struct SeqCounter {
    /// Extended highest sequence number seen (`None` before the first packet).
    highest: Option<u64>,
    /// Bit `i` set: `highest - i` was received (bit 0 is `highest` itself).
    window: u128,
    /// SSRC of the stream (a change counts as a resync).
    ssrc: u32,
    /// Packets received (duplicates included).
    pub received: u64,
    /// Sequence numbers skipped and not (yet) filled by a late packet.
    pub lost: u64,
    /// Packets that arrived after a later one and filled a gap.
    pub reordered: u64,
    /// Packets whose sequence number was already seen.
    pub duplicates: u64,
    /// Packets too far behind the highest one to tell (older than [`REORDER_WINDOW`]).
    pub too_late: u64,
    /// Restarts of the numbering (SSRC change or a jump past [`MAX_JUMP`]).
    pub resyncs: u64,
}

impl SeqCounter {
    /// Counts one packet.
    pub fn push(&mut self, seq: u16, ssrc: u32) {
        self.received += 1;
        let Some(highest) = self.highest else {
            return self.restart(seq, ssrc);
        };
        if ssrc != self.ssrc {
            self.resyncs += 1;
            return self.restart(seq, ssrc);
        }
        // Signed distance from the highest, modulo 2¹⁶.
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        if delta > 0 {
            let delta = delta as u64;
            if delta > MAX_JUMP {
                self.resyncs += 1;
                return self.restart(seq, ssrc);
            }
            self.lost += delta - 1;
            self.window = if delta >= 128 {
                0
            } else {
                self.window << delta
            };
            self.window |= 1;
            self.highest = Some(highest + delta);
        } else {
            let back = delta.unsigned_abs();
            if back >= REORDER_WINDOW {
                if back > MAX_JUMP {
                    self.resyncs += 1;
                    return self.restart(seq, ssrc);
                }
                self.too_late += 1;
            } else if self.window & (1 << back) != 0 {
                self.duplicates += 1;
            } else {
                self.window |= 1 << back;
                self.reordered += 1;
                self.lost -= 1;
            }
        }
    }

    fn restart(&mut self, seq: u16, ssrc: u32) {
        // Start in the middle of the u64 range: a wrap either way stays positive.
        self.highest = Some((1 << 32) + u64::from(seq));
        self.window = 1;
        self.ssrc = ssrc;
    }
}

/// The video codecs whose keyframes the client recognizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (RFC 6184).
    H264,
    /// H.265 (RFC 7798, without DONL fields: `sprop-max-don-diff` 0).
    H265,
    /// Anything else: no keyframe detection.
    Other,
}

impl VideoCodec {
    /// From an SDP `a=rtpmap` encoding name.
    pub fn from_encoding(name: &str) -> VideoCodec {
        if name.eq_ignore_ascii_case("H264") {
            VideoCodec::H264
        } else if name.eq_ignore_ascii_case("H265") || name.eq_ignore_ascii_case("HEVC") {
            VideoCodec::H265
        } else {
            VideoCodec::Other
        }
    }

    /// Whether this RTP payload starts a keyframe: an H.264 IDR slice (NAL type 5) or an H.265
    /// IRAP picture (types 16-23), alone, inside an aggregation packet (STAP-A / AP), or as the
    /// first fragment (FU-A / FU with the start bit). Parameter sets alone are not a keyframe.
    pub fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            VideoCodec::H264 => h264_key(payload),
            VideoCodec::H265 => h265_key(payload),
            VideoCodec::Other => false,
        }
    }
}

fn h264_key(p: &[u8]) -> bool {
    const IDR: u8 = 5;
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        IDR => true,
        // STAP-A: (16-bit size, NAL) repeated.
        24 => aggregated(&p[1..], |nal| nal[0] & 0x1f == IDR),
        // FU-A: indicator, then the FU header (S, E, R, type).
        28 => p.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1f == IDR),
        _ => false,
    }
}

fn h265_key(p: &[u8]) -> bool {
    let irap = |t: u8| (16..=23).contains(&t);
    if p.len() < 2 {
        return false;
    }
    match (p[0] >> 1) & 0x3f {
        // AP: after the 2-byte payload header, (16-bit size, NAL) repeated.
        48 => aggregated(&p[2..], |nal| nal.len() >= 2 && irap((nal[0] >> 1) & 0x3f)),
        // FU: the 2-byte payload header, then the FU header (S, E, type).
        49 => p.get(2).is_some_and(|h| h & 0x80 != 0 && irap(h & 0x3f)),
        t => irap(t),
    }
}

/// Whether any NAL unit of an aggregation payload (16-bit size, NAL unit; repeated) satisfies
/// `key`; stops at a truncated entry.
fn aggregated(mut p: &[u8], key: impl Fn(&[u8]) -> bool) -> bool {
    while p.len() >= 2 {
        let size = usize::from(u16::from_be_bytes([p[0], p[1]]));
        let Some(nal) = p.get(2..2 + size) else {
            return false;
        };
        if !nal.is_empty() && key(nal) {
            return true;
        }
        p = &p[2 + size..];
    }
    false
}

/// Extends a 32-bit RTP timestamp across wraps, relative to the previous one (a step of less
/// than 2³¹ either way).
#[derive(Debug, Clone, Copy, Default)]
pub struct TimestampUnwrapper {
    last: Option<i64>,
}

impl TimestampUnwrapper {
    /// The extended value of `ts` (the first one maps to itself).
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(ts),
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
        };
        self.last = Some(ext);
        ext
    }
}

/// Frames held to put RTP times (presentation order) back into sending order; more than the
/// deepest B-frame reordering of real encoders (x264's B-pyramid reorders up to 4 frames).
pub const REORDER_FRAMES: usize = 8;

/// Delivery lateness of frames against their RTP timeline.
///
/// A server sends frames in decode order at their decode times, but RTP carries presentation
/// times: with B-frames the `k`-th frame sent is due at the `k`-th smallest RTP time, not at
/// its own. So arrivals are paired, in order, with the RTP times sorted over a window of
/// [`REORDER_FRAMES`] frames (reported that many frames late; the last ones of a run are not).
/// The timeline is anchored at the first frame: the `k`-th frame is due at
/// `a_0 + (m_k - m_0)`, `m` being RTP time over the clock rate with the 32-bit wrap extended,
/// and its lateness is its arrival minus that. A frame that comes before it is due (a server's
/// catch-up burst of the current GOP, or a clock running fast) moves the anchor to itself:
/// lateness is never negative, and after a burst it is measured against the earliest delivery
/// seen, which is what a player with no jitter buffer would wait for. Frames in the first
/// `settle` after the first one are neither measured nor anchor the timeline: what a server sends
/// at PLAY (a GOP burst, a pre-roll queue) says nothing about its steady pace.
#[derive(Debug, Clone, Copy)]
pub struct Lateness {
    clock_rate: u32,
    settle_us: i64,
    first_arrival: Option<i64>,
    unwrap: TimestampUnwrapper,
    /// min over frames of (arrival µs − media µs).
    offset_us: Option<i64>,
    /// Extended RTP time of the first frame (so that the values stay small).
    media0: Option<i64>,
    /// RTP times of the frames held (unordered), and their arrivals in arrival order (a ring).
    held_ts: [i64; REORDER_FRAMES],
    held_arrival: [i64; REORDER_FRAMES],
    held: usize,
    oldest: usize,
}

impl Lateness {
    /// A timeline with this RTP clock rate (Hz, non-zero), measured from `settle` after the
    /// first frame.
    pub fn new(clock_rate: u32, settle: std::time::Duration) -> Lateness {
        Lateness {
            clock_rate: clock_rate.max(1),
            settle_us: settle.as_micros() as i64,
            first_arrival: None,
            unwrap: TimestampUnwrapper::default(),
            offset_us: None,
            media0: None,
            held_ts: [0; REORDER_FRAMES],
            held_arrival: [0; REORDER_FRAMES],
            held: 0,
            oldest: 0,
        }
    }

    /// Takes a frame with RTP time `ts` that arrived at `arrival_us` (any monotonic clock in
    /// µs); returns the lateness, µs, of the frame sent [`REORDER_FRAMES`] − 1 frames before
    /// it, once that many are held.
    pub fn frame(&mut self, ts: u32, arrival_us: i64) -> Option<u64> {
        let ext = self.unwrap.unwrap(ts);
        let slot = (self.oldest + self.held) % REORDER_FRAMES;
        self.held_arrival[slot] = arrival_us;
        self.held_ts[self.held] = ext;
        self.held += 1;
        if self.held < REORDER_FRAMES {
            return None;
        }
        // The smallest RTP time held is the due time of the oldest arrival held.
        let (i, &due) = self
            .held_ts
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .expect("the window is full");
        self.held_ts[i] = self.held_ts[REORDER_FRAMES - 1];
        let arrival = self.held_arrival[self.oldest];
        self.oldest = (self.oldest + 1) % REORDER_FRAMES;
        self.held -= 1;
        let first = *self.first_arrival.get_or_insert(arrival);
        if arrival - first < self.settle_us {
            return None;
        }
        Some(self.due(due, arrival))
    }

    fn due(&mut self, ext: i64, arrival_us: i64) -> u64 {
        let media0 = *self.media0.get_or_insert(ext);
        let media_us = (ext - media0) * 1_000_000 / i64::from(self.clock_rate);
        let offset = arrival_us - media_us;
        match self.offset_us {
            Some(o) if offset > o => (offset - o) as u64,
            _ => {
                self.offset_us = Some(offset);
                0
            }
        }
    }
}

/// Lateness histogram: 100 µs buckets up to 10 s, then one overflow bucket (with the largest
/// value kept exactly).
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

const BUCKET_US: u64 = 100;
const BUCKETS: usize = 100_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS + 1],
            count: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, us: u64) {
        let i = ((us / BUCKET_US) as usize).min(BUCKETS);
        self.buckets[i] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value, µs.
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The `q` quantile (0..=1), µs: the upper edge of its bucket (never above the maximum);
    /// 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                if i == BUCKETS {
                    return self.max_us;
                }
                return ((i as u64 + 1) * BUCKET_US).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// min, median, p99 and max of some values (nearest rank), for the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (sorted in place); `None` when empty.
    pub fn of(values: &mut [f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            values[rank - 1]
        };
        Some(Spread {
            min: values[0],
            median: at(0.5),
            p99: at(0.99),
            max: values[values.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(seqs: &[u16]) -> SeqCounter {
        let mut c = SeqCounter::default();
        for &s in seqs {
            c.push(s, 7);
        }
        c
    }

    #[test]
    fn continuous_across_the_wrap_loses_nothing() {
        let seqs: Vec<u16> = (0..200u32).map(|i| (65_500 + i) as u16).collect();
        let c = counter(&seqs);
        assert_eq!(
            (c.received, c.lost, c.reordered, c.duplicates),
            (200, 0, 0, 0)
        );
        assert_eq!(c.resyncs, 0);
    }

    #[test]
    fn a_gap_at_the_wrap_is_counted() {
        // 65534, 65535, (0, 1 lost), 2
        let c = counter(&[65_534, 65_535, 2]);
        assert_eq!(c.lost, 2);
        let c = counter(&[65_535, 0, 1]);
        assert_eq!(c.lost, 0);
    }

    #[test]
    fn reorder_fills_the_gap_and_duplicates_are_told_apart() {
        let c = counter(&[10, 12, 11, 13]);
        assert_eq!((c.lost, c.reordered, c.duplicates), (0, 1, 0));
        let c = counter(&[10, 11, 11, 12, 10]);
        assert_eq!((c.lost, c.reordered, c.duplicates), (0, 0, 2));
        // A reorder across the wrap.
        let c = counter(&[65_534, 0, 65_535, 1]);
        assert_eq!((c.lost, c.reordered, c.duplicates), (0, 1, 0));
        // A gap never filled stays lost; a filled one is not double-counted by its duplicate.
        let c = counter(&[1, 5, 3, 3, 6]);
        assert_eq!((c.lost, c.reordered, c.duplicates), (2, 1, 1));
    }

    #[test]
    fn old_packets_and_restarts() {
        let mut seqs: Vec<u16> = (0..300).collect();
        seqs.push(20);
        let c = counter(&seqs);
        assert_eq!((c.lost, c.too_late, c.resyncs), (0, 1, 0));
        let c = counter(&[100, 101, 40_000, 40_001]);
        assert_eq!((c.lost, c.resyncs), (0, 1));
        let mut c = counter(&[100, 101]);
        c.push(500, 8);
        c.push(501, 8);
        assert_eq!((c.lost, c.resyncs, c.received), (0, 1, 4));
    }

    #[test]
    fn rtp_header_fields() {
        let mut p = vec![
            0x80, 0xe0, 0xff, 0xfe, 0, 1, 0, 2, 0xde, 0xad, 0xbe, 0xef, 0x65,
        ];
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(
            h,
            RtpHeader {
                marker: true,
                payload_type: 96,
                seq: 65_534,
                timestamp: 65_538,
                ssrc: 0xdead_beef,
                payload_start: 12,
            }
        );
        // One CSRC and a one-word extension.
        p[0] = 0x91;
        p.truncate(12);
        p.extend_from_slice(&[0, 0, 0, 1, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 0x65]);
        assert_eq!(RtpHeader::parse(&p).unwrap().payload_start, 24);
        assert_eq!(RtpHeader::parse(&p[..20]), None);
        assert_eq!(RtpHeader::parse(&[0x40; 12]), None);
    }

    #[test]
    fn h264_keyframes() {
        let k = |p: &[u8]| VideoCodec::H264.starts_keyframe(p);
        assert!(k(&[0x65, 0x88]));
        assert!(!k(&[0x41, 0x9a]));
        assert!(!k(&[0x67, 0x42]), "an SPS alone is not a keyframe");
        // STAP-A with SPS, PPS, IDR.
        assert!(k(&[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68, 0, 2, 0x65, 0x88]));
        assert!(!k(&[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]));
        // A truncated STAP-A entry.
        assert!(!k(&[0x78, 0, 2, 0x67, 0x42, 0, 9, 0x65]));
        // FU-A start of an IDR; its continuation; the start of a non-IDR slice.
        assert!(k(&[0x7c, 0x85, 0x88]));
        assert!(!k(&[0x7c, 0x05, 0x88]));
        assert!(!k(&[0x7c, 0x81, 0x9a]));
        assert!(!k(&[]));
    }

    #[test]
    fn h265_keyframes() {
        let k = |p: &[u8]| VideoCodec::H265.starts_keyframe(p);
        // IDR_W_RADL (19), CRA (21), TRAIL_R (1), VPS (32).
        assert!(k(&[19 << 1, 1, 0xaf]));
        assert!(k(&[21 << 1, 1, 0xaf]));
        assert!(!k(&[1 << 1, 1, 0xaf]));
        assert!(!k(&[32 << 1, 1, 0x0c]));
        // AP: VPS, then an IDR_N_LP (20).
        assert!(k(&[48 << 1, 1, 0, 2, 32 << 1, 1, 0, 3, 20 << 1, 1, 0xaf]));
        assert!(!k(&[48 << 1, 1, 0, 2, 32 << 1, 1, 0, 3, 1 << 1, 1, 0xaf]));
        // FU start of an IDR_W_RADL, its continuation, the start of a TRAIL_R.
        assert!(k(&[49 << 1, 1, 0x80 | 19, 0xaf]));
        assert!(!k(&[49 << 1, 1, 19, 0xaf]));
        assert!(!k(&[49 << 1, 1, 0x81, 0xaf]));
        assert!(!VideoCodec::Other.starts_keyframe(&[0x65]));
    }

    /// Feeds frames (RTP time, arrival µs) and returns the lateness of each one reported.
    fn late(clock: u32, frames: &[(u32, i64)]) -> Vec<u64> {
        let mut l = Lateness::new(clock, std::time::Duration::ZERO);
        frames.iter().filter_map(|&(t, a)| l.frame(t, a)).collect()
    }

    #[test]
    fn lateness_against_the_timeline_across_the_32_bit_wrap() {
        // 25 fps at 90 kHz, starting 2 frames before the wrap, one frame every 40 ms.
        let ts = |i: u32| (u32::MAX - 7_199).wrapping_add(i * 3_600);
        let mut frames: Vec<(u32, i64)> = (0..20)
            .map(|i| (ts(i), 1_000_000 + i64::from(i) * 40_000))
            .collect();
        // Frame 2 (past the wrap) comes 5 ms late; frame 4 three seconds late (a wrong wrap
        // would give about ±13 h).
        frames[2].1 += 5_000;
        frames[4].1 += 3_000_000;
        let l = late(90_000, &frames);
        assert_eq!(l.len(), 20 - (REORDER_FRAMES - 1));
        let mut want = vec![0; l.len()];
        want[2] = 5_000;
        want[4] = 3_000_000;
        assert_eq!(l, want);
    }

    #[test]
    fn b_frames_sent_on_time_are_not_late() {
        // I0 P3 B1 B2 P6 B4 B5 P9 B7 B8 …: decode order, sent one frame every 40 ms.
        let order = [
            0u32, 3, 1, 2, 6, 4, 5, 9, 7, 8, 12, 10, 11, 15, 13, 14, 18, 16, 17,
        ];
        let mut frames: Vec<(u32, i64)> = order
            .iter()
            .enumerate()
            .map(|(k, &p)| (p * 3_600, k as i64 * 40_000))
            .collect();
        assert!(late(90_000, &frames).iter().all(|&l| l == 0));
        // The B-frame sent 10th comes 15 ms late: exactly that shows.
        frames[9].1 += 15_000;
        let l = late(90_000, &frames);
        assert_eq!(l[9], 15_000);
        assert_eq!(l.iter().filter(|&&l| l != 0).count(), 1, "{l:?}");
    }

    #[test]
    fn frames_of_the_settle_time_are_not_measured() {
        // 25 fps; the first 10 frames come in a burst 200 ms ahead of the pace that follows.
        let frames: Vec<(u32, i64)> = (0..40)
            .map(|i: u32| {
                (
                    i * 40,
                    i64::from(i) * 40_000 + if i < 10 { 0 } else { 200_000 },
                )
            })
            .collect();
        let mut l = Lateness::new(1_000, std::time::Duration::from_secs(1));
        let got: Vec<u64> = frames.iter().filter_map(|&(t, a)| l.frame(t, a)).collect();
        // Sent frames 0..33 are reported; those arriving within 1 s of the first are not.
        assert_eq!(got.len(), 33 - 20);
        assert!(got.iter().all(|&l| l == 0), "{got:?}");
        // Without the settle time, the burst's frames anchor the timeline 200 ms early.
        let mut l = Lateness::new(1_000, std::time::Duration::ZERO);
        let got: Vec<u64> = frames.iter().filter_map(|&(t, a)| l.frame(t, a)).collect();
        assert_eq!(got[20], 200_000);
    }

    #[test]
    fn an_early_burst_moves_the_anchor() {
        // A GOP burst: media 0..900 ms all at t = 0..9 ms, then live frames on time.
        let mut frames: Vec<(u32, i64)> =
            (0..10).map(|i| (i * 100, i64::from(i) * 1_000)).collect();
        // Frame 10 (media 1000 ms) is due at 1000 - 900 + 9 = 109 ms; it comes at 129 ms.
        frames.push((1_000, 129_000));
        frames.extend((11..20).map(|i| (i * 100, 9_000 + i64::from(i - 9) * 100_000)));
        let l = late(1_000, &frames);
        assert_eq!(l[10], 20_000);
        assert!(l[..10].iter().chain(&l[11..]).all(|&l| l == 0), "{l:?}");
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_us(0.99), 0);
        for us in 0..100 {
            h.record(us * 1_000);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_us(0.5), 49_100);
        assert_eq!(h.quantile_us(0.99), 98_100);
        assert_eq!(h.quantile_us(1.0), 99_000);
        let mut g = Histogram::default();
        g.record(20_000_000);
        h.merge(&g);
        assert_eq!((h.count(), h.max_us()), (101, 20_000_000));
        assert_eq!(h.quantile_us(1.0), 20_000_000);
    }

    #[test]
    fn spread_nearest_rank() {
        let mut v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let s = Spread::of(&mut v).unwrap();
        assert_eq!((s.min, s.median, s.p99, s.max), (1.0, 100.0, 198.0, 200.0));
        assert_eq!(Spread::of(&mut []), None);
    }
}

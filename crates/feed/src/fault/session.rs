//! The session and transport faults of what a playing session sends, sans-I/O: `stall`,
//! `bye_at_seam`, `drop` and `jitter` ([`Shaper`], which [`Playout`](crate::rtsp::play::Playout)
//! runs every frame and packet through). Time comes in as values (a frame's media time, the
//! I/O layer's `now`); held packets come out with the deadline they are due at.
//!
//! - `stall=D`: no RTP and no RTCP once the session has sent `D` of media (counted in media
//!   time from the first frame PLAY sent, so a PAUSE does not restart it). RTSP keeps
//!   answering and the session stays alive (over TCP its connection, over UDP the client's
//!   RTCP or keepalives keep it): the camera "accepts SETUP and then sends nothing" (not even
//!   a BYE at TEARDOWN).
//! - `bye_at_seam`: at the first video frame of the next loop after PLAY, every track's last
//!   sender report and RTCP BYE, then no more media (RTSP still answers; TEARDOWN sends no
//!   second BYE).
//! - `drop=P`: each RTP packet over UDP is left out with probability `P` (RTCP never is; over
//!   TCP nothing is lost).
//! - `jitter=J`: each RTP packet over UDP leaves up to `J` late, a uniformly drawn delay, but
//!   never before a packet sent earlier: the order is kept, and since an earlier packet left at
//!   most `J` after it was sent, no packet is held more than `J`.
//!
//! Both draws come from one seeded generator (SplitMix64), random per session and fixed in
//! tests, so a test knows exactly which packets a seed drops.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nvrkit_media::Frame;
use nvrkit_media::time::rescale;

use super::FaultSet;
use crate::loop_source::Laps;
use crate::rtp::{Outgoing, Route, Sink};

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// What [`Shaper::admit`] says of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it.
    Send,
    /// Send nothing (stalled, or ended at a seam).
    Hold,
    /// The loop seam with `bye_at_seam`: send every track's BYE now, and nothing after.
    ByeAtSeam,
}

/// The per-session state of the session/transport faults.
#[derive(Debug)]
pub struct Shaper {
    stall: Option<Duration>,
    bye_at_seam: bool,
    drop_ppm: u32,
    jitter: Duration,
    laps: Option<Laps>,
    /// Media time (µs) of the first frame sent after the first PLAY.
    start_micros: Option<i64>,
    /// The loop lap PLAY started in.
    start_lap: Option<i64>,
    /// BYE sent at the seam: nothing more.
    ended: bool,
    /// Stalled: nothing more.
    stalled: bool,
    rng: Rng,
    /// Jittered packets not yet due, in order, with the instant each is due.
    held: VecDeque<(Instant, Outgoing)>,
    /// When the last jittered packet was due: no later packet is due before it.
    last_due: Option<Instant>,
}

/// The most jittered packets held at once; past it a packet leaves at once (a 720p keyframe
/// is ~100 packets; a flood of frames must not grow the queue without bound).
const MAX_HELD: usize = 4096;

impl Shaper {
    /// The shaper of a session with `faults`, whose loop laps `laps` tells (if it loops), with
    /// its generator at `seed`.
    pub fn new(faults: &FaultSet, laps: Option<Laps>, seed: u64) -> Self {
        Shaper {
            stall: faults.stall,
            bye_at_seam: faults.bye_at_seam,
            drop_ppm: faults.drop_ppm.unwrap_or(0),
            jitter: faults.jitter.unwrap_or(Duration::ZERO),
            laps,
            start_micros: None,
            start_lap: None,
            ended: false,
            stalled: false,
            rng: Rng::new(seed),
            held: VecDeque::new(),
            last_due: None,
        }
    }

    /// Whether packets pass through [`Shaper::shape`] (drop or jitter on).
    pub fn shapes(&self) -> bool {
        self.drop_ppm > 0 || !self.jitter.is_zero()
    }

    /// Whether media has stopped for good (stalled, or BYE at the seam).
    pub fn silent(&self) -> bool {
        self.ended || self.stalled
    }

    /// Whether BYE went out at the seam (the session's BYE is not sent again).
    pub fn ended_at_seam(&self) -> bool {
        self.ended
    }

    /// Decides what happens to frame `f`, the next one the session would send.
    pub fn admit(&mut self, f: &Frame) -> Admit {
        if self.silent() {
            return Admit::Hold;
        }
        let micros = rescale(f.pts, f.timescale, 1_000_000);
        let start = *self.start_micros.get_or_insert(micros);
        if let Some(d) = self.stall
            && micros.saturating_sub(start) >= d.as_micros() as i64
        {
            self.stalled = true;
            return Admit::Hold;
        }
        if self.bye_at_seam
            && let Some(lap) = self.laps.and_then(|l| l.lap(f))
        {
            let first = *self.start_lap.get_or_insert(lap);
            if lap > first {
                self.ended = true;
                return Admit::ByeAtSeam;
            }
        }
        Admit::Send
    }

    /// Takes one packet composed at `now`: over UDP, RTP may be dropped or held (see
    /// [`Shaper::release`]); everything else goes to `out` at once.
    pub fn shape(&mut self, now: Instant, o: Outgoing, out: &mut impl Sink) {
        if !matches!(o.route, Route::UdpRtp(_)) {
            return out.push(o);
        }
        if self.drop_ppm > 0 && self.rng.below(1_000_000) < u64::from(self.drop_ppm) {
            return;
        }
        if self.jitter.is_zero() {
            return out.push(o);
        }
        if self.held.len() >= MAX_HELD {
            // Early rather than out of order or unbounded.
            self.held.drain(..).for_each(|(_, h)| out.push(h));
        }
        let nanos = self.rng.below(self.jitter.as_nanos() as u64 + 1);
        let due = (now + Duration::from_nanos(nanos)).max(self.last_due.unwrap_or(now));
        self.last_due = Some(due);
        if due <= now && self.held.is_empty() {
            return out.push(o);
        }
        self.held.push_back((due, o));
    }

    /// When the next held packet is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.front().map(|(at, _)| *at)
    }

    /// Moves the held packets due by `now` to `out`, in order.
    pub fn release(&mut self, now: Instant, out: &mut impl Sink) {
        while let Some((at, _)) = self.held.front() {
            if *at > now {
                break;
            }
            if let Some((_, o)) = self.held.pop_front() {
                out.push(o);
            }
        }
    }

    /// Drops what is held (PAUSE, TEARDOWN: the packets were never due to anyone).
    pub fn clear(&mut self) {
        self.held.clear();
        self.last_due = None;
    }
}

/// A [`Sink`] that runs every packet through a [`Shaper`] at `now` on its way to `out`.
#[derive(Debug)]
pub struct Shaped<'a, S> {
    /// The shaper.
    pub shaper: &'a mut Shaper,
    /// When the packets are composed.
    pub now: Instant,
    /// Where they go.
    pub out: &'a mut S,
}

impl<S: Sink> Sink for Shaped<'_, S> {
    fn push(&mut self, o: Outgoing) {
        self.shaper.shape(self.now, o, self.out);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rtp(seq: u16) -> Outgoing {
        Outgoing {
            route: Route::UdpRtp(5000),
            head: Bytes::copy_from_slice(&seq.to_be_bytes()),
            body: Bytes::new(),
        }
    }

    fn seq(o: &Outgoing) -> u16 {
        u16::from_be_bytes([o.head[0], o.head[1]])
    }

    fn faults(q: &str) -> FaultSet {
        q.parse().unwrap()
    }

    #[test]
    fn the_generator_is_splitmix64() {
        // The published first outputs of SplitMix64 seeded with 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn drop_leaves_out_exactly_the_packets_its_seed_draws_and_only_udp_rtp() {
        let mut s = Shaper::new(&faults("drop=5%"), None, 42);
        let now = Instant::now();
        let mut out = Vec::new();
        for i in 0..20_000u16 {
            s.shape(now, rtp(i), &mut out);
        }
        // The same draws, made independently: packet i is dropped when draw i is below 5 %.
        let mut r = Rng::new(42);
        let kept: Vec<u16> = (0..20_000u16)
            .filter(|_| r.below(1_000_000) >= 50_000)
            .collect();
        assert_eq!(out.iter().map(seq).collect::<Vec<_>>(), kept);
        let lost = 20_000 - out.len();
        assert!((800..1200).contains(&lost), "{lost} of 20,000 lost at 5 %");
        // RTCP and interleaved packets are never dropped.
        let mut s = Shaper::new(&faults("drop=100%"), None, 1);
        let mut out = Vec::new();
        s.shape(now, rtp(1), &mut out);
        for route in [Route::UdpRtcp(5001), Route::Interleaved] {
            s.shape(now, Outgoing { route, ..rtp(2) }, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.route != Route::UdpRtp(5000)));
    }

    #[test]
    fn jitter_holds_each_packet_at_most_its_bound_and_keeps_the_order() {
        let j = Duration::from_millis(50);
        let mut s = Shaper::new(&faults("jitter=50ms"), None, 7);
        let t0 = Instant::now();
        let mut sent_at = Vec::new();
        let mut out = Vec::new();
        // 1,000 packets, one every 2 ms, released whenever the next one is composed.
        for i in 0..1000u16 {
            let now = t0 + Duration::from_millis(2 * u64::from(i));
            s.release(now, &mut out);
            sent_at.push(now);
            s.shape(now, rtp(i), &mut out);
        }
        let mut released = Vec::new();
        while let Some(at) = s.next_due() {
            s.release(at, &mut released);
            released.iter().for_each(|o| out.push(o.clone()));
            released.clear();
        }
        assert_eq!(
            out.iter().map(seq).collect::<Vec<_>>(),
            (0..1000).collect::<Vec<_>>(),
            "no packet overtakes another"
        );
        // The due instants themselves: rerun and record when each packet is due.
        let mut s = Shaper::new(&faults("jitter=50ms"), None, 7);
        let mut dues = Vec::new();
        for i in 0..1000u16 {
            let now = sent_at[i as usize];
            let mut o = Vec::new();
            s.shape(now, rtp(i), &mut o);
            dues.push(if o.is_empty() {
                s.held.back().unwrap().0
            } else {
                now
            });
        }
        assert!(dues.windows(2).all(|w| w[0] <= w[1]));
        assert!(dues.iter().zip(&sent_at).all(|(d, s)| *d - *s <= j));
        let late = dues.iter().zip(&sent_at).filter(|(d, s)| *d > *s).count();
        assert!(late > 900, "almost every packet is held: {late}");
    }

    fn frame(stream: usize, pts: i64, timescale: u32) -> Frame {
        Frame {
            stream,
            timescale,
            dts: pts,
            pts,
            duration: 1,
            wall: None,
            keyframe: false,
            discard: false,
            discontinuity: false,
            data: Bytes::new(),
        }
    }

    #[test]
    fn stall_stops_media_after_its_media_time() {
        let mut s = Shaper::new(&faults("stall=2s"), None, 0);
        // Video at 90 kHz from 10 s, audio at 48 kHz: both counted on one clock.
        assert_eq!(s.admit(&frame(0, 900_000, 90_000)), Admit::Send);
        assert_eq!(s.admit(&frame(1, 48_000 * 11, 48_000)), Admit::Send);
        assert_eq!(s.admit(&frame(0, 900_000 + 179_999, 90_000)), Admit::Send);
        assert_eq!(s.admit(&frame(0, 900_000 + 180_000, 90_000)), Admit::Hold);
        assert!(s.silent());
        assert_eq!(s.admit(&frame(1, 0, 48_000)), Admit::Hold, "for good");
    }

    #[test]
    fn bye_comes_at_the_first_video_frame_of_the_next_lap() {
        let laps = Laps {
            stream: 0,
            first_dts: 100,
            period: 1000,
        };
        let mut s = Shaper::new(&faults("bye_at_seam"), Some(laps), 0);
        // PLAY joined in lap 2.
        assert_eq!(s.admit(&frame(0, 2500, 1000)), Admit::Send);
        assert_eq!(s.admit(&frame(1, 3099, 1000)), Admit::Send, "audio");
        assert_eq!(s.admit(&frame(0, 3099, 1000)), Admit::Send);
        assert_eq!(s.admit(&frame(1, 3100, 1000)), Admit::Send, "audio");
        assert_eq!(s.admit(&frame(0, 3100, 1000)), Admit::ByeAtSeam);
        assert_eq!(s.admit(&frame(0, 3101, 1000)), Admit::Hold);
        assert!(s.ended_at_seam());
    }
}

//! The connection state machine at chosen instants: no sockets, no sleeping.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nvrkit_media::{Demuxer, Frame, WallTime};

use super::*;
use crate::rtsp::core::tests::{One, catalog};

const PEER: &str = "127.0.0.3:40000";

fn limits() -> Limits {
    Limits {
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        strict_start: false,
        udp_burst_speed: 4,
    }
}

fn driver(t0: Instant, limits: Limits) -> Driver {
    let conn = ConnConfig {
        auth: None,
        udp_ports: Some((8000, 8001)),
        session_timeout: Duration::from_secs(60),
        scheme: "rtsp",
        host: "127.0.0.1:8554".into(),
        server_ip: "127.0.0.1".into(),
        rtp: RtpConfig::default(),
    };
    Driver::new(conn, limits, PEER.parse::<SocketAddr>().unwrap(), t0)
}

fn at(t0: Instant, secs: f64) -> Now {
    Now {
        at: t0 + Duration::from_secs_f64(secs),
        wall: WallTime::from_micros(1_000_000_000 + (secs * 1e6) as i64),
    }
}

/// The sample's frames from its first video keyframe, released on the wall clock of [`at`]
/// from second `from` on.
fn frames(from: f64) -> Vec<Frame> {
    let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
    let base = WallTime::from_micros(1_000_000_000 + (from * 1e6) as i64);
    d.frames()
        .map(Result::unwrap)
        .skip_while(|f| f.stream != 0 || !f.keyframe)
        .map(|mut f| {
            f.wall = Some(base.add_ticks(f.dts, f.timescale));
            f
        })
        .collect()
}

/// The responses' status codes, and the RTCP packet types, in the order they are written.
fn written(out: &[Outgoing]) -> Vec<String> {
    out.iter()
        .map(|o| {
            if o.head.starts_with(b"RTSP/1.0 ") {
                String::from_utf8_lossy(&o.head[9..12]).into_owned()
            } else {
                let mut at = if o.route == Route::Interleaved { 4 } else { 0 };
                let mut kind = "RTP";
                // A compound RTCP packet: a BYE in it ends the session.
                while let Some(&[_, pt, hi, lo]) = o.head.get(at..at + 4) {
                    kind = match (pt, kind) {
                        (203, _) => "BYE",
                        (200, "RTP") => "SR",
                        (200..=204, k) => k,
                        _ => break,
                    };
                    at += 4 * (usize::from(u16::from_be_bytes([hi, lo])) + 1);
                }
                kind.into()
            }
        })
        .collect()
}

fn setup(transport: &str, track: usize, cseq: u32) -> String {
    format!(
        "SETUP rtsp://h/sample/trackID={track} RTSP/1.0\r\nCSeq: {cseq}\r\nTransport: {transport}\r\n\r\n"
    )
}

const TCP0: &str = "RTP/AVP/TCP;interleaved=0-1";
const UDP0: &str = "RTP/AVP;unicast;client_port=5000-5001";
const PLAY: &str = "PLAY rtsp://h/sample/ RTSP/1.0\r\nCSeq: 9\r\n\r\n";

/// Sends `text` at `now`, expecting no PLAY.
fn send(d: &mut Driver, cat: &One, text: &str, now: Now, out: &mut Vec<Outgoing>) -> Step {
    d.read(text.as_bytes(), now, cat, out)
}

/// PLAY at `now`, started at the first keyframe `frames` offer; the step it gave.
fn play(d: &mut Driver, cat: &One, now: Now, frames: &[Frame], out: &mut Vec<Outgoing>) -> Step {
    let step = send(d, cat, PLAY, now, out);
    let first = frames.iter().find(|f| d.offer(f)).unwrap();
    d.start(first, out);
    d.frame(first, now.at, out);
    step
}

#[test]
fn a_silent_connection_is_closed_at_its_idle_timeout_and_not_before() {
    let t0 = Instant::now();
    let cat = catalog();
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    // Reports every 5 s wake it; the idle timeout at 60 s closes it.
    assert_eq!(d.wake(), Some(t0 + REPORT_INTERVAL));
    assert_eq!(
        d.timer(t0 + REPORT_INTERVAL, |_| None, &mut out),
        Step::Continue
    );
    assert_eq!(d.wake(), Some(t0 + 2 * REPORT_INTERVAL));
    let options = "OPTIONS rtsp://h/sample RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    send(&mut d, &cat, options, at(t0, 30.0), &mut out);
    assert_eq!(written(&out), ["200"]);
    // Idle counts from the last complete request.
    let idle = t0 + Duration::from_secs(90);
    assert_eq!(
        d.timer(idle - Duration::from_millis(1), |_| None, &mut out),
        Step::Continue
    );
    assert_eq!(
        d.timer(idle, |_| None, &mut out),
        Step::Close { linger: false }
    );
}

#[test]
fn a_trickled_request_is_closed_at_its_deadline_from_its_first_byte() {
    let t0 = Instant::now();
    let cat = catalog();
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    send(
        &mut d,
        &cat,
        "OPTIONS rtsp://h/sample",
        at(t0, 1.0),
        &mut out,
    );
    let deadline = t0 + Duration::from_secs(11);
    assert_eq!(
        d.wake(),
        Some(t0 + REPORT_INTERVAL),
        "the report schedule comes first"
    );
    for s in 2..=9u32 {
        send(&mut d, &cat, " ", at(t0, f64::from(s)), &mut out);
        if s % 5 == 0 {
            let t = t0 + Duration::from_secs(u64::from(s));
            assert_eq!(d.timer(t, |_| None, &mut out), Step::Continue);
        }
    }
    let t = t0 + Duration::from_secs(10);
    assert_eq!(d.timer(t, |_| None, &mut out), Step::Continue);
    assert!(out.is_empty());
    assert_eq!(d.wake(), Some(deadline), "trickled bytes do not move it");
    assert_eq!(
        d.timer(deadline, |_| None, &mut out),
        Step::Close { linger: false }
    );
}

#[test]
fn an_oversized_request_gets_400_and_a_lingering_close() {
    let t0 = Instant::now();
    let cat = catalog();
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    let huge = format!(
        "OPTIONS rtsp://h/sample RTSP/1.0\r\nX: {}\r\n\r\n",
        "a".repeat(super::super::framing::MAX_MESSAGE)
    );
    let step = send(&mut d, &cat, &huge, at(t0, 1.0), &mut out);
    assert_eq!(step, Step::Close { linger: true });
    assert_eq!(written(&out), ["400"]);
}

#[test]
fn a_udp_session_without_rtcp_times_out_and_rtcp_keeps_it() {
    let t0 = Instant::now();
    let cat = catalog();
    let frames = frames(0.0);
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    send(&mut d, &cat, &setup(UDP0, 0, 1), at(t0, 0.0), &mut out);
    assert!(matches!(
        play(&mut d, &cat, at(t0, 0.0), &frames, &mut out),
        Step::Play { .. }
    ));
    assert_eq!(d.udp_rtcp_ports().collect::<Vec<_>>(), [5001]);
    assert!(d.reads());
    // While frames drive it, no timer is armed.
    assert_eq!(d.wake(), None);
    out.clear();
    // Reports every 5 s after a batch of frames; RTCP seen at 50 s on the client's port.
    let seen = |port| (port == 5001).then_some(t0 + Duration::from_secs(50));
    let mut now = t0;
    while now < t0 + Duration::from_secs(200) {
        now += REPORT_INTERVAL;
        let step = d.after_frames(now, seen, &mut out);
        let quiet = now.duration_since(t0 + Duration::from_secs(50));
        if quiet > Duration::from_secs(60) {
            assert_eq!(step, Step::Close { linger: false }, "at {now:?}");
            break;
        }
        assert_eq!(step, Step::Continue, "at {now:?}");
    }
    assert_eq!(now, t0 + Duration::from_secs(115));
    assert!(written(&out).iter().all(|w| w == "SR"));
    assert_eq!(out.len(), 23, "one SR every 5 s, the last before the close");
    assert_eq!(written(&d.end_vec()), ["BYE"]);
}

impl Driver {
    fn end_vec(&mut self) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let ports = self.end(&mut out);
        assert_eq!(ports, [5001]);
        out
    }
}

#[test]
fn a_tcp_session_is_alive_while_its_media_flows() {
    let t0 = Instant::now();
    let cat = catalog();
    let frames = frames(0.0);
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    send(&mut d, &cat, &setup(TCP0, 0, 1), at(t0, 0.0), &mut out);
    play(&mut d, &cat, at(t0, 0.0), &frames, &mut out);
    let hour = t0 + Duration::from_secs(3600);
    assert_eq!(d.after_frames(hour, |_| None, &mut out), Step::Continue);
    // Paused, the same silence ends it.
    let pause = "PAUSE rtsp://h/sample/ RTSP/1.0\r\nCSeq: 10\r\n\r\n";
    send(&mut d, &cat, pause, at(t0, 3600.0), &mut out);
    assert!(!d.reads());
    let wake = d.wake().unwrap();
    assert_eq!(wake, hour + REPORT_INTERVAL);
    let later = hour + Duration::from_secs(61);
    assert_eq!(
        d.timer(later, |_| None, &mut out),
        Step::Close { linger: false }
    );
}

#[test]
fn play_reads_the_video_ring_only_when_only_the_video_is_set_up() {
    let t0 = Instant::now();
    let cat = catalog();
    let rings = || Rings {
        master: 0,
        all: "all",
        video: Some("video"),
    };
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    send(&mut d, &cat, &setup(TCP0, 0, 1), at(t0, 0.0), &mut out);
    let Step::Play { until, .. } = send(&mut d, &cat, PLAY, at(t0, 1.0), &mut out) else {
        panic!("no PLAY step");
    };
    assert_eq!(until, t0 + Duration::from_secs(1) + PLAY_WAIT);
    assert_eq!(d.ring(rings()), "video");
    d.not_started(&mut out);
    assert_eq!(written(&out), ["200", "503"]);
    assert!(!d.reads());

    let mut d = driver(t0, limits());
    send(&mut d, &cat, &setup(TCP0, 0, 1), at(t0, 0.0), &mut out);
    let audio = "RTP/AVP/TCP;interleaved=2-3";
    send(&mut d, &cat, &setup(audio, 1, 2), at(t0, 0.0), &mut out);
    send(&mut d, &cat, PLAY, at(t0, 1.0), &mut out);
    assert_eq!(d.ring(rings()), "all");
    let no_video_ring = Rings {
        video: None,
        ..rings()
    };
    assert_eq!(d.ring(no_video_ring), "all");
}

#[test]
fn play_starts_at_a_video_keyframe_and_strict_start_at_a_fresh_one() {
    let t0 = Instant::now();
    let cat = catalog();
    // The ring's newest keyframe was released 0.5 s before the PLAY at 10 s.
    let frames = frames(9.5);
    let audio = frames.iter().find(|f| f.stream == 1).unwrap();
    let key = &frames[0];
    let delta = frames
        .iter()
        .find(|f| f.stream == 0 && !f.keyframe)
        .unwrap();
    let joined = at(t0, 10.0).wall;
    let later_key = frames
        .iter()
        .find(|f| f.stream == 0 && f.keyframe && f.wall.unwrap() >= joined)
        .unwrap();
    for strict in [false, true] {
        let mut d = driver(
            t0,
            Limits {
                strict_start: strict,
                ..limits()
            },
        );
        let mut out = Vec::new();
        send(&mut d, &cat, &setup(TCP0, 0, 1), at(t0, 0.0), &mut out);
        send(&mut d, &cat, PLAY, at(t0, 10.0), &mut out);
        d.ring(Rings {
            master: 0,
            all: (),
            video: None,
        });
        assert!(!d.offer(audio) && !d.offer(delta));
        assert_eq!(d.offer(key), !strict, "strict_start {strict}");
        assert!(d.offer(later_key));
    }
}

#[test]
fn requests_read_with_a_play_are_answered_after_it_in_order() {
    let t0 = Instant::now();
    let cat = catalog();
    let frames = frames(0.0);
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    send(&mut d, &cat, &setup(TCP0, 0, 1), at(t0, 0.0), &mut out);
    out.clear();
    let get = "GET_PARAMETER rtsp://h/sample RTSP/1.0\r\nCSeq: 10\r\n\r\n";
    let both = format!("{PLAY}{get}");
    let step = send(&mut d, &cat, &both, at(t0, 1.0), &mut out);
    assert!(matches!(step, Step::Play { .. }));
    assert!(out.is_empty(), "nothing before PLAY's answer");
    d.ring(Rings {
        master: 0,
        all: (),
        video: None,
    });
    d.start(&frames[0], &mut out);
    d.frame(&frames[0], t0, &mut out);
    assert_eq!(d.resume(at(t0, 1.0), &cat, &mut out), Step::Continue);
    let mut w = written(&out);
    w.dedup();
    assert_eq!(
        w,
        ["200", "SR", "RTP", "200"],
        "the keyframe's packets between"
    );
    assert!(String::from_utf8_lossy(&out[0].head).contains("RTP-Info: url="));
    assert!(String::from_utf8_lossy(&out.last().unwrap().head).contains("CSeq: 10"));
    // TEARDOWN: its answer, then BYE; the ring is no longer read.
    out.clear();
    let teardown = "TEARDOWN rtsp://h/sample/ RTSP/1.0\r\nCSeq: 11\r\n\r\n";
    send(&mut d, &cat, teardown, at(t0, 2.0), &mut out);
    assert_eq!(
        written(&out),
        ["200", "BYE"],
        "an SR and BYE in one compound packet"
    );
    assert!(!d.reads());
}

#[test]
fn udp_catch_up_is_paced_at_the_burst_speed_and_ends_once_caught_up() {
    let t0 = Instant::now();
    let cat = catalog();
    // Released 2 s before the PLAY at 2 s: the session starts 2 s behind.
    let frames = frames(0.0);
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    send(&mut d, &cat, &setup(UDP0, 0, 1), at(t0, 2.0), &mut out);
    play(&mut d, &cat, at(t0, 2.0), &frames, &mut out);
    let video: Vec<&Frame> = frames.iter().filter(|f| f.stream == 0).collect();
    // The first frame of the burst goes at once; the 25th (1 s of media later) at 4× speed,
    // 250 ms after the burst began.
    assert_eq!(d.due(video[0], at(t0, 2.0)), None);
    let media = video[25].wall.unwrap().micros_since(video[0].wall.unwrap());
    let want = t0 + Duration::from_secs(2) + Duration::from_micros(media as u64 / 4);
    assert_eq!(d.due(video[25], at(t0, 2.0)), Some(want));
    assert_eq!(d.due(video[25], at(t0, 2.25)), None, "due by then");
    // A frame within 100 ms of the wall clock ends the burst: the next one behind starts
    // a new burst at its own instant.
    let fresh = Now {
        at: t0 + Duration::from_secs(3),
        wall: video[40].wall.unwrap().add_micros(50_000),
    };
    assert_eq!(d.due(video[40], fresh), None);
    let behind = Now {
        at: t0 + Duration::from_secs(4),
        wall: video[41].wall.unwrap().add_micros(500_000),
    };
    assert_eq!(d.due(video[41], behind), None, "a new burst starts now");
    assert!(d.due(video[45], behind).is_some());
    d.lagged();
    assert_eq!(d.due(video[45], behind), None, "lagging ends the burst");
    // Over TCP nothing is paced.
    let mut d = driver(t0, limits());
    send(&mut d, &cat, &setup(TCP0, 0, 1), at(t0, 2.0), &mut out);
    play(&mut d, &cat, at(t0, 2.0), &frames, &mut out);
    assert_eq!(d.due(video[25], at(t0, 2.0)), None);
}

#[test]
fn disconnect_every_wakes_the_connection_and_drops_it_without_bye() {
    let t0 = Instant::now();
    let cat = catalog();
    let frames = frames(0.0);
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    let setup = "SETUP rtsp://h/sample/trackID=0?disconnect_every=2s RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n";
    send(&mut d, &cat, setup, at(t0, 1.0), &mut out);
    play(&mut d, &cat, at(t0, 1.0), &frames, &mut out);
    let close = t0 + Duration::from_secs(3);
    assert_eq!(
        d.wake(),
        Some(close),
        "while frames drive it, only the fault wakes it"
    );
    assert_eq!(
        d.timer(close - Duration::from_millis(1), |_| None, &mut out),
        Step::Continue
    );
    assert_eq!(
        d.timer(close, |_| None, &mut out),
        Step::Close { linger: false }
    );
    let mut end = Vec::new();
    d.end(&mut end);
    assert!(end.is_empty(), "no BYE: the camera just drops off");
}

#[test]
fn jitter_held_packets_are_released_at_their_instants() {
    let t0 = Instant::now();
    let cat = catalog();
    let frames = frames(0.0);
    let mut d = driver(t0, limits());
    let mut out = Vec::new();
    let setup = "SETUP rtsp://h/sample/trackID=0?jitter=50ms RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n";
    send(&mut d, &cat, setup, at(t0, 0.0), &mut out);
    play(&mut d, &cat, at(t0, 0.0), &frames, &mut out);
    for f in frames.iter().filter(|f| f.stream == 0).take(10) {
        d.frame(f, t0, &mut out);
    }
    out.clear();
    let mut released = 0;
    while let Some(due) = d.wake() {
        assert!(due <= t0 + Duration::from_millis(50), "held at most 50 ms");
        assert_eq!(d.timer(due, |_| None, &mut out), Step::Continue);
        assert!(
            out.len() > released,
            "the timer at {due:?} released a packet"
        );
        released = out.len();
    }
    assert!(released > 0);
    assert!(out.iter().all(|o| o.route == Route::UdpRtp(5000)));
}

#[test]
fn udp_liveness_notes_only_watched_ports() {
    let t0 = Instant::now();
    let l = UdpLiveness::default();
    let ip: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let spoofed: SocketAddr = "127.0.0.2:5001".parse().unwrap();
    l.heard(SocketAddr::new(ip, 5001), t0);
    assert_eq!(l.last(ip, 5001), None, "not watched yet");
    l.watch(ip, [5001, 5003], t0);
    l.heard(SocketAddr::new(ip, 5001), t0 + Duration::from_secs(7));
    l.heard(spoofed, t0 + Duration::from_secs(8));
    assert_eq!(l.last(ip, 5001), Some(t0 + Duration::from_secs(7)));
    assert_eq!(l.last(ip, 5003), Some(t0), "since its PLAY");
    assert_eq!(l.last(spoofed.ip(), 5001), None);
    l.forget(ip, [5001, 5003]);
    assert_eq!(l.last(ip, 5001), None);
}

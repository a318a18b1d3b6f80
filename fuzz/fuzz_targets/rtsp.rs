//! Arbitrary bytes on an RTSP connection, into the connection's state machine
//! ([`Driver`]) at instants that move with them: a millisecond per read and a second per
//! complete request, and between reads every timer the driver asks for fires at the instant it
//! gave (the request and idle deadlines, the session timeout and report schedule,
//! `disconnect_every`, `jitter`'s held packets). Nothing may panic, the bytes a connection
//! buffers stay bounded, a timer fired at its instant makes progress (the next wake-up is
//! later, or the connection closes: no busy loop), and the framer yields the same messages
//! however the bytes are split into reads (it resumes its search instead of rescanning;
//! `-timeout=5` on 1 MiB inputs makes a quadratic framer a crash).
//!
//! A PLAY the driver asks to start ([`Step::Play`]) picks a ring of the catalog's (every track's,
//! or the video's alone), is offered the sample's frames from its first keyframe (with the
//! second mode bit, `strict_start`: only fresh ones start it) and sends them, UDP catch-up
//! paced at the instants the driver gives, then the frames across the loop's first seam (the
//! catalog knows the loop's seams, and makes a path's own loop for `fps`, as the server does);
//! then the requests read after the PLAY are answered. TEARDOWN and the end send BYE: RTP-Info,
//! sequence numbers, timestamps and RTCP composition run on whatever state the dialogue leaves.
//!
//! Request URIs may carry fault queries (`?denytcp&stall=2s&drop=1%25`, seeds in
//! `seeds/rtsp/faults*`): the core parses them, and the clock makes `session_expires`,
//! `disconnect_every`, `stall` and `jitter` fire.
//!
//! With auth on (the first mode bit), Digest is driven past its nonce and response checks, as a
//! client with the password would: each request is parsed here, signed, written again and
//! given to the driver (so with auth on, the driver sees requests and interleaved data only);
//! in an `Authorization` header, `NONCE` becomes the nonce of the last 401 this connection got
//! (or a fresh one), and `RESPONSE` the correct response for the header's other fields, so `nc`
//! tracking, `uri` matching, expiry and per-connection pinning all run on fuzzer-chosen
//! sequences. With auth off the driver gets the raw reads.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use md5::{Digest as _, Md5};
use nvrkit_feed::fault::FaultSet;
use nvrkit_feed::fault::frames::{LoopGeometry, loop_clip};
use nvrkit_feed::rtp::Outgoing;
use nvrkit_feed::rtsp::auth::Auth;
use nvrkit_feed::rtsp::core::{Catalog, ConnConfig, StreamInfo};
use nvrkit_feed::rtsp::driver::{Driver, Limits, Now, Rings, Step};
use nvrkit_feed::rtsp::framing::{Framer, Incoming, MAX_MESSAGE};
use nvrkit_feed::rtsp::play::RtpConfig;
use nvrkit_feed::{Clip, LoopSource};
use nvrkit_media::{Frame, WallTime};
use rtsp_types::headers;

struct One(Arc<StreamInfo>, Vec<Frame>, Arc<Clip>);

impl Catalog for One {
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
        (name == self.0.name).then(|| self.0.clone())
    }

    /// As the server does: a path's own loop for faults that change frames (`fps` thinned,
    /// `sps_change_at_seam` refused: the sample is the only clip), or the refusal.
    fn stream_with(
        &self,
        name: &str,
        faults: &FaultSet,
    ) -> Result<Option<Arc<StreamInfo>>, String> {
        if name != self.0.name {
            return Ok(None);
        }
        if !faults.changes_frames() {
            return Ok(Some(self.0.clone()));
        }
        let clip =
            loop_clip(&self.2, faults, std::slice::from_ref(&self.2)).map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(info(&clip))))
    }
}

/// A looping stream's description, with its laps and seams (for the faults at the seam).
fn info(clip: &Clip) -> StreamInfo {
    StreamInfo {
        laps: Some(clip.laps()),
        geometry: Some(LoopGeometry::of(clip)),
        ..StreamInfo::new("sample", clip.tracks().to_vec())
    }
}

/// The sample looping, and what PLAY sends: its first keyframe and the frames after it, then
/// the frames across the first seam (so `ts_reset_at_seam`, `dts_backwards_at_seam` and
/// `bye_at_seam` act).
fn catalog() -> &'static One {
    static C: OnceLock<One> = OnceLock::new();
    C.get_or_init(|| {
        let d = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let clip = Clip::load("sample", &d).unwrap();
        let looped: Vec<Frame> = LoopSource::new(clip.clone(), WallTime::EPOCH)
            .take(800)
            .collect();
        let key = looped
            .iter()
            .position(|f| f.stream == 0 && f.keyframe)
            .unwrap();
        let seam = |f: &&Frame| {
            let t = f.wall.map_or(0, |w| w.as_micros());
            (9_900_000..10_100_000).contains(&t)
        };
        let mut frames: Vec<Frame> = looped[key..key + 8].to_vec();
        frames.extend(looped.iter().filter(seam).cloned());
        One(Arc::new(info(&clip)), frames, clip)
    })
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `k=v` / `k="v"` fields of a Digest header (simply: no commas inside quotes).
fn field<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .trim_start_matches("Digest")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// The nonce of a Digest challenge.
fn nonce_of(challenge: &str) -> Option<String> {
    let (_, rest) = challenge.split_once("nonce=\"")?;
    Some(rest.split('"').next()?.to_owned())
}

/// Fills in `NONCE` and `RESPONSE` in a Digest `Authorization` header, as a client holding the
/// password `p` would.
fn sign(req: &mut rtsp_types::Request<Vec<u8>>, nonce: &str) {
    let Some(value) = req
        .header(&headers::AUTHORIZATION)
        .map(|v| v.as_str().to_owned())
    else {
        return;
    };
    if !value.contains("NONCE") && !value.contains("RESPONSE") {
        return;
    }
    let value = value.replace("NONCE", nonce);
    let (Some(user), Some(realm), Some(uri), Some(n)) = (
        field(&value, "username"),
        field(&value, "realm"),
        field(&value, "uri"),
        field(&value, "nonce"),
    ) else {
        req.insert_header(headers::AUTHORIZATION, value);
        return;
    };
    let ha1 = md5_hex(&format!("{user}:{realm}:p"));
    let ha2 = md5_hex(&format!("{}:{uri}", <&str>::from(req.method())));
    let response = match (
        field(&value, "qop"),
        field(&value, "nc"),
        field(&value, "cnonce"),
    ) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            md5_hex(&format!("{ha1}:{n}:{nc}:{cnonce}:{qop}:{ha2}"))
        }
        _ => md5_hex(&format!("{ha1}:{n}:{ha2}")),
    };
    let signed = value.replace("RESPONSE", &response);
    req.insert_header(headers::AUTHORIZATION, signed);
}

/// A short description of each message, to compare two splits of the same bytes.
fn describe(m: &Incoming) -> String {
    match m {
        Incoming::Request(r) => format!(
            "req {} {:?} {}",
            <&str>::from(r.method()),
            r.request_uri().map(|u| u.as_str()),
            r.body().len()
        ),
        Incoming::Data { channel, payload } => format!("data {channel} {}", payload.len()),
        Incoming::Malformed(_) => "bad".into(),
        Incoming::TooLarge(_) => "big".into(),
        Incoming::Response => "resp".into(),
    }
}

/// Whether the frame of stream `s` is in the ring PLAY chose.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ring {
    All,
    Video,
}

/// The nonce of the last Digest challenge among the responses in `out`.
fn last_nonce(out: &[Outgoing]) -> Option<String> {
    out.iter()
        .filter(|o| o.head.starts_with(b"RTSP/1.0 401"))
        .filter_map(|o| nonce_of(&String::from_utf8_lossy(&o.head)))
        .last()
}

/// When RTCP last came from a client UDP port: odd ports a second ago, others never.
fn udp_seen(now: Instant) -> impl Fn(u16) -> Option<Instant> {
    move |port| (port % 2 == 1).then(|| now.checked_sub(Duration::from_secs(1)).unwrap_or(now))
}

/// Runs what `step` asks until the driver waits again; `true` when it closes the connection.
fn run(d: &mut Driver, mut step: Step, now: Now, cat: &One, out: &mut Vec<Outgoing>) -> bool {
    loop {
        let (stream, until) = match step {
            Step::Continue => return false,
            Step::Close { .. } => return true,
            Step::Play { stream, until, .. } => (stream, until),
        };
        assert!(until > now.at);
        assert!(cat.stream(&stream.name).is_some());
        let ring = d.ring(Rings {
            master: 0,
            all: Ring::All,
            video: Some(Ring::Video),
        });
        let frames: Vec<&Frame> = (cat.1.iter())
            .filter(|f| ring == Ring::All || f.stream == 0)
            .collect();
        match frames.iter().position(|f| d.offer(f)) {
            None => d.not_started(out),
            Some(i) => {
                d.start(frames[i], out);
                let mut at = now.at;
                for (k, f) in frames[i..].iter().enumerate() {
                    let wall = now.wall.add_micros(k as i64 * 1000);
                    if let Some(due) = d.due(f, Now { at, wall }) {
                        assert!(due > at && due <= at + Duration::from_secs(366 * 86_400));
                        at = due;
                    }
                    d.frame(f, at, out);
                }
                if d.after_frames(at, udp_seen(at), out) != Step::Continue {
                    return true;
                }
            }
        }
        step = d.resume(now, cat, out);
    }
}

fuzz_target!(|data: &[u8]| {
    let cat = catalog();
    // The first byte picks auth on/off and how the bytes are split into reads (and, with the
    // read size's lowest bit, strict_start).
    let Some((&mode, wire)) = data.split_first() else {
        return;
    };
    let (auth_on, strict) = (mode & 1 == 1, mode & 2 == 2);
    let chunk = usize::from(mode >> 1).max(1);
    let auth = auth_on.then(|| Arc::new(Auth::new("u", "p")));
    let mut nonce = auth
        .as_ref()
        .and_then(|a| nonce_of(&a.challenges(false)[0]))
        .unwrap_or_default();
    let conn = ConnConfig {
        auth,
        udp_ports: Some((8000, 8001)),
        session_timeout: Duration::from_secs(60),
        scheme: "rtsp",
        host: "127.0.0.1:8554".into(),
        server_ip: "127.0.0.1".into(),
        rtp: RtpConfig {
            mtu: 1400,
            initial_rtptime: Some(u32::MAX - 1000),
        },
    };
    let limits = Limits {
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        strict_start: strict,
        udp_burst_speed: 4,
    };
    let peer: SocketAddr = "127.0.0.3:40000".parse().unwrap();
    let t0 = Instant::now();
    // The loop's frames carry wall times from the epoch on: a PLAY starts well behind it.
    let mut now = Now {
        at: t0,
        wall: WallTime::EPOCH.add_micros(2_000_000),
    };
    let mut d = Driver::new(conn, limits, peer, t0);
    let mut out = Vec::new();
    let mut framer = Framer::new();
    let mut seen = Vec::new();
    // Until the driver closes the connection; the framer check goes on to the end.
    let mut open = true;
    for piece in wire.chunks(chunk) {
        // The timers due by this read's instant, each at the instant the driver gave.
        while let Some(w) = d.wake().filter(|w| open && *w <= now.at) {
            out.clear();
            open = d.timer(w, udp_seen(w), &mut out) == Step::Continue;
            assert!(
                !open || d.wake().is_none_or(|n| n > w),
                "no progress at {w:?}"
            );
        }
        framer.push(piece);
        let mut requests = Vec::new();
        while let Some(msg) = framer.next_message() {
            seen.push(describe(&msg));
            requests.push(msg);
        }
        let step = Duration::from_millis(1)
            + Duration::from_secs(1)
                * requests
                    .iter()
                    .filter(|m| matches!(m, Incoming::Request(_)))
                    .count() as u32;
        now.at += step;
        now.wall = now.wall.add_micros(step.as_micros() as i64);
        out.clear();
        if open && !auth_on {
            let step = d.read(piece, now, cat, &mut out);
            open = !run(&mut d, step, now, cat, &mut out);
        }
        for msg in requests.into_iter().filter(|_| auth_on) {
            if !open {
                break;
            }
            let bytes = match msg {
                Incoming::Request(mut req) => {
                    sign(&mut req, &nonce);
                    let mut w = Vec::new();
                    if req.write(&mut w).is_err() {
                        continue;
                    }
                    w
                }
                Incoming::Data { channel, payload } => {
                    let mut w = vec![b'$', channel];
                    w.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                    w.extend_from_slice(&payload);
                    w
                }
                _ => continue,
            };
            let step = d.read(&bytes, now, cat, &mut out);
            open = !run(&mut d, step, now, cat, &mut out);
            if let Some(n) = last_nonce(&out) {
                nonce = n;
            }
        }
        assert!(d.buffered() <= MAX_MESSAGE + chunk + 70_000);
    }
    out.clear();
    d.end(&mut out);
    // The same bytes in one read: the same messages.
    let mut whole = Framer::new();
    whole.push(wire);
    let mut again = Vec::new();
    while let Some(msg) = whole.next_message() {
        again.push(describe(&msg));
    }
    assert_eq!(seen, again, "split into reads of {chunk} bytes");
});

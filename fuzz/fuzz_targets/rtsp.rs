//! Arbitrary bytes on an RTSP connection: the framer splits them, the session core answers every
//! request. Nothing may panic, the bytes a connection buffers stay bounded, and the framer
//! yields the same messages however the bytes are split into reads (it resumes its search
//! instead of rescanning; `-timeout=5` on 1 MiB inputs makes a quadratic framer a crash).
//!
//! A PLAY the core accepts starts the session's sender state at the sample's first keyframe and
//! sends it a few frames, then the frames across the loop's first seam (the catalog knows the
//! loop's seams, and makes a path's own loop for `fps`, as the server does); TEARDOWN ends it with BYE: RTP-Info, sequence numbers, timestamps and
//! RTCP composition run on whatever state the dialogue leaves.
//!
//! Request URIs may carry fault queries (`?denytcp&stall=2s&drop=1%25`, seeds in
//! `seeds/rtsp/faults*`): the core parses them, and a fake clock that moves a second per request
//! makes `session_expires`, `disconnect_every`, `stall` and `jitter`'s held packets fire.
//!
//! With auth on, Digest is driven past its nonce and response checks, as a client with the
//! password would: in an `Authorization` header, `NONCE` becomes the nonce of the last 401 this
//! connection got (or a fresh one), and `RESPONSE` the correct response for the header's other
//! fields, so `nc` tracking, `uri` matching, expiry and per-connection pinning all run on
//! fuzzer-chosen sequences.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use md5::{Digest as _, Md5};
use nvrkit_feed::fault::FaultSet;
use nvrkit_feed::fault::frames::{LoopGeometry, loop_clip};
use nvrkit_feed::rtsp::auth::Auth;
use nvrkit_feed::rtsp::core::{Action, Catalog, ConnConfig, Connection, StreamInfo, serialize};
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

fuzz_target!(|data: &[u8]| {
    let cat = catalog();
    // The first byte picks auth on/off and how the bytes are split into reads.
    let Some((&mode, wire)) = data.split_first() else {
        return;
    };
    let (auth_on, chunk) = (mode & 1 == 1, usize::from(mode >> 1).max(1));
    let auth = auth_on.then(|| Arc::new(Auth::new("u", "p")));
    let mut nonce = auth
        .as_ref()
        .and_then(|a| nonce_of(&a.challenges(false)[0]))
        .unwrap_or_default();
    let mut conn = Connection::new(ConnConfig {
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
    });
    let mut packets = Vec::new();
    let mut now = Instant::now();
    let mut framer = Framer::new();
    let mut seen = Vec::new();
    for piece in wire.chunks(chunk) {
        framer.push(piece);
        while let Some(msg) = framer.next_message() {
            seen.push(describe(&msg));
            if let Incoming::Request(mut req) = msg {
                if auth_on {
                    sign(&mut req, &nonce);
                }
                now += Duration::from_secs(1);
                let (resp, action) = conn.handle_at(&req, cat, now);
                if conn.disconnect_due(now) {
                    break;
                }
                if u16::from(resp.status()) == 401
                    && let Some(n) = resp
                        .header(&headers::WWW_AUTHENTICATE)
                        .and_then(|v| nonce_of(v.as_str()))
                {
                    nonce = n;
                }
                let _ = serialize(&resp);
                packets.clear();
                match action {
                    Action::Play => {
                        let _ = serialize(&conn.play("1", &cat.1[0], 0, &mut packets));
                        for (i, f) in cat.1.iter().enumerate() {
                            conn.frame_at(f, now + Duration::from_millis(i as u64), &mut packets);
                        }
                        if let Some(due) = conn.next_due() {
                            assert!(due <= now + Duration::from_secs(366 * 86_400));
                            conn.release(due, &mut packets);
                        }
                        conn.sender_reports(&mut packets);
                    }
                    Action::Teardown => conn.bye(&mut packets),
                    Action::Pause | Action::None => conn.frame(&cat.1[1], &mut packets),
                }
            }
        }
        assert!(framer.buffered() <= MAX_MESSAGE + chunk + 70_000);
    }
    // The same bytes in one read: the same messages.
    let mut whole = Framer::new();
    whole.push(wire);
    let mut again = Vec::new();
    while let Some(msg) = whole.next_message() {
        again.push(describe(&msg));
    }
    assert_eq!(seen, again, "split into reads of {chunk} bytes");
});

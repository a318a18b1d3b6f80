//! The RTMP publisher's side of a connection fed whatever a server (or anything answering on
//! its port) might send: the handshake, the chunk stream, control messages, AMF0 commands.
//! Nothing may panic, overflow the stack, or loop; every outcome is bytes, events or an error.
//!
//! First byte: bit 0 set = complete a real handshake first (with `rml_rtmp`'s server side), so
//! the rest reaches the chunk stream; the other bits choose how the rest is split into reads.
//! Seeds: server bytes after the handshake, captured from nginx-rtmp 1.2.2 and ffmpeg 5.1's
//! `-listen 1` answering `loopcam push` (`0x01` + capture).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_feed::rtmp::session::{Session, SessionConfig};
use nvrkit_feed::rtmp::{RtmpUrl, amf};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

fuzz_target!(|data: &[u8]| {
    let _ = amf::nesting_depth(data);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        url: RtmpUrl::parse("rtmp://127.0.0.1/live/cam").expect("valid"),
        fourcc: vec!["hvc1".into()],
    };
    let mut session = Session::new(config).expect("starts");
    if mode & 1 == 1 {
        let mut server = Handshake::new(PeerType::Server);
        let c0c1 = session.take_output();
        let s0s1s2 = match server.process_bytes(&c0c1).expect("our C0/C1 is valid") {
            HandshakeProcessResult::InProgress { response_bytes } => response_bytes,
            HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
        };
        session.receive(&s0s1s2).expect("a real S0/S1/S2 completes the handshake");
        let _ = session.take_output();
    }
    let piece = usize::from(mode >> 1) * 37 + 1;
    for chunk in rest.chunks(piece) {
        if session.receive(chunk).is_err() {
            break;
        }
        let _ = session.take_output();
    }
});

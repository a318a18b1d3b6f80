//! Arbitrary bytes on an RTSP connection: the framer splits them, the session core answers every
//! request. Nothing may panic, and the bytes a connection buffers stay bounded.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nvrkit_feed::rtsp::auth::Auth;
use nvrkit_feed::rtsp::core::{Catalog, ConnConfig, Connection, StreamInfo, serialize};
use nvrkit_feed::rtsp::framing::{Framer, Incoming, MAX_MESSAGE};

struct One(Arc<StreamInfo>);

impl Catalog for One {
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
        (name == self.0.name).then(|| self.0.clone())
    }
}

fn catalog() -> &'static One {
    static C: OnceLock<One> = OnceLock::new();
    C.get_or_init(|| {
        let d = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        One(Arc::new(StreamInfo {
            name: "sample".into(),
            tracks: d.tracks().to_vec(),
        }))
    })
}

fuzz_target!(|data: &[u8]| {
    let cat = catalog();
    // The first byte picks auth on/off and how the bytes are split into reads.
    let (auth, chunk) = match data.first() {
        Some(b) => (b & 1 == 1, usize::from(b >> 1).max(1)),
        None => return,
    };
    let mut conn = Connection::new(ConnConfig {
        auth: auth.then(|| Arc::new(Auth::new("u", "p"))),
        udp_ports: Some((8000, 8001)),
        session_timeout: Duration::from_secs(60),
        scheme: "rtsp",
        host: "127.0.0.1:8554".into(),
        server_ip: "127.0.0.1".into(),
    });
    let mut framer = Framer::new();
    for piece in data[1..].chunks(chunk) {
        framer.push(piece);
        while let Some(msg) = framer.next_message() {
            if let Incoming::Request(req) = msg {
                let (resp, _) = conn.handle(&req, cat);
                let _ = serialize(&resp);
                let _ = conn.play_response("1", &[(0, 1, 2)]);
            }
        }
        assert!(framer.buffered() <= MAX_MESSAGE + chunk + 70_000);
    }
});

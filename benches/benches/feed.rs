//! nvrkit-feed: RTP packetization, the loop source, and the RTSP session core.
//!
//! `cargo bench -p nvrkit-benches --bench feed`. The fan-out, first-frame and pacing comparison
//! with gst-rtsp-server is `benches/compare/loopcam.sh`; docs/benchmarks.md has the figures.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nvrkit_feed::rtp::Packetizer;
use nvrkit_feed::rtsp::core::{Catalog, ConnConfig, Connection, StreamInfo};
use nvrkit_feed::rtsp::framing::{Framer, Incoming};
use nvrkit_feed::{Clip, LoopSource};
use nvrkit_media::{Demuxer, Frame, WallTime};

struct One(Arc<StreamInfo>);
impl Catalog for One {
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
        (name == self.0.name).then(|| self.0.clone())
    }
}

fn bench(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/h264_main_720p25_aac.mp4");
    let demux = Demuxer::open(&path).unwrap();
    let frames: Vec<Frame> = demux.frames().collect::<Result<_, _>>().unwrap();
    let video: Vec<&Frame> = frames.iter().filter(|f| f.stream == 0).collect();
    let bytes: u64 = video.iter().map(|f| f.data.len() as u64).sum();

    let mut g = c.benchmark_group("rtp");
    let pk = Packetizer::new(&demux.tracks()[0].params, 1400);
    let mut payloads = Vec::new();
    let packets: usize = video
        .iter()
        .map(|f| {
            payloads.clear();
            pk.packetize(f, &[], &mut payloads);
            payloads.len()
        })
        .sum();
    g.throughput(Throughput::Elements(packets as u64));
    g.bench_function("H.264 720p packetize + RTP headers (packets/s)", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            let mut seq = 0u16;
            for f in &video {
                payloads.clear();
                pk.packetize(f, &[], &mut payloads);
                for p in &payloads {
                    p.write_packet(&mut out, 96, seq, 1234, 0x5555);
                    seq = seq.wrapping_add(1);
                }
            }
            out.len()
        })
    });
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("H.264 720p packetize + RTP headers (bytes/s)", |b| {
        let mut out = BytesMut::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for f in &video {
                payloads.clear();
                pk.packetize(f, &[], &mut payloads);
                for p in &payloads {
                    p.write_packet(&mut out, 96, 1, 1234, 0x5555);
                }
            }
            out.len()
        })
    });
    g.finish();

    let clip = Clip::load("clip", &demux).unwrap();
    let mut g = c.benchmark_group("loop source");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("next frame across seams (frames/s)", |b| {
        b.iter(|| {
            LoopSource::new(clip.clone(), WallTime::EPOCH)
                .take(10_000)
                .map(|f| f.pts)
                .sum::<i64>()
        })
    });
    g.finish();

    let cat = One(Arc::new(StreamInfo::new("clip", demux.tracks().to_vec())));
    let dialogue = b"OPTIONS rtsp://127.0.0.1:8554/clip RTSP/1.0\r\nCSeq: 1\r\n\r\n\
DESCRIBE rtsp://127.0.0.1:8554/clip RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n\
SETUP rtsp://127.0.0.1:8554/clip/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n\
SETUP rtsp://127.0.0.1:8554/clip/trackID=1 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\r\n\
PLAY rtsp://127.0.0.1:8554/clip/ RTSP/1.0\r\nCSeq: 5\r\n\r\n\
GET_PARAMETER rtsp://127.0.0.1:8554/clip RTSP/1.0\r\nCSeq: 6\r\n\r\n\
TEARDOWN rtsp://127.0.0.1:8554/clip RTSP/1.0\r\nCSeq: 7\r\n\r\n";
    let mut g = c.benchmark_group("rtsp session core");
    g.throughput(Throughput::Elements(7));
    g.bench_function(
        "frame + answer a whole session, 7 requests (requests/s)",
        |b| {
            b.iter(|| {
                let mut conn = connection();
                let mut framer = Framer::new();
                framer.push(black_box(dialogue));
                let mut n = 0;
                while let Some(Incoming::Request(req)) = framer.next_message() {
                    let (resp, _) = conn.handle(&req, &cat);
                    n += nvrkit_feed::rtsp::core::serialize(&resp).len();
                }
                n
            })
        },
    );
    // What one client costs per frame once playing: the core composes every packet's headers
    // and hands the payload slices over as data (the I/O layer only writes them).
    g.throughput(Throughput::Elements(packets as u64));
    g.bench_function(
        "compose a playing session's RTP, H.264 720p (packets/s)",
        |b| {
            let mut conn = connection();
            let mut framer = Framer::new();
            let play_end = dialogue.windows(13).position(|w| w == b"GET_PARAMETER");
            framer.push(&dialogue[..play_end.unwrap_or(dialogue.len())]);
            let mut out = Vec::new();
            while let Some(Incoming::Request(req)) = framer.next_message() {
                let _ = conn.handle(&req, &cat);
            }
            let _ = conn.play("5", video[0], 0, &mut out);
            b.iter(|| {
                let mut n = 0;
                for f in &video {
                    out.clear();
                    conn.frame(f, &mut out);
                    n += out.len();
                }
                n
            })
        },
    );
    g.finish();
}

/// A plain-TCP connection's session core, as the server makes one.
fn connection() -> Connection {
    Connection::new(ConnConfig {
        auth: None,
        udp_ports: None,
        session_timeout: Duration::from_secs(60),
        scheme: "rtsp",
        host: "127.0.0.1:8554".into(),
        server_ip: "127.0.0.1".into(),
        rtp: Default::default(),
    })
}

criterion_group!(benches, bench);
criterion_main!(benches);

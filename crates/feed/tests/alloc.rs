//! What one playing client costs per frame in the connection state machine and session core,
//! as the server drives them ([`Driver`]: the frame's due instant, its packets, the periodic
//! check): once warm, composing a frame's RTP packets (headers per client, payloads sliced
//! from the shared frame) allocates nothing, so fan-out to hundreds of clients adds no
//! allocator traffic per packet. Counted with a global allocator that counts this thread's
//! allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvrkit_feed::rtp::sender::{Chunks, Queue};
use nvrkit_feed::rtsp::core::{Catalog, ConnConfig, StreamInfo};
use nvrkit_feed::rtsp::driver::{Driver, Limits, Now, Rings, Step};
use nvrkit_media::{Demuxer, Frame, WallTime};

/// Counts allocations made by the current thread, then defers to the system allocator.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on unchanged to `System`; the count is a const-initialized
// thread-local `Cell` (no allocation, no destructor), touched with `try_with`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

struct One(Arc<StreamInfo>);

impl Catalog for One {
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
        (name == self.0.name).then(|| self.0.clone())
    }
}

/// A connection whose session set up every track (interleaved, or over UDP) and played, as
/// the server drives it ([`Driver`]), at `t0`.
fn playing(frames: &[Frame], cat: &One, udp: bool, t0: Now) -> Driver {
    let conn = ConnConfig {
        auth: None,
        udp_ports: Some((8000, 8001)),
        session_timeout: Duration::from_secs(60),
        scheme: "rtsp",
        host: "127.0.0.1:8554".into(),
        server_ip: "127.0.0.1".into(),
        rtp: Default::default(),
    };
    let limits = Limits {
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        strict_start: false,
        udp_burst_speed: 4,
    };
    let mut d = Driver::new(conn, limits, "127.0.0.3:4000".parse().unwrap(), t0.at);
    let transport = |t: usize| match udp {
        false => format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * t, 2 * t + 1),
        true => format!(
            "RTP/AVP;unicast;client_port={}-{}",
            5000 + 2 * t,
            5001 + 2 * t
        ),
    };
    let mut dialogue = String::new();
    for t in 0..cat.0.tracks.len() {
        dialogue += &format!(
            "SETUP rtsp://h/clip/trackID={t} RTSP/1.0\r\nCSeq: {t}\r\nTransport: {}\r\n\r\n",
            transport(t)
        );
    }
    dialogue += "PLAY rtsp://h/clip/ RTSP/1.0\r\nCSeq: 9\r\n\r\n";
    let mut out = Vec::new();
    let step = d.read(dialogue.as_bytes(), t0, cat, &mut out);
    assert!(matches!(step, Step::Play { .. }), "{step:?}");
    let rings = Rings {
        master: 0,
        all: (),
        video: None,
    };
    d.ring(rings);
    let first = frames.iter().find(|f| d.offer(f)).unwrap();
    d.start(first, &mut out);
    assert_eq!(d.resume(t0, cat, &mut out), Step::Continue);
    d
}

#[test]
fn a_warm_session_allocates_nothing_per_frame() {
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let clips = [
        Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap(),
        Demuxer::open(testdata.join("h264_main_720p25_aac.mp4")).unwrap(),
        Demuxer::open(testdata.join("h265_open_gop.mp4")).unwrap(),
    ];
    let mut counts = Vec::new();
    for (d, udp) in clips.iter().flat_map(|d| [(d, false), (d, true)]) {
        let frames: Vec<Frame> = d.frames().map(Result::unwrap).collect();
        let cat = One(Arc::new(StreamInfo::new("clip", d.tracks().to_vec())));
        let t0 = Now {
            at: Instant::now(),
            wall: WallTime::now(),
        };
        let mut conn = playing(&frames, &cat, udp, t0);
        // As the server's connection writes them: interleaved packets into its queue of chunks
        // (written, then dropped), UDP ones aside; each frame when the driver says it is due,
        // and the driver's periodic work after each batch.
        let (mut chunks, mut aside) = (Chunks::default(), Vec::new());
        let mut pass = |d: &mut Driver| {
            let mut packets = 0;
            for f in &frames {
                chunks.clear();
                aside.clear();
                let mut out = Queue {
                    chunks: &mut chunks,
                    udp: &mut aside,
                };
                let at = d.due(f, t0).unwrap_or(t0.at);
                d.frame(f, at, &mut out);
                assert_eq!(d.after_frames(at, |_| None, &mut out), Step::Continue);
                packets += chunks.len() + aside.len();
            }
            packets
        };
        // Warm: the buffers grow to the largest frame once.
        pass(&mut conn);
        let before = allocations();
        let packets = pass(&mut conn);
        let n = allocations() - before;
        assert!(packets > frames.len(), "every frame sent");
        let what = if udp { "UDP" } else { "TCP" };
        let pass = format!(
            "{}, {what}: {} frames, {packets} chunks or datagrams",
            d.name(),
            frames.len()
        );
        counts.push((pass, n));
    }
    assert!(
        counts.iter().all(|(_, n)| *n == 0),
        "allocations per pass: {counts:#?}"
    );
}

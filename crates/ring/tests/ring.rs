//! Integration tests: a 10 s stress test of 1 writer and 16 readers, a property test against a
//! `VecDeque` model, and async readers on tokio. (Not run under Miri or loom: see `src/tests.rs`
//! and `tests/loom.rs`.)
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nvrkit_media::{Frame, WallTime};
use nvrkit_ring::{
    Config, PushError, Pushed, Reader, RecvError, Ring, Start, TryRecvError, Writer, ring,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Stress test
// ---------------------------------------------------------------------------------------------

/// A small deterministic hash (splitmix64), for frame sizes, GOP lengths and reader pacing.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Payload of frame `i`: its number, then a byte pattern of it, at a size drawn from `i`.
fn payload(i: u64) -> Bytes {
    let len = 8 + (mix(i) % 6000) as usize;
    let mut v = vec![(i as u8).wrapping_mul(31); len];
    v[..8].copy_from_slice(&i.to_be_bytes());
    Bytes::from(v)
}

/// Checks that `f` is frame `i` exactly: no torn or stale payload.
fn check_payload(f: &Frame) -> Result<u64, String> {
    let i = u64::try_from(f.dts).map_err(|_| format!("negative dts {}", f.dts))?;
    let expect = payload(i);
    if f.data != expect {
        return Err(format!(
            "frame {i}: payload torn or stale ({} bytes)",
            f.data.len()
        ));
    }
    Ok(i)
}

/// Per reader: the frames must come in order, consecutive except across a lag, where exactly
/// `skipped` frames are missing, and each run must start at a video keyframe.
#[derive(Default)]
struct Checker {
    prev: Option<u64>,
    run_start: bool,
    frames: u64,
    lags: u64,
}

impl Checker {
    fn new() -> Self {
        Checker {
            run_start: true,
            ..Checker::default()
        }
    }

    fn frame(&mut self, f: &Frame, skipped: &mut Option<u64>) -> Result<(), String> {
        let i = check_payload(f)?;
        if self.run_start && !(f.keyframe && f.stream == 0) {
            return Err(format!("run starts at frame {i}, not a video keyframe"));
        }
        // A lag before the first frame (a late joiner whose start was evicted) skips frames
        // this reader never had a position among: nothing to compare with.
        let skipped = skipped.take().unwrap_or(0);
        if let Some(p) = self.prev {
            let expect = p + 1 + skipped;
            if i != expect {
                return Err(format!("frame {i} after {p}: expected {expect}"));
            }
        }
        self.prev = Some(i);
        self.run_start = false;
        self.frames += 1;
        Ok(())
    }

    fn lag(&mut self, skipped: u64, pending: &mut Option<u64>) -> Result<(), String> {
        if skipped == 0 {
            return Err("Lagged { skipped: 0 }".into());
        }
        *pending = Some(pending.unwrap_or(0) + skipped);
        self.run_start = true;
        self.lags += 1;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Style {
    /// `recv` as fast as it can.
    Blocking,
    /// `try_recv`, yielding when empty.
    Polling,
    /// `recv`, sleeping now and then: lags on purpose.
    Slow,
    /// `recv_async` on a tokio runtime.
    Async,
}

/// Frames read and lags seen, or what went wrong.
type ReaderResult = Result<(u64, u64), String>;

fn reader_loop(mut r: Reader, style: Style, seed: u64, done: &AtomicBool) -> ReaderResult {
    let mut c = Checker::new();
    let mut skipped = None;
    let mut n = 0u64;
    let rt = matches!(style, Style::Async).then(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    });
    loop {
        n += 1;
        let got = match style {
            Style::Blocking | Style::Slow => r.recv(),
            Style::Async => rt.as_ref().unwrap().block_on(r.recv_async()),
            Style::Polling => match r.try_recv() {
                Ok(f) => Ok(f),
                Err(TryRecvError::Empty) => {
                    std::thread::yield_now();
                    continue;
                }
                Err(TryRecvError::Lagged { skipped }) => Err(RecvError::Lagged { skipped }),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(e) => return Err(e.to_string()),
            },
        };
        match got {
            Ok(f) => c.frame(&f, &mut skipped)?,
            Err(RecvError::Lagged { skipped: s }) => c.lag(s, &mut skipped)?,
            Err(RecvError::Closed) => {
                if !done.load(Ordering::SeqCst) {
                    return Err("closed before the writer finished".into());
                }
                return Ok((c.frames, c.lags));
            }
            Err(e) => return Err(e.to_string()),
        }
        if matches!(style, Style::Slow) && mix(seed ^ n).is_multiple_of(512) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// 1 writer, 16 readers (blocking, polling, async and deliberately slow ones, plus late joiners),
/// random frame sizes and GOPs, audio interleaved, for `NVRKIT_RING_STRESS_SECS` (default 10)
/// seconds. Every reader's sequence must be in order, start each run at a video keyframe, skip
/// exactly what `Lagged` says, and carry intact payloads.
#[test]
fn stress_one_writer_sixteen_readers() {
    let secs: u64 = std::env::var("NVRKIT_RING_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // Small bounds so that eviction (and lagging) happens all the time. Spare slots ≥ readers,
    // so the writer never runs out and every frame is retained: seq == frame number.
    let cfg = Config::new()
        .max_frames(512)
        .spare_slots(32)
        .max_bytes(1 << 20)
        .max_duration(Duration::from_millis(300));
    let (mut w, ring) = ring(cfg).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let styles = [Style::Blocking, Style::Polling, Style::Slow, Style::Async];
    let spawn = |id: u64, r: Reader, tx: mpsc::Sender<(u64, ReaderResult)>| {
        let style = styles[id as usize % styles.len()];
        let done = done.clone();
        std::thread::spawn(move || {
            let result = reader_loop(r, style, id, &done);
            let _ = tx.send((id, result));
        })
    };
    let mut handles = Vec::new();
    for id in 0..12 {
        handles.push(spawn(id, ring.reader(Start::OldestKeyframe), tx.clone()));
    }

    let start = Instant::now();
    let mut i = 0u64;
    let mut gop_left = 0u64;
    let mut late = 12;
    while start.elapsed() < Duration::from_secs(secs) {
        // Video with GOPs of 1..=120 frames, an audio frame after every third video frame.
        let audio = i % 4 == 3;
        let key = !audio && gop_left == 0;
        if key {
            gop_left = 1 + mix(i ^ 0xabcd) % 120;
        }
        if !audio {
            gop_left -= 1;
        }
        let f = Frame {
            stream: usize::from(audio),
            timescale: 1000,
            dts: i as i64,
            pts: i as i64,
            duration: 1,
            wall: Some(WallTime::from_micros(i as i64 * 1000)),
            keyframe: key || audio,
            discard: false,
            discontinuity: false,
            data: payload(i),
        };
        assert_eq!(w.push(f), Ok(Pushed::Retained { seq: i }));
        i += 1;
        // Four readers join late, from the past.
        if late < 16 && i == (late - 11) * 50_000 {
            let t = WallTime::from_micros((i as i64 - 200) * 1000);
            handles.push(spawn(late, ring.reader(Start::AtOrBefore(t)), tx.clone()));
            late += 1;
        }
        if i.is_multiple_of(64) {
            // Let parked readers run now and then, as a paced source would.
            std::thread::yield_now();
        }
    }
    done.store(true, Ordering::SeqCst);
    drop(w);
    drop(tx);

    let mut results = Vec::new();
    while results.len() < handles.len() {
        // A hang guard, not a timing assertion: a reader parked forever is a lost wakeup.
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(r) => results.push(r),
            Err(e) => panic!("a reader never finished ({e}): lost wakeup?"),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    results.sort_by_key(|r| r.0);
    let (mut total, mut lags) = (0, 0);
    for (id, r) in &results {
        let (f, l) = r.as_ref().unwrap_or_else(|e| panic!("reader {id}: {e}"));
        total += f;
        lags += l;
    }
    // The test means something only if the writer ran far and the lag path was taken.
    assert!(i > 10_000, "the writer pushed only {i} frames");
    assert!(total > 0 && lags > 0, "{total} frames read, {lags} lags");
    // Every reader drained to the end: the last frame is retained, so each saw it.
    let s = ring.stats();
    assert!(s.frames > 0 && s.frames <= 512, "{s:?}");
    assert!(s.bytes <= (1 << 20) + 120 * 6008, "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// Property test against a VecDeque model
// ---------------------------------------------------------------------------------------------

/// The ring's contract, written the obvious way: a `VecDeque` of retained frames.
struct Model {
    max_frames: usize,
    max_bytes: u64,
    max_duration: i64,
    video: usize,
    /// (seq, frame) retained.
    frames: VecDeque<(u64, Frame)>,
    /// (start seq, indexed wall) of each retained GOP.
    gops: VecDeque<(u64, i64)>,
    next_seq: u64,
    last_key_wall: i64,
    newest_wall: i64,
    closed: bool,
}

impl Model {
    fn new(cfg: &Config) -> Self {
        Model {
            max_frames: cfg.get_max_frames(),
            max_bytes: cfg.get_max_bytes(),
            max_duration: cfg.get_max_duration().as_micros() as i64,
            video: cfg.get_video_stream(),
            frames: VecDeque::new(),
            gops: VecDeque::new(),
            next_seq: 0,
            last_key_wall: i64::MIN,
            newest_wall: i64::MIN,
            closed: false,
        }
    }

    fn head(&self) -> u64 {
        self.frames.front().map_or(self.next_seq, |f| f.0)
    }

    fn bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.1.data.len() as u64).sum()
    }

    fn evict_gop(&mut self) {
        self.gops.pop_front();
        let end = self.gops.front().map_or(self.next_seq, |g| g.0);
        self.frames.retain(|f| f.0 >= end);
    }

    fn push(&mut self, f: Frame) -> Result<Pushed, PushError> {
        let Some(wall) = f.wall else {
            return Err(PushError::MissingWallTime {
                stream: f.stream,
                dts: f.dts,
            });
        };
        let wall = wall.as_micros();
        let key = f.keyframe && f.stream == self.video;
        if !key && self.gops.is_empty() {
            return Ok(Pushed::AwaitingKeyframe);
        }
        let keep = usize::from(!key);
        while self.frames.len() >= self.max_frames && self.gops.len() > keep {
            self.evict_gop();
        }
        if self.frames.len() >= self.max_frames {
            while !self.gops.is_empty() {
                self.evict_gop();
            }
            return Ok(Pushed::AwaitingKeyframe);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if key {
            self.last_key_wall = self.last_key_wall.max(wall);
            self.gops.push_back((seq, self.last_key_wall));
        }
        self.newest_wall = self.newest_wall.max(wall);
        self.frames.push_back((seq, f));
        while self.gops.len() > 1
            && (self.bytes() > self.max_bytes
                || self.gops[1].1 <= self.newest_wall.saturating_sub(self.max_duration))
        {
            self.evict_gop();
        }
        Ok(Pushed::Retained { seq })
    }

    fn start(&self, start: Start) -> u64 {
        match start {
            Start::OldestKeyframe => self.head(),
            Start::NewestKeyframe => self.gops.back().map_or(self.head(), |g| g.0),
            Start::AtOrBefore(t) => self
                .gops
                .iter()
                .rev()
                .find(|g| g.1 <= t.as_micros())
                .map_or(self.head(), |g| g.0),
            _ => unreachable!(),
        }
    }

    fn try_recv(&self, next: &mut u64) -> Result<i64, TryRecvError> {
        let head = self.head();
        if *next < head {
            let skipped = head - *next;
            *next = head;
            return Err(TryRecvError::Lagged { skipped });
        }
        match self.frames.iter().find(|f| f.0 == *next) {
            Some(f) => {
                *next += 1;
                Ok(f.1.dts)
            }
            None if self.closed => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    fn snapshot(&self, since: WallTime) -> Vec<i64> {
        let from = self.start(Start::AtOrBefore(since));
        self.frames
            .iter()
            .filter(|f| f.0 >= from)
            .map(|f| f.1.dts)
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Push {
        stream: usize,
        key: bool,
        len: usize,
        step_ms: i64,
        wall: bool,
    },
    Reader(u8, i64),
    Recv(usize),
    Snapshot(i64),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, prop::bool::weighted(0.3), 0..3000usize, -5..40i64, prop::bool::weighted(0.97))
            .prop_map(|(stream, key, len, step_ms, wall)| Op::Push { stream, key, len, step_ms, wall }),
        1 => (0..3u8, -100..2000i64).prop_map(|(k, t)| Op::Reader(k, t)),
        6 => (0..8usize).prop_map(Op::Recv),
        1 => (-100..2000i64).prop_map(Op::Snapshot),
        1 => Just(Op::Close),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (1..40usize, 0..20_000u64, 0..500u64, 0..2usize).prop_map(|(frames, bytes, ms, video)| {
        Config::new()
            .max_frames(frames)
            .max_bytes(bytes)
            .max_duration(Duration::from_millis(ms))
            .video_stream(video)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_the_vecdeque_model(cfg in config(), ops in prop::collection::vec(op(), 1..300)) {
        let (w, ring) = ring(cfg.clone()).unwrap();
        let mut w: Option<Writer> = Some(w);
        let mut model = Model::new(&cfg);
        let mut readers: Vec<(Reader, u64)> = Vec::new();
        let mut ms = 0i64;
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push { stream, key, len, step_ms, wall } => {
                    let Some(writer) = w.as_mut() else { continue };
                    ms += step_ms;
                    let f = Frame {
                        stream,
                        timescale: 1000,
                        dts: n as i64,
                        pts: n as i64,
                        duration: 1,
                        wall: wall.then(|| WallTime::from_micros(ms * 1000)),
                        keyframe: key,
                        discard: false,
                        discontinuity: false,
                        data: Bytes::from(vec![n as u8; len]),
                    };
                    prop_assert_eq!(writer.push(f.clone()), model.push(f));
                }
                Op::Reader(kind, t) => {
                    let start = match kind {
                        0 => Start::OldestKeyframe,
                        1 => Start::NewestKeyframe,
                        _ => Start::AtOrBefore(WallTime::from_micros(t * 1000)),
                    };
                    readers.push((ring.reader(start), model.start(start)));
                }
                Op::Recv(i) => {
                    if readers.is_empty() { continue; }
                    let k = i % readers.len();
                    let (r, next) = &mut readers[k];
                    let got = r.try_recv().map(|f| f.dts);
                    prop_assert_eq!(got, model.try_recv(next), "reader {}", k);
                }
                Op::Snapshot(t) => {
                    let since = WallTime::from_micros(t * 1000);
                    let got: Vec<i64> = ring.snapshot(since).iter().map(|f| f.dts).collect();
                    prop_assert_eq!(got, model.snapshot(since));
                }
                Op::Close => {
                    w = None;
                    model.closed = true;
                }
            }
            let s = ring.stats();
            prop_assert_eq!(s.frames, model.frames.len() as u64);
            prop_assert_eq!(s.bytes, model.bytes());
            prop_assert_eq!(s.gops, model.gops.len() as u64);
            prop_assert_eq!(ring.is_closed(), model.closed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Async readers on tokio
// ---------------------------------------------------------------------------------------------

fn video(i: i64) -> Frame {
    Frame {
        stream: 0,
        timescale: 90_000,
        dts: i * 3600,
        pts: i * 3600,
        duration: 3600,
        wall: Some(WallTime::from_micros(i * 40_000)),
        keyframe: i % 25 == 0,
        discard: false,
        discontinuity: false,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
    }
}

async fn count(mut r: Reader) -> Result<i64, RecvError> {
    let mut n = 0;
    loop {
        match r.recv_async().await {
            Ok(f) => {
                assert_eq!(f.dts, n * 3600);
                n += 1;
            }
            Err(RecvError::Closed) => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_async_readers_get_every_paced_frame() {
    let (mut w, ring) = ring(Config::new()).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| tokio::spawn(count(ring.reader(Start::NewestKeyframe))))
        .collect();
    let writer = std::thread::spawn(move || {
        for i in 0..200 {
            w.push(video(i)).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    for t in tasks {
        let n = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("hang guard: an async reader was never woken")
            .unwrap();
        assert_eq!(n, Ok(200));
    }
    writer.join().unwrap();
}

#[tokio::test]
async fn a_cancelled_recv_loses_no_frame() {
    let (mut w, ring) = ring(Config::new()).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    // Cancel a pending recv (select against an elapsed timer), then push: the frame is still
    // the next one.
    let t = tokio::time::timeout(Duration::from_millis(1), r.recv_async()).await;
    assert!(t.is_err());
    w.push(video(0)).unwrap();
    assert_eq!(r.recv_async().await.map(|f| f.dts), Ok(0));
    drop(w);
    assert_eq!(r.recv_async().await, Err(RecvError::Closed));
}

/// `Ring` handles are `Send + Sync + Clone`, readers and the writer `Send`: what a server needs.
#[test]
fn handles_cross_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Ring>();
    sync::<Ring>();
    send::<Reader>();
    send::<Writer>();
}

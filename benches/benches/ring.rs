//! nvrkit-ring against its peers, side by side in one process (see docs/benchmarks.md):
//!
//! - `ring/flood/<peer>/<readers>`: one writer pushes 16 KiB `Bytes` frames as fast as it can,
//!   1, 4 or 16 reader threads receive (blocking) as fast as they can; time per pushed frame
//!   until every reader has finished. Peers: `tokio::sync::broadcast`, a crossbeam channel per
//!   reader (`try_send`, so the writer never blocks either), and `Mutex<VecDeque>` + `Condvar`.
//!   All hold 1,024 frames.
//! - `ring/push/<peer>`: time per push with 16 readers polling (`try_recv`, sleeping 1 ms when
//!   empty: present, none parked). Percentiles are printed after the criterion runs.
//! - `ring/snapshot_10s`: `snapshot` of the last 10 s of a 25 fps stream.
//! - Printed after: push p50/p99, delivery counts of the flood runs, and paced delivery latency
//!   at 1,000 frames/s to 16 parked async readers on tokio, against tokio broadcast.
//!
//! `cargo bench -p nvrkit-benches --bench ring` (about 4 minutes; `NVRKIT_BENCH_PRINT=` and a
//! criterion filter such as `-- flood` run less).
#![allow(clippy::print_stdout)] // reason: a bench prints its figures
#![allow(missing_docs)] // reason: criterion's macros generate undocumented items

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use nvrkit_media::{Frame, WallTime};
use nvrkit_ring::{Config, RecvError, Start, TryRecvError};

const CAPACITY: usize = 1024;
const READERS: [usize; 3] = [1, 4, 16];

fn frame(i: u64, payload: &Bytes) -> Frame {
    Frame {
        stream: 0,
        timescale: 90_000,
        dts: i as i64,
        pts: i as i64 * 3600,
        duration: 3600,
        wall: Some(WallTime::from_micros(i as i64 * 40_000)),
        keyframe: i.is_multiple_of(25),
        discard: false,
        discontinuity: false,
        data: payload.clone(),
    }
}

fn payload() -> Bytes {
    Bytes::from(vec![0x5a; 16 * 1024])
}

// ---------------------------------------------------------------------------------------------
// The peers, behind one shape: make a channel with n readers, push, close, readers count.
// ---------------------------------------------------------------------------------------------

trait Peer {
    const NAME: &'static str;
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    fn channel(readers: usize) -> (Self::Tx, Vec<Self::Rx>);
    fn push(tx: &mut Self::Tx, f: Frame);
    /// Receives until closed, storing the number of the next frame it expects in `progress`;
    /// returns the frames received.
    fn drain(rx: Self::Rx, progress: &AtomicU64) -> u64;
    /// Receives without blocking until empty, returns the count; `None` once closed.
    fn poll(rx: &mut Self::Rx) -> Option<u64>;
}

struct NvrRing;
impl Peer for NvrRing {
    const NAME: &'static str = "nvrkit-ring";
    type Tx = nvrkit_ring::Writer;
    type Rx = nvrkit_ring::Reader;
    fn channel(readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let cfg = Config::new()
            .max_frames(CAPACITY)
            .max_bytes(u64::MAX)
            .max_duration(Duration::from_secs(1 << 30));
        let (w, ring) = nvrkit_ring::ring(cfg).unwrap();
        let rx = (0..readers)
            .map(|_| ring.reader(Start::OldestKeyframe))
            .collect();
        (w, rx)
    }
    fn push(tx: &mut Self::Tx, f: Frame) {
        tx.push(f).unwrap();
    }
    fn drain(mut rx: Self::Rx, progress: &AtomicU64) -> u64 {
        let mut n = 0;
        loop {
            match rx.recv() {
                Ok(f) => {
                    progress.store(f.dts as u64 + 1, Ordering::Relaxed);
                    black_box(&f);
                    n += 1;
                }
                Err(RecvError::Lagged { .. }) => {}
                Err(_) => return n,
            }
        }
    }
    fn poll(rx: &mut Self::Rx) -> Option<u64> {
        let mut n = 0;
        loop {
            match rx.try_recv() {
                Ok(f) => {
                    black_box(&f);
                    n += 1;
                }
                Err(TryRecvError::Lagged { .. }) => {}
                Err(TryRecvError::Empty) => return Some(n),
                Err(_) => return None,
            }
        }
    }
}

struct TokioBroadcast;
impl Peer for TokioBroadcast {
    const NAME: &'static str = "tokio-broadcast";
    type Tx = tokio::sync::broadcast::Sender<Frame>;
    type Rx = tokio::sync::broadcast::Receiver<Frame>;
    fn channel(readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let (tx, _) = tokio::sync::broadcast::channel(CAPACITY);
        let rx = (0..readers).map(|_| tx.subscribe()).collect();
        (tx, rx)
    }
    fn push(tx: &mut Self::Tx, f: Frame) {
        let _ = tx.send(f);
    }
    fn drain(mut rx: Self::Rx, progress: &AtomicU64) -> u64 {
        use tokio::sync::broadcast::error::RecvError as E;
        let mut n = 0;
        loop {
            match rx.blocking_recv() {
                Ok(f) => {
                    progress.store(f.dts as u64 + 1, Ordering::Relaxed);
                    black_box(&f);
                    n += 1;
                }
                Err(E::Lagged(_)) => {}
                Err(E::Closed) => return n,
            }
        }
    }
    fn poll(rx: &mut Self::Rx) -> Option<u64> {
        use tokio::sync::broadcast::error::TryRecvError as E;
        let mut n = 0;
        loop {
            match rx.try_recv() {
                Ok(f) => {
                    black_box(&f);
                    n += 1;
                }
                Err(E::Lagged(_)) => {}
                Err(E::Empty) => return Some(n),
                Err(E::Closed) => return None,
            }
        }
    }
}

struct CrossbeamPerReader;
impl Peer for CrossbeamPerReader {
    const NAME: &'static str = "crossbeam-per-reader";
    type Tx = Vec<crossbeam_channel::Sender<Frame>>;
    type Rx = crossbeam_channel::Receiver<Frame>;
    fn channel(readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        (0..readers)
            .map(|_| crossbeam_channel::bounded(CAPACITY))
            .unzip()
    }
    fn push(tx: &mut Self::Tx, f: Frame) {
        // A full channel drops the frame for that reader: the writer must not block.
        for s in tx.iter() {
            let _ = s.try_send(f.clone());
        }
    }
    fn drain(rx: Self::Rx, progress: &AtomicU64) -> u64 {
        let mut n = 0;
        while let Ok(f) = rx.recv() {
            progress.store(f.dts as u64 + 1, Ordering::Relaxed);
            black_box(&f);
            n += 1;
        }
        n
    }
    fn poll(rx: &mut Self::Rx) -> Option<u64> {
        use crossbeam_channel::TryRecvError as E;
        let mut n = 0;
        loop {
            match rx.try_recv() {
                Ok(f) => {
                    black_box(&f);
                    n += 1;
                }
                Err(E::Empty) => return Some(n),
                Err(E::Disconnected) => return None,
            }
        }
    }
}

/// The obvious lock-based ring: a `VecDeque` of the last 1,024 frames under a mutex, a condvar
/// for parked readers (notified only when some reader waits), each reader with its own cursor.
struct MutexDeque;
struct MqInner {
    q: VecDeque<Frame>,
    base: u64,
    closed: bool,
    waiting: usize,
}
struct Mq {
    inner: Mutex<MqInner>,
    cv: Condvar,
}
struct MqTx(Arc<Mq>);
impl Drop for MqTx {
    fn drop(&mut self) {
        self.0.inner.lock().unwrap().closed = true;
        self.0.cv.notify_all();
    }
}
struct MqRx(Arc<Mq>, u64);
impl MqRx {
    /// `Ok(Some)` a frame, `Ok(None)` empty, `Err` closed.
    fn next(&mut self, block: bool) -> Result<Option<Frame>, ()> {
        let mut g = self.0.inner.lock().unwrap();
        loop {
            if self.1 < g.base {
                self.1 = g.base;
            }
            if let Some(f) = g.q.get((self.1 - g.base) as usize) {
                self.1 += 1;
                return Ok(Some(f.clone()));
            }
            if g.closed {
                return Err(());
            }
            if !block {
                return Ok(None);
            }
            g.waiting += 1;
            g = self.0.cv.wait(g).unwrap();
            g.waiting -= 1;
        }
    }
}
impl Peer for MutexDeque {
    const NAME: &'static str = "mutex-vecdeque";
    type Tx = MqTx;
    type Rx = MqRx;
    fn channel(readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let mq = Arc::new(Mq {
            inner: Mutex::new(MqInner {
                q: VecDeque::with_capacity(CAPACITY),
                base: 0,
                closed: false,
                waiting: 0,
            }),
            cv: Condvar::new(),
        });
        let rx = (0..readers).map(|_| MqRx(mq.clone(), 0)).collect();
        (MqTx(mq), rx)
    }
    fn push(tx: &mut Self::Tx, f: Frame) {
        let mut g = tx.0.inner.lock().unwrap();
        if g.q.len() == CAPACITY {
            g.q.pop_front();
            g.base += 1;
        }
        g.q.push_back(f);
        let wake = g.waiting > 0;
        drop(g);
        if wake {
            tx.0.cv.notify_all();
        }
    }
    fn drain(mut rx: Self::Rx, progress: &AtomicU64) -> u64 {
        let mut n = 0;
        while let Ok(Some(f)) = rx.next(true) {
            progress.store(f.dts as u64 + 1, Ordering::Relaxed);
            black_box(&f);
            n += 1;
        }
        n
    }
    fn poll(rx: &mut Self::Rx) -> Option<u64> {
        let mut n = 0;
        loop {
            match rx.next(false) {
                Ok(Some(f)) => {
                    black_box(&f);
                    n += 1;
                }
                Ok(None) => return Some(n),
                Err(()) => return None,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Flooded push + receive
// ---------------------------------------------------------------------------------------------

/// A counter on its own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Progress(AtomicU64);

/// Pushes `frames` with `readers` blocking readers; returns the time from the first push until
/// every reader has drained, and the frames the readers received in all.
///
/// The harness (not the channel) keeps the writer within half the capacity of the slowest
/// reader, yielding when it is ahead, so that no reader lags and every reader receives every
/// frame: the figure is the cost of delivering each frame to all readers. Unthrottled, a
/// writer on 2 cores outruns 16 readers and each of them receives 1 or 2 % of the frames
/// (lagging past the rest), which measures little but the push.
fn flood<P: Peer>(readers: usize, frames: u64, throttle: bool) -> (Duration, u64) {
    let (mut tx, rxs) = P::channel(readers);
    let payload = payload();
    let ready = Arc::new(Barrier::new(readers + 1));
    let progress: Arc<Vec<Progress>> =
        Arc::new((0..readers).map(|_| Progress::default()).collect());
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(k, rx)| {
            let ready = ready.clone();
            let progress = progress.clone();
            thread::spawn(move || {
                ready.wait();
                P::drain(rx, &progress[k].0)
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    let slack = CAPACITY as u64 / 2;
    for i in 0..frames {
        if throttle && i.is_multiple_of(64) {
            while progress
                .iter()
                .any(|p| i.saturating_sub(p.0.load(Ordering::Relaxed)) > slack)
            {
                thread::yield_now();
            }
        }
        P::push(&mut tx, frame(i, &payload));
    }
    drop(tx);
    let received = handles.into_iter().map(|h| h.join().unwrap()).sum();
    (start.elapsed(), received)
}

fn bench_flood(c: &mut Criterion) {
    flood_group(c, "ring/flood", true);
    flood_group(c, "ring/flood_lossy", false);
}

fn flood_group(c: &mut Criterion, name: &str, throttle: bool) {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    for readers in READERS {
        fn one<P: Peer>(
            g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
            readers: usize,
            throttle: bool,
        ) {
            g.bench_with_input(BenchmarkId::new(P::NAME, readers), &readers, |b, &r| {
                b.iter_custom(|iters| flood::<P>(r, iters, throttle).0)
            });
        }
        one::<NvrRing>(&mut g, readers, throttle);
        one::<TokioBroadcast>(&mut g, readers, throttle);
        one::<CrossbeamPerReader>(&mut g, readers, throttle);
        one::<MutexDeque>(&mut g, readers, throttle);
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Push latency with 16 readers present, none parked
// ---------------------------------------------------------------------------------------------

/// Pushes `frames` while 16 readers poll; returns each push's duration in ns.
fn push_times<P: Peer>(frames: u64) -> Vec<u32> {
    let (mut tx, rxs) = P::channel(16);
    let payload = payload();
    let handles: Vec<_> = rxs
        .into_iter()
        .map(|mut rx| {
            thread::spawn(move || {
                let mut n = 0;
                while let Some(k) = P::poll(&mut rx) {
                    n += k;
                    thread::sleep(Duration::from_millis(1));
                }
                n
            })
        })
        .collect();
    let mut times = Vec::with_capacity(frames as usize);
    for i in 0..frames {
        let f = frame(i, &payload);
        let t0 = Instant::now();
        P::push(&mut tx, f);
        times.push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
    }
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    times
}

fn bench_push(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/push");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    fn one<P: Peer>(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
        g.bench_function(BenchmarkId::new(P::NAME, 16), |b| {
            b.iter_custom(|iters| {
                let times = push_times::<P>(iters);
                Duration::from_nanos(times.iter().map(|&t| u64::from(t)).sum())
            })
        });
    }
    one::<NvrRing>(&mut g);
    one::<TokioBroadcast>(&mut g);
    one::<CrossbeamPerReader>(&mut g);
    one::<MutexDeque>(&mut g);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------------------------

fn bench_snapshot(c: &mut Criterion) {
    // 30 s of 25 fps video retained; snapshot the last 10 s.
    let (mut w, ring) =
        nvrkit_ring::ring(Config::new().max_duration(Duration::from_secs(30))).unwrap();
    let payload = payload();
    for i in 0..60 * 25 {
        w.push(frame(i, &payload)).unwrap();
    }
    let newest = ring.stats().newest.unwrap();
    let since = newest.add_micros(-10_000_000);
    let n = ring.snapshot(since).len();
    assert!((250..=275).contains(&n), "{n} frames");
    let mut g = c.benchmark_group("ring/snapshot_10s");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("snapshot", |b| b.iter(|| ring.snapshot(black_box(since))));
    // The snapshot alone: its frames are dropped outside the timed section (a recorder drops
    // them later, after writing them out). `iter_with_large_drop` would keep every result alive
    // until the end and measure the allocator's page faults instead.
    g.bench_function("snapshot_excluding_drop", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let frames = ring.snapshot(black_box(since));
                total += t0.elapsed();
                drop(black_box(frames));
            }
            total
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Printed figures: push percentiles, flood delivery, paced async delivery latency
// ---------------------------------------------------------------------------------------------

fn percentile(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn print_push_percentiles() {
    println!("\npush latency, 16 readers polling (none parked), 200,000 pushes of 16 KiB frames:");
    println!(
        "{:<22} {:>8} {:>8} {:>9}",
        "peer", "p50 ns", "p99 ns", "p99.9 ns"
    );
    fn one<P: Peer>() {
        let mut t = push_times::<P>(200_000);
        t.sort_unstable();
        println!(
            "{:<22} {:>8} {:>8} {:>9}",
            P::NAME,
            percentile(&t, 0.5),
            percentile(&t, 0.99),
            percentile(&t, 0.999)
        );
    }
    // The cost of the two clock reads, included in every figure above.
    let mut empty: Vec<u32> = (0..100_000)
        .map(|_| {
            let t0 = Instant::now();
            black_box(());
            t0.elapsed().as_nanos() as u32
        })
        .collect();
    empty.sort_unstable();
    one::<NvrRing>();
    one::<TokioBroadcast>();
    one::<CrossbeamPerReader>();
    one::<MutexDeque>();
    println!(
        "(clock overhead included above: p50 {} ns)",
        percentile(&empty, 0.5)
    );
}

fn print_flood_delivery() {
    println!(
        "\nflood delivery: share of 200,000 pushed frames each reader received (throttled | lossy):"
    );
    println!("{:<22} {:>15} {:>15} {:>15}", "peer", "1", "4", "16");
    fn one<P: Peer>() {
        let cells: Vec<String> = READERS
            .iter()
            .map(|&r| {
                let share = |throttle| {
                    let (_, got) = flood::<P>(r, 200_000, throttle);
                    got as f64 * 100.0 / (200_000.0 * r as f64)
                };
                format!("{:.1}% | {:.1}%", share(true), share(false))
            })
            .collect();
        println!(
            "{:<22} {:>15} {:>15} {:>15}",
            P::NAME,
            cells[0],
            cells[1],
            cells[2]
        );
    }
    one::<NvrRing>();
    one::<TokioBroadcast>();
    one::<CrossbeamPerReader>();
    one::<MutexDeque>();
}

/// 16 async readers parked on a 2-worker tokio runtime; a writer thread pushes 1,000 frames/s
/// for `frames` frames. Returns every (reader, frame) delivery latency in ns.
fn paced(frames: u64, make: MakePaced) -> Vec<u32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let base = Instant::now();
    let pushed_at: Arc<Vec<AtomicU64>> = Arc::new((0..frames).map(|_| AtomicU64::new(0)).collect());
    let started = Arc::new(AtomicUsize::new(0));
    let (mut push, tasks) = make(pushed_at.clone(), base, started.clone(), &rt);
    // Let every reader start and park before the first frame (the first `WARMUP` frames are
    // not counted either: on a loaded machine a task may first run late).
    while started.load(Ordering::Acquire) < 16 {
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(20));
    let payload = payload();
    let writer = thread::spawn(move || {
        let start = Instant::now();
        for i in 0..frames {
            let due = start + Duration::from_millis(i);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            let f = frame(i, &payload);
            pushed_at[i as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
            push(f);
        }
        // Dropping `push` closes the channel.
    });
    writer.join().unwrap();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(rt.block_on(t).unwrap());
    }
    all
}

/// A push function (dropping it closes the channel) and the readers' tasks, each returning its
/// delivery latencies.
type Paced = (
    Box<dyn FnMut(Frame) + Send>,
    Vec<tokio::task::JoinHandle<Vec<u32>>>,
);
/// Makes a [`Paced`] given the push instants (ns since `base`), a count each reader task bumps
/// when it starts, and the runtime.
type MakePaced =
    fn(Arc<Vec<AtomicU64>>, Instant, Arc<AtomicUsize>, &tokio::runtime::Runtime) -> Paced;

/// Frames not counted at the start of a paced run.
const WARMUP: u64 = 100;

fn paced_ring(
    pushed_at: Arc<Vec<AtomicU64>>,
    base: Instant,
    started: Arc<AtomicUsize>,
    rt: &tokio::runtime::Runtime,
) -> Paced {
    let (mut w, ring) = nvrkit_ring::ring(Config::new()).unwrap();
    let tasks = (0..16)
        .map(|_| {
            let mut r = ring.reader(Start::OldestKeyframe);
            let pushed_at = pushed_at.clone();
            let started = started.clone();
            rt.spawn(async move {
                started.fetch_add(1, Ordering::Release);
                let mut lat = Vec::new();
                loop {
                    match r.recv_async().await {
                        Ok(f) => {
                            let now = base.elapsed().as_nanos() as u64;
                            let t = pushed_at[f.dts as usize].load(Ordering::Acquire);
                            if f.dts as u64 >= WARMUP {
                                lat.push(now.saturating_sub(t) as u32);
                            }
                        }
                        Err(RecvError::Lagged { .. }) => {}
                        Err(_) => return lat,
                    }
                }
            })
        })
        .collect();
    (
        Box::new(move |f| {
            w.push(f).unwrap();
        }),
        tasks,
    )
}

fn paced_tokio(
    pushed_at: Arc<Vec<AtomicU64>>,
    base: Instant,
    started: Arc<AtomicUsize>,
    rt: &tokio::runtime::Runtime,
) -> Paced {
    let (tx, _) = tokio::sync::broadcast::channel::<Frame>(CAPACITY);
    let tasks = (0..16)
        .map(|_| {
            let mut rx = tx.subscribe();
            let pushed_at = pushed_at.clone();
            let started = started.clone();
            rt.spawn(async move {
                use tokio::sync::broadcast::error::RecvError as E;
                started.fetch_add(1, Ordering::Release);
                let mut lat = Vec::new();
                loop {
                    match rx.recv().await {
                        Ok(f) => {
                            let now = base.elapsed().as_nanos() as u64;
                            let t = pushed_at[f.dts as usize].load(Ordering::Acquire);
                            if f.dts as u64 >= WARMUP {
                                lat.push(now.saturating_sub(t) as u32);
                            }
                        }
                        Err(E::Lagged(_)) => {}
                        Err(E::Closed) => return lat,
                    }
                }
            })
        })
        .collect();
    (
        Box::new(move |f| {
            let _ = tx.send(f);
        }),
        tasks,
    )
}

fn print_paced() {
    const FRAMES: u64 = 2_100;
    const ROUNDS: usize = 5;
    println!(
        "\npaced delivery latency, 1,000 frames/s, 16 parked async readers (tokio, 2 workers),"
    );
    println!(
        "{ROUNDS} rounds of 2 s per peer, alternating; each round's p50/p99/p99.9 in µs, then the medians:"
    );
    let peers = [
        ("nvrkit-ring", paced_ring as MakePaced),
        ("tokio-broadcast", paced_tokio as MakePaced),
    ];
    let mut rounds: Vec<Vec<[f64; 3]>> = vec![Vec::new(); peers.len()];
    for _ in 0..ROUNDS {
        for (k, (_, make)) in peers.iter().enumerate() {
            let mut lat = paced(FRAMES, *make);
            lat.sort_unstable();
            let us = |p| f64::from(percentile(&lat, p)) / 1000.0;
            rounds[k].push([us(0.5), us(0.99), us(0.999)]);
        }
    }
    for (k, (name, _)) in peers.iter().enumerate() {
        let cells: Vec<String> = rounds[k]
            .iter()
            .map(|r| format!("{:.0}/{:.0}/{:.0}", r[0], r[1], r[2]))
            .collect();
        let median = |i: usize| {
            let mut v: Vec<f64> = rounds[k].iter().map(|r| r[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{:<16} {}  median p50 {:.1} p99 {:.1} p99.9 {:.1}",
            name,
            cells.join(" "),
            median(0),
            median(1),
            median(2)
        );
    }
}

criterion_group!(benches, bench_flood, bench_push, bench_snapshot);

fn main() {
    benches();
    // The printed figures take about a minute. `NVRKIT_BENCH_PRINT` picks some of them (a
    // comma list of push, delivery, paced; empty for none); a run that only lists or tests the
    // benchmarks prints none.
    let listing = std::env::args().any(|a| a == "--list" || a == "--test");
    let pick = std::env::var("NVRKIT_BENCH_PRINT").unwrap_or_else(|_| "push,delivery,paced".into());
    let want = |name: &str| !listing && pick.split(',').any(|p| p.trim() == name);
    if want("push") {
        print_push_percentiles();
    }
    if want("delivery") {
        print_flood_delivery();
    }
    if want("paced") {
        print_paced();
    }
    Criterion::default().configure_from_args().final_summary();
}

//! nvrkit-store: durable ingest against the raw disk written the same way, segment close time,
//! range lookup over a camera-year, open time, export throughput.
//!
//! `cargo bench -p nvrkit-benches --bench store`; docs/benchmarks.md has the figures. The store
//! lives in a temporary directory under `NVRKIT_BENCH_DIR` (default: the system temp dir), which
//! should be on the disk being measured (not tmpfs).

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nvrkit_media::{Demuxer, Frame, TrackInfo, WallTime};
use nvrkit_store::{
    ExportFormat, ImportOptions, Options, SegmentMeta, Store, TrackMeta, WriteBack,
};

/// A simulated 4 Mbit/s H.264 camera: 25 fps, 1 s GOP, a 100 kB keyframe and 16.7 kB frames
/// (500 kB per second), payloads that are valid length-prefixed NAL units.
struct Camera {
    track: Vec<TrackInfo>,
    key: Bytes,
    inter: Bytes,
}

fn nal(kind: u8, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len + 4);
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.push(kind);
    v.extend((1..len).map(|i| (i * 7) as u8));
    v.into()
}

impl Camera {
    fn new() -> Camera {
        let d = Demuxer::from_bytes("sample", nvrkit_media::sample()).unwrap();
        Camera {
            track: d.tracks()[..1].to_vec(),
            key: nal(0x65, 100_000),
            inter: nal(0x41, 16_666),
        }
    }

    /// Frame `i` (12.8 kHz timescale as the sample), with its wall time from `t0`.
    fn frame(&self, i: i64, t0: WallTime) -> Frame {
        let key = i % 25 == 0;
        Frame {
            stream: 0,
            timescale: 12_800,
            dts: i * 512,
            pts: i * 512,
            duration: 512,
            wall: Some(t0.add_ticks(i * 512, 12_800)),
            keyframe: key,
            discard: false,
            discontinuity: false,
            data: if key {
                self.key.clone()
            } else {
                self.inter.clone()
            },
        }
    }

    fn bytes_per_second(&self) -> u64 {
        (self.key.len() + 24 * self.inter.len()) as u64
    }
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("NVRKIT_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn t0() -> WallTime {
    WallTime::parse_rfc3339("2026-11-25T00:00:00Z").unwrap()
}

/// 60 s of one camera through a writer: one 30 MB segment, sealed (fdatasync + sidecar).
fn ingest(c: &mut Criterion) {
    let cam = Camera::new();
    let seconds = 60;
    let bytes = cam.bytes_per_second() * seconds;
    let mut g = c.benchmark_group("store/ingest 60 s of a 4 Mbit/s camera");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(bytes));
    for (name, wb) in [
        ("store, early write-back", WriteBack::Early),
        ("store, plain writes", WriteBack::Off),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let dir = bench_dir();
                    let store = Store::open(dir.path(), Options::default().write_back(wb)).unwrap();
                    let start = Instant::now();
                    let mut w = store.writer("cam", &cam.track).unwrap();
                    for k in 0..25 * seconds as i64 {
                        w.push(cam.frame(k, t0().add_micros(i as i64))).unwrap();
                    }
                    w.finish().unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
    }
    // The peer: the same bytes in the same pieces to a new file (O_EXCL), fdatasync, directory
    // sync: the raw disk measured the same way.
    g.bench_function("raw disk: write + fdatasync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = bench_dir();
                let start = Instant::now();
                let path = dir.path().join("raw");
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .unwrap();
                for k in 0..25 * seconds as i64 {
                    let data = if k % 25 == 0 { &cam.key } else { &cam.inter };
                    f.write_all(data).unwrap();
                }
                f.sync_data().unwrap();
                File::open(dir.path()).unwrap().sync_all().unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// Seal time of a 30 MB (60 s) segment, early write-back against plain writes: the time
/// `Writer::seal` takes (the last GOP, fdatasync, directory sync, sidecar). Criterion reports
/// the mean; the percentiles are printed.
fn seal(c: &mut Criterion) {
    let cam = Camera::new();
    let mut g = c.benchmark_group("store/seal a 30 MB segment");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    for (name, wb) in [
        ("early write-back", WriteBack::Early),
        ("plain writes", WriteBack::Off),
    ] {
        let mut seals: Vec<Duration> = Vec::new();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let dir = bench_dir();
                    let store = Store::open(dir.path(), Options::default().write_back(wb)).unwrap();
                    let mut w = store.writer("cam", &cam.track).unwrap();
                    for k in 0..25 * 60 {
                        w.push(cam.frame(k, t0().add_micros(i as i64))).unwrap();
                    }
                    let start = Instant::now();
                    w.seal().unwrap();
                    let t = start.elapsed();
                    seals.push(t);
                    total += t;
                }
                total
            })
        });
        seals.sort();
        let pct = |p: f64| seals[((seals.len() - 1) as f64 * p).round() as usize];
        report(&format!(
            "seal, {name}: {} seals, p50 {:?}, p99 {:?}, max {:?}",
            seals.len(),
            pct(0.5),
            pct(0.99),
            seals.last().unwrap()
        ));
    }
    g.finish();
}

#[allow(clippy::print_stdout)] // reason: a bench's own report line, next to criterion's
fn report(line: &str) {
    println!("{line}");
}

fn meta(start_us: i64, len_us: i64) -> SegmentMeta {
    SegmentMeta {
        version: 1,
        start_us,
        end_us: start_us + len_us,
        bytes: 30_000_000,
        blake3: "0".repeat(64),
        tracks: vec![TrackMeta {
            codec: "avc1.4D401F".into(),
            timescale: 90_000,
            width: 1920,
            height: 1080,
            frames: 1500,
        }],
        anchor_stream: 0,
        anchor_pts: 0,
        discontinuity: false,
        recovered: false,
        fragments: Vec::new(),
    }
}

/// A camera-year of 60 s segments (525,600) in the index; find the segments of one hour.
fn lookup(c: &mut Criterion) {
    let dir = bench_dir();
    Store::open(dir.path(), Options::default()).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let n = 365 * 1440;
    store.index_only_for_bench(
        "cam",
        (0..n).map(|i| meta(t0().as_micros() + i * 60_000_000, 60_000_000)),
    );
    let mut g = c.benchmark_group("store/lookup");
    let mut k = 0i64;
    g.bench_function("one hour among a camera-year of 60 s segments", |b| {
        b.iter(|| {
            k = (k + 7919) % (n - 60);
            let from = t0().add_micros(k * 60_000_000 + 30_000_000);
            let segs = store.segments("cam", from, from.add_micros(3_600_000_000));
            assert_eq!(segs.len(), 61);
            black_box(segs)
        })
    });
    g.finish();
}

/// Opening a store of 10,000 sealed segments (7 days of one camera): with day summaries, and
/// from the sidecars alone.
fn open(c: &mut Criterion) {
    let dir = bench_dir();
    let root = dir.path();
    Store::open(root, Options::default()).unwrap();
    let n = 10_000i64;
    for i in 0..n {
        let m = meta(t0().as_micros() + i * 60_000_000, 60_000_000);
        let p = nvrkit_store::layout::segment_paths(root, "cam", m.start());
        fs::create_dir_all(&p.dir).unwrap();
        let m = SegmentMeta { bytes: 0, ..m };
        fs::write(&p.segment, b"").unwrap();
        fs::write(&p.sidecar, m.to_json()).unwrap();
    }
    // A writable open writes the day summaries.
    drop(Store::open(root, Options::default()).unwrap());
    let mut g = c.benchmark_group("store/open 10,000 segments");
    g.sample_size(10);
    g.bench_function("with day summaries", |b| {
        b.iter(|| black_box(Store::open_read_only(root).unwrap()))
    });
    for day in fs::read_dir(root.join("cam")).unwrap() {
        let _ = fs::remove_file(day.unwrap().path().join("summary.json"));
    }
    g.bench_function("from sidecars", |b| {
        b.iter(|| black_box(Store::open_read_only(root).unwrap()))
    });
    g.finish();
    assert_eq!(
        Store::open_read_only(root)
            .unwrap()
            .segments("cam", t0(), t0().add_micros(n * 60_000_000))
            .len(),
        n as usize
    );
}

/// Export of 60 s of the sample clip (6 loops, H.264 + AAC, 10 s segments).
fn export(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(
        dir.path(),
        Options::default().segment_duration(Duration::from_secs(10)),
    )
    .unwrap();
    let clip = Demuxer::from_bytes("sample", nvrkit_media::sample()).unwrap();
    store
        .import(
            "cam",
            &clip,
            &ImportOptions::default().start(t0()).loops(6),
            |_| {},
        )
        .unwrap();
    let bytes = store.bytes(Some("cam"));
    let mut g = c.benchmark_group("store/export 60 s");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    for (name, format) in [
        ("faststart MP4", ExportFormat::Mp4),
        ("fragmented MP4", ExportFormat::Fragmented),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let e = store
                    .export(
                        "cam",
                        t0().add_micros(500_000),
                        t0().add_micros(60_000_000),
                        format,
                    )
                    .unwrap();
                black_box(e.write_to(&mut std::io::sink(), |_| {}).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ingest, seal, lookup, open, export);
criterion_main!(benches);

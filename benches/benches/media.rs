//! nvrkit-media: demux and mux throughput, and the open time of a one-hour file.
//!
//! `cargo bench -p nvrkit-benches --bench media`. The whole-process comparison with ffmpeg is
//! `benches/compare/media.sh`; docs/benchmarks.md has the figures.

use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nvrkit_media::mux::{FragmentedMuxer, ProgressiveMuxer};
use nvrkit_media::{Demuxer, Frame};

fn clip() -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/h264_main_720p25_aac.mp4");
    std::fs::read(path).expect("testdata clip").into()
}

fn frames(data: &Bytes) -> (Demuxer, Vec<Frame>) {
    let d = Demuxer::from_bytes("clip", data.clone()).unwrap();
    let f = d.frames().collect::<Result<Vec<_>, _>>().unwrap();
    (d, f)
}

/// One hour of the embedded sample (360 loops of 10 s), as a faststart file: 90,000 video and
/// ~169,000 audio samples in its moov.
fn one_hour_file(dir: &Path) -> std::path::PathBuf {
    let d = Demuxer::from_bytes("sample", nvrkit_media::sample()).unwrap();
    let base: Vec<Frame> = d.frames().collect::<Result<_, _>>().unwrap();
    let periods: Vec<i64> = d.tracks().iter().map(|t| t.duration).collect();
    let mut mux = ProgressiveMuxer::new(d.tracks()).unwrap();
    for lap in 0..360i64 {
        for f in &base {
            if f.discard && lap > 0 {
                continue;
            }
            let shift = lap * periods[f.stream];
            mux.push(Frame {
                dts: f.dts + shift,
                pts: f.pts + shift,
                ..f.clone()
            })
            .unwrap();
        }
    }
    let path = dir.join("one-hour.mp4");
    std::fs::write(&path, mux.finish().unwrap()).unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let data = clip();
    let (demux, all) = frames(&data);
    let payload: u64 = all.iter().map(|f| f.data.len() as u64).sum();

    let mut g = c.benchmark_group("demux 720p25 2 s clip");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("open + read every frame (MB/s of file)", |b| {
        b.iter(|| {
            let d = Demuxer::from_bytes("clip", black_box(data.clone())).unwrap();
            let mut n = 0usize;
            for f in d.frames() {
                n += f.unwrap().data.len();
            }
            n
        })
    });
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("read every frame (frames/s)", |b| {
        b.iter(|| demux.frames().map(|f| f.unwrap().data.len()).sum::<usize>())
    });
    g.finish();

    let mut g = c.benchmark_group("mux 720p25 2 s clip");
    g.throughput(Throughput::Bytes(payload));
    g.bench_function("fragmented (one moof per GOP)", |b| {
        b.iter(|| {
            let mut m = FragmentedMuxer::new(demux.tracks()).unwrap();
            let mut n = 0;
            for f in &all {
                n += m.push(f.clone()).unwrap().len();
            }
            n + m.finish().unwrap().len()
        })
    });
    g.bench_function("progressive (faststart)", |b| {
        b.iter(|| {
            let mut m = ProgressiveMuxer::new(demux.tracks()).unwrap();
            for f in &all {
                m.push(f.clone()).unwrap();
            }
            m.finish().unwrap().len()
        })
    });
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let hour = one_hour_file(dir.path());
    let mut g = c.benchmark_group("one-hour file");
    g.sample_size(20);
    g.bench_function("open (moov of 259,000 samples)", |b| {
        b.iter(|| Demuxer::open(black_box(&hour)).unwrap().tracks().len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

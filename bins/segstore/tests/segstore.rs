//! End-to-end tests of `segstore`: kill -9 of a writing process at random moments, a second
//! writer, readers beside a writer, and (with ffmpeg/ffprobe, run by `.ci/run`) the round trip of
//! third-party clips through `import` and `export`.

// The kill test prints its seed (to reproduce a failure) and what the kills hit.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nvrkit_media::{Demuxer, Frame, WallTime};
use nvrkit_store::{Options, Store};

fn segstore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segstore"));
    c.env("RUST_LOG", "warn");
    c
}

fn run_ok(c: &mut Command) -> Output {
    let out = c.output().expect("run segstore");
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn all_time() -> (WallTime, WallTime) {
    (WallTime::from_micros(0), WallTime::from_micros(1 << 55))
}

/// Per stream, (dts, pts, keyframe, payload) in decode order.
fn per_stream(
    frames: impl Iterator<Item = Frame>,
) -> BTreeMap<usize, Vec<(i64, i64, bool, bytes::Bytes)>> {
    let mut m: BTreeMap<usize, Vec<_>> = BTreeMap::new();
    for f in frames {
        m.entry(f.stream)
            .or_default()
            .push((f.dts, f.pts, f.keyframe, f.data));
    }
    m
}

fn stored(store: &Store, camera: &str) -> BTreeMap<usize, Vec<(i64, i64, bool, bytes::Bytes)>> {
    let (from, to) = all_time();
    match store.frames(camera, from, to) {
        Ok(it) => per_stream(it.map(Result::unwrap)),
        Err(nvrkit_store::Error::NoFootage { .. }) => BTreeMap::new(),
        Err(e) => panic!("{camera}: {e}"),
    }
}

/// Every file under `root`, relative.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

/// xorshift: reproducible random kill moments (the seed is printed).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn kill_9_at_random_moments_loses_at_most_the_open_fragment() {
    let runs: u64 = std::env::var("NVRKIT_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("NVRKIT_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| WallTime::now().as_micros() as u64 | 1);
    eprintln!("kill -9 test: {runs} runs, NVRKIT_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let import = |camera: &str, start: &str| {
        let mut c = segstore();
        c.args(["import", "--segment", "2s", "--store"])
            .arg(&root)
            .args(["--camera", camera, "--start", start]);
        c
    };
    // The reference: the same import, not interrupted. Its duration bounds the kill moments
    // (not asserted on: only used to spread the kills over the whole write).
    let t = Instant::now();
    run_ok(&mut import("ref", "2026-11-25T00:00:00Z"));
    let span_us = (t.elapsed().as_micros() as u64).max(1000);
    let reference = stored(&Store::open_read_only(&root).unwrap(), "ref");
    let total: usize = reference.values().map(Vec::len).sum();
    assert_eq!(total, 720, "the sample clip's frames");

    let mut stats = (0u64, 0u64, 0u64); // runs that lost everything, kept part, finished
    for run in 0..runs {
        let camera = format!("c{run}");
        let start = WallTime::parse_rfc3339("2026-11-26T00:00:00Z")
            .unwrap()
            .add_micros(run as i64 * 60_000_000)
            .to_rfc3339();
        let mut child = import(&camera, &start)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span_us * 5 / 4)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(&root, Options::default()).unwrap();
        let problems = store.verify(Some(&camera), |_| {});
        assert!(
            problems.is_empty(),
            "run {run} (seed {seed}): {problems:#?}"
        );
        assert!(store.recovery().quarantined.is_empty(), "run {run}");
        let got = stored(&store, &camera);
        for (stream, frames) in &got {
            let want = &reference[stream];
            assert!(frames.len() <= want.len(), "run {run}");
            assert!(
                frames.iter().zip(want).all(|(g, w)| g == w),
                "run {run} (seed {seed}): stream {stream} is not a prefix of what was written"
            );
        }
        // Whole fragments only: what is kept of the video ends just before a keyframe.
        if let Some(v) = got.get(&0)
            && v.len() < reference[&0].len()
        {
            assert!(reference[&0][v.len()].2, "run {run}: cut inside a GOP");
        }
        let n: usize = got.values().map(Vec::len).sum();
        match n {
            0 => stats.0 += 1,
            n if n == total => stats.2 += 1,
            _ => stats.1 += 1,
        }
        drop(store);
        // No orphans: every segment has its sidecar, no temporary or quarantined files.
        for f in files(&root) {
            assert!(
                !f.ends_with(".tmp") && !f.ends_with(".corrupt"),
                "run {run}: {f}"
            );
            if let Some(stem) = f.strip_suffix(".mp4") {
                assert!(
                    root.join(format!("{stem}.json")).exists(),
                    "run {run}: {f} has no sidecar"
                );
            }
        }
    }
    eprintln!(
        "kill -9 test: {} runs lost everything (killed in the first GOP), {} kept a prefix, {} finished",
        stats.0, stats.1, stats.2
    );
}

#[test]
fn a_second_writer_is_refused_and_readers_work_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // A live camera: the sample clip at the wall clock's pace.
    let mut writer = segstore()
        .args([
            "import",
            "--realtime",
            "--segment",
            "60s",
            "--camera",
            "live",
            "--store",
        ])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (hang guard: 20 s) until two GOPs are on disk.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ls = segstore()
            .args(["ls", "--segments", "--store"])
            .arg(&root)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&ls.stdout).into_owned();
        if ls.status.success() && text.contains(" open") {
            let store = Store::open_read_only(&root).unwrap();
            let (from, to) = all_time();
            let s = store.segments("live", from, to);
            if s.len() == 1 && s[0].meta.fragments.len() >= 2 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no open segment listed: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = segstore()
        .args(["import", "--camera", "other", "--store"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(
        msg.contains("already open for writing by another process (pid"),
        "{msg}"
    );
    // A reader exports the footage written so far.
    let out = dir.path().join("so-far.mp4");
    run_ok(
        segstore()
            .args([
                "export", "--camera", "live", "--from", "-1h", "--to", "+1h", "-o",
            ])
            .arg(&out)
            .arg("--store")
            .arg(&root),
    );
    let d = Demuxer::open(&out).unwrap();
    assert!(d.tracks()[0].frames >= 25, "{:?}", d.tracks());
    writer.kill().unwrap();
    writer.wait().unwrap();
}

// ---- interop: ffmpeg / ffprobe ----

fn shared_clip(name: &str) -> PathBuf {
    let dir = std::env::var_os("NVRKIT_SHARED_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing (set NVRKIT_SHARED_TESTDATA)",
        p.display()
    );
    p
}

/// One packet as ffprobe prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    stream: usize,
    pts: i64,
    dts: i64,
    duration: i64,
    size: usize,
    key: bool,
    discard: bool,
    hash: String,
}

fn ffprobe_packets(path: &Path) -> BTreeMap<usize, Vec<Packet>> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_data_hash", "md5", "-show_entries"])
        .arg("packet=stream_index,pts,dts,duration,size,flags,data_hash")
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is required for this test (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    let mut m: BTreeMap<usize, Vec<Packet>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let f: Vec<&str> = l.split(',').collect();
        let num = |i: usize| f[i].parse::<i64>().unwrap_or(i64::MIN);
        let p = Packet {
            stream: num(0) as usize,
            pts: num(1),
            dts: num(2),
            duration: num(3),
            size: num(4) as usize,
            key: f[5].contains('K'),
            discard: f[5].contains('D'),
            hash: f[6].to_owned(),
        };
        m.entry(p.stream).or_default().push(p);
    }
    m
}

fn ffmpeg_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is required for this test (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffmpeg failed on {}", path.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The packets presented, with timestamps relative to the first presented one of the stream.
fn presented(list: &[Packet], t0: Option<i64>) -> Vec<Packet> {
    let shown: Vec<&Packet> = list.iter().filter(|p| !p.discard).collect();
    let Some(first) = shown.first() else {
        return Vec::new();
    };
    let t0 = t0.unwrap_or(first.pts);
    shown
        .iter()
        .map(|p| Packet {
            pts: p.pts - t0,
            dts: p.dts - t0,
            // The last packet's duration is derived differently per layout; sizes, flags and
            // hashes are what identify a packet.
            duration: 0,
            ..(*p).clone()
        })
        .collect()
}

#[test]
#[ignore = "needs ffmpeg and ffprobe: run by .ci/run"]
fn import_then_export_round_trips_third_party_clips_for_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let t0 = WallTime::parse_rfc3339("2026-11-25T12:00:00Z").unwrap();
    for (camera, clip) in [("bunny", "bigbuckbunny.mp4"), ("bikes", "bikes.mp4")] {
        let src = shared_clip(clip);
        run_ok(
            segstore()
                .args([
                    "import",
                    "--segment",
                    "2s",
                    "--camera",
                    camera,
                    "--start",
                    &t0.to_rfc3339(),
                    "--store",
                ])
                .arg(&root)
                .arg(&src),
        );
        let source = ffprobe_packets(&src);
        let demux = Demuxer::open(&src).unwrap();
        let fps_frame = 1.0 / 25.0;

        // Every sealed segment plays alone.
        let store = Store::open_read_only(&root).unwrap();
        let (from, to) = all_time();
        for s in store.segments(camera, from, to) {
            let errors = ffmpeg_errors(&s.path);
            assert!(
                errors.is_empty(),
                "{}: ffmpeg says:\n{errors}",
                s.path.display()
            );
            assert!(!ffprobe_packets(&s.path).is_empty());
        }

        // The whole clip: packets equal the source's, stream by stream.
        let whole = dir.path().join(format!("{camera}-whole.mp4"));
        run_ok(
            segstore()
                .args([
                    "export",
                    "--camera",
                    camera,
                    "--from",
                    &t0.to_rfc3339(),
                    "--to",
                ])
                .arg(t0.add_micros(60_000_000).to_rfc3339())
                .arg("-o")
                .arg(&whole)
                .arg("--store")
                .arg(&root),
        );
        let errors = ffmpeg_errors(&whole);
        assert!(
            errors.is_empty(),
            "{camera} whole export: ffmpeg says:\n{errors}"
        );
        let got = ffprobe_packets(&whole);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            source.keys().collect::<Vec<_>>()
        );
        for (s, want) in &source {
            assert_eq!(
                presented(&got[s], None),
                presented(want, None),
                "{camera} whole, stream {s}"
            );
        }

        // A range that starts mid-GOP: 1.3 s to 3.7 s after the start.
        let (a, b) = (1.3, 3.7);
        let part = dir.path().join(format!("{camera}-part.mp4"));
        run_ok(
            segstore()
                .args(["export", "--camera", camera, "--from"])
                .arg(t0.add_micros((a * 1e6) as i64).to_rfc3339())
                .arg("--to")
                .arg(t0.add_micros((b * 1e6) as i64).to_rfc3339())
                .arg("-o")
                .arg(&part)
                .arg("--store")
                .arg(&root),
        );
        let errors = ffmpeg_errors(&part);
        assert!(
            errors.is_empty(),
            "{camera} part export: ffmpeg says:\n{errors}"
        );
        let d = ffprobe_duration(&part);
        assert!(
            (d - (b - a)).abs() <= fps_frame + 1e-3,
            "{camera}: duration {d}, asked {}",
            b - a
        );
        let got = ffprobe_packets(&part);
        for (s, want) in &source {
            let t = demux.tracks()[*s].timescale as f64;
            let origin = want.iter().find(|p| !p.discard).map_or(0, |p| p.pts);
            let dur = |p: &Packet| if p.duration > 0 { p.duration } else { 0 };
            // The source's packets shown in [a, b): those whose presentation overlaps it.
            let range: Vec<Packet> = want
                .iter()
                .filter(|p| !p.discard)
                .filter(|p| {
                    let start = (p.pts - origin) as f64 / t;
                    let end = (p.pts + dur(p) - origin) as f64 / t;
                    end > a + 1e-6 && start < b - 1e-6
                })
                .cloned()
                .collect();
            let got_shown = presented(&got[s], None);
            let want_shown = presented(&range, None);
            assert_eq!(
                got_shown
                    .iter()
                    .map(|p| (&p.hash, p.size, p.key, p.pts, p.dts))
                    .collect::<Vec<_>>(),
                want_shown
                    .iter()
                    .map(|p| (&p.hash, p.size, p.key, p.pts, p.dts))
                    .collect::<Vec<_>>(),
                "{camera} part, stream {s}"
            );
        }
    }
}

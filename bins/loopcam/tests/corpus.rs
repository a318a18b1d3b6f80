//! The generated loop corpus (`testdata/corpus.sh`: a pairwise set of clips over codec, frame
//! rate, audio rate/channels/end/length, B-frames and GOP shape), checked offline by
//! `loopcam check` and over the wire by ffprobe reading three seams of each clip over RTSP/TCP
//! (and every other clip over RTSP/UDP too) from a running `loopcam`, and of every H.264 clip
//! that `loopcam push` publishes to nginx-rtmp, six reads at a time. `#[ignore]`d: it needs
//! ffmpeg, ffprobe and nginx with libnginx-mod-rtmp; `.ci/run` runs it with the other interop
//! tests (about 3.5 minutes on 2 cores).

// The test prints the corpus matrix and its timings (run with --nocapture to see them).
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// ffprobe reads this many clips at once.
const PARALLEL_READS: usize = 6;
/// The RTP clock of video.
const VIDEO_CLOCK: i64 = 90_000;

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (ffmpeg/ffprobe must be installed)"))
}

fn json(out: &std::process::Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// ffprobe's packets and streams of a file or URL: per stream, its codec, time base and
/// (PTS, duration) in arrival order.
struct Probe {
    streams: BTreeMap<i64, (String, String, (i64, i64))>,
    /// Audio streams' sample rates.
    rates: BTreeMap<i64, i64>,
    packets: BTreeMap<i64, Vec<(i64, Option<i64>)>>,
}

fn probe(v: &Value) -> Probe {
    let mut streams = BTreeMap::new();
    let mut rates = BTreeMap::new();
    for s in v["streams"].as_array().into_iter().flatten() {
        if let Some(r) = s["sample_rate"].as_str().and_then(|r| r.parse().ok()) {
            rates.insert(s["index"].as_i64().unwrap_or(-1), r);
        }
        let tb = s["time_base"].as_str().unwrap_or("1/1");
        let (n, d) = tb.split_once('/').unwrap_or(("1", "1"));
        streams.insert(
            s["index"].as_i64().unwrap_or(-1),
            (
                s["codec_type"].as_str().unwrap_or("").to_owned(),
                s["codec_name"].as_str().unwrap_or("").to_owned(),
                (n.parse().unwrap_or(1), d.parse().unwrap_or(1)),
            ),
        );
    }
    let mut packets: BTreeMap<i64, Vec<(i64, Option<i64>)>> = BTreeMap::new();
    for p in v["packets"].as_array().into_iter().flatten() {
        let Some(pts) = p["pts"].as_i64() else {
            continue;
        };
        packets
            .entry(p["stream_index"].as_i64().unwrap_or(-1))
            .or_default()
            .push((pts, p["duration"].as_i64()));
    }
    Probe {
        streams,
        rates,
        packets,
    }
}

fn video_stream(p: &Probe) -> Option<i64> {
    p.streams
        .iter()
        .find(|(_, (kind, _, _))| kind == "video")
        .map(|(i, _)| *i)
}

/// The presentation steps of a file's video, in 90 kHz ticks (rounded): one step for a
/// constant frame rate, the set a variable one uses.
fn video_steps(file: &Path) -> BTreeSet<i64> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error"])
        .args([
            "-show_entries",
            "packet=stream_index,pts,duration:stream=index,codec_type,codec_name,time_base",
            "-of",
            "json",
        ])
        .arg(file));
    let p = probe(&json(&out, &file.display().to_string()));
    let v = video_stream(&p).expect("a video stream");
    let (_, _, (num, den)) = p.streams[&v];
    let mut pts: Vec<i64> = p.packets[&v].iter().map(|(t, _)| *t).collect();
    pts.sort_unstable();
    pts.windows(2)
        .map(|w| ((w[1] - w[0]) * num * VIDEO_CLOCK + den / 2) / den)
        .collect()
}

/// How to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// RTSP from loopcam, over `tcp` or `udp`.
    Rtsp(&'static str),
    /// RTMP read back from nginx-rtmp, which `loopcam push` publishes to.
    Rtmp,
}

/// Reads `secs` of `url` and returns what is wrong with it (empty: nothing): the video must
/// step by one of the clip's frame `steps` (90 kHz; ±1 tick of the wire's time base: 90 kHz
/// over RTSP, FLV's milliseconds over RTMP) and span three seams; audio must never step back
/// or by less than one frame.
fn wire_problems(
    url: &str,
    wire: Wire,
    secs: f64,
    period_secs: f64,
    steps: &BTreeSet<i64>,
) -> Vec<String> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]);
    match wire {
        Wire::Rtsp(transport) => cmd.args(["-rtsp_transport", transport]),
        // The hang guard of a read from a server that never gets the stream.
        Wire::Rtmp => cmd.args(["-rw_timeout", "15000000"]),
    };
    let out = run(cmd
        .arg("-read_intervals")
        .arg(format!("%+{}", secs.ceil()))
        .args([
            "-show_entries",
            "packet=stream_index,pts,duration:stream=index,codec_type,codec_name,time_base,sample_rate",
            "-of",
            "json",
        ])
        .arg(url));
    if !out.status.success() {
        return vec![format!(
            "ffprobe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )];
    }
    let p = probe(&json(&out, url));
    let mut problems = Vec::new();
    let Some(v) = video_stream(&p) else {
        return vec!["no video stream".into()];
    };
    let (_, _, (num, den)) = p.streams[&v];
    let second = den as f64 / num.max(1) as f64;
    // Video: sorted PTS (B-frames arrive out of order), the last half second left out (its
    // reordered frames may not all have arrived), and over RTMP the first half second too
    // (nginx starts a player wherever the stream is).
    let mut pts: Vec<i64> = p
        .packets
        .get(&v)
        .into_iter()
        .flatten()
        .map(|x| x.0)
        .collect();
    pts.sort_unstable();
    let half = (second / 2.0) as i64;
    let end = pts.last().copied().unwrap_or(0) - half;
    let start = pts.first().copied().unwrap_or(0) + if wire == Wire::Rtmp { half } else { 0 };
    pts.retain(|t| (start..=end).contains(t));
    let span =
        (pts.last().copied().unwrap_or(0) - pts.first().copied().unwrap_or(0)) as f64 / second;
    if span < 3.0 * period_secs {
        problems.push(format!(
            "video spans {span:.2} s, less than three loops of {period_secs:.2} s"
        ));
    }
    let allowed: Vec<f64> = steps
        .iter()
        .map(|s| *s as f64 * second / VIDEO_CLOCK as f64)
        .collect();
    for w in pts.windows(2) {
        let step = w[1] - w[0];
        if step <= 0 {
            problems.push(format!("video PTS {} repeated", w[1]));
        } else if !allowed.iter().any(|s| (s - step as f64).abs() <= 1.0) {
            problems.push(format!(
                "video step {step} at PTS {} is none of the clip's {allowed:?}",
                w[1]
            ));
        }
    }
    // Audio: arrival order; never back, never closer than one frame.
    for (&s, (kind, codec, (num, den))) in &p.streams {
        if kind != "audio" {
            continue;
        }
        // AAC: 1,024 samples in the stream's time base (RTP's clock is the sample rate; FLV
        // counts milliseconds).
        let rate = p.rates.get(&s).copied().unwrap_or(0);
        let frame = (codec == "aac" && rate > 0)
            .then(|| 1024.0 * *den as f64 / (*num as f64 * rate as f64).max(1.0));
        let packets = p.packets.get(&s).cloned().unwrap_or_default();
        if packets.len() < 10 {
            problems.push(format!("audio stream {s}: only {} packets", packets.len()));
        }
        for w in packets.windows(2) {
            let ((a, dur), (b, _)) = (w[0], w[1]);
            let least = frame.or(dur.map(|d| d as f64)).unwrap_or(1.0);
            if b <= a {
                problems.push(format!("audio stream {s}: PTS {b} after {a}"));
            } else if ((b - a) as f64) < least - 1.0 {
                problems.push(format!(
                    "audio stream {s}: step {} at PTS {b}, below one frame of {least:.1}",
                    b - a
                ));
            }
        }
    }
    problems.truncate(12);
    problems
}

#[test]
#[ignore = "interop: run by .ci/run (needs ffmpeg, ffprobe and nginx-rtmp)"]
fn every_corpus_clip_loops_seamlessly_offline_and_over_rtsp_and_rtmp() {
    let started = std::time::Instant::now();
    let root = nvrkit_testutil::workspace_root();
    let dir = std::env::var_os("NVRKIT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus"));
    let made = run(Command::new("bash")
        .arg(root.join("testdata/corpus.sh"))
        .arg(&dir));
    assert!(
        made.status.success(),
        "corpus.sh: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    print!("{}", String::from_utf8_lossy(&made.stdout));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mp4" || e == "mov"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 24,
        "{} clips in {}",
        files.len(),
        dir.display()
    );

    // Offline: every clip passes 1,000 loops; audio shorter than the video is an announced gap.
    let out = run(Command::new(env!("CARGO_BIN_EXE_loopcam"))
        .env("RUST_LOG", "error")
        .args(["check", "--json"])
        .args(&files));
    let report = json(&out, "loopcam check --json");
    assert!(
        out.status.success() && report["passed"] == Value::Bool(true),
        "loopcam check: {}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    let mut period = BTreeMap::new();
    for c in report["clips"].as_array().unwrap() {
        let file = c["file"].as_str().unwrap();
        let verdict = c["verdict"].as_str().unwrap();
        let aac = c["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["codec"] == "aac");
        if file.contains("_short_") && aac {
            assert_eq!(verdict, "gap announced", "{file}: {}", c["summary"]);
        }
        for t in c["tracks"].as_array().unwrap() {
            assert!(
                t["max_offset"].as_i64() <= t["offset_limit"].as_i64(),
                "{file}: {}",
                c["summary"]
            );
        }
        let stem = Path::new(file)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        period.insert(stem, c["period_micros"].as_i64().unwrap() as f64 / 1e6);
    }
    let offline = started.elapsed();

    // Over the wire: one loopcam serving every clip, ffprobe reading three seams of each.
    let mut server = Command::new(env!("CARGO_BIN_EXE_loopcam"))
        .env("RUST_LOG", "warn,mp4_atom=error")
        .args(["--listen", "127.0.0.1:0", "--no-onvif"])
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let urls: Vec<String> = (0..files.len())
        .map(|_| lines.next().expect("a URL per clip").unwrap())
        .collect();
    // Every clip over RTSP/TCP, every other one over RTSP/UDP too, and every H.264 clip pushed
    // by `loopcam push` into nginx-rtmp and read back (nginx-rtmp takes no H.265).
    let nginx = nvrkit_testutil::peers::NginxRtmp::start();
    let mut jobs: Vec<(String, Wire, PathBuf)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let url = urls
            .iter()
            .find(|u| u.ends_with(&format!("/{stem}")))
            .unwrap_or_else(|| panic!("no URL for {stem}: {urls:?}"))
            .clone();
        jobs.push((url.clone(), Wire::Rtsp("tcp"), f.clone()));
        if i % 2 == 1 {
            jobs.push((url, Wire::Rtsp("udp"), f.clone()));
        }
        if stem.contains("_h264_") {
            jobs.push((nginx.url(&stem), Wire::Rtmp, f.clone()));
        }
    }
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_READS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((url, wire, file)) = jobs.get(i) else {
                        break;
                    };
                    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
                    let p = period[&stem];
                    let steps = video_steps(file);
                    let push = (*wire == Wire::Rtmp).then(|| {
                        Command::new(env!("CARGO_BIN_EXE_loopcam"))
                            .env("RUST_LOG", "error")
                            .args(["push", url.as_str()])
                            .arg(file)
                            .stdout(Stdio::null())
                            .spawn()
                            .unwrap()
                    });
                    let problems = wire_problems(url, *wire, 3.3 * p + 1.5, p, &steps);
                    if let Some(mut push) = push {
                        let _ = push.kill();
                        let _ = push.wait();
                    }
                    if !problems.is_empty() {
                        failures.lock().unwrap().push(format!(
                            "{stem} over {wire:?}:\n  {}",
                            problems.join("\n  ")
                        ));
                    }
                }
            });
        }
    });
    drop(nginx);
    let _ = server.kill();
    let _ = server.wait();
    let failures = failures.into_inner().unwrap();
    println!(
        "corpus: {} clips, made and checked offline in {:.1} s, {} wire reads in {:.1} s",
        files.len(),
        offline.as_secs_f64(),
        jobs.len(),
        (started.elapsed() - offline).as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

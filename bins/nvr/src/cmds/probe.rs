//! `nvr probe [FILE]`: what is in an MP4 file, and whether it loops cleanly (with the verdict of
//! `loopcam check`).

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use nvrkit_media::demux::SampleInfo;
use nvrkit_media::{CodecParams, Demuxer, TrackInfo};

/// Arguments of `nvr probe`.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// The MP4 file to describe; the embedded sample clip when left out.
    pub file: Option<PathBuf>,
    /// Also read every frame and check its NAL framing, as a player would (reports the first
    /// bad frame; the throughput is printed on stderr).
    #[arg(long)]
    pub read_all: bool,
    /// One JSON document on stdout instead of the text report: the file, each track (codec,
    /// size, frame rate, frames, duration, B-frames), skipped tracks and the loop verdicts.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nvr probe`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let (demux, size, label) = match &args.file {
        Some(path) => {
            let size = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            let d = Demuxer::open(path)?;
            (d, size, path.display().to_string())
        }
        None => {
            let bytes = nvrkit_media::sample();
            let size = bytes.len() as u64;
            (
                Demuxer::from_bytes("sample.mp4", bytes)?,
                size,
                "the embedded sample clip (nvrkit_media::sample())".to_owned(),
            )
        }
    };
    if args.json {
        let mut doc = describe_json(&demux, size, &label);
        if args.read_all {
            let (frames, bytes) = read_all(&demux)?;
            doc["read_all"] = serde_json::json!({"frames": frames, "bytes": bytes});
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    let report = describe(&demux, size, &label);
    std::io::stdout().lock().write_all(report.as_bytes())?;
    if args.read_all {
        let (frames, bytes) = read_all(&demux)?;
        writeln!(
            std::io::stdout().lock(),
            "  read all: {frames} frames, {bytes} bytes of payload, every frame well formed"
        )?;
    }
    Ok(())
}

/// Reads every frame (checking its NAL framing): frames and payload bytes.
fn read_all(demux: &Demuxer) -> anyhow::Result<(u64, u64)> {
    let started = std::time::Instant::now();
    let (mut frames, mut bytes) = (0u64, 0u64);
    for frame in demux.frames() {
        let frame = frame.with_context(|| format!("reading frame {frames}"))?;
        frames += 1;
        bytes += frame.data.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(frames, bytes, secs, "read every frame");
    Ok((frames, bytes))
}

/// The report, as one JSON document (`nvr probe --json`).
pub fn describe_json(d: &Demuxer, size: u64, label: &str) -> serde_json::Value {
    use serde_json::json;
    let tracks: Vec<serde_json::Value> = d
        .tracks()
        .iter()
        .map(|t| {
            let samples = d.samples(t.stream);
            let mut j = json!({
                "stream": t.stream,
                "codec": t.params.name(),
                "sample_entry": t.sample_entry.to_string(),
                "frames": t.frames,
                "discarded": samples.iter().filter(|s| s.discard).count(),
                "timescale": t.timescale,
                "duration_s": t.duration as f64 / f64::from(t.timescale),
            });
            match &t.params {
                CodecParams::H264(v) | CodecParams::H265(v) => {
                    j["kind"] = "video".into();
                    j["profile"] = profile_name(&t.params).into();
                    j["codecs"] = t.params.rfc6381().into();
                    j["width"] = v.width.into();
                    j["height"] = v.height.into();
                    j["frame_rate"] = frame_rate(samples, t.timescale).into();
                    j["gops"] = gops(samples, t.timescale).into();
                    j["b_frames"] = samples.windows(2).any(|w| w[1].pts < w[0].pts).into();
                }
                CodecParams::Aac(a) => {
                    j["kind"] = "audio".into();
                    j["profile"] = profile_name(&t.params).into();
                    j["codecs"] = t.params.rfc6381().into();
                    j["sample_rate"] = a.sample_rate.into();
                    j["channels"] = a.channels.into();
                }
                CodecParams::G711(g) => {
                    j["kind"] = "audio".into();
                    j["sample_rate"] = g.sample_rate.into();
                    j["channels"] = g.channels.into();
                }
                _ => {}
            }
            j
        })
        .collect();
    let skipped: Vec<serde_json::Value> = d
        .skipped_tracks()
        .iter()
        .map(|s| {
            json!({"track_id": s.track_id, "handler": s.handler.to_string(),
                   "codec": s.codec.to_string(), "reason": s.reason.to_string()})
        })
        .collect();
    let check = match nvrkit_feed::Clip::load("probe", d) {
        Ok(clip) => {
            let r = nvrkit_feed::check::check_clip(&clip, nvrkit_feed::check::DEFAULT_LOOPS);
            json!({"passed": r.passed(), "verdict": r.verdict().as_str(), "summary": r.summary()})
        }
        Err(e) => json!({"passed": false, "error": e.to_string()}),
    };
    json!({
        "file": label,
        "bytes": size,
        "fragmented": d.is_fragmented(),
        "truncated_samples": d.dropped_samples(),
        "tracks": tracks,
        "skipped_tracks": skipped,
        "loop": loop_verdict(d),
        "loop_check": check,
    })
}

/// The report, as text.
pub fn describe(d: &Demuxer, size: u64, label: &str) -> String {
    let mut o = String::new();
    let layout = if d.is_fragmented() {
        "fragmented MP4"
    } else {
        "progressive MP4"
    };
    let _ = writeln!(o, "{label}: {size} bytes, {layout}");
    if d.dropped_samples() > 0 {
        let _ = writeln!(
            o,
            "  warning: the file is truncated; {} samples past its end are left out",
            d.dropped_samples()
        );
    }
    for t in d.tracks() {
        describe_track(&mut o, t, d.samples(t.stream));
    }
    for s in d.skipped_tracks() {
        let _ = writeln!(
            o,
            "  track {} ({} {}): skipped: {}",
            s.track_id, s.handler, s.codec, s.reason
        );
    }
    let _ = writeln!(o, "  loop: {}", loop_verdict(d));
    let _ = writeln!(o, "  loop check: {}", loop_check(d));
    o
}

/// The verdict of `loopcam check`: the clip's loop run offline for
/// [`nvrkit_feed::check::DEFAULT_LOOPS`] loops.
fn loop_check(d: &Demuxer) -> String {
    match nvrkit_feed::Clip::load("probe", d) {
        Ok(clip) => {
            nvrkit_feed::check::check_clip(&clip, nvrkit_feed::check::DEFAULT_LOOPS).summary()
        }
        Err(e) => format!("cannot be looped: {e}"),
    }
}

fn seconds(ticks: i64, timescale: u32) -> String {
    format!("{:.3} s", ticks as f64 / f64::from(timescale))
}

fn describe_track(o: &mut String, t: &TrackInfo, samples: &[SampleInfo]) {
    let discarded = samples.iter().filter(|s| s.discard).count();
    let disc = if discarded > 0 {
        format!(" ({discarded} discarded by the edit list)")
    } else {
        String::new()
    };
    match &t.params {
        CodecParams::H264(v) | CodecParams::H265(v) => {
            let profile = profile_name(&t.params);
            let _ = writeln!(
                o,
                "  stream {}: video {} ({}) {profile}, {}x{}, {}, {} frames{disc}, {}",
                t.stream,
                t.params.name(),
                t.sample_entry,
                v.width,
                v.height,
                frame_rate(samples, t.timescale),
                t.frames,
                seconds(t.duration, t.timescale),
            );
            let _ = writeln!(
                o,
                "    codecs: {}, timescale {}",
                t.params.rfc6381(),
                t.timescale
            );
            let _ = writeln!(o, "    GOPs: {}", gops(samples, t.timescale));
            let reordered = samples.windows(2).any(|w| w[1].pts < w[0].pts);
            let _ = writeln!(
                o,
                "    B-frames: {}",
                if reordered {
                    "yes (presentation order differs from decode order)"
                } else {
                    "no"
                }
            );
        }
        CodecParams::Aac(a) => {
            let _ = writeln!(
                o,
                "  stream {}: audio aac ({}) {}, {} Hz, {} channels, {} frames{disc}, {}",
                t.stream,
                t.sample_entry,
                profile_name(&t.params),
                a.sample_rate,
                a.channels,
                t.frames,
                seconds(t.duration, t.timescale),
            );
            let _ = writeln!(
                o,
                "    codecs: {}, timescale {}",
                t.params.rfc6381(),
                t.timescale
            );
        }
        CodecParams::G711(g) => {
            let _ = writeln!(
                o,
                "  stream {}: audio {} ({}), {} Hz, {} channels, {} frames of 20 ms{disc}, {}",
                t.stream,
                t.params.name(),
                t.sample_entry,
                g.sample_rate,
                g.channels,
                t.frames,
                seconds(t.duration, t.timescale),
            );
            let _ = writeln!(o, "    timescale {}", t.timescale);
        }
        _ => {}
    }
}

fn profile_name(p: &CodecParams) -> String {
    match p {
        CodecParams::H264(v) => {
            let name = match v.profile {
                66 => "Baseline",
                77 => "Main",
                88 => "Extended",
                100 => "High",
                110 => "High 10",
                122 => "High 4:2:2",
                244 => "High 4:4:4",
                _ => "profile",
            };
            format!("{name}@{}.{}", v.level / 10, v.level % 10)
        }
        CodecParams::H265(v) => {
            let name = match v.profile {
                1 => "Main",
                2 => "Main 10",
                3 => "Main Still Picture",
                4 => "Range Extensions",
                _ => "profile",
            };
            // general_level_idc is 30 × the level.
            format!("{name}@L{}", f64::from(v.level) / 30.0)
        }
        CodecParams::Aac(a) => match a.object_type {
            2 => "LC".into(),
            5 => "HE-AAC".into(),
            29 => "HE-AACv2".into(),
            n => format!("object type {n}"),
        },
        _ => String::new(),
    }
}

/// The frame rate from the most common decode-time step, as an exact fraction.
fn frame_rate(samples: &[SampleInfo], timescale: u32) -> String {
    let mut steps: Vec<i64> = samples.windows(2).map(|w| w[1].dts - w[0].dts).collect();
    if steps.is_empty() {
        return "one frame".into();
    }
    steps.sort_unstable();
    // The mode of the steps.
    let (mut best, mut best_n, mut i) = (steps[0], 0, 0);
    while i < steps.len() {
        let j = steps[i..].iter().take_while(|&&s| s == steps[i]).count();
        if j > best_n {
            (best, best_n) = (steps[i], j);
        }
        i += j;
    }
    if best <= 0 {
        return "variable frame rate".into();
    }
    let g = gcd(i64::from(timescale), best);
    let (num, den) = (i64::from(timescale) / g, best / g);
    let constant = best_n == steps.len();
    let cfr = if constant { "" } else { " (variable)" };
    if den == 1 {
        format!("{num} fps{cfr}")
    } else {
        format!("{num}/{den} ({:.3}) fps{cfr}", num as f64 / den as f64)
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs().max(1)
    } else {
        gcd(b, a % b)
    }
}

/// GOP lengths (frames from one keyframe to the next) as `25 frames (1.000 s) × 10`.
fn gops(samples: &[SampleInfo], timescale: u32) -> String {
    let keys: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.keyframe)
        .map(|(i, _)| i)
        .collect();
    if keys.is_empty() {
        return "no keyframe at all: a decoder cannot start this stream".into();
    }
    let mut lengths: Vec<(usize, i64)> = keys
        .iter()
        .zip(keys.iter().skip(1).chain(std::iter::once(&samples.len())))
        .map(|(&a, &b)| {
            let end = samples.get(b).map_or_else(
                || samples[b - 1].dts + i64::from(samples[b - 1].duration),
                |s| s.dts,
            );
            (b - a, end - samples[a].dts)
        })
        .collect();
    let mut runs: Vec<(usize, i64, usize)> = Vec::new();
    for (n, d) in lengths.drain(..) {
        match runs.last_mut() {
            Some(r) if r.0 == n && r.1 == d => r.2 += 1,
            _ => runs.push((n, d, 1)),
        }
    }
    let mut s = runs
        .iter()
        .take(6)
        .map(|&(n, d, k)| {
            let times = if k > 1 {
                format!(" × {k}")
            } else {
                String::new()
            };
            format!("{n} frames ({}){times}", seconds(d, timescale))
        })
        .collect::<Vec<_>>()
        .join(", ");
    if runs.len() > 6 {
        s.push_str(", …");
    }
    if keys[0] != 0 {
        s.push_str(&format!(
            "; the first {} frames precede the first keyframe",
            keys[0]
        ));
    }
    s
}

/// Whether the clip loops without a visible or audible seam.
fn loop_verdict(d: &Demuxer) -> String {
    let video = d.tracks().iter().find(|t| t.params.is_video());
    let Some(v) = video else {
        return "audio only: loops at its own length".into();
    };
    let mut notes = Vec::new();
    let vs = d.samples(v.stream);
    if !vs.first().is_some_and(|s| s.keyframe) {
        notes.push(
            "the video does not start with a keyframe (the loop starts at its first keyframe)"
                .to_owned(),
        );
    }
    let v_us = nvrkit_media::time::rescale(v.duration, v.timescale, 1_000_000);
    for a in d.tracks().iter().filter(|t| !t.params.is_video()) {
        let a_us = nvrkit_media::time::rescale(a.duration, a.timescale, 1_000_000);
        let diff = a_us - v_us;
        let frame_us = match &a.params {
            CodecParams::Aac(p) => i64::from(p.frame_length) * 1_000_000 / i64::from(p.sample_rate),
            CodecParams::G711(_) => 20_000, // the demuxer's frames
            _ => 0,
        };
        if diff.abs() > frame_us {
            let (which, by) = if diff > 0 {
                ("longer", diff)
            } else {
                ("shorter", -diff)
            };
            notes.push(format!(
                "audio stream {} is {} ms {which} than the video (the loop follows the video, so audio is cut or padded at each seam)",
                a.stream,
                by / 1000
            ));
        }
    }
    if notes.is_empty() {
        format!(
            "clean: every stream lasts {:.3} s and the video starts with a keyframe",
            v_us as f64 / 1e6
        )
    } else {
        format!("not clean: {}", notes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_report_says_what_the_text_says() {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let j = describe_json(&d, 1, "sample");
        let v = &j["tracks"][0];
        assert_eq!(
            (v["kind"].as_str(), v["codec"].as_str()),
            (Some("video"), Some("h264"))
        );
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(640), Some(360))
        );
        assert_eq!(v["frames"], 250);
        assert_eq!(v["frame_rate"], "25 fps");
        assert_eq!(v["b_frames"], false);
        let a = &j["tracks"][1];
        assert_eq!(
            (a["sample_rate"].as_u64(), a["channels"].as_u64()),
            (Some(48000), Some(2))
        );
        assert_eq!(j["loop_check"]["passed"], true);
        assert_eq!(j["loop_check"]["verdict"], "ok");
        assert!(j["loop"].as_str().unwrap().starts_with("clean"));
    }

    #[test]
    fn the_sample_is_described_and_loops_cleanly() {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let r = describe(&d, 1, "sample");
        assert!(
            r.contains("video h264 (avc1) Main@3.0, 640x360, 25 fps, 250 frames"),
            "{r}"
        );
        assert!(r.contains("GOPs: 25 frames (1.000 s) × 10"), "{r}");
        assert!(r.contains("B-frames: no"), "{r}");
        assert!(r.contains("48000 Hz, 2 channels"), "{r}");
        assert!(r.contains("loop: clean"), "{r}");
        assert!(
            r.contains("loop check: ok after 1000 loops: stream 0 h264 seam step 512 (frame 512)"),
            "{r}"
        );
    }

    #[test]
    fn audio_longer_than_video_is_reported() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/h264_high_bframes_longaudio.mp4"
        );
        let d = Demuxer::open(path).unwrap();
        let r = describe(&d, 1, "x");
        assert!(r.contains("B-frames: yes"), "{r}");
        assert!(
            r.contains("loop: not clean: audio stream 1 is 500 ms longer"),
            "{r}"
        );
        assert!(r.contains("1 discarded by the edit list"), "{r}");
        assert!(r.contains("frames dropped per loop"), "{r}");
    }

    #[test]
    fn g711_in_mov_is_described() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/h264_pcmu8k.mov"
        );
        let d = Demuxer::open(path).unwrap();
        let r = describe(&d, 1, "x");
        assert!(
            r.contains("audio pcm_mulaw (ulaw), 8000 Hz, 1 channels, 150 frames of 20 ms, 2.990 s"),
            "{r}"
        );
    }

    #[test]
    fn ntsc_rate_is_an_exact_fraction() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/h264_ntsc_29.97.mp4"
        );
        let d = Demuxer::open(path).unwrap();
        let r = describe(&d, 1, "x");
        assert!(r.contains("30000/1001 (29.970) fps"), "{r}");
    }
}

//! The frame and timestamp faults of loopcam (issue 16, "Fault modes"), each shown to ffprobe
//! or ffmpeg reading the path over RTSP/TCP: `ts_reset_at_seam` (timestamps restart at the
//! seam), `dts_backwards_at_seam` (a timestamp that goes back), `noidr=2s` (the first keyframe
//! two seconds after the start), `fps=12.5` (half the frames of a 25 fps clip, every reference
//! frame among them), `sps_change_at_seam=OTHER` (the decoded size changes at the seam), and
//! `fps` out of reach refused at start naming the clip and the rate it reaches.
//!
//! The clips are made here by ffmpeg (2 s each, so a seam comes within seconds): `plain`
//! 320x180 H.264 without B-frames, 1 s GOPs; `ibbp`, the same with two non-reference B-frames
//! between reference frames (no B-pyramid: 2 of 3 frames droppable); `big`, `plain` at
//! 640x360. `#[ignore]`d: needs ffmpeg and ffprobe (`.ci/run` installs them). Loopback only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nvrkit_testutil::peers::{free_port, wait_for_port};
use serde_json::Value;

/// A running loopcam, killed on drop.
struct Loopcam {
    child: Child,
    port: u16,
}

impl Drop for Loopcam {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Loopcam {
    fn start(clips: &[&Path]) -> Loopcam {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_loopcam"))
            .env("RUST_LOG", "warn")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--no-udp",
                "--no-onvif",
            ])
            .args(clips)
            .stdout(Stdio::piped())
            .spawn()
            .expect("loopcam");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("a URL");
        wait_for_port(port, "loopcam");
        Loopcam { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (ffmpeg and ffprobe must be installed)"))
}

/// The test clips, made once per test in a directory of its own.
struct Clips {
    dir: tempfile::TempDir,
}

impl Clips {
    fn make() -> Clips {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, size, x264) in [
            (
                "plain",
                "320x180",
                "bframes=0:keyint=25:min-keyint=25:scenecut=0",
            ),
            (
                "ibbp",
                "320x180",
                "bframes=2:b-pyramid=none:b-adapt=0:keyint=25:min-keyint=25:scenecut=0",
            ),
            (
                "big",
                "640x360",
                "bframes=0:keyint=25:min-keyint=25:scenecut=0",
            ),
        ] {
            let out = run(Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
                .arg(format!("testsrc2=size={size}:rate=25"))
                .args([
                    "-t", "2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "36",
                ])
                .args(["-pix_fmt", "yuv420p", "-x264-params", x264])
                .arg(dir.path().join(format!("{name}.mp4"))));
            assert!(
                out.status.success(),
                "ffmpeg making {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Clips { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.mp4"))
    }
}

/// ffprobe's video packets of `url` over RTSP/TCP for `seconds` of media: (pts in seconds,
/// keyframe flag), in arrival order.
fn video_packets(url: &str, seconds: u32) -> Vec<(f64, bool)> {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
        ])
        .args(["-read_intervals", &format!("%+{seconds}")])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "json", url]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe {url}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["packets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let pts: f64 = p["pts_time"].as_str()?.parse().ok()?;
            let key = p["flags"].as_str().is_some_and(|f| f.starts_with('K'));
            Some((pts, key))
        })
        .collect()
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn ts_reset_at_seam_makes_ffprobe_see_timestamps_restart() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain")]);
    let got = video_packets(&cam.url("plain?ts_reset_at_seam"), 5);
    assert!(got.len() > 60, "{} packets", got.len());
    let start = got[0].0;
    let back: Vec<(f64, f64)> = got
        .windows(2)
        .filter(|w| w[1].0 < w[0].0)
        .map(|w| (w[0].0, w[1].0))
        .collect();
    assert!(!back.is_empty(), "no restart in {got:?}");
    for (before, after) in &back {
        // Back to where the session started, from nearly a whole loop (2 s) later.
        assert!((after - start).abs() < 0.002, "{after} against {start}");
        assert!(before - after > 1.0, "{before} → {after}");
    }
    // The same path without the fault runs on.
    let plain = video_packets(&cam.url("plain"), 3);
    assert!(plain.windows(2).all(|w| w[1].0 > w[0].0), "{plain:?}");
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn dts_backwards_at_seam_makes_ffprobe_see_a_dts_go_back() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain")]);
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
        ])
        .args(["-read_intervals", "%+5"])
        .args(["-show_entries", "packet=dts_time", "-of", "csv=p=0"])
        .arg(cam.url("plain?dts_backwards_at_seam")));
    let dts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert!(dts.len() > 60, "{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<f64> = dts.windows(2).map(|w| w[1] - w[0]).collect();
    let back: Vec<&f64> = steps.iter().filter(|s| **s < 0.0).collect();
    assert!(!back.is_empty(), "no DTS went back: {dts:?}");
    // One frame (40 ms) before the last of the loop before.
    for s in back {
        assert!((s + 0.04).abs() < 0.002, "{s}");
    }
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn noidr_puts_the_first_keyframe_two_seconds_after_the_start() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain")]);
    let got = video_packets(&cam.url("plain?noidr=2s"), 4);
    let start = got.first().expect("packets").0;
    let key = got.iter().find(|p| p.1).expect("a keyframe at last");
    assert!(
        key.0 - start >= 2.0 - 1e-6,
        "keyframe at {} of {start}",
        key.0
    );
    assert!(!got[0].1, "the stream starts without one");
    // Without the fault the stream starts at a keyframe.
    let plain = video_packets(&cam.url("plain"), 1);
    assert!(plain[0].1, "{plain:?}");
}

/// The H.264 slices of an Annex B stream: (nal_ref_idc != 0) per slice.
fn slice_refs(annex_b: &[u8]) -> Vec<bool> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < annex_b.len() {
        if annex_b[i..i + 3] == [0, 0, 1] {
            let h = annex_b[i + 3];
            if matches!(h & 0x1f, 1 | 5) {
                out.push(h & 0x60 != 0);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// The slices ffmpeg receives from `input` in `seconds` of media, copied as H.264 Annex B.
fn received_slices(input: &str, seconds: u32) -> Vec<bool> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if input.starts_with("rtsp://") {
        cmd.args(["-rtsp_transport", "tcp"]);
    }
    let out = run(cmd
        .args([
            "-i",
            input,
            "-t",
            &seconds.to_string(),
            "-map",
            "0:v:0",
            "-c",
            "copy",
        ])
        .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264", "-"]));
    assert!(
        out.status.success(),
        "ffmpeg {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    slice_refs(&out.stdout)
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn fps_halves_a_25_fps_clip_keeping_every_reference_frame() {
    let clips = Clips::make();
    let file = clips.path("ibbp");
    let own = received_slices(&file.to_string_lossy(), 2);
    let own_refs = own.iter().filter(|r| **r).count();
    assert_eq!(own.len(), 50, "2 s at 25 fps");
    assert!(
        own_refs <= 25,
        "{own_refs} reference frames leave room for 12.5 fps"
    );
    let cam = Loopcam::start(&[&file]);
    // Two whole loops, read by ffmpeg.
    let got = received_slices(&cam.url("ibbp?fps=12.5"), 4);
    let refs = got.iter().filter(|r| **r).count();
    assert!(
        got.len().abs_diff(50) <= 2,
        "{} frames in 4 s, not about 12.5 a second",
        got.len()
    );
    assert!(
        refs.abs_diff(2 * own_refs) <= 1,
        "{refs} reference frames in two loops of {own_refs}"
    );
    // The path without the fault still sends them all.
    let whole = received_slices(&cam.url("ibbp"), 2);
    assert!(whole.len().abs_diff(50) <= 2, "{}", whole.len());
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn fps_out_of_reach_is_refused_naming_the_clip_and_the_reachable_rate() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain")]);
    // Every frame of `plain` is a reference frame: 25 fps is all it reaches.
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-rtsp_transport", "tcp", "-show_streams"])
        .arg(cam.url("plain?fps=12.5")));
    assert!(!out.status.success(), "served anyway");
    drop(cam);
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn sps_change_at_seam_changes_the_decoded_size_at_the_seam() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain"), &clips.path("big")]);
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
        ])
        .args(["-read_intervals", "%+5"])
        .args([
            "-show_entries",
            "frame=pts_time,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(cam.url("plain?sps_change_at_seam=big")));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sizes: Vec<String> = Vec::new();
    for l in text.lines() {
        let size = l.split(',').skip(1).collect::<Vec<_>>().join("x");
        if sizes.last() != Some(&size) {
            sizes.push(size);
        }
    }
    assert!(
        sizes.windows(2).any(|w| w == ["320x180", "640x360"])
            || sizes.windows(2).any(|w| w == ["640x360", "320x180"]),
        "sizes seen: {sizes:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

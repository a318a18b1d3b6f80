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

use std::io::{BufRead, BufReader, Read, Write};
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
        // Its URLs are read to the end: a closed pipe would stop it at the second line.
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).count());
        wait_for_port(port, "loopcam");
        Loopcam { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }
}

/// `ffprobe` of an RTSP URL's first video stream over TCP (what every test here reads).
fn ffprobe_video_over_tcp() -> Command {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-rtsp_transport",
        "tcp",
        "-select_streams",
        "v:0",
    ]);
    cmd
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

/// ffprobe's first `n` video packets of `url` over RTSP/TCP: (pts in seconds, NaN where
/// ffprobe has none; keyframe flag), in arrival order. Counted in packets, not seconds: with
/// timestamps that restart, a span of media time may never end.
fn video_packets(url: &str, n: u32) -> Vec<(f64, bool)> {
    let out = run(ffprobe_video_over_tcp()
        .args(["-read_intervals", &format!("%+#{n}")])
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
        .map(|p| {
            // ffmpeg gives the first packet over RTSP no PTS ("N/A"): NaN here.
            let pts = p["pts_time"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(f64::NAN);
            let key = p["flags"].as_str().is_some_and(|f| f.starts_with('K'));
            (pts, key)
        })
        .collect()
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn ts_reset_at_seam_makes_ffprobe_see_timestamps_restart() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain")]);
    let got = video_packets(&cam.url("plain?ts_reset_at_seam"), 125);
    assert!(got.len() > 100, "{} packets", got.len());
    // ffmpeg counts PTS from RTP-Info's rtptime, where the session started.
    let start = 0.0;
    let back: Vec<(f64, f64)> = got
        .windows(2)
        .filter(|w| w[1].0 < w[0].0)
        .map(|w| (w[0].0, w[1].0))
        .collect();
    assert!(!back.is_empty(), "no restart in {got:?}");
    for (before, after) in &back {
        // Back to where the session started, from the seam: a GOP (1 s) or the whole loop (2 s)
        // later, as the session started at the loop's second keyframe or its first (which one
        // depends on when ffprobe's PLAY comes: on a loaded machine, after the first second).
        assert!((after - start).abs() < 0.002, "{after} against {start}");
        assert!(before - after > 0.9, "{before} → {after}");
    }
    // The same path without the fault runs on.
    let plain: Vec<f64> = video_packets(&cam.url("plain"), 75)
        .into_iter()
        .map(|p| p.0)
        .filter(|t| !t.is_nan())
        .collect();
    assert!(
        plain.len() > 70 && plain.windows(2).all(|w| w[1] > w[0]),
        "{plain:?}"
    );
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn dts_backwards_at_seam_makes_ffprobe_see_a_dts_go_back() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain")]);
    let out = run(ffprobe_video_over_tcp()
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
    let got = video_packets(&cam.url("plain?noidr=2s"), 100);
    // ffmpeg counts PTS from RTP-Info's rtptime: the frame PLAY started at (a keyframe,
    // withheld), so 0 is the start.
    assert!(
        !got.first().expect("packets").1,
        "no keyframe first: {got:?}"
    );
    let key = got.iter().find(|p| p.1).expect("a keyframe at last");
    assert!(
        got.iter().take_while(|p| !p.1).count() >= 45,
        "the frames before it were sent: {got:?}"
    );
    assert!(key.0 >= 2.0 - 1e-6, "the first keyframe at {} s", key.0);
    // Without the fault the stream starts at a keyframe.
    let plain = video_packets(&cam.url("plain"), 25);
    assert!(plain[0].1, "{plain:?}");
}

/// The picture types (`I`, `P`, `B`) of the video frames ffprobe decodes from `input` (a file,
/// or the first `n` frames of an RTSP URL), with their PTS in seconds.
fn picture_types(input: &str, n: u32) -> Vec<(f64, char)> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-select_streams", "v:0"]);
    if input.starts_with("rtsp://") {
        cmd.args([
            "-rtsp_transport",
            "tcp",
            "-read_intervals",
            &format!("%+#{n}"),
        ]);
    }
    let out = run(cmd
        .args([
            "-show_entries",
            "frame=pts_time,pict_type",
            "-of",
            "csv=p=0",
        ])
        .arg(input));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            let pts = f.next()?.parse().ok()?;
            let t = f.next()?.chars().next()?;
            Some((pts, t))
        })
        .collect()
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn fps_halves_a_25_fps_clip_keeping_every_reference_frame() {
    let clips = Clips::make();
    let file = clips.path("ibbp");
    // x264 without B-pyramid: its B-frames are the non-reference ones (nal_ref_idc 0), I and
    // P frames the reference ones.
    let own = picture_types(&file.to_string_lossy(), 0);
    let own_refs = own.iter().filter(|f| f.1 != 'B').count();
    assert_eq!(own.len(), 50, "2 s at 25 fps");
    assert!(
        own_refs <= 25,
        "{own_refs} reference frames leave room for 12.5 fps"
    );
    let cam = Loopcam::start(&[&file]);
    let got = picture_types(&cam.url("ibbp?fps=12.5"), 100);
    // One whole loop, 2 s of presentation time from 1 s in.
    let lap: Vec<&(f64, char)> = got.iter().filter(|f| (1.0..3.0).contains(&f.0)).collect();
    assert!(got.iter().any(|f| f.0 >= 3.0), "{got:?}");
    assert_eq!(lap.len(), 25, "12.5 frames a second: {got:?}");
    let refs = lap.iter().filter(|f| f.1 != 'B').count();
    assert_eq!(refs, own_refs, "every reference frame of the loop: {got:?}");
    // The path without the fault still sends them all.
    let whole = picture_types(&cam.url("ibbp"), 100);
    let lap = whole.iter().filter(|f| (1.0..3.0).contains(&f.0)).count();
    assert_eq!(lap, 50, "{whole:?}");
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
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("400"), "{said}");
    // The answer says why: the clip, the rate asked for and the one it reaches.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", cam.port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let url = cam.url("plain?fps=12.5");
    write!(s, "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").expect("send");
    let mut answer = String::new();
    let mut buf = [0u8; 4096];
    while !answer.contains("or more)") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(answer.starts_with("RTSP/1.0 400"), "{answer}");
    assert!(
        answer.contains("clip plain: fps=12.5 is out of reach")
            && answer.contains("down to 25.000 fps"),
        "{answer}"
    );
}

#[test]
#[ignore = "needs ffmpeg and ffprobe"]
fn sps_change_at_seam_changes_the_decoded_size_at_the_seam() {
    let clips = Clips::make();
    let cam = Loopcam::start(&[&clips.path("plain"), &clips.path("big")]);
    let out = run(ffprobe_video_over_tcp()
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
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        let (Some(w), Some(h)) = (f.get(1), f.get(2)) else {
            continue;
        };
        if w.parse::<u32>().is_err() || h.parse::<u32>().is_err() {
            continue;
        }
        let size = format!("{w}x{h}");
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

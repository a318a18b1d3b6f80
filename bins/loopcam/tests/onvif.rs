//! loopcam as an ONVIF device for onvif-zeep-async (PyPI; the ONVIF library Home Assistant
//! uses): with WS-UsernameToken auth it reads the device information, lists the profiles and
//! gets the stream URI, which ffprobe then plays. `#[ignore]`d: needs python3 with
//! onvif-zeep-async and ffprobe (`.ci/run` installs both). Loopback only; no multicast.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nvrkit_testutil::peers::{free_port, wait_for_port};

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs python3 with onvif-zeep-async, and ffprobe"]
fn onvif_zeep_async_reads_the_device_and_ffprobe_plays_its_stream() {
    let (_child, http, url) = loopcam(&["--auth", "admin:s3cret"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onvif/zeep_client.py");
    let text = python(&[
        script,
        "127.0.0.1",
        &http.to_string(),
        "admin",
        "s3cret",
        "sample",
    ]);
    assert!(text.contains("model=loopcam"), "{text}");
    assert!(text.contains("profile=main H264 640x360"), "{text}");
    assert!(text.contains("hostname=loopcam-sample"), "{text}");
    assert!(text.contains("onvif://www.onvif.org/name/sample"), "{text}");
    let stream = text
        .lines()
        .find_map(|l| l.strip_prefix("stream="))
        .unwrap_or_else(|| panic!("no stream URI: {text}"));
    assert_eq!(stream, url.trim(), "the URL loopcam serves");
    let with_auth = stream.replacen("rtsp://", "rtsp://admin:s3cret@", 1);
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
        ])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&with_auth)
        .output()
        .expect("ffprobe");
    let got = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(
        got.trim(),
        "h264,640,360",
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// A 2 s clip (testdata: H.264 1280x720 at 25 fps), so two loops pass in a few seconds.
const SHORT_CLIP: &str = "h264_main_720p25_aac";
/// Its loop period, µs.
const SHORT_PERIOD_MICROS: i64 = 2_000_000;

fn short_clip() -> String {
    format!(
        "{}/../../testdata/{SHORT_CLIP}.mp4",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs a Python script with `args`; its stdout, which must end in success.
fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `loopcam` on loopback ports with `args`, killed (by its PID) on drop; its ONVIF port and
/// the first URL it prints.
fn loopcam(args: &[&str]) -> (Kill, u16, String) {
    let (rtsp, http, discovery) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopcam"))
        .env("RUST_LOG", "warn")
        .args(["--listen", &format!("127.0.0.1:{rtsp}"), "--no-udp"])
        .args(["--onvif-listen", &format!("127.0.0.1:{http}")])
        .args(["--discovery-listen", &format!("127.0.0.1:{discovery}")])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let child = Kill(child);
    wait_for_port(http, "loopcam's ONVIF device");
    (child, http, url)
}

/// The µs since the epoch of an ISO 8601 UTC time as Python prints it
/// (`2026-12-03T15:40:41.845944+00:00`).
fn micros(iso: &str) -> i64 {
    let t = iso.replace("+00:00", "Z");
    nvrkit_media::WallTime::parse_rfc3339(&t)
        .unwrap_or_else(|e| panic!("{iso}: {e}"))
        .as_micros()
}

#[test]
#[ignore = "needs python3 with onvif-zeep-async"]
fn a_pull_point_subscription_gets_the_scripted_motion_every_loop() {
    let clip = short_clip();
    let alarm = format!("{SHORT_CLIP}@1.2s=onvif");
    let (_child, http, _) = loopcam(&["--auth", "admin:s3cret", "--alarm", &alarm, &clip]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onvif/zeep_events.py");
    // Three motion-on messages: the first may be of the lap running when the subscription was
    // made; the next two are two consecutive loops.
    let text = python(&[
        script,
        "127.0.0.1",
        &http.to_string(),
        "admin",
        "s3cret",
        "3",
        "60",
    ]);
    assert!(text.contains("pullpoint=True"), "{text}");
    let on: Vec<i64> = text
        .lines()
        .filter(|l| {
            l.starts_with(
                "event tns1:RuleEngine/CellMotionDetector/Motion IsMotion=true op=Changed",
            )
        })
        .map(|l| micros(l.rsplit("utc=").next().unwrap()))
        .collect();
    assert!(on.len() >= 3, "{text}");
    // Every loop, at the same position: the frame times are one period apart, to the µs.
    for w in on.windows(2) {
        assert_eq!(w[1] - w[0], SHORT_PERIOD_MICROS, "{text}");
    }
    // The other motion topic says the same, and every ON has its OFF.
    let alarm_on = text
        .lines()
        .filter(|l| l.starts_with("event tns1:VideoSource/MotionAlarm State=true op=Changed"))
        .count();
    assert!(alarm_on >= on.len(), "{text}");
    assert!(
        text.contains("event tns1:RuleEngine/CellMotionDetector/Motion IsMotion=false op=Changed"),
        "{text}"
    );
}

/// `camevents`, built beside loopcam: `cargo test --workspace` (the CI step) builds every
/// binary of the workspace into the same directory before any test runs; a lone
/// `cargo test -p loopcam` does not, so this builds it (incremental: seconds when it is fresh)
/// with the cargo that runs the test, into the same target directory.
fn camevents_binary() -> std::path::PathBuf {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_loopcam"));
    let dir = exe.parent().unwrap();
    let target = dir.parent().unwrap();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "camevents", "--bin", "camevents"])
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p camevents failed");
    let bin = dir.join(format!("camevents{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

#[test]
#[ignore = "needs ffprobe, and builds camevents"]
fn a_scripted_alarm_reaches_camevents_as_hikvision_motion_with_its_snapshot_every_loop() {
    use std::sync::mpsc;
    let snaps = tempfile::tempdir().unwrap();
    let mut cam = Command::new(camevents_binary())
        .args(["--listen", "127.0.0.1:0", "--no-tls", "--snapshots"])
        .arg(snaps.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camevents starts");
    let stderr = cam.stderr.take().unwrap();
    let stdout = cam.stdout.take().unwrap();
    let _cam = Kill(cam);
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on smtp://").nth(1) {
                let _ = addr_tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let guard = std::time::Duration::from_secs(30);
    let addr = addr_rx
        .recv_timeout(guard)
        .expect("camevents prints its URL");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let clip = short_clip();
    let alarm = format!("{SHORT_CLIP}@1.2s=smtp://{addr}");
    let (_loopcam, _, _) = loopcam(&["--alarm", &alarm, &clip]);
    let mut laps = Vec::new();
    let mut walls = Vec::new();
    while laps.len() < 3 {
        let line = lines
            .recv_timeout(guard)
            .expect("an event within the hang guard");
        let e: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert_eq!(e["vendor"], "hikvision", "{line}");
        assert_eq!(e["kind"], "motion", "{line}");
        assert_eq!(e["camera"], SHORT_CLIP, "{line}");
        let snap = &e["snapshots"][0];
        assert_eq!(snap["content_type"], "image/jpeg", "{line}");
        // CLIP_UTC_lapN_posS.jpg: the frame the alarm was cued on.
        let name = snap["name"].as_str().unwrap();
        let rest = name.strip_prefix(&format!("{SHORT_CLIP}_")).unwrap();
        let (utc, rest) = rest.split_once("_lap").unwrap();
        let (lap, pos) = rest.split_once("_pos").unwrap();
        assert_eq!(pos, "1.200000s.jpg", "the scripted position: {name}");
        laps.push(lap.parse::<i64>().unwrap());
        walls.push(
            nvrkit_media::WallTime::parse_compact(utc)
                .unwrap()
                .as_micros(),
        );
        // The saved JPEG decodes at the clip's size.
        let path = snap["path"].as_str().unwrap();
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=width,height"])
            .args(["-of", "csv=p=0", path])
            .output()
            .expect("ffprobe");
        assert_eq!(
            String::from_utf8_lossy(&probe.stdout).trim(),
            "1280,720",
            "{}",
            String::from_utf8_lossy(&probe.stderr)
        );
    }
    for (l, w) in laps.windows(2).zip(walls.windows(2)) {
        assert_eq!(l[1], l[0] + 1, "every loop: {laps:?}");
        assert_eq!(
            w[1] - w[0],
            SHORT_PERIOD_MICROS,
            "one period apart: {walls:?}"
        );
    }
}

//! loopcam as an ONVIF device for onvif-zeep-async (PyPI; the ONVIF library Home Assistant
//! uses): with WS-UsernameToken auth it reads the device information, lists the profiles (main
//! and sub, for a clip with a sub stream made here with ffmpeg) and gets their stream URIs,
//! which ffprobe then plays, and fetches the snapshot (HTTP Digest), which ffprobe decodes at
//! the clip's size. `#[ignore]`d: needs python3 with onvif-zeep-async, ffmpeg and ffprobe
//! (`.ci/run` installs them). Loopback only; no multicast.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use nvrkit_testutil::peers::{free_port, wait_for_port};

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// loopcam with `--auth admin:s3cret`, RTSP over TCP only, ONVIF on a free port, serving
/// `inputs`; returns the guard, the ONVIF port and the first `urls` stream URLs it printed.
fn start_loopcam(inputs: &[&Path], urls: usize) -> (Kill, u16, Vec<String>) {
    let (rtsp, http, discovery) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopcam"))
        .env("RUST_LOG", "warn")
        .args(["--listen", &format!("127.0.0.1:{rtsp}"), "--no-udp"])
        .args(["--onvif-listen", &format!("127.0.0.1:{http}")])
        .args(["--discovery-listen", &format!("127.0.0.1:{discovery}")])
        .args(["--auth", "admin:s3cret"])
        .args(inputs)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let printed = (0..urls)
        .map(|_| {
            let mut url = String::new();
            out.read_line(&mut url).unwrap();
            url.trim().to_owned()
        })
        .collect();
    let child = Kill(child);
    wait_for_port(http, "loopcam's ONVIF device");
    (child, http, printed)
}

/// Runs `tests/onvif/zeep_client.py` against the device of `clip` on `http` (writing its
/// snapshot to `snapshot` when given); its stdout.
fn zeep(http: u16, clip: &str, snapshot: Option<&Path>) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onvif/zeep_client.py");
    let run = Command::new("python3")
        .args([
            script,
            "127.0.0.1",
            &http.to_string(),
            "admin",
            "s3cret",
            clip,
        ])
        .args(snapshot)
        .output()
        .expect("python3 with onvif-zeep-async is needed");
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    text
}

/// The value of the first `key=` line of the script's output.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}: {text}"))
}

/// `ffprobe` the video of `url` over TCP: `codec,width,height`.
fn probe_stream(url: &str) -> String {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
        ])
        .args(["-show_entries", "stream=codec_name,width,height"])
        .args(["-of", "csv=p=0"])
        .arg(url)
        .output()
        .expect("ffprobe (apt ffmpeg) is needed");
    assert!(
        probe.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    String::from_utf8_lossy(&probe.stdout).trim().to_owned()
}

/// Decodes a JPEG with ffprobe (`-show_frames` decodes): `width,height` of its frame.
fn decode_jpeg(path: &Path) -> String {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "frame=width,height"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe (apt ffmpeg) is needed");
    let err = String::from_utf8_lossy(&probe.stderr);
    assert!(probe.status.success() && err.trim().is_empty(), "{err}");
    String::from_utf8_lossy(&probe.stdout).trim().to_owned()
}

fn url_port(url: &str) -> u16 {
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

#[test]
#[ignore = "needs python3 with onvif-zeep-async, and ffprobe"]
fn onvif_zeep_async_reads_the_device_and_ffprobe_plays_its_stream() {
    let (_child, http, urls) = start_loopcam(&[], 1);
    let text = zeep(http, "sample", None);
    assert!(text.contains("model=loopcam"), "{text}");
    assert!(text.contains("profile=main H264 640x360"), "{text}");
    assert!(text.contains("hostname=loopcam-sample"), "{text}");
    assert!(text.contains("onvif://www.onvif.org/name/sample"), "{text}");
    let stream = field(&text, "stream");
    assert_eq!(stream, urls[0], "the URL loopcam serves");
    let with_auth = stream.replacen("rtsp://", "rtsp://admin:s3cret@", 1);
    assert_eq!(probe_stream(&with_auth), "h264,640,360");
}

#[test]
#[ignore = "needs python3 with onvif-zeep-async, ffmpeg and ffprobe"]
fn zeep_lists_main_and_sub_profiles_both_play_and_the_snapshot_decodes_at_the_clip_size() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("cam.mp4");
    std::fs::copy(
        nvrkit_testutil::workspace_root().join("testdata/h264_main_720p25_aac.mp4"),
        &main,
    )
    .unwrap();
    // The sub stream as a VMS tester makes one: the main clip scaled, frames and audio as they are.
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&main)
        .args([
            "-vf",
            "scale=320:-2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-fps_mode", "passthrough", "-c:a", "copy"])
        .arg(dir.path().join("cam.sub.mp4"))
        .status()
        .expect("ffmpeg (apt ffmpeg) is needed");
    assert!(made.success(), "ffmpeg could not make the sub clip");

    let (_child, http, urls) = start_loopcam(&[&main], 2);
    let rtsp = url_port(&urls[0]);
    assert_eq!(
        urls,
        [
            format!("rtsp://127.0.0.1:{rtsp}/cam"),
            format!("rtsp://127.0.0.1:{rtsp}/cam/sub")
        ],
        "cam.sub.mp4 beside cam.mp4 is served at /cam/sub"
    );
    let jpeg = dir.path().join("snapshot.jpg");
    let text = zeep(http, "cam", Some(&jpeg));
    assert!(text.contains("profile=main H264 1280x720"), "{text}");
    assert!(text.contains("profile=sub H264 320x180"), "{text}");
    // One device: the sub stream has no device (and no port) of its own.
    assert!(!text.contains("serial=cam/sub"), "{text}");
    let uri = |token: &str| field(&text, &format!("stream.{token}")).to_owned();
    assert_eq!(uri("main"), urls[0]);
    assert_eq!(uri("sub"), urls[1]);
    let auth = |u: String| u.replacen("rtsp://", "rtsp://admin:s3cret@", 1);
    assert_eq!(probe_stream(&auth(uri("main"))), "h264,1280,720");
    assert_eq!(probe_stream(&auth(uri("sub"))), "h264,320,180");
    assert!(
        text.contains(&format!(
            "snapshot=http://127.0.0.1:{http}/snapshot/cam.jpg"
        )),
        "{text}"
    );
    assert_eq!(
        decode_jpeg(&jpeg),
        "1280,720",
        "the snapshot, decoded by ffprobe"
    );
}

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
    let (rtsp, http, discovery) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopcam"))
        .env("RUST_LOG", "warn")
        .args(["--listen", &format!("127.0.0.1:{rtsp}"), "--no-udp"])
        .args(["--onvif-listen", &format!("127.0.0.1:{http}")])
        .args(["--discovery-listen", &format!("127.0.0.1:{discovery}")])
        .args(["--auth", "admin:s3cret"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let _child = Kill(child);
    wait_for_port(http, "loopcam's ONVIF device");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onvif/zeep_client.py");
    let out = Command::new("python3")
        .args([
            script,
            "127.0.0.1",
            &http.to_string(),
            "admin",
            "s3cret",
            "sample",
        ])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

//! loopcam's command line.

#[test]
fn help_follows_the_cli_vocabulary() {
    nvrkit_testutil::check_cli_vocabulary(
        "loopcam",
        std::path::Path::new(env!("CARGO_BIN_EXE_loopcam")),
    );
}

fn loopcam() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loopcam"));
    cmd.env("RUST_LOG", "error");
    cmd
}

fn testdata(name: &str) -> std::path::PathBuf {
    nvrkit_testutil::workspace_root()
        .join("testdata")
        .join(name)
}

/// `loopcam check` on every committed clip: each passes 1,000 loops, the partial-tail AAC clip
/// (which overlapped at the seam before audio advanced by whole coded frames) and the open-GOP
/// cuts (whose decode times stepped back at the seam) included.
#[test]
fn check_passes_every_committed_clip() {
    let out = loopcam()
        .arg("check")
        .arg(testdata(""))
        .arg(testdata("cuts"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for clip in [
        "h264_aac8k_partial_tail.mp4: ok (1000 loops",
        "h264_ntsc_29.97.mp4: ok",
        "h265_hvc1.mp4: ok",
    ] {
        assert!(text.contains(clip), "{clip} in\n{text}");
    }
    assert!(text.contains("offset after 1/10/1000"), "{text}");
    // The clip cut at a CRA loses the CRA's RASL pictures in every loop, and says so.
    assert!(text.contains("h265_open_gop_cra_start.mp4: ok"), "{text}");
    assert!(text.contains("3 RASL"), "{text}");
    assert!(!text.contains("overlap"), "{text}");
}

#[test]
fn check_json_is_one_document() {
    let out = loopcam()
        .args(["check", "--json", "--loops", "10"])
        .arg(testdata("h264_aac8k_partial_tail.mp4"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_start().starts_with('{') && text.trim_end().ends_with('}'));
    assert!(text.contains("\"passed\": true"), "{text}");
    assert!(text.contains("\"verdict\": \"ok\""), "{text}");
    assert!(text.contains("\"after_loops\": 10"), "{text}");
}

/// A file that is no clip fails the check (exit 1, the reason on stdout and stderr).
#[test]
fn check_fails_on_a_file_that_cannot_be_looped() {
    let out = loopcam()
        .arg("check")
        .arg(testdata("README.md"))
        .arg(testdata("h265_hev1.mp4"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("README.md: cannot be looped"), "{text}");
    assert!(text.contains("h265_hev1.mp4: ok"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 of 2 clips fail the loop check"), "{err}");
}

/// The hardening flags reach the server: with `--max-conns 1`, a second connection gets 503;
/// with `--request-timeout 1s`, the half-sent request that held the slot is cut.
#[test]
fn max_conns_and_request_timeout_flags_take_effect() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    use nvrkit_testutil::hostile::{ATTACKER, CLIENT, connect_from, read_until_closed};

    let mut child = Command::new(env!("CARGO_BIN_EXE_loopcam"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-udp",
            "--no-onvif",
            "--max-conns",
            "1",
        ])
        .args(["--request-timeout", "1s", "--idle-timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let addr: std::net::SocketAddr = url
        .trim()
        .trim_start_matches("rtsp://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut held = connect_from(ATTACKER, addr);
    held.write_all(b"OPTIONS rtsp://x/sample RTSP/1.0\r\nCSeq: 1\r\n")
        .unwrap();
    // The slot is taken once the server has accepted the first connection.
    let refused = nvrkit_testutil::hostile::eventually("a 503", || {
        let got = read_until_closed(&mut connect_from(CLIENT, addr))?;
        got.starts_with(b"RTSP/1.0 503 ").then_some(got)
    });
    assert!(!refused.is_empty());
    let mut rest = Vec::new();
    let _ = held.read_to_end(&mut rest);
    assert!(rest.is_empty(), "cut without an answer");
    let _ = child.kill();
    let _ = child.wait();
}

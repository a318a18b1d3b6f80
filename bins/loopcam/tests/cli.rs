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

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

/// `curl -u admin:s3cret <scheme> URL` (`--digest` or `--basic`): the status, the
/// `WWW-Authenticate` schemes of the final answer (lowercased), and the body. Retried while the
/// first keyframe is not yet paced (503), up to a hang guard.
fn curl_snapshot(url: &str, scheme: &str) -> (u16, Vec<String>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    for _ in 0..200 {
        let out = Command::new("curl")
            .args(["-s", "-u", "admin:s3cret", scheme, "-D"])
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}", url])
            .output()
            .expect("curl (apt curl) is needed");
        let status: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        if status == 503 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        // With --digest, curl writes both answers' heads: the last one's are the final answer.
        let head = std::fs::read_to_string(&head).unwrap();
        let last = head.rsplit("HTTP/1.1 ").next().unwrap_or("");
        let schemes = last
            .lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("www-authenticate").then(|| {
                    v.split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                })
            })
            .collect();
        return (status, schemes, std::fs::read(&body).unwrap_or_default());
    }
    panic!("{url}: still 503 (no keyframe) at the hang guard");
}

#[test]
#[ignore = "needs curl"]
fn the_snapshot_url_takes_curl_digest_and_refuses_basic_unless_opted_in() {
    let clip = short_clip();
    let url = |http: u16| format!("http://127.0.0.1:{http}/snapshot/{SHORT_CLIP}.jpg");
    let jpeg = |b: &[u8]| b.starts_with(&[0xff, 0xd8]) && b.ends_with(&[0xff, 0xd9]);
    {
        let (_child, http, _) = loopcam(&["--auth", "admin:s3cret", &clip]);
        let (status, _, body) = curl_snapshot(&url(http), "--digest");
        assert_eq!(
            status,
            200,
            "curl --digest: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(jpeg(&body), "a JPEG");
        let (status, schemes, body) = curl_snapshot(&url(http), "--basic");
        assert_eq!(
            status,
            401,
            "curl --basic: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(schemes, ["digest"], "only a Digest challenge");
        assert!(String::from_utf8_lossy(&body).contains("Basic sends the password in clear"));
    }
    let (_child, http, _) = loopcam(&["--auth", "admin:s3cret", "--snapshot-basic-auth", &clip]);
    let (status, _, body) = curl_snapshot(&url(http), "--basic");
    assert_eq!(
        status,
        200,
        "curl --basic, opted in: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(jpeg(&body), "a JPEG");
    let (status, _, body) = curl_snapshot(&url(http), "--digest");
    assert_eq!(
        status,
        200,
        "curl --digest, Basic opted in: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(jpeg(&body), "a JPEG");
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

/// The frame times (µs) of the motion-on `Changed` messages zeep_events.py printed.
fn motion_on(text: &str) -> Vec<i64> {
    text.lines()
        .filter(|l| {
            l.starts_with(
                "event tns1:RuleEngine/CellMotionDetector/Motion IsMotion=true op=Changed",
            )
        })
        .map(|l| micros(l.rsplit("utc=").next().unwrap()))
        .collect()
}

#[test]
#[ignore = "needs python3 with onvif-zeep-async"]
fn a_subscription_flood_from_one_address_does_not_lock_out_a_zeep_client() {
    use nvrkit_testutil::hostile::{ATTACKER, CLIENT, request};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    // No --auth: anyone may subscribe (with --auth, the same holds for a client that has the
    // credentials).
    let clip = short_clip();
    let alarm = format!("{SHORT_CLIP}@1.2s=onvif");
    let (_child, http, _) = loopcam(&["--alarm", &alarm, &clip]);
    let device = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    let create = "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><tev:CreatePullPointSubscription xmlns:tev=\"http://www.onvif.org/ver10/events/wsdl\"><tev:InitialTerminationTime>PT1H</tev:InitialTerminationTime></tev:CreatePullPointSubscription></s:Body></s:Envelope>";
    let flood = format!(
        "POST /onvif/event_service HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}",
        create.len()
    );
    let done = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    // Two attackers on 127.0.0.2 creating subscriptions back to back, never pulling.
    let attackers: Vec<_> = (0..2)
        .map(|_| {
            let (done, made, refused, flood) =
                (done.clone(), made.clone(), refused.clone(), flood.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let r = request(ATTACKER, device, &flood);
                    if r.status == 200
                        && String::from_utf8_lossy(&r.body).contains("SubscriptionReference")
                    {
                        made.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The flood has filled the device before the client comes.
    nvrkit_testutil::hostile::eventually("the flood fills the 16 subscriptions", || {
        (made.load(Ordering::Relaxed) > 32).then_some(())
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onvif/zeep_events.py");
    let source = std::net::Ipv4Addr::from(CLIENT).to_string();
    let out = Command::new("python3")
        .args([script, "127.0.0.1", &http.to_string(), "admin", "s3cret"])
        .args(["2", "60", &source])
        .output()
        .expect("python3");
    done.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (made, refused) = (
        made.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(
        out.status.success(),
        "the zeep client failed while the flood ran ({made} subscriptions made, {refused} refused):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The client subscribed and got the scripted motion, every loop, while the attacker kept
    // making subscriptions (more than the device holds: each evicted one of its own).
    assert!(motion_on(&text).len() >= 2, "{text}");
    assert!(
        made > 16,
        "the flood made more than the device holds: {made}"
    );
    assert_eq!(refused, 0, "a new subscription is never refused");
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
    let on = motion_on(&text);
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

/// The JPEGs (as loopcam encodes them, `nvrkit_feed::snapshot::h264_to_jpeg`) of the video
/// keyframes of `clip` presented at `a` and `b` µs into the loop.
fn keyframe_jpegs(clip: &str, a: i64, b: i64) -> (Vec<u8>, Vec<u8>) {
    let demux = nvrkit_media::Demuxer::open(clip).unwrap();
    let clip = nvrkit_feed::Clip::load(SHORT_CLIP, &demux).unwrap();
    let v = clip.master();
    let nvrkit_media::CodecParams::H264(params) = &clip.tracks()[v].params else {
        panic!("{SHORT_CLIP} is H.264");
    };
    let frames = clip.frames(v);
    let first = frames.iter().map(|f| f.pts).min().unwrap();
    let jpeg = |at: i64| {
        let key = frames
            .iter()
            .find(|f| {
                f.keyframe
                    && nvrkit_media::time::rescale(f.pts - first, f.timescale, 1_000_000) == at
            })
            .unwrap_or_else(|| panic!("no keyframe at {at} µs"));
        let (j, _, _) =
            nvrkit_feed::snapshot::h264_to_jpeg(params, &key.data, nvrkit_feed::snapshot::QUALITY)
                .unwrap();
        j.to_vec()
    };
    (jpeg(a), jpeg(b))
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
    // The clip's keyframes are at 0 s and 1 s: the alarm at 1.2 s must mail the JPEG of the
    // keyframe at 1 s (frame 25), whenever the mail is made.
    let (key_jpeg, other_jpeg) = keyframe_jpegs(&clip, 1_000_000, 0);
    assert_ne!(key_jpeg, other_jpeg);
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
        // CLIP_UTC_lapN_posS_keyK.jpg: the frame the alarm was cued on, and the keyframe
        // the picture is of.
        let name = snap["name"].as_str().unwrap();
        let rest = name.strip_prefix(&format!("{SHORT_CLIP}_")).unwrap();
        let (utc, rest) = rest.split_once("_lap").unwrap();
        let (lap, pos) = rest.split_once("_pos").unwrap();
        assert_eq!(
            pos, "1.200000s_key1.000000s.jpg",
            "the scripted position and its keyframe: {name}"
        );
        laps.push(lap.parse::<i64>().unwrap());
        walls.push(
            nvrkit_media::WallTime::parse_compact(utc)
                .unwrap()
                .as_micros(),
        );
        // The saved JPEG is that keyframe's picture, byte for byte, and decodes at the clip's
        // size.
        let path = snap["path"].as_str().unwrap();
        let saved = std::fs::read(path).unwrap();
        assert!(
            saved == key_jpeg,
            "{name}: not the JPEG of the keyframe at 1 s ({} bytes, that one {}; the one at 0 s {})",
            saved.len(),
            key_jpeg.len(),
            other_jpeg.len()
        );
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
    // Mails may overtake one another (up to 4 in flight): in lap order.
    let mut by_lap: Vec<(i64, i64)> = laps.into_iter().zip(walls).collect();
    by_lap.sort_unstable();
    let (laps, walls): (Vec<i64>, Vec<i64>) = by_lap.into_iter().unzip();
    for (l, w) in laps.windows(2).zip(walls.windows(2)) {
        assert_eq!(l[1], l[0] + 1, "every loop: {laps:?}");
        assert_eq!(
            w[1] - w[0],
            SHORT_PERIOD_MICROS,
            "one period apart: {walls:?}"
        );
    }
}

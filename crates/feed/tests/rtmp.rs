//! Interop tests of the RTMP publisher against servers and readers nobody here wrote: nginx with
//! libnginx-mod-rtmp, node-media-server (npm), and `ffmpeg -listen 1` as a receiver; everything
//! is read back with ffprobe.
//!
//! All are `#[ignore]`d: `.ci/run` installs the peers and runs them with `-- --ignored`, where a
//! missing peer fails the test. Each starts its own server on 127.0.0.1 with a free port. No
//! test asserts on timing: waits are hang guards, and the checks are on the packets read back.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvrkit_feed::Clip;
use nvrkit_feed::rtmp::{EnhancedRtmp, Push, PushConfig, PushError, RtmpUrl};
use nvrkit_feed::server::Looper;
use nvrkit_media::Demuxer;

use nvrkit_testutil::workspace_root as root;

use nvrkit_testutil::shared_testdata as shared;

fn clip(path: &Path) -> Arc<Clip> {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    Clip::load(name, &Demuxer::open(path).unwrap()).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP on the port (hang guard: 20 s).
fn wait_for_port(port: u16, what: &str) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{what} never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn require(program: &str) {
    let ok = Command::new(program)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(ok, "{program} is not installed (.ci/run installs it)");
}

/// nginx with the RTMP module, in a directory of its own, one process (no master), live app.
struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Nginx {
    const MODULE: &'static str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

    fn start() -> Nginx {
        assert!(
            Path::new(Self::MODULE).exists(),
            "{} is missing: apt-get install nginx libnginx-mod-rtmp",
            Self::MODULE
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\n\
                 error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
                 load_module {};\nevents {{ worker_connections 256; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
                 application live {{ live on; record off; }} }} }}\n",
                Self::MODULE
            ),
        )
        .unwrap();
        let child = Self::spawn(dir.path());
        wait_for_port(port, "nginx");
        Nginx { dir, port, child }
    }

    fn spawn(dir: &Path) -> Child {
        Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("stderr.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is not installed (apt-get install nginx libnginx-mod-rtmp)")
    }

    /// Kills nginx (every connection drops) and starts it again on the same port.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(self.dir.path());
        wait_for_port(self.port, "nginx after the restart");
    }

    fn url(&self, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{stream}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packet {
    video: bool,
    dts: i64,
    pts: i64,
    key: bool,
}

/// Reads `seconds` of a stream with ffprobe (the hang guard is ffprobe's `-rw_timeout` and the
/// read interval).
fn ffprobe(input: &str, seconds: u32) -> (Vec<Packet>, String) {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "warning", "-rw_timeout", "15000000"])
        .args([
            "-show_entries",
            "packet=stream_index,pts,dts,flags:stream=index,codec_type",
        ])
        .args(["-of", "csv"])
        .args(["-read_intervals", &format!("%+{seconds}")])
        .arg(input)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffprobe {input} failed: {stderr}");
    let mut kinds = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(',').collect();
        if f[0] == "stream" && f.len() >= 3 {
            kinds.insert(f[1].to_owned(), f[2] == "video");
        }
    }
    let packets = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0] == "packet" && f.len() >= 5).then(|| Packet {
                video: kinds.get(f[1]).copied().unwrap_or(false),
                pts: f[2].parse().unwrap_or(i64::MIN),
                dts: f[3].parse().unwrap_or(i64::MIN),
                key: f[4].starts_with('K'),
            })
        })
        .collect();
    (packets, stderr)
}

/// Seam defects of a read-back stream: backward or repeated DTS in either stream, and video
/// presentation steps other than the frame step (± 1 ms: FLV's resolution).
fn defects(packets: &[Packet], frame_ms: i64) -> Vec<String> {
    let mut out = Vec::new();
    for video in [true, false] {
        let dts: Vec<i64> = packets
            .iter()
            .filter(|p| p.video == video)
            .map(|p| p.dts)
            .collect();
        for w in dts.windows(2) {
            if w[1] <= w[0] {
                out.push(format!(
                    "{} DTS {} after {}",
                    if video { "video" } else { "audio" },
                    w[1],
                    w[0]
                ));
            }
        }
    }
    let mut pts: Vec<i64> = packets.iter().filter(|p| p.video).map(|p| p.pts).collect();
    pts.sort_unstable();
    for w in pts.windows(2) {
        if (w[1] - w[0] - frame_ms).abs() > 1 {
            out.push(format!("video PTS step {} at {}", w[1] - w[0], w[0]));
        }
    }
    out
}

/// Checks a read-back of `seconds` that must span at least 3 seams of the clip.
fn assert_seamless(name: &str, c: &Clip, packets: &[Packet]) {
    let video: Vec<&Packet> = packets.iter().filter(|p| p.video).collect();
    // FLV carries AAC, and G.711 at 8 kHz mono only.
    let has_audio = c.tracks().iter().any(|t| {
        t.params.aac().is_some()
            || t.params
                .g711()
                .is_some_and(|g| g.sample_rate == 8000 && g.channels == 1)
    });
    assert!(!video.is_empty(), "{name}: no video read back");
    assert_eq!(
        packets.iter().any(|p| !p.video),
        has_audio,
        "{name}: audio read back iff the clip has audio"
    );
    assert!(video[0].key, "{name}: the first video packet is a keyframe");
    let span_ms = video.last().unwrap().dts - video[0].dts;
    let period_ms = c.period_micros() / 1000;
    assert!(
        span_ms >= 3 * period_ms,
        "{name}: read {span_ms} ms, less than 3 seams ({period_ms} ms loops)"
    );
    let master = &c.tracks()[c.master()];
    let f = &c.frames(c.master())[0];
    let frame_ms = i64::from(f.duration) * 1000 / i64::from(master.timescale);
    let d = defects(packets, frame_ms);
    assert!(
        d.is_empty(),
        "{name}: {} defects: {:?}",
        d.len(),
        &d[..d.len().min(10)]
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_push(rt: &tokio::runtime::Runtime, c: &Arc<Clip>, config: PushConfig) -> (Looper, Push) {
    rt.block_on(async {
        let looper = Looper::start(c.clone(), Duration::from_secs(4)).unwrap();
        let push = Push::start(c.clone(), looper.ring(), config);
        (looper, push)
    })
}

fn wait_live(push: &Push, lives: u64) {
    let t0 = Instant::now();
    while push.stats().lives < lives || !push.stats().live {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "push never went live ({lives}): {:?}",
            push.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a push of every clip to nginx (stream name = clip name) and waits until all are live.
fn push_all_live(
    rt: &tokio::runtime::Runtime,
    nginx: &Nginx,
    clips: &[Arc<Clip>],
) -> Vec<(Looper, Push)> {
    let running: Vec<(Looper, Push)> = clips
        .iter()
        .map(|c| {
            let url = RtmpUrl::parse(&nginx.url(c.name())).unwrap();
            start_push(rt, c, PushConfig::new(url))
        })
        .collect();
    for (_, p) in &running {
        wait_live(p, 1);
    }
    running
}

/// Reads every clip's stream back from nginx at once, across ≥ 3 seams of each, and checks it.
fn read_back_seamlessly(nginx: &Nginx, clips: &[Arc<Clip>]) {
    let probes: Vec<_> = clips
        .iter()
        .map(|c| {
            let url = nginx.url(c.name());
            let secs = (c.period_micros() * 3 / 1_000_000 + 8) as u32;
            std::thread::spawn(move || ffprobe(&url, secs))
        })
        .collect();
    for (c, probe) in clips.iter().zip(probes) {
        let (packets, _) = probe.join().unwrap();
        assert_seamless(c.name(), c, &packets);
    }
}

#[test]
#[ignore = "needs nginx with libnginx-mod-rtmp and ffprobe; run by .ci/run"]
fn nginx_reads_back_bigbuckbunny_and_bikes_seamlessly_two_pushes_at_once() {
    let nginx = Nginx::start();
    let rt = runtime();
    let clips = [
        clip(&shared("bigbuckbunny.mp4")),
        clip(&shared("bikes.mp4")),
    ];
    let running = push_all_live(&rt, &nginx, &clips);
    // Both read back at once, across ≥ 3 seams of each (bigbuckbunny 5.28 s, bikes 10 s).
    read_back_seamlessly(&nginx, &clips);
    for (looper, push) in running {
        assert_eq!(push.stats().connects, 1);
        rt.block_on(async {
            push.stop().await.unwrap();
            looper.stop().await;
        });
    }
}

/// The codec names ffprobe reads from `input`, by codec type (`video` → `h264`).
fn codec_names(input: &str) -> BTreeMap<String, String> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-read_intervals",
            "%+3",
        ])
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,sample_rate,channels",
        ])
        .args(["-of", "csv=p=0"])
        .arg(input)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {input} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(',')?;
            let (kind, rest) = rest.split_once(',').unwrap_or((rest, ""));
            Some((kind.to_owned(), format!("{name} {rest}").trim().to_owned()))
        })
        .collect()
}

/// G.711 from `.mov` through nginx-rtmp: 8 kHz mono μ-law goes as FLV SoundFormat 8 and reads
/// back as `pcm_mulaw` at 8,000 Hz across three seams; 16 kHz stereo A-law has no FLV carriage
/// and the push carries the video alone (with a warning in the log).
#[test]
#[ignore = "needs nginx with libnginx-mod-rtmp and ffprobe; run by .ci/run"]
fn nginx_reads_back_g711_as_pcm_mulaw_and_drops_what_flv_cannot_carry() {
    let nginx = Nginx::start();
    let rt = runtime();
    let clips = [
        clip(&root().join("testdata/h264_pcmu8k.mov")),
        clip(&root().join("testdata/h264_pcma16k_stereo.mov")),
    ];
    let running = push_all_live(&rt, &nginx, &clips);
    let names: Vec<_> = clips
        .iter()
        .map(|c| codec_names(&nginx.url(c.name())))
        .collect();
    assert_eq!(names[0]["audio"], "pcm_mulaw 8000,1", "{names:?}");
    assert_eq!(names[0]["video"], "h264", "{names:?}");
    assert!(!names[1].contains_key("audio"), "{names:?}");
    read_back_seamlessly(&nginx, &clips);
    for (looper, push) in running {
        rt.block_on(async {
            push.stop().await.unwrap();
            looper.stop().await;
        });
    }
}

#[test]
#[ignore = "needs nginx with libnginx-mod-rtmp and ffprobe; run by .ci/run"]
fn nginx_restart_resumes_on_a_keyframe_and_other_pushes_are_unaffected() {
    let mut a = Nginx::start();
    let b = Nginx::start();
    let rt = runtime();
    let c = clip(&shared("bigbuckbunny.mp4"));
    let url = |n: &Nginx| RtmpUrl::parse(&n.url("cam")).unwrap();
    let (la, pa) = start_push(&rt, &c, PushConfig::new(url(&a)));
    let (lb, pb) = start_push(&rt, &c, PushConfig::new(url(&b)));
    wait_live(&pa, 1);
    wait_live(&pb, 1);
    // B is read across the restart of A.
    let b_url = b.url("cam");
    let secs = (c.period_micros() * 3 / 1_000_000 + 8) as u32;
    let probe_b = std::thread::spawn(move || ffprobe(&b_url, secs));
    std::thread::sleep(Duration::from_secs(2));
    a.restart();
    wait_live(&pa, 2);
    let (after, _) = ffprobe(&a.url("cam"), 8);
    let video: Vec<&Packet> = after.iter().filter(|p| p.video).collect();
    assert!(!video.is_empty(), "nothing read after the restart");
    assert!(
        video[0].key,
        "the push resumed on a keyframe: {:?}",
        video[0]
    );
    let master = &c.tracks()[c.master()];
    let frame_ms = i64::from(c.frames(c.master())[0].duration) * 1000 / i64::from(master.timescale);
    let d = defects(&after, frame_ms);
    assert!(d.is_empty(), "after the restart: {d:?}");
    let (packets_b, _) = probe_b.join().unwrap();
    assert_seamless("the other push", &c, &packets_b);
    assert!(pa.stats().connects >= 2);
    assert_eq!(pb.stats().connects, 1, "the other push never reconnected");
    rt.block_on(async {
        pa.stop().await.unwrap();
        pb.stop().await.unwrap();
        la.stop().await;
        lb.stop().await;
    });
}

#[test]
#[ignore = "needs nginx with libnginx-mod-rtmp; run by .ci/run"]
fn hevc_is_refused_by_a_server_without_enhanced_rtmp_naming_the_clip() {
    let nginx = Nginx::start();
    let rt = runtime();
    let c = clip(&root().join("testdata/h265_hvc1.mp4"));
    let (looper, push) = start_push(
        &rt,
        &c,
        PushConfig::new(RtmpUrl::parse(&nginx.url("hevc")).unwrap()),
    );
    let r = rt.block_on(async {
        let r = tokio::time::timeout(Duration::from_secs(30), push.wait())
            .await
            .expect("hang guard: the push gives up after nginx's connect result");
        looper.stop().await;
        r
    });
    let e = r.unwrap_err();
    assert!(matches!(e, PushError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("h265_hvc1"), "names the clip: {e}");
}

#[test]
#[ignore = "needs ffmpeg; run by .ci/run"]
fn ffmpeg_listen_receives_across_the_32_bit_clock_wrap() {
    require("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("received.flv");
    let listen = format!("rtmp://127.0.0.1:{port}/live/cam");
    let ffmpeg = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "warning", "-listen", "1", "-f", "flv", "-i",
        ])
        .arg(&listen)
        .args(["-c", "copy", "-t", "14", "-y"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = runtime();
    let c = clip(&root().join("testdata/h264_main_720p25_aac.mp4"));
    let mut config = PushConfig::new(RtmpUrl::parse(&listen).unwrap());
    // 4 s below the wrap: the 32-bit millisecond clock wraps 4 s into the stream.
    config.initial_timestamp = u32::MAX - 4_000;
    let (looper, push) = start_push(&rt, &c, config);
    // Hang guard: ffmpeg ends by itself after 14 s of media.
    let pid = ffmpeg.id();
    let waiter = std::thread::spawn(move || ffmpeg.wait_with_output());
    let t0 = Instant::now();
    while !waiter.is_finished() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("ffmpeg never finished: {:?}", push.stats());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = waiter.join().unwrap().unwrap();
    rt.block_on(async {
        let _ = push.stop().await;
        looper.stop().await;
    });
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ffmpeg failed: {log}");
    for bad in ["Non-monotonous", "non monotonically", "Invalid", "error"] {
        assert!(!log.contains(bad), "ffmpeg complained ({bad}): {log}");
    }
    let (packets, warnings) = ffprobe(out.to_str().unwrap(), 100);
    assert!(warnings.trim().is_empty(), "{warnings}");
    let video: Vec<&Packet> = packets.iter().filter(|p| p.video).collect();
    assert!(
        video.last().unwrap().dts - video[0].dts > 8_000,
        "read back past the wrap"
    );
    assert!(video[0].key);
    let d = defects(&packets, 40);
    assert!(d.is_empty(), "{d:?}");
}

/// node-media-server from npm (`.ci/run` installs it under target/peers; `NVRKIT_NMS` points
/// to its `bin/app.js` elsewhere), with RTMP and RTMPS (a certificate made here).
struct Nms {
    _dir: tempfile::TempDir,
    rtmp: u16,
    rtmps: u16,
    cert_pem: String,
    child: Child,
}

impl Nms {
    fn start() -> Nms {
        let app = std::env::var_os("NVRKIT_NMS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                root().join("target/peers/nms/node_modules/node-media-server/bin/app.js")
            });
        assert!(
            app.exists(),
            "{} is missing: npm install node-media-server (.ci/run does) or set NVRKIT_NMS",
            app.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_pem = cert.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let (rtmp, rtmps, http, https) = (free_port(), free_port(), free_port(), free_port());
        let config = format!(
            r#"{{"bind":"127.0.0.1","notify":{{"url":""}},
            "store":{{"path":"./data","maxHistory":100}},
            "auth":{{"play":false,"publish":false,"secret":"s3cret-for-tests",
              "jwt":{{"secret":"jwt-secret-for-tests","expiresIn":"24h","refreshExpiresIn":"7d",
              "algorithm":"HS256","users":[]}}}},
            "rtmp":{{"port":{rtmp}}},
            "rtmps":{{"port":{rtmps},"key":"./key.pem","cert":"./cert.pem"}},
            "http":{{"port":{http}}},
            "https":{{"port":{https},"key":"./key.pem","cert":"./cert.pem"}},
            "webadmin":{{"enable":false}},"record":{{"auto":false,"path":"./record"}}}}"#
        );
        let cfg = dir.path().join("config.json");
        std::fs::File::create(&cfg)
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        let child = Command::new("node")
            .arg(&app)
            .arg("-c")
            .arg(&cfg)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is not installed");
        wait_for_port(rtmp, "node-media-server (rtmp)");
        wait_for_port(rtmps, "node-media-server (rtmps)");
        Nms {
            _dir: dir,
            rtmp,
            rtmps,
            cert_pem,
            child,
        }
    }
}

impl Drop for Nms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs node-media-server (npm) and ffprobe; run by .ci/run"]
fn node_media_server_reads_back_seamlessly_over_rtmp_and_rtmps() {
    let nms = Nms::start();
    let rt = runtime();
    let c = clip(&shared("bigbuckbunny.mp4"));
    // One push over plain RTMP, one over TLS (rustls, trusting the certificate made above).
    let plain = PushConfig::new(
        RtmpUrl::parse(&format!("rtmp://127.0.0.1:{}/live/plain", nms.rtmp)).unwrap(),
    );
    let mut tls = PushConfig::new(
        RtmpUrl::parse(&format!("rtmps://localhost:{}/live/tls", nms.rtmps)).unwrap(),
    );
    tls.extra_roots = rustls_pem(&nms.cert_pem);
    let (l1, p1) = start_push(&rt, &c, plain);
    let (l2, p2) = start_push(&rt, &c, tls);
    wait_live(&p1, 1);
    wait_live(&p2, 1);
    let secs = (c.period_micros() * 3 / 1_000_000 + 8) as u32;
    let probes: Vec<_> = ["plain", "tls"]
        .into_iter()
        .map(|s| {
            let url = format!("rtmp://127.0.0.1:{}/live/{s}", nms.rtmp);
            std::thread::spawn(move || ffprobe(&url, secs))
        })
        .collect();
    for (name, probe) in ["plain", "tls"].into_iter().zip(probes) {
        let (packets, _) = probe.join().unwrap();
        assert_seamless(name, &c, &packets);
    }
    rt.block_on(async {
        p1.stop().await.unwrap();
        p2.stop().await.unwrap();
        l1.stop().await;
        l2.stop().await;
    });
}

#[test]
#[ignore = "needs node-media-server (npm); run by .ci/run"]
fn node_media_server_takes_hevc_as_enhanced_rtmp() {
    let nms = Nms::start();
    let rt = runtime();
    let c = clip(&root().join("testdata/h265_hvc1.mp4"));
    let url = RtmpUrl::parse(&format!("rtmp://127.0.0.1:{}/live/hevc", nms.rtmp)).unwrap();
    let mut config = PushConfig::new(url);
    config.enhanced_rtmp = EnhancedRtmp::Always;
    let (looper, push) = start_push(&rt, &c, config);
    wait_live(&push, 1);
    let t0 = Instant::now();
    while push.stats().frames < 100 {
        assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", push.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(push.stats().connects, 1, "the server kept the stream");
    rt.block_on(async {
        push.stop().await.unwrap();
        looper.stop().await;
    });
}

fn rustls_pem(pem: &str) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

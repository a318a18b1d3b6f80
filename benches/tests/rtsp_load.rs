//! rtsp-load against an in-process loop feeder (`nvrkit_feed`): every session gets frames and,
//! on loopback, loses nothing, over TCP and UDP, with Digest auth; and its CLI follows the
//! vocabulary.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nvrkit_benches::rtsp_load::{self, Config, Report, Transport};
use nvrkit_feed::Clip;
use nvrkit_feed::rtsp::auth::Auth;
use nvrkit_feed::server::{Config as ServerConfig, Server};
use nvrkit_media::Demuxer;
use nvrkit_testutil::workspace_root as root;

const CLIP: &str = "h264_main_720p25_aac";

async fn server(auth: Option<Auth>) -> Server {
    let path = root().join(format!("testdata/{CLIP}.mp4"));
    let demux = Demuxer::open(&path).unwrap();
    let clip: Arc<Clip> = Clip::load(CLIP.to_owned(), &demux).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth,
        ..ServerConfig::default()
    };
    Server::start(config, vec![clip])
        .await
        .expect("server starts")
}

async fn load(url: String, clients: usize, transport: Transport, audio: bool) -> Report {
    let config = Config {
        url,
        clients,
        threads: 2,
        duration: Duration::from_secs(2),
        transport,
        ramp: 100.0,
        audio,
        timeout: Duration::from_secs(10),
    };
    tokio::task::spawn_blocking(move || rtsp_load::run(&config))
        .await
        .unwrap()
        .expect("the run completes")
}

fn check(what: &str, r: &Report, clients: usize) {
    let json = serde_json::to_string_pretty(r).unwrap();
    assert_eq!(r.ok, clients, "{what}: every session ok\n{json}");
    assert!(r.errors.is_empty(), "{what}\n{json}");
    let frames = r.frames_per_session.expect("frames counted");
    assert!(frames.min > 0.0, "{what}: a session got no frame\n{json}");
    assert_eq!(r.totals.lost, 0, "{what}: loss on loopback\n{json}");
    assert!(r.every_frame, "{what}\n{json}");
    assert_eq!(
        r.with_keyframe, clients,
        "{what}: every session saw an IDR\n{json}"
    );
    // Lateness measured after the settle time (2 s played: some frames of every session).
    assert!(
        r.lateness.frames > 0 && r.lateness.frames < r.totals.frames,
        "{what}\n{json}"
    );
    assert!(
        r.cpu.user_s + r.cpu.sys_s > 0.0,
        "{what}: CPU time measured\n{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sessions_over_tcp_and_udp_get_every_frame() {
    let s = server(None).await;
    let url = format!("rtsp://127.0.0.1:{}/{CLIP}", s.local_addr().port());
    let tcp = load(url.clone(), 20, Transport::Tcp, false).await;
    check("tcp", &tcp, 20);
    let udp = load(url, 20, Transport::Udp, true).await;
    check("udp", &udp, 20);
    // Video and audio were set up: more packets than video frames' worth of marker bits, and
    // the audio's sequence counted too (no loss above includes it).
    assert!(udp.totals.packets > udp.totals.frames);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_is_answered_and_a_wrong_password_fails_every_session() {
    let s = server(Auth::parse("admin:s3cret")).await;
    let port = s.local_addr().port();
    let ok = load(
        format!("rtsp://admin:s3cret@127.0.0.1:{port}/{CLIP}"),
        3,
        Transport::Tcp,
        false,
    )
    .await;
    check("digest", &ok, 3);
    let wrong = load(
        format!("rtsp://admin:nope@127.0.0.1:{port}/{CLIP}"),
        3,
        Transport::Tcp,
        false,
    )
    .await;
    assert_eq!(wrong.ok, 0);
    assert_eq!(
        wrong.errors.get("DESCRIBE answered 401"),
        Some(&3),
        "{:?}",
        wrong.errors
    );
    assert!(!wrong.every_frame);
    s.shutdown().await;
}

#[test]
fn cli_follows_the_vocabulary() {
    nvrkit_testutil::check_cli_vocabulary("rtsp-load", Path::new(env!("CARGO_BIN_EXE_rtsp-load")));
}

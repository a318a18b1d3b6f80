//! Serving threads (`Config::threads`): connections spread round-robin over the caller's
//! runtime and threads of their own, each played to its end, and the threads gone after
//! shutdown. A test binary of its own: it counts this process's threads by name.

use std::time::Duration;

use futures::StreamExt;
use nvrkit_feed::Clip;
use nvrkit_feed::server::{Config, Server};
use nvrkit_media::Demuxer;
use retina::client::{
    PlayOptions, SessionOptions, SetupOptions, TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::CodecItem;

use nvrkit_testutil::workspace_root as root;

/// This process's threads as (name, voluntary context switches).
fn threads() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = t.expect("a task").path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // ended meanwhile
        };
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        out.push((name.trim().to_owned(), switches));
    }
    out
}

fn serving_threads() -> Vec<(String, u64)> {
    let mut v: Vec<_> = threads()
        .into_iter()
        .filter(|(n, _)| n.starts_with("rtsp-"))
        .collect();
    v.sort();
    v
}

/// Plays `url` until `frames` video frames came; returns (frames, frames lost).
async fn play(url: url::Url, udp: bool, frames: usize) -> (usize, u64) {
    let mut session = retina::client::Session::describe(url, SessionOptions::default())
        .await
        .expect("DESCRIBE");
    let transport = if udp {
        Transport::Udp(UdpTransportOptions::default())
    } else {
        Transport::Tcp(TcpTransportOptions::default())
    };
    for i in 0..session.streams().len() {
        session
            .setup(i, SetupOptions::default().transport(transport.clone()))
            .await
            .expect("SETUP");
    }
    let mut demuxed = session
        .play(PlayOptions::default())
        .await
        .expect("PLAY")
        .demuxed()
        .expect("demuxed");
    let (mut seen, mut lost) = (0, 0);
    while seen < frames {
        let item = tokio::time::timeout(Duration::from_secs(20), demuxed.next())
            .await
            .expect("hang guard: media kept coming")
            .expect("stream ended early")
            .expect("retina accepted every packet");
        if let CodecItem::VideoFrame(f) = item {
            seen += 1;
            lost += u64::from(f.loss());
        }
    }
    (seen, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_three_runtimes_play_and_the_threads_end_at_shutdown() {
    let path = root().join("testdata/h264_main_720p25_aac.mp4");
    let clip = Clip::load("cam", &Demuxer::open(&path).expect("open")).expect("clip");
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 3,
        ..Config::default()
    };
    let s = Server::start(config, vec![clip])
        .await
        .expect("server starts");
    // Started by the listener's task (a thread names itself once it runs): the caller's
    // runtime is the third.
    let names = || -> Vec<String> { serving_threads().into_iter().map(|(n, _)| n).collect() };
    for _ in 0..100 {
        if names().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names().len(), 2, "serving threads: {:?}", names());
    let before = serving_threads();
    let url: url::Url = format!("rtsp://127.0.0.1:{}/cam", s.local_addr().port())
        .parse()
        .unwrap();
    // Six sessions, two per runtime, over TCP and UDP: every one gets 50 frames, none lost.
    let sessions: Vec<_> = (0..6)
        .map(|i| tokio::spawn(play(url.clone(), i % 2 == 1, 50)))
        .collect();
    for (i, h) in sessions.into_iter().enumerate() {
        let (frames, lost) = h.await.expect("session task");
        assert_eq!((frames, lost), (50, 0), "session {i}");
    }
    // Each serving thread woke for the frames of its own sessions (two sessions, 50 frames
    // each, woken by its ring at least once a frame); one that served nobody stays parked.
    for ((name, b), (_, a)) in before.iter().zip(serving_threads()) {
        assert!(a - b >= 50, "{name} woke {} times", a - b);
    }
    s.shutdown().await;
    assert!(
        serving_threads().is_empty(),
        "serving threads left after shutdown: {:?}",
        serving_threads()
    );
}

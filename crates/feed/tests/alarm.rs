//! Scripted alarms through a real `Server`: its pacer reports the cued frame every lap, and the
//! frame is in the clip's ring when it does. The tokio clock is paused (it jumps to each
//! deadline), so laps of a 2 s clip take no wall time and no assertion is on timing.

use std::sync::Arc;

use nvrkit_feed::Clip;
use nvrkit_feed::alarm::{Alarm, Tap, Target};
use nvrkit_feed::server::{Config, Server};
use nvrkit_media::Demuxer;
use nvrkit_ring::Start;

fn short_clip() -> Arc<Clip> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/h264_main_720p25_aac.mp4"
    );
    let bytes = std::fs::read(path).unwrap();
    let demux = Demuxer::from_bytes(path, bytes.into()).unwrap();
    Clip::load("short", &demux).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_pacer_reports_the_cued_frame_every_lap_once_it_is_in_the_ring() {
    let clip = short_clip();
    let period = clip.period_micros();
    let (tap, mut fired) = Tap::new(vec![Alarm {
        clip: "short".into(),
        position_micros: 1_200_000,
        target: Target::Onvif,
    }]);
    let server = Server::start(
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            udp: false,
            alarms: Some(tap),
            ..Config::default()
        },
        vec![clip.clone()],
    )
    .await
    .unwrap();
    let ring = server.ring("short").unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = fired.recv().await.unwrap();
        // The reported frame is the newest video frame in the ring (the pacer pushed it, then
        // reported it; audio may follow it before we look, video cannot until its deadline).
        let mut reader = ring.reader(Start::NewestKeyframe);
        let mut newest_video = None;
        while let Ok(frame) = reader.try_recv() {
            if frame.stream == clip.master() {
                newest_video = frame.wall;
            }
        }
        assert_eq!(newest_video, Some(f.wall), "{f:?}");
        got.push(f);
    }
    server.shutdown().await;
    let laps: Vec<i64> = got.iter().map(|f| f.lap).collect();
    assert_eq!(laps, [0, 1, 2]);
    assert!(got.iter().all(|f| f.frame == got[0].frame && f.alarm == 0));
    assert!(got.iter().all(|f| f.frame_position_micros == 1_200_000));
    for w in got.windows(2) {
        assert_eq!(w[1].wall.micros_since(w[0].wall), period);
    }
}

#[tokio::test]
async fn an_alarm_outside_the_loop_is_refused_at_start() {
    let (tap, _rx) = Tap::new(vec![Alarm {
        clip: "short".into(),
        position_micros: 2_500_000,
        target: Target::Onvif,
    }]);
    let err = Server::start(
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            udp: false,
            alarms: Some(tap),
            ..Config::default()
        },
        vec![short_clip()],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("outside the loop"), "{err}");
}

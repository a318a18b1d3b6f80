//! The restream's rings: each camera's frames relayed into a ring of their own whose wall-clock
//! times are never later than their arrival, which the RTSP restream and the RTMP pushes read.
//!
//! Why: the restream starts a viewer at the first keyframe whose wall-clock time is at or after
//! the moment it joined (`nvrkit_feed::server::Config::strict_start`), and ingest stamps frames
//! on the camera's clock anchored at the arrival of its first frame. A camera that opens each
//! session with its current GOP at once (a "fast start", as restreamers such as go2rtc and
//! nvrkit's own loop feeder do) puts that anchor, and every later stamp, ahead by the age of that
//! GOP, so a keyframe already in the ring when a viewer joined could pass as fresh and the viewer
//! would start that far behind (measured: 286 ms mean, 583 ms max, nvr joining 700 ms into a 1 s
//! GOP). A frame cannot have been captured after it arrived: `min(wall, arrival)` takes the skew
//! out and is still non-decreasing; for frames ingest held back (a B-frame camera's GOP) the
//! camera's time is the earlier one and stays. The recorder keeps the camera's times untouched.
//! The cost: one task and one ring of slots per camera; payloads are shared (`Bytes`).

use std::time::Duration;

use nvrkit_feed::source::LiveSource;
use nvrkit_media::{TrackInfo, WallTime};
use nvrkit_ring::{RecvError, Ring, Start};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How much the restream's ring keeps: a viewer starts at the next keyframe, so the current GOP
/// is all it needs; 4 s as `nvrkit-feed`'s own rings.
const RING_DURATION: Duration = Duration::from_secs(4);

/// A camera's restream source (`name`, its video in stream 0, its `tracks`), fed from `camera`'s
/// ring by a task that ends when that ring closes or `stop` is sent.
pub fn relay(
    name: &str,
    camera: &Ring,
    tracks: watch::Receiver<Option<Vec<TrackInfo>>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(LiveSource, JoinHandle<()>)> {
    let (mut writer, ring) = nvrkit_ring::ring(
        nvrkit_ring::Config::new()
            .max_duration(RING_DURATION)
            .video_stream(0),
    )?;
    let mut reader = camera.reader(Start::NewestKeyframe);
    let camera_name = name.to_owned();
    let task = tokio::spawn(async move {
        loop {
            let mut f = tokio::select! {
                r = reader.recv_async() => match r {
                    Ok(f) => f,
                    Err(RecvError::Lagged { skipped }) => {
                        // The ring waits for the next keyframe after the gap by itself.
                        tracing::warn!(camera = camera_name, skipped, "restream relay lagged");
                        continue;
                    }
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            let arrival = WallTime::now();
            f.wall = Some(f.wall.map_or(arrival, |w| w.min(arrival)));
            if let Err(e) = writer.push(f) {
                tracing::warn!(camera = camera_name, "restream relay: {e}");
            }
        }
    });
    Ok((LiveSource::new(name, ring, 0, tracks), task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nvrkit_media::Frame;

    fn frame(stream: usize, dts: i64, wall: WallTime, keyframe: bool) -> Frame {
        Frame {
            stream,
            timescale: 90_000,
            dts,
            pts: dts,
            duration: 3600,
            wall: Some(wall),
            keyframe,
            discard: false,
            discontinuity: false,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        }
    }

    #[tokio::test]
    async fn a_wall_time_ahead_of_arrival_is_brought_back_and_an_earlier_one_kept() {
        let (mut camera_writer, camera) = nvrkit_ring::ring(nvrkit_ring::Config::new()).unwrap();
        let (_tx, tracks) = watch::channel(None);
        let (stop_tx, stop) = watch::channel(false);
        let (live, task) = relay("cam", &camera, tracks, stop).unwrap();
        let mut out = live.ring().reader(Start::NewestKeyframe);
        // A frame ingest held back (a B-frame camera's GOP): its camera time, 900 ms before
        // now, is the earlier one and stays.
        let behind = WallTime::now().add_micros(-900_000);
        camera_writer.push(frame(0, 0, behind, true)).unwrap();
        let f = tokio::time::timeout(Duration::from_secs(5), out.recv_async())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.wall, Some(behind), "an earlier camera time stays");
        assert_eq!(f.data, Bytes::from_static(&[0, 0, 0, 1, 0x65]));
        // A fast-start camera's clock, 700 ms ahead: brought back to the arrival.
        let before = WallTime::now();
        camera_writer
            .push(frame(0, 3600, before.add_micros(700_000), false))
            .unwrap();
        let g = tokio::time::timeout(Duration::from_secs(5), out.recv_async())
            .await
            .unwrap()
            .unwrap();
        let after = WallTime::now();
        let w = g.wall.unwrap();
        assert!(
            w >= before && w <= after,
            "{w:?} not in [{before:?}, {after:?}]"
        );
        assert_eq!((g.dts, g.pts), (3600, 3600), "media times untouched");
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }
}

//! Live sources: a ring someone else fills (a camera's, in nvr) served by the RTSP server
//! ([`crate::server::Server::start_with`]) beside the looped clips.
//!
//! A looped clip's tracks are known before the server starts and never change; a camera's are
//! known only once it has connected, and may change when it reconnects (another resolution,
//! other parameter sets, audio switched on). So a [`LiveSource`] carries its tracks as a
//! [`watch`]: `None` until known (DESCRIBE answers 404 until then, as for a path that does not
//! exist yet), and a new value when they change. A session plays under the tracks it was
//! described with: PLAY fails (`503`) when they changed since DESCRIBE, and a playing session
//! that sees a change ends (RTCP BYE, the connection closed), so its client reconnects and
//! describes the new tracks, the way mediamtx and go2rtc end their readers when a publisher's
//! tracks change. A reconnect with the same tracks changes nothing: the watch is only sent a
//! different value, so viewers ride through it.
//!
//! The ring's frames are served as they come: they must be in real time already (a camera's
//! are), with `Frame::stream` the index of their track in the watched list and
//! `FrameFormat::MP4` payloads (length-prefixed NAL units, parameter sets in the track), as
//! nvrkit-recorder's ingest makes them. There is no pacer: a ring filled in bursts (ingest hands
//! over a GOP at a time) reaches TCP clients in the same bursts, and UDP clients paced at
//! [`crate::server::Config::udp_burst_speed`].

use std::sync::Arc;

use nvrkit_media::TrackInfo;
use nvrkit_ring::Ring;
use tokio::sync::watch;

use crate::rtsp::core::StreamInfo;

/// A live source's tracks as they change: `None` until the camera is connected (RTSP sessions
/// and RTMP pushes of it end or start again when they change).
pub type Tracks = watch::Receiver<Option<Vec<TrackInfo>>>;

/// A ring served at `rtsp://HOST:PORT/<name>` whose tracks may change.
#[derive(Debug, Clone)]
pub struct LiveSource {
    name: String,
    ring: Ring,
    video_stream: usize,
    tracks: Tracks,
}

impl LiveSource {
    /// A source at `name` reading `ring`, whose video is stream `video_stream` and whose tracks
    /// `tracks` follows (`None` until known).
    pub fn new(
        name: impl Into<String>,
        ring: Ring,
        video_stream: usize,
        tracks: Tracks,
    ) -> LiveSource {
        LiveSource {
            name: name.into(),
            ring,
            video_stream,
            tracks,
        }
    }

    /// Its path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The video stream (a client's first frame is one of its keyframes).
    pub fn video_stream(&self) -> usize {
        self.video_stream
    }

    /// A watch of its tracks (`None` until known), for a reader that follows them itself (the
    /// RTMP publisher, [`crate::rtmp::Push::start_source`]).
    pub fn tracks(&self) -> Tracks {
        self.tracks.clone()
    }

    /// What DESCRIBE says now: `None` while the tracks are unknown.
    pub(crate) fn info(&self) -> Option<Arc<StreamInfo>> {
        let tracks = self.tracks.borrow().clone()?;
        Some(Arc::new(StreamInfo::new(&self.name, tracks)))
    }

    /// A watch of the tracks, marked as seen, and whether they are still `described`.
    pub(crate) fn watch_from(&self, described: &[TrackInfo]) -> (Tracks, bool) {
        let mut w = self.tracks.clone();
        let same = w.borrow_and_update().as_deref() == Some(described);
        (w, same)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_are_unknown_until_sent_and_a_change_is_seen() {
        let d = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let (_w, ring) = nvrkit_ring::ring(nvrkit_ring::Config::new()).unwrap();
        let (tx, rx) = watch::channel(None);
        let s = LiveSource::new("cam", ring, 0, rx);
        assert!(s.info().is_none(), "no tracks yet: nothing to describe");
        let tracks = d.tracks().to_vec();
        tx.send_replace(Some(tracks.clone()));
        let info = s.info().unwrap();
        assert_eq!(info.tracks, tracks);
        let (w, same) = s.watch_from(&tracks);
        assert!(same);
        assert!(!w.has_changed().unwrap());
        tx.send_replace(Some(tracks[..1].to_vec()));
        assert!(
            w.has_changed().unwrap(),
            "a playing session sees the change"
        );
        assert!(!s.watch_from(&tracks).1, "PLAY after the change is refused");
    }
}

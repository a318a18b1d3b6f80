//! Live view: `GET /api/live/{camera}` upgrades to a WebSocket that carries the camera's ring as
//! fragmented MP4, which the page appends to a Media Source Extensions `SourceBuffer`.
//!
//! The stream starts at the ring's newest keyframe (at most one GOP old, sent at once), then
//! follows the camera one frame per fragment ([`FragmentedMuxer::per_frame`]). Video only: the
//! page plays muted (autoplay), and a G.711 track could not go into MSE anyway.
//!
//! Messages, server to page:
//! 1. text, once: `{"codec": "avc1.4D401F", "width": W, "height": H, "wall0_ms": T}`, where
//!    `T` is the wall-clock time (ms since 1970, the NVR's clock) of media time 0, so the page can
//!    tell how far behind the camera it shows (`now − (T + currentTime)`);
//! 2. binary: the init segment with the first fragment, then one fragment per frame;
//! 3. a close frame saying why the stream ended (camera reconnected, viewer too slow, ...).
//!
//! Hostile limits (docs/security.md): at most [`LiveLimits::per_camera`] viewers of one camera and
//! [`LiveLimits::total`] in all, of which one client address (IPv6: its /64) holds at most
//! [`LiveLimits::per_addr_per_camera`] of a camera and [`LiveLimits::per_addr`] in all (more get
//! 503 before the upgrade; the counting is `nvrkit_net`'s [`ConnLimiter`]); a viewer whose queue
//! of [`LiveLimits::queue`] fragments or [`LiveLimits::queue_bytes`] bytes is full (it does not
//! read) is dropped at once; every write has
//! [`LiveLimits::send_deadline`]; the page acknowledges what it appended every second, and a
//! viewer silent for [`LiveLimits::ack_deadline`] is dropped (a viewer that stopped reading would
//! otherwise fill socket buffers of megabytes first); what the page sends is read and discarded,
//! each message at most [`MAX_CLIENT_MESSAGE`] bytes. A viewer that falls out of the ring is dropped, not resynced.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use futures::{SinkExt as _, StreamExt as _};
use nvrkit_media::CodecParams;
use nvrkit_media::mux::FragmentedMuxer;
use nvrkit_net::{ByteBudget, ConnLimiter, Permit, Refusal};
use nvrkit_ring::{RecvError, Start};
use serde_json::json;
use tokio::sync::mpsc;

use crate::http::CameraEntry;

/// The largest message a page may send (it sends none; pings and close frames fit).
pub const MAX_CLIENT_MESSAGE: usize = 1024;

/// Caps and deadlines of the live view.
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// Viewers of one camera at a time.
    pub per_camera: usize,
    /// Viewers of all cameras at a time.
    pub total: usize,
    /// Viewers of one camera from one client address (IPv6: its /64).
    pub per_addr_per_camera: usize,
    /// Viewers of all cameras from one client address.
    pub per_addr: usize,
    /// Fragments queued for one viewer; a full queue drops it.
    pub queue: usize,
    /// Bytes queued for one viewer; past them it is dropped (a camera sending huge frames
    /// would make 128 fragments hundreds of megabytes).
    pub queue_bytes: usize,
    /// The longest one write to a viewer may take.
    pub send_deadline: Duration,
    /// A viewer that sends nothing for this long is dropped: the page acknowledges what it
    /// appended every second, so a viewer that stopped reading (whose bytes would otherwise sit
    /// in socket buffers for a minute) is found out.
    pub ack_deadline: Duration,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits {
            per_camera: 8,
            total: 32,
            // A couple of tabs on one machine; the page opens one viewer per camera.
            per_addr_per_camera: 2,
            per_addr: 16,
            // About 5 s at 25 fps: a viewer further behind than that is not watching live.
            queue: 128,
            // About 8 s of a 8 Mbit/s stream.
            queue_bytes: 8 << 20,
            send_deadline: Duration::from_secs(5),
            ack_deadline: Duration::from_secs(10),
        }
    }
}

/// The live viewers: counts per camera and client address against [`LiveLimits`].
#[derive(Debug)]
pub struct Live {
    limits: LiveLimits,
    /// All viewers: `total`, `per_addr`.
    all: Arc<ConnLimiter>,
    /// Per camera (only configured cameras are admitted, so bounded): `per_camera`,
    /// `per_addr_per_camera`.
    cameras: Mutex<HashMap<String, Arc<ConnLimiter>>>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new(LiveLimits::default())
    }
}

/// A viewer's place, given back on drop.
#[derive(Debug)]
pub struct Slot {
    _camera: Permit,
    _all: Permit,
}

impl Live {
    /// Viewers under these limits.
    pub fn new(limits: LiveLimits) -> Self {
        Live {
            limits,
            all: ConnLimiter::new(limits.total, Some(limits.per_addr)),
            cameras: Mutex::default(),
        }
    }

    fn camera(&self, camera: &str) -> Arc<ConnLimiter> {
        let mut c = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(camera.to_owned())
            .or_insert_with(|| {
                ConnLimiter::new(
                    self.limits.per_camera,
                    Some(self.limits.per_addr_per_camera),
                )
            })
            .clone()
    }

    /// A place for one more viewer of `camera` from `peer`, or why not.
    pub fn admit(&self, camera: &str, peer: IpAddr) -> Result<Slot, String> {
        let l = self.limits;
        let cam = self.camera(camera).try_acquire(peer).map_err(|r| match r {
            Refusal::PerAddr => format!(
                "this client already has {} live viewers of camera {camera:?}, the most one address gets",
                l.per_addr_per_camera
            ),
            _ => format!(
                "camera {camera:?} has {} live viewers, the most it serves",
                l.per_camera
            ),
        })?;
        let all = self.all.try_acquire(peer).map_err(|r| match r {
            Refusal::PerAddr => format!(
                "this client already has {} live viewers, the most one address gets",
                l.per_addr
            ),
            _ => format!("{} live viewers, the most nvr serves", l.total),
        })?;
        Ok(Slot {
            _camera: cam,
            _all: all,
        })
    }

    /// Viewers of `camera` now.
    pub fn viewers(&self, camera: &str) -> usize {
        let c = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        c.get(camera).map_or(0, |l| l.open())
    }

    /// Upgrades the request into a live stream of `camera`.
    pub fn upgrade(
        &self,
        ws: WebSocketUpgrade,
        camera: CameraEntry,
        slot: Slot,
    ) -> axum::response::Response {
        let limits = self.limits;
        ws.max_message_size(MAX_CLIENT_MESSAGE)
            .max_frame_size(MAX_CLIENT_MESSAGE)
            .on_upgrade(move |socket| serve(socket, camera, slot, limits))
    }
}

/// How the frame side of a stream ended.
enum End {
    /// The viewer's queue is full: drop it now.
    Full,
    /// Say why and close.
    Close(u16, String),
}

/// The first message: what the page needs for `MediaSource.addSourceBuffer`, and the clock.
pub fn hello(params: &CodecParams, wall0_ms: i64) -> serde_json::Value {
    let (width, height) = match params {
        CodecParams::H264(v) | CodecParams::H265(v) => (v.width, v.height),
        _ => (0, 0),
    };
    json!({
        "codec": params.rfc6381(),
        "h265": matches!(params, CodecParams::H265(_)),
        "width": width,
        "height": height,
        "wall0_ms": wall0_ms,
    })
}

/// A viewer's queue, bounded in messages (the channel) and in bytes (an
/// [`nvrkit_net::ByteBudget`]: each message takes its bytes, given back once written).
struct Queue {
    tx: mpsc::Sender<(Message, u64)>,
    bytes: Arc<ByteBudget>,
}

impl Queue {
    /// Queues `m` if there is room for it, in messages and in bytes.
    fn try_send(&self, m: Message) -> bool {
        let len = match &m {
            Message::Binary(b) => b.len(),
            Message::Text(t) => t.len(),
            _ => 0,
        } as u64;
        if !self.bytes.try_take(len) {
            return false;
        }
        if self.tx.try_send((m, len)).is_err() {
            self.bytes.give_back(len);
            return false;
        }
        true
    }
}

async fn produce(cam: &CameraEntry, queue: &Queue) -> End {
    let Some(tracks) = cam.state.tracks.lock().ok().and_then(|t| t.clone()) else {
        return End::Close(close_code::AGAIN, "the camera is not connected yet".into());
    };
    let generation = cam.state.tracks_generation.load(Ordering::Acquire);
    let Some(video) = tracks.iter().position(|t| t.params.is_video()) else {
        return End::Close(close_code::UNSUPPORTED, "the camera sends no video".into());
    };
    let mut track = tracks[video].clone();
    track.stream = 0;
    track.track_id = 1;
    let mut mux = match FragmentedMuxer::per_frame(std::slice::from_ref(&track)) {
        Ok(m) => m,
        Err(e) => return End::Close(close_code::ERROR, format!("{e}")),
    };
    let mut reader = cam.ring.reader(Start::NewestKeyframe);
    // Media time 0 is the first frame's decode time.
    let mut base: Option<i64> = None;
    loop {
        let mut frame = match reader.recv_async().await {
            Ok(f) => f,
            Err(RecvError::Lagged { skipped }) => {
                return End::Close(
                    close_code::AGAIN,
                    format!("the viewer fell {skipped} frames behind the ring"),
                );
            }
            Err(_) => return End::Close(close_code::AWAY, "the camera stopped".into()),
        };
        if frame.stream != video || frame.timescale != track.timescale {
            continue;
        }
        if cam.state.tracks_generation.load(Ordering::Acquire) != generation
            || (base.is_some() && frame.discontinuity)
        {
            return End::Close(close_code::AGAIN, "the camera reconnected".into());
        }
        let b = match base {
            Some(b) => b,
            None => {
                let b = frame.dts;
                base = Some(b);
                let wall0_ms = frame.wall.map_or(0, |w| {
                    w.add_ticks(-(frame.pts - b), frame.timescale).as_micros() / 1000
                });
                let text = hello(&track.params, wall0_ms).to_string();
                if !queue.try_send(Message::Text(text.into())) {
                    return End::Full;
                }
                b
            }
        };
        frame.stream = 0;
        frame.dts -= b;
        frame.pts -= b;
        match mux.push(frame) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                if !queue.try_send(Message::Binary(bytes)) {
                    return End::Full;
                }
            }
            Err(e) => return End::Close(close_code::ERROR, format!("{e}")),
        }
    }
}

async fn serve(socket: WebSocket, cam: CameraEntry, slot: Slot, limits: LiveLimits) {
    let (mut tx, mut rx) = socket.split();
    let (queue_tx, mut queued) = mpsc::channel(limits.queue.max(1));
    let bytes = ByteBudget::new(limits.queue_bytes as u64);
    let queue = Queue {
        tx: queue_tx,
        bytes: bytes.clone(),
    };
    let camera = cam.name.clone();
    let producer = async move {
        match produce(&cam, &queue).await {
            End::Full => "the viewer does not read (its queue is full)".to_owned(),
            End::Close(code, reason) => {
                let _ = queue.try_send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.clone().into(),
                })));
                drop(queue);
                // The writer sends what is queued and the close frame, then ends the stream.
                std::future::pending::<String>().await
            }
        }
    };
    let writer = async {
        while let Some((m, len)) = queued.recv().await {
            match tokio::time::timeout(limits.send_deadline, tx.send(m)).await {
                Ok(Ok(())) => bytes.give_back(len),
                Ok(Err(e)) => return format!("write failed: {e}"),
                Err(_) => {
                    return format!("a write took over {} s", limits.send_deadline.as_secs_f64());
                }
            }
        }
        "stream ended".to_owned()
    };
    let reader = async {
        // The page sends acknowledgements, pings and its close; each message is capped, and
        // one must come within the deadline.
        loop {
            match tokio::time::timeout(limits.ack_deadline, rx.next()).await {
                Err(_) => {
                    return format!(
                        "the viewer sent nothing for {} s (it acknowledges every second)",
                        limits.ack_deadline.as_secs_f64()
                    );
                }
                Ok(None | Some(Ok(Message::Close(_)) | Err(_))) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
        "the viewer closed".to_owned()
    };
    let why = tokio::select! {
        w = producer => w,
        w = writer => w,
        w = reader => w,
    };
    tracing::info!(camera, "live viewer gone: {why}");
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_are_capped_per_camera_and_in_all_and_slots_come_back() {
        let live = Live::new(LiveLimits {
            per_camera: 2,
            total: 3,
            ..LiveLimits::default()
        });
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        let a1 = live.admit("a", ip(2)).unwrap();
        let _a2 = live.admit("a", ip(3)).unwrap();
        assert!(
            live.admit("a", ip(4))
                .unwrap_err()
                .contains("2 live viewers")
        );
        let _b1 = live.admit("b", ip(4)).unwrap();
        assert!(
            live.admit("c", ip(5))
                .unwrap_err()
                .contains("3 live viewers")
        );
        drop(a1);
        assert_eq!(live.viewers("a"), 1);
        let _c1 = live.admit("c", ip(5)).unwrap();
        assert_eq!(live.viewers("c"), 1);
    }

    /// M3 (review-nvr.md): one address gets its share of a camera's viewers and of all, the
    /// others are still admitted.
    #[test]
    fn one_address_gets_only_its_share_of_viewers() {
        let live = Live::new(LiveLimits {
            per_camera: 8,
            total: 32,
            per_addr_per_camera: 2,
            per_addr: 3,
            ..LiveLimits::default()
        });
        let attacker = IpAddr::from([127, 0, 0, 2]);
        let client = IpAddr::from([127, 0, 0, 3]);
        let _held = [
            live.admit("a", attacker).unwrap(),
            live.admit("a", attacker).unwrap(),
        ];
        let e = live.admit("a", attacker).unwrap_err();
        assert!(e.contains("the most one address gets"), "{e}");
        let _b = live.admit("b", attacker).unwrap();
        let e = live.admit("c", attacker).unwrap_err();
        assert!(
            e.contains("3 live viewers, the most one address gets"),
            "{e}"
        );
        assert_eq!(live.viewers("a"), 2, "the refusals took no place");
        let _c = live.admit("a", client).unwrap();
    }

    /// M3: a viewer's queue is bounded in bytes as well as messages; written messages give
    /// their bytes back.
    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes() {
        let (tx, mut rx) = mpsc::channel(128);
        let q = Queue {
            tx,
            bytes: ByteBudget::new(1000),
        };
        let frag = || Message::Binary(bytes::Bytes::from(vec![0u8; 600]));
        assert!(q.try_send(frag()));
        assert!(!q.try_send(frag()), "1,200 bytes over 1,000");
        let (_, len) = rx.recv().await.unwrap();
        q.bytes.give_back(len);
        assert!(q.try_send(frag()), "the written one gave its bytes back");
    }

    #[test]
    fn hello_names_the_codec_and_flags_h265() {
        let d = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let v = d.tracks().iter().find(|t| t.params.is_video()).unwrap();
        let h = hello(&v.params, 1234);
        assert!(h["codec"].as_str().unwrap().starts_with("avc1."), "{h}");
        assert_eq!(h["h265"], false);
        assert_eq!(h["wall0_ms"], 1234);
        assert!(h["width"].as_u64().unwrap() > 0);
    }
}

//! # nvrkit-feed
//!
//! A virtual IP camera: MP4 clips served as endless, real-time RTSP streams whose timestamps run
//! on seamlessly across the loop seam, so a VMS can add them as generic RTSP cameras.
//!
//! - [`loop_source`]: [`Clip`] (a demuxed file in memory) and [`LoopSource`] (its endless
//!   frames on one continuous timeline; audio in whole AAC frames that never drift from video).
//! - [`check`]: [`check::check_clip`] runs a clip's loop offline for many loops and reports,
//!   per track, the seam step, frames dropped or gaps inserted, the A/V offset and a verdict
//!   (`loopcam check`, `nvr probe`).
//! - [`join`]: [`join::JoinFilter`], which keeps a late joiner from being sent the leading
//!   pictures of an open-GOP keyframe (H.265 RASL), which it cannot decode.
//! - [`rtp`]: RTP packetizers for H.264 (RFC 6184), H.265 (RFC 7798), AAC (RFC 3640) and
//!   G.711, RTCP sender reports and BYE, and [`rtp::TrackSender`], one track's sender state
//!   (SSRC, sequence, RTP clock), which composes a frame's packets as data ([`rtp::Outgoing`]).
//! - [`sdp`]: session descriptions.
//! - [`fault`]: fault modes ([`fault::FaultSet`]), per path from a URL query or a fault file:
//!   a camera that misbehaves on purpose.
//! - [`rtsp`]: request framing, Basic/Digest auth, and the sans-I/O session core:
//!   [`rtsp::core::Connection`] answers requests and owns the session, including what PLAY
//!   sends ([`rtsp::play::Playout`]: RTP-Info, sender reports, BYE); frames go in, packets
//!   come out. [`rtsp::driver::Driver`] is the whole connection as a state machine around it:
//!   events at explicit instants in, responses, packets, the next wake-up and what to do
//!   (PLAY from a ring, close) out; deadlines, liveness, the report schedule, which ring and
//!   frame PLAY starts at, UDP catch-up pacing.
//! - [`rtmp`]: the RTMP publisher (`loopcam push`): the same loop pushed to an RTMP server,
//!   FLV tags built here over `rml_rtmp`'s handshake and chunk stream, reconnecting with
//!   backoff, `rtmps://` through rustls.
//! - [`server`]: the RTSP socket layer, which decides nothing: listeners, UDP pair, one task
//!   per connection feeding its [`rtsp::driver::Driver`] and writing what it composes; and
//!   [`server::Server`], the handle. One [`LoopSource`] and one frame ring ([`nvrkit_ring`])
//!   per clip, paced to the wall clock ([`server::Looper`] for a loop without a server) and
//!   shared by all of its clients; a late joiner gets the current GOP at once, a slow one is
//!   skipped to a keyframe. RTSPS on a second listener ([`server::Config::tls_listen`], rustls
//!   via [`nvrkit_tls`]), interleaved RTP only.
//! - [`stamp`]: each video frame numbered by an SEI NAL unit ([`LoopSource::stamped`],
//!   [`server::Config::stamp_frames`]), for recorder self-tests.
//! - [`source`]: [`source::LiveSource`], a ring filled elsewhere (a camera's) whose tracks are
//!   known late and may change, served beside the clips ([`server::Server::start_with`]).
//!
//! - [`substream`]: a clip served at `NAME/sub` is the sub stream of clip `NAME`, its loop
//!   checked at start to be aligned with the main one frame for frame.
//!
//! - [`auth`]: HTTP Basic and Digest (RFC 7616), one implementation for RTSP and the ONVIF SOAP
//!   endpoints.
//! - [`alarm`]: scripted alarms, reported by the pacer when it releases the frame at their loop
//!   position; their dispatcher (feature `alarm`) raises ONVIF motion and sends Hikvision-style
//!   alarm mails with nvrkit-smtp's client.
//! - `onvif` (feature `onvif`): an ONVIF Profile S device per clip, each on its own HTTP
//!   listener (Device, Media, Media2, Events with PullPoint motion), and directed WS-Discovery
//!   probes answered (never multicast).
//! - `snapshot` (feature `snapshot`, on with `onvif`): [`snapshot::Snapshotter`], a JPEG of a
//!   clip's latest keyframe (H.264 decoded with OpenH264; H.265 from a sidecar JPEG), encoded
//!   once per keyframe and cached.
//!
//! Non-goals: RTSP 2.0, multicast, SRTP, recording (ANNOUNCE/RECORD), playing RTMP.
//!
//! ## Serve the embedded sample
//!
//! ```no_run
//! use nvrkit_feed::{Clip, server::{Config, Server}};
//!
//! # async fn run() -> Result<(), nvrkit_feed::Error> {
//! let demux = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())
//!     .map_err(|source| nvrkit_feed::Error::Clip { name: "sample".into(), source })?;
//! let clip = Clip::load("sample", &demux)?;
//! let server = Server::start(Config::default(), vec![clip]).await?;
//! println!("{}", server.urls("127.0.0.1")[0]); // rtsp://127.0.0.1:8554/sample
//! # Ok(()) }
//! ```
//!
//! ## Loop a clip without a server
//!
//! ```
//! use nvrkit_feed::{Clip, LoopSource};
//! use nvrkit_media::{Demuxer, WallTime};
//!
//! let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
//! let clip = Clip::load("sample", &demux)?;
//! // 3 loops of 10 s: video PTS never repeat, and step by one frame across each seam.
//! let video: Vec<i64> = LoopSource::new(clip, WallTime::now())
//!     .filter(|f| f.stream == 0)
//!     .take(750)
//!     .map(|f| f.pts)
//!     .collect();
//! assert!(video.windows(2).all(|w| w[1] - w[0] == 512));
//! # Ok::<(), nvrkit_feed::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod alarm;
pub mod auth;
pub mod check;
mod config;
pub mod error;
pub mod fault;
mod feeds;
mod handle;
pub mod join;
pub mod loop_source;
#[cfg(feature = "onvif")]
pub mod onvif;
mod pacer;
pub mod rtmp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod server;
#[cfg(feature = "snapshot")]
pub mod snapshot;
pub mod source;
pub mod stamp;
pub mod substream;

pub use error::{Error, Result};
pub use loop_source::{Clip, LoopSource};
/// Where the RTSPS certificate comes from ([`server::Config::tls`]).
pub use nvrkit_tls::TlsSource;

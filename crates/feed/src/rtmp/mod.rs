//! RTMP publishing: the loop pushed to an RTMP server (nginx-rtmp, node-media-server, Wowza,
//! Nimble, mediamtx, SRS…) that a VMS then reads, like `ffmpeg -re -stream_loop -1 -i clip.mp4
//! -c copy -f flv rtmp://…` but on the loop's own seamless timeline.
//!
//! - [`url`]: `rtmp://` and `rtmps://` URLs.
//! - [`flv`]: FLV tag bodies (AVC and AAC sequence headers, NAL units with their composition
//!   time, raw AAC frames, `@setDataFrame onMetaData`, H.265 as Enhanced RTMP `hvc1`) and the
//!   32-bit millisecond clock.
//! - [`session`]: the publish dialogue, sans I/O, over `rml_rtmp`'s handshake and chunk stream.
//! - [`amf`]: the nesting bound checked before parsing a server's AMF0.
//! - [`chunks`]: the reader of the server's chunk stream, bounded.
//! - [`push`]: the tokio task of one push (TCP or TLS, reconnect with backoff).
//!
//! Timestamps come from the same [`crate::LoopSource`] as RTSP, through the clip's ring: every
//! stream's DTS in milliseconds since the first frame published, so they increase strictly
//! across seams (the seam step is the frame step, ± 1 ms of FLV rounding) and across reconnects
//! (a new connection resumes at the first keyframe not yet sent, with the sequence headers),
//! and wrap modulo 2³² with extended timestamps after 49.7 days.
//!
//! ## Push the embedded sample
//!
//! ```no_run
//! use nvrkit_feed::Clip;
//! use nvrkit_feed::rtmp::{Push, PushConfig, RtmpUrl};
//! use nvrkit_feed::server::Looper;
//!
//! # async fn run() -> Result<(), nvrkit_feed::Error> {
//! let demux = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())
//!     .map_err(|source| nvrkit_feed::Error::Clip { name: "sample".into(), source })?;
//! let clip = Clip::load("sample", &demux)?;
//! let looper = Looper::start(clip.clone(), Default::default())?;
//! let url = RtmpUrl::parse("rtmp://127.0.0.1/live/cam")?;
//! let push = Push::start(clip, looper.ring(), PushConfig::new(url));
//! tokio::time::sleep(std::time::Duration::from_secs(60)).await;
//! push.stop().await?;
//! looper.stop().await;
//! # Ok(()) }
//! ```

pub mod amf;
pub mod chunks;
pub mod error;
pub mod flv;
pub mod push;
pub mod session;
pub mod url;

pub use error::PushError;
pub use push::{
    Backoff, EnhancedRtmp, Push, PushConfig, PushSource, PushStats, load_pem_certificates,
};
pub use url::RtmpUrl;

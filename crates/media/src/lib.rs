//! # nvrkit-media
//!
//! The shared media vocabulary of nvrkit: [`Frame`], [`CodecParams`], [`TrackInfo`], exact time
//! math ([`time`]), MP4 demuxing ([`Demuxer`]) and muxing ([`mux`]), and NAL framing ([`nal`]).
//! Every other nvrkit crate speaks these types; none parses MP4 on its own.
//!
//! Feature `mp4` (default) brings the demuxer, the muxers and the embedded [`sample`] clip (and
//! mp4-atom with them); without it the crate is only the vocabulary, for code that never touches
//! a file (`nvrkit-ring`, `nvrkit-smtp`'s events).
//!
//! Non-goals: decoding pixels or audio, codecs other than H.264, H.265, AAC and G.711 (other
//! tracks are listed and skipped), containers other than ISO BMFF / MP4 and QuickTime `.mov`.
//!
//! ## Read every frame of a file
//!
//! ```
//! use nvrkit_media::Demuxer;
//!
//! let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
//! for track in demux.tracks() {
//!     println!("stream {}: {} {} frames", track.stream, track.params.name(), track.frames);
//! }
//! let mut keyframes = 0;
//! for frame in demux.frames() {
//!     let frame = frame?;
//!     keyframes += usize::from(frame.keyframe && demux.tracks()[frame.stream].params.is_video());
//! }
//! assert_eq!(keyframes, 10); // 10 s with a 1 s GOP
//! # Ok::<(), nvrkit_media::Error>(())
//! ```
//!
//! ## Remux to fragmented MP4
//!
//! ```
//! use nvrkit_media::{Demuxer, mux::FragmentedMuxer};
//!
//! let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
//! let mut mux = FragmentedMuxer::new(demux.tracks())?;
//! let mut out = Vec::new();
//! for frame in demux.frames() {
//!     out.extend_from_slice(&mux.push(frame?)?);
//! }
//! out.extend_from_slice(&mux.finish()?);
//! let again = Demuxer::from_bytes("remuxed.mp4", out.into())?;
//! assert_eq!(again.tracks().len(), 2);
//! # Ok::<(), nvrkit_media::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod codec;
#[cfg(feature = "mp4")]
pub mod demux;

pub mod error;
pub mod frame;
#[cfg(feature = "mp4")]
pub mod mux;

pub mod nal;
pub mod sps;
pub mod time;

pub use codec::{
    AacParams, CodecParams, G711Law, G711Params, SkippedTrack, TrackInfo, VideoParams,
};
#[cfg(feature = "mp4")]
pub use demux::Demuxer;
pub use error::{Error, Result};
pub use frame::Frame;
pub use time::WallTime;

/// The embedded sample clip: 10 s of 640x360 H.264 Main at 25 fps with a 1 s GOP and a visible
/// running clock and frame counter (`testsrc2`), plus 48 kHz stereo AAC with a 1 kHz beep each
/// second. Binaries use it when given no file (feature `mp4`). See `crates/media/testdata/README.md` for the
/// command that made it.
#[cfg(feature = "mp4")]
pub fn sample() -> bytes::Bytes {
    static SAMPLE: &[u8] = include_bytes!("../testdata/sample.mp4");
    bytes::Bytes::from_static(SAMPLE)
}

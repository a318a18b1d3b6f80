//! Errors, one enum per operation: a bad config is the caller's to fix before anything starts, a
//! camera session that fails is logged and retried by ingest, a bad `--map` rule is the user's.

use std::time::Duration;

/// Why a [`Config`](crate::Config) was refused by [`Config::validate`](crate::Config::validate).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config names no camera.
    #[error("no camera configured")]
    NoCamera,
    /// A camera's URL is not `rtsp://`.
    #[error("camera {camera}: only rtsp:// URLs are supported, not {scheme}://")]
    Scheme {
        /// The camera.
        camera: String,
        /// The URL's scheme.
        scheme: String,
    },
    /// A camera's name cannot be a directory of the store (or a URL path segment).
    #[error("camera name {camera:?}: {source}")]
    Name {
        /// The name.
        camera: String,
        /// What the store says of it (boxed: the store's error is large).
        source: Box<nvrkit_store::Error>,
    },
    /// Two cameras have the same name.
    #[error("two cameras are named {0}")]
    Duplicate(String),
}

/// Why a [`Recorder`](crate::Recorder) did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A camera's ring could not be made (its bounds).
    #[error("camera {camera}: ring: {source}")]
    Ring {
        /// The camera.
        camera: String,
        /// The ring's refusal.
        source: nvrkit_ring::ConfigError,
    },
    /// A camera's recorder thread could not be spawned.
    #[error("camera {camera}: cannot spawn its recorder thread: {source}")]
    Thread {
        /// The camera.
        camera: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The events directory could not be opened or read.
    #[error("events directory {}: {source}", dir.display())]
    Events {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// [`Recorder::start`](crate::Recorder::start) was called outside a tokio runtime.
    #[error("a Recorder starts inside a tokio runtime (it spawns its ingest tasks there)")]
    NoRuntime,
}

/// Why a camera session ended ([`ingest`](crate::ingest)); ingest logs it, keeps it for the API
/// ([`CameraState::last_error`](crate::ingest::CameraState)) and reconnects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// DESCRIBE failed (unreachable, refused, unauthorized, a bad SDP).
    #[error("DESCRIBE: {0}")]
    Describe(retina::Error),
    /// The camera offers no H.264 or H.265 video.
    #[error("the camera offers no H.264 or H.265 video")]
    NoVideo,
    /// SETUP of a track failed.
    #[error("SETUP of track {track}: {source}")]
    Setup {
        /// The track (its index in the SDP).
        track: usize,
        /// retina's error.
        source: retina::Error,
    },
    /// PLAY failed.
    #[error("PLAY: {0}")]
    Play(retina::Error),
    /// The depacketizer could not be set up.
    #[error("depacketizer: {0}")]
    Depacketizer(retina::Error),
    /// The stream failed while playing (a closed connection, a malformed packet).
    #[error("RTSP stream: {0}")]
    Stream(retina::Error),
    /// DESCRIBE, a SETUP or PLAY got no answer in time
    /// ([`RTSP_STEP_TIMEOUT`](crate::ingest::RTSP_STEP_TIMEOUT)).
    #[error("{step}: no answer from the camera in {} s", .after.as_secs_f64())]
    Timeout {
        /// The RTSP request.
        step: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// No complete video frame arrived for this long (audio and RTCP do not count).
    #[error("no video for {} s", .0.as_secs())]
    NoMedia(Duration),
    /// The camera changed its video parameters in band more often than
    /// [`MAX_PARAM_CHANGES`](crate::ingest::MAX_PARAM_CHANGES) per window.
    #[error("{changes} video parameter changes in {} s (the most a session may make)", .window.as_secs())]
    ParameterChanges {
        /// Changes in the window.
        changes: usize,
        /// The window.
        window: Duration,
    },
    /// The camera sent a frame over [`MAX_FRAME_BYTES`](crate::ingest::MAX_FRAME_BYTES).
    #[error("a frame of {bytes} bytes, over the limit of {max}")]
    FrameTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The ring refused a frame.
    #[error("ring: {0}")]
    Ring(#[from] nvrkit_ring::PushError),
}

/// Why a `--map` rule ([`MapRule`](crate::events::MapRule)) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapRuleError {
    /// No `:CAMERA`.
    #[error("a map rule is FIELD=VALUE:CAMERA, e.g. channel=2:garage or from=nvr1@site:yard")]
    Shape,
    /// No `=` in the condition.
    #[error("a map rule is FIELD=VALUE:CAMERA; {0:?} has no '='")]
    NoEquals(String),
    /// A field that is not channel, from, to, device or camera.
    #[error("unknown map field {0:?} (channel, from, to, device, camera)")]
    Field(String),
    /// An empty camera.
    #[error("the map rule {0:?} names no camera")]
    NoCamera(String),
}

/// Why a [`Mode`](crate::recorder::Mode) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record mode is events or all, not {0:?}")]
pub struct ModeError(pub String);

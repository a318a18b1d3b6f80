//! Errors of `nvrkit-feed`.

/// What can go wrong loading a clip or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The clip could not be read (I/O, not MP4, truncated, unsupported codec).
    #[error("clip {name}: {source}")]
    Clip {
        /// The stream name.
        name: String,
        /// What the demuxer said.
        #[source]
        source: nvrkit_media::Error,
    },

    /// The clip reads, but cannot be looped (no keyframe first, no duration).
    #[error("clip {name} cannot be looped: {what}")]
    Unusable {
        /// The stream name.
        name: String,
        /// Why.
        what: String,
    },

    /// Two clips would be served at the same path.
    #[error("two clips are named {0:?}; rename one")]
    DuplicateName(String),

    /// A socket could not be bound or used.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The RTSPS certificate could not be set up.
    #[error(transparent)]
    Tls(#[from] nvrkit_tls::Error),

    /// The frame ring rejected its configuration.
    #[error("frame ring: {0}")]
    Ring(#[from] nvrkit_ring::ConfigError),

    /// A frame fault cannot be applied to its clip (`fps` out of reach, `sps_change_at_seam`
    /// naming a clip that cannot follow): the path is refused.
    #[error(transparent)]
    Fault(#[from] crate::fault::frames::FrameFaultError),

    /// An RTMP push could not be set up or was refused for good.
    #[error("RTMP push: {0}")]
    Push(#[from] crate::rtmp::PushError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

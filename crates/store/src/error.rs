//! Errors of `nvrkit-store`.

use std::path::PathBuf;

use nvrkit_media::WallTime;

/// Everything that can go wrong opening, writing, reading or pruning a store.
///
/// Variants name the file (or camera and time) involved, so a log line is enough to find it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read, written, synced, renamed or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// Another process holds the store's writer lock. Readers (`Store::open_read_only`,
    /// `segstore ls/export/verify`) work beside it; a second writer does not.
    #[error(
        "{path}: the store is already open for writing by another process ({holder}); \
         open it read-only, or stop the other writer"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder (pid, program), as far as it is known.
        holder: String,
    },

    /// The directory is not a store (it exists, is not empty and has no store marker), or the
    /// store's format version is newer than this library.
    #[error("{path}: not an nvrkit store: {why}")]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why not.
        why: String,
    },

    /// A camera name that cannot be a directory name in the store.
    #[error("invalid camera name {name:?}: {why}")]
    CameraName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// On-disk metadata (a sidecar, a day summary, the tag log) is not what this library wrote.
    #[error("{path}: corrupt {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },

    /// A segment file could not be read or written as MP4.
    #[error("{path}: {source}")]
    Media {
        /// The segment (or the name of the stream being written).
        path: PathBuf,
        /// The demuxer's or muxer's error.
        #[source]
        source: nvrkit_media::Error,
    },

    /// A segment with this start time already exists (an import over footage already stored).
    #[error("{path} already exists: the store already has footage starting at this time")]
    Exists {
        /// The segment file.
        path: PathBuf,
    },

    /// A frame handed to a writer does not fit the streams it was opened with.
    #[error("camera {camera}: stream {stream}: {what}")]
    Frame {
        /// The camera.
        camera: String,
        /// The frame's stream index.
        stream: usize,
        /// What is wrong.
        what: String,
    },

    /// Another writer of the same camera is open in this process.
    #[error("camera {camera} already has an open writer")]
    WriterBusy {
        /// The camera.
        camera: String,
    },

    /// The store was opened read-only and the operation writes.
    #[error("{path}: the store is open read-only")]
    ReadOnly {
        /// The store directory.
        path: PathBuf,
    },

    /// No footage of this camera in the asked range.
    #[error("camera {camera}: no footage from {from} to {to}")]
    NoFootage {
        /// The camera.
        camera: String,
        /// Start of the asked range.
        from: WallTime,
        /// End of the asked range.
        to: WallTime,
    },

    /// An export range spans a change of codec parameters (a new resolution or SPS), which
    /// one MP4 file cannot hold. Export up to `at`, then from `at`.
    #[error(
        "camera {camera}: the codec parameters change at {at}; export before and after it separately"
    )]
    ParamsChange {
        /// The camera.
        camera: String,
        /// Start of the first segment with other parameters.
        at: WallTime,
    },

    /// An argument is out of range (an empty time range, a zero segment length).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            what: what.into(),
        }
    }

    pub(crate) fn media(path: impl Into<PathBuf>, source: nvrkit_media::Error) -> Self {
        Error::Media {
            path: path.into(),
            source,
        }
    }
}

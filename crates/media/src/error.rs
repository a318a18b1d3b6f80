//! Errors of `nvrkit-media`.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing media.
///
/// Variants say *where*: the file (or the name the caller gave an in-memory buffer), the box
/// path and byte offset, or the stream and sample.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a valid MP4 structure (a box that overruns its parent, a table that
    /// points outside the file, counts that disagree).
    #[error("{name}: malformed MP4: {what} (box {path} at offset {offset})")]
    Malformed {
        /// The file name (or the label of an in-memory buffer).
        name: String,
        /// The box path, for example `moov/trak[1]/mdia/minf/stbl/stsz`.
        path: String,
        /// Byte offset of the box in the file (0 where not known).
        offset: u64,
        /// What is wrong.
        what: String,
    },

    /// The file is cut short where something was required (the `moov` box, a sample).
    #[error("{name}: truncated: {what}")]
    Truncated {
        /// The file name.
        name: String,
        /// What is missing.
        what: String,
    },

    /// The file is valid but uses something nvrkit does not support (no supported track, a codec
    /// feature we do not handle). Distinct from [`Error::Malformed`]: the peer did nothing wrong.
    #[error("{name}: unsupported: {what}")]
    Unsupported {
        /// The file name.
        name: String,
        /// What is not supported.
        what: String,
    },

    /// A codec bitstream (SPS, AudioSpecificConfig, a NAL unit length) is invalid.
    #[error("invalid {codec} bitstream: {what}")]
    Bitstream {
        /// `H.264`, `H.265` or `AAC`.
        codec: &'static str,
        /// What is wrong.
        what: String,
    },

    /// A frame handed to a muxer does not fit the stream (unknown stream index, DTS going
    /// backwards, a payload too large for the format).
    #[error("muxer: stream {stream}: {what}")]
    Mux {
        /// The stream index of the frame.
        stream: usize,
        /// What is wrong.
        what: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn bitstream(codec: &'static str, what: impl Into<String>) -> Self {
        Error::Bitstream {
            codec,
            what: what.into(),
        }
    }
}

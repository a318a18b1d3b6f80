//! Errors of `nvrkit-replicate`.

use std::path::PathBuf;

/// Everything that can go wrong setting up or running replication.
///
/// The replicator retries what a target may get over ([`Error::Target`] with `transient`) with
/// backoff; the rest stops it with the error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store (its index, or the replication queue beside it) could not be read or written.
    #[error(transparent)]
    Store(#[from] nvrkit_store::Error),

    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The target refused or failed an operation.
    #[error("{target}: {op} {key}: {what}")]
    Target {
        /// The target's URL.
        target: String,
        /// The operation (`PUT`, `HEAD`, `complete` …).
        op: &'static str,
        /// The object key.
        key: String,
        /// What went wrong.
        what: String,
        /// Worth retrying later (a network error, 5xx, 429, SlowDown) rather than a refusal
        /// (access denied, no such bucket).
        transient: bool,
        /// The target no longer knows the multipart upload (or a part of it): start it anew.
        upload_gone: bool,
    },

    /// The target answered more than is read from it: a response body over its limit (see
    /// [`crate::target::s3`]), or a listing of more objects than the limit. Not retried.
    #[error("{target}: {op} {key}: the answer is over its limit of {limit} {unit}")]
    TooLarge {
        /// The target's URL.
        target: String,
        /// The operation (`GET`, `LIST` …).
        op: &'static str,
        /// The object key (or the listed prefix).
        key: String,
        /// The limit.
        limit: u64,
        /// What the limit counts: `bytes` or `objects`.
        unit: &'static str,
    },

    /// A copy does not match the original (size or hash), or the local segment no longer
    /// matches its sidecar.
    #[error("{key}: {what}")]
    Mismatch {
        /// The object key or local path.
        key: String,
        /// What differs.
        what: String,
    },

    /// A target URL, rate or option that cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The replicator's thread or runtime could not start, or it panicked.
    #[error("replicator: {0}")]
    Runtime(String),
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

    /// True for errors the replicator waits out with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Target { transient, .. } => *transient,
            Error::Io { .. } => false,
            _ => false,
        }
    }
}

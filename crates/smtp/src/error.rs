//! Errors of `nvrkit-smtp`.
//!
//! The SMTP dialogue itself never fails with an [`Error`]: a client that misbehaves gets an SMTP
//! reply (`500`, `503`, `552`, …) and the session goes on, as RFC 5321 asks. These errors are for
//! the caller's operations: starting a server, loading TLS material, sending mail with the client,
//! decoding event JSON, saving snapshots.

use std::net::SocketAddr;

/// Everything that can go wrong in `nvrkit-smtp`'s operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// TLS could not be set up: an unreadable certificate or key file, a key that does not
    /// match its certificate, or a failed self-signed certificate.
    #[cfg(feature = "server")]
    #[error(transparent)]
    Tls(#[from] nvrkit_tls::Error),
    /// An I/O error on a connection or file, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The SMTP server (for the client) answered with an error or something we did not expect.
    #[error("SMTP server answered {code} to {command}: {text}")]
    Rejected {
        /// The command that was refused (`MAIL`, `DATA`, …).
        command: String,
        /// The reply code.
        code: u16,
        /// The reply text, lines joined by a space.
        text: String,
    },
    /// The SMTP server (for the client) sent bytes that are not an SMTP reply.
    #[error("malformed SMTP reply to {command}: {line:?}")]
    MalformedReply {
        /// The command that was answered.
        command: String,
        /// The offending line (lossy UTF-8, truncated to 200 bytes).
        line: String,
    },
    /// The peer closed the connection or a deadline passed.
    #[error("{0}")]
    Connection(String),
    /// Event JSON that does not decode, or decodes to an unsupported schema version.
    #[error("event JSON: {0}")]
    EventJson(String),
    /// Untrusted event JSON over [`crate::MAX_UNTRUSTED_EVENT_JSON`] bytes, refused unread.
    #[error("event JSON: {len} bytes, over the limit of {max} bytes")]
    EventJsonTooLarge {
        /// Its length.
        len: usize,
        /// The limit ([`crate::MAX_UNTRUSTED_EVENT_JSON`]).
        max: usize,
    },
    /// Untrusted event JSON nested deeper than [`crate::MAX_UNTRUSTED_EVENT_DEPTH`].
    #[error("event JSON: nested deeper than the limit of {max} levels")]
    EventJsonTooDeep {
        /// The limit ([`crate::MAX_UNTRUSTED_EVENT_DEPTH`]).
        max: usize,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    #[cfg(feature = "server")]
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

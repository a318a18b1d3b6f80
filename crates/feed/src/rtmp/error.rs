//! Errors of the RTMP publisher.

/// What can go wrong publishing a loop over RTMP.
///
/// [`PushError::is_permanent`] separates what a reconnect cannot fix (a bad URL, a codec the
/// server does not take) from what it may (the server restarted, the network dropped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The URL is not a usable `rtmp://` or `rtmps://` URL.
    #[error("{url}: {why}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },

    /// The clip has something FLV or this server cannot carry (H.265 to a server that did not
    /// announce Enhanced RTMP, parameter sets that do not parse).
    #[error("clip {clip}: {what}")]
    Unsupported {
        /// The clip's name.
        clip: String,
        /// What cannot be sent, and what to do about it.
        what: String,
    },

    /// A socket operation failed (connect, read, write, DNS).
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// TLS could not be set up (bad CA file, invalid server name) or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),

    /// The server closed the connection.
    #[error("the server closed the connection {during}")]
    Closed {
        /// In which phase (`during the handshake`, `while publishing`…).
        during: &'static str,
    },

    /// The server's bytes broke the protocol (handshake, chunk stream, message or AMF).
    #[error("protocol error from the server ({stage}): {why}")]
    Protocol {
        /// Handshake, chunk, message, AMF, command.
        stage: &'static str,
        /// The parser's words.
        why: String,
    },

    /// The server refused a command (`_error`, or an `onStatus` of level `error`).
    #[error("the server refused {command}: {code} {description}")]
    Rejected {
        /// `connect`, `createStream` or `publish`.
        command: &'static str,
        /// The status code (`NetStream.Publish.BadName`, `NetConnection.Connect.Rejected`…).
        code: String,
        /// The server's description, if any.
        description: String,
    },

    /// The server did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
}

impl PushError {
    /// True when reconnecting cannot help: the URL or the clip must change first.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PushError::Url { .. } | PushError::Unsupported { .. })
    }
}

//! Errors of `nvrkit-mqtt`.

/// A broker URL that is not `mqtt[s]://[USER:PASS@]HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The scheme is not `mqtt://` or `mqtts://`.
    #[error("{url:?}: the scheme must be mqtt:// or mqtts://")]
    Scheme {
        /// The URL, its password hidden.
        url: String,
    },
    /// No host after the scheme (and credentials).
    #[error("{url:?}: no host")]
    NoHost {
        /// The URL, its password hidden.
        url: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("{url:?}: port {port:?} is not a number from 1 to 65535")]
    Port {
        /// The URL, its password hidden.
        url: String,
        /// The port as written.
        port: String,
    },
    /// Credentials without a `:` between user and password, or with an empty user.
    #[error("{url:?}: credentials must be USER:PASS (user not empty)")]
    Credentials {
        /// The URL, its password hidden.
        url: String,
    },
    /// A path, query or fragment after the host: topics are not configured in the URL.
    #[error("{url:?}: nothing may follow HOST[:PORT] (no path, query or fragment)")]
    Trailing {
        /// The URL, its password hidden.
        url: String,
    },
}

/// What can go wrong starting a [`crate::Publisher`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TLS configuration of an `mqtts://` broker.
    #[error("TLS for MQTT broker {broker}: {source}")]
    Tls {
        /// The broker, `host:port`.
        broker: String,
        /// What rustls said.
        source: nvrkit_tls::Error,
    },
    /// [`crate::Publisher::start`] was called outside a tokio runtime.
    #[error("the MQTT publisher needs a tokio runtime")]
    NoRuntime,
}

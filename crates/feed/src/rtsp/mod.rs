//! RTSP 1.0 (RFC 2326): request framing, the sans-I/O server dialogue and the connection state
//! machine around it ([`driver`]), and authentication.

/// Basic and Digest authentication: [`crate::auth`], shared with the ONVIF devices' HTTP.
pub use crate::auth;
pub mod core;
pub mod driver;
pub mod framing;
pub mod play;

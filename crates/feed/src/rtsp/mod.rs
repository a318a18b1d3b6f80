//! RTSP 1.0 (RFC 2326): request framing, the sans-I/O server dialogue, and authentication.

pub mod auth;
pub mod core;
pub mod framing;
pub mod play;

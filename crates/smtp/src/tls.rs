//! TLS for the server and for the test client: [`nvrkit_tls`], shared with the loop feeder's
//! RTSPS listener.
//!
//! rustls speaks TLS 1.2 and 1.3 only. A camera stuck on TLS 1.0 or 1.1 (common on firmware from
//! before 2018) fails the handshake: it receives a `handshake_failure` alert (40), and the server
//! logs "TLS handshake failed: peer is incompatible: SignatureAlgorithmsExtensionRequired" (a
//! TLS 1.0/1.1 ClientHello has no signature_algorithms extension; seen with
//! `openssl s_client -tls1_1`). Such cameras must use the plain listener with AUTH, which is
//! offered without TLS for exactly this reason.

pub use nvrkit_tls::{ServerTls, TlsSource, fingerprint, insecure_client, server_tls};

//! Server TLS for nvrkit's listeners: the SMTP event server's STARTTLS and implicit TLS, and
//! the loop feeder's RTSPS. rustls with the ring provider (never aws-lc-rs, which needs cmake
//! and a C toolchain), from PEM files or from a self-signed certificate made with rcgen at start.
//!
//! rustls speaks TLS 1.2 and 1.3 only. A client stuck on TLS 1.0 or 1.1 (common on camera
//! firmware from before 2018) fails the handshake: it receives a `handshake_failure` alert (40),
//! and the server logs "peer is incompatible: SignatureAlgorithmsExtensionRequired" (a TLS
//! 1.0/1.1 ClientHello has no signature_algorithms extension; seen with
//! `openssl s_client -tls1_1`).
//!
//! ```
//! let tls = nvrkit_tls::server_tls(&nvrkit_tls::TlsSource::SelfSigned, &["cam.local"])?
//!     .expect("enabled");
//! assert_eq!(tls.fingerprint.len(), 32 * 3 - 1);
//! # Ok::<(), nvrkit_tls::Error>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

pub use tokio_rustls;

/// What can go wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A certificate or key file could not be read or holds no usable PEM item.
    #[error("TLS material {path}: {reason}")]
    Material {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (for example a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// rcgen could not make the self-signed certificate.
    #[error("generating a self-signed certificate: {0}")]
    CertGen(#[from] rcgen::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a server's TLS certificate comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsSource {
    /// No TLS.
    Disabled,
    /// A self-signed certificate made with rcgen at start (its SHA-256 fingerprint is in
    /// [`ServerTls::fingerprint`]). The default: cameras and VMSs on a LAN rarely verify one.
    #[default]
    SelfSigned,
    /// PEM files: a certificate chain and its private key.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// PKCS#8, PKCS#1 or SEC1 private key.
        key: PathBuf,
    },
}

/// A server TLS configuration, ready to accept.
#[derive(Clone)]
pub struct ServerTls {
    /// The acceptor for tokio.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 fingerprint of the leaf certificate, `AB:CD:…`.
    pub fingerprint: String,
    /// Whether the certificate was generated at start.
    pub self_signed: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .field("self_signed", &self.self_signed)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a server TLS configuration; `None` for [`TlsSource::Disabled`]. A self-signed
/// certificate names `localhost` and each of `names`.
///
/// # Errors
/// [`Error::Material`] for an unreadable or empty PEM file, [`Error::Rustls`] for a key that
/// does not match its certificate, [`Error::CertGen`] if rcgen fails.
pub fn server_tls(source: &TlsSource, names: &[&str]) -> Result<Option<ServerTls>> {
    let (chain, key, self_signed) = match source {
        TlsSource::Disabled => return Ok(None),
        TlsSource::SelfSigned => {
            let mut all = vec!["localhost".to_owned()];
            all.extend(names.iter().map(|n| (*n).to_owned()));
            all.dedup();
            let generated = rcgen::generate_simple_self_signed(all)?;
            let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
            (vec![generated.cert.der().clone()], key, true)
        }
        TlsSource::Files { cert, key } => {
            let material =
                |path: &std::path::Path, e: rustls::pki_types::pem::Error| Error::Material {
                    path: path.to_owned(),
                    reason: e.to_string(),
                };
            let chain = load_certificates(cert)?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| material(key, e))?;
            (chain, private, false)
        }
    };
    let fingerprint = fingerprint(&chain[0]);
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Some(ServerTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        fingerprint,
        self_signed,
    }))
}

/// SHA-256 of a DER certificate as colon-separated hex, as `openssl x509 -fingerprint -sha256`
/// prints it.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Every certificate of a PEM file, in order (a chain leaf first, or CA roots to trust).
///
/// # Errors
/// [`Error::Material`] if the file cannot be read, is not PEM, or holds no certificate.
pub fn load_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let material = |reason: String| Error::Material {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| material(e.to_string()))?;
    if certs.is_empty() {
        return Err(material("no CERTIFICATE in the file".to_owned()));
    }
    Ok(certs)
}

/// A client TLS configuration that verifies servers against Mozilla's roots (`webpki-roots`)
/// plus `extra_roots` (a private CA), on the ring provider: for nvrkit's outgoing clients
/// (`nvrkit-mqtt`'s `mqtts://`).
///
/// # Errors
/// [`Error::Rustls`] if rustls refuses the configuration or an extra root.
pub fn client_config(extra_roots: &[CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        roots.add(root.clone())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client TLS configuration that accepts any server certificate: for talking to one of our
/// servers with a self-signed certificate in tests and demos, never for real traffic.
///
/// # Errors
/// [`Error::Rustls`] if rustls refuses the configuration.
pub fn insecure_client() -> Result<tokio_rustls::TlsConnector> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn round_trip(tls: &ServerTls) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.acceptor.clone();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(sock).await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = insecure_client()
            .unwrap()
            .connect(name, sock)
            .await
            .unwrap();
        let seen = fingerprint(&c.get_ref().1.peer_certificates().unwrap()[0]);
        c.write_all(b"hello").await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello");
        server.await.unwrap();
        seen
    }

    #[tokio::test]
    async fn a_self_signed_server_shakes_hands_and_shows_its_fingerprint() {
        let tls = server_tls(&TlsSource::SelfSigned, &["cam.local"])
            .unwrap()
            .unwrap();
        assert!(tls.self_signed);
        assert_eq!(round_trip(&tls).await, tls.fingerprint);
    }

    #[tokio::test]
    async fn pem_files_serve_their_certificate() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let tls = server_tls(&TlsSource::Files { cert, key }, &[])
            .unwrap()
            .unwrap();
        assert!(!tls.self_signed);
        assert_eq!(tls.fingerprint, fingerprint(made.cert.der()));
        assert_eq!(round_trip(&tls).await, tls.fingerprint);
    }

    #[test]
    fn bad_material_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let e = server_tls(
            &TlsSource::Files {
                cert: empty.clone(),
                key: empty.clone(),
            },
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Material { ref path, .. } if *path == empty),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = server_tls(
            &TlsSource::Files {
                cert: missing.clone(),
                key: missing,
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        // A key that is not the certificate's.
        let a = rcgen::generate_simple_self_signed(vec!["a".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_owned()]).unwrap();
        let (cert, key) = (dir.path().join("a.pem"), dir.path().join("b.key"));
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
        assert!(server_tls(&TlsSource::Files { cert, key }, &[]).is_err());
        assert!(server_tls(&TlsSource::Disabled, &[]).unwrap().is_none());
    }
}

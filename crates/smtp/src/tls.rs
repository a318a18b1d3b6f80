//! TLS for the server (rustls with the ring provider) and for the test client.
//!
//! rustls speaks TLS 1.2 and 1.3 only. A camera stuck on TLS 1.0 or 1.1 (common on firmware from
//! before 2018) fails the handshake: it receives a `handshake_failure` alert (40), and the server
//! logs "TLS handshake failed: peer is incompatible: SignatureAlgorithmsExtensionRequired" (a
//! TLS 1.0/1.1 ClientHello has no signature_algorithms extension; seen with
//! `openssl s_client -tls1_1`). Such cameras must use the plain listener with AUTH, which is
//! offered without TLS for exactly this reason.

use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TlsSource;
use crate::error::{Error, Result};

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

/// Builds the server TLS configuration; `None` for [`TlsSource::Disabled`].
pub fn server_tls(source: &TlsSource, hostname: &str) -> Result<Option<ServerTls>> {
    let (chain, key, self_signed) = match source {
        TlsSource::Disabled => return Ok(None),
        TlsSource::SelfSigned => {
            let names = vec!["localhost".to_owned(), hostname.to_owned()];
            let generated = rcgen::generate_simple_self_signed(names)?;
            let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
            (vec![generated.cert.der().clone()], key, true)
        }
        TlsSource::Files { cert, key } => {
            let material =
                |path: &std::path::Path, e: rustls::pki_types::pem::Error| Error::TlsMaterial {
                    path: path.to_owned(),
                    reason: e.to_string(),
                };
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| material(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| material(cert, e))?;
            if chain.is_empty() {
                return Err(Error::TlsMaterial {
                    path: cert.clone(),
                    reason: "no CERTIFICATE in the file".to_owned(),
                });
            }
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

/// A client TLS configuration that accepts any server certificate: for talking to a camera
/// event server with a self-signed certificate in tests and demos, never for real mail.
pub(crate) fn insecure_client() -> Result<tokio_rustls::TlsConnector> {
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

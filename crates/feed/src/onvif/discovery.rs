//! WS-Discovery (2005/04, as ONVIF uses it), directed probes only: a UDP socket that answers a
//! `Probe` sent to it with one `ProbeMatches` datagram per matching device, to the prober's
//! address alone. No multicast group is ever joined and no Hello or Bye is sent (the
//! `--discovery-multicast IFACE` of the issue is not implemented).
//!
//! A datagram above [`MAX_DATAGRAM`] is dropped unparsed; answers are capped at
//! [`MAX_REPLIES_PER_SEC`] datagrams a second in all, so spoofed probes cannot make the
//! responder an amplifier of more than that.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::soap::{self, Request, esc};
use super::{Device, service};

/// The largest probe datagram read.
pub const MAX_DATAGRAM: usize = 16 * 1024;
/// The most answer datagrams sent in any one second.
pub const MAX_REPLIES_PER_SEC: u32 = 256;

/// WS-Discovery 2005/04 namespace.
pub const NS_DISCOVERY: &str = "http://schemas.xmlsoap.org/ws/2005/04/discovery";
/// `dn:NetworkVideoTransmitter`, expanded.
pub const TYPE_NVT: &str = "{http://www.onvif.org/ver10/network/wsdl}NetworkVideoTransmitter";
/// `tds:Device`, expanded.
pub const TYPE_DEVICE: &str = "{http://www.onvif.org/ver10/device/wsdl}Device";

/// A parsed probe: what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Its `MessageID` (our answers' `RelatesTo`).
    pub message_id: String,
    /// The requested types, expanded `{namespace}local`; empty: any.
    pub types: Vec<String>,
    /// The requested scopes; empty: any.
    pub scopes: Vec<String>,
}

/// Why a datagram is not a probe we answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Not a SOAP envelope we can read.
    #[error(transparent)]
    Soap(#[from] soap::SoapError),
    /// A SOAP message, but not a WS-Discovery Probe (a Hello, a ProbeMatches, …).
    #[error("not a Probe: {0}")]
    NotProbe(String),
    /// A Probe without a MessageID (nothing to relate the answer to).
    #[error("the Probe has no MessageID")]
    NoMessageId,
}

/// Parses a probe datagram.
pub fn parse_probe(datagram: &[u8]) -> Result<Probe, ProbeError> {
    let req: Request = soap::parse(datagram)?;
    if req.ns != NS_DISCOVERY || req.action != "Probe" {
        return Err(ProbeError::NotProbe(req.action));
    }
    let message_id = req
        .message_id
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or(ProbeError::NoMessageId)?;
    let list = |name: &str| -> Vec<String> {
        req.field(name)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    Ok(Probe {
        message_id,
        types: list("Types"),
        scopes: list("Scopes"),
    })
}

/// Whether a device matches a probe: every requested type is one we are, and every requested
/// scope is a prefix (by path segments, RFC 3986 matching) of one of the device's scopes.
pub fn matches(probe: &Probe, device: &Device) -> bool {
    let types_ok = probe
        .types
        .iter()
        .all(|t| t == TYPE_NVT || t == TYPE_DEVICE);
    let ours = service::scopes(device);
    let scopes_ok = probe.scopes.iter().all(|want| {
        let want = want.trim_end_matches('/');
        ours.iter().any(|have| {
            have == want
                || have
                    .strip_prefix(want)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    });
    types_ok && scopes_ok
}

/// A stable endpoint UUID for a device (from its name).
pub fn endpoint_uuid(device: &Device) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("nvrkit-loopcam:{}", device.name).as_bytes(),
    );
    let b = d.as_ref();
    let hex: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-5{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `ProbeMatches` envelope answering `probe` for one device, whose device service is at
/// `http://host:port/onvif/device_service`.
pub fn probe_matches(probe: &Probe, device: &Device, host: &str, port: u16) -> String {
    let id = format!("urn:uuid:{:032x}", rand::random::<u128>());
    let header = format!(
        "<wsa:MessageID>{id}</wsa:MessageID><wsa:RelatesTo>{}</wsa:RelatesTo><wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To><wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action><d:AppSequence InstanceId=\"1\" MessageNumber=\"1\"/>",
        esc(&probe.message_id)
    );
    let scopes = service::scopes(device).join(" ");
    let body = format!(
        "<d:ProbeMatches><d:ProbeMatch><wsa:EndpointReference><wsa:Address>{}</wsa:Address></wsa:EndpointReference><d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types><d:Scopes>{}</d:Scopes><d:XAddrs>{}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches>",
        endpoint_uuid(device),
        esc(&scopes),
        esc(&format!("http://{host}:{port}/onvif/device_service"))
    );
    soap::envelope(&header, &body)
}

/// Answers probes for a set of devices.
#[derive(Debug)]
pub struct Responder {
    devices: Vec<(Device, SocketAddr)>,
    window: Instant,
    sent: u32,
}

impl Responder {
    /// A responder for these devices and their HTTP addresses.
    pub fn new(devices: Vec<(Device, SocketAddr)>) -> Responder {
        Responder {
            devices,
            window: Instant::now(),
            sent: 0,
        }
    }

    /// The answers to a datagram from `peer`, when it is a probe (none when nothing matches).
    pub fn answer(&self, datagram: &[u8], peer: SocketAddr) -> Result<Vec<String>, ProbeError> {
        let probe = parse_probe(datagram)?;
        Ok(self
            .devices
            .iter()
            .filter(|(d, _)| matches(&probe, d))
            .map(|(d, addr)| {
                let host = if addr.ip().is_unspecified() {
                    local_ip_towards(peer.ip())
                        .map(super::host_of)
                        .unwrap_or_else(|| super::host_of(addr.ip()))
                } else {
                    super::host_of(addr.ip())
                };
                probe_matches(&probe, d, &host, addr.port())
            })
            .collect())
    }

    fn may_send(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.sent = 0;
        }
        if self.sent >= MAX_REPLIES_PER_SEC {
            return false;
        }
        self.sent += 1;
        true
    }

    /// Serves `sock` until `stop` turns true.
    pub async fn run(mut self, sock: UdpSocket, mut stop: watch::Receiver<bool>) {
        // One byte more than the limit, to tell a datagram at the limit from a longer one.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        loop {
            let (n, peer) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("WS-Discovery recv: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = &mut stopped => return,
            };
            if n > MAX_DATAGRAM {
                tracing::debug!("WS-Discovery: {n}-byte datagram from {peer} dropped");
                continue;
            }
            let answers = match self.answer(&buf[..n], peer) {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("WS-Discovery: datagram from {peer} ignored: {e}");
                    continue;
                }
            };
            for a in answers {
                if !self.may_send() {
                    tracing::debug!("WS-Discovery: answer rate cap reached");
                    break;
                }
                if let Err(e) = sock.send_to(a.as_bytes(), peer).await {
                    tracing::debug!("WS-Discovery: answer to {peer}: {e}");
                }
            }
        }
    }
}

/// The local address the system would use to reach `peer` (a UDP connect picks a route; no
/// packet is sent).
fn local_ip_towards(peer: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match peer {
        IpAddr::V4(_) => "0.0.0.0:0".parse().ok()?,
        IpAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(SocketAddr::new(peer, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe as onvif-zeep-async's WSDiscovery (and most VMSes) send it.
    pub(crate) const PROBE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action><a:MessageID>urn:uuid:0a6dc791-2be6-4991-9af1-454778a1917a</a:MessageID><a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>"#;

    fn dev(name: &str) -> Device {
        Device {
            name: name.into(),
            rtsp_port: 8554,
            video: None,
            sub: None,
            snapshot: None,
        }
    }

    #[test]
    fn parses_and_matches() {
        let p = parse_probe(PROBE.as_bytes()).unwrap();
        assert_eq!(
            p.message_id,
            "urn:uuid:0a6dc791-2be6-4991-9af1-454778a1917a"
        );
        assert_eq!(p.types, vec![TYPE_NVT.to_string()]);
        assert!(matches(&p, &dev("bikes")));
        let mut other = p.clone();
        other.types = vec!["{urn:x}Printer".into()];
        assert!(!matches(&other, &dev("bikes")));
        let mut scoped = p.clone();
        scoped.scopes = vec!["onvif://www.onvif.org/name/bikes".into()];
        assert!(matches(&scoped, &dev("bikes")));
        assert!(!matches(&scoped, &dev("cars")));
        scoped.scopes = vec!["onvif://www.onvif.org/name/bi".into()];
        assert!(!matches(&scoped, &dev("bikes")));
        scoped.scopes = vec!["onvif://www.onvif.org/Profile".into()];
        assert!(matches(&scoped, &dev("bikes")));
    }

    #[test]
    fn answer_relates_to_the_probe() {
        let p = parse_probe(PROBE.as_bytes()).unwrap();
        let xml = probe_matches(&p, &dev("a&b"), "127.0.0.1", 8000);
        let r = soap::parse(xml.as_bytes()).unwrap();
        assert_eq!(r.action, "ProbeMatches");
        assert_eq!(
            r.field("XAddrs"),
            Some("http://127.0.0.1:8000/onvif/device_service")
        );
        assert!(xml.contains(
            "<wsa:RelatesTo>urn:uuid:0a6dc791-2be6-4991-9af1-454778a1917a</wsa:RelatesTo>"
        ));
        assert_eq!(endpoint_uuid(&dev("x")), endpoint_uuid(&dev("x")));
        assert_ne!(endpoint_uuid(&dev("x")), endpoint_uuid(&dev("y")));
    }

    #[test]
    fn not_probes() {
        assert!(parse_probe(b"hello").is_err());
        let hello = PROBE.replace("d:Probe>", "d:Hello>");
        assert!(matches!(
            parse_probe(hello.as_bytes()),
            Err(ProbeError::NotProbe(_))
        ));
        let no_id = PROBE.replace(
            "<a:MessageID>urn:uuid:0a6dc791-2be6-4991-9af1-454778a1917a</a:MessageID>",
            "",
        );
        assert_eq!(parse_probe(no_id.as_bytes()), Err(ProbeError::NoMessageId));
    }
}

//! The RTSP control side of a load session: URL, requests with Basic/Digest authorization,
//! response heads, the SDP media the client sets up. None of it is on the per-packet path.

use md5::{Digest, Md5};

use super::LoadError;

/// Largest response (head and body) accepted from the server under test.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// `rtsp://[user[:pass]@]host[:port]/path`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspUrl {
    /// `host:port` to connect to (port 554 when not given).
    pub addr: String,
    /// The URL without its user information: what requests name.
    pub url: String,
    /// User and password from the URL, when given.
    pub creds: Option<(String, String)>,
}

impl RtspUrl {
    /// Parses an `rtsp://` URL (user and password taken literally, not percent-decoded).
    pub fn parse(s: &str) -> Result<RtspUrl, LoadError> {
        let bad = || LoadError::Url(s.to_owned());
        let rest = s.strip_prefix("rtsp://").ok_or_else(bad)?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (creds, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((u.to_owned(), p.to_owned())), host)
            }
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !host.ends_with(']');
        let addr = if has_port {
            host.to_owned()
        } else {
            format!("{host}:554")
        };
        Ok(RtspUrl {
            addr,
            url: format!("rtsp://{host}{path}"),
            creds,
        })
    }
}

/// A response head (and body), parsed.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order (names as sent).
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses a response at the start of `buf`: `Ok(None)` while it is incomplete, else the
    /// response and the bytes it took.
    pub fn parse(buf: &[u8]) -> Result<Option<(Response, usize)>, LoadError> {
        let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
            return if buf.len() > MAX_RESPONSE {
                Err(LoadError::Protocol("response head over 64 KiB".into()))
            } else {
                Ok(None)
            };
        };
        let head = std::str::from_utf8(&buf[..head_end])
            .map_err(|_| LoadError::Protocol("response head is not UTF-8".into()))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("RTSP/")
            .and_then(|s| s.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                LoadError::Protocol(format!("not an RTSP response: {status_line:.80}"))
            })?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = match r.header("Content-Length") {
            Some(v) => v
                .parse()
                .map_err(|_| LoadError::Protocol(format!("Content-Length {v:.40}")))?,
            None => 0,
        };
        let total = head_end + 4 + len;
        if total > MAX_RESPONSE {
            return Err(LoadError::Protocol("response over 64 KiB".into()));
        }
        if buf.len() < total {
            return Ok(None);
        }
        r.body = buf[head_end + 4..total].to_vec();
        Ok(Some((r, total)))
    }
}

/// How requests are authorized once the server asked.
#[derive(Debug, Clone)]
pub enum Authorization {
    /// Not asked (yet).
    None,
    /// `Basic base64(user:pass)`.
    Basic(String),
    /// Digest (RFC 2617, MD5, `qop=auth` when offered).
    Digest {
        /// User.
        user: String,
        /// Password.
        pass: String,
        /// `realm` of the challenge.
        realm: String,
        /// `nonce` of the challenge.
        nonce: String,
        /// `opaque`, echoed when given.
        opaque: Option<String>,
        /// The challenge offered `qop=auth`.
        qop: bool,
        /// Requests made with this nonce.
        nc: u32,
    },
}

fn md5_hex(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `key="value"` or `key=value` parameters of an authentication challenge.
fn params(s: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', ',']);
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        rest = next;
        Some((key.trim(), value))
    })
}

impl Authorization {
    /// The authorization to answer the challenges of a 401 with (Digest over Basic); `None`
    /// when neither is offered.
    pub fn answer(challenges: &[&str], user: &str, pass: &str) -> Option<Authorization> {
        for c in challenges {
            if let Some(p) = c
                .strip_prefix("Digest ")
                .or_else(|| c.strip_prefix("digest "))
            {
                let mut realm = None;
                let mut nonce = None;
                let mut opaque = None;
                let mut qop = false;
                let mut md5 = true;
                for (k, v) in params(p) {
                    match k.to_ascii_lowercase().as_str() {
                        "realm" => realm = Some(v.to_owned()),
                        "nonce" => nonce = Some(v.to_owned()),
                        "opaque" => opaque = Some(v.to_owned()),
                        "qop" => qop = v.split(',').any(|q| q.trim() == "auth"),
                        "algorithm" => md5 = v.eq_ignore_ascii_case("MD5"),
                        _ => {}
                    }
                }
                if let (Some(realm), Some(nonce), true) = (realm, nonce, md5) {
                    return Some(Authorization::Digest {
                        user: user.to_owned(),
                        pass: pass.to_owned(),
                        realm,
                        nonce,
                        opaque,
                        qop,
                        nc: 0,
                    });
                }
            }
        }
        challenges
            .iter()
            .any(|c| c.len() >= 5 && c[..5].eq_ignore_ascii_case("basic"))
            .then(|| {
                use base64::Engine;
                Authorization::Basic(
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")),
                )
            })
    }

    /// The `Authorization` header line (with CRLF) for a request, or nothing.
    pub fn header(&mut self, method: &str, uri: &str) -> String {
        match self {
            Authorization::None => String::new(),
            Authorization::Basic(b) => format!("Authorization: Basic {b}\r\n"),
            Authorization::Digest {
                user,
                pass,
                realm,
                nonce,
                opaque,
                qop,
                nc,
            } => {
                let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
                let ha2 = md5_hex(&format!("{method}:{uri}"));
                let opaque = opaque
                    .as_deref()
                    .map(|o| format!(", opaque=\"{o}\""))
                    .unwrap_or_default();
                if *qop {
                    *nc += 1;
                    let nc = format!("{nc:08x}");
                    let cnonce = "6e7672";
                    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
                    format!(
                        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\"{opaque}\r\n"
                    )
                } else {
                    let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
                    format!(
                        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\"{opaque}\r\n"
                    )
                }
            }
        }
    }
}

/// A medium of the SDP that the client sets up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `video` or `audio` (or another `m=` type).
    pub kind: String,
    /// The SETUP URL (the control attribute resolved against the base).
    pub control: String,
    /// The encoding name of the first payload type (`H264`, `H265`, `MPEG4-GENERIC`, …).
    pub encoding: String,
    /// Its RTP clock rate (90,000 when the SDP gives none).
    pub clock_rate: u32,
}

/// The media of an SDP, with their control URLs resolved against `base` (the Content-Base, or
/// the DESCRIBE URL).
pub fn sdp_media(sdp: &str, base: &str) -> Vec<Media> {
    let mut out: Vec<Media> = Vec::new();
    let mut pt = String::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split(' ');
            let kind = f.next().unwrap_or_default().to_owned();
            pt = f.nth(2).unwrap_or_default().to_owned();
            out.push(Media {
                kind,
                control: base.to_owned(),
                encoding: String::new(),
                clock_rate: 90_000,
            });
        } else if let Some(media) = out.last_mut() {
            if let Some(c) = line.strip_prefix("a=control:") {
                media.control = resolve(base, c);
            } else if let Some(map) = line.strip_prefix("a=rtpmap:")
                && let Some((p, enc)) = map.split_once(' ')
                && p == pt
            {
                let mut e = enc.split('/');
                media.encoding = e.next().unwrap_or_default().to_owned();
                media.clock_rate = e.next().and_then(|r| r.parse().ok()).unwrap_or(90_000);
            }
        }
    }
    out
}

fn resolve(base: &str, control: &str) -> String {
    if control.starts_with("rtsp://") || control.starts_with("rtsps://") {
        control.to_owned()
    } else if control == "*" {
        base.to_owned()
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RtspUrl::parse("rtsp://admin:s3:cret@127.0.0.1:8554/cam/1").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8554");
        assert_eq!(u.url, "rtsp://127.0.0.1:8554/cam/1");
        assert_eq!(u.creds, Some(("admin".into(), "s3:cret".into())));
        let u = RtspUrl::parse("rtsp://cam.example").unwrap();
        assert_eq!((u.addr.as_str(), u.creds), ("cam.example:554", None));
        assert!(RtspUrl::parse("http://x/").is_err());
        assert!(RtspUrl::parse("rtsp:///x").is_err());
    }

    #[test]
    fn responses_whole_and_in_pieces() {
        let raw = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 4\r\nSession: ab;timeout=60\r\n\r\nv=0\nRTSP";
        for cut in 0..raw.len() - 4 {
            assert!(Response::parse(&raw[..cut]).unwrap().is_none(), "{cut}");
        }
        let (r, used) = Response::parse(raw).unwrap().unwrap();
        assert_eq!(
            (r.status, used, r.body.as_slice()),
            (200, raw.len() - 4, &b"v=0\n"[..])
        );
        assert_eq!(r.header("session"), Some("ab;timeout=60"));
        assert!(Response::parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(Response::parse(&vec![b'a'; MAX_RESPONSE + 1]).is_err());
    }

    #[test]
    fn digest_follows_rfc_2617() {
        // RFC 2617 §3.5's example (qop=auth), with HTTP's method and URI.
        let challenge = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let mut a = Authorization::answer(&[challenge], "Mufasa", "Circle Of Life").unwrap();
        let h = a.header("GET", "/dir/index.html");
        // The RFC's response uses cnonce 0a4f113b; ours is fixed too, so check the parts.
        assert!(
            h.contains("nc=00000001") && h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"")
        );
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5_hex("GET:/dir/index.html");
        let want = md5_hex(&format!(
            "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:6e7672:auth:{ha2}"
        ));
        assert!(h.contains(&format!("response=\"{want}\"")), "{h}");
        assert!(a.header("GET", "/").contains("nc=00000002"));
        // Basic when only Basic is offered; Digest preferred when both are.
        let b = Authorization::answer(&["Basic realm=\"x\""], "a", "b").unwrap();
        assert!(matches!(b, Authorization::Basic(ref s) if s == "YTpi"));
        let d = Authorization::answer(
            &["Basic realm=\"x\"", "Digest realm=\"r\", nonce=\"n\""],
            "a",
            "b",
        );
        assert!(matches!(d, Some(Authorization::Digest { qop: false, .. })));
        assert!(Authorization::answer(&["Bearer x"], "a", "b").is_none());
    }

    #[test]
    fn sdp_controls() {
        let sdp = "v=0\r\na=control:*\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=control:rtsp://h/x/trackID=1\r\n";
        let m = sdp_media(sdp, "rtsp://h/x/");
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].kind.as_str(), m[0].control.as_str()),
            ("video", "rtsp://h/x/trackID=0")
        );
        assert_eq!((m[0].encoding.as_str(), m[0].clock_rate), ("H264", 90_000));
        assert_eq!(
            (m[1].encoding.as_str(), m[1].clock_rate),
            ("MPEG4-GENERIC", 48_000)
        );
        assert_eq!(m[1].control, "rtsp://h/x/trackID=1");
        assert_eq!(
            sdp_media("m=video 0 RTP/AVP 96\na=control:stream=0", "rtsp://h/cam")[0].control,
            "rtsp://h/cam/stream=0"
        );
    }
}

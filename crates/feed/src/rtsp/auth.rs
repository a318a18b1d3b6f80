//! HTTP Basic and Digest (MD5, RFC 2617) authentication for RTSP (RFC 2326 §16.7).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};

/// Configured credentials, with the realm and nonce this server issues.
#[derive(Debug, Clone)]
pub struct Auth {
    user: String,
    pass: String,
    realm: String,
    nonce: String,
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Auth {
    /// Credentials for `user:pass`. The nonce is random per server; clients reuse it across
    /// connections, as RFC 2617 allows.
    pub fn new(user: impl Into<String>, pass: impl Into<String>) -> Self {
        Auth {
            user: user.into(),
            pass: pass.into(),
            realm: "nvrkit loopcam".into(),
            nonce: format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            ),
        }
    }

    /// Parses `user:pass`.
    pub fn parse(spec: &str) -> Option<Self> {
        let (u, p) = spec.split_once(':')?;
        (!u.is_empty()).then(|| Self::new(u, p))
    }

    /// The `WWW-Authenticate` values of a 401: Digest first (preferred), then Basic.
    pub fn challenges(&self) -> [String; 2] {
        [
            format!(
                "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5",
                self.realm, self.nonce
            ),
            format!("Basic realm=\"{}\"", self.realm),
        ]
    }

    /// True if the `Authorization` header value proves the credentials for `method`.
    pub fn check(&self, method: &str, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let value = value.trim();
        if let Some(b64) = value.strip_prefix("Basic ") {
            let Ok(raw) = B64.decode(b64.trim()) else {
                return false;
            };
            return raw == format!("{}:{}", self.user, self.pass).as_bytes();
        }
        let Some(params) = value.strip_prefix("Digest ") else {
            return false;
        };
        let p = digest_params(params);
        let get = |k: &str| {
            p.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let (Some(user), Some(nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return false;
        };
        if user != self.user || nonce != self.nonce {
            return false;
        }
        let ha1 = md5_hex(&format!("{}:{}:{}", self.user, self.realm, self.pass));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = match (get("qop"), get("nc"), get("cnonce")) {
            (Some(qop), Some(nc), Some(cnonce)) => {
                md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
            }
            _ => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        expected.eq_ignore_ascii_case(response)
    }
}

/// `k=v` and `k="v"` pairs of a Digest header, commas inside quotes respected.
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_owned();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5: Mufasa / Circle Of Life, qop=auth.
        let a = Auth {
            user: "Mufasa".into(),
            pass: "Circle Of Life".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
        };
        let header = "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
            nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
            nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
            opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        assert!(a.check("GET", Some(header)));
        assert!(!a.check("POST", Some(header)), "the method is part of HA2");
    }

    #[test]
    fn basic_and_wrong_credentials() {
        let a = Auth::parse("admin:secret").unwrap();
        assert!(a.check("DESCRIBE", Some("Basic YWRtaW46c2VjcmV0")));
        assert!(!a.check("DESCRIBE", Some("Basic YWRtaW46d3Jvbmc=")));
        assert!(!a.check("DESCRIBE", None));
        assert!(!a.check("DESCRIBE", Some("Bearer x")));
        assert!(!a.check("DESCRIBE", Some("Digest garbage")));
        assert!(a.challenges()[0].starts_with("Digest realm=\"nvrkit loopcam\", nonce=\""));
    }
}

//! HTTP Basic and Digest authentication for RTSP (RFC 2326 §16.7) and for the ONVIF devices'
//! SOAP endpoints (ONVIF Core §5.9.1, feature `onvif`): Digest with MD5 as RFC 7616 and
//! RFC 2617 define it and as cameras, VMSes and ONVIF clients use it. One implementation for
//! both: the request URI is an `rtsp://` URL or an HTTP path, and [`ConnAuth`] is a
//! connection's state (RTSP) or a request's (HTTP, where each request stands alone).
//!
//! Digest, against a peer that captured one `Authorization` header (issue 14):
//! - **Nonces expire** ([`Auth::with_nonce_lifetime`], default 5 min). A nonce is the time it
//!   was issued, a random salt and a keyed MD5 HMAC of both under a random per-process key, so
//!   checking one needs no state per challenge. An expired nonce with a correct response is
//!   answered with a fresh challenge marked `stale=true` (RFC 7616 §3.3), and the client retries
//!   without asking its user.
//! - **The digest's `uri` must be the request's URI** (or its path): a header captured on one
//!   stream does not open another.
//! - **`qop="auth"` is offered; a client using it has its `nc` tracked per nonce**: an `nc` not
//!   above the last one seen for that nonce is refused, so a captured header cannot be replayed
//!   even on the same URI. Only nonces answered with correct credentials are tracked, at most
//!   [`MAX_TRACKED_NONCES`]; past that the oldest is forgotten and its later use is answered
//!   `stale=true`. A client that answers without `qop` (GStreamer's rtspsrc, many VMSes) is
//!   accepted until the nonce expires.
//! - **A nonce stays valid on the connection that authenticated with it** ([`ConnAuth`]), so
//!   keepalives (`GET_PARAMETER`, `OPTIONS`) of a long session never get a 401; elsewhere it
//!   expires.
//! - Credentials, responses and nonce MACs are compared in constant time (`subtle`).
//!
//! Not done: `algorithm=SHA-256` (no RTSP client we know sends it), `qop=auth-int`, `userhash`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq as _;

/// How long a nonce is accepted by default (except on the connection that authenticated with
/// it): long enough for a client's whole setup, short enough that a captured header soon dies.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// The most nonces whose `nc` is tracked at once (a few hundred bytes each). Only nonces
/// answered with correct credentials are tracked, so a peer without them cannot fill it.
pub const MAX_TRACKED_NONCES: usize = 4096;

/// Configured credentials, with the realm and the key nonces are made with. Clones share the
/// key and the `nc` table.
#[derive(Clone)]
pub struct Auth {
    user: String,
    pass: String,
    realm: String,
    key: [u8; 32],
    /// Nonce timestamps are milliseconds since this instant.
    epoch: Instant,
    nonce_lifetime: Duration,
    counts: Arc<Mutex<NonceCounts>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the password nor the key.
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("realm", &self.realm)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .finish_non_exhaustive()
    }
}

/// What [`Auth::check`] made of a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are good: serve the request.
    Granted,
    /// Missing, wrong, for another URI, or a replay: answer 401 with a fresh challenge.
    Refused,
    /// Right credentials on a nonce that expired (or was forgotten): answer 401 with a fresh
    /// challenge marked `stale=true`, so the client retries with the new nonce.
    Stale,
}

/// The authentication state of one connection: the nonce it authenticated with, valid on it
/// for as long as it stays open, and the last `nc` it used with it.
#[derive(Debug, Default, Clone)]
pub struct ConnAuth {
    nonce: Option<String>,
    last_nc: Option<u32>,
}

/// `nc` values seen per nonce (RFC 7616 §3.4: the server should refuse a repeated one).
#[derive(Debug, Default)]
struct NonceCounts {
    /// Nonce → (issued, ms since the epoch; last `nc`).
    seen: HashMap<String, (u64, u32)>,
    /// Nonces issued at or before this that are not in `seen` may have been forgotten when it
    /// was full: their counts are unknown.
    forgotten_up_to: Option<u64>,
}

/// What [`NonceCounts::record`] says of one `nc`.
#[derive(Debug, PartialEq, Eq)]
enum Count {
    /// Above the last one: recorded.
    Fresh,
    /// Not above the last one seen for the nonce.
    Replay,
    /// The nonce's count may have been forgotten.
    Unknown,
}

impl NonceCounts {
    fn record(&mut self, nonce: &str, issued: u64, nc: u32, now: u64, lifetime: u64) -> Count {
        if let Some((_, last)) = self.seen.get_mut(nonce) {
            if nc <= *last {
                return Count::Replay;
            }
            *last = nc;
            return Count::Fresh;
        }
        if self.forgotten_up_to.is_some_and(|f| issued <= f) {
            return Count::Unknown;
        }
        if self.seen.len() >= MAX_TRACKED_NONCES {
            // Expired nonces are refused as stale anyway (but on the connection that holds
            // one, which keeps its own count).
            self.seen
                .retain(|_, (at, _)| now.saturating_sub(*at) < lifetime);
        }
        if self.seen.len() >= MAX_TRACKED_NONCES
            && let Some((oldest, at)) = self
                .seen
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, (at, _))| (k.clone(), *at))
        {
            self.seen.remove(&oldest);
            self.forgotten_up_to = Some(self.forgotten_up_to.map_or(at, |f| f.max(at)));
        }
        self.seen.insert(nonce.to_owned(), (issued, nc));
        Count::Fresh
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

/// HMAC-MD5 (RFC 2104) with a 32-byte key.
fn hmac_md5(key: &[u8; 32], message: &[u8]) -> [u8; 16] {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        inner_pad[i] ^= k;
        outer_pad[i] ^= k;
    }
    let inner = Md5::new()
        .chain_update(inner_pad)
        .chain_update(message)
        .finalize();
    Md5::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Constant-time equality of two strings (their lengths may show).
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// `value` without the auth scheme `scheme` (case-insensitive, RFC 7235 §2.1).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let head = value.get(..scheme.len())?;
    let rest = &value[scheme.len()..];
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then(|| rest.trim_start())
}

/// Whether a digest's `uri` names the request's URI: the same text, the same URL once parsed
/// (clients and rtsp-types may differ in case or escaping), or its path (and query), as HTTP
/// clients send it.
fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    let Ok(request) = rtsp_types::Url::parse(request_uri) else {
        return false;
    };
    if digest_uri.starts_with('/') {
        let path = match request.query() {
            Some(q) => format!("{}?{q}", request.path()),
            None => request.path().to_owned(),
        };
        return digest_uri == path;
    }
    rtsp_types::Url::parse(digest_uri).is_ok_and(|u| u == request)
}

impl Auth {
    /// Credentials for `user:pass`, with a new random nonce key.
    pub fn new(user: impl Into<String>, pass: impl Into<String>) -> Self {
        Auth {
            user: user.into(),
            pass: pass.into(),
            realm: "nvrkit loopcam".into(),
            key: rand::random(),
            epoch: Instant::now(),
            nonce_lifetime: DEFAULT_NONCE_LIFETIME,
            counts: Arc::new(Mutex::new(NonceCounts::default())),
        }
    }

    /// Parses `user:pass`.
    pub fn parse(spec: &str) -> Option<Self> {
        let (u, p) = spec.split_once(':')?;
        (!u.is_empty()).then(|| Self::new(u, p))
    }

    /// The same credentials with nonces accepted for `lifetime` (tests use a second).
    pub fn with_nonce_lifetime(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = lifetime;
        self
    }

    /// How long a nonce is accepted (except on the connection that authenticated with it).
    pub fn nonce_lifetime(&self) -> Duration {
        self.nonce_lifetime
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn mac(&self, issued: u64, salt: u64) -> String {
        let mut message = [0u8; 16];
        message[..8].copy_from_slice(&issued.to_be_bytes());
        message[8..].copy_from_slice(&salt.to_be_bytes());
        hex(&hmac_md5(&self.key, &message))
    }

    /// A new nonce issued at `now`: 12 hex digits of time, 16 of salt, 32 of MAC.
    fn nonce_at(&self, now: Instant) -> String {
        let issued = self.millis(now);
        let salt: u64 = rand::random();
        format!("{issued:012x}{salt:016x}{}", self.mac(issued, salt))
    }

    /// When a nonce of ours was issued (ms since the epoch); `None` if it is not one of ours.
    fn issued(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != 60 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..12], 16).ok()?;
        let salt = u64::from_str_radix(&nonce[12..28], 16).ok()?;
        same(&self.mac(issued, salt), &nonce[28..].to_ascii_lowercase()).then_some(issued)
    }

    /// The `WWW-Authenticate` values of a 401, with a new nonce: Digest first (preferred),
    /// then Basic. `stale` marks the nonce the client used as expired (its credentials were
    /// right).
    pub fn challenges(&self, stale: bool) -> [String; 2] {
        self.challenges_at(Instant::now(), stale)
    }

    /// [`Auth::challenges`] at `now`.
    pub fn challenges_at(&self, now: Instant, stale: bool) -> [String; 2] {
        [
            format!(
                "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{}",
                self.realm,
                self.nonce_at(now),
                if stale { ", stale=true" } else { "" }
            ),
            format!("Basic realm=\"{}\"", self.realm),
        ]
    }

    /// Whether the `Authorization` header value proves the credentials for a request of
    /// `method` to `request_uri`, on the connection whose state is `conn`.
    pub fn check(
        &self,
        method: &str,
        request_uri: &str,
        authorization: Option<&str>,
        conn: &mut ConnAuth,
    ) -> Verdict {
        self.check_at(Instant::now(), method, request_uri, authorization, conn)
    }

    /// [`Auth::check`] at `now`.
    pub fn check_at(
        &self,
        now: Instant,
        method: &str,
        request_uri: &str,
        authorization: Option<&str>,
        conn: &mut ConnAuth,
    ) -> Verdict {
        let Some(value) = authorization.map(str::trim) else {
            return Verdict::Refused;
        };
        if let Some(b64) = strip_scheme(value, "Basic") {
            let Ok(raw) = B64.decode(b64.trim()) else {
                return Verdict::Refused;
            };
            let want = format!("{}:{}", self.user, self.pass);
            return if bool::from(raw.ct_eq(want.as_bytes())) {
                Verdict::Granted
            } else {
                Verdict::Refused
            };
        }
        let Some(params) = strip_scheme(value, "Digest") else {
            return Verdict::Refused;
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
            return Verdict::Refused;
        };
        if get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
            return Verdict::Refused;
        }
        if !uri_matches(uri, request_uri) {
            return Verdict::Refused;
        }
        let Some(issued) = self.issued(nonce) else {
            return Verdict::Refused;
        };
        let ha1 = md5_hex(&format!("{}:{}:{}", self.user, self.realm, self.pass));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let (expected, nc) = match get("qop") {
            None => (md5_hex(&format!("{ha1}:{nonce}:{ha2}")), None),
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let (Some(nc_text), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                    return Verdict::Refused;
                };
                // Eight hex digits (RFC 7616 §3.4); fewer are taken too, as the client's
                // response is computed over the digits it sent.
                let digits = nc_text.bytes().all(|b| b.is_ascii_hexdigit());
                let Some(nc) = ((1..=8).contains(&nc_text.len()) && digits)
                    .then(|| u32::from_str_radix(nc_text, 16).ok())
                    .flatten()
                else {
                    return Verdict::Refused;
                };
                (
                    md5_hex(&format!("{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")),
                    Some(nc),
                )
            }
            Some(_) => return Verdict::Refused,
        };
        let user_ok = user.as_bytes().ct_eq(self.user.as_bytes());
        let response_ok = expected
            .as_bytes()
            .ct_eq(response.to_ascii_lowercase().as_bytes());
        if !bool::from(user_ok & response_ok) {
            return Verdict::Refused;
        }
        // The credentials are right; now whether this nonce and count may still be used.
        let pinned = conn.nonce.as_deref() == Some(nonce);
        let now_ms = self.millis(now);
        let lifetime = u64::try_from(self.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        if !pinned && now_ms.saturating_sub(issued) >= lifetime {
            return Verdict::Stale;
        }
        if let Some(nc) = nc {
            if pinned && conn.last_nc.is_some_and(|last| nc <= last) {
                return Verdict::Refused;
            }
            let counted = match self.counts.lock() {
                Ok(mut counts) => counts.record(nonce, issued, nc, now_ms, lifetime),
                Err(_) => Count::Unknown,
            };
            match counted {
                Count::Fresh => {}
                Count::Replay => return Verdict::Refused,
                // The connection's own count stands in for a forgotten one.
                Count::Unknown if pinned => {}
                Count::Unknown => return Verdict::Stale,
            }
        }
        if !pinned {
            conn.nonce = Some(nonce.to_owned());
            conn.last_nc = None;
        }
        if nc.is_some() {
            conn.last_nc = nc;
        }
        Verdict::Granted
    }
}

/// `k=v` and `k="v"` pairs of a Digest header, commas inside quotes respected. Linear in the
/// header's length.
/// Whether an `Authorization: Digest` value answers with `qop=auth` (so its `nc` is counted and
/// a replay refused). The SOAP endpoints ask for it: one POST path serves every action, and
/// Digest does not cover the body, so an answer without qop could be replayed as any action.
#[cfg(feature = "onvif")]
pub(crate) fn digest_uses_qop(value: &str) -> bool {
    strip_scheme(value.trim(), "Digest").is_some_and(|params| {
        digest_params(params)
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("qop") && v.eq_ignore_ascii_case("auth"))
    })
}

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

    const URI: &str = "rtsp://127.0.0.1:8554/sample";

    /// The nonce of a challenge.
    fn nonce_of(challenge: &str) -> String {
        let (_, rest) = challenge.split_once("nonce=\"").unwrap();
        rest.split('"').next().unwrap().to_owned()
    }

    /// An `Authorization: Digest` value as a client computes it; `nc` with qop=auth.
    fn digest(
        auth: &Auth,
        pass: &str,
        method: &str,
        uri: &str,
        nonce: &str,
        nc: Option<u32>,
    ) -> String {
        let ha1 = md5_hex(&format!("{}:{}:{pass}", auth.user, auth.realm));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        match nc {
            None => format!(
                "Digest username=\"{}\", realm=\"{}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\"",
                auth.user,
                auth.realm,
                md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
            ),
            Some(nc) => {
                let nc = format!("{nc:08x}");
                format!(
                    "Digest username=\"{}\", realm=\"{}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"0a4f113b\", response=\"{}\"",
                    auth.user,
                    auth.realm,
                    md5_hex(&format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"))
                )
            }
        }
    }

    fn fresh(a: &Auth, at: Instant) -> String {
        nonce_of(&a.challenges_at(at, false)[0])
    }

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5: Mufasa / Circle Of Life, qop=auth; the example's nonce is not one of
        // ours, so the digest is computed with ours on the example's other values.
        let mut a = Auth::new("Mufasa", "Circle Of Life");
        a.realm = "testrealm@host.com".into();
        assert_eq!(
            md5_hex(&format!(
                "{}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{}",
                md5_hex("Mufasa:testrealm@host.com:Circle Of Life"),
                md5_hex("GET:/dir/index.html")
            )),
            "6629fae49393a05397450978507c4ef1"
        );
        let now = Instant::now();
        let nonce = fresh(&a, now);
        let header = digest(
            &a,
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            &nonce,
            Some(1),
        );
        let mut c = ConnAuth::default();
        assert_eq!(
            a.check_at(now, "GET", "rtsp://h/dir/index.html", Some(&header), &mut c),
            Verdict::Granted,
            "a path-only uri names the request's path"
        );
        let header = digest(
            &a,
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            &nonce,
            Some(2),
        );
        assert_eq!(
            a.check_at(
                now,
                "POST",
                "rtsp://h/dir/index.html",
                Some(&header),
                &mut c
            ),
            Verdict::Refused,
            "the method is part of HA2"
        );
    }

    #[test]
    fn basic_and_wrong_credentials() {
        let a = Auth::parse("admin:secret").unwrap();
        let mut c = ConnAuth::default();
        let mut check = |h: Option<&str>| a.check("DESCRIBE", URI, h, &mut c);
        assert_eq!(check(Some("Basic YWRtaW46c2VjcmV0")), Verdict::Granted);
        assert_eq!(check(Some("basic YWRtaW46c2VjcmV0")), Verdict::Granted);
        assert_eq!(check(Some("Basic YWRtaW46d3Jvbmc=")), Verdict::Refused);
        assert_eq!(check(None), Verdict::Refused);
        assert_eq!(check(Some("Bearer x")), Verdict::Refused);
        assert_eq!(check(Some("Digest garbage")), Verdict::Refused);
        let [digest, basic] = a.challenges(false);
        assert!(digest.starts_with("Digest realm=\"nvrkit loopcam\", nonce=\""));
        assert!(
            digest.ends_with(", algorithm=MD5, qop=\"auth\""),
            "{digest}"
        );
        assert_eq!(basic, "Basic realm=\"nvrkit loopcam\"");
    }

    #[test]
    fn digest_without_qop_is_accepted_until_the_nonce_expires() {
        let a = Auth::new("u", "p").with_nonce_lifetime(Duration::from_secs(300));
        let t0 = Instant::now();
        let nonce = fresh(&a, t0);
        let h = digest(&a, "p", "DESCRIBE", URI, &nonce, None);
        let mut c = ConnAuth::default();
        assert_eq!(
            a.check_at(t0, "DESCRIBE", URI, Some(&h), &mut c),
            Verdict::Granted
        );
        // Without qop there is no count: the same header again is accepted, on any connection,
        // until the nonce expires.
        let mut other = ConnAuth::default();
        let later = t0 + Duration::from_secs(299);
        assert_eq!(
            a.check_at(later, "DESCRIBE", URI, Some(&h), &mut other),
            Verdict::Granted
        );
        let expired = t0 + Duration::from_secs(300);
        assert_eq!(
            a.check_at(expired, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
            Verdict::Stale
        );
        let wrong = digest(&a, "nope", "DESCRIBE", URI, &nonce, None);
        assert_eq!(
            a.check_at(
                expired,
                "DESCRIBE",
                URI,
                Some(&wrong),
                &mut ConnAuth::default()
            ),
            Verdict::Refused,
            "stale only says so to a client that knows the password"
        );
    }

    #[test]
    fn an_expired_nonce_is_stale_and_a_challenge_says_so() {
        let a = Auth::new("u", "p").with_nonce_lifetime(Duration::from_secs(1));
        let t0 = Instant::now();
        let nonce = fresh(&a, t0);
        let h = digest(&a, "p", "DESCRIBE", URI, &nonce, Some(1));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            a.check_at(t1, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
            Verdict::Stale
        );
        assert!(a.challenges_at(t1, true)[0].ends_with(", stale=true"));
        let renewed = fresh(&a, t1);
        assert_ne!(renewed, nonce, "every challenge has its own nonce");
        let h = digest(&a, "p", "DESCRIBE", URI, &renewed, Some(1));
        assert_eq!(
            a.check_at(t1, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
            Verdict::Granted
        );
    }

    #[test]
    fn a_nonce_stays_valid_on_the_connection_that_authenticated_with_it() {
        let a = Auth::new("u", "p").with_nonce_lifetime(Duration::from_secs(1));
        let t0 = Instant::now();
        let nonce = fresh(&a, t0);
        let mut keeper = ConnAuth::default();
        let h = digest(&a, "p", "DESCRIBE", URI, &nonce, Some(1));
        assert_eq!(
            a.check_at(t0, "DESCRIBE", URI, Some(&h), &mut keeper),
            Verdict::Granted
        );
        // An hour of keepalives on the same connection, long past the nonce's lifetime.
        for i in 2..100u32 {
            let at = t0 + Duration::from_secs(u64::from(i) * 36);
            let h = digest(&a, "p", "GET_PARAMETER", URI, &nonce, Some(i));
            assert_eq!(
                a.check_at(at, "GET_PARAMETER", URI, Some(&h), &mut keeper),
                Verdict::Granted,
                "keepalive {i}"
            );
        }
        // Without qop too.
        let h = digest(&a, "p", "GET_PARAMETER", URI, &nonce, None);
        let at = t0 + Duration::from_secs(7200);
        assert_eq!(
            a.check_at(at, "GET_PARAMETER", URI, Some(&h), &mut keeper),
            Verdict::Granted
        );
        // Another connection with the same nonce: expired there.
        let h = digest(&a, "p", "GET_PARAMETER", URI, &nonce, Some(1000));
        assert_eq!(
            a.check_at(at, "GET_PARAMETER", URI, Some(&h), &mut ConnAuth::default()),
            Verdict::Stale
        );
    }

    #[test]
    fn the_digest_uri_must_be_the_requests() {
        let a = Auth::new("u", "p");
        let now = Instant::now();
        let nonce = fresh(&a, now);
        let h = digest(&a, "p", "DESCRIBE", URI, &nonce, None);
        let mut c = ConnAuth::default();
        assert_eq!(
            a.check_at(
                now,
                "DESCRIBE",
                "rtsp://127.0.0.1:8554/other",
                Some(&h),
                &mut c
            ),
            Verdict::Refused
        );
        assert_eq!(
            a.check_at(now, "DESCRIBE", URI, Some(&h), &mut c),
            Verdict::Granted
        );
        // The URL, and its path alone.
        for (digest_uri, request) in [
            (
                "rtsp://127.0.0.1:8554/sample",
                "rtsp://127.0.0.1:8554/sample",
            ),
            (
                "/sample/trackID=0",
                "rtsp://127.0.0.1:8554/sample/trackID=0",
            ),
        ] {
            let h = digest(&a, "p", "SETUP", digest_uri, &nonce, None);
            assert_eq!(
                a.check_at(now, "SETUP", request, Some(&h), &mut c),
                Verdict::Granted,
                "{digest_uri} for {request}"
            );
        }
        let h = digest(&a, "p", "SETUP", "/sample", &nonce, None);
        assert_eq!(
            a.check_at(now, "SETUP", "rtsp://h/sample/trackID=0", Some(&h), &mut c),
            Verdict::Refused
        );
    }

    #[test]
    fn an_nc_not_above_the_last_is_refused() {
        let a = Auth::new("u", "p");
        let now = Instant::now();
        let nonce = fresh(&a, now);
        let mut c = ConnAuth::default();
        let first = digest(&a, "p", "DESCRIBE", URI, &nonce, Some(1));
        assert_eq!(
            a.check_at(now, "DESCRIBE", URI, Some(&first), &mut c),
            Verdict::Granted
        );
        // Replayed: on the same connection and on another.
        assert_eq!(
            a.check_at(now, "DESCRIBE", URI, Some(&first), &mut c),
            Verdict::Refused
        );
        assert_eq!(
            a.check_at(now, "DESCRIBE", URI, Some(&first), &mut ConnAuth::default()),
            Verdict::Refused
        );
        let third = digest(&a, "p", "DESCRIBE", URI, &nonce, Some(3));
        assert_eq!(
            a.check_at(now, "DESCRIBE", URI, Some(&third), &mut c),
            Verdict::Granted,
            "counts may skip"
        );
        let second = digest(&a, "p", "DESCRIBE", URI, &nonce, Some(2));
        assert_eq!(
            a.check_at(now, "DESCRIBE", URI, Some(&second), &mut c),
            Verdict::Refused,
            "but never go back"
        );
        for bad in ["", "0000000g", "000000001", "+0000001"] {
            let h = first.replace("nc=00000001", &format!("nc={bad}"));
            assert_eq!(
                a.check_at(now, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
                Verdict::Refused,
                "nc={bad}"
            );
        }
    }

    #[test]
    fn the_nc_table_is_bounded_and_a_forgotten_nonce_is_stale() {
        let a = Auth::new("u", "p");
        let t0 = Instant::now();
        let first = fresh(&a, t0);
        let h = digest(&a, "p", "DESCRIBE", URI, &first, Some(1));
        assert_eq!(
            a.check_at(t0, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
            Verdict::Granted
        );
        for i in 0..MAX_TRACKED_NONCES {
            let at = t0 + Duration::from_millis(1 + i as u64);
            let n = fresh(&a, at);
            let h = digest(&a, "p", "DESCRIBE", URI, &n, Some(1));
            assert_eq!(
                a.check_at(at, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
                Verdict::Granted
            );
        }
        assert_eq!(a.counts.lock().unwrap().seen.len(), MAX_TRACKED_NONCES);
        // The oldest was forgotten: replaying its count cannot be told from a new one, so the
        // client is sent a new nonce instead.
        let at = t0 + Duration::from_secs(10);
        assert_eq!(
            a.check_at(at, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
            Verdict::Stale
        );
    }

    #[test]
    fn forged_or_foreign_nonces_are_refused() {
        let a = Auth::new("u", "p");
        let b = Auth::new("u", "p");
        let now = Instant::now();
        let theirs = fresh(&b, now);
        let mut forged = fresh(&a, now);
        forged.replace_range(0..12, "0000ffff0000");
        for nonce in [
            theirs.as_str(),
            forged.as_str(),
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "",
        ] {
            let h = digest(&a, "p", "DESCRIBE", URI, nonce, None);
            assert_eq!(
                a.check_at(now, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
                Verdict::Refused,
                "{nonce}"
            );
        }
        let h = digest(&a, "p", "DESCRIBE", URI, &fresh(&a, now), None)
            .replace("response=", "algorithm=SHA-256, response=");
        assert_eq!(
            a.check_at(now, "DESCRIBE", URI, Some(&h), &mut ConnAuth::default()),
            Verdict::Refused
        );
    }
}

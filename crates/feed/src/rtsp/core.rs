//! The RTSP 1.0 server dialogue (RFC 2326), sans-I/O: a request and the connection's state go
//! in, a response and an action for the I/O layer come out. The connection owns its session
//! from SETUP to TEARDOWN, including what PLAY sends ([`Playout`]): frames go in, RTP and RTCP
//! packets come out as data ([`Outgoing`](crate::rtp::Outgoing), into a [`Sink`]).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nvrkit_media::{Frame, TrackInfo};
use rtsp_types::{HeaderName, Method, Request, Response, StatusCode, Version, headers};

use super::auth::{Auth, ConnAuth, Verdict};
use super::play::{Playout, RtpConfig};
use crate::fault::frames::LoopGeometry;
use crate::fault::{AuthScheme, FaultError, FaultSet};
use crate::loop_source::Laps;
use crate::rtp::Sink;
use crate::sdp;

/// What the server serves at one path.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The path, without the leading slash.
    pub name: String,
    /// Its tracks.
    pub tracks: Vec<TrackInfo>,
    /// The faults of this path itself (a fault-file alias); a URL query adds to them.
    pub faults: FaultSet,
    /// Where its loop's laps start, when it loops (for faults at the seam).
    pub laps: Option<Laps>,
    /// Where its loop's seams fall in media time, when it loops (for the timestamp faults,
    /// [`crate::fault::frames::SeamRetimer`]).
    pub geometry: Option<LoopGeometry>,
}

impl StreamInfo {
    /// A stream with no faults of its own that does not loop.
    pub fn new(name: impl Into<String>, tracks: Vec<TrackInfo>) -> Self {
        StreamInfo {
            name: name.into(),
            tracks,
            faults: FaultSet::default(),
            laps: None,
            geometry: None,
        }
    }
}

/// Looks streams up by path.
pub trait Catalog {
    /// The stream at `name`, if any.
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>>;

    /// The stream at `name` as a session with `faults` plays it. Faults that change frames
    /// ([`FaultSet::changes_frames`]) may give it a loop of its own
    /// ([`crate::fault::frames::loop_clip`]), or be refused for that clip (`Err`: why, naming
    /// the clip: `fps` out of its reach, `sps_change_at_seam` naming a clip that cannot
    /// follow). By default: the stream itself.
    fn stream_with(
        &self,
        name: &str,
        faults: &FaultSet,
    ) -> Result<Option<Arc<StreamInfo>>, String> {
        let _ = faults;
        Ok(self.stream(name))
    }
}

/// How one track's packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Interleaved in the RTSP connection (RFC 2326 §10.12).
    Tcp {
        /// Channel of RTP.
        rtp: u8,
        /// Channel of RTCP.
        rtcp: u8,
    },
    /// UDP unicast to the client's ports.
    Udp {
        /// The client's RTP port.
        rtp: u16,
        /// The client's RTCP port.
        rtcp: u16,
    },
}

/// One set-up track of a session.
#[derive(Debug, Clone)]
pub struct TrackSetup {
    /// Index of the track in the stream.
    pub stream: usize,
    /// How its packets travel.
    pub transport: Transport,
    /// Its SSRC, fixed for the session.
    pub ssrc: u32,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Set up, not playing.
    Ready,
    /// Playing.
    Playing,
}

/// An RTSP session (one per connection in this server).
#[derive(Debug)]
pub struct Session {
    /// The session identifier.
    pub id: String,
    /// What it plays.
    pub stream: Arc<StreamInfo>,
    /// Its set-up tracks, in SETUP order.
    pub tracks: Vec<TrackSetup>,
    /// Ready or playing.
    pub state: State,
    /// Its faults (the path's, and the URL query's), fixed at the first SETUP.
    pub faults: FaultSet,
    /// The fault query its URLs carry (`denytcp&stall=2s`), when the client gave one: the
    /// SDP's control URLs and RTP-Info repeat it.
    pub url_query: Option<String>,
    /// When the first SETUP made it (`session_expires` counts from here).
    pub created: Instant,
}

/// What the I/O layer must do after sending (or before building) the response.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond sending the response.
    None,
    /// Start (or resume) playing: build the response with [`Connection::play`] once the first
    /// frame to send is known, so RTP-Info can say where the stream starts.
    Play,
    /// Sending stopped ([`Playout::pause`]); the session is kept.
    Pause,
    /// The session is gone: send what [`Connection::bye`] gives (RTCP BYE) and stop reading.
    Teardown,
}

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Credentials, when authentication is on.
    pub auth: Option<Arc<Auth>>,
    /// Server RTP and RTCP UDP ports, when UDP is offered.
    pub udp_ports: Option<(u16, u16)>,
    /// Session timeout announced and enforced.
    pub session_timeout: Duration,
    /// `rtsp`, or `rtsps` on a TLS connection: the scheme of URLs in responses.
    pub scheme: &'static str,
    /// The host (and port) clients reached us at, for URLs in responses.
    pub host: String,
    /// The server's own IP, for the SDP origin line.
    pub server_ip: String,
    /// How sessions packetize.
    pub rtp: RtpConfig,
}

/// One RTSP connection's state.
#[derive(Debug)]
pub struct Connection {
    config: ConnConfig,
    session: Option<Session>,
    /// What the session sends, from its first PLAY until TEARDOWN (or [`Connection::bye`]).
    playout: Option<Playout>,
    sdp_session_id: u64,
    /// The nonce this connection authenticated with, valid on it while it is open.
    auth_state: ConnAuth,
    /// The path the last DESCRIBE named and the fault query it carried: a SETUP without a
    /// query (a client that drops it from control URLs) takes it from there.
    described: Option<(String, FaultSet)>,
    /// When `disconnect_every` closes this connection.
    close_at: Option<Instant>,
}

/// The credentials a path with `auth=basic|digest` asks for when the server has none of its
/// own (`--auth`): user `admin`, password `admin`, as many cameras ship.
pub const FAULT_AUTH: (&str, &str) = ("admin", "admin");

fn fault_auth() -> Arc<Auth> {
    static AUTH: OnceLock<Arc<Auth>> = OnceLock::new();
    AUTH.get_or_init(|| Arc::new(Auth::new(FAULT_AUTH.0, FAULT_AUTH.1)))
        .clone()
}

/// A fault query as URLs carry it (`%` escaped).
fn url_query(f: &FaultSet) -> String {
    f.to_string().replace('%', "%25")
}

/// Splits a request URI's path and query into (path, fault query). A query that relative
/// control URLs were appended to (`/bikes?denytcp/trackID=0`, as a client joins `trackID=0`
/// to `rtsp://h/bikes?denytcp`) gives its track part back to the path. Only a last part that
/// is a control of ours (`trackID=N`) or empty (a trailing `/`) is a track part: a value with a
/// `/` in it stays in the query (`sps_change_at_seam=cam/sub`, a sub stream's path).
pub fn split_query(path: &str, query: Option<&str>) -> (String, Option<String>) {
    match query {
        None => (path.to_owned(), None),
        Some(q) => match q.rsplit_once('/') {
            Some((q, track)) if track.is_empty() || track.starts_with("trackID=") => (
                format!("{}/{track}", path.trim_end_matches('/')),
                Some(q.to_owned()),
            ),
            _ => (path.to_owned(), Some(q.to_owned())),
        },
    }
}

/// Methods we answer (the `Public` header).
pub const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

fn response(status: StatusCode, cseq: Option<&str>) -> rtsp_types::ResponseBuilder {
    let mut b = Response::builder(Version::V1_0, status).header(headers::SERVER, "nvrkit-loopcam");
    if let Some(c) = cseq {
        b = b.header(headers::CSEQ, c);
    }
    b
}

/// The answer to a connection past a cap (it has sent no request yet, so no `CSeq`).
pub(crate) const BUSY: &[u8] =
    b"RTSP/1.0 503 Service Unavailable\r\nServer: nvrkit-loopcam\r\nContent-Length: 0\r\n\r\n";

/// `400 Bad Request`, without a `CSeq` (for a request whose `CSeq` could not be read).
pub fn bad_request() -> Response<Vec<u8>> {
    Response::builder(Version::V1_0, StatusCode::BadRequest).build(Vec::new())
}

/// `400 Bad Request` to a URL whose fault query cannot be used, saying why in the body.
fn bad_fault_query(e: &FaultError, cseq: Option<&str>) -> Response<Vec<u8>> {
    response(StatusCode::BadRequest, cseq)
        .header(headers::CONTENT_TYPE, "text/plain")
        .build(format!("{e}\n").into_bytes())
}

/// `400 Bad Request` for a path whose frame faults cannot be played on its clip, saying why
/// (the clip, and the rate it reaches or the clip that cannot follow).
fn refused_frame_faults(why: &str, cseq: Option<&str>) -> Response<Vec<u8>> {
    response(StatusCode::BadRequest, cseq)
        .header(headers::CONTENT_TYPE, "text/plain")
        .build(format!("{why}\n").into_bytes())
}

/// The SDP with each media's `a=control:trackID=N` made absolute, with the query last
/// (`rtsp://h:8554/bikes/trackID=0?denytcp`): a client joining a relative control URL to a
/// base with a query would put the track after the query.
fn absolute_controls(sdp: &str, base: &str, query: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 256);
    for line in sdp.split_inclusive("\r\n") {
        match line.strip_prefix("a=control:trackID=") {
            Some(rest) => {
                let track = rest.trim_end_matches("\r\n");
                out.push_str(&format!("a=control:{base}trackID={track}?{query}\r\n"));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// A response with no body.
fn plain(status: StatusCode, cseq: Option<&str>) -> Response<Vec<u8>> {
    response(status, cseq).build(Vec::new())
}

/// Serializes a response. rtsp-types joins repeated headers with commas (RFC 7826 §5.2); a 401's
/// two `WWW-Authenticate` challenges go on two lines instead, because clients (ffmpeg's
/// `ff_http_auth_handle_header`, for one) read one challenge per line.
pub fn serialize(r: &Response<Vec<u8>>) -> Vec<u8> {
    let mut w = Vec::with_capacity(256 + r.body().len());
    let fixed;
    let r = if u16::from(r.status()) == 200 && r.reason_phrase() != "OK" {
        // rtsp-types spells it "Ok"; RFC 2326 §7.1.1 says "OK".
        let mut copy = r.clone();
        copy.set_reason_phrase("OK");
        fixed = copy;
        &fixed
    } else {
        r
    };
    if r.write(&mut w).is_err() {
        return Vec::new();
    }
    if u16::from(r.status()) != 401 {
        return w;
    }
    let text = String::from_utf8_lossy(&w).into_owned();
    let head_end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
    let (head, body) = text.split_at(head_end);
    let head = head.replace(", Basic realm=", "\r\nWWW-Authenticate: Basic realm=");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Splits a request URI path into (stream name, track index).
pub fn split_path(path: &str) -> (String, Option<usize>) {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if let Some((name, last)) = p.rsplit_once('/')
        && let Some(n) = last
            .strip_prefix("trackID=")
            .or_else(|| last.strip_prefix("track"))
        && let Ok(i) = n.parse()
    {
        return (name.to_owned(), Some(i));
    }
    (p.to_owned(), None)
}

/// Parses a `Transport` header (RFC 2326 §12.39): the first spec we can serve.
pub fn choose_transport(value: &str, track: usize, udp: bool, tcp: bool) -> Option<Transport> {
    for spec in value.split(',') {
        let mut parts = spec.split(';').map(str::trim);
        let proto = parts.next().unwrap_or("").to_ascii_uppercase();
        let params: Vec<&str> = parts.collect();
        let param = |name: &str| {
            params.iter().find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
            })
        };
        let multicast = params.iter().any(|p| p.eq_ignore_ascii_case("multicast"));
        let pair = |v: &str| -> Option<(u16, u16)> {
            let (a, b) = match v.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let a: u16 = v.trim().parse().ok()?;
                    (a, a.checked_add(1)?)
                }
            };
            Some((a, b))
        };
        match proto.as_str() {
            "RTP/AVP/TCP" if tcp => {
                let (rtp, rtcp) = match param("interleaved") {
                    Some(v) => {
                        let (a, b) = pair(v)?;
                        (u8::try_from(a).ok()?, u8::try_from(b).ok()?)
                    }
                    None => {
                        let base = u8::try_from(track * 2).ok()?;
                        (base, base.checked_add(1)?)
                    }
                };
                return Some(Transport::Tcp { rtp, rtcp });
            }
            "RTP/AVP" | "RTP/AVP/UDP" if udp && !multicast => {
                if let Some((rtp, rtcp)) = param("client_port").and_then(pair) {
                    return Some(Transport::Udp { rtp, rtcp });
                }
            }
            _ => {}
        }
    }
    None
}

impl Connection {
    /// A new connection.
    pub fn new(config: ConnConfig) -> Self {
        Connection {
            config,
            session: None,
            playout: None,
            sdp_session_id: rand::random::<u32>().into(),
            auth_state: ConnAuth::default(),
            described: None,
            close_at: None,
        }
    }

    /// The session, once SETUP created one.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The connection settings.
    pub fn config(&self) -> &ConnConfig {
        &self.config
    }

    /// When `disconnect_every` closes this connection (counted from the first request that
    /// named the fault): the I/O layer closes it then, without BYE, as a camera that drops off.
    pub fn close_at(&self) -> Option<Instant> {
        self.close_at
    }

    /// Handles one request.
    pub fn handle(
        &mut self,
        req: &Request<Vec<u8>>,
        catalog: &dyn Catalog,
    ) -> (Response<Vec<u8>>, Action) {
        self.handle_at(req, catalog, Instant::now())
    }

    /// The faults a request to `name` runs under: the session's once there is one; else the
    /// path's own, with the URL's query (or that of the last DESCRIBE of the same path) over
    /// them.
    fn request_faults(
        &self,
        name: &str,
        asked: Option<&FaultSet>,
        catalog: &dyn Catalog,
    ) -> FaultSet {
        if let Some(s) = &self.session {
            return s.faults.clone();
        }
        let own = catalog
            .stream(name)
            .map(|s| s.faults.clone())
            .unwrap_or_default();
        let described = self
            .described
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f);
        match asked.or(described) {
            Some(q) => own.with(q),
            None => own,
        }
    }

    /// The credentials a request under `faults` must carry, and the one scheme it may use.
    fn auth_for(&self, faults: &FaultSet) -> Option<(Arc<Auth>, Option<AuthScheme>)> {
        let auth = self
            .config
            .auth
            .clone()
            .or_else(|| faults.auth.map(|_| fault_auth()))?;
        Some((auth, faults.auth))
    }

    /// `401` with the challenges of `auth` (only `scheme`'s, when a fault names one).
    fn unauthorized(
        auth: &Auth,
        scheme: Option<AuthScheme>,
        stale: bool,
        cseq: Option<&str>,
    ) -> Response<Vec<u8>> {
        let [digest, basic] = auth.challenges(stale);
        let mut b = response(StatusCode::Unauthorized, cseq);
        if scheme != Some(AuthScheme::Basic) {
            b = b.header(headers::WWW_AUTHENTICATE, digest);
        }
        let mut r = b.build(Vec::new());
        if scheme != Some(AuthScheme::Digest) {
            r.append_header(headers::WWW_AUTHENTICATE, basic);
        }
        r
    }

    /// `session_expires`: the session's time is up at `now`.
    fn session_expired(&self, now: Instant) -> bool {
        self.session.as_ref().is_some_and(|s| {
            s.faults
                .session_expires
                .is_some_and(|d| now.saturating_duration_since(s.created) >= d)
        })
    }

    /// [`Connection::handle`] at `now` (the I/O layer's clock, for the timed faults).
    pub fn handle_at(
        &mut self,
        req: &Request<Vec<u8>>,
        catalog: &dyn Catalog,
        now: Instant,
    ) -> (Response<Vec<u8>>, Action) {
        let cseq = req.header(&headers::CSEQ).map(|v| v.as_str().to_owned());
        let cseq = cseq.as_deref();
        if cseq.is_none() {
            return (plain(StatusCode::BadRequest, None), Action::None);
        }
        if req.version() != Version::V1_0 {
            return (
                plain(StatusCode::RTSPVersionNotSupported, cseq),
                Action::None,
            );
        }
        let (path, query) = match req.request_uri() {
            Some(u) => split_query(u.path(), u.query()),
            None => (String::new(), None),
        };
        let asked = match query.as_deref().map(str::parse::<FaultSet>) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => return (bad_fault_query(&e, cseq), Action::None),
        };
        let method = req.method().clone();
        let (name, _) = split_path(&path);
        let faults = self.request_faults(&name, asked.as_ref(), catalog);
        if let Some(d) = faults.disconnect_every
            && self.close_at.is_none()
        {
            self.close_at = Some(now + d);
        }
        if self.session_expired(now) {
            let (auth, scheme) = self
                .auth_for(&faults)
                .unwrap_or_else(|| (fault_auth(), None));
            return (Self::unauthorized(&auth, scheme, false, cseq), Action::None);
        }

        if method == Method::Options {
            return (
                response(StatusCode::Ok, cseq)
                    .header(headers::PUBLIC, PUBLIC)
                    .build(Vec::new()),
                Action::None,
            );
        }

        if let Some((auth, scheme)) = self.auth_for(&faults) {
            let given = req.header(&headers::AUTHORIZATION).map(|v| v.as_str());
            let uri = req.request_uri().map_or("", |u| u.as_str());
            // `auth=basic|digest`: the other scheme's credentials are refused.
            let wrong_scheme = given.is_some_and(|g| {
                let g = g.trim_start().to_ascii_lowercase();
                match scheme {
                    Some(AuthScheme::Basic) => !g.starts_with("basic"),
                    Some(AuthScheme::Digest) => !g.starts_with("digest"),
                    None => false,
                }
            });
            let verdict = if wrong_scheme {
                Verdict::Refused
            } else {
                auth.check(<&str>::from(&method), uri, given, &mut self.auth_state)
            };
            if verdict != Verdict::Granted {
                return (
                    Self::unauthorized(&auth, scheme, verdict == Verdict::Stale, cseq),
                    Action::None,
                );
            }
        }

        // A Session header naming another session than ours.
        let given_session = req
            .header(&headers::SESSION)
            .map(|v| v.as_str().split(';').next().unwrap_or("").trim().to_owned());
        if let (Some(given), Some(ours)) = (&given_session, &self.session)
            && given != &ours.id
        {
            return (plain(StatusCode::SessionNotFound, cseq), Action::None);
        }
        if given_session.is_some() && self.session.is_none() && method != Method::Setup {
            // GET_PARAMETER with a session after TEARDOWN is harmless; other methods are not.
            if !matches!(method, Method::GetParameter | Method::SetParameter) {
                return (plain(StatusCode::SessionNotFound, cseq), Action::None);
            }
        }

        if method == Method::Describe
            && faults.changes_frames()
            && let Err(why) = catalog.stream_with(&name, &faults)
        {
            // Refused before the client sets anything up.
            return (refused_frame_faults(&why, cseq), Action::None);
        }
        match method {
            Method::Describe => self.describe(&path, asked, catalog, cseq),
            Method::Setup => self.setup(req, &path, (faults, asked), catalog, cseq, now),
            Method::Play => match &mut self.session {
                None => (
                    plain(StatusCode::MethodNotValidInThisState, cseq),
                    Action::None,
                ),
                Some(s) => {
                    let (name, _) = split_path(&path);
                    if !name.is_empty() && name != s.stream.name {
                        return (plain(StatusCode::NotFound, cseq), Action::None);
                    }
                    s.state = State::Playing;
                    // The response is built by `play_response` once RTP-Info is known.
                    (plain(StatusCode::Ok, cseq), Action::Play)
                }
            },
            Method::Pause => match &mut self.session {
                None => (
                    plain(StatusCode::MethodNotValidInThisState, cseq),
                    Action::None,
                ),
                Some(s) => {
                    s.state = State::Ready;
                    if let Some(p) = self.playout.as_mut() {
                        p.pause();
                    }
                    let id = s.id.clone();
                    (
                        self.with_session(response(StatusCode::Ok, cseq), &id),
                        Action::Pause,
                    )
                }
            },
            Method::Teardown => match self.session.take() {
                None => (plain(StatusCode::Ok, cseq), Action::None),
                Some(s) => {
                    if let Some(p) = self.playout.as_mut() {
                        p.pause();
                    }
                    (
                        self.with_session(response(StatusCode::Ok, cseq), &s.id),
                        Action::Teardown,
                    )
                }
            },
            Method::GetParameter | Method::SetParameter => {
                let b = response(StatusCode::Ok, cseq);
                let r = match &self.session {
                    Some(s) => self.with_session(b, &s.id.clone()),
                    None => b.build(Vec::new()),
                };
                (r, Action::None)
            }
            Method::Announce | Method::Record => (
                response(StatusCode::MethodNotAllowed, cseq)
                    .header(headers::ALLOW, PUBLIC)
                    .build(Vec::new()),
                Action::None,
            ),
            _ => (plain(StatusCode::NotImplemented, cseq), Action::None),
        }
    }

    fn with_session(&self, b: rtsp_types::ResponseBuilder, id: &str) -> Response<Vec<u8>> {
        b.header(
            headers::SESSION,
            format!("{id};timeout={}", self.announced_timeout().as_secs()),
        )
        .build(Vec::new())
    }

    /// The session timeout the `Session` header announces: with `session_expires`, no longer
    /// than the expiry (rounded up), so a client sends its keepalive before it and gets the 401.
    fn announced_timeout(&self) -> Duration {
        let expires = self
            .session
            .as_ref()
            .and_then(|s| s.faults.session_expires)
            .map(|d| Duration::from_secs(d.as_millis().div_ceil(1000).max(1) as u64));
        match expires {
            Some(e) => e.min(self.config.session_timeout),
            None => self.config.session_timeout,
        }
    }

    /// The base URL of a stream, with a trailing slash (`Content-Base`).
    pub fn base_url(&self, name: &str) -> String {
        format!("{}://{}/{}/", self.config.scheme, self.config.host, name)
    }

    fn describe(
        &mut self,
        path: &str,
        asked: Option<FaultSet>,
        catalog: &dyn Catalog,
        cseq: Option<&str>,
    ) -> (Response<Vec<u8>>, Action) {
        let (name, _) = split_path(path);
        let Some(stream) = catalog.stream(&name) else {
            return (plain(StatusCode::NotFound, cseq), Action::None);
        };
        let mut body = sdp::describe(
            &stream.name,
            &self.config.server_ip,
            self.sdp_session_id,
            &stream.tracks,
        );
        let mut base = self.base_url(&stream.name);
        if let Some(q) = asked.as_ref().filter(|f| !f.is_empty()) {
            let q = url_query(q);
            body = absolute_controls(&body, &base, &q);
            base = format!("{base}?{q}");
        }
        self.described = Some((stream.name.clone(), asked.unwrap_or_default()));
        (
            response(StatusCode::Ok, cseq)
                .header(headers::CONTENT_TYPE, "application/sdp")
                .header(headers::CONTENT_BASE, base)
                .build(body.into_bytes()),
            Action::None,
        )
    }

    fn setup(
        &mut self,
        req: &Request<Vec<u8>>,
        path: &str,
        (faults, asked): (FaultSet, Option<FaultSet>),
        catalog: &dyn Catalog,
        cseq: Option<&str>,
        now: Instant,
    ) -> (Response<Vec<u8>>, Action) {
        let (name, track) = split_path(path);
        let stream = match catalog.stream_with(&name, &faults) {
            Ok(Some(s)) => s,
            Ok(None) => return (plain(StatusCode::NotFound, cseq), Action::None),
            Err(why) => return (refused_frame_faults(&why, cseq), Action::None),
        };
        // A SETUP of the aggregate URL of a one-track stream means that track.
        let track = match track {
            Some(t) => t,
            None if stream.tracks.len() == 1 => 0,
            None => {
                return (
                    plain(StatusCode::AggregateOperationNotAllowed, cseq),
                    Action::None,
                );
            }
        };
        if track >= stream.tracks.len() {
            return (plain(StatusCode::NotFound, cseq), Action::None);
        }
        if let Some(s) = &self.session {
            if s.stream.name != stream.name {
                return (
                    plain(StatusCode::AggregateOperationNotAllowed, cseq),
                    Action::None,
                );
            }
            if s.state == State::Playing {
                return (
                    plain(StatusCode::MethodNotValidInThisState, cseq),
                    Action::None,
                );
            }
            // One session, one fault set: a SETUP naming other faults cannot join it.
            if asked
                .as_ref()
                .is_some_and(|a| stream.faults.with(a) != s.faults)
            {
                return (
                    plain(StatusCode::AggregateOperationNotAllowed, cseq),
                    Action::None,
                );
            }
        }
        let Some(value) = req
            .header(&headers::TRANSPORT)
            .map(|v| v.as_str().to_owned())
        else {
            return (plain(StatusCode::UnsupportedTransport, cseq), Action::None);
        };
        // `denytcp` / `denyudp`: that transport is not offered, so a client asking only for it
        // gets 461.
        let udp = self.config.udp_ports.is_some() && !faults.deny_udp;
        let Some(transport) = choose_transport(&value, track, udp, !faults.deny_tcp) else {
            return (plain(StatusCode::UnsupportedTransport, cseq), Action::None);
        };
        let url_query = asked
            .or_else(|| {
                self.described
                    .as_ref()
                    .filter(|(n, _)| *n == stream.name)
                    .map(|(_, f)| f.clone())
            })
            .filter(|f| !f.is_empty())
            .map(|f| url_query(&f));
        let session = self.session.get_or_insert_with(|| Session {
            id: format!("{:016X}", rand::random::<u64>()),
            stream: stream.clone(),
            tracks: Vec::new(),
            state: State::Ready,
            faults,
            url_query,
            created: now,
        });
        let ssrc = match session.tracks.iter().find(|t| t.stream == track) {
            Some(t) => t.ssrc,
            None => rand::random(),
        };
        session.tracks.retain(|t| t.stream != track);
        session.tracks.push(TrackSetup {
            stream: track,
            transport,
            ssrc,
        });
        let reply = match transport {
            Transport::Tcp { rtp, rtcp } => {
                format!(
                    "RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp};ssrc={ssrc:08X};mode=\"PLAY\""
                )
            }
            Transport::Udp { rtp, rtcp } => {
                let (srtp, srtcp) = self.config.udp_ports.unwrap_or((0, 0));
                format!(
                    "RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port={srtp}-{srtcp};ssrc={ssrc:08X};mode=\"PLAY\""
                )
            }
        };
        let id = session.id.clone();
        let b = response(StatusCode::Ok, cseq).header(headers::TRANSPORT, reply);
        (self.with_session(b, &id), Action::None)
    }

    /// Starts (or resumes) playing at `first`, the keyframe of stream `master` the I/O layer
    /// sends next (through [`Connection::frame`]): answers the PLAY whose `CSeq` was `cseq`, with
    /// RTP-Info, and appends the sender reports that go before the first RTP packet to `out`.
    pub fn play(
        &mut self,
        cseq: &str,
        first: &Frame,
        master: usize,
        out: &mut impl Sink,
    ) -> Response<Vec<u8>> {
        let Some(s) = &self.session else {
            return plain(StatusCode::MethodNotValidInThisState, Some(cseq));
        };
        let previous = self.playout.take();
        let p = Playout::start(s, first, master, &self.config.rtp, previous);
        let resp = self.play_response(cseq, &p.rtp_info());
        if first.wall.is_some() {
            p.sender_reports(out);
        }
        self.playout = Some(p);
        resp
    }

    /// What the session sends, once PLAY started it.
    pub fn playout(&self) -> Option<&Playout> {
        self.playout.as_ref()
    }

    /// Playing (PLAY done, not paused).
    pub fn playing(&self) -> bool {
        self.playout.as_ref().is_some_and(Playout::playing)
    }

    /// Appends the packets of `f` to `out` (none unless playing).
    pub fn frame(&mut self, f: &Frame, out: &mut impl Sink) {
        if let Some(p) = self.playout.as_mut() {
            p.frame(f, out);
        }
    }

    /// [`Connection::frame`] at `now`, the I/O layer's clock (when `jitter` holds packets).
    pub fn frame_at(&mut self, f: &Frame, now: Instant, out: &mut impl Sink) {
        if let Some(p) = self.playout.as_mut() {
            p.frame_at(f, now, out);
        }
    }

    /// Appends the periodic sender reports to `out`, while playing.
    pub fn sender_reports(&self, out: &mut impl Sink) {
        if let Some(p) = self.playout.as_ref().filter(|p| p.playing()) {
            p.sender_reports(out);
        }
    }

    /// The reader skipped ahead to a keyframe (it lagged): see [`Playout::rejoin`].
    pub fn rejoin(&mut self) {
        if let Some(p) = self.playout.as_mut() {
            p.rejoin();
        }
    }

    /// Ends what the session sends (after TEARDOWN, or as the connection closes): appends
    /// every track's last sender report and BYE to `out`. Nothing once ended.
    pub fn bye(&mut self, out: &mut impl Sink) {
        if let Some(p) = self.playout.take() {
            p.bye(out);
        }
    }

    /// The PLAY response, given per set-up track the sequence number and RTP timestamp of the
    /// first packet sent.
    pub fn play_response(&self, cseq: &str, rtp_info: &[(usize, u16, u32)]) -> Response<Vec<u8>> {
        let Some(s) = &self.session else {
            return plain(StatusCode::MethodNotValidInThisState, Some(cseq));
        };
        let base = self.base_url(&s.stream.name);
        let query = s
            .url_query
            .as_ref()
            .map_or(String::new(), |q| format!("?{q}"));
        // The same URLs as the SDP's `a=control` (clients match them as strings).
        let info: Vec<String> = rtp_info
            .iter()
            .map(|(track, seq, ts)| {
                format!(
                    "url={base}{}{query};seq={seq};rtptime={ts}",
                    sdp::control(*track)
                )
            })
            .collect();
        let b = response(StatusCode::Ok, Some(cseq))
            .header(headers::RANGE, "npt=now-")
            .header(
                HeaderName::from_static_str("RTP-Info").expect("valid name"),
                info.join(","),
            );
        self.with_session(b, &s.id)
    }

    /// PLAY could not start (no keyframe arrived in time): the session is set up, not playing,
    /// so the client may retry (a previous PLAY's sender state is kept for the next one). The
    /// answer to the PLAY whose `CSeq` was `cseq`: `503 Service Unavailable`.
    pub fn play_failed(&mut self, cseq: &str) -> Response<Vec<u8>> {
        if let Some(s) = self.session.as_mut() {
            s.state = State::Ready;
        }
        if let Some(p) = self.playout.as_mut() {
            p.pause();
        }
        Response::builder(Version::V1_0, StatusCode::ServiceUnavailable)
            .header(headers::CSEQ, cseq)
            .build(Vec::new())
    }

    /// When the next packet a fault (`jitter`) holds is due: the I/O layer's timer.
    pub fn next_due(&self) -> Option<Instant> {
        self.playout.as_ref().and_then(Playout::next_due)
    }

    /// Appends the held packets due by `now`.
    pub fn release(&mut self, now: Instant, out: &mut impl Sink) {
        if let Some(p) = self.playout.as_mut() {
            p.release(now, out);
        }
    }

    /// What the I/O layer must do at `now` for the timed faults: `true` when
    /// `disconnect_every` is due, and the session is dropped without BYE (the connection
    /// just closes, as a camera that falls off the network).
    pub fn disconnect_due(&mut self, now: Instant) -> bool {
        if self.close_at.is_some_and(|t| now >= t) {
            self.playout = None;
            return true;
        }
        false
    }

    /// Forgets the session (the I/O layer closed it, e.g. on timeout).
    pub fn drop_session(&mut self) -> Option<Session> {
        self.session.take()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nvrkit_media::Demuxer;

    /// A catalog of one stream.
    pub(crate) struct One(pub(crate) Arc<StreamInfo>);
    impl Catalog for One {
        fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
            (name == self.0.name).then(|| self.0.clone())
        }
    }

    /// The embedded sample at `sample`.
    pub(crate) fn catalog() -> One {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        One(Arc::new(StreamInfo::new("sample", d.tracks().to_vec())))
    }

    fn conn(auth: Option<Auth>) -> Connection {
        conn_with(auth, RtpConfig::default())
    }

    /// A plain connection that offers UDP (server ports 8000-8001).
    pub(crate) fn conn_with(auth: Option<Auth>, rtp: RtpConfig) -> Connection {
        Connection::new(ConnConfig {
            auth: auth.map(Arc::new),
            udp_ports: Some((8000, 8001)),
            session_timeout: Duration::from_secs(60),
            scheme: "rtsp",
            host: "127.0.0.1:8554".into(),
            server_ip: "127.0.0.1".into(),
            rtp,
        })
    }

    /// Parses a request.
    pub(crate) fn req(text: &str) -> Request<Vec<u8>> {
        match rtsp_types::Message::<Vec<u8>>::parse(text.as_bytes())
            .unwrap()
            .0
        {
            rtsp_types::Message::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    fn status(r: &Response<Vec<u8>>) -> u16 {
        r.status().into()
    }

    fn header<'a>(r: &'a Response<Vec<u8>>, name: &HeaderName) -> Option<&'a str> {
        r.header(name).map(|v| v.as_str())
    }

    #[test]
    fn a_full_tcp_dialogue() {
        let cat = catalog();
        let mut c = conn(None);
        let (r, _) = c.handle(
            &req("OPTIONS rtsp://127.0.0.1:8554/sample RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            &cat,
        );
        assert_eq!(status(&r), 200);
        assert!(
            header(&r, &headers::PUBLIC)
                .unwrap()
                .contains("GET_PARAMETER")
        );

        let (r, _) = c.handle(&req("DESCRIBE rtsp://127.0.0.1:8554/sample RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"), &cat);
        assert_eq!(status(&r), 200);
        assert_eq!(
            header(&r, &headers::CONTENT_BASE),
            Some("rtsp://127.0.0.1:8554/sample/")
        );
        assert!(String::from_utf8_lossy(r.body()).contains("m=audio"));

        let (r, _) = c.handle(&req("SETUP rtsp://127.0.0.1:8554/sample/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"), &cat);
        assert_eq!(status(&r), 200);
        let session = header(&r, &headers::SESSION).unwrap().to_owned();
        assert!(session.ends_with(";timeout=60"));
        let id = session.split(';').next().unwrap().to_owned();

        let (r, _) = c.handle(&req(&format!("SETUP rtsp://127.0.0.1:8554/sample/trackID=1 RTSP/1.0\r\nCSeq: 4\r\nSession: {id}\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\r\n")), &cat);
        assert_eq!(status(&r), 200);
        assert!(
            header(&r, &headers::TRANSPORT)
                .unwrap()
                .contains("interleaved=2-3")
        );

        let (_, a) = c.handle(&req(&format!("PLAY rtsp://127.0.0.1:8554/sample/ RTSP/1.0\r\nCSeq: 5\r\nSession: {id}\r\nRange: npt=0.000-\r\n\r\n")), &cat);
        assert_eq!(a, Action::Play);
        let r = c.play_response("5", &[(0, 100, 4_294_967_000), (1, 7, 12)]);
        assert_eq!(
            header(&r, &headers::RANGE),
            Some("npt=now-"),
            "a live loop never seeks"
        );
        let info = header(&r, &HeaderName::from_static_str("RTP-Info").unwrap()).unwrap();
        assert_eq!(
            info,
            "url=rtsp://127.0.0.1:8554/sample/trackID=0;seq=100;rtptime=4294967000,url=rtsp://127.0.0.1:8554/sample/trackID=1;seq=7;rtptime=12"
        );

        let (r, _) = c.handle(&req("GET_PARAMETER rtsp://127.0.0.1:8554/sample RTSP/1.0\r\nCSeq: 6\r\nSession: WRONG\r\n\r\n"), &cat);
        assert_eq!(status(&r), 454);
        let (r, a) = c.handle(
            &req(&format!(
                "TEARDOWN rtsp://127.0.0.1:8554/sample RTSP/1.0\r\nCSeq: 7\r\nSession: {id}\r\n\r\n"
            )),
            &cat,
        );
        assert_eq!((status(&r), a), (200, Action::Teardown));
    }

    #[test]
    fn error_answers() {
        let cat = catalog();
        let mut c = conn(None);
        let cases = [
            ("DESCRIBE rtsp://h/nope RTSP/1.0\r\nCSeq: 1\r\n\r\n", 404),
            (
                "SETUP rtsp://h/sample/trackID=9 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n",
                404,
            ),
            ("PLAY rtsp://h/sample RTSP/1.0\r\nCSeq: 3\r\n\r\n", 455),
            (
                "SETUP rtsp://h/sample/trackID=0 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP;multicast\r\n\r\n",
                461,
            ),
            (
                "SETUP rtsp://h/sample/trackID=0 RTSP/1.0\r\nCSeq: 5\r\n\r\n",
                461,
            ),
            (
                "SETUP rtsp://h/sample RTSP/1.0\r\nCSeq: 6\r\nTransport: RTP/AVP/TCP\r\n\r\n",
                459,
            ),
            (
                "PLAY rtsp://h/sample RTSP/1.0\r\nCSeq: 7\r\nSession: 1234\r\n\r\n",
                454,
            ),
            ("RECORD rtsp://h/sample RTSP/1.0\r\nCSeq: 8\r\n\r\n", 405),
            ("OPTIONS rtsp://h/sample RTSP/1.0\r\n\r\n", 400),
        ];
        for (text, want) in cases {
            let (r, _) = c.handle(&req(text), &cat);
            assert_eq!(status(&r), want, "{text:?}");
        }
    }

    #[test]
    fn udp_setup_answers_server_ports() {
        let cat = catalog();
        let mut c = conn(None);
        let (r, _) = c.handle(&req("SETUP rtsp://h/sample/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"), &cat);
        assert_eq!(status(&r), 200);
        let t = header(&r, &headers::TRANSPORT).unwrap();
        assert!(
            t.contains("client_port=5000-5001;server_port=8000-8001"),
            "{t}"
        );
        assert_eq!(
            c.session().unwrap().tracks[0].transport,
            Transport::Udp {
                rtp: 5000,
                rtcp: 5001
            }
        );
    }

    #[test]
    fn auth_challenges_then_accepts() {
        let cat = catalog();
        let mut c = conn(Some(Auth::new("u", "p")));
        let (r, _) = c.handle(
            &req("DESCRIBE rtsp://h/sample RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            &cat,
        );
        assert_eq!(status(&r), 401);
        let wire = String::from_utf8(serialize(&r)).unwrap();
        let challenges: Vec<&str> = wire
            .lines()
            .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
            .collect();
        assert_eq!(challenges.len(), 2, "Digest and Basic on two lines: {wire}");
        assert!(challenges[0].starts_with("Digest realm=\"nvrkit loopcam\", nonce="));
        assert_eq!(challenges[1], "Basic realm=\"nvrkit loopcam\"");
        let (r, _) = c.handle(
            &req(
                "DESCRIBE rtsp://h/sample RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Basic dTpw\r\n\r\n",
            ),
            &cat,
        );
        assert_eq!(status(&r), 200);
    }

    #[test]
    fn paths_and_transports() {
        assert_eq!(split_path("/sample/trackID=1"), ("sample".into(), Some(1)));
        assert_eq!(split_path("/sample/"), ("sample".into(), None));
        assert_eq!(split_path("/a/b"), ("a/b".into(), None));
        assert_eq!(
            choose_transport("RTP/AVP;multicast, RTP/AVP/TCP;unicast", 1, true, true),
            Some(Transport::Tcp { rtp: 2, rtcp: 3 })
        );
        assert_eq!(
            choose_transport("RTP/AVP;unicast;client_port=5000", 0, true, true),
            Some(Transport::Udp {
                rtp: 5000,
                rtcp: 5001
            })
        );
        assert_eq!(
            choose_transport("RTP/AVP;unicast;client_port=5000-5001", 0, false, true),
            None
        );
        assert_eq!(
            choose_transport("RTP/AVP/TCP;interleaved=300-301", 0, true, true),
            None
        );
    }
}

//! ONVIF Profile S devices (feature `onvif`): each clip of a [`Server`] as its own device on its
//! own HTTP listener, and directed WS-Discovery ([`discovery`]).
//!
//! - One listener per device on consecutive ports from [`Config::listen`] (devices in clip-name
//!   order); a port that cannot be bound is a warning and that device is left out.
//! - Each listener serves `POST /onvif/device_service` (also `/onvif/media_service` and
//!   `/onvif/media2_service`, which the capabilities name as the same address): the Device,
//!   Media and Media2 actions of [`service`]; and `GET /snapshot/<name>.jpg`, the JPEG of the
//!   clip's latest keyframe ([`crate::snapshot`]; `GetSnapshotUri` names it), with
//!   `Cache-Control: no-cache` and an `ETag` that changes with the keyframe (`If-None-Match`
//!   gets `304`); `501` with the reason for a clip without one (H.265 without a sidecar JPEG),
//!   `503` before the first keyframe.
//! - A clip with a sub stream (`NAME/sub`, [`crate::substream`]) is one device with two
//!   profiles, `main` and `sub`, in Media and Media2; the sub stream is not a device of its
//!   own.
//! - The hardened server of [`nvrkit_net::http`] (connection caps, deadlines from a request's
//!   first byte); SOAP bodies above [`soap::MAX_SOAP_BODY`] are refused `413` unread.
//! - With credentials, every action but `GetSystemDateAndTime` needs a WS-UsernameToken
//!   `PasswordDigest` ([`auth`]) or HTTP Digest with `qop=auth`. The snapshot URL needs HTTP
//!   Digest with the same credentials, checked by [`crate::rtsp::auth`]: its `401` offers
//!   only Digest, and HTTP Basic (the password in clear over plain HTTP) is refused with that
//!   challenge unless [`Config::snapshot_basic`] opts in. That is what the clients do and
//!   cameras default to: onvif-zeep-async's `get_snapshot` sends Digest unless asked for
//!   Basic, Home Assistant tries Digest first and falls back to Basic, and Hikvision and Axis
//!   ship with Digest only, Basic a setting.
//!
//! ONVIF is not part of [`crate::server::Config`]: a [`Server`] serves RTSP only, and a caller
//! that wants devices starts [`Onvif`] beside it (loopcam does, by default).

pub mod auth;
pub mod discovery;
pub mod events;
pub mod service;
pub mod soap;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nvrkit_media::{CodecParams, WallTime};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::rtsp::auth::{Auth, ConnAuth, Verdict};
use crate::server::Server;
use crate::snapshot::{Snapshot, SnapshotError, Snapshotter};
use crate::{Error, Result};

/// The limits of the devices' HTTP listeners (re-exported so callers need not depend on
/// nvrkit-net).
pub use nvrkit_net::http::Config as HttpConfig;

/// Where and how the devices listen.
#[derive(Debug, Clone)]
pub struct Config {
    /// The first device's HTTP address; device `i` (in name order) listens on port + `i`
    /// (port 0: each on any free port). loopcam's `--onvif-listen`, default `0.0.0.0:8000`.
    pub listen: SocketAddr,
    /// Limits of the HTTP listeners (shared by all of them).
    pub http: nvrkit_net::http::Config,
    /// Require a WS-UsernameToken or HTTP Digest for this user name and password (loopcam's
    /// `--auth`).
    pub credentials: Option<(String, String)>,
    /// Answer directed WS-Discovery probes on this UDP address (`--discovery-listen`, default
    /// `0.0.0.0:3702`); `None`: no discovery.
    pub discovery_listen: Option<SocketAddr>,
    /// Also take HTTP Basic on the snapshot URL, and offer it after Digest (loopcam's
    /// `--snapshot-basic-auth`; off: Basic sends the password in clear over plain HTTP).
    pub snapshot_basic: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000),
            http: nvrkit_net::http::Config::default(),
            credentials: None,
            discovery_listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3702)),
            snapshot_basic: false,
        }
    }
}

/// The video codec a device announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264.
    H264,
    /// H.265.
    H265,
}

/// A device's video.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// Codec.
    pub codec: VideoCodec,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second (frames over presented duration).
    pub fps: f64,
}

/// One device: a clip served over RTSP.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// The clip (stream) name: its RTSP path.
    pub name: String,
    /// The RTSP port the clip is served on.
    pub rtsp_port: u16,
    /// Its video, when it has a video track.
    pub video: Option<Video>,
    /// Its sub stream (the second profile), when the clip has one.
    pub sub: Option<SubStream>,
    /// Where its snapshot URL's pictures come from; `None`: that URL answers `501`.
    pub snapshot: Option<Snapshotter>,
}

/// A device's sub stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SubStream {
    /// Its RTSP path (`NAME/sub`).
    pub path: String,
    /// Its video.
    pub video: Option<Video>,
}

/// The devices of a server's clips, in name order: one per clip, except that a sub stream
/// (`NAME/sub`) is the second profile of clip `NAME`'s device. Snapshots are decoded from the
/// clips (an H.265 clip has none: see [`devices_with`]).
pub fn devices(server: &Server) -> Vec<Device> {
    devices_with(server, |_| None)
}

/// [`devices`], with `sidecar(name)` the picture of an H.265 clip (see
/// [`crate::snapshot::load_sidecar`]).
pub fn devices_with(server: &Server, sidecar: impl Fn(&str) -> Option<Snapshot>) -> Vec<Device> {
    let rtsp_port = server.local_addr().port();
    let names = server.names();
    names
        .iter()
        .filter(|name| {
            crate::substream::main_of(name).is_none_or(|main| !names.iter().any(|n| n == main))
        })
        .map(|name| {
            let name = name.clone();
            let sub_path = crate::substream::sub_name(&name);
            let sub = server.clip(&sub_path).map(|clip| SubStream {
                video: video_of(&clip),
                path: sub_path,
            });
            let video = server.clip(&name).as_deref().and_then(video_of);
            let snapshot = server.clip(&name).and_then(|clip| {
                let ring = server.ring(&name)?;
                Some(Snapshotter::new(&clip, ring, sidecar(&name)))
            });
            Device {
                name,
                rtsp_port,
                video,
                sub,
                snapshot,
            }
        })
        .collect()
}

/// The video of a clip, as a device announces it.
fn video_of(clip: &crate::Clip) -> Option<Video> {
    clip.tracks().iter().find_map(|t| {
        let (codec, p) = match &t.params {
            CodecParams::H264(p) => (VideoCodec::H264, p),
            CodecParams::H265(p) => (VideoCodec::H265, p),
            _ => return None,
        };
        let fps = if t.duration > 0 {
            t.frames as f64 * f64::from(t.timescale) / t.duration as f64
        } else {
            0.0
        };
        Some(Video {
            codec,
            width: p.width,
            height: p.height,
            fps,
        })
    })
}

/// A device being served.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The device.
    pub device: Device,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

/// The running devices and discovery responder.
#[derive(Debug)]
pub struct Onvif {
    devices: Vec<Listening>,
    hubs: Vec<(String, Arc<events::Hub>)>,
    discovery: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

struct Ctx {
    device: Device,
    listen: SocketAddr,
    verifier: Option<auth::Verifier>,
    /// HTTP Digest (and Basic when `snapshot_basic`) for the snapshot URL and HTTP Digest for
    /// SOAP (the same credentials).
    http_auth: Option<Auth>,
    /// [`Config::snapshot_basic`].
    snapshot_basic: bool,
    events: Arc<events::Hub>,
    /// The long poll of each subscription now waiting, by subscription id: a new `PullMessages`
    /// ends the one before (answered empty), so a subscription holds at most one waiting
    /// connection (thousands of parallel pulls cannot pin the listener's connections). At most
    /// one entry per subscription (16 per device).
    polls: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    stop: watch::Receiver<bool>,
}

impl Onvif {
    /// Binds a listener per device (a port that cannot be bound is logged and skipped) and the
    /// discovery socket (likewise), and serves them until [`Onvif::shutdown`].
    pub async fn start(config: Config, devices: Vec<Device>) -> Result<Onvif> {
        let (stop, stop_rx) = watch::channel(false);
        let http = nvrkit_net::http::Server::new(config.http);
        let mut listening = Vec::new();
        let mut hubs = Vec::new();
        let mut tasks = Vec::new();
        for (i, device) in devices.into_iter().enumerate() {
            let mut addr = config.listen;
            if addr.port() != 0 {
                let Some(port) = u16::try_from(i)
                    .ok()
                    .and_then(|i| addr.port().checked_add(i))
                else {
                    tracing::warn!("ONVIF device {}: no port left above {addr}", device.name);
                    continue;
                };
                addr.set_port(port);
            }
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(
                        "ONVIF device {}: cannot listen on {addr}: {e}; not served",
                        device.name
                    );
                    continue;
                }
            };
            let addr = listener.local_addr().map_err(|source| Error::Io {
                what: "ONVIF listener address".into(),
                source,
            })?;
            let hub = Arc::new(events::Hub::new());
            hubs.push((device.name.clone(), Arc::clone(&hub)));
            let ctx = Arc::new(Ctx {
                device: device.clone(),
                listen: addr,
                verifier: config
                    .credentials
                    .as_ref()
                    .map(|(u, p)| auth::Verifier::new(u.clone(), p.clone())),
                http_auth: config
                    .credentials
                    .as_ref()
                    .map(|(u, p)| Auth::new(u.clone(), p.clone())),
                snapshot_basic: config.snapshot_basic,
                events: hub,
                polls: std::sync::Mutex::default(),
                stop: stop_rx.clone(),
            });
            let router = Router::new()
                .route("/onvif/device_service", post(soap))
                .route("/onvif/media_service", post(soap))
                .route("/onvif/media2_service", post(soap))
                .route(events::EVENT_SERVICE_PATH, post(soap))
                .route(
                    &format!("{}{{id}}", events::SUBSCRIPTION_PATH),
                    post(subscription),
                )
                .route("/snapshot/{file}", get(snapshot))
                .with_state(ctx);
            let http = http.clone();
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                http.serve(listener, router, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            }));
            listening.push(Listening { device, addr });
        }
        let mut discovery_addr = None;
        if let Some(addr) = config.discovery_listen {
            match tokio::net::UdpSocket::bind(addr).await {
                Ok(sock) => {
                    discovery_addr = sock.local_addr().ok();
                    let responder = discovery::Responder::new(
                        listening
                            .iter()
                            .map(|l| (l.device.clone(), l.addr))
                            .collect(),
                    );
                    let rx = stop_rx.clone();
                    tasks.push(tokio::spawn(responder.run(sock, rx)));
                }
                Err(e) => tracing::warn!("WS-Discovery: cannot listen on UDP {addr}: {e}"),
            }
        }
        Ok(Onvif {
            devices: listening,
            hubs,
            discovery: discovery_addr,
            stop,
            tasks,
        })
    }

    /// The devices served and their HTTP addresses, in name order.
    pub fn devices(&self) -> &[Listening] {
        &self.devices
    }

    /// The event state of the device of clip `name` (what scripted alarms publish motion to).
    pub fn events(&self, name: &str) -> Option<Arc<events::Hub>> {
        self.hubs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| Arc::clone(h))
    }

    /// The WS-Discovery UDP address, when it is bound.
    pub fn discovery_addr(&self) -> Option<SocketAddr> {
        self.discovery
    }

    /// Stops every listener; requests in flight finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The host a client used to reach us (its `Host` header, when it is a plausible host), else
/// the listener's address (loopback for a wildcard).
fn reached_host(headers: &HeaderMap, listen: SocketAddr) -> String {
    let from_header = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| nvrkit_net::plausible_host(h))
        .map(|h| {
            // Strip the port: `[v6]:port`, `host:port`, or a bare host.
            if let Some(rest) = h.strip_prefix('[') {
                match rest.split_once(']') {
                    Some((ip, _)) => format!("[{ip}]"),
                    None => h.to_owned(),
                }
            } else {
                match h.rsplit_once(':') {
                    Some((host, _)) if !host.contains(':') => host.to_owned(),
                    _ => h.to_owned(),
                }
            }
        });
    from_header.unwrap_or_else(|| host_of(listen.ip()))
}

/// `ip` as a URL host (IPv6 in brackets; loopback for a wildcard).
pub fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".into(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".into(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn soap_response(status: StatusCode, xml: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

fn fault_response(f: &service::Fault) -> Response {
    let status = if f.code == "env:Sender" {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    soap_response(status, soap::fault(f.code, f.subcode, &f.reason))
}

/// The client address the HTTP server recorded ([`nvrkit_net::http`] puts it in every
/// request's extensions).
fn client(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn soap(
    State(ctx): State<Arc<Ctx>>,
    uri: axum::http::Uri,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&ctx, client(&ext), &headers, body, uri.path(), None).await
}

/// A request posted to a subscription address.
async fn subscription(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = format!("{}{id}", events::SUBSCRIPTION_PATH);
    handle(&ctx, client(&ext), &headers, body, &path, Some(&id)).await
}

/// Whether the request's HTTP `Authorization` is a good Digest with `qop=auth` (Basic is not
/// taken over plain HTTP, nor a Digest without qop, which could be replayed as any action);
/// `Err(stale)` otherwise.
fn http_digest(ctx: &Ctx, headers: &HeaderMap, path: &str) -> Result<(), bool> {
    let (Some(digest), Some(value)) = (
        &ctx.http_auth,
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    ) else {
        return Err(false);
    };
    if !is_digest(value) || !crate::auth::digest_uses_qop(value) {
        return Err(false);
    }
    // Each HTTP request stands alone: no connection keeps a nonce alive.
    let mut conn = crate::auth::ConnAuth::default();
    match digest.check("POST", path, Some(value), &mut conn) {
        crate::auth::Verdict::Granted => Ok(()),
        crate::auth::Verdict::Stale => Err(true),
        crate::auth::Verdict::Refused => Err(false),
    }
}

/// Whether an `Authorization` value is of the Digest scheme.
fn is_digest(value: &str) -> bool {
    value
        .trim_start()
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("digest "))
}

async fn handle(
    ctx: &Ctx,
    from: Option<IpAddr>,
    headers: &HeaderMap,
    body: Body,
    path: &str,
    path_id: Option<&str>,
) -> Response {
    let bytes = match axum::body::to_bytes(body, soap::MAX_SOAP_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return soap_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                soap::fault(
                    "env:Sender",
                    "ter:InvalidArgs",
                    &format!(
                        "the request body is larger than {} bytes",
                        soap::MAX_SOAP_BODY
                    ),
                ),
            );
        }
    };
    let req = match soap::parse(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return fault_response(&service::Fault {
                code: "env:Sender",
                subcode: "ter:WellFormed",
                reason: e.to_string(),
            });
        }
    };
    let now = WallTime::now();
    if let Some(v) = &ctx.verifier
        && !service::is_public(&req)
    {
        let digest = http_digest(ctx, headers, path);
        if digest.is_err() {
            if req.token.is_none() {
                // No token: ask for HTTP Digest (ONVIF Core §5.9.1).
                return unauthorized(ctx, &req, digest == Err(true));
            }
            if let Err(e) = v.verify(req.token.as_ref(), now) {
                tracing::debug!("ONVIF {}: {} refused: {e}", ctx.device.name, req.action);
                return fault_response(&service::Fault {
                    code: "env:Sender",
                    subcode: "ter:NotAuthorized",
                    reason: format!("sender not authorized: {e}"),
                });
            }
        }
    }
    let at = service::Reached {
        host: reached_host(headers, ctx.listen),
        http_port: ctx.listen.port(),
    };
    if events::is_event_action(&req) {
        return match events::answer(&ctx.events, &at, from, &req, path_id, now) {
            Ok(events::Answer::Body(body)) => {
                soap_response(StatusCode::OK, soap::envelope("", &body))
            }
            Ok(events::Answer::Pull { id, limit, wait }) => long_poll(ctx, &id, limit, wait).await,
            Err(f) => fault_response(&f),
        };
    }
    match service::answer(&ctx.device, &at, &req, now) {
        Ok(body) => soap_response(StatusCode::OK, soap::envelope("", &body)),
        Err(f) => fault_response(&f),
    }
}

/// `401` with a Digest challenge and a `ter:NotAuthorized` fault.
fn unauthorized(ctx: &Ctx, req: &soap::Request, stale: bool) -> Response {
    tracing::debug!(
        "ONVIF {}: {} without credentials",
        ctx.device.name,
        req.action
    );
    let mut resp = soap_response(
        StatusCode::UNAUTHORIZED,
        soap::fault(
            "env:Sender",
            "ter:NotAuthorized",
            "sender not authorized: send a WS-UsernameToken or HTTP Digest credentials",
        ),
    );
    if let Some(d) = &ctx.http_auth {
        let [digest, _basic] = d.challenges(stale);
        if let Ok(v) = digest.parse() {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}

/// A `PullMessages`: the queued messages at once, else the first to come within `wait`
/// (an unsubscribe, the subscription's expiry or shutdown end it sooner, empty).
async fn long_poll(ctx: &Ctx, id: &str, limit: usize, wait: std::time::Duration) -> Response {
    let deadline = Instant::now() + wait;
    let mut changes = ctx.events.changes();
    let mut stop = ctx.stop.clone();
    // This poll's turn: a later pull of the same subscription takes it.
    let turn = {
        let mut polls = ctx.polls.lock().unwrap_or_else(|e| e.into_inner());
        let t = polls.get(id).map_or(0, |t| t.wrapping_add(1));
        polls.insert(id.to_owned(), t);
        t
    };
    let superseded = || {
        ctx.polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .is_some_and(|t| *t != turn)
    };
    let response = loop {
        let now = WallTime::now();
        let pulled = match ctx.events.pull(id, limit, now) {
            Ok(p) => p,
            Err(f) => break fault_response(&f),
        };
        let expired_in = pulled.expires.micros_since(now).max(0) as u64;
        let until = deadline.min(Instant::now() + std::time::Duration::from_micros(expired_in));
        if !pulled.messages.is_empty() || Instant::now() >= until || *stop.borrow() || superseded()
        {
            break soap_response(
                StatusCode::OK,
                soap::envelope("", &events::pull_response(&pulled, now)),
            );
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { break soap_response(StatusCode::OK, soap::envelope("", &events::pull_response(&pulled, now))) },
            _ = tokio::time::sleep_until(until) => {}
            _ = stop.wait_for(|s| *s) => {}
            // Woken now and then to see whether a later pull took the turn.
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
    };
    let mut polls = ctx.polls.lock().unwrap_or_else(|e| e.into_inner());
    if polls.get(id) == Some(&turn) {
        polls.remove(id);
    }
    response
}

fn text_response(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The `ETag` of a snapshot: the keyframe's place on the loop's timeline.
fn etag(s: &Snapshot) -> String {
    format!("\"{:x}\"", s.tag)
}

/// `GET /snapshot/<name>.jpg`: the JPEG of the device clip's latest keyframe.
async fn snapshot(
    State(ctx): State<Arc<Ctx>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    // The path is percent-decoded by the extractor: compare with the clip name as it is.
    if file.strip_suffix(".jpg") != Some(ctx.device.name.as_str()) {
        return text_response(StatusCode::NOT_FOUND, "no such snapshot\n".into());
    }
    if let Some(a) = &ctx.http_auth {
        let request_uri = format!(
            "http://{}{}",
            host_of(ctx.listen.ip()),
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let cleartext = !ctx.snapshot_basic && authorization.is_some_and(|v| !is_digest(v));
        let verdict = if cleartext {
            Verdict::Refused
        } else {
            a.check("GET", &request_uri, authorization, &mut ConnAuth::default())
        };
        if verdict != Verdict::Granted {
            let why = if cleartext {
                "HTTP Digest credentials needed: Basic sends the password in clear and is not taken here\n"
            } else {
                "credentials needed\n"
            };
            let mut r = text_response(StatusCode::UNAUTHORIZED, why.into());
            let [digest, basic] = a.challenges(verdict == Verdict::Stale);
            let offered = if ctx.snapshot_basic {
                vec![digest, basic]
            } else {
                vec![digest]
            };
            for c in offered {
                if let Ok(v) = c.parse() {
                    r.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
            return r;
        }
    }
    let Some(snapshots) = &ctx.device.snapshot else {
        return text_response(
            StatusCode::NOT_IMPLEMENTED,
            format!("device {} has no snapshot source\n", ctx.device.name),
        );
    };
    match snapshots.latest().await {
        Ok(s) => {
            let tag = etag(&s);
            let fresh = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
            // As go2rtc's and cameras' snapshot URLs: never served from a cache unchecked
            // (the picture changes every keyframe); the ETag lets a poller revalidate.
            let common = [
                (header::CACHE_CONTROL, "no-cache".to_owned()),
                (header::ETAG, tag),
            ];
            if fresh {
                (StatusCode::NOT_MODIFIED, common).into_response()
            } else {
                (
                    StatusCode::OK,
                    common,
                    [(header::CONTENT_TYPE, "image/jpeg".to_owned())],
                    Body::from(s.jpeg),
                )
                    .into_response()
            }
        }
        Err(e) => {
            let status = match e {
                SnapshotError::NoVideo { .. } | SnapshotError::NeedsSidecar { .. } => {
                    StatusCode::NOT_IMPLEMENTED
                }
                SnapshotError::NoKeyframe { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::warn!("snapshot of {}: {e}", ctx.device.name);
            }
            text_response(status, format!("{e}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header() {
        let listen: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(reached_host(&h, listen), "127.0.0.1");
        h.insert(header::HOST, "cam.local:8000".parse().unwrap());
        assert_eq!(reached_host(&h, listen), "cam.local");
        h.insert(header::HOST, "[fe80::1]:8000".parse().unwrap());
        assert_eq!(reached_host(&h, listen), "[fe80::1]");
        h.insert(header::HOST, "10.0.0.2".parse().unwrap());
        assert_eq!(reached_host(&h, listen), "10.0.0.2");
        h.insert(header::HOST, "a\"<b".parse().unwrap());
        assert_eq!(reached_host(&h, listen), "127.0.0.1");
    }
}

//! The NVR's HTTP API and its one web page.
//!
//! - `GET /` — the page: events with their snapshot and clip.
//! - `GET /api/cameras`, `GET /api/events`, `GET /api/events/{id}/snapshot`
//! - `POST /api/events` — an event in nvrkit-smtp's JSON schema (`docs/event-schema.json`), or the
//!   short form `{"camera": "demo", "kind": "motion"}` ([`CameraEvent::from_short_json`]).
//! - `GET /api/recordings?camera&from&to` — what the store holds (RFC 3339 times).
//! - `GET /api/export.mp4?camera&from&to` — one MP4 of the range, with `Range` support so a
//!   `<video>` element can seek.
//! - `GET /api/live/{camera}` — a WebSocket with the camera's live stream as fragmented MP4
//!   ([`crate::live`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use nvrkit_media::{CodecParams, WallTime};
use nvrkit_recorder::{CameraState, EventLog};
use nvrkit_smtp::{CameraEvent, MAX_UNTRUSTED_EVENT_JSON};
use nvrkit_store::query::{ByteRange, RangeQuery, byte_range};
use nvrkit_store::timeline::{day_range, merge_gap, merge_spans};
use nvrkit_store::{ExportFormat, Store};
use serde_json::json;

/// One camera as the API sees it: the recorder's own view of it.
pub use nvrkit_recorder::Camera as CameraEntry;

/// Shared state of the HTTP handlers.
#[derive(Debug)]
pub struct App {
    /// The cameras.
    pub cameras: Vec<CameraEntry>,
    /// Events seen.
    pub events: Arc<EventLog>,
    /// The store.
    pub store: Arc<Store>,
    /// Where POSTed events go (the same dispatcher as SMTP events).
    pub dispatch: tokio::sync::mpsc::Sender<CameraEvent>,
    /// Pre-event footage, µs.
    pub pre_us: i64,
    /// Post-event footage, µs.
    pub post_us: i64,
    /// `user:pass` required with Basic auth, if set.
    pub auth: Option<String>,
    /// The replicator, with `--replicate-to`.
    pub replication: Option<Arc<nvrkit_replicate::Handle>>,
    /// The last exports, kept so a player's `Range` requests for the same clip are slices of
    /// one build, and the page's few clips do not evict each other.
    pub last_export: tokio::sync::Mutex<ExportCache>,
    /// The largest whole-body export built in memory (`--max-export-size`): past it, 413.
    pub max_export_bytes: u64,
    /// The live viewers and their caps.
    pub live: crate::live::Live,
}

/// An export kept for `Range` requests: ((camera, from, to), the MP4 file).
pub type CachedExport = ((String, WallTime, WallTime), bytes::Bytes);

/// The exports kept: at most [`ExportCache::ENTRIES`], and at most `--max-export-size` bytes in
/// all; the least recently used goes first.
#[derive(Debug, Default)]
pub struct ExportCache {
    /// Most recently used last.
    entries: std::collections::VecDeque<CachedExport>,
}

impl ExportCache {
    /// Exports kept at most.
    pub const ENTRIES: usize = 4;

    /// The export of `key`, if kept (it becomes the most recently used).
    pub fn get(&mut self, key: &(String, WallTime, WallTime)) -> Option<bytes::Bytes> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        let e = self.entries.remove(i)?;
        let b = e.1.clone();
        self.entries.push_back(e);
        Some(b)
    }

    /// Keeps an export, evicting the least recently used past [`ExportCache::ENTRIES`] or
    /// `max_bytes` in all (one larger than `max_bytes` is not kept).
    pub fn put(&mut self, key: (String, WallTime, WallTime), body: bytes::Bytes, max_bytes: u64) {
        if body.len() as u64 > max_bytes {
            return;
        }
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push_back((key, body));
        while self.entries.len() > Self::ENTRIES || self.bytes() > max_bytes {
            self.entries.pop_front();
        }
    }

    fn bytes(&self) -> u64 {
        self.entries.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// The longest range one export may cover: the faststart MP4 is built in memory.
const MAX_EXPORT_US: i64 = 3600 * 1_000_000;

/// The longest range of a streamed export (`stream=1`: fragmented, one GOP in memory at a time).
const MAX_STREAMED_EXPORT_US: i64 = 24 * 3600 * 1_000_000;

/// Chunks (GOPs) of a streamed export read ahead of a slow client.
const STREAM_AHEAD: usize = 4;

/// A streamed export whose client takes longer than this to take one more chunk is ended.
const STREAM_SEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/cameras", get(cameras))
        .route("/api/events", get(list_events).post(post_event))
        .route("/api/events/{id}/snapshot", get(snapshot))
        .route("/api/events/{id}/snapshots/{n}", get(snapshot_n))
        .route("/api/recordings", get(recordings))
        .route("/api/export.mp4", get(export))
        .route("/api/live/{camera}", get(live))
        .route("/api/replication", get(replication))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            basic_auth,
        ))
        .with_state(app)
}

async fn basic_auth(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(creds) = &app.auth {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        );
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == want);
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"nvr\"")],
                "authentication required\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn bad(status: StatusCode, what: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": what.into() }))).into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

fn video_codec(state: &CameraState) -> Option<&'static str> {
    let tracks = state.tracks.lock().ok()?.clone()?;
    tracks.iter().find_map(|t| match t.params {
        CodecParams::H264(_) => Some("h264"),
        CodecParams::H265(_) => Some("hevc"),
        _ => None,
    })
}

async fn cameras(State(app): State<Arc<App>>) -> Response {
    let list: Vec<serde_json::Value> = app
        .cameras
        .iter()
        .map(|c| {
            let ring = c.ring.stats();
            let open = c.recorder.open.lock().ok().and_then(|o| *o);
            json!({
                "name": c.name,
                "url": c.url,
                "connected": c.state.connected.load(Ordering::Relaxed),
                "codec": video_codec(&c.state),
                "frames": c.state.frames.load(Ordering::Relaxed),
                "sessions": c.state.sessions.load(Ordering::Relaxed),
                "viewers": app.live.viewers(&c.name),
                "last_error": c.state.last_error.lock().ok().and_then(|e| e.clone()),
                "ring": {
                    "frames": ring.frames,
                    "bytes": ring.bytes,
                    "oldest": ring.oldest.map(|t| t.to_rfc3339()),
                    "newest": ring.newest.map(|t| t.to_rfc3339()),
                },
                "recorder": {
                    "clips": c.recorder.clips.load(Ordering::Relaxed),
                    "frames": c.recorder.frames.load(Ordering::Relaxed),
                    "errors": c.recorder.errors.load(Ordering::Relaxed),
                    "last_latency_ms": c.recorder.last_latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    "recording": open.map(|(from, until)| json!({
                        "from": from.to_rfc3339(),
                        "until": until.map(|u| u.to_rfc3339()),
                    })),
                },
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// `GET /api/live/{camera}`: 404 for an unknown camera, 503 over the viewer caps (per camera,
/// in all, and per client address), else the
/// WebSocket upgrade (a plain GET without one is 400, from axum).
async fn live(
    State(app): State<Arc<App>>,
    Path(camera): Path<String>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let Some(cam) = app.cameras.iter().find(|c| c.name == camera) else {
        return bad(StatusCode::NOT_FOUND, format!("no camera {camera:?}"));
    };
    match app.live.admit(&camera, peer.ip()) {
        Ok(slot) => app.live.upgrade(ws, cam.clone(), slot),
        Err(why) => bad(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn replication(State(app): State<Arc<App>>) -> Response {
    let Some(r) = &app.replication else {
        return axum::Json(json!({ "target": null })).into_response();
    };
    let s = r.stats();
    let names = ["event", "motion", "continuous"];
    let by = |v: [u64; 3]| -> serde_json::Value {
        names
            .iter()
            .zip(v)
            .map(|(n, x)| ((*n).to_owned(), json!(x)))
            .collect()
    };
    axum::Json(json!({
        "target": r.target(),
        "running": !r.is_finished(),
        "elapsed_s": s.elapsed.as_secs_f64(),
        "bytes_sent": s.bytes_sent,
        "done": by(s.done),
        "done_bytes": by(s.done_bytes),
        "pending": by(s.pending),
        "pending_bytes": by(s.pending_bytes),
        "skipped": s.skipped,
        "lost": s.lost,
        "failed": s.failed,
    }))
    .into_response()
}

async fn list_events(State(app): State<Arc<App>>) -> Response {
    let list: Vec<serde_json::Value> = app
        .events
        .list()
        .into_iter()
        .map(|e| {
            let from = e.received_at.add_micros(-app.pre_us);
            let to = e.received_at.add_micros(app.post_us);
            let clips: Vec<serde_json::Value> = e
                .cameras
                .iter()
                .map(|c| {
                    let codec = app
                        .cameras
                        .iter()
                        .find(|x| &x.name == c)
                        .and_then(|x| video_codec(&x.state));
                    json!({
                        "camera": c,
                        "from": from.to_rfc3339(),
                        "to": to.to_rfc3339(),
                        "codec": codec,
                        "url": format!(
                            "/api/export.mp4?camera={}&from={}&to={}",
                            urlencode(c), urlencode(&from.to_rfc3339()), urlencode(&to.to_rfc3339())
                        ),
                    })
                })
                .collect();
            json!({
                "id": e.id,
                "received_at": e.received_at.to_rfc3339(),
                "cameras": e.cameras,
                "reason": e.reason,
                "kind": e.json.get("kind"),
                "event": e.json,
                "snapshot": (!e.snapshots.is_empty())
                    .then(|| format!("/api/events/{}/snapshots/0", e.id)),
                "snapshots": (0..e.snapshots.len())
                    .map(|n| format!("/api/events/{}/snapshots/{n}", e.id))
                    .collect::<Vec<_>>(),
                "dropped_snapshots": e.dropped_snapshots,
                "clips": clips,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET /api/events/{id}/snapshot`: the first snapshot (kept for older clients).
async fn snapshot(State(app): State<Arc<App>>, Path(id): Path<u64>) -> Response {
    snapshot_n(State(app), Path((id, 0))).await
}

/// `GET /api/events/{id}/snapshots/{n}`: snapshot `n` of the event, read from disk.
async fn snapshot_n(State(app): State<Arc<App>>, Path((id, n)): Path<(u64, usize)>) -> Response {
    let events = app.events.clone();
    match tokio::task::spawn_blocking(move || events.snapshot(id, n)).await {
        Ok(Some((content_type, data))) => (
            [
                (header::CONTENT_TYPE, content_type),
                // Stored once, never changed.
                (
                    header::CACHE_CONTROL,
                    "private, max-age=86400, immutable".to_owned(),
                ),
            ],
            data,
        )
            .into_response(),
        _ => bad(StatusCode::NOT_FOUND, "no snapshot"),
    }
}

/// `POST /api/events`: untrusted JSON ([`CameraEvent::from_untrusted_json`]); over
/// [`MAX_UNTRUSTED_EVENT_JSON`] bytes is 413, anything else it refuses 400, both saying why. What
/// is kept of the event is bounded by the dispatcher ([`nvrkit_recorder::events::note`]), as for a mail.
///
/// The body is read whole up to [`crate::guard::MAX_BODY`] before the parser's limit applies:
/// a refusal sent before the body is read would end in a reset that can lose the answer.
async fn post_event(
    State(app): State<Arc<App>>,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body over the limit of {} bytes (event JSON: {MAX_UNTRUSTED_EVENT_JSON})",
                    crate::guard::MAX_BODY
                ),
            );
        }
        Err(e) => return bad(e.status(), e.body_text()),
    };
    let mut event = match CameraEvent::from_untrusted_json(&body) {
        Ok(e) => e,
        Err(e @ nvrkit_smtp::Error::EventJsonTooLarge { .. }) => {
            return bad(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // The recording window is placed by the NVR's clock, never the sender's.
    event.received_at = WallTime::now();
    match app.dispatch.send(event).await {
        Ok(()) => (StatusCode::ACCEPTED, axum::Json(json!({"accepted": true}))).into_response(),
        Err(_) => bad(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

/// The longest range `/api/recordings` covers: the page asks for one day; a month is what a
/// script may page through at once (the store's index is scanned over the range).
const MAX_RECORDINGS_US: i64 = 31 * 24 * 3600 * 1_000_000;

/// The most spans, and the most tags, one `/api/recordings` answer lists (then `truncated`).
const MAX_LISTED: usize = 10_000;

/// `GET /api/recordings?camera&from&to` or `?camera&day&tz`: the camera's recorded spans (the
/// store's contiguous runs, and with `gap=SECONDS` those closer than that merged into one),
/// its tags, and the events the NVR holds for it in the range. At most 31 days (else 400), and
/// at most [`MAX_LISTED`] spans and tags (`"truncated": true` when more were cut).
async fn recordings(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    // Untrusted input, bounded and checked by the store's parser; refused with 400 saying why.
    let raw = q.as_deref().unwrap_or("");
    let rebuilt;
    let raw = match day_range(raw) {
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(None) => raw,
        Ok(Some((from, to))) => {
            if url::form_urlencoded::parse(raw.as_bytes()).any(|(k, _)| k == "from" || k == "to") {
                return bad(StatusCode::BAD_REQUEST, "give day or from/to, not both");
            }
            let camera: Vec<_> = url::form_urlencoded::parse(raw.as_bytes())
                .filter(|(k, _)| k == "camera")
                .map(|(_, v)| format!("camera={}", urlencode(&v)))
                .collect();
            rebuilt = format!(
                "{}&from={}&to={}",
                camera.join("&"),
                urlencode(&from.to_rfc3339()),
                urlencode(&to.to_rfc3339())
            );
            &rebuilt
        }
    };
    let RangeQuery { camera, from, to } = match RangeQuery::parse(raw) {
        Ok(x) => x,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let gap_us = match merge_gap(raw) {
        Ok(g) => g,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let query = RangeQuery { camera, from, to };
    if let Err(e) = query.check_span(MAX_RECORDINGS_US) {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("{e}: /api/recordings covers at most 31 days (ask day by day)"),
        );
    }
    let RangeQuery { camera, from, to } = query;
    // The store's index is read under its lock, and the event list under its own: on the
    // blocking pool, so a long scan never holds a runtime worker that ingest, live view and
    // SMTP need.
    let work = {
        let (app, camera) = (app.clone(), camera.clone());
        tokio::task::spawn_blocking(move || {
            let spans = merge_spans(app.store.recordings(&camera, from, to), gap_us);
            let tags = app.store.tags(&camera, from, to);
            let events: Vec<_> = app
                .events
                .list()
                .into_iter()
                .filter(|e| {
                    e.cameras.contains(&camera) && from <= e.received_at && e.received_at < to
                })
                .collect();
            (spans, tags, events)
        })
    };
    let Ok((spans, tags, events)) = work.await else {
        return bad(StatusCode::INTERNAL_SERVER_ERROR, "the store scan failed");
    };
    let truncated = spans.len() > MAX_LISTED || tags.len() > MAX_LISTED;
    let list: Vec<serde_json::Value> = spans
        .into_iter()
        .take(MAX_LISTED)
        .map(|r| {
            json!({
                "start": r.start.to_rfc3339(),
                "end": r.end.to_rfc3339(),
                "segments": r.segments,
                "bytes": r.bytes,
                "tags": r.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let tags: Vec<serde_json::Value> = tags
        .into_iter()
        .take(MAX_LISTED)
        .map(|t| {
            json!({
                "tag": t.tag.as_str(),
                "from": WallTime::from_micros(t.from_us).to_rfc3339(),
                "to": WallTime::from_micros(t.to_us).to_rfc3339(),
                "note": t.note,
            })
        })
        .collect();
    let events: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.received_at.to_rfc3339(),
                "kind": e.json.get("kind"),
            })
        })
        .collect();
    axum::Json(json!({
        "camera": camera,
        "from": from.to_rfc3339(),
        "to": to.to_rfc3339(),
        "recordings": list,
        "tags": tags,
        "events": events,
        "truncated": truncated,
    }))
    .into_response()
}

async fn export(
    State(app): State<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let raw = q.as_deref().unwrap_or("");
    let query = match RangeQuery::parse(raw) {
        Ok(x) => x,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if url::form_urlencoded::parse(raw.as_bytes()).any(|(k, v)| k == "stream" && v == "1") {
        return export_streamed(&app, query).await;
    }
    if let Err(e) = query.check_span(MAX_EXPORT_US) {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("{e}: an export covers at most one hour (use segstore export for more)"),
        );
    }
    let RangeQuery { camera, from, to } = query;
    let key = (camera.clone(), from, to);
    // One build per clip: a <video> element asks for many ranges of the same file. The lock is
    // held while building, so concurrent requests for the same clip wait for one build.
    let mut cache = app.last_export.lock().await;
    let started = Instant::now();
    let body = match cache.get(&key) {
        Some(b) => b,
        None => {
            let store = app.store.clone();
            let cam = camera.clone();
            let cap = app.max_export_bytes;
            let built = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Build> {
                let x = store.export(&cam, from, to, ExportFormat::Mp4)?;
                // Refused before anything is read: the estimate is the segments' bytes over
                // the range, which the MP4 exceeds only by its index.
                if x.estimated_bytes() > cap {
                    return Err(Build::TooLarge(x.estimated_bytes()));
                }
                let mut out = Capped {
                    out: Vec::new(),
                    cap: cap.saturating_add(cap / 4),
                };
                x.write_to(&mut out, |_| {})?;
                Ok(out.out)
            })
            .await;
            let b = match built {
                Ok(Ok(b)) => bytes::Bytes::from(b),
                Ok(Err(Build::TooLarge(n))) => return export_too_large(n, cap),
                Ok(Err(Build::Store(nvrkit_store::Error::Io { source, .. })))
                    if source.kind() == std::io::ErrorKind::FileTooLarge =>
                {
                    return export_too_large(cap.saturating_add(cap / 4), cap);
                }
                Ok(Err(Build::Store(e))) => return bad(StatusCode::NOT_FOUND, format!("{e}")),
                Err(e) => return bad(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
            };
            cache.put(key, b.clone(), cap);
            b
        }
    };
    drop(cache);
    tracing::debug!(
        camera,
        bytes = body.len(),
        ms = started.elapsed().as_millis() as u64,
        "export"
    );
    let name = format!(
        "{}-{}.mp4",
        camera.replace(['/', '"', '\\'], "_"),
        from.to_compact()
    );
    let total = body.len();
    let mut resp_headers = HeaderMap::new();
    resp_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    resp_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        resp_headers.insert(header::CONTENT_DISPOSITION, v);
    }
    // RFC 9110 §14: one byte range (what players ask for); anything else gets the whole body.
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(ByteRange::Whole, |v| byte_range(v, total as u64));
    match range {
        ByteRange::Part { first, last } => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
                resp_headers.insert(header::CONTENT_RANGE, v);
            }
            // `byte_range` keeps `first <= last < total`, and `total` is a `usize`.
            let slice = body.slice(first as usize..=last as usize);
            (StatusCode::PARTIAL_CONTENT, resp_headers, Body::from(slice)).into_response()
        }
        ByteRange::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                resp_headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, resp_headers).into_response()
        }
        ByteRange::Whole => (StatusCode::OK, resp_headers, Body::from(body)).into_response(),
    }
}

/// Why a whole-body export was not built.
enum Build {
    /// The store's estimate of its bytes, over the cap.
    TooLarge(u64),
    /// The store's error.
    Store(nvrkit_store::Error),
}

impl From<nvrkit_store::Error> for Build {
    fn from(e: nvrkit_store::Error) -> Build {
        Build::Store(e)
    }
}

/// A `Vec` that refuses to grow past `cap` bytes (`FileTooLarge`): the estimate bounds what an
/// export holds in memory, this bounds what it can turn out to be.
struct Capped {
    out: Vec<u8>,
    cap: u64,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() as u64 + buf.len() as u64 > self.cap {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 413 for an export of about `bytes`, over `cap`: saying what to do instead.
fn export_too_large(bytes: u64, cap: u64) -> Response {
    bad(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "this export would be about {bytes} bytes, over the limit of {cap} (--max-export-size) \
             for one built in memory: add stream=1 (a fragmented MP4 sent as it is read), ask \
             for a shorter range, or use segstore export"
        ),
    )
}

/// `GET /api/export.mp4?camera&from&to&stream=1`: a fragmented MP4 sent as it is read from the
/// store (no `Content-Length`, no `Range`), for the timeline's "play from here". At most
/// [`STREAM_AHEAD`] GOPs are read ahead of the client, which must take each within
/// [`STREAM_SEND_DEADLINE`].
async fn export_streamed(app: &App, query: RangeQuery) -> Response {
    if let Err(e) = query.check_span(MAX_STREAMED_EXPORT_US) {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("{e}: a streamed export covers at most 24 hours"),
        );
    }
    let RangeQuery { camera, from, to } = query;
    // Opening reads the index under the store's lock and the first segment's moov: off the
    // runtime's workers.
    let store = app.store.clone();
    let opened = tokio::task::spawn_blocking(move || {
        store.export(&camera, from, to, ExportFormat::Fragmented)
    })
    .await;
    let export = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return bad(StatusCode::NOT_FOUND, format!("{e}")),
        Err(e) => return bad(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(STREAM_AHEAD);
    tokio::spawn(async move {
        let mut export = Some(export);
        while let Some(mut x) = export.take() {
            // Each chunk is read on the blocking pool; the export comes back with it.
            let Ok((chunk, x)) = tokio::task::spawn_blocking(move || (x.next(), x)).await else {
                return;
            };
            let Some(chunk) = chunk else { return };
            let chunk = chunk.map_err(std::io::Error::other);
            let failed = chunk.is_err();
            // A client that stops reading is dropped after the deadline; one that went away
            // stops the reading at once.
            match tokio::time::timeout(STREAM_SEND_DEADLINE, tx.send(chunk)).await {
                Ok(Ok(())) if !failed => export = Some(x),
                _ => return,
            }
        }
    });
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (
        [(header::CONTENT_TYPE, "video/mp4")],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// M7 (review-nvr.md): a few clips are kept (the page's event list asks for several),
    /// least recently used out first, bounded in bytes.
    #[test]
    fn the_export_cache_keeps_a_few_clips_within_its_bytes() {
        let key = |n: i64| {
            (
                "cam".to_owned(),
                WallTime::from_micros(n),
                WallTime::from_micros(n + 1),
            )
        };
        let body = |len: usize| bytes::Bytes::from(vec![0u8; len]);
        let mut c = ExportCache::default();
        for n in 0..4 {
            c.put(key(n), body(10), 100);
        }
        assert!(c.get(&key(0)).is_some(), "four clips are kept");
        c.put(key(4), body(10), 100);
        assert!(c.get(&key(1)).is_none(), "the least recently used went");
        assert!(c.get(&key(0)).is_some() && c.get(&key(4)).is_some());
        c.put(key(5), body(95), 100);
        assert_eq!(c.entries.len(), 1, "bounded in bytes");
        c.put(key(6), body(101), 100);
        assert!(c.get(&key(6)).is_none(), "one over the bytes is not kept");
        assert!(c.get(&key(5)).is_some());
    }
}

//! A hardened HTTP/1.1 server for an axum [`Router`] (feature `http`), for tileserve's and
//! nvr's listeners, which face untrusted devices:
//!
//! - a cap on open connections in total and per client address ([`ConnLimiter`]); one more is
//!   answered `503 Service Unavailable` with `Connection: close`, written directly, and a log line;
//! - a request (its header and any body) must be complete within [`Config::request_timeout`]
//!   of its *first* byte, so neither a half-sent header (slowloris) nor one byte every so often
//!   (trickle) keeps a connection;
//! - a keep-alive connection with no request for [`Config::idle_timeout`] is closed;
//! - every response carries `X-Content-Type-Options: nosniff`;
//! - graceful shutdown: the listener stops, idle connections close, requests in flight finish;
//! - each request carries its client's address as axum's `ConnectInfo<SocketAddr>`;
//! - HTTP upgrades (WebSocket) are served: the upgraded stream leaves the server's connection
//!   count and deadlines, so a handler that upgrades must cap and time its streams itself.
//!
//! hyper's own `header_read_timeout` counts from the moment a connection starts waiting for a
//! request, not from the first byte, so it cannot express both deadlines; it is set to their sum
//! as a backstop, and a watchdog per connection enforces [`MessageClock`]'s deadlines.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::Service;

use crate::refuse::Refuser;
use crate::{ConnLimiter, MessageClock, Permit};

/// The limits of a [`Server`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most connections open at once (`--max-conns`).
    pub max_conns: usize,
    /// Most connections open at once from one client address, IPv6 by /64
    /// (`--max-conns-per-addr`; `None`: no per-address cap).
    pub max_conns_per_addr: Option<usize>,
    /// A request's header (and body) must be complete this long after its first byte
    /// (`--request-timeout`).
    pub request_timeout: Duration,
    /// A connection with no request for this long is closed (`--idle-timeout`).
    pub idle_timeout: Duration,
}

impl Config {
    /// Default of [`Config::max_conns`].
    pub const DEFAULT_MAX_CONNS: usize = 1024;
    /// Default of [`Config::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`Config::idle_timeout`].
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_conns: Config::DEFAULT_MAX_CONNS,
            max_conns_per_addr: None,
            request_timeout: Config::DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: Config::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The largest request header hyper buffers (its read buffer): bounds a connection's memory.
const MAX_BUF: usize = 64 * 1024;

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 34\r\nX-Content-Type-Options: nosniff\r\n\r\ntoo many connections, retry later\n";

/// A source of accepted connections for [`Server::serve_incoming`]: a [`TcpListener`], or a
/// thread's share of connections accepted elsewhere (tileserve's acceptor thread).
pub trait Accept: Send {
    /// The next connection; `None` when there will be no more.
    fn accept(&mut self) -> impl Future<Output = Option<(TcpStream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    async fn accept(&mut self) -> Option<(TcpStream, SocketAddr)> {
        loop {
            match TcpListener::accept(self).await {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off, go on.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Accept for tokio::sync::mpsc::Receiver<(TcpStream, SocketAddr)> {
    async fn accept(&mut self) -> Option<(TcpStream, SocketAddr)> {
        self.recv().await
    }
}

impl Accept for tokio::sync::mpsc::UnboundedReceiver<(TcpStream, SocketAddr)> {
    async fn accept(&mut self) -> Option<(TcpStream, SocketAddr)> {
        self.recv().await
    }
}

/// The hardened server. Cheap to clone: clones share one [`ConnLimiter`], so the caps hold
/// across every listener and thread that serves with them.
#[derive(Clone, Debug)]
pub struct Server {
    config: Config,
    refuser: Arc<Refuser>,
}

impl Server {
    /// A server with these limits.
    pub fn new(config: Config) -> Server {
        Server {
            config,
            refuser: Arc::new(Refuser::new(
                ConnLimiter::new(config.max_conns, config.max_conns_per_addr),
                BUSY,
            )),
        }
    }

    /// Its limits.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its connection limiter (open and refused counts).
    pub fn limiter(&self) -> &Arc<ConnLimiter> {
        self.refuser.limiter()
    }

    /// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
    /// requests in flight finish and returns when every connection has closed.
    pub async fn serve(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        self.serve_incoming(listener, router, shutdown).await;
    }

    /// [`Server::serve`] for connections from any [`Accept`] source; also returns when the
    /// source has no more connections and the open ones have closed.
    pub async fn serve_incoming(
        &self,
        mut incoming: impl Accept,
        router: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Each connection holds a clone; recv() returns None once all have ended.
        let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let next = tokio::select! {
                next = incoming.accept() => next,
                () = &mut shutdown => break,
            };
            let Some((tcp, peer)) = next else { break };
            match self.limiter().try_acquire(peer.ip()) {
                Ok(permit) => {
                    let conn = Connection {
                        config: self.config,
                        router: router.clone(),
                        stop: stop_rx.clone(),
                        _alive: alive_tx.clone(),
                        _permit: permit,
                    };
                    tokio::spawn(conn.run(tcp, peer));
                }
                Err(refusal) => self.refuser.refuse(tcp, peer, refusal),
            }
        }
        let _ = stop_tx.send(true);
        drop(alive_tx);
        let _ = alive_rx.recv().await;
    }
}

/// Where a connection is between requests, shared by its I/O, its service and its watchdog.
#[derive(Debug)]
struct Phase {
    clock: MessageClock,
    /// Requests received in full whose response is not yet written.
    busy: usize,
}

#[derive(Debug)]
struct Shared {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Shared {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: between requests, the first byte starts the request clock.
    fn on_bytes(&self) {
        let mut p = self.phase();
        if p.busy == 0 && !p.clock.in_message() {
            p.clock.on_bytes(Instant::now(), true);
            drop(p);
            self.changed.notify_one();
        }
    }

    /// Bytes of a response were written: the socket takes them, so the connection is not
    /// idle. A whole-body response (one `Bytes`) is handed to hyper at once, and the idle clock
    /// starts then; without this, a large body sent to a slow (but reading) client was cut
    /// `idle_timeout` later. A client that stops reading stops the writes, and the idle
    /// timeout closes it.
    fn on_written(&self) {
        let mut p = self.phase();
        if p.busy == 0 && !p.clock.in_message() {
            p.clock.on_message(Instant::now(), false);
        }
    }

    /// A request was received in full (head and body): no deadline until its response is out.
    fn on_request(&self) {
        self.phase().busy += 1;
        self.changed.notify_one();
    }

    /// A response was written (or abandoned): the idle timer starts.
    fn on_response(&self) {
        let mut p = self.phase();
        p.busy = p.busy.saturating_sub(1);
        if p.busy == 0 {
            p.clock.on_message(Instant::now(), false);
        }
        drop(p);
        self.changed.notify_one();
    }

    /// Resolves when a deadline of the connection passes.
    async fn expired(&self) -> crate::Expired {
        loop {
            let deadline = {
                let p = self.phase();
                if p.busy > 0 {
                    None
                } else {
                    if let Some(e) = p.clock.expired(Instant::now()) {
                        return e;
                    }
                    Some(p.clock.deadline())
                }
            };
            match deadline {
                Some(d) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(d.into()) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

struct Connection {
    config: Config,
    router: Router,
    stop: watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
    _permit: Permit,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, peer: SocketAddr) {
        // Responses are written whole; Nagle would only delay the next one.
        let _ = tcp.set_nodelay(true);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            phase: Mutex::new(Phase {
                clock: MessageClock::new(
                    now,
                    self.config.request_timeout,
                    self.config.idle_timeout,
                    None,
                ),
                busy: 0,
            }),
            changed: Notify::new(),
        });
        let io = TokioIo::new(Watched {
            inner: tcp,
            shared: Arc::clone(&shared),
        });
        let router = self.router.clone();
        let svc_shared = Arc::clone(&shared);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let shared = Arc::clone(&svc_shared);
            let mut router = router.clone();
            async move {
                // The peer, as axum's `ConnectInfo` extractor reads it (per-client limits).
                let mut req = req;
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let req = if http_body::Body::is_end_stream(req.body()) {
                    shared.on_request();
                    req.map(Body::new)
                } else {
                    let body = ReqBody(Some(Arc::clone(&shared)));
                    let (parts, incoming) = req.into_parts();
                    Request::from_parts(
                        parts,
                        Body::new(TrackedReq {
                            inner: incoming,
                            done: body,
                        }),
                    )
                };
                let guard = ResponseGuard(Arc::clone(&shared));
                let mut resp = match router.call(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                resp.headers_mut().insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                Ok::<_, std::convert::Infallible>(resp.map(|b| {
                    Body::new(TrackedResp {
                        inner: b,
                        _guard: guard,
                    })
                }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.idle_timeout + self.config.request_timeout)
            .max_buf_size(MAX_BUF)
            .keep_alive(true);
        // Upgrades (a WebSocket) leave the connection: once the 101 is out this future ends
        // and the upgraded stream belongs to the handler, which keeps its own caps and
        // deadlines (nvr's live view).
        let conn = builder.serve_connection(io, service).with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let mut stopping = *self.stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, "http connection: {e}");
                    }
                    return;
                }
                expired = shared.expired() => {
                    tracing::debug!(%peer, "http connection closed: {expired}");
                    return;
                }
                changed = self.stop.changed(), if !stopping => {
                    if changed.is_err() || *self.stop.borrow() {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// The connection's socket, telling [`Shared`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    shared: Arc<Shared>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.shared.on_bytes();
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.shared.on_written();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.shared.on_written();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks the request received in full once, when its body ends or is dropped.
struct ReqBody(Option<Arc<Shared>>);

impl ReqBody {
    fn done(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.on_request();
        }
    }
}

impl Drop for ReqBody {
    fn drop(&mut self) {
        self.done();
    }
}

/// A request body that keeps the request clock running until it has been read (or dropped).
struct TrackedReq {
    inner: Incoming,
    done: ReqBody,
}

impl http_body::Body for TrackedReq {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(res, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done.done();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Marks the response written when hyper drops its body.
struct ResponseGuard(Arc<Shared>);

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        self.0.on_response();
    }
}

/// A response body that tells the connection, when dropped, that the response is out.
struct TrackedResp {
    inner: Body,
    _guard: ResponseGuard,
}

impl http_body::Body for TrackedResp {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Which `Host` headers a server answers (against DNS rebinding: a web page whose name now
/// points at the server must not read it). Allowed: the listener's own address (`ip:port`, or
/// `ip` alone), `localhost[:port]` when it listens on loopback, and the names given.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    listen: SocketAddr,
    names: Vec<String>,
}

impl AllowedHosts {
    /// For a listener bound to `listen` (its real address, after binding) and extra `names`
    /// (`--http-host`, compared without case, with or without a port).
    pub fn new(listen: SocketAddr, names: impl IntoIterator<Item = String>) -> AllowedHosts {
        AllowedHosts {
            listen,
            names: names
                .into_iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request with this `Host` header value is for this server.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = split_host_port(&host);
        if let Some(port) = port
            && port != self.listen.port()
        {
            return false;
        }
        if self.names.iter().any(|n| n == name) {
            return true;
        }
        let unbracketed = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            let own = self.listen.ip();
            if ip.to_canonical() == own.to_canonical() {
                return true;
            }
            // A wildcard listener answers on every address it has: a name cannot be checked,
            // an IP address literal is never a rebinding.
            return own.is_unspecified();
        }
        name == "localhost" && (self.listen.ip().is_loopback() || self.listen.ip().is_unspecified())
    }
}

/// `name[:port]` or `[v6][:port]`; a port that does not parse is kept in the name (so it fails).
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        if let Some(end) = host.find(']') {
            let rest = &host[end + 1..];
            if rest.is_empty() {
                return (&host[..=end], None);
            }
            if let Some(p) = rest.strip_prefix(':')
                && let Ok(p) = p.parse()
            {
                return (&host[..=end], Some(p));
            }
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((name, p)) if !name.contains(':') => match p.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn test_config() -> Config {
        Config {
            max_conns: 4,
            max_conns_per_addr: Some(2),
            request_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(800),
        }
    }

    async fn start(config: Config) -> (SocketAddr, Server, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/", get(|| async { "hello" }))
            .route("/echo", post(|body: String| async move { body }));
        let server = Server::new(config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = server.clone();
        tokio::spawn(async move {
            s.serve(listener, router, async {
                let _ = rx.await;
            })
            .await;
        });
        (addr, server, tx)
    }

    async fn connect(from: [u8; 4], to: SocketAddr) -> TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((from, 0))).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Reads until EOF or reset, with a hang guard; what was read.
    async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Err(_) => panic!("still open after 10 s"),
                Ok(Ok(0)) | Ok(Err(_)) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn get_ok(from: [u8; 4], addr: SocketAddr) -> String {
        let mut s = connect(from, addr).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
    }

    #[tokio::test]
    async fn serves_with_nosniff_and_cuts_a_half_sent_header() {
        let (addr, _server, _stop) = start(test_config()).await;
        let mut slow = connect([127, 0, 0, 2], addr).await;
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let resp = get_ok([127, 0, 0, 3], addr).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("x-content-type-options: nosniff")
        );
        assert!(resp.ends_with("hello"));
        let got = read_to_close(&mut slow).await;
        assert!(
            !got.starts_with(b"HTTP/1.1 200"),
            "the half request was not answered"
        );
    }

    #[tokio::test]
    async fn trickle_is_cut_at_the_request_deadline() {
        let (addr, _server, _stop) = start(test_config()).await;
        let mut s = connect([127, 0, 0, 2], addr).await;
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut cut = false;
        for b in req {
            // 100 ms a byte: the whole request would take 7 s, the deadline is 0.5 s.
            if s.write_all(&[*b]).await.is_err() {
                cut = true;
                break;
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    cut = true;
                    break;
                }
                Ok(Ok(_)) => panic!("answered a trickled request"),
                Err(_) => {}
            }
        }
        assert!(cut, "the trickled request was never cut");
    }

    /// M6 (review-nvr.md): a 16 MiB whole-body response to a client that reads it slowly
    /// (far longer than the idle timeout) arrives whole: written bytes are progress.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_body_to_a_slow_reader_is_not_cut_at_the_idle_timeout() {
        const LEN: usize = 16 << 20;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = hyper::body::Bytes::from(vec![b'x'; LEN]);
        let router = Router::new().route("/big", get(move || async move { body.clone() }));
        let server = Server::new(test_config());
        let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            server
                .serve(listener, router, async {
                    let _ = rx.await;
                })
                .await;
        });
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 << 10).unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 3], 0))).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // 1 MiB every 100 ms: about 1.6 s, twice the 0.8 s idle timeout.
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let mut this = 0usize;
            while this < 1 << 20 {
                match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                    Err(_) => panic!("hang guard: no bytes for 10 s"),
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        assert!(got + this > LEN, "cut after {} bytes", got + this);
                        return;
                    }
                    Ok(Ok(n)) => this += n,
                }
            }
            got += this;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn idle_keep_alive_is_closed_and_a_post_body_is_echoed() {
        let (addr, _server, _stop) = start(test_config()).await;
        let mut s = connect([127, 0, 0, 3], addr).await;
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            .await
            .unwrap();
        let got = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(
            got.ends_with("abc"),
            "kept alive, then closed when idle: {got}"
        );
    }

    #[tokio::test]
    async fn caps_answer_503_and_free_their_slots() {
        let (addr, server, _stop) = start(test_config()).await;
        let a = connect([127, 0, 0, 2], addr).await;
        let b = connect([127, 0, 0, 2], addr).await;
        // Let the server accept both before the third.
        while server.limiter().open_from([127, 0, 0, 2].into()) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut c = connect([127, 0, 0, 2], addr).await;
        let got = String::from_utf8_lossy(&read_to_close(&mut c).await).into_owned();
        assert!(
            got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{got}"
        );
        assert!(got.contains("Connection: close"));
        // Another address has headroom.
        assert!(
            get_ok([127, 0, 0, 3], addr)
                .await
                .starts_with("HTTP/1.1 200")
        );
        let _c2 = connect([127, 0, 0, 4], addr).await;
        let _c3 = connect([127, 0, 0, 5], addr).await;
        while server.limiter().open() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let total = get_ok([127, 0, 0, 3], addr).await;
        assert!(
            total.starts_with("HTTP/1.1 503"),
            "over the total cap: {total}"
        );
        drop((a, b));
        while server.limiter().open() > 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            get_ok([127, 0, 0, 3], addr)
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(server.limiter().refused() >= 2);
    }

    #[tokio::test]
    async fn shutdown_waits_for_connections_and_stops_accepting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(test_config());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new().route("/", get(|| async { "hello" }));
        let task = tokio::spawn(async move {
            server
                .serve(listener, router, async {
                    let _ = rx.await;
                })
                .await;
        });
        assert!(
            get_ok([127, 0, 0, 3], addr)
                .await
                .starts_with("HTTP/1.1 200")
        );
        let idle = connect([127, 0, 0, 3], addr).await;
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve returned")
            .unwrap();
        drop(idle);
        assert!(TcpStream::connect(addr).await.is_err(), "no more listener");
    }

    #[test]
    fn allowed_hosts() {
        let loopback = AllowedHosts::new("127.0.0.1:8080".parse().unwrap(), ["NVR.lan".into()]);
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "nvr.lan",
            "nvr.lan:8080",
        ] {
            assert!(loopback.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1:9090",
            "10.0.0.1:8080",
            "localhost:1",
            "",
            "nvr.lan:x",
        ] {
            assert!(!loopback.allows(bad), "{bad}");
        }
        let lan = AllowedHosts::new("10.0.0.5:80".parse().unwrap(), []);
        assert!(lan.allows("10.0.0.5"));
        assert!(!lan.allows("localhost"), "not on loopback");
        let v6 = AllowedHosts::new("[::1]:8080".parse().unwrap(), []);
        assert!(v6.allows("[::1]:8080"));
        assert!(v6.allows("[::1]"));
        assert!(v6.allows("localhost:8080"));
        assert!(!v6.allows("[::2]:8080"));
        let any = AllowedHosts::new("0.0.0.0:8080".parse().unwrap(), []);
        assert!(any.allows("192.168.1.9:8080"));
        assert!(!any.allows("rebind.example:8080"));
    }
}

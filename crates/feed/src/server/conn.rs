//! One RTSP connection's I/O: reads requests into the session core ([`Connection`]), reads its
//! ring while playing, and writes what the core composes ([`Outgoing`] packets, responses):
//! interleaved on the connection with vectored writes, or over the server's UDP pair.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use nvrkit_media::{Frame, WallTime};
use nvrkit_net::{Expired, MessageClock};
use nvrkit_ring::{RecvError, Start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Config, Shared};
use crate::rtp::sender::Queue;
use crate::rtp::{Outgoing, Route, Sink};
use crate::rtsp::core::{Action, ConnConfig, Connection, Transport, bad_request};
use crate::rtsp::framing::{Framer, Incoming};
use crate::rtsp::play::RtpConfig;
use nvrkit_net::refuse::linger;

/// The read half of a client connection: TCP or TLS.
pub(super) type ConnRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// The write half of a client connection: TCP or TLS.
pub(super) type ConnWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// How long one write to a client may block. A client that keeps its TCP window shut this long
/// is dropped: it must not hold its task (and the server's shutdown) forever. The ring already
/// skips slow readers forward, so a client that merely lags is not affected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a playing session gets RTCP sender reports and every session a liveness check.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The ring a playing session reads, and its UDP catch-up pacing.
struct Playback {
    reader: nvrkit_ring::Reader,
    /// UDP catch-up: (instant the burst started, wall time of its first frame).
    burst: Option<(Instant, WallTime)>,
    /// A live source's tracks ([`crate::source`]): the session ends when they change.
    tracks: Option<watch::Receiver<Option<Vec<nvrkit_media::TrackInfo>>>>,
}

struct ConnIo {
    wr: ConnWrite,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// Responses being composed.
    out: BytesMut,
    /// What to write, in order: responses, packet headers and frame payload slices. Payloads
    /// are never copied per client: they are slices of the ring's frames, written with vectored
    /// writes (500 clients of a 720p stream would otherwise each hold a copy of every keyframe).
    chunks: VecDeque<Bytes>,
    /// UDP packets the session core composed, to send (reused).
    udp: Vec<Outgoing>,
    /// One UDP datagram being joined (reused).
    datagram: Vec<u8>,
}

impl ConnIo {
    /// Moves what was composed in `out` to the write queue.
    fn seal(&mut self) {
        if !self.out.is_empty() {
            self.chunks.push_back(self.out.split().freeze());
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.seal();
        let mut write = std::pin::pin!(write_chunks(&mut self.wr, &mut self.chunks));
        // Almost every write completes at once (the socket buffer has room): only a write that
        // has to wait arms the timer, so the common case costs no timer registration.
        let first = std::future::poll_fn(|cx| match write.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        match first {
            Some(r) => r,
            None => tokio::time::timeout(WRITE_TIMEOUT, write)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading")
                })?,
        }
    }

    fn queue_response(&mut self, r: &rtsp_types::Response<Vec<u8>>) {
        self.out.put_slice(&crate::rtsp::core::serialize(r));
    }

    /// Where the session core puts its packets, after what is already queued.
    fn queue(&mut self) -> Queue<'_> {
        self.seal();
        Queue {
            chunks: &mut self.chunks,
            udp: &mut self.udp,
        }
    }

    /// Sends the UDP packets the core composed, in order.
    async fn send_udp(&mut self) {
        for o in self.udp.drain(..) {
            let (sock, port) = match (o.route, &self.shared.udp) {
                (Route::UdpRtp(port), Some((rtp, _))) => (rtp, port),
                (Route::UdpRtcp(port), Some((_, rtcp))) => (rtcp, port),
                _ => continue,
            };
            self.datagram.clear();
            self.datagram.extend_from_slice(&o.head);
            self.datagram.extend_from_slice(&o.body);
            let to = SocketAddr::new(self.peer.ip(), port);
            let _ = sock.send_to(&self.datagram, to).await;
        }
    }
}

/// Writes every chunk, in order, with vectored writes, then flushes: over TLS a write may leave
/// bytes in rustls's buffer when the socket is full, and a reply (to PAUSE, TEARDOWN) followed
/// by no more media would otherwise wait there. On plain TCP the flush returns at once.
async fn write_chunks(
    wr: &mut ConnWrite,
    chunks: &mut std::collections::VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !chunks.is_empty() {
        // The iovecs live on the stack of one poll, not in the connection's future (which every
        // client keeps), and a write per frame per client allocates nothing.
        let mut n = std::future::poll_fn(|cx| {
            let mut slices = [std::io::IoSlice::new(&[]); 64];
            let mut k = 0;
            for (s, c) in slices.iter_mut().zip(chunks.iter()) {
                *s = std::io::IoSlice::new(c);
                k += 1;
            }
            tokio::io::AsyncWrite::poll_write_vectored(
                std::pin::Pin::new(&mut *wr),
                cx,
                &slices[..k],
            )
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                chunks.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }
    wr.flush().await
}

/// Serves one RTSP connection until it closes, times out, or the server stops.
pub(super) async fn serve(
    mut rd: ConnRead,
    wr: ConnWrite,
    local: SocketAddr,
    peer: SocketAddr,
    secure: bool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Accepted as shutdown was sent: `stop` was subscribed after it, so `changed()` below
    // would never fire for it.
    if *stop.borrow() {
        return;
    }
    let timeout = shared.config.session_timeout;
    let mut conn = Connection::new(ConnConfig {
        auth: shared.auth.clone(),
        // Over TLS, RTP rides the encrypted connection only.
        udp_ports: if secure {
            None
        } else {
            shared.udp.as_ref().map(|(a, b)| (port_of(a), port_of(b)))
        },
        session_timeout: timeout,
        scheme: if secure { "rtsps" } else { "rtsp" },
        // As a URL's host and port (an IPv6 scope is left out).
        host: match local {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        },
        server_ip: local.ip().to_string(),
        rtp: RtpConfig {
            mtu: shared.config.mtu,
            initial_rtptime: shared.config.initial_rtptime,
        },
    });
    let mut io = ConnIo {
        wr,
        peer,
        shared: shared.clone(),
        out: BytesMut::new(),
        chunks: VecDeque::new(),
        udp: Vec::new(),
        datagram: Vec::new(),
    };
    let mut framer = Framer::new();
    let mut playback: Option<Playback> = None;
    // Requests are small; a large read buffer per client would only cost memory at fan-out.
    let mut rbuf = vec![0u8; 4 * 1024];
    // The request deadline (from a request's first byte) and, while there is no session, the
    // idle timeout (from the last complete request): a trickled byte moves neither.
    // Capped at a year: an absurd flag value must not overflow the clock's instants.
    let year = Duration::from_secs(365 * 86_400);
    let mut clock = MessageClock::new(
        Instant::now().into_std(),
        shared.config.request_timeout.min(year),
        shared.config.idle_timeout.min(year),
        None,
    );
    // The last sign of life of a session: a complete request, or interleaved RTCP while
    // playing. A set-up session is kept this long past it (UDP RTCP counts too).
    let mut last_alive = Instant::now();
    let session_limit = shared.config.idle_timeout.max(timeout);
    // Oversized request: the client's remaining bytes are drained before closing.
    let mut linger_on_close = false;
    // Sender reports and the liveness check, every 5 s. While playing they run after a write
    // that finds them due, and shutdown is checked there too, so a playing session's wakeups
    // poll no timer and no shutdown channel (the ring closing when the pacer stops is the
    // backstop); only a request begun and not finished arms its deadline then.
    let mut next_report = Instant::now() + REPORT_INTERVAL;
    tracing::debug!(%peer, "connection");

    'conn: loop {
        let playing = playback.is_some() && conn.playing();
        let mut periodic = false;
        // The message clock applies to a request in progress, and its idle deadline to a
        // connection without a session (a session has its own timeout, checked periodically).
        let clocked = clock.in_message() || conn.session().is_none();
        let deadline = clocked.then(|| Instant::from_std(clock.deadline()));
        let wake = match (playing, deadline) {
            (true, d) => d.filter(|_| clock.in_message()),
            (false, Some(d)) => Some(d.min(next_report)),
            (false, None) => Some(next_report),
        };
        // The timed faults' deadlines (jittered packets, `disconnect_every`).
        let fault_wake = [conn.next_due(), conn.close_at()]
            .into_iter()
            .flatten()
            .min()
            .map(Instant::from_std);
        let wake = match (wake, fault_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            r = rd.read(&mut rbuf) => {
                let n = match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => n,
                };
                let now = Instant::now();
                framer.push(&rbuf[..n]);
                let mut close = false;
                let mut completed = false;
                while let Some(msg) = framer.next_message() {
                    if matches!(msg, Incoming::Request(_)) {
                        completed = true;
                        last_alive = now;
                    }
                    match msg {
                        Incoming::Request(req) => {
                            let (resp, action) = conn.handle_at(&req, shared.as_ref(), now.into_std());
                            match action {
                                Action::Play => {
                                    let cseq = req
                                        .header(&rtsp_types::headers::CSEQ)
                                        .map(|v| v.as_str().to_owned())
                                        .unwrap_or_default();
                                    playback = None;
                                    match first_keyframe(&conn, &shared).await {
                                        Some((mut pb, first, master)) => {
                                            // The response first, then the SRs it made.
                                            let mut reports = Vec::new();
                                            let r = conn.play(&cseq, &first, master, &mut reports);
                                            io.queue_response(&r);
                                            reports.into_iter().for_each(|o| io.queue().push(o));
                                            if let Ok(mut seen) = shared.udp_seen.lock() {
                                                for port in udp_rtcp_ports(&conn) {
                                                    seen.insert(SocketAddr::new(peer.ip(), port), Instant::now());
                                                }
                                            }
                                            io.send_udp().await;
                                            send(&mut io, &mut conn, &mut pb, &first, &shared.config).await;
                                            playback = Some(pb);
                                        }
                                        None => io.queue_response(&conn.play_failed(&cseq)),
                                    }
                                }
                                Action::Teardown => {
                                    io.queue_response(&resp);
                                    playback = None;
                                    conn.bye(&mut io.queue());
                                    io.send_udp().await;
                                }
                                Action::Pause | Action::None => io.queue_response(&resp),
                            }
                        }
                        Incoming::Malformed(why) => {
                            tracing::debug!(%peer, "malformed request: {why}");
                            io.queue_response(&bad_request());
                        }
                        Incoming::TooLarge(why) => {
                            tracing::info!(%peer, "request refused and connection closed: {why}");
                            io.queue_response(&bad_request());
                            close = true;
                            linger_on_close = true;
                            break;
                        }
                        Incoming::Data { .. } => {
                            // Interleaved RTCP from a playing client is liveness; from any other
                            // connection it keeps nothing alive.
                            if conn.playing() {
                                last_alive = now;
                            }
                        }
                        Incoming::Response => {}
                    }
                }
                if completed {
                    clock.on_message(now.into_std(), framer.in_message());
                } else {
                    clock.on_bytes(now.into_std(), framer.in_message());
                }
                if io.flush().await.is_err() || close {
                    break 'conn;
                }
            }
            r = async { playback.as_mut().expect("guarded").reader.recv_async().await }, if playing => {
                let pb = playback.as_mut().expect("guarded");
                match r {
                    Ok(f) => {
                        send(&mut io, &mut conn, pb, &f, &shared.config).await;
                        // Whatever else is ready (the audio frame beside a video frame, the rest
                        // of a catch-up GOP) goes out in the same vectored write: one wakeup
                        // and one syscall instead of one per frame.
                        for _ in 0..64 {
                            match pb.reader.try_recv() {
                                Ok(f) => send(&mut io, &mut conn, pb, &f, &shared.config).await,
                                Err(_) => break,
                            }
                            if io.chunks.len() > 512 {
                                break;
                            }
                        }
                        if io.flush().await.is_err() {
                            break 'conn;
                        }
                    }
                    Err(RecvError::Lagged { skipped }) => {
                        // A slow client: skipped forward to a keyframe, never stalling others.
                        tracing::debug!(%peer, skipped, "client lagged; resuming at a keyframe");
                        pb.burst = None;
                        conn.rejoin();
                    }
                    Err(_) => break 'conn,
                }
                // Shutdown, checked with one atomic load: the ring closing would also end the
                // session, but only after the client had read what is left in it.
                if stop.has_changed().unwrap_or(true) {
                    break 'conn;
                }
                // A live source's tracks changed: this session's SDP is stale.
                if pb.tracks.as_ref().is_some_and(|t| t.has_changed().unwrap_or(true)) {
                    tracing::info!(%peer, "the source's tracks changed; ending the session");
                    break 'conn;
                }
                periodic = Instant::now() >= next_report;
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(next_report)), if wake.is_some() => {
                let now = Instant::now();
                if conn.disconnect_due(now.into_std()) {
                    tracing::info!(%peer, "connection closed: disconnect_every fault");
                    break 'conn;
                }
                conn.release(now.into_std(), &mut io.queue());
                io.send_udp().await;
                let expired = clock.expired(now.into_std()).filter(|e| match e {
                    Expired::Message => clock.in_message(),
                    _ => conn.session().is_none(),
                });
                if let Some(e) = expired {
                    tracing::info!(%peer, "connection closed: {e}");
                    break 'conn;
                }
                periodic = now >= next_report;
            }
            _ = stop.changed(), if !playing => break 'conn,
        }
        if !periodic {
            continue;
        }
        next_report = Instant::now() + REPORT_INTERVAL;
        if conn.playing() {
            conn.sender_reports(&mut io.queue());
            io.send_udp().await;
            if io.flush().await.is_err() {
                break 'conn;
            }
        }
        // Liveness: complete requests on this connection, or RTCP from the client.
        let mut alive = last_alive;
        if let Ok(seen) = shared.udp_seen.lock() {
            for port in udp_rtcp_ports(&conn) {
                if let Some(at) = seen.get(&SocketAddr::new(peer.ip(), port)) {
                    alive = alive.max(*at);
                }
            }
        }
        // Over TCP the open connection carrying the media is itself the liveness signal
        // (gst-rtsp-server and mediamtx do the same): clients that send no keepalive keep
        // playing. An idle connection, or a UDP session whose client went quiet, times out.
        let tcp_playing = conn.playing() && conn.playout().is_some_and(|p| p.all_tcp());
        if conn.session().is_some() && !tcp_playing && alive.elapsed() > session_limit {
            tracing::info!(%peer, "session timed out");
            break 'conn;
        }
    }
    if conn.playout().is_some() {
        conn.bye(&mut io.queue());
        io.send_udp().await;
        let _ = io.flush().await;
    }
    if let (Some(s), Ok(mut seen)) = (conn.drop_session(), shared.udp_seen.lock()) {
        for t in &s.tracks {
            if let Transport::Udp { rtcp, .. } = t.transport {
                seen.remove(&SocketAddr::new(peer.ip(), rtcp));
            }
        }
    }
    // Over TLS, shutdown sends close_notify and waits for rustls's buffer to drain, which a
    // client that stopped reading never lets happen: bounded, so the task (and the server's
    // shutdown) is not held.
    if linger_on_close {
        linger(&mut rd, &mut io.wr).await;
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(1), io.wr.shutdown()).await;
    }
    tracing::debug!(%peer, "connection closed");
}

fn port_of(s: &UdpSocket) -> u16 {
    s.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// The client RTCP ports of the session's UDP tracks, once PLAY started it.
fn udp_rtcp_ports(conn: &Connection) -> impl Iterator<Item = u16> + '_ {
    conn.playout().into_iter().flat_map(|p| p.udp_rtcp_ports())
}

/// Reads the session's ring from the newest keyframe until a keyframe it may start at arrives,
/// so the PLAY response can say where the stream starts: (the reader, that keyframe, the
/// video stream). `None` when none arrives in time.
async fn first_keyframe(conn: &Connection, shared: &Shared) -> Option<(Playback, Frame, usize)> {
    let session = conn.session()?;
    let feed = shared
        .feed_for(&session.stream.name, &session.faults)
        .ok()
        .flatten();
    let (ring, master, tracks) = match &feed {
        Some(feed) => {
            let master = feed.clip.master();
            let video_only = session.tracks.iter().all(|t| t.stream == master);
            let ring = if video_only {
                &feed.video_ring
            } else {
                &feed.ring
            };
            (ring, master, None)
        }
        None => {
            let live = shared.live.get(&session.stream.name)?;
            // Described under other tracks (the camera reconnected since): describe again.
            let (watch, same) = live.watch_from(&session.stream.tracks);
            if !same {
                return None;
            }
            (live.ring(), live.video_stream(), Some(watch))
        }
    };
    let mut reader = ring.reader(Start::NewestKeyframe);
    let joined = WallTime::now();
    let first = loop {
        let f = match tokio::time::timeout(Duration::from_secs(10), reader.recv_async()).await {
            Ok(Ok(f)) => f,
            Ok(Err(RecvError::Lagged { .. })) => continue,
            _ => return None,
        };
        let wanted = f.stream == master && f.keyframe;
        let fresh = !shared.config.strict_start || f.wall.is_some_and(|w| w >= joined);
        if wanted && fresh {
            break f;
        }
    };
    let pb = Playback {
        reader,
        burst: None,
        tracks,
    };
    Some((pb, first, master))
}

/// Sends one frame to the track of the session it belongs to, pacing UDP catch-up bursts.
async fn send(
    io: &mut ConnIo,
    conn: &mut Connection,
    pb: &mut Playback,
    f: &Frame,
    config: &Config,
) {
    let udp = conn
        .playout()
        .and_then(|p| p.transport_of(f.stream))
        .is_some_and(|t| matches!(t, Transport::Udp { .. }));
    if udp && let Some(w) = f.wall {
        let behind = WallTime::now().micros_since(w);
        if behind > 100_000 {
            // Catching up over UDP: a whole 720p GOP at once overflows Linux's default socket
            // receive buffer (212,992 bytes), so send it at most `udp_burst_speed` × real time.
            let (t0, w0) = *pb.burst.get_or_insert((Instant::now(), w));
            let speed = u64::from(config.udp_burst_speed.max(1));
            let due = t0 + Duration::from_micros((w.micros_since(w0).max(0) as u64) / speed);
            tokio::time::sleep_until(due).await;
        } else {
            pb.burst = None;
        }
    }
    conn.frame(f, &mut io.queue());
    io.send_udp().await;
}

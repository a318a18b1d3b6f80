//! One RTSP connection's I/O loop. It decides nothing: bytes read, frames from the ring, timers
//! and the end go to the connection's state machine ([`Driver`]) at the instant they happen,
//! and what it composes is written: interleaved chunks with vectored writes, UDP datagrams on
//! the server's pair. It sleeps until the instant the driver gives and awaits the ring.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nvrkit_media::{Frame, TrackInfo, WallTime};
use nvrkit_net::refuse::linger;
use nvrkit_ring::{Reader, RecvError, Start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Shared;
use crate::fault::FaultSet;
use crate::rtp::sender::Queue;
use crate::rtp::{Outgoing, Route};
use crate::rtsp::core::StreamInfo;
use crate::rtsp::driver::{Driver, Now, Step};

/// The read half of a client connection: TCP or TLS.
pub(super) type ConnRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// The write half of a client connection: TCP or TLS.
pub(super) type ConnWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// How long one write to a client may block. A client that keeps its TCP window shut this long
/// is dropped: it must not hold its task (and the server's shutdown) forever. The ring already
/// skips slow readers forward, so a client that merely lags is not affected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A live source's tracks ([`crate::source`]): its sessions end when they change.
type Tracks = watch::Receiver<Option<Vec<TrackInfo>>>;

struct ConnIo {
    wr: ConnWrite,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// What to write, in order: responses, packet headers and frame payload slices. Payloads
    /// are never copied per client: they are slices of the ring's frames, written with vectored
    /// writes (500 clients of a 720p stream would otherwise each hold a copy of every keyframe).
    chunks: VecDeque<Bytes>,
    /// UDP packets the driver composed, to send (reused).
    udp: Vec<Outgoing>,
    /// One UDP datagram being joined (reused).
    datagram: Vec<u8>,
}

/// Both clocks, read now (tokio's monotonic one, so paused-clock tests see theirs).
fn now() -> Now {
    Now {
        at: Instant::now().into_std(),
        wall: WallTime::now(),
    }
}

/// When the server last got RTCP from `port` of client `ip` ([`super::listen::receive_rtcp`]).
fn udp_seen(shared: &Shared, ip: IpAddr) -> impl Fn(u16) -> Option<std::time::Instant> + '_ {
    move |port| {
        let seen = shared.udp_seen.lock().ok()?;
        seen.get(&SocketAddr::new(ip, port)).map(|at| at.into_std())
    }
}

impl ConnIo {
    /// Where the driver puts responses and packets, after what is already queued.
    fn queue(&mut self) -> Queue<'_> {
        Queue {
            chunks: &mut self.chunks,
            udp: &mut self.udp,
        }
    }

    /// Sends the UDP packets queued, in order, each as one datagram.
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
            let _ = sock
                .send_to(&self.datagram, SocketAddr::new(self.peer.ip(), port))
                .await;
        }
    }

    /// Sends what is queued: the UDP datagrams, then the connection's chunks.
    async fn write(&mut self) -> std::io::Result<()> {
        self.send_udp().await;
        if self.chunks.is_empty() {
            return Ok(());
        }
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

    /// Notes the session's client RTCP ports as alive from now (its PLAY).
    fn watch_udp(&self, d: &Driver) {
        if let Ok(mut seen) = self.shared.udp_seen.lock() {
            for port in d.udp_rtcp_ports() {
                seen.insert(SocketAddr::new(self.peer.ip(), port), Instant::now());
            }
        }
    }

    /// Sends `f` when the driver says it is due (UDP catch-up), `now` moving on if it waited.
    async fn frame(&mut self, d: &mut Driver, f: &Frame, now: &mut Now) {
        if let Some(due) = d.due(f, *now) {
            tokio::time::sleep_until(Instant::from_std(due)).await;
            *now = self::now();
        }
        d.frame(f, now.at, &mut self.queue());
        self.send_udp().await;
    }

    /// PLAY: the ring the driver chooses of the path's, read from its newest keyframe until a
    /// frame the driver starts at, or `until`; the reader, and a live source's tracks.
    async fn play(
        &mut self,
        d: &mut Driver,
        (stream, faults): (&StreamInfo, &FaultSet),
        until: std::time::Instant,
    ) -> Option<(Reader, Option<Tracks>)> {
        let Some((rings, tracks)) = self.shared.feeds.rings(stream, faults) else {
            d.not_started(&mut self.queue());
            return None;
        };
        let mut reader = d.ring(rings).reader(Start::NewestKeyframe);
        let first = loop {
            match tokio::time::timeout_at(Instant::from_std(until), reader.recv_async()).await {
                Ok(Ok(f)) if d.offer(&f) => break f,
                Ok(Ok(_) | Err(RecvError::Lagged { .. })) => {}
                _ => {
                    d.not_started(&mut self.queue());
                    return None;
                }
            }
        };
        d.start(&first, &mut self.queue());
        self.watch_udp(d);
        self.frame(d, &first, &mut now()).await;
        Some((reader, tracks))
    }
}

/// Writes every chunk, in order, with vectored writes, then flushes: over TLS a write may leave
/// bytes in rustls's buffer when the socket is full, and a reply (to PAUSE, TEARDOWN) followed
/// by no more media would otherwise wait there. On plain TCP the flush returns at once.
async fn write_chunks(wr: &mut ConnWrite, chunks: &mut VecDeque<Bytes>) -> std::io::Result<()> {
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
    let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
    let udp_ports = shared.udp.as_ref().map(|(a, b)| (port(a), port(b)));
    let (auth, at) = (shared.auth.clone(), Instant::now().into_std());
    let mut d = Driver::for_server(&shared.config, auth, udp_ports, (local, peer), secure, at);
    let mut io = ConnIo {
        wr,
        peer,
        shared: shared.clone(),
        chunks: VecDeque::new(),
        udp: Vec::new(),
        datagram: Vec::new(),
    };
    let seen = udp_seen(&shared, peer.ip());
    let mut reader: Option<(Reader, Option<Tracks>)> = None;
    // Requests are small; a large read buffer per client would only cost memory at fan-out.
    let mut rbuf = vec![0u8; 4 * 1024];
    let mut linger_on_close = false;
    tracing::debug!(%peer, "connection");
    // While frames drive the connection, its wakeups poll no timer (unless the driver asks)
    // and no shutdown channel: shutdown is one atomic load after each batch, and the ring
    // closing when the pacer stops is the backstop.
    loop {
        let reads = d.reads() && reader.is_some();
        let wake = d.wake().map(Instant::from_std);
        let step = tokio::select! {
            r = rd.read(&mut rbuf) => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let at = now();
                let mut step = d.read(&rbuf[..n], at, &shared.feeds, &mut io.queue());
                while let Step::Play { stream, faults, until } = step {
                    reader = io.play(&mut d, (&stream, &faults), until).await;
                    step = d.resume(at, &shared.feeds, &mut io.queue());
                }
                if d.connection().playout().is_none() {
                    reader = None;
                }
                step
            }
            r = async { reader.as_mut().expect("guarded").0.recv_async().await }, if reads => {
                let (rdr, tracks) = reader.as_mut().expect("guarded");
                match r {
                    Ok(f) => {
                        let mut at = now();
                        io.frame(&mut d, &f, &mut at).await;
                        // Whatever else is ready (the audio frame beside a video frame, the
                        // rest of a catch-up GOP) goes out in the same vectored write: one
                        // wakeup and one syscall instead of one per frame.
                        for _ in 0..64 {
                            let Ok(f) = rdr.try_recv() else { break };
                            io.frame(&mut d, &f, &mut at).await;
                            if io.chunks.len() > 512 {
                                break;
                            }
                        }
                        if io.write().await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Lagged { skipped }) => {
                        // A slow client: skipped forward to a keyframe, never stalling others.
                        tracing::debug!(%peer, skipped, "client lagged; resuming at a keyframe");
                        d.lagged();
                    }
                    Err(_) => break,
                }
                // Shutdown, checked with one atomic load: the ring closing would also end the
                // session, but only after the client had read what is left in it.
                if stop.has_changed().unwrap_or(true) {
                    break;
                }
                if tracks.as_ref().is_some_and(|t| t.has_changed().unwrap_or(true)) {
                    tracing::info!(%peer, "the source's tracks changed; ending the session");
                    break;
                }
                d.after_frames(Instant::now().into_std(), &seen, &mut io.queue())
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                d.timer(Instant::now().into_std(), &seen, &mut io.queue())
            }
            _ = stop.changed(), if !reads => break,
        };
        if let Step::Close { linger } = step {
            linger_on_close = linger;
            break;
        }
        if io.write().await.is_err() {
            break;
        }
    }
    let ports = d.end(&mut io.queue());
    let _ = io.write().await;
    if let Ok(mut seen) = shared.udp_seen.lock() {
        for port in ports {
            seen.remove(&SocketAddr::new(peer.ip(), port));
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

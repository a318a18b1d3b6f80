//! One RTSP connection's I/O loop. It decides nothing: bytes read, frames from the ring, timers
//! and the end go to the connection's state machine ([`Driver`]) at the instant they happen,
//! and what it composes is written: interleaved [`Chunks`] with vectored writes, UDP datagrams
//! on the server's pair. It sleeps until the instant the driver gives and awaits the ring.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use nvrkit_media::{Frame, WallTime};
use nvrkit_net::refuse::linger;
use nvrkit_ring::{Reader, RecvError, Start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::Shared;
use crate::fault::FaultSet;
use crate::rtp::sender::{Chunks, Queue};
use crate::rtp::{Outgoing, Route};
use crate::rtsp::core::StreamInfo;
use crate::rtsp::driver::{Driver, Now, Step};
use crate::source::Tracks;

/// The read half of a client connection: TCP or TLS.
pub(super) type ConnRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// The write half of a client connection: TCP or TLS.
pub(super) type ConnWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// How long one write to a client may block. A client that keeps its TCP window shut this long
/// is dropped: it must not hold its task (and the server's shutdown) forever. The ring already
/// skips slow readers forward, so a client that merely lags is not affected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

struct ConnIo {
    wr: ConnWrite,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// What to write, in order. Payloads are slices of the ring's frames, never copied per
    /// client (500 clients of a 720p stream would otherwise each hold a copy of every keyframe).
    chunks: Chunks,
    /// UDP packets to send, and one datagram being joined (both reused).
    udp: (Vec<Outgoing>, Vec<u8>),
}

/// Both clocks, read now (tokio's monotonic one, so paused-clock tests see theirs).
fn now() -> Now {
    let (at, wall) = (Instant::now().into_std(), WallTime::now());
    Now { at, wall }
}

impl ConnIo {
    /// Where the driver puts responses and packets, after what is already queued.
    fn queue(&mut self) -> Queue<'_> {
        let (chunks, udp) = (&mut self.chunks, &mut self.udp.0);
        Queue { chunks, udp }
    }

    /// Sends the UDP packets queued, in order, each as one datagram.
    async fn send_udp(&mut self) {
        let (packets, datagram) = &mut self.udp;
        for o in packets.drain(..) {
            let (sock, port) = match (o.route, &self.shared.udp) {
                (Route::UdpRtp(port), Some((rtp, _))) => (rtp, port),
                (Route::UdpRtcp(port), Some((_, rtcp))) => (rtcp, port),
                _ => continue,
            };
            datagram.clear();
            datagram.extend_from_slice(&o.head);
            datagram.extend_from_slice(&o.body);
            let _ = sock.send_to(datagram, (self.peer.ip(), port)).await;
        }
    }

    /// Sends what is queued: the UDP datagrams, then the chunks with vectored writes (at most
    /// 64 slices each, on the stack of one poll) and a flush (over TLS a write may leave bytes in
    /// rustls's buffer, where a reply to PAUSE or TEARDOWN would wait for media that never comes).
    async fn write(&mut self) -> std::io::Result<()> {
        self.send_udp().await;
        if self.chunks.is_empty() {
            return Ok(());
        }
        let (wr, chunks) = (&mut self.wr, &mut self.chunks);
        let mut write = std::pin::pin!(async move {
            wr.write_all_buf(chunks).await?;
            wr.flush().await
        });
        // Almost every write completes at once (the socket buffer has room): only a write that
        // has to wait arms the timer, so the common case costs no timer registration.
        match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => tokio::time::timeout(WRITE_TIMEOUT, write)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading")
                })?,
        }
    }

    /// Sends `f` when the driver says it is due (UDP catch-up), `now` moving on if it waited.
    async fn frame(&mut self, d: &mut Driver, f: &Frame, now: &mut Now) {
        if let Some(due) = d.due(f, *now) {
            sleep_until(Instant::from_std(due)).await;
            *now = self::now();
        }
        d.frame(f, now.at, &mut self.queue());
        self.send_udp().await;
    }

    /// PLAY: the ring the driver chooses of the path's, read from its newest keyframe until a
    /// frame the driver starts at; the reader, and a live source's tracks. `None`: no rings, or
    /// no such frame by `until`.
    async fn play(
        &mut self,
        d: &mut Driver,
        (stream, faults): (&StreamInfo, &FaultSet),
        until: std::time::Instant,
    ) -> Option<(Reader, Option<Tracks>)> {
        let (rings, tracks) = self.shared.feeds.rings(stream, faults)?;
        let mut reader = d.ring(rings).reader(Start::NewestKeyframe);
        let first = loop {
            match timeout_at(Instant::from_std(until), reader.recv_async()).await {
                Ok(Ok(f)) if d.offer(&f) => break f,
                Ok(Ok(_) | Err(RecvError::Lagged { .. })) => {}
                _ => return None,
            }
        };
        d.start(&first, &mut self.queue());
        let at = Instant::now().into_std();
        (self.shared.udp_seen).watch(self.peer.ip(), d.udp_rtcp_ports(), at);
        self.frame(d, &first, &mut now()).await;
        Some((reader, tracks))
    }
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
    let (auth, at) = (shared.auth.clone(), Instant::now().into_std());
    let ends = (local, peer);
    let mut d = Driver::for_server(&shared.config, auth, shared.udp_ports, ends, secure, at);
    let (chunks, udp) = (Chunks::default(), Default::default());
    let mut io = ConnIo {
        wr,
        peer,
        shared: shared.clone(),
        chunks,
        udp,
    };
    let seen = |port| shared.udp_seen.last(peer.ip(), port);
    let mut reader: Option<(Reader, Option<Tracks>)> = None;
    // Requests are small; a large read buffer per client would only cost memory at fan-out.
    let mut rbuf = vec![0u8; 4 * 1024];
    let mut linger_on_close = false;
    tracing::debug!(%peer, "connection");
    // While frames drive the connection its wakeups poll no timer (unless the driver asks for
    // one) and no shutdown channel: shutdown is one atomic load after each batch, and the ring
    // closing when the pacer stops is the backstop.
    loop {
        let reads = d.reads() && reader.is_some();
        let wake = d.wake().map(Instant::from_std);
        let step = tokio::select! {
            r = rd.read(&mut rbuf) => {
                let Ok(n @ 1..) = r else { break };
                let at = now();
                let mut step = d.read(&rbuf[..n], at, &shared.feeds, &mut io.queue());
                while let Step::Play { stream, faults, until } = step {
                    reader = io.play(&mut d, (&stream, &faults), until).await;
                    if reader.is_none() {
                        d.not_started(&mut io.queue());
                    }
                    step = d.resume(at, &shared.feeds, &mut io.queue());
                }
                reader = reader.filter(|_| d.connection().playout().is_some());
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
                        for f in std::iter::from_fn(|| rdr.try_recv().ok()).take(64) {
                            io.frame(&mut d, &f, &mut at).await;
                            if io.chunks.len() > 512 {
                                break;
                            }
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
                let changed = tracks.as_ref().is_some_and(|t| t.has_changed().unwrap_or(true));
                if changed {
                    tracing::info!(%peer, "the source's tracks changed; ending the session");
                }
                if changed || stop.has_changed().unwrap_or(true) {
                    break;
                }
                d.after_frames(Instant::now().into_std(), seen, &mut io.queue())
            }
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                d.timer(Instant::now().into_std(), seen, &mut io.queue())
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
    shared.udp_seen.forget(peer.ip(), ports);
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

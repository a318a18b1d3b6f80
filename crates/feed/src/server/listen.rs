//! Listening: the RTSP and RTSPS accept loops with their connection caps (a refused client
//! gets `503` and a short linger), the serving threads they hand connections to, the UDP pair
//! for RTP/RTCP and UDP RTCP liveness.
//!
//! Serving threads ([`Config::threads`](super::Config::threads)): connection `k` a listener
//! accepts is served on runtime `k mod N`; runtime 0 is the caller's (the one the listener,
//! the pacers and the RTCP receiver run on), runtimes 1..N are current-thread runtimes on
//! threads of their own, each owning the connections it was given until they end. The
//! socket moves as a `std` socket and is registered with the serving runtime's reactor, so
//! its wake-ups stay on that thread; the rings, the pacers and the UDP pair are shared.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nvrkit_net::Permit;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::conn::serve;
use super::{Shared, stopped};
use crate::error::{Error, Result};
use crate::rtp::rtcp;

/// Binds an RTP socket on an even port and RTCP on the next one (RFC 3550 §11).
pub(super) async fn bind_udp_pair(ip: IpAddr) -> Result<(Arc<UdpSocket>, Arc<UdpSocket>)> {
    let mut last_err = None;
    for _ in 0..50 {
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|source| Error::Io {
                what: "cannot bind a UDP port for RTP".into(),
                source,
            })?;
        let port = rtp.local_addr().map(|a| a.port()).unwrap_or(1);
        if port % 2 == 1 || port == u16::MAX {
            continue;
        }
        match UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
            Ok(rtcp) => return Ok((Arc::new(rtp), Arc::new(rtcp))),
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::Io {
        what: "cannot bind an even/odd UDP port pair for RTP/RTCP".into(),
        source: last_err.unwrap_or_else(|| std::io::Error::other("no even port")),
    })
}

/// The answer to a connection past a cap (it has sent no request yet, so no `CSeq`).
pub(super) const BUSY: &[u8] =
    b"RTSP/1.0 503 Service Unavailable\r\nServer: nvrkit-loopcam\r\nContent-Length: 0\r\n\r\n";

/// Accepts on `listener` (RTSPS when `tls` is given) until shutdown, serving each connection
/// on one of the [`Config::threads`](super::Config::threads) runtimes in turn; returns once
/// every connection it accepted has ended.
pub(super) async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
) {
    let mut stop = shutdown.subscribe();
    let mut conns = tokio::task::JoinSet::new();
    let mut threads = Vec::new();
    for i in 1..shared.config.threads.max(1) {
        match ServingThread::start(i, shared.clone(), shutdown.clone()) {
            Ok(t) => threads.push(t),
            // Fewer threads than asked still serve everybody.
            Err(e) => tracing::warn!("cannot start serving thread {i}: {e}"),
        }
    }
    let mut next = 0usize;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let permit = match shared.refuser.limiter().try_acquire(peer.ip()) {
                        Ok(p) => p,
                        // RTSPS: just closed (a 503 would cost a handshake).
                        Err(why) if tls.is_some() => {
                            shared.refuser.warn(peer, why);
                            continue;
                        }
                        Err(why) => {
                            shared.refuser.refuse(sock, peer, why);
                            continue;
                        }
                    };
                    let accepted = Accepted { sock, peer, tls: tls.clone(), permit };
                    next = (next + 1) % (threads.len() + 1);
                    match next.checked_sub(1).and_then(|i| threads.get(i)) {
                        None => {
                            conns.spawn(accepted.serve(shared.clone(), shutdown.subscribe()));
                        }
                        Some(t) => t.hand(accepted),
                    }
                }
                Err(e) => {
                    // EMFILE and friends: log, back off a little, keep serving the others.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    while conns.join_next().await.is_some() {}
    for t in threads {
        t.join().await;
    }
}

/// An accepted connection with its slot under the caps, before it is served.
struct Accepted {
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    permit: Permit,
}

impl Accepted {
    /// Serves the connection to its end on the current runtime (RTSPS: after the handshake).
    async fn serve(self, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
        let Accepted {
            sock,
            peer,
            tls,
            permit,
        } = self;
        let _ = sock.set_nodelay(shared.config.tcp_nodelay);
        let local = sock.local_addr().unwrap_or(peer);
        match tls {
            None => {
                let (rd, wr) = sock.into_split();
                serve(Box::new(rd), Box::new(wr), local, peer, false, shared, stop).await;
            }
            // The handshake runs in the connection's own task, within the request deadline: a
            // slow or silent client holds nobody else up, and holds its slot only that long.
            Some(acceptor) => {
                let limit = shared.config.request_timeout;
                match tokio::time::timeout(limit, acceptor.accept(sock)).await {
                    Ok(Ok(s)) => {
                        let (rd, wr) = tokio::io::split(s);
                        serve(Box::new(rd), Box::new(wr), local, peer, true, shared, stop).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, "RTSPS handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "RTSPS handshake timed out"),
                }
            }
        }
        drop(permit);
    }
}

/// A serving thread: a current-thread runtime that serves the connections handed to it.
struct ServingThread {
    queue: mpsc::UnboundedSender<Handed>,
    /// Closed (the sender dropped) when the thread ends.
    done: oneshot::Receiver<()>,
}

type Handed = (std::net::TcpStream, SocketAddr, Option<TlsAcceptor>, Permit);

impl ServingThread {
    fn start(
        i: usize,
        shared: Arc<Shared>,
        shutdown: watch::Sender<bool>,
    ) -> std::io::Result<ServingThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (queue, mut rx) = mpsc::unbounded_channel::<Handed>();
        let (done_tx, done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("rtsp-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    let mut conns = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            h = rx.recv() => {
                                // The listener ended (shutdown): serve the rest to their end.
                                let Some((sock, peer, tls, permit)) = h else { break };
                                // Registered with this thread's reactor.
                                let sock = match TcpStream::from_std(sock) {
                                    Ok(s) => s,
                                    Err(e) => {
                                        tracing::warn!(%peer, "cannot serve a connection: {e}");
                                        continue;
                                    }
                                };
                                let accepted = Accepted { sock, peer, tls, permit };
                                conns.spawn(accepted.serve(shared.clone(), shutdown.subscribe()));
                            }
                            Some(_) = conns.join_next(), if !conns.is_empty() => {}
                        }
                    }
                    while conns.join_next().await.is_some() {}
                });
                drop(done_tx);
            })?;
        Ok(ServingThread { queue, done })
    }

    /// Hands a connection to the thread (moved as a `std` socket: the listener's reactor lets
    /// go of it).
    fn hand(&self, a: Accepted) {
        let peer = a.peer;
        match a.sock.into_std() {
            Ok(sock) => {
                let _ = self.queue.send((sock, peer, a.tls, a.permit));
            }
            Err(e) => tracing::warn!(%peer, "cannot hand a connection over: {e}"),
        }
    }

    /// Waits for the thread's connections to end, after the listener stopped handing any.
    async fn join(self) {
        drop(self.queue);
        let _ = self.done.await;
    }
}

/// Notes when each playing UDP client last sent RTCP (its liveness).
pub(super) async fn receive_rtcp(
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                // Only addresses a session registered at PLAY count: a spoofed packet from
                // anywhere else must not grow the map.
                if let Ok((n, from)) = r
                    && rtcp::is_receiver_rtcp(&buf[..n])
                {
                    shared.udp_seen.heard(from, Instant::now().into_std());
                }
            }
            _ = stopped(&mut stop) => break,
        }
    }
}

//! Listening: the RTSP and RTSPS accept loops with their connection caps (a refused client
//! gets `503` and a short linger), the serving threads they hand connections to, the UDP pair
//! for RTP/RTCP and UDP RTCP liveness.
//! Connections are dealt over [`Config::threads`](super::Config::threads) runtimes
//! ([`Spread`]: the caller's, which runs the clips' pacers, and serving threads of their own,
//! where a fault loop a request made runs); the rings, the pacers and the UDP pair are shared.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nvrkit_net::Permit;
use nvrkit_net::threads::Spread;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
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
    let (sh, down) = (shared.clone(), shutdown.clone());
    let mut spread = Spread::new(shared.config.threads, "rtsp", move |sock, with| {
        serve_accepted(sock, with, sh.clone(), down.subscribe())
    });
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
                    spread.serve(sock, (peer, tls.clone(), permit));
                }
                Err(e) => {
                    // EMFILE and friends: log, back off a little, keep serving the others.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = spread.reap() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    spread.finish().await;
}

/// An accepted connection's peer, RTSPS acceptor (if any) and slot under the caps.
type Accepted = (SocketAddr, Option<TlsAcceptor>, Permit);

/// Serves an accepted connection to its end on the current runtime (RTSPS: after the handshake).
async fn serve_accepted(
    sock: TcpStream,
    (peer, tls, _permit): Accepted,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let _ = sock.set_nodelay(shared.config.tcp_nodelay);
    let local = sock.local_addr().unwrap_or(peer);
    let Some(acceptor) = tls else {
        let (rd, wr) = sock.into_split();
        return serve(Box::new(rd), Box::new(wr), local, peer, false, shared, stop).await;
    };
    // The handshake runs in the connection's own task, within the request deadline: a slow or
    // silent client holds nobody else up, and holds its slot only that long.
    match tokio::time::timeout(shared.config.request_timeout, acceptor.accept(sock)).await {
        Ok(Ok(s)) => {
            let (rd, wr) = tokio::io::split(s);
            serve(Box::new(rd), Box::new(wr), local, peer, true, shared, stop).await;
        }
        Ok(Err(e)) => tracing::info!(%peer, "RTSPS handshake failed: {e}"),
        Err(_) => tracing::info!(%peer, "RTSPS handshake timed out"),
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

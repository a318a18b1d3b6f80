//! Listening: the RTSP and RTSPS accept loops with their connection caps (a refused client
//! gets `503` and a short linger), the UDP pair for RTP/RTCP and UDP RTCP liveness.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nvrkit_net::Refusal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::time::Instant;

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

/// Refusals delivered at once; past them a refused connection is just closed.
pub(super) const MAX_REFUSING: usize = 256;

/// How long a refused (or oversized-request) connection is kept to deliver its answer: the
/// client's unread bytes are drained meanwhile, so that closing does not reset the connection
/// before the client has read it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The answer to a connection past a cap (it has sent no request yet, so no `CSeq`).
const BUSY: &[u8] =
    b"RTSP/1.0 503 Service Unavailable\r\nServer: nvrkit-loopcam\r\nContent-Length: 0\r\n\r\n";

pub(super) async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
) {
    let mut stop = shutdown.subscribe();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let permit = match shared.limiter.try_acquire(peer.ip()) {
                        Ok(p) => p,
                        Err(refusal) => {
                            refuse(&shared, sock, peer, refusal, tls.is_some());
                            continue;
                        }
                    };
                    let _ = sock.set_nodelay(shared.config.tcp_nodelay);
                    let local = sock.local_addr().unwrap_or(peer);
                    let (shared, stop) = (shared.clone(), shutdown.subscribe());
                    match tls.clone() {
                        None => {
                            let (rd, wr) = sock.into_split();
                            conns.spawn(async move {
                                serve(Box::new(rd), Box::new(wr), local, peer, false, shared, stop).await;
                                drop(permit);
                            });
                        }
                        // The handshake runs in the connection's own task, within the request
                        // deadline: a slow or silent client holds nobody else up, and holds its
                        // slot only that long.
                        Some(acceptor) => {
                            conns.spawn(async move {
                                let limit = shared.config.request_timeout;
                                match tokio::time::timeout(limit, acceptor.accept(sock)).await {
                                    Ok(Ok(s)) => {
                                        let (rd, wr) = tokio::io::split(s);
                                        serve(Box::new(rd), Box::new(wr), local, peer, true, shared, stop).await;
                                    }
                                    Ok(Err(e)) => tracing::info!(%peer, "RTSPS handshake failed: {e}"),
                                    Err(_) => tracing::info!(%peer, "RTSPS handshake timed out"),
                                }
                                drop(permit);
                            });
                        }
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
}

/// Turns away a connection past a cap: `503` on RTSP, delivered in a short-lived task (at most
/// [`MAX_REFUSING`] at once, then one non-blocking try); on RTSPS the connection is just closed
/// (a 503 would cost a handshake).
fn refuse(shared: &Shared, sock: tokio::net::TcpStream, peer: SocketAddr, why: Refusal, tls: bool) {
    warn_refusal(shared, peer, why);
    if tls {
        return;
    }
    match shared.refusing.clone().try_acquire_owned() {
        Ok(slot) => {
            tokio::spawn(async move {
                let (mut rd, mut wr) = sock.into_split();
                if tokio::time::timeout(REFUSAL_LINGER, wr.write_all(BUSY))
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    linger(&mut rd, &mut wr).await;
                }
                drop(slot);
            });
        }
        Err(_) => {
            let _ = sock.try_write(BUSY);
        }
    }
}

/// Closes the write side and reads (and drops) what the client still sends, for at most
/// [`REFUSAL_LINGER`]: the answer just written reaches the client before the connection ends.
pub(super) async fn linger<R, W>(rd: &mut R, wr: &mut W)
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
    W: tokio::io::AsyncWrite + Unpin + ?Sized,
{
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        wr.shutdown().await?;
        let mut sink = [0u8; 1024];
        while rd.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// One warning a second at most, with the counts: a flood must not flood the log too.
fn warn_refusal(shared: &Shared, peer: SocketAddr, why: Refusal) {
    let now = Instant::now();
    let Ok(mut last) = shared.last_refusal_warning.lock() else {
        return;
    };
    if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
        tracing::debug!(%peer, "{why}: 503");
        return;
    }
    *last = Some(now);
    drop(last);
    let l = &shared.limiter;
    tracing::warn!(
        %peer,
        open = l.open(),
        refused = l.refused(),
        "{why} ({} in all{}): 503",
        l.max_total(),
        l.max_per_addr()
            .map_or(String::new(), |n| format!(", {n} per address"))
    );
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
                    && let Ok(mut seen) = shared.udp_seen.lock()
                    && let Some(at) = seen.get_mut(&from)
                {
                    *at = Instant::now();
                }
            }
            _ = stopped(&mut stop) => break,
        }
    }
}

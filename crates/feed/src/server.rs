//! The RTSP socket layer: the RTSP (and RTSPS) listeners, one UDP pair for RTP/RTCP, and a task
//! per connection. It decides nothing: what a connection says and sends, and when, is the
//! sans-I/O [`Driver`](crate::rtsp::driver::Driver)'s, the served loops are the catalog's
//! (`feeds.rs`), [`Server`] is the public handle (`handle.rs`). This file binds and serves;
//! `listen`: accept loops, caps and refusals, the UDP pair, UDP RTCP; `conn`: one connection.

use std::net::SocketAddr;
use std::sync::Arc;

use nvrkit_net::ConnLimiter;
use nvrkit_net::refuse::Refuser;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::config::Config;
use crate::error::{Error, Result};
use crate::feeds::Feeds;
pub use crate::handle::Server;
use crate::rtsp::auth::Auth;
use crate::rtsp::driver::UdpLiveness;

mod conn;
mod listen;

pub(crate) use crate::pacer::stopped;
pub use crate::pacer::{Looper, PacingStats};
use listen::{accept, bind_udp_pair, receive_rtcp};

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) feeds: Feeds,
    config: Config,
    auth: Option<Arc<Auth>>,
    udp: Option<(Arc<UdpSocket>, Arc<UdpSocket>)>,
    /// Their ports.
    pub(crate) udp_ports: Option<(u16, u16)>,
    /// Last RTCP packet from each client port set up over UDP (liveness).
    udp_seen: UdpLiveness,
    /// The connection caps and their refusals, shared by the RTSP and RTSPS listeners.
    pub(crate) refuser: Refuser,
}

/// The sockets bound ([`bind`]), not yet served: the RTSP listener and its address, the RTSPS
/// one with its certificate, the UDP pair.
pub(crate) struct Sockets {
    pub(crate) listener: (TcpListener, SocketAddr),
    pub(crate) tls: Option<((TcpListener, SocketAddr), nvrkit_tls::ServerTls)>,
    udp: Option<(Arc<UdpSocket>, Arc<UdpSocket>)>,
}

/// Binds what `config` asks for: the RTSP listener, the RTSPS one, the UDP pair.
pub(crate) async fn bind(config: &Config) -> Result<Sockets> {
    let listener = listen_on(config.listen).await?;
    let tls = match (config.tls_listen, config.server_tls()?) {
        (Some(addr), Some(tls)) => Some((listen_on(addr).await?, tls)),
        _ => None,
    };
    let udp = match config.udp {
        true => Some(bind_udp_pair(config.listen.ip()).await?),
        false => None,
    };
    Ok(Sockets { listener, tls, udp })
}

/// Serves `feeds` on `sockets` until `shutdown`: the accept loops and UDP RTCP liveness.
pub(crate) fn serve(
    sockets: Sockets,
    config: Config,
    feeds: Feeds,
    shutdown: &watch::Sender<bool>,
) -> (Arc<Shared>, Vec<JoinHandle<()>>) {
    let port = |s: &UdpSocket| s.local_addr().map_or(0, |a| a.port());
    let shared = Arc::new(Shared {
        feeds,
        auth: config.auth.clone().map(Arc::new),
        refuser: Refuser::new(
            ConnLimiter::new(config.max_conns, config.max_conns_per_addr),
            crate::rtsp::core::BUSY,
        ),
        config,
        udp_ports: sockets.udp.as_ref().map(|(a, b)| (port(a), port(b))),
        udp: sockets.udp,
        udp_seen: UdpLiveness::default(),
    });
    let mut tasks = Vec::new();
    if let Some((_, rtcp_sock)) = &shared.udp {
        let (sock, stop) = (rtcp_sock.clone(), shutdown.subscribe());
        tasks.push(tokio::spawn(receive_rtcp(sock, shared.clone(), stop)));
    }
    let accept_on = |l, tls| tokio::spawn(accept(l, tls, shared.clone(), shutdown.clone()));
    tasks.push(accept_on(sockets.listener.0, None));
    if let Some(((l, _), tls)) = sockets.tls {
        tasks.push(accept_on(l, Some(tls.acceptor)));
    }
    (shared, tasks)
}

/// A TCP listener on `addr`, and the address it got.
async fn listen_on(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let io = |what: String| move |source| Error::Io { what, source };
    let l = TcpListener::bind(addr)
        .await
        .map_err(io(format!("cannot listen on {addr}")))?;
    let bound = l.local_addr().map_err(io("local address".into()))?;
    Ok((l, bound))
}

//! The RTSP socket layer, sockets and timers only: a TCP listener for RTSP (and one for
//! RTSPS), one shared UDP pair for RTP/RTCP, and one task per connection. What a connection
//! says, sends and when (responses, RTP and RTCP packets, timeouts, liveness, the report
//! schedule, which ring PLAY reads, UDP catch-up pacing) is the sans-I/O session core's
//! ([`crate::rtsp::driver::Driver`]); a connection task only reads, writes, sleeps until the
//! instant the core gave, and awaits the ring. The served loops and their rings are the
//! catalog's ([`crate::feeds`]), their pacers [`crate::pacer`]'s.
//!
//! - this file: [`Server`] (binding, start, the socket-side accessors);
//! - `listen`: the accept loops, connection caps and refusals, the UDP pair, UDP RTCP liveness;
//! - `conn`: one connection's I/O loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use nvrkit_net::ConnLimiter;
use nvrkit_net::refuse::Refuser;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use crate::config::Config;
use crate::error::{Error, Result};
use crate::feeds::Feeds;
use crate::loop_source::Clip;
use crate::rtsp::auth::Auth;
use crate::source::LiveSource;

mod conn;
mod listen;

pub use crate::pacer::{Looper, PacingStats};
use listen::{accept, bind_udp_pair, receive_rtcp};

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) feeds: Feeds,
    config: Config,
    auth: Option<Arc<Auth>>,
    udp: Option<(Arc<UdpSocket>, Arc<UdpSocket>)>,
    /// Last RTCP packet from each client address (UDP liveness).
    udp_seen: Mutex<HashMap<SocketAddr, Instant>>,
    /// The connection caps and their refusals, shared by the RTSP and RTSPS listeners.
    refuser: Refuser,
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    /// The RTSPS listener's address and certificate fingerprint, when on.
    tls: Option<(SocketAddr, String)>,
    udp_ports: Option<(u16, u16)>,
    pub(crate) shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the sockets and starts looping every clip, all from the same instant. Clip names
    /// must be unique; a clip named `NAME/sub` is the sub stream of clip `NAME`, which must be
    /// there, with a loop aligned with it ([`crate::substream::check_aligned`]).
    pub async fn start(config: Config, clips: Vec<Arc<Clip>>) -> Result<Server> {
        Server::start_with(config, clips, Vec::new()).await
    }

    /// [`Server::start`], also serving `live` rings filled elsewhere (a camera's; see
    /// [`crate::source`]). Every path (clip, fault alias, live source) must be unique.
    pub async fn start_with(
        config: Config,
        clips: Vec<Arc<Clip>>,
        live: Vec<LiveSource>,
    ) -> Result<Server> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Io {
                what: format!("cannot listen on {}", config.listen),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Io {
            what: "local address".into(),
            source,
        })?;
        let tls_listener = match config.tls_listen {
            None => None,
            Some(addr) => {
                let tls = nvrkit_tls::server_tls(&config.tls, &[])?.ok_or(Error::Unusable {
                    name: addr.to_string(),
                    what: "an RTSPS listener needs a certificate (TlsSource::Disabled given)"
                        .into(),
                })?;
                let l = TcpListener::bind(addr).await.map_err(|source| Error::Io {
                    what: format!("cannot listen on {addr}"),
                    source,
                })?;
                let bound = l.local_addr().map_err(|source| Error::Io {
                    what: "local address".into(),
                    source,
                })?;
                Some((l, bound, tls))
            }
        };
        let udp = if config.udp {
            Some(bind_udp_pair(config.listen.ip()).await?)
        } else {
            None
        };
        let udp_ports = udp.as_ref().map(|(a, b)| {
            (
                a.local_addr().map(|x| x.port()).unwrap_or(0),
                b.local_addr().map(|x| x.port()).unwrap_or(0),
            )
        });
        let (shutdown, _) = watch::channel(false);
        let (feeds, mut tasks) = Feeds::start(&config, clips, live, &shutdown)?;
        let shared = Arc::new(Shared {
            feeds,
            auth: config.auth.clone().map(Arc::new),
            refuser: Refuser::new(
                ConnLimiter::new(config.max_conns, config.max_conns_per_addr),
                listen::BUSY,
            ),
            config,
            udp,
            udp_seen: Mutex::new(HashMap::new()),
        });
        if let Some((_, rtcp_sock)) = &shared.udp {
            tasks.push(tokio::spawn(receive_rtcp(
                rtcp_sock.clone(),
                shared.clone(),
                shutdown.subscribe(),
            )));
        }
        tasks.push(tokio::spawn(accept(
            listener,
            None,
            shared.clone(),
            shutdown.clone(),
        )));
        let tls = tls_listener.map(|(l, bound, tls)| {
            let fingerprint = tls.fingerprint.clone();
            tasks.push(tokio::spawn(accept(
                l,
                Some(tls.acceptor),
                shared.clone(),
                shutdown.clone(),
            )));
            (bound, fingerprint)
        });
        Ok(Server {
            local_addr,
            tls,
            udp_ports,
            shared,
            shutdown,
            tasks,
        })
    }

    /// The RTSP address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Client connections open now, RTSP and RTSPS together (a camera's own count of its
    /// sessions, for a test that proves a restream holds one).
    pub fn connections(&self) -> usize {
        self.shared.refuser.limiter().open()
    }

    /// The RTSPS address actually bound, when [`Config::tls_listen`] is set.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|(a, _)| *a)
    }

    /// SHA-256 fingerprint of the RTSPS certificate (`AB:CD:…`, as
    /// `openssl x509 -fingerprint -sha256` prints it), when RTSPS is on.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|(_, f)| f.as_str())
    }

    /// The server's RTP and RTCP UDP ports, when UDP is on.
    pub fn udp_ports(&self) -> Option<(u16, u16)> {
        self.udp_ports
    }

    /// Stops: every session gets RTCP BYE, every task ends.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared.feeds.join().await;
    }
}

/// Resolves once shutdown was signalled, also when that happened before `stop` was subscribed
/// (a task that subscribes in its own body may do so after [`Server::shutdown`] sent it:
/// waiting for a *change* would then wait for ever).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

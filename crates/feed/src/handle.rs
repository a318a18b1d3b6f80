//! The public handle of a running server ([`Server`], re-exported as `server::Server`): it
//! starts the catalog of served loops ([`crate::feeds`]) and the socket layer
//! ([`crate::server`]), answers what they hold (addresses, paths and URLs, rings, clips,
//! pacing, connection count), and stops them.

use std::net::SocketAddr;
use std::sync::Arc;

use nvrkit_ring::Ring;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::Result;
use crate::feeds::Feeds;
use crate::loop_source::Clip;
use crate::pacer::PacingStats;
use crate::server::Shared;
use crate::source::LiveSource;

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    /// The RTSPS listener's address and certificate fingerprint, when on.
    tls: Option<(SocketAddr, String)>,
    shared: Arc<Shared>,
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
        // Bound first: a port taken starts no pacer.
        let sockets = crate::server::bind(&config).await?;
        let (shutdown, _) = watch::channel(false);
        let (feeds, mut tasks) = Feeds::start(&config, clips, live, &shutdown)?;
        let local_addr = sockets.listener.1;
        let tls = (sockets.tls.as_ref()).map(|((_, a), t)| (*a, t.fingerprint.clone()));
        let (shared, listening) = crate::server::serve(sockets, config, feeds, &shutdown);
        tasks.extend(listening);
        Ok(Server {
            local_addr,
            tls,
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
        self.shared.udp_ports
    }

    /// The stream names, sorted.
    pub fn names(&self) -> Vec<String> {
        let feeds = &self.shared.feeds;
        let mut v: Vec<String> = feeds.feeds.keys().cloned().collect();
        v.extend(feeds.live.keys().cloned());
        v.sort();
        v
    }

    /// The URL of every stream for a client that reaches this server at `host` (an IP or name,
    /// without port).
    pub fn urls(&self, host: &str) -> Vec<String> {
        self.urls_at("rtsp", host, self.local_addr().port())
    }

    /// The `rtsps://` URL of every stream, when RTSPS is on (else none).
    pub fn tls_urls(&self, host: &str) -> Vec<String> {
        match self.tls_local_addr() {
            Some(addr) => self.urls_at("rtsps", host, addr.port()),
            None => Vec::new(),
        }
    }

    fn urls_at(&self, scheme: &str, host: &str, port: u16) -> Vec<String> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        self.names()
            .iter()
            .map(|n| format!("{scheme}://{host}:{port}/{n}"))
            .collect()
    }

    /// The feeds made for URL queries whose faults change frames: `path?frame faults`, sorted.
    pub fn frame_variants(&self) -> Vec<String> {
        self.shared.feeds.frame_variants()
    }

    /// The ring of a stream (to watch it, or to read it in-process).
    pub fn ring(&self, name: &str) -> Option<Ring> {
        let feeds = &self.shared.feeds;
        match feeds.feeds.get(name) {
            Some(f) => Some(f.ring.clone()),
            None => feeds.live.get(name).map(|l| l.ring().clone()),
        }
    }

    /// The clip served as a stream (to publish the same loop over RTMP).
    pub fn clip(&self, name: &str) -> Option<Arc<Clip>> {
        self.shared.feeds.feeds.get(name).map(|f| f.clip.clone())
    }

    /// The loop period of a stream, in microseconds.
    pub fn period_micros(&self, name: &str) -> Option<i64> {
        self.shared
            .feeds
            .feeds
            .get(name)
            .map(|f| f.clip.period_micros())
    }

    /// Pacing punctuality of a stream so far.
    pub fn pacing(&self, name: &str) -> Option<PacingStats> {
        self.shared.feeds.pacing(name)
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

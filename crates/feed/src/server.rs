//! The tokio layer, sockets and timers only: a TCP listener for RTSP (and one for RTSPS), one
//! shared UDP pair for RTP/RTCP, one pacer task per clip feeding its rings, and one task per
//! connection. What a connection says and sends (responses, RTP sequence numbers and
//! timestamps, RTCP) is the sans-I/O session core's ([`crate::rtsp::core::Connection`]); a
//! connection task only reads, waits and writes.
//!
//! - this file: [`Config`], [`Server`] (binding, the clips' and fault aliases' feeds and rings,
//!   and those made for URL queries whose faults change frames);
//! - `listen`: the accept loops, connection caps and refusals, the UDP pair, UDP RTCP liveness;
//! - `conn`: one connection: bytes to the core, frames from the ring to the core, the core's
//!   packets to the socket; deadlines and session timeouts, and the deadlines the core gives
//!   for the timed faults (`jitter`'s held packets, `disconnect_every`);
//! - `pacer`: frames into rings at their deadlines, [`Looper`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvrkit_media::WallTime;
use nvrkit_net::ConnLimiter;
use nvrkit_net::refuse::Refuser;
use nvrkit_ring::Ring;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::fault::frames::{LoopGeometry, loop_clip};
use crate::fault::{Alias, FaultSet};
use crate::loop_source::{Clip, LoopSource};
use crate::rtsp::auth::Auth;
use crate::rtsp::core::{Catalog, StreamInfo};
use crate::source::LiveSource;

mod conn;
mod fault_feeds;
mod listen;
mod pacer;

use listen::{accept, bind_udp_pair, receive_rtcp};
use pacer::{Lateness, Timing, pace};
pub use pacer::{Looper, PacingStats};

/// Server settings. `Default` is what `loopcam` uses with no flags, except the listen address.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where RTSP listens.
    pub listen: SocketAddr,
    /// Largest RTP packet, header included (default 1400).
    pub mtu: usize,
    /// Credentials required on every path (Basic and Digest), when set.
    pub auth: Option<Auth>,
    /// A new client waits for the next keyframe instead of getting the current GOP at once.
    pub strict_start: bool,
    /// A set-up RTSP session with no keepalive (a complete request, or over UDP the client's
    /// RTCP) for this long ends (default 60 s), and the `Session` header announces it. A session
    /// playing over TCP lives as long as its connection: the media flowing is its liveness.
    pub session_timeout: Duration,
    /// Most connections at once, RTSP and RTSPS together (default 4,096): one more is answered
    /// `RTSP/1.0 503 Service Unavailable` (RTSPS: closed before the handshake), with a warning
    /// logged at most once a second.
    pub max_conns: usize,
    /// Most connections at once from one client address (IPv4 address, IPv6 /64), answered as
    /// [`Config::max_conns`] past it. Off by default: a VMS opens hundreds of sessions from one
    /// address.
    pub max_conns_per_addr: Option<usize>,
    /// An RTSP request must be complete this long after its first byte (default 10 s): a
    /// trickling client cannot stretch it. Also the deadline of an RTSPS handshake.
    pub request_timeout: Duration,
    /// A connection with no complete request for this long is closed (default 60 s); a partial
    /// request never resets it. A connection holding a set-up session waits
    /// [`Config::session_timeout`] instead when that is longer; one playing over TCP is alive
    /// while its media flows.
    pub idle_timeout: Duration,
    /// Offer RTP over UDP (default true).
    pub udp: bool,
    /// How much of each loop the ring keeps for late joiners (default 4 s, and always at least
    /// the current GOP).
    pub ring_duration: Duration,
    /// Every session's first RTP timestamp (tests use one just below 2³² to check the wrap);
    /// random when `None`.
    pub initial_rtptime: Option<u32>,
    /// Catch-up bursts over UDP are paced at most this many times real time (default 4).
    pub udp_burst_speed: u32,
    /// Set `TCP_NODELAY` on RTSP connections (default false, as gst-rtsp-server leaves it).
    /// Without it the kernel joins the frames a slow client has not yet acknowledged into one
    /// segment: at 500 clients that halves the server's CPU (21.5 % → 10.8 % of a core) and
    /// lowers delivery jitter (p99 10.7 → 5.2 ms). A frame goes out at once when nothing is
    /// unacknowledged; RTSP requests acknowledge all earlier data, so responses are not held.
    /// The cost, where the round trip is long or the client delays its ACKs (up to 200 ms on
    /// Windows): a frame's last partial segment can wait for the previous one's ACK, which
    /// bunches small frames (audio-only, low bitrates); set this for such clients. Measured
    /// (on loopback) with `benches/compare/loopcam.sh` and `benches/compare/rtsp_jitter.py`.
    pub tcp_nodelay: bool,
    /// A second listener for RTSP over TLS (`rtsps://`, RFC 7826 §19; usually port 322), when
    /// set. Its sessions carry RTP interleaved on the TLS connection: UDP is not offered there
    /// (plain RTP beside an encrypted control channel would defeat the point; SRTP is not done).
    pub tls_listen: Option<SocketAddr>,
    /// The RTSPS certificate: PEM files, or (the default) a self-signed one made at start whose
    /// SHA-256 fingerprint [`Server::tls_fingerprint`] gives.
    pub tls: nvrkit_tls::TlsSource,
    /// Fault-file aliases ([`crate::fault::parse_fault_file`]): each served as its own path,
    /// playing a clip with its faults. A clip it names must be among those served.
    pub aliases: Vec<Alias>,
    /// Scripted alarms: each clip's pacer reports the frames they are cued on as it releases
    /// them ([`crate::alarm`]); `None` (the default): no alarms.
    pub alarms: Option<crate::alarm::Tap>,
    /// Number every video frame with an SEI stamp ([`crate::stamp`]; `nvr selftest`'s demo
    /// camera). Off by default.
    pub stamp_frames: bool,
    /// Serving threads (default: one per core): connections go round-robin to the caller's
    /// runtime and to `threads - 1` current-thread runtimes on threads of their own, each
    /// serving its connections to their end; 1 serves all on the caller's runtime.
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8554)),
            mtu: 1400,
            auth: None,
            strict_start: false,
            session_timeout: Duration::from_secs(60),
            max_conns: 4096,
            max_conns_per_addr: None,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            udp: true,
            ring_duration: Duration::from_secs(4),
            initial_rtptime: None,
            udp_burst_speed: 4,
            tcp_nodelay: false,
            tls_listen: None,
            tls: nvrkit_tls::TlsSource::SelfSigned,
            aliases: Vec::new(),
            alarms: None,
            stamp_frames: false,
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        }
    }
}

/// One served path: its description and the ring its pacer fills.
#[derive(Debug)]
struct Feed {
    info: Arc<StreamInfo>,
    ring: Ring,
    /// The same loop, video frames only: clients that set up only the video read this one, so
    /// they are not woken for audio frames they would drop (72 wakeups a second become 25 for a
    /// 25 fps clip with 48 kHz AAC, at every one of hundreds of clients).
    video_ring: Ring,
    clip: Arc<Clip>,
    /// The served clip `clip` was made from by frame faults (`clip` itself without them).
    origin: Arc<Clip>,
    pacing: Arc<Mutex<Lateness>>,
}

impl Feed {
    /// A path playing `origin` with `faults` (its own, announced in its [`StreamInfo`]) and the
    /// frame faults of `loop_faults` applied to its loop ([`loop_clip`]; `served` are the clips
    /// `sps_change_at_seam` may name), and the pacer task filling its own rings from
    /// `start_wall` on. Refused when the frame faults cannot be applied to the clip.
    #[allow(clippy::too_many_arguments)] // reason: the path, its loop and the server's clock
    fn spawn(
        origin: Arc<Clip>,
        name: &str,
        faults: FaultSet,
        loop_faults: &FaultSet,
        served: &[Arc<Clip>],
        config: &Config,
        start_wall: WallTime,
        stop: watch::Receiver<bool>,
    ) -> Result<(Arc<Feed>, JoinHandle<()>)> {
        let clip = loop_clip(&origin, loop_faults, served)?;
        let ring_config = nvrkit_ring::Config::new()
            .max_duration(config.ring_duration)
            .max_bytes(256 << 20)
            .video_stream(clip.master());
        let all: Vec<usize> = (0..clip.tracks().len()).collect();
        let (writer, ring) = nvrkit_ring::ring(
            ring_config
                .clone()
                .max_frames(clip.ring_frames(&all, config.ring_duration)),
        )?;
        let (video_writer, video_ring) = nvrkit_ring::ring(
            ring_config.max_frames(clip.ring_frames(&[clip.master()], config.ring_duration)),
        )?;
        let mut source = LoopSource::new(clip.clone(), start_wall);
        if config.stamp_frames {
            source = source.stamped();
        }
        let pacing = Arc::new(Mutex::new(Lateness::new()));
        // Scripted alarms are cued on the clip's own path only (an alias or a fault loop of it
        // would raise each alarm again).
        let cues = match &config.alarms {
            Some(tap) if name == origin.name() && loop_faults.is_empty() => tap.cues(&clip)?,
            _ => None,
        };
        let task = tokio::spawn(pace(
            source,
            writer,
            Some(video_writer),
            pacing.clone(),
            stop,
            Timing::EachFrame,
            cues,
        ));
        let info = StreamInfo {
            faults,
            laps: Some(clip.laps()),
            geometry: Some(LoopGeometry::of(&clip)),
            ..StreamInfo::new(name, clip.tracks().to_vec())
        };
        let feed = Feed {
            info: Arc::new(info),
            ring,
            video_ring,
            clip,
            origin,
            pacing,
        };
        Ok((Arc::new(feed), task))
    }

    /// Another path reading `base`'s rings, with faults of its own that do not change frames.
    fn alias(base: &Feed, name: &str, faults: FaultSet) -> Arc<Feed> {
        let info = StreamInfo {
            name: name.to_owned(),
            faults,
            ..StreamInfo::clone(&base.info)
        };
        Arc::new(Feed {
            info: Arc::new(info),
            ring: base.ring.clone(),
            video_ring: base.video_ring.clone(),
            clip: base.clip.clone(),
            origin: base.origin.clone(),
            pacing: base.pacing.clone(),
        })
    }
}

#[derive(Debug)]
struct Shared {
    feeds: HashMap<String, Arc<Feed>>,
    /// Rings filled elsewhere (a camera's), served as they come ([`LiveSource`]).
    live: HashMap<String, LiveSource>,
    config: Config,
    auth: Option<Arc<Auth>>,
    udp: Option<(Arc<UdpSocket>, Arc<UdpSocket>)>,
    /// Last RTCP packet from each client address (UDP liveness).
    udp_seen: Mutex<HashMap<SocketAddr, Instant>>,
    /// The connection caps and their refusals, shared by the RTSP and RTSPS listeners.
    refuser: Refuser,
    /// Every served clip (what `sps_change_at_seam=CLIP` names).
    clips: Vec<Arc<Clip>>,
    /// Loops of their own for URL queries whose faults change frames.
    fault_feeds: fault_feeds::FaultFeeds,
    /// Shutdown, for the pacers of [`Shared::fault_feeds`].
    stop: watch::Receiver<bool>,
}

impl Catalog for Shared {
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
        match self.feeds.get(name) {
            Some(f) => Some(f.info.clone()),
            None => self.live.get(name).and_then(LiveSource::info),
        }
    }

    fn stream_with(
        &self,
        name: &str,
        faults: &FaultSet,
    ) -> std::result::Result<Option<Arc<StreamInfo>>, String> {
        match self.feed_for(name, faults)? {
            Some(f) => Ok(Some(f.info.clone())),
            // A live source takes no frame faults of its own: its stream as it is.
            None => Ok(self.live.get(name).and_then(LiveSource::info)),
        }
    }
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    /// The RTSPS listener's address and certificate fingerprint, when on.
    tls: Option<(SocketAddr, String)>,
    udp_ports: Option<(u16, u16)>,
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
        let mut tasks = Vec::new();
        let mut feeds = HashMap::new();
        let start_wall = WallTime::now();
        for clip in &clips {
            let name = clip.name().to_owned();
            if feeds.contains_key(&name) {
                return Err(Error::DuplicateName(name));
            }
            let (feed, task) = Feed::spawn(
                clip.clone(),
                &name,
                FaultSet::default(),
                &FaultSet::default(),
                &clips,
                &config,
                start_wall,
                shutdown.subscribe(),
            )?;
            tasks.push(task);
            feeds.insert(name, feed);
        }
        // Fault-file aliases: the clip's ring, unless their faults change frames.
        for a in &config.aliases {
            let Some(clip) = clips.iter().find(|c| c.name() == a.clip) else {
                return Err(Error::Unusable {
                    name: a.alias.clone(),
                    what: format!(
                        "the fault file names clip {:?}, which is not served",
                        a.clip
                    ),
                });
            };
            if feeds.contains_key(&a.alias) {
                return Err(Error::DuplicateName(a.alias.clone()));
            }
            let feed = if a.faults.changes_frames() {
                let (feed, task) = Feed::spawn(
                    clip.clone(),
                    &a.alias,
                    a.faults.clone(),
                    &a.faults,
                    &clips,
                    &config,
                    start_wall,
                    shutdown.subscribe(),
                )?;
                tasks.push(task);
                feed
            } else {
                let base = &feeds[clip.name()];
                Feed::alias(base, &a.alias, a.faults.clone())
            };
            feeds.insert(a.alias.clone(), feed);
        }
        // A sub stream (`NAME/sub`) needs its main stream, and a loop aligned with it.
        for (name, feed) in &feeds {
            if let Some(main) = crate::substream::main_of(name) {
                let Some(main) = feeds.get(main) else {
                    return Err(Error::Unusable {
                        name: name.clone(),
                        what: format!(
                            "a sub stream needs its main stream {main:?}, which is not served"
                        ),
                    });
                };
                crate::substream::check_aligned(&main.clip, &feed.clip)?;
            }
        }
        let mut live_sources = HashMap::new();
        for l in live {
            if feeds.contains_key(l.name()) || live_sources.contains_key(l.name()) {
                return Err(Error::DuplicateName(l.name().to_owned()));
            }
            live_sources.insert(l.name().to_owned(), l);
        }
        let shared = Arc::new(Shared {
            feeds,
            live: live_sources,
            auth: config.auth.clone().map(Arc::new),
            refuser: Refuser::new(
                ConnLimiter::new(config.max_conns, config.max_conns_per_addr),
                listen::BUSY,
            ),
            config,
            udp,
            udp_seen: Mutex::new(HashMap::new()),
            fault_feeds: fault_feeds::FaultFeeds::default(),
            stop: shutdown.subscribe(),
            clips,
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

    /// The stream names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.feeds.keys().cloned().collect();
        v.extend(self.shared.live.keys().cloned());
        v.sort();
        v
    }

    /// The URL of every stream for a client that reaches this server at `host` (an IP or name,
    /// without port).
    pub fn urls(&self, host: &str) -> Vec<String> {
        self.urls_at("rtsp", host, self.local_addr.port())
    }

    /// The `rtsps://` URL of every stream, when RTSPS is on (else none).
    pub fn tls_urls(&self, host: &str) -> Vec<String> {
        match &self.tls {
            Some((addr, _)) => self.urls_at("rtsps", host, addr.port()),
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
        self.shared.fault_feeds.names()
    }

    /// The ring of a stream (to watch it, or to read it in-process).
    pub fn ring(&self, name: &str) -> Option<Ring> {
        match self.shared.feeds.get(name) {
            Some(f) => Some(f.ring.clone()),
            None => self.shared.live.get(name).map(|l| l.ring().clone()),
        }
    }

    /// The clip served as a stream (to publish the same loop over RTMP).
    pub fn clip(&self, name: &str) -> Option<Arc<Clip>> {
        self.shared.feeds.get(name).map(|f| f.clip.clone())
    }

    /// The loop period of a stream, in microseconds.
    pub fn period_micros(&self, name: &str) -> Option<i64> {
        self.shared.feeds.get(name).map(|f| f.clip.period_micros())
    }

    /// Pacing punctuality of a stream so far.
    pub fn pacing(&self, name: &str) -> Option<PacingStats> {
        let feed = self.shared.feeds.get(name)?;
        let l = feed.pacing.lock().ok()?;
        Some(l.stats())
    }

    /// Stops: every session gets RTCP BYE, every task ends.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared.fault_feeds.join().await;
    }
}

/// Resolves once shutdown was signalled, also when that happened before `stop` was subscribed
/// (a task that subscribes in its own body may do so after [`Server::shutdown`] sent it:
/// waiting for a *change* would then wait for ever).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

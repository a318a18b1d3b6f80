//! The tokio layer: a TCP listener for RTSP, one shared UDP pair for RTP/RTCP, one pacer task
//! per clip feeding its ring, and one task per connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use nvrkit_media::nal::VideoCodec;
use nvrkit_media::time::rescale;
use nvrkit_media::{Frame, WallTime};
use nvrkit_ring::{RecvError, Ring, Start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use nvrkit_net::{ConnLimiter, Expired, MessageClock, Refusal};

use crate::error::{Error, Result};
use crate::loop_source::{Clip, LoopSource};
use crate::rtp::{Packetizer, Payload, rtcp};
use crate::rtsp::auth::Auth;
use crate::rtsp::core::{Action, Catalog, ConnConfig, Connection, StreamInfo, Transport};
use crate::rtsp::framing::{Framer, Incoming};
use crate::sdp;

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
        }
    }
}

/// One served clip: its description and the ring its pacer fills.
#[derive(Debug)]
struct Feed {
    info: Arc<StreamInfo>,
    ring: Ring,
    /// The same loop, video frames only: clients that set up only the video read this one, so
    /// they are not woken for audio frames they would drop (72 wakeups a second become 25 for a
    /// 25 fps clip with 48 kHz AAC, at every one of hundreds of clients).
    video_ring: Ring,
    clip: Arc<Clip>,
    pacing: Arc<Mutex<Lateness>>,
}

/// How late the pacer pushed frames, against their deadlines: a histogram in 100 µs buckets
/// (the last bucket holds everything from 100 ms on).
#[derive(Debug, Clone)]
struct Lateness {
    buckets: Vec<u64>,
    max_us: u64,
}

impl Lateness {
    const BUCKET_US: u64 = 100;

    fn new() -> Self {
        Lateness {
            buckets: vec![0; 1001],
            max_us: 0,
        }
    }

    fn record(&mut self, late: Duration) {
        let us = late.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = ((us / Self::BUCKET_US) as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.max_us = self.max_us.max(us);
    }

    fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return (i as u64 + 1) * Self::BUCKET_US;
            }
        }
        self.max_us
    }
}

/// How punctually a stream's frames were released to its ring: lateness of each push after
/// its deadline (start + DTS on the monotonic clock). Quantiles are upper bounds to 100 µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingStats {
    /// Frames pushed.
    pub frames: u64,
    /// Median lateness, µs.
    pub p50_us: u64,
    /// 99th percentile lateness, µs.
    pub p99_us: u64,
    /// Largest lateness, µs.
    pub max_us: u64,
}

#[derive(Debug)]
struct Shared {
    feeds: HashMap<String, Arc<Feed>>,
    config: Config,
    auth: Option<Arc<Auth>>,
    udp: Option<(Arc<UdpSocket>, Arc<UdpSocket>)>,
    /// Last RTCP packet from each client address (UDP liveness).
    udp_seen: Mutex<HashMap<SocketAddr, Instant>>,
    /// The connection caps, shared by the RTSP and RTSPS listeners.
    limiter: Arc<ConnLimiter>,
    /// Refusals being delivered (each lingers up to [`REFUSAL_LINGER`]).
    refusing: Arc<tokio::sync::Semaphore>,
    /// When a refusal was last logged as a warning.
    last_refusal_warning: Mutex<Option<Instant>>,
}

impl Catalog for Shared {
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
        self.feeds.get(name).map(|f| f.info.clone())
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
    /// Binds the sockets and starts looping every clip. Clip names must be unique.
    pub async fn start(config: Config, clips: Vec<Arc<Clip>>) -> Result<Server> {
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
        for clip in clips {
            let name = clip.name().to_owned();
            if feeds.contains_key(&name) {
                return Err(Error::DuplicateName(name));
            }
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
            let source = LoopSource::new(clip.clone(), start_wall);
            let pacing = Arc::new(Mutex::new(Lateness::new()));
            tasks.push(tokio::spawn(pace(
                source,
                writer,
                Some(video_writer),
                pacing.clone(),
                shutdown.subscribe(),
                Timing::EachFrame,
            )));
            feeds.insert(
                name.clone(),
                Arc::new(Feed {
                    info: Arc::new(StreamInfo {
                        name,
                        tracks: clip.tracks().to_vec(),
                    }),
                    ring,
                    video_ring,
                    clip,
                    pacing,
                }),
            );
        }
        let shared = Arc::new(Shared {
            feeds,
            auth: config.auth.clone().map(Arc::new),
            limiter: ConnLimiter::new(config.max_conns, config.max_conns_per_addr),
            config,
            udp,
            udp_seen: Mutex::new(HashMap::new()),
            refusing: Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING)),
            last_refusal_warning: Mutex::new(None),
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

    /// The ring of a stream (to watch it, or to read it in-process).
    pub fn ring(&self, name: &str) -> Option<Ring> {
        self.shared.feeds.get(name).map(|f| f.ring.clone())
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
        let l = feed.pacing.lock().ok()?.clone();
        Some(PacingStats {
            frames: l.buckets.iter().sum(),
            p50_us: l.quantile_us(0.5),
            p99_us: l.quantile_us(0.99),
            max_us: l.max_us,
        })
    }

    /// Stops: every session gets RTCP BYE, every task ends.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A clip looping into a ring of its own, paced exactly as the server's streams are: the source
/// of an RTMP push that runs without an RTSP server (`loopcam push`).
#[derive(Debug)]
pub struct Looper {
    ring: Ring,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Looper {
    /// Starts looping `clip` into a new ring that keeps `ring_duration` (and always the current
    /// GOP). Needs a tokio runtime.
    pub fn start(clip: Arc<Clip>, ring_duration: Duration) -> Result<Looper> {
        let ring_config = nvrkit_ring::Config::new()
            .max_duration(ring_duration.max(Duration::from_secs(1)))
            .max_bytes(256 << 20)
            .video_stream(clip.master());
        let all: Vec<usize> = (0..clip.tracks().len()).collect();
        let frames = clip.ring_frames(&all, ring_duration.max(Duration::from_secs(1)));
        let (writer, ring) = nvrkit_ring::ring(ring_config.max_frames(frames))?;
        let (stop, task) = spawn_pacer(clip, writer, Timing::WithMaster);
        Ok(Looper { ring, stop, task })
    }

    /// The ring the loop fills.
    pub fn ring(&self) -> Ring {
        self.ring.clone()
    }

    /// Stops the pacer; readers of the ring see it close.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts a pacer looping `clip` into `writer` from now; send `true` to stop it.
fn spawn_pacer(
    clip: Arc<Clip>,
    writer: nvrkit_ring::Writer,
    timing: Timing,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stop_rx) = watch::channel(false);
    let source = LoopSource::new(clip, WallTime::now());
    let pacing = Arc::new(Mutex::new(Lateness::new()));
    let task = tokio::spawn(pace(source, writer, None, pacing, stop_rx, timing));
    (stop, task)
}

/// Binds an RTP socket on an even port and RTCP on the next one (RFC 3550 §11).
async fn bind_udp_pair(ip: IpAddr) -> Result<(Arc<UdpSocket>, Arc<UdpSocket>)> {
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

/// How the pacer times the frames of the streams other than the master (audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timing {
    /// Every frame at its own deadline (RTSP: audio leaves when it is due).
    EachFrame,
    /// Other streams' frames wait for the next master frame and are pushed with it, at its
    /// deadline: at most one video frame interval late, and one wakeup per video frame instead
    /// of one per frame. For a lone RTMP push (`Looper`), where the server only forwards FLV
    /// tags by their timestamps, this cuts wakeups and sends from 72 to 25 a second for a
    /// 25 fps clip with 48 kHz AAC.
    WithMaster,
}

/// Pushes a clip's frames into its ring at their deadlines (start + DTS on the monotonic clock),
/// so pacing never accumulates drift.
async fn pace(
    mut source: LoopSource,
    mut writer: nvrkit_ring::Writer,
    mut video_only: Option<nvrkit_ring::Writer>,
    pacing: Arc<Mutex<Lateness>>,
    mut stop: watch::Receiver<bool>,
    timing: Timing,
) {
    let master = source.clip().master();
    let start = Instant::now();
    let mut held: Vec<Frame> = Vec::new();
    loop {
        let Some(frame) = source.next() else { break };
        // A clip whose video pauses for long (or has none for a while) still sends its audio:
        // at most 16 frames wait.
        if timing == Timing::WithMaster && frame.stream != master && held.len() < 16 {
            held.push(frame);
            continue;
        }
        let due = start + Duration::from_micros(source.deadline_micros(&frame).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.changed() => break,
        }
        if let Ok(mut p) = pacing.lock() {
            p.record(Instant::now().saturating_duration_since(due));
        }
        let mut failed = false;
        for f in held.drain(..) {
            if let Err(e) = writer.push(f) {
                tracing::error!(clip = source.clip().name(), "ring push failed: {e}");
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
        if frame.stream == master
            && let Some(v) = video_only.as_mut()
            && let Err(e) = v.push(frame.clone())
        {
            tracing::error!(clip = source.clip().name(), "ring push failed: {e}");
            break;
        }
        if let Err(e) = writer.push(frame) {
            tracing::error!(clip = source.clip().name(), "ring push failed: {e}");
            break;
        }
    }
}

/// Refusals delivered at once; past them a refused connection is just closed.
const MAX_REFUSING: usize = 256;

/// How long a refused (or oversized-request) connection is kept to deliver its answer: the
/// client's unread bytes are drained meanwhile, so that closing does not reset the connection
/// before the client has read it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The answer to a connection past a cap (it has sent no request yet, so no `CSeq`).
const BUSY: &[u8] =
    b"RTSP/1.0 503 Service Unavailable\r\nServer: nvrkit-loopcam\r\nContent-Length: 0\r\n\r\n";

async fn accept(
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
            _ = stop.changed() => break,
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
async fn linger<R, W>(rd: &mut R, wr: &mut W)
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

async fn receive_rtcp(sock: Arc<UdpSocket>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
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
            _ = stop.changed() => break,
        }
    }
}

/// The per-track sending state of a playing session.
#[derive(Debug)]
struct TrackOut {
    stream: usize,
    transport: Transport,
    ssrc: u32,
    pt: u8,
    clock: u32,
    packetizer: Packetizer,
    seq: u16,
    ts_base: u32,
    /// The PTS (track ticks) that maps to `ts_base`.
    ref_pts: i64,
    packets: u32,
    octets: u32,
    /// Wall-clock and RTP time of the last frame sent: the NTP ↔ RTP pair of the next SR.
    last: Option<(WallTime, u32)>,
    /// Parameter sets to put in front of a keyframe that lacks them.
    params: Vec<Bytes>,
    codec: Option<VideoCodec>,
}

impl TrackOut {
    fn rtp_time(&self, f: &Frame) -> u32 {
        // Wrapping on purpose: RTP timestamps are modulo 2³² (RFC 3550 §5.1).
        self.ts_base
            .wrapping_add(rescale(f.pts - self.ref_pts, f.timescale, self.clock) as u32)
    }
}

struct Playback {
    reader: nvrkit_ring::Reader,
    tracks: Vec<TrackOut>,
    playing: bool,
    /// UDP catch-up: (instant the burst started, wall time of its first frame).
    burst: Option<(Instant, WallTime)>,
}

struct ConnIo {
    wr: ConnWrite,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// Small pieces being composed (headers, responses, RTCP).
    out: BytesMut,
    /// What to write, in order: composed pieces and frame payload slices. Payloads are never
    /// copied per client: they are slices of the ring's frames, written with vectored writes
    /// (500 clients of a 720p stream would otherwise each hold a copy of every keyframe).
    chunks: std::collections::VecDeque<Bytes>,
    payloads: Vec<Payload>,
    /// Where each packet's headers end in `out` while a frame is composed (reused).
    header_ends: Vec<usize>,
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

/// How long one write to a client may block. A client that keeps its TCP window shut this long
/// is dropped: it must not hold its task (and the server's shutdown) forever. The ring already
/// skips slow readers forward, so a client that merely lags is not affected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Room for packet headers a connection reserves at a time (a few frames' worth); the buffer is
/// reclaimed once a write's slices of it are dropped, so a steady stream allocates nothing.
/// Small, because it is per client: 500 clients hold 500 of them.
const HEADER_BUF: usize = 512;

/// Most header bytes one packet takes over TCP: 4 (interleave) + 12 (RTP) + 4 (the largest
/// payload-format header, AAC's AU header section).
const MAX_PACKET_HEADERS: usize = 20;

/// How often a playing session gets RTCP sender reports and every session a liveness check.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

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

    async fn send_rtcp(&mut self, t: &TrackOut, packet: &[u8]) -> std::io::Result<()> {
        match t.transport {
            Transport::Tcp { rtcp, .. } => {
                self.out.put_u8(b'$');
                self.out.put_u8(rtcp);
                self.out.put_u16(packet.len() as u16);
                self.out.put_slice(packet);
                Ok(())
            }
            Transport::Udp { rtcp, .. } => {
                if let Some((_, sock)) = &self.shared.udp {
                    let _ = sock
                        .send_to(packet, SocketAddr::new(self.peer.ip(), rtcp))
                        .await;
                }
                Ok(())
            }
        }
    }

    /// Packetizes and queues (TCP) or sends (UDP) one frame.
    async fn send_frame(&mut self, t: &mut TrackOut, f: &Frame) {
        self.payloads.clear();
        let needs_params = f.keyframe
            && t.codec.is_some_and(|c| {
                !nvrkit_media::nal::length_prefixed(&f.data, 4)
                    .filter_map(|n| n.ok())
                    .any(|n| c.nal_type(n) == if c == VideoCodec::H264 { 7 } else { 33 })
            });
        let extra: &[Bytes] = if needs_params { &t.params } else { &[] };
        let mut payloads = std::mem::take(&mut self.payloads);
        t.packetizer.packetize(f, extra, &mut payloads);
        let ts = t.rtp_time(f);
        if let Transport::Tcp { .. } = t.transport {
            // Whatever is composed (a response, RTCP) goes first; then every packet's 4-byte
            // interleave header and RTP header go into one buffer, frozen once and sliced per
            // packet (no allocation or reference-count promotion per packet).
            self.seal();
            let need = MAX_PACKET_HEADERS * payloads.len();
            if self.out.capacity() < need {
                // Reclaims the buffer the previous write used once its slices are gone.
                self.out.reserve(HEADER_BUF.max(need));
            }
        }
        self.header_ends.clear();
        for p in &payloads {
            match t.transport {
                Transport::Tcp { rtp, .. } => {
                    self.out.put_u8(b'$');
                    self.out.put_u8(rtp);
                    self.out
                        .put_u16((crate::rtp::RTP_HEADER_LEN + p.len()) as u16);
                    p.write_header(&mut self.out, t.pt, t.seq, ts, t.ssrc);
                    self.header_ends.push(self.out.len());
                }
                Transport::Udp { rtp, .. } => {
                    let mut b = BytesMut::with_capacity(crate::rtp::RTP_HEADER_LEN + p.len());
                    p.write_packet(&mut b, t.pt, t.seq, ts, t.ssrc);
                    if let Some((sock, _)) = &self.shared.udp {
                        let _ = sock.send_to(&b, SocketAddr::new(self.peer.ip(), rtp)).await;
                    }
                }
            }
            t.seq = t.seq.wrapping_add(1);
            t.packets = t.packets.wrapping_add(1);
            t.octets = t.octets.wrapping_add(p.len() as u32);
        }
        if let (Transport::Tcp { .. }, Some(&all)) = (t.transport, self.header_ends.last()) {
            // `out` holds exactly this frame's packet headers, in order.
            let heads = self.out.split_to(all).freeze();
            let mut start = 0;
            for (p, &end) in payloads.iter().zip(&self.header_ends) {
                self.chunks.push_back(heads.slice(start..end));
                self.chunks.push_back(p.body.clone());
                start = end;
            }
        }
        self.payloads = payloads;
        if let Some(w) = f.wall {
            t.last = Some((w, ts));
        }
    }
}

/// The read half of a client connection: TCP or TLS.
type ConnRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
/// The write half of a client connection: TCP or TLS.
type ConnWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// Serves one RTSP connection until it closes, times out, or the server stops.
async fn serve(
    mut rd: ConnRead,
    wr: ConnWrite,
    local: SocketAddr,
    peer: SocketAddr,
    secure: bool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let host = match local {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
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
        host,
        server_ip: local.ip().to_string(),
    });
    let mut io = ConnIo {
        wr,
        peer,
        shared: shared.clone(),
        out: BytesMut::with_capacity(HEADER_BUF),
        chunks: std::collections::VecDeque::new(),
        payloads: Vec::new(),
        header_ends: Vec::new(),
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
        let playing = playback.as_ref().is_some_and(|p| p.playing);
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
                            let (resp, action) = conn.handle(&req, shared.as_ref());
                            match action {
                                Action::Play => {
                                    let cseq = req
                                        .header(&rtsp_types::headers::CSEQ)
                                        .map(|v| v.as_str().to_owned())
                                        .unwrap_or_default();
                                    match start_play(&conn, &shared, playback.take()).await {
                                        Some((mut pb, first)) => {
                                            let info: Vec<(usize, u16, u32)> = pb
                                                .tracks
                                                .iter()
                                                .map(|t| (t.stream, t.seq, t.ts_base))
                                                .collect();
                                            io.queue_response(&conn.play_response(&cseq, &info));
                                            if let Ok(mut seen) = shared.udp_seen.lock() {
                                                for t in &pb.tracks {
                                                    if let Transport::Udp { rtcp, .. } = t.transport {
                                                        seen.insert(SocketAddr::new(peer.ip(), rtcp), Instant::now());
                                                    }
                                                }
                                            }
                                            if let Some(f) = first {
                                                // An RTCP SR before the first RTP packet: clients
                                                // (ffmpeg) can place the streams on one clock at
                                                // once instead of guessing.
                                                if let Some(w) = f.wall {
                                                    for t in &mut pb.tracks {
                                                        t.last.get_or_insert((w, t.ts_base));
                                                    }
                                                    sender_reports(&mut io, &pb).await;
                                                }
                                                send(&mut io, &mut pb, &f, &shared.config).await;
                                            }
                                            playback = Some(pb);
                                        }
                                        None => {
                                            // No keyframe in time: the session is Ready again,
                                            // so the client may retry PLAY.
                                            conn.play_failed();
                                            let r = rtsp_types::Response::builder(
                                                rtsp_types::Version::V1_0,
                                                rtsp_types::StatusCode::ServiceUnavailable,
                                            )
                                            .header(rtsp_types::headers::CSEQ, cseq)
                                            .build(Vec::new());
                                            io.queue_response(&r);
                                        }
                                    }
                                }
                                Action::Pause => {
                                    io.queue_response(&resp);
                                    if let Some(p) = playback.as_mut() {
                                        p.playing = false;
                                    }
                                }
                                Action::Teardown => {
                                    io.queue_response(&resp);
                                    if let Some(p) = playback.take() {
                                        bye(&mut io, &p).await;
                                    }
                                }
                                Action::None => io.queue_response(&resp),
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
                            if playback.as_ref().is_some_and(|p| p.playing) {
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
                        send(&mut io, pb, &f, &shared.config).await;
                        // Whatever else is ready (the audio frame beside a video frame, the rest
                        // of a catch-up GOP) goes out in the same vectored write: one wakeup
                        // and one syscall instead of one per frame.
                        for _ in 0..64 {
                            match pb.reader.try_recv() {
                                Ok(f) => send(&mut io, pb, &f, &shared.config).await,
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
                    }
                    Err(_) => break 'conn,
                }
                // Shutdown, checked with one atomic load: the ring closing would also end the
                // session, but only after the client had read what is left in it.
                if stop.has_changed().unwrap_or(true) {
                    break 'conn;
                }
                periodic = Instant::now() >= next_report;
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(next_report)), if wake.is_some() => {
                let now = Instant::now();
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
        if let Some(p) = playback.as_ref().filter(|p| p.playing) {
            sender_reports(&mut io, p).await;
            if io.flush().await.is_err() {
                break 'conn;
            }
        }
        // Liveness: complete requests on this connection, or RTCP from the client.
        let mut alive = last_alive;
        if let (Some(p), Ok(seen)) = (playback.as_ref(), shared.udp_seen.lock()) {
            for t in &p.tracks {
                if let Transport::Udp { rtcp, .. } = t.transport
                    && let Some(at) = seen.get(&SocketAddr::new(peer.ip(), rtcp))
                {
                    alive = alive.max(*at);
                }
            }
        }
        // Over TCP the open connection carrying the media is itself the liveness signal
        // (gst-rtsp-server and mediamtx do the same): clients that send no keepalive keep
        // playing. An idle connection, or a UDP session whose client went quiet, times out.
        let tcp_playing = playback.as_ref().is_some_and(|p| {
            p.playing
                && p.tracks
                    .iter()
                    .all(|t| matches!(t.transport, Transport::Tcp { .. }))
        });
        if conn.session().is_some() && !tcp_playing && alive.elapsed() > session_limit {
            tracing::info!(%peer, "session timed out");
            break 'conn;
        }
    }
    if let Some(p) = playback.take() {
        bye(&mut io, &p).await;
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

/// `400 Bad Request`, without a `CSeq` (the request had none we could read).
fn bad_request() -> rtsp_types::Response<Vec<u8>> {
    rtsp_types::Response::builder(
        rtsp_types::Version::V1_0,
        rtsp_types::StatusCode::BadRequest,
    )
    .build(Vec::new())
}

fn port_of(s: &UdpSocket) -> u16 {
    s.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// Creates (or resumes) playback at the newest keyframe and receives the first frame, so the
/// PLAY response can say where the stream starts. `None` when no keyframe arrives in time.
async fn start_play(
    conn: &Connection,
    shared: &Shared,
    previous: Option<Playback>,
) -> Option<(Playback, Option<Frame>)> {
    let session = conn.session()?;
    let feed = shared.feeds.get(&session.stream.name)?;
    let master = feed.clip.master();
    let video_only = session.tracks.iter().all(|t| t.stream == master);
    let ring = if video_only {
        &feed.video_ring
    } else {
        &feed.ring
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
    // PLAY after PAUSE: a track set up before keeps its SSRC, sequence and clock (RTP time
    // continues with media time); one set up (or set up again with another transport) while
    // paused starts afresh.
    let mut before = previous.map(|p| p.tracks).unwrap_or_default();
    let tracks = session
        .tracks
        .iter()
        .map(|s| {
            if let Some(i) = before
                .iter()
                .position(|t| t.stream == s.stream && t.transport == s.transport)
            {
                return before.swap_remove(i);
            }
            let t = &feed.info.tracks[s.stream];
            let clock = sdp::clock_rate(t);
            let params = t
                .params
                .video()
                .map(|v| v.parameter_sets().cloned().collect())
                .unwrap_or_default();
            TrackOut {
                stream: s.stream,
                transport: s.transport,
                ssrc: s.ssrc,
                pt: sdp::payload_type(t),
                clock,
                packetizer: Packetizer::new(&t.params, shared.config.mtu),
                seq: rand::random(),
                ts_base: shared.config.initial_rtptime.unwrap_or_else(rand::random),
                ref_pts: rescale(first.pts, first.timescale, t.timescale),
                packets: 0,
                octets: 0,
                last: None,
                params,
                codec: t.params.video_codec(),
            }
        })
        .collect();
    let mut pb = Playback {
        reader,
        tracks,
        playing: true,
        burst: None,
    };
    // RTP-Info announces the timestamp of the first frame sent, for every track.
    for t in &mut pb.tracks {
        let at = rescale(
            first.pts,
            first.timescale,
            feed.info.tracks[t.stream].timescale,
        );
        let probe = Frame {
            pts: at,
            timescale: feed.info.tracks[t.stream].timescale,
            ..first.clone()
        };
        t.ts_base = t.rtp_time(&probe);
        t.ref_pts = at;
    }
    Some((pb, Some(first)))
}

/// Sends one frame to the tracks this session set up, pacing UDP catch-up bursts.
async fn send(io: &mut ConnIo, pb: &mut Playback, f: &Frame, config: &Config) {
    let Some(i) = pb.tracks.iter().position(|t| t.stream == f.stream) else {
        return;
    };
    let udp = matches!(pb.tracks[i].transport, Transport::Udp { .. });
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
    io.send_frame(&mut pb.tracks[i], f).await;
}

async fn sender_reports(io: &mut ConnIo, pb: &Playback) {
    for t in &pb.tracks {
        let Some((wall, rtp)) = t.last else { continue };
        let mut b = BytesMut::with_capacity(64);
        rtcp::sender_report(
            &mut b,
            t.ssrc,
            wall.to_ntp(),
            rtp,
            t.packets,
            t.octets,
            "loopcam@nvrkit",
        );
        let _ = io.send_rtcp(t, &b).await;
    }
}

async fn bye(io: &mut ConnIo, pb: &Playback) {
    for t in &pb.tracks {
        let mut b = BytesMut::with_capacity(64);
        if let Some((wall, rtp)) = t.last {
            rtcp::sender_report(
                &mut b,
                t.ssrc,
                wall.to_ntp(),
                rtp,
                t.packets,
                t.octets,
                "loopcam@nvrkit",
            );
        }
        rtcp::bye(&mut b, t.ssrc);
        let _ = io.send_rtcp(t, &b).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;
    use nvrkit_ring::Start;

    fn sample_clip() -> Arc<Clip> {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        Clip::load("sample", &d).unwrap()
    }

    /// Arrival instant (paused tokio clock, so exact) of each of the first `n` frames a reader
    /// of `ring` gets, with the frame's stream.
    async fn arrivals(ring: &Ring, n: usize) -> Vec<(usize, Instant)> {
        let mut reader = ring.reader(Start::OldestKeyframe);
        let mut out = Vec::new();
        while out.len() < n {
            let f = reader.recv_async().await.unwrap();
            out.push((f.stream, Instant::now()));
        }
        out
    }

    /// `loopcam push`'s pacer hands audio over together with the next video frame: every
    /// frame arrives at an instant a video frame arrives at, so a 25 fps clip wakes the
    /// publisher 25 times a second, not 72. The RTSP server's pacer keeps each frame's own
    /// deadline, so there audio arrives between video frames.
    #[tokio::test(start_paused = true)]
    async fn a_lone_push_gets_audio_with_its_video_frame_and_rtsp_does_not() {
        let clip = sample_clip();
        let master = clip.master();
        let looper = Looper::start(clip.clone(), Duration::from_secs(4)).unwrap();
        let got = arrivals(&looper.ring(), 200).await;
        looper.stop().await;
        let video: std::collections::HashSet<Instant> = got
            .iter()
            .filter(|(s, _)| *s == master)
            .map(|&(_, t)| t)
            .collect();
        assert!(
            got.iter().any(|(s, _)| *s != master),
            "the sample has audio"
        );
        assert!(got.iter().all(|(_, t)| video.contains(t)));

        let (writer, ring) = nvrkit_ring::ring(
            nvrkit_ring::Config::new()
                .max_duration(Duration::from_secs(4))
                .video_stream(master),
        )
        .unwrap();
        let (stop, task) = spawn_pacer(clip, writer, Timing::EachFrame);
        let got = arrivals(&ring, 200).await;
        let _ = stop.send(true);
        let _ = task.await;
        let video: std::collections::HashSet<Instant> = got
            .iter()
            .filter(|(s, _)| *s == master)
            .map(|&(_, t)| t)
            .collect();
        let apart = got
            .iter()
            .filter(|(s, t)| *s != master && !video.contains(t))
            .count();
        assert!(
            apart > 50,
            "only {apart} of 200 frames arrived apart from video"
        );
    }
}

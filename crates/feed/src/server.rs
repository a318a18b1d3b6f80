//! The tokio layer: a TCP listener for RTSP, one shared UDP pair for RTP/RTCP, one pacer task
//! per clip feeding its ring, and one task per connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvrkit_media::{Frame, WallTime};
use nvrkit_net::{ConnLimiter, Refusal};
use nvrkit_ring::Ring;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::loop_source::{Clip, LoopSource};
use crate::rtp::rtcp;
use crate::rtsp::auth::Auth;
use crate::rtsp::core::{Catalog, StreamInfo};

mod conn;
use conn::serve;

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

//! The tokio layer: one task per push reads a ring (a looped clip's, or a camera's
//! [`LiveSource`]) and publishes it, reconnecting with backoff when the server goes away.
//!
//! A live source's tracks are known only once its camera has connected, and may change when it
//! reconnects. The push dials only once they are known, and when they change it unpublishes and
//! publishes again at once, on a new connection, with the new onMetaData and sequence headers
//! (the RTMP clock goes on, so timestamps still increase). Not a new sequence header mid-stream:
//! FLV allows one, but onMetaData (the size players size their surface by) would stay stale,
//! nginx-rtmp hands late players its cached headers of either kind, and players differ in
//! whether they reinitialise their decoder on one; a new publish is what every server and
//! player already handles, and what mediamtx does to its readers when a publisher's tracks
//! change (it closes them; they reconnect). A camera reconnect with the same tracks changes
//! nothing: the push rides through it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nvrkit_media::{CodecParams, Frame, TrackInfo};
use nvrkit_ring::{RecvError, Ring, Start, TryRecvError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::loop_source::Clip;
use crate::rtmp::error::PushError;
use crate::rtmp::flv::FlvMapper;
use crate::rtmp::session::{Event, Phase, Session, SessionConfig};
use crate::rtmp::url::RtmpUrl;
use crate::source::LiveSource;

/// What a push publishes: a ring and the tracks its frames belong to.
#[derive(Debug, Clone)]
pub enum PushSource {
    /// A looped clip, whose frames a pacer pushes into `ring` (the RTSP server's ring of the
    /// clip, or a [`crate::server::Looper`]'s). Its tracks never change.
    Clip {
        /// The clip.
        clip: Arc<Clip>,
        /// The ring its pacer fills.
        ring: Ring,
    },
    /// A ring someone else fills (a camera's, in nvr), whose tracks the source follows.
    Live(LiveSource),
}

impl From<LiveSource> for PushSource {
    fn from(s: LiveSource) -> Self {
        PushSource::Live(s)
    }
}

/// A [`PushSource`] as the task reads it.
struct Feed {
    name: String,
    ring: Ring,
    master: usize,
    clip: Option<Arc<Clip>>,
    tracks: crate::source::Tracks,
    /// A clip's tracks never change: the sender lives as long as the push.
    _fixed: Option<watch::Sender<Option<Vec<TrackInfo>>>>,
}

impl Feed {
    fn new(source: PushSource) -> Feed {
        match source {
            PushSource::Clip { clip, ring } => {
                let (tx, rx) = watch::channel(Some(clip.tracks().to_vec()));
                Feed {
                    name: clip.name().to_owned(),
                    ring,
                    master: clip.master(),
                    clip: Some(clip),
                    tracks: rx,
                    _fixed: Some(tx),
                }
            }
            PushSource::Live(live) => Feed {
                name: live.name().to_owned(),
                ring: live.ring().clone(),
                master: live.video_stream(),
                clip: None,
                tracks: live.tracks(),
                _fixed: None,
            },
        }
    }

    /// A mapper for `tracks` (the first connection), or the one there is given them: the
    /// headers follow the tracks and the server's answer (`enhanced`), the clock goes on.
    fn mapper(
        &self,
        mapper: &mut Option<FlvMapper>,
        tracks: &[TrackInfo],
        enhanced: bool,
        initial: u32,
    ) -> Result<(), PushError> {
        match (mapper.as_mut(), &self.clip) {
            (Some(m), _) => m.retrack(tracks, self.master, enhanced)?,
            (None, Some(clip)) => *mapper = Some(FlvMapper::new(clip, enhanced, initial)?),
            (None, None) => {
                *mapper = Some(FlvMapper::for_tracks(
                    &self.name,
                    tracks,
                    self.master,
                    enhanced,
                    initial,
                )?)
            }
        }
        Ok(())
    }
}

/// How a connection ended without an error.
enum End {
    /// Stopped, or the ring closed: the push is over.
    Stopped,
    /// The source's tracks changed: publish again at once with the new headers.
    Retrack,
}

/// Whether to send H.265 as Enhanced RTMP (`hvc1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EnhancedRtmp {
    /// Only when the server lists `hvc1` in its `connect` result (`fourCcList` or
    /// `videoFourCcInfoMap`); otherwise an H.265 clip is refused with a clear error, since a
    /// classic server (nginx-rtmp) relays the tags but cannot recognise their sequence header,
    /// and its players get video they cannot decode.
    #[default]
    IfAnnounced,
    /// Always: for servers that take `hvc1` without announcing it (node-media-server 4, SRS 6
    /// and mediamtx publish no `fourCcList` in their connect result).
    Always,
}

/// Reconnect delays: the first, doubled after each failed attempt up to the cap; back to the
/// first once a connection has gone live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first reconnect (default 500 ms).
    pub first: Duration,
    /// Longest delay (default 30 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// Settings of one push.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Where to publish.
    pub url: RtmpUrl,
    /// H.265 policy.
    pub enhanced_rtmp: EnhancedRtmp,
    /// RTMP time of the first frame published (default 0; tests start just below 2³²).
    pub initial_timestamp: u32,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Longest wait for the connection, each step of the dialogue, and each write (default
    /// 10 s).
    pub timeout: Duration,
    /// Certificates trusted for `rtmps://` besides the Mozilla roots (a private CA, a
    /// self-signed server).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl PushConfig {
    /// Defaults for a URL.
    pub fn new(url: RtmpUrl) -> Self {
        PushConfig {
            url,
            enhanced_rtmp: EnhancedRtmp::default(),
            initial_timestamp: 0,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(10),
            extra_roots: Vec::new(),
        }
    }
}

/// Reads every certificate of a PEM file, for [`PushConfig::extra_roots`].
pub fn load_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PushError> {
    nvrkit_tls::load_certificates(path).map_err(|e| PushError::Tls(e.to_string()))
}

#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    lives: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    lagged: AtomicU64,
    live: AtomicBool,
    retracks: AtomicU64,
}

/// A push's progress so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    /// TCP connections made.
    pub connects: u64,
    /// Connections on which the server accepted the stream.
    pub lives: u64,
    /// Frames published.
    pub frames: u64,
    /// Bytes written to the server (chunk headers included).
    pub bytes: u64,
    /// Times the server read too slowly and the push skipped ahead to a keyframe.
    pub lagged: u64,
    /// Publishing right now.
    pub live: bool,
    /// Times the source's tracks changed and the push published again with new headers.
    pub retracks: u64,
}

/// A running push. Dropping it does not stop it; call [`Push::stop`].
#[derive(Debug)]
pub struct Push {
    url: RtmpUrl,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), PushError>>,
}

type Stream = Box<dyn AsyncStream>;
trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

impl Push {
    /// Starts publishing `clip`, whose frames a pacer pushes into `ring` (the RTSP server's ring
    /// of the clip, or a [`crate::server::Looper`]'s). Returns at once; the task connects,
    /// publishes, and reconnects until stopped or refused for good.
    pub fn start(clip: Arc<Clip>, ring: Ring, config: PushConfig) -> Push {
        Push::start_source(PushSource::Clip { clip, ring }, config)
    }

    /// Starts publishing any source: a looped clip, or a [`LiveSource`] (a camera's ring),
    /// published once its tracks are known and published again when they change (see the
    /// module's documentation).
    pub fn start_source(source: PushSource, config: PushConfig) -> Push {
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        let url = config.url.clone();
        let task = tokio::spawn(run(Feed::new(source), config, counters.clone(), stop_rx));
        Push {
            url,
            counters,
            stop,
            task,
        }
    }

    /// The URL (its `Display` hides the key).
    pub fn url(&self) -> &RtmpUrl {
        &self.url
    }

    /// Progress so far.
    pub fn stats(&self) -> PushStats {
        let c = &self.counters;
        PushStats {
            connects: c.connects.load(Ordering::Relaxed),
            lives: c.lives.load(Ordering::Relaxed),
            frames: c.frames.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            lagged: c.lagged.load(Ordering::Relaxed),
            live: c.live.load(Ordering::Relaxed),
            retracks: c.retracks.load(Ordering::Relaxed),
        }
    }

    /// True once the push has ended (stopped, or refused for good).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the push to end by itself: it only does when refused for good (a permanent
    /// [`PushError`]) or when the ring closes.
    pub async fn wait(self) -> Result<(), PushError> {
        self.task.await.unwrap_or(Ok(()))
    }

    /// Unpublishes (`FCUnpublish`, `deleteStream`), closes the connection and ends the task.
    /// Returns the error that ended it, if it had already given up.
    pub async fn stop(self) -> Result<(), PushError> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(Ok(()))
    }
}

async fn run(
    mut feed: Feed,
    config: PushConfig,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PushError> {
    let url = &config.url;
    let tls = if url.tls {
        Some(tls_connector(&config)?)
    } else {
        None
    };
    let mut mapper: Option<FlvMapper> = None;
    let mut delay = config.backoff.first;
    loop {
        let lives = counters.lives.load(Ordering::Relaxed);
        let r = connection(
            &mut feed,
            &config,
            tls.as_ref(),
            &mut mapper,
            &counters,
            &mut stop,
        )
        .await;
        counters.live.store(false, Ordering::Relaxed);
        match r {
            Ok(End::Stopped) => return Ok(()),
            Ok(End::Retrack) => {
                counters.retracks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%url, "the source's tracks changed: publishing again with them");
            }
            Err(e) if e.is_permanent() => {
                tracing::error!(%url, "push refused: {e}");
                return Err(e);
            }
            Err(e) => {
                if counters.lives.load(Ordering::Relaxed) > lives {
                    delay = config.backoff.first;
                }
                tracing::warn!(
                    %url,
                    "push interrupted: {e}; reconnecting in {} ms",
                    delay.as_millis()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return Ok(()),
                }
                delay = (delay * 2).min(config.backoff.max);
            }
        }
    }
}

fn tls_connector(config: &PushConfig) -> Result<tokio_rustls::TlsConnector, PushError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in &config.extra_roots {
        roots
            .add(c.clone())
            .map_err(|e| PushError::Tls(format!("extra root certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PushError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
}

async fn open(
    url: &RtmpUrl,
    tls: Option<&tokio_rustls::TlsConnector>,
    timeout: Duration,
) -> Result<Stream, PushError> {
    let addr = format!("{}:{}", url.host, url.port);
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .map_err(|_| PushError::Timeout("connecting"))?
        .map_err(|source| PushError::Io {
            what: format!("cannot connect to {addr}"),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| PushError::Tls(format!("server name {}: {e}", url.host)))?;
    let stream = tokio::time::timeout(timeout, tls.connect(name, tcp))
        .await
        .map_err(|_| PushError::Timeout("in the TLS handshake"))?
        .map_err(|e| PushError::Tls(format!("handshake with {addr}: {e}")))?;
    Ok(Box::new(stream))
}

/// Writes what the session queued, within the timeout.
async fn flush(
    w: &mut (impl AsyncWrite + Unpin),
    session: &mut Session,
    counters: &Counters,
    timeout: Duration,
) -> Result<(), PushError> {
    if !session.has_output() {
        return Ok(());
    }
    let out = session.take_output();
    tokio::time::timeout(timeout, w.write_all(&out))
        .await
        .map_err(|_| PushError::Timeout("writing to the server (it stopped reading)"))?
        .map_err(|source| PushError::Io {
            what: "writing to the server".into(),
            source,
        })?;
    counters
        .bytes
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    Ok(())
}

fn read_result(r: std::io::Result<usize>, during: &'static str) -> Result<usize, PushError> {
    match r {
        Ok(0) => Err(PushError::Closed { during }),
        Ok(n) => Ok(n),
        Err(source) => Err(PushError::Io {
            what: "reading from the server".into(),
            source,
        }),
    }
}

/// One connection: wait for the source's tracks, dial, handshake, publish, then frames until
/// the connection fails, the tracks change ([`End::Retrack`]) or the push is stopped.
async fn connection(
    feed: &mut Feed,
    config: &PushConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
    mapper: &mut Option<FlvMapper>,
    counters: &Counters,
    stop: &mut watch::Receiver<bool>,
) -> Result<End, PushError> {
    let url = &config.url;
    // A camera's tracks are known once it has connected: nothing to publish before.
    let tracks: Vec<TrackInfo> = loop {
        if let Some(t) = feed.tracks.borrow_and_update().clone() {
            break t;
        }
        tokio::select! {
            r = feed.tracks.changed() => if r.is_err() {
                return Ok(End::Stopped); // the source is gone
            },
            _ = stop.changed() => return Ok(End::Stopped),
        }
    };
    let stream = tokio::select! {
        s = open(url, tls, config.timeout) => s?,
        _ = stop.changed() => return Ok(End::Stopped),
    };
    counters.connects.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let hevc = tracks
        .iter()
        .any(|t| matches!(t.params, CodecParams::H265(_)));
    let mut session = Session::new(SessionConfig {
        url: url.clone(),
        fourcc: if hevc {
            vec!["hvc1".into()]
        } else {
            Vec::new()
        },
    })?;
    let mut buf = vec![0u8; 16 * 1024];

    // The dialogue, up to NetStream.Publish.Start.
    let deadline = Instant::now() + config.timeout;
    let mut connected = false;
    while session.phase() != Phase::Live {
        flush(&mut wr, &mut session, counters, config.timeout).await?;
        let n = tokio::select! {
            r = tokio::time::timeout_at(deadline, rd.read(&mut buf)) => match r {
                Ok(r) => read_result(r, "before publishing started")?,
                Err(_) => return Err(PushError::Timeout(match session.phase() {
                    Phase::Handshake => "in the RTMP handshake",
                    Phase::Connecting => "waiting for the connect result",
                    Phase::CreatingStream => "waiting for the createStream result",
                    _ => "waiting for NetStream.Publish.Start",
                })),
            },
            _ = stop.changed() => return Ok(End::Stopped),
        };
        for event in session.receive(&buf[..n])? {
            if let Event::Connected { fourcc } = event {
                let announced = fourcc.iter().any(|f| f == "hvc1");
                let enhanced = announced || config.enhanced_rtmp == EnhancedRtmp::Always;
                if hevc {
                    tracing::debug!(%url, ?fourcc, enhanced, "server's Enhanced RTMP codecs");
                }
                feed.mapper(mapper, &tracks, enhanced, config.initial_timestamp)?;
                connected = true;
            }
        }
    }
    let (Some(mapper), true) = (mapper.as_mut(), connected) else {
        return Err(PushError::Protocol {
            stage: "publish",
            why: "the stream went live without a connect result".into(),
        });
    };
    counters.lives.fetch_add(1, Ordering::Relaxed);
    counters.live.store(true, Ordering::Relaxed);
    tracing::info!(%url, source = mapper.clip_name(), "publishing");

    // Frames from the newest keyframe not yet published: a GOP already sent before a reconnect
    // is not sent again, so no receiver sees a timestamp twice.
    let mut reader = feed.ring.reader(Start::NewestKeyframe);
    let master = mapper.master();
    let mut started = false;
    // No leading picture of the keyframe the server starts (or resumes) at: open-GOP RASL.
    let mut join = crate::join::JoinFilter::new(master);
    loop {
        tokio::select! {
            r = reader.recv_async() => {
                let f: Frame = match r {
                    Ok(f) => f,
                    Err(RecvError::Lagged { skipped }) => {
                        counters.lagged.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%url, skipped, "the server reads too slowly; skipping to a keyframe");
                        join.rejoin();
                        continue;
                    }
                    Err(_) => {
                        let _ = session.unpublish();
                        let _ = flush(&mut wr, &mut session, counters, config.timeout).await;
                        return Ok(End::Stopped);
                    }
                };
                if !started {
                    if f.stream != master || !f.keyframe || !mapper.is_new(&f) {
                        continue;
                    }
                    for tag in mapper.headers(&f) {
                        session.send_tag(&tag)?;
                    }
                    started = true;
                }
                if join.keep(&f) && let Some(tag) = mapper.tag(&f) {
                    session.send_tag(&tag)?;
                    counters.frames.fetch_add(1, Ordering::Relaxed);
                }
                // Frames pushed together (audio with its video frame) leave in one write; a
                // backlog (the GOP a new publisher starts with) goes out 64 frames per write,
                // each under its own timeout.
                for _ in 0..64 {
                    match reader.try_recv() {
                        Ok(f) => {
                            if join.keep(&f) && let Some(tag) = mapper.tag(&f) {
                                session.send_tag(&tag)?;
                                counters.frames.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(TryRecvError::Lagged { skipped }) => {
                            counters.lagged.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%url, skipped, "the server reads too slowly; skipping to a keyframe");
                            join.rejoin();
                            break;
                        }
                        Err(_) => break,
                    }
                }
                flush(&mut wr, &mut session, counters, config.timeout).await?;
            }
            r = rd.read(&mut buf) => {
                let n = read_result(r, "while publishing")?;
                session.receive(&buf[..n])?;
                flush(&mut wr, &mut session, counters, config.timeout).await?;
            }
            r = feed.tracks.changed() => {
                // The sender gone (the source stopped) or other tracks: either way this
                // stream is over; with new tracks, a new one starts at once.
                let end = match r {
                    Err(_) => End::Stopped,
                    Ok(()) if feed.tracks.borrow_and_update().as_deref() == Some(&tracks[..]) => continue,
                    Ok(()) => End::Retrack,
                };
                let _ = session.unpublish();
                let _ = flush(&mut wr, &mut session, counters, config.timeout).await;
                let _ = wr.shutdown().await;
                return Ok(end);
            }
            _ = stop.changed() => {
                let _ = session.unpublish();
                let _ = flush(&mut wr, &mut session, counters, config.timeout).await;
                let _ = wr.shutdown().await;
                tracing::info!(%url, "unpublished");
                return Ok(End::Stopped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };
    use std::sync::Mutex;
    use tokio::net::TcpListener;

    /// What the server got: per connection, each video and audio message as (is video,
    /// timestamp, body).
    type Received = Arc<Mutex<Vec<Vec<(bool, u32, bytes::Bytes)>>>>;

    /// `rml_rtmp`'s server session on a loopback TCP listener, accepting every publish.
    async fn server() -> (u16, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Received = Arc::default();
        let all = got.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = {
                    let mut g = all.lock().unwrap();
                    g.push(Vec::new());
                    g.len() - 1
                };
                let all = all.clone();
                tokio::spawn(async move {
                    let _ = serve(tcp, conn, all).await;
                });
            }
        });
        (port, got)
    }

    async fn serve(mut tcp: TcpStream, conn: usize, all: Received) -> std::io::Result<()> {
        let mut hs = Handshake::new(PeerType::Server);
        let mut buf = vec![0u8; 64 * 1024];
        let rest = loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            match hs.process_bytes(&buf[..n]).unwrap() {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    tcp.write_all(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    tcp.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let (mut session, results) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        let mut pending = results;
        pending.extend(session.handle_input(&rest).unwrap());
        loop {
            while let Some(r) = (!pending.is_empty()).then(|| pending.remove(0)) {
                match r {
                    ServerSessionResult::OutboundResponse(p) => tcp.write_all(&p.bytes).await?,
                    ServerSessionResult::RaisedEvent(e) => match e {
                        ServerSessionEvent::ConnectionRequested { request_id, .. }
                        | ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                            pending.extend(session.accept_request(request_id).unwrap())
                        }
                        ServerSessionEvent::VideoDataReceived {
                            timestamp, data, ..
                        } => all.lock().unwrap()[conn].push((true, timestamp.value, data)),
                        ServerSessionEvent::AudioDataReceived {
                            timestamp, data, ..
                        } => all.lock().unwrap()[conn].push((false, timestamp.value, data)),
                        _ => {}
                    },
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            pending = session.handle_input(&buf[..n]).unwrap();
        }
    }

    async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let t = std::time::Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(20), "hang guard: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A live source (a camera's ring, as nvr's restream has it): nothing is published while
    /// its tracks are unknown; once they are, the server gets the sequence headers and frames;
    /// when they change (the camera came back without audio), the push publishes again at once
    /// on a new connection with the new headers, and the RTMP clock goes on increasing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_source_is_published_once_known_and_again_when_its_tracks_change() {
        let demux =
            nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let tracks = demux.tracks().to_vec();
        assert_eq!(tracks.len(), 2, "the sample has video and audio");
        let frames: Vec<Frame> = demux.frames().map(Result::unwrap).collect();
        let (mut writer, ring) = nvrkit_ring::ring(
            nvrkit_ring::Config::new()
                .max_duration(Duration::from_secs(4))
                .video_stream(0),
        )
        .unwrap();
        let (tracks_tx, tracks_rx) = watch::channel(None);
        let live = LiveSource::new("cam", ring, 0, tracks_rx);
        let (port, got) = server().await;
        let url = RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/cam")).unwrap();
        let push = Push::start_source(live.into(), PushConfig::new(url));

        // The camera: the sample's frames into the ring, a GOP's worth every 100 ms, for as
        // long as the test runs (timestamps run on across laps, as ingest's do).
        let (audio_on_tx, audio_on) = watch::channel(true);
        let video_ts = tracks[0].timescale;
        let feeder = tokio::spawn(async move {
            let lap = frames
                .iter()
                .filter(|f| f.stream == 0)
                .map(|f| i64::from(f.duration))
                .sum::<i64>();
            for n in 0i64.. {
                for chunk in frames.chunks(40) {
                    for f in chunk {
                        if f.stream == 1 && !*audio_on.borrow() {
                            continue;
                        }
                        let mut f = f.clone();
                        let shift = nvrkit_media::time::rescale(n * lap, video_ts, f.timescale);
                        f.dts += shift;
                        f.pts += shift;
                        f.wall = Some(nvrkit_media::WallTime::now());
                        writer.push(f).unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            push.stats().connects,
            0,
            "no connection before the tracks are known"
        );
        assert!(got.lock().unwrap().is_empty());

        tracks_tx.send_replace(Some(tracks.clone()));
        let video_frames = |conn: usize| {
            got.lock()
                .unwrap()
                .get(conn)
                .map_or(0, |c| c.iter().filter(|(v, _, b)| *v && b[1] == 1).count())
        };
        wait_for("frames on the first connection", || video_frames(0) >= 30).await;
        {
            let g = got.lock().unwrap();
            let first = &g[0];
            // The AVC sequence header, then the AAC one, before any frame.
            assert_eq!(&first[0].2[..2], &[0x17, 0], "AVC sequence header first");
            assert!(first.iter().any(|(v, _, b)| !*v && b[..2] == [0xAF, 0]));
        }

        // The camera reconnects with other tracks: video only.
        let _ = audio_on_tx.send(false);
        tracks_tx.send_replace(Some(tracks[..1].to_vec()));
        wait_for("frames on the second connection", || video_frames(1) >= 30).await;
        let stats = push.stats();
        assert_eq!(stats.retracks, 1, "{stats:?}");
        assert_eq!(stats.lives, 2, "{stats:?}");
        push.stop().await.unwrap();
        feeder.abort();

        let g = got.lock().unwrap();
        let (a, b) = (&g[0], &g[1]);
        assert_eq!(
            &b[0].2[..2],
            &[0x17, 0],
            "the new connection opens with a sequence header"
        );
        assert!(
            b.iter().all(|(v, _, _)| *v),
            "no audio (nor its header) once the tracks have none"
        );
        let last_a = a.iter().filter(|(v, _, _)| *v).map(|x| x.1).max().unwrap();
        let first_b = b.iter().find(|(v, _, body)| *v && body[1] == 1).unwrap();
        assert!(
            first_b.1 > last_a,
            "the clock goes on: {} after {last_a}",
            first_b.1
        );
        assert_eq!(first_b.2[0] >> 4, 1, "the new stream starts at a keyframe");
        // Each connection's video timestamps increase.
        for c in [a, b] {
            let ts: Vec<u32> = c
                .iter()
                .filter(|(v, _, body)| *v && body[1] == 1)
                .map(|x| x.1)
                .collect();
            assert!(ts.windows(2).all(|w| w[1] > w[0]), "{ts:?}");
        }
    }
}

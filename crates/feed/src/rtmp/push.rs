//! The tokio layer: one task per push reads the clip's ring and publishes it, reconnecting with
//! backoff when the server goes away.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nvrkit_media::{CodecParams, Frame};
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
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        let url = config.url.clone();
        let task = tokio::spawn(run(clip, ring, config, counters.clone(), stop_rx));
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
    clip: Arc<Clip>,
    ring: Ring,
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
            &clip,
            &ring,
            &config,
            tls.as_ref(),
            &mut mapper,
            &counters,
            &mut stop,
        )
        .await;
        counters.live.store(false, Ordering::Relaxed);
        match r {
            Ok(()) => return Ok(()),
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

/// One connection: dial, handshake, publish, then frames until the connection fails or the
/// push is stopped (`Ok`).
async fn connection(
    clip: &Arc<Clip>,
    ring: &Ring,
    config: &PushConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
    mapper: &mut Option<FlvMapper>,
    counters: &Counters,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), PushError> {
    let url = &config.url;
    let stream = tokio::select! {
        s = open(url, tls, config.timeout) => s?,
        _ = stop.changed() => return Ok(()),
    };
    counters.connects.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let hevc = clip
        .tracks()
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
            _ = stop.changed() => return Ok(()),
        };
        for event in session.receive(&buf[..n])? {
            if let Event::Connected { fourcc } = event {
                let announced = fourcc.iter().any(|f| f == "hvc1");
                let enhanced = announced || config.enhanced_rtmp == EnhancedRtmp::Always;
                if hevc {
                    tracing::debug!(%url, ?fourcc, enhanced, "server's Enhanced RTMP codecs");
                }
                if mapper.is_none() {
                    *mapper = Some(FlvMapper::new(clip, enhanced, config.initial_timestamp)?);
                } else if hevc && !enhanced {
                    // Built for another server's answer earlier: refuse the same way.
                    FlvMapper::new(clip, false, config.initial_timestamp)?;
                }
            }
        }
    }
    let Some(mapper) = mapper.as_mut() else {
        return Err(PushError::Protocol {
            stage: "publish",
            why: "the stream went live without a connect result".into(),
        });
    };
    counters.lives.fetch_add(1, Ordering::Relaxed);
    counters.live.store(true, Ordering::Relaxed);
    tracing::info!(%url, clip = mapper.clip_name(), "publishing");

    // Frames from the newest keyframe not yet published: a GOP already sent before a reconnect
    // is not sent again, so no receiver sees a timestamp twice.
    let mut reader = ring.reader(Start::NewestKeyframe);
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
                        return Ok(());
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
            _ = stop.changed() => {
                let _ = session.unpublish();
                let _ = flush(&mut wr, &mut session, counters, config.timeout).await;
                let _ = wr.shutdown().await;
                tracing::info!(%url, "unpublished");
                return Ok(());
            }
        }
    }
}

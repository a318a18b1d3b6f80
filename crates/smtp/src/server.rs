//! The tokio layer: listeners, session limits, timeouts, TLS, and the event channel.
//!
//! Per connection: read into a buffer, [`Session::feed`] it, act on the [`SessionEvent`]s, write
//! the replies once the buffer is used up (so pipelined commands get their replies in one write).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nvrkit_media::WallTime;
use nvrkit_net::{ByteBudget, ConnLimiter, MessageClock, Permit};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::config::{ServerConfig, SnapshotStore};
use crate::error::{Error, Result};
use crate::event::{CameraEvent, EventPhase};
use crate::extract::extract;
use crate::session::{BUSY_REPLY, CloseReason, Message, Phase, Session, SessionEvent};
use crate::tls::{ServerTls, server_tls};

/// Read buffer while waiting for commands: small, so idle sessions stay cheap.
const COMMAND_BUFFER: usize = 4 * 1024;
/// Read buffer inside DATA: large, so big mails take few reads.
const DATA_BUFFER: usize = 64 * 1024;

/// What a started server is listening on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// The plain (and STARTTLS) listener's bound address.
    pub listen: Option<SocketAddr>,
    /// The implicit-TLS listener's bound address.
    pub tls_listen: Option<SocketAddr>,
    /// SHA-256 fingerprint of the certificate, when TLS is on.
    pub fingerprint: Option<String>,
    /// Whether that certificate was generated at start.
    pub self_signed: bool,
}

/// Counters of a running server.
#[derive(Debug)]
pub struct Stats {
    limiter: Arc<ConnLimiter>,
    budget: Arc<ByteBudget>,
    accepted: AtomicU64,
    refused: AtomicU64,
    messages: AtomicU64,
    cut_off: AtomicU64,
}

impl Stats {
    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.limiter.open()
    }
    /// Bytes of mail buffered now across all sessions (received, or waiting to be parsed).
    pub fn buffered_bytes(&self) -> u64 {
        self.budget.used()
    }
    /// Sessions ended by a deadline, the minimum data rate or the lifetime limit.
    pub fn cut_off(&self) -> u64 {
        self.cut_off.load(Ordering::Relaxed)
    }
    /// Connections accepted since start.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Connections turned away with `421` by the session limits.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Messages accepted (each became an event).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

/// A running server. Dropping it stops the listeners at once and lets open sessions finish;
/// [`Server::shutdown`] also tells open sessions `421` and waits for the listeners.
#[derive(Debug)]
pub struct Server {
    info: ServerInfo,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

struct Shared {
    cfg: ServerConfig,
    session: Arc<crate::config::SessionConfig>,
    tls: Option<ServerTls>,
    events: mpsc::Sender<CameraEvent>,
    stats: Arc<Stats>,
    limiter: Arc<ConnLimiter>,
    budget: Arc<ByteBudget>,
    /// Permits to parse a mail on the blocking pool.
    extract: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Server {
    /// Binds the listeners and starts serving. Events arrive on the returned channel, in the order
    /// their DATA ended (per connection).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), nvrkit_smtp::Error> {
    /// use nvrkit_smtp::{Server, ServerConfig};
    /// let (server, mut events) = Server::start(ServerConfig::default()).await?;
    /// println!("listening on {:?}", server.info().listen);
    /// while let Some(event) = events.recv().await {
    ///     println!("{}", event.to_json());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn start(mut cfg: ServerConfig) -> Result<(Server, mpsc::Receiver<CameraEvent>)> {
        let tls = server_tls(&cfg.tls, &[cfg.session.hostname.as_str()])?;
        cfg.session.starttls = tls.is_some();
        if let SnapshotStore::Dir(dir) = &cfg.snapshots {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                Error::io(format!("creating snapshot directory {}", dir.display()), e)
            })?;
        }
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })
        };
        let plain = match cfg.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let implicit = match cfg.tls_listen {
            Some(addr) if tls.is_none() => {
                return Err(Error::Bind {
                    addr,
                    source: std::io::Error::other("an implicit-TLS listener needs TLS enabled"),
                });
            }
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let info = ServerInfo {
            listen: local(&plain),
            tls_listen: local(&implicit),
            fingerprint: tls.as_ref().map(|t| t.fingerprint.clone()),
            self_signed: tls.as_ref().is_some_and(|t| t.self_signed),
        };

        let (stop_tx, stop_rx) = watch::channel(false);
        let (out_tx, out_rx) = mpsc::channel(cfg.channel_capacity.max(1));
        let mut tasks = JoinSet::new();
        let events = match cfg.end_after {
            Some(after) => {
                let (in_tx, in_rx) = mpsc::channel(cfg.channel_capacity.max(1));
                tasks.spawn(track_ends(in_rx, out_tx, after, stop_rx.clone()));
                in_tx
            }
            None => out_tx,
        };
        let limiter = ConnLimiter::new(cfg.max_sessions, Some(cfg.max_sessions_per_ip));
        let budget = ByteBudget::new(cfg.mail_budget);
        let stats = Arc::new(Stats {
            limiter: Arc::clone(&limiter),
            budget: Arc::clone(&budget),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            cut_off: AtomicU64::new(0),
        });
        let workers = match cfg.extract_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let shared = Arc::new(Shared {
            session: Arc::new(cfg.session.clone()),
            cfg,
            tls,
            events,
            stats: Arc::clone(&stats),
            limiter,
            budget,
            extract: Arc::new(Semaphore::new(workers)),
            stop: stop_rx,
        });
        if let Some(listener) = plain {
            tasks.spawn(accept_loop(listener, false, Arc::clone(&shared)));
        }
        if let Some(listener) = implicit {
            tasks.spawn(accept_loop(listener, true, Arc::clone(&shared)));
        }
        Ok((
            Server {
                info,
                stats,
                stop: stop_tx,
                tasks,
            },
            out_rx,
        ))
    }

    /// Where the server listens.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops accepting, tells open sessions `421`, and waits for the listeners to close. The event
    /// channel closes once every session has ended.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Resolves when the server is told to stop (never, if the [`Server`] was dropped instead).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn accept_loop(listener: TcpListener, implicit_tls: bool, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        match shared.limiter.try_acquire(peer.ip()) {
            Ok(permit) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, peer, implicit_tls, &shared).await {
                        tracing::debug!(%peer, "session ended: {e}");
                    }
                    drop::<Permit>(permit);
                });
            }
            Err(refusal) => {
                shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, "{refusal}: 421");
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = timeout(Duration::from_secs(5), stream.write_all(BUSY_REPLY)).await;
                });
            }
        }
    }
}

enum Outcome<S> {
    Closed,
    StartTls(S),
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shared: &Arc<Shared>,
) -> Result<()> {
    tracing::debug!(%peer, implicit_tls, "session start");
    let opened = Instant::now();
    let mut clock = MessageClock::new(
        opened.into_std(),
        shared.cfg.request_timeout,
        shared.cfg.command_timeout,
        None,
    );
    if implicit_tls {
        let Some(tls) = &shared.tls else {
            return Ok(());
        };
        let stream = handshake(tls, stream, peer, shared.cfg.request_timeout).await?;
        let mut session = new_session(shared, true);
        drive(stream, &mut session, peer, shared, opened, &mut clock).await?;
        return Ok(());
    }
    let mut session = new_session(shared, false);
    if let Outcome::StartTls(stream) =
        drive(stream, &mut session, peer, shared, opened, &mut clock).await?
    {
        let Some(tls) = &shared.tls else {
            return Ok(());
        };
        let stream = handshake(tls, stream, peer, shared.cfg.request_timeout).await?;
        session.tls_started();
        clock.on_message(Instant::now().into_std(), false);
        drive(stream, &mut session, peer, shared, opened, &mut clock).await?;
    }
    Ok(())
}

fn new_session(shared: &Shared, tls: bool) -> Session {
    let mut session = Session::new(Arc::clone(&shared.session), tls);
    session.set_budget(Arc::clone(&shared.budget));
    session
}

async fn handshake(
    tls: &ServerTls,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>> {
    match timeout(limit, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            // A TLS 1.0/1.1-only camera lands here ("peer is incompatible").
            tracing::warn!(%peer, "TLS handshake failed: {e}");
            Err(Error::io(format!("TLS handshake with {peer}"), e))
        }
        Err(_) => Err(Error::Connection(format!(
            "TLS handshake with {peer} timed out"
        ))),
    }
}

async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    limit: Duration,
) -> Result<()> {
    if session.output().is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(session.output()).await?;
        stream.flush().await
    };
    match timeout(limit, write).await {
        Ok(Ok(())) => {
            session.clear_output();
            Ok(())
        }
        Ok(Err(e)) => Err(Error::io("writing a reply", e)),
        Err(_) => Err(Error::Connection(
            "client does not read its replies".to_owned(),
        )),
    }
}

/// A mail transfer being timed for the minimum data rate.
#[derive(Clone, Copy)]
struct Transfer {
    began: Instant,
    bytes: u64,
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    session: &mut Session,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    opened: Instant,
    clock: &mut MessageClock,
) -> Result<Outcome<S>> {
    let cfg = &shared.cfg;
    let mut stop = shared.stop.clone();
    let mut buf = vec![0u8; COMMAND_BUFFER];
    let lifetime_end = cfg.max_lifetime.map(|life| opened + life);
    let mut progress = session.progress();
    let mut last_read = 0;
    let mut last_byte = Instant::now();
    let mut transfer: Option<Transfer> = None;
    loop {
        flush(&mut stream, session, cfg.request_timeout).await?;
        let phase = session.phase();
        match phase {
            Phase::Closed => {
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                return Ok(Outcome::Closed);
            }
            Phase::Data => {
                // Grow only when a read filled the buffer: a small mail never needs 64 KiB.
                if last_read == buf.len() && buf.len() < DATA_BUFFER {
                    buf.resize(DATA_BUFFER, 0);
                }
            }
            _ => {
                if buf.len() > COMMAND_BUFFER {
                    buf = vec![0u8; COMMAND_BUFFER];
                }
            }
        }
        if session.in_transfer() {
            transfer.get_or_insert(Transfer {
                began: Instant::now(),
                bytes: 0,
            });
        } else {
            transfer = None;
        }
        // The deadlines: inside DATA, a byte within the data timeout; else a command complete
        // within its deadline from its first byte, or the idle timer from the last complete
        // one (a trickle moves neither); during a transfer, the minimum rate; always, the
        // lifetime.
        let mut deadline = match phase {
            Phase::Data => last_byte + cfg.data_timeout,
            _ => Instant::from_std(clock.deadline()),
        };
        if let Some(t) = transfer
            && let Some(check) = cfg.min_data_rate.next_check(t.began.into_std(), t.bytes)
        {
            deadline = deadline.min(Instant::from_std(check));
        }
        if let Some(end) = lifetime_end {
            deadline = deadline.min(end);
        }
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => read,
            () = stopped(&mut stop) => {
                session.shutting_down();
                flush(&mut stream, session, Duration::from_secs(1)).await?;
                return Ok(Outcome::Closed);
            }
        };
        let n = match read {
            Err(_) => {
                let now = Instant::now();
                let reason = if lifetime_end.is_some_and(|end| now >= end) {
                    CloseReason::Lifetime
                } else if transfer.is_some_and(|t| {
                    cfg.min_data_rate
                        .too_slow(t.began.into_std(), t.bytes, now.into_std())
                }) {
                    CloseReason::TooSlow
                } else if match phase {
                    Phase::Data => now < last_byte + cfg.data_timeout,
                    _ => clock.expired(now.into_std()).is_none(),
                } {
                    continue; // woke for a rate check that passed
                } else {
                    CloseReason::Timeout
                };
                tracing::info!(%peer, ?phase, ?reason, "session cut off");
                shared.stats.cut_off.fetch_add(1, Ordering::Relaxed);
                session.close(reason);
                continue;
            }
            Ok(Ok(0)) => return Ok(Outcome::Closed),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(Error::io(format!("reading from {peer}"), e)),
        };
        last_read = n;
        last_byte = Instant::now();
        if let Some(t) = transfer.as_mut() {
            t.bytes += n as u64;
        }
        let mut pos = 0;
        while pos < n {
            let fed = session.feed(&buf[pos..n]);
            pos += fed.consumed;
            match fed.event {
                None => {}
                Some(SessionEvent::Message(message)) => {
                    shared.stats.messages.fetch_add(1, Ordering::Relaxed);
                    deliver(shared, message, peer).await;
                }
                Some(SessionEvent::StartTls) => {
                    // Whatever the client pipelined after STARTTLS is dropped (RFC 3207 §5).
                    flush(&mut stream, session, cfg.request_timeout).await?;
                    return Ok(Outcome::StartTls(stream));
                }
                Some(SessionEvent::Close) => break,
            }
        }
        let now = last_byte.into_std();
        if session.progress() != progress {
            progress = session.progress();
            clock.on_message(now, session.pending_line());
        } else {
            clock.on_bytes(now, session.pending_line());
        }
    }
}

/// Turns a message into an event and hands it on, before its `250` is written. MIME parsing
/// runs on the blocking pool, at most [`ServerConfig::extract_workers`] mails at once, so a
/// mail built to be slow to parse delays no other session's replies.
async fn deliver(shared: &Shared, message: Message, peer: SocketAddr) {
    let received_at = WallTime::now();
    let parsed = {
        let Ok(_permit) = shared.extract.acquire().await else {
            return; // never closed
        };
        tokio::task::spawn_blocking(move || extract(&message, Some(peer), received_at)).await
    };
    let mut event = match parsed {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(%peer, "extracting an event failed: {e}");
            return;
        }
    };
    if let SnapshotStore::Dir(dir) = &shared.cfg.snapshots {
        save_snapshots(dir, &mut event).await;
    }
    tracing::debug!(%peer, kind = %event.kind, camera = ?event.camera, "event");
    // A closed receiver means nobody listens any more; the mail is still accepted.
    let _ = shared.events.send(event).await;
}

async fn save_snapshots(dir: &Path, event: &mut CameraEvent) {
    let stamp = event.received_at.to_compact();
    let camera = sanitize(event.camera.as_deref().unwrap_or("camera"));
    for (i, snapshot) in event.snapshots.iter_mut().enumerate() {
        let ext = if snapshot.content_type == "image/png" {
            "png"
        } else {
            "jpg"
        };
        let path: PathBuf = dir.join(format!("{stamp}_{camera}_{}.{ext}", i + 1));
        match tokio::fs::write(&path, &snapshot.data).await {
            Ok(()) => snapshot.path = Some(path),
            Err(e) => tracing::warn!("saving snapshot {}: {e}", path.display()),
        }
    }
}

/// A camera name fit for a file name.
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(48)
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "camera".to_owned()
    } else {
        cleaned
    }
}

/// Forwards events and adds an [`EventPhase::End`] event for each camera that has been quiet for
/// `after`.
async fn track_ends(
    mut rx: mpsc::Receiver<CameraEvent>,
    tx: mpsc::Sender<CameraEvent>,
    after: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: HashMap<String, (Instant, CameraEvent)> = HashMap::new();
    loop {
        let next = last.values().map(|(at, _)| *at + after).min();
        tokio::select! {
            received = rx.recv() => {
                let Some(event) = received else { return };
                let mut template = event.clone();
                template.snapshots.clear();
                last.insert(event.camera_key(), (Instant::now(), template));
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                let expired: Vec<String> = last
                    .iter()
                    .filter(|(_, (at, _))| *at + after <= now)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in expired {
                    if let Some((_, mut event)) = last.remove(&key) {
                        event.phase = EventPhase::End;
                        event.received_at = WallTime::now();
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
            }
            () = stopped(&mut stop) => return,
        }
    }
}

//! One load session: DESCRIBE, SETUP, PLAY, then read and count until the end of the run.
//!
//! The read loop waits for readiness once and then drains the socket with non-blocking reads
//! into a buffer the session keeps, so a wake-up handles every packet that arrived meanwhile;
//! per packet it reads the RTP header and, until the first keyframe, one to three payload bytes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant as TokioInstant, sleep_until, timeout};

use super::count::{Histogram, Lateness, RtpHeader, SeqCounter, VideoCodec};
use super::rtsp::{Authorization, Media, Response, RtspUrl, sdp_media};
use super::{LoadError, Transport};

/// What one session measured.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    /// Why it failed (it may still have counted packets before).
    pub error: Option<String>,
    /// Connect to the PLAY response, µs.
    pub setup_us: Option<u64>,
    /// PLAY sent to the first packet of a keyframe, µs.
    pub first_key_us: Option<u64>,
    /// RTP packets (all media).
    pub packets: u64,
    /// RTP bytes (all media, RTP headers included).
    pub bytes: u64,
    /// Video frames (packets with the marker bit on the video stream).
    pub frames: u64,
    /// Largest frame lateness, µs.
    pub max_late_us: u64,
    /// Sequence continuity per set-up stream (video first).
    pub seq: Vec<SeqCounter>,
}

/// A session's plan: where, when, how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The stream.
    pub url: RtspUrl,
    /// TCP-interleaved or UDP.
    pub transport: Transport,
    /// Set up audio too (video only by default).
    pub audio: bool,
    /// When to connect.
    pub start: Instant,
    /// When to stop reading.
    pub end: Instant,
    /// Deadline of each RTSP exchange, and the longest silence of the media.
    pub timeout: Duration,
}

/// State of a set-up stream.
#[derive(Debug)]
struct Stream {
    video: bool,
    codec: VideoCodec,
    lateness: Lateness,
    seq: SeqCounter,
}

/// The counting part of a session, shared by both transports.
struct Counter {
    streams: Vec<Stream>,
    stats: SessionStats,
    play_sent: Instant,
    key_seen: bool,
    base: Instant,
    hist: Rc<RefCell<Histogram>>,
}

impl Counter {
    /// One RTP packet of stream `i`, `wire_len` bytes long, that arrived at `now`; `p` is the
    /// packet or (UDP) its first bytes.
    fn packet(&mut self, i: usize, p: &[u8], wire_len: usize, now: Instant) {
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        let Some(h) = RtpHeader::parse(p) else {
            return;
        };
        self.stats.packets += 1;
        self.stats.bytes += wire_len as u64;
        s.seq.push(h.seq, h.ssrc);
        if !s.video {
            return;
        }
        if !self.key_seen && s.codec.starts_keyframe(&p[h.payload_start..]) {
            self.key_seen = true;
            self.stats.first_key_us = Some(now.duration_since(self.play_sent).as_micros() as u64);
        }
        if h.marker {
            self.stats.frames += 1;
            let arrival = now.duration_since(self.base).as_micros() as i64;
            if let Some(late) = s.lateness.frame(h.timestamp, arrival) {
                self.stats.max_late_us = self.stats.max_late_us.max(late);
                self.hist.borrow_mut().record(late);
            }
        }
    }

    fn finish(mut self, error: Option<LoadError>) -> SessionStats {
        self.stats.seq = self.streams.into_iter().map(|s| s.seq).collect();
        self.stats.error = error.map(|e| e.to_string());
        self.stats
    }
}

/// The control connection and its request state.
struct Control {
    sock: TcpStream,
    buf: Vec<u8>,
    /// Interleaved frames that came before a response.
    early: Vec<u8>,
    cseq: u32,
    auth: Authorization,
    session: Option<String>,
    url: RtspUrl,
    deadline: Duration,
}

impl Control {
    fn request_bytes(&mut self, method: &str, uri: &str, extra: &str) -> Vec<u8> {
        self.cseq += 1;
        let auth = self.auth.header(method, uri);
        let session = self
            .session
            .as_deref()
            .map(|s| format!("Session: {s}\r\n"))
            .unwrap_or_default();
        format!(
            "{method} {uri} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: nvrkit-rtsp-load\r\n{auth}{session}{extra}\r\n",
            self.cseq
        )
        .into_bytes()
    }

    /// Sends a request and reads its response (answering one 401 with the URL's credentials).
    async fn request(
        &mut self,
        method: &str,
        uri: &str,
        extra: &str,
    ) -> Result<Response, LoadError> {
        let mut tried_auth = false;
        loop {
            let req = self.request_bytes(method, uri, extra);
            let r = timeout(self.deadline, async {
                self.sock.write_all(&req).await?;
                self.read_response().await
            })
            .await
            .map_err(|_| LoadError::Timeout(method.to_owned()))??;
            if r.status == 401 && !tried_auth {
                let Some((user, pass)) = self.url.creds.clone() else {
                    return Err(LoadError::Status(method.to_owned(), 401));
                };
                let challenges: Vec<&str> = r
                    .headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("WWW-Authenticate"))
                    .map(|(_, v)| v.as_str())
                    .collect();
                self.auth = Authorization::answer(&challenges, &user, &pass)
                    .ok_or_else(|| LoadError::Protocol("no Basic or Digest challenge".into()))?;
                tried_auth = true;
                continue;
            }
            if r.status != 200 {
                return Err(LoadError::Status(method.to_owned(), r.status));
            }
            return Ok(r);
        }
    }

    async fn read_response(&mut self) -> Result<Response, LoadError> {
        loop {
            // Interleaved data before the response (gst-rtsp-server starts sending before it
            // answers PLAY): kept for the read loop, which counts it first.
            while self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let len = 4 + usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < len {
                    break;
                }
                self.early.extend(self.buf.drain(..len));
            }
            if self.buf.first() == Some(&b'$') {
                // A partial frame: read on.
            } else if let Some((r, used)) = Response::parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(r);
            }
            if self.early.len() > 1 << 20 {
                return Err(LoadError::Protocol(
                    "over 1 MiB of data before a response".into(),
                ));
            }
            let mut chunk = [0u8; 4096];
            let n = self.sock.read(&mut chunk).await?;
            if n == 0 {
                return Err(LoadError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Binds an even RTP port and the RTCP port above it on 127.0.0.1-style `ip`.
fn udp_pair(ip: std::net::IpAddr) -> Result<(UdpSocket, UdpSocket), LoadError> {
    use socket2::{Domain, Socket, Type};
    let bind = |port: u16| -> std::io::Result<std::net::UdpSocket> {
        let s = Socket::new(Domain::for_address((ip, port).into()), Type::DGRAM, None)?;
        // Room for a catch-up burst: the server's pace is what is measured, not our wake-ups.
        let _ = s.set_recv_buffer_size(1 << 20);
        s.bind(&std::net::SocketAddr::from((ip, port)).into())?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    };
    for _ in 0..64 {
        let rtp = bind(0)?;
        let port = rtp.local_addr()?.port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = bind(port + 1) {
            return Ok((UdpSocket::from_std(rtp)?, UdpSocket::from_std(rtcp)?));
        }
    }
    Err(LoadError::Protocol("no even/odd UDP port pair free".into()))
}

/// Runs one session to its plan's end; never panics, returns what it counted.
pub async fn run(plan: Plan, base: Instant, hist: Rc<RefCell<Histogram>>) -> SessionStats {
    sleep_until(TokioInstant::from_std(plan.start)).await;
    let mut counter = Counter {
        streams: Vec::new(),
        stats: SessionStats::default(),
        play_sent: Instant::now(),
        key_seen: false,
        base,
        hist,
    };
    let result = play(&plan, &mut counter).await;
    counter.finish(result.err())
}

async fn play(plan: &Plan, counter: &mut Counter) -> Result<(), LoadError> {
    let t0 = Instant::now();
    let sock = timeout(plan.timeout, TcpStream::connect(&plan.url.addr))
        .await
        .map_err(|_| LoadError::Timeout("connect".into()))??;
    let local_ip = sock.local_addr()?.ip();
    let mut c = Control {
        sock,
        buf: Vec::with_capacity(4096),
        early: Vec::new(),
        cseq: 0,
        auth: Authorization::None,
        session: None,
        url: plan.url.clone(),
        deadline: plan.timeout,
    };
    let url = plan.url.url.clone();
    let r = c
        .request("DESCRIBE", &url, "Accept: application/sdp\r\n")
        .await?;
    let base = r.header("Content-Base").unwrap_or(&url).to_owned();
    let sdp = String::from_utf8_lossy(&r.body).into_owned();
    let media: Vec<Media> = sdp_media(&sdp, &base)
        .into_iter()
        .filter(|m| m.kind == "video" || (plan.audio && m.kind == "audio"))
        .collect();
    let video = media
        .iter()
        .position(|m| m.kind == "video")
        .ok_or_else(|| LoadError::Protocol("no video in the SDP".into()))?;
    // Video first: stream 0 is the video.
    let mut media = media;
    media.swap(0, video);
    let mut udp = Vec::new();
    for (i, m) in media.iter().enumerate() {
        let transport = match plan.transport {
            Transport::Tcp => format!(
                "Transport: RTP/AVP/TCP;unicast;interleaved={}-{}\r\n",
                2 * i,
                2 * i + 1
            ),
            Transport::Udp => {
                let (rtp, rtcp) = udp_pair(local_ip)?;
                let port = rtp.local_addr()?.port();
                udp.push((rtp, rtcp));
                format!(
                    "Transport: RTP/AVP;unicast;client_port={port}-{}\r\n",
                    port + 1
                )
            }
        };
        let r = c.request("SETUP", &m.control, &transport).await?;
        if c.session.is_none() {
            let s = r
                .header("Session")
                .ok_or_else(|| LoadError::Protocol("SETUP without Session".into()))?;
            c.session = Some(s.split(';').next().unwrap_or(s).trim().to_owned());
        }
        counter.streams.push(Stream {
            video: m.kind == "video",
            codec: VideoCodec::from_encoding(&m.encoding),
            lateness: Lateness::new(m.clock_rate, LATENESS_SETTLE),
            seq: SeqCounter::default(),
        });
    }
    counter.play_sent = Instant::now();
    c.request("PLAY", &base, "Range: npt=0.000-\r\n").await?;
    counter.stats.setup_us = Some(t0.elapsed().as_micros() as u64);
    let result = match plan.transport {
        Transport::Tcp => read_interleaved(plan, &mut c, counter).await,
        Transport::Udp => read_udp(plan, &mut c, &udp, counter).await,
    };
    // Polite end: the server can drop the session at once (over UDP it would send on for its
    // session timeout otherwise). The response is not waited for.
    let teardown = c.request_bytes("TEARDOWN", &base, "");
    let _ = timeout(Duration::from_millis(200), c.sock.write_all(&teardown)).await;
    result
}

/// Frame lateness is measured from this long after a stream's first frame on.
pub const LATENESS_SETTLE: Duration = Duration::from_secs(1);

/// Keepalive: a request on the control connection this often (servers time out at 60 s).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The media's liveness and the session's keepalive, checked at every tick.
struct Liveness {
    last_keepalive: Instant,
    packets_at_tick: u64,
}

impl Liveness {
    fn new() -> Liveness {
        Liveness {
            last_keepalive: Instant::now(),
            packets_at_tick: 0,
        }
    }

    /// Fails when no packet came since the last tick; sends an `OPTIONS` every [`KEEPALIVE`].
    async fn tick(&mut self, c: &mut Control, url: &str, packets: u64) -> Result<(), LoadError> {
        if packets == self.packets_at_tick {
            return Err(LoadError::Stalled);
        }
        self.packets_at_tick = packets;
        if self.last_keepalive.elapsed() >= KEEPALIVE {
            self.last_keepalive = Instant::now();
            let req = c.request_bytes("OPTIONS", url, "");
            c.sock.write_all(&req).await?;
        }
        Ok(())
    }
}

/// Reads interleaved frames (`$`, channel, 16-bit length, packet) and the responses to our
/// keepalives from the control connection until the end.
async fn read_interleaved(
    plan: &Plan,
    c: &mut Control,
    counter: &mut Counter,
) -> Result<(), LoadError> {
    // A frame longer than the buffer grows it (interleaved frames are at most 65,539 bytes).
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut leftover = std::mem::take(&mut c.early);
    leftover.append(&mut c.buf);
    if leftover.len() > buf.len() {
        buf.resize(leftover.len(), 0);
    }
    buf[..leftover.len()].copy_from_slice(&leftover);
    filled += leftover.len();
    let used = frames(&buf[..filled], Instant::now(), counter)?;
    buf.copy_within(used..filled, 0);
    filled -= used;
    let end = sleep_until(TokioInstant::from_std(plan.end));
    tokio::pin!(end);
    let mut tick = tokio::time::interval(plan.timeout.min(KEEPALIVE));
    tick.tick().await;
    let mut live = Liveness::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut end => return Ok(()),
            _ = tick.tick() => live.tick(c, &plan.url.url, counter.stats.packets).await?,
            r = c.sock.readable() => {
                r?;
                // At most 32 reads a wake-up, so that a fast stream cannot starve the others
                // (the readiness stays set when we stop before `WouldBlock`). A read that
                // leaves room in the buffer took everything the socket held: the readiness is
                // cleared without the read that would return `WouldBlock` (one system call a
                // wake-up instead of two; data that comes meanwhile is a new epoll edge, which
                // sets it again).
                for _ in 0..32 {
                    if filled == buf.len() {
                        let grown = (buf.len() * 2).min(128 * 1024);
                        if grown == buf.len() {
                            return Err(LoadError::Protocol("no frame in 128 KiB".into()));
                        }
                        buf.resize(grown, 0);
                    }
                    let room = buf.len() - filled;
                    match c.sock.try_read(&mut buf[filled..]) {
                        Ok(0) => return Err(LoadError::Closed),
                        Ok(n) => {
                            filled += n;
                            let used = frames(&buf[..filled], Instant::now(), counter)?;
                            buf.copy_within(used..filled, 0);
                            filled -= used;
                            if n < room {
                                clear_readable(&c.sock);
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

/// Clears the read readiness tokio keeps for `sock` without a system call, after a read that
/// drained it (tokio clears it only on `WouldBlock`; an event that came after the readiness was
/// observed is not cleared, see `Registration::clear_readiness`).
fn clear_readable(sock: &TcpStream) {
    let _ = sock.try_io(Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}

/// Counts the complete interleaved frames at the start of `buf` and skips RTSP responses
/// between them; returns how many bytes were used.
fn frames(buf: &[u8], now: Instant, counter: &mut Counter) -> Result<usize, LoadError> {
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest[0] == b'$' {
            if rest.len() < 4 {
                break;
            }
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            if rest.len() < 4 + len {
                break;
            }
            let channel = rest[1];
            if channel.is_multiple_of(2) {
                counter.packet(usize::from(channel / 2), &rest[4..4 + len], len, now);
            }
            at += 4 + len;
        } else {
            match Response::parse(rest)? {
                Some((_, used)) => at += used,
                None => break,
            }
        }
    }
    Ok(at)
}

/// Reads RTP datagrams from each stream's socket (RTCP is drained and ignored) and the
/// control connection's keepalive responses until the end.
async fn read_udp(
    plan: &Plan,
    c: &mut Control,
    socks: &[(UdpSocket, UdpSocket)],
    counter: &mut Counter,
) -> Result<(), LoadError> {
    let mut batch = Batch::new();
    let mut buf = [0u8; 2048];
    let end = sleep_until(TokioInstant::from_std(plan.end));
    tokio::pin!(end);
    let mut tick = tokio::time::interval(plan.timeout.min(KEEPALIVE));
    tick.tick().await;
    let mut live = Liveness::new();
    let video = &socks[0];
    let audio = socks.get(1);
    loop {
        tokio::select! {
            biased;
            _ = &mut end => return Ok(()),
            _ = tick.tick() => live.tick(c, &plan.url.url, counter.stats.packets).await?,
            r = video.0.readable() => { r?; drain(&video.0, Some(0), &mut batch, counter)?; }
            r = async { audio.expect("guarded").0.readable().await }, if audio.is_some() => {
                r?;
                drain(&audio.expect("guarded").0, Some(1), &mut batch, counter)?;
            }
            r = video.1.readable() => { r?; drain(&video.1, None, &mut batch, counter)?; }
            r = async { audio.expect("guarded").1.readable().await }, if audio.is_some() => {
                r?;
                drain(&audio.expect("guarded").1, None, &mut batch, counter)?;
            }
            r = c.sock.readable() => {
                r?;
                // Keepalive responses (or the server closing the session).
                match c.sock.try_read(&mut buf) {
                    Ok(0) => return Err(LoadError::Closed),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// Datagrams one `recvmmsg` reads at most.
pub const BATCH: usize = 32;

/// Bytes kept of each datagram: the RTP header with 15 CSRCs and a header extension of up to
/// 40 words, and the payload bytes keyframe detection reads; the rest is truncated by the
/// kernel (not copied), its length still counted.
pub const HEAD: usize = 256;

/// Batches of up to [`BATCH`] datagrams read with one `recvmmsg`, keeping the first [`HEAD`]
/// bytes of each: one buffer per session, no allocation per packet.
#[derive(Debug)]
pub struct Batch {
    buf: Box<[u8]>,
    lens: [usize; BATCH],
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    /// Empty buffers.
    pub fn new() -> Batch {
        Batch {
            buf: vec![0u8; BATCH * HEAD].into_boxed_slice(),
            lens: [0; BATCH],
        }
    }

    /// Reads the datagrams waiting on `sock`, up to [`BATCH`]; returns how many (`WouldBlock`
    /// when none). Fewer than [`BATCH`] means the queue was emptied, and then tokio's
    /// readiness is cleared as a `WouldBlock` would (no second call to learn it).
    pub fn recv(&mut self, sock: &UdpSocket) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = sock.as_raw_fd();
        let n = sock.try_io(Interest::READABLE, || {
            // SAFETY: all-zero is a valid `iovec` and `mmsghdr` (null pointers, zero lengths).
            let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (i, chunk) in self.buf.chunks_exact_mut(HEAD).enumerate() {
                iov[i].iov_base = chunk.as_mut_ptr().cast();
                iov[i].iov_len = HEAD;
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs` holds BATCH headers, each pointing to one iovec of `iov` that
            // points to HEAD writable bytes of `self.buf`; all outlive the call. MSG_TRUNC: a
            // datagram's length is its length on the wire, though only HEAD bytes are copied.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = n as usize;
            for (len, m) in self.lens.iter_mut().zip(&msgs[..n]) {
                *len = m.msg_len as usize;
            }
            Ok(n)
        })?;
        if n < BATCH {
            let _ = sock.try_io(Interest::READABLE, || {
                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
            });
        }
        Ok(n)
    }

    /// Datagram `i` of the last [`Batch::recv`]: its first bytes (at most [`HEAD`]) and its
    /// length on the wire.
    pub fn datagram(&self, i: usize) -> (&[u8], usize) {
        let len = self.lens[i];
        (&self.buf[i * HEAD..i * HEAD + len.min(HEAD)], len)
    }
}

/// Batches read a wake-up at most, so that one busy socket cannot starve the others (the
/// readiness stays set when it stops early).
const BATCHES_PER_WAKE: usize = 4;

/// Reads the datagrams waiting on `sock`: RTP of `stream` counted, or (`None`) RTCP dropped.
fn drain(
    sock: &UdpSocket,
    stream: Option<usize>,
    batch: &mut Batch,
    counter: &mut Counter,
) -> Result<(), LoadError> {
    for _ in 0..BATCHES_PER_WAKE {
        match batch.recv(sock) {
            Ok(n) => {
                if let Some(s) = stream {
                    let now = Instant::now();
                    for i in 0..n {
                        let (head, len) = batch.datagram(i);
                        counter.packet(s, head, len, now);
                    }
                }
                if n < BATCH {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTP packet of `len` bytes (payload type 96, SSRC 7).
    fn rtp(seq: u16, marker: bool, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len.max(12)];
        p[0] = 0x80;
        p[1] = 96 | if marker { 0x80 } else { 0 };
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 3600).to_be_bytes());
        p[8..12].copy_from_slice(&7u32.to_be_bytes());
        p
    }

    fn counter() -> Counter {
        Counter {
            streams: vec![Stream {
                video: true,
                codec: VideoCodec::H264,
                lateness: Lateness::new(90_000, LATENESS_SETTLE),
                seq: SeqCounter::default(),
            }],
            stats: SessionStats::default(),
            play_sent: Instant::now(),
            key_seen: false,
            base: Instant::now(),
            hist: Rc::new(RefCell::new(Histogram::default())),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    /// Whether `fut` is ready at its first poll (a zero timeout polls it once, then elapses).
    async fn ready_now<F: std::future::Future>(fut: F) -> bool {
        tokio::time::timeout(Duration::ZERO, fut).await.is_ok()
    }

    #[test]
    fn udp_batches_count_every_datagram_with_its_wire_length() {
        runtime().block_on(async {
            let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = rx.local_addr().expect("addr");
            // 75 datagrams: more than two batches, some longer than HEAD (truncated), every
            // fifth a frame's last packet.
            let sizes: Vec<usize> = (0..75).map(|i| [12, 40, 300, 1400, 257][i % 5]).collect();
            for (i, &len) in sizes.iter().enumerate() {
                tx.send_to(&rtp(i as u16, i % 5 == 4, len), to)
                    .expect("send");
            }
            let mut c = counter();
            let mut batch = Batch::new();
            while c.stats.packets < 75 {
                rx.readable().await.expect("readable");
                drain(&rx, Some(0), &mut batch, &mut c).expect("drain");
            }
            assert_eq!(c.stats.packets, 75);
            assert_eq!(c.stats.bytes, sizes.iter().sum::<usize>() as u64);
            assert_eq!(c.stats.frames, 15);
            let seq = &c.streams[0].seq;
            assert_eq!((seq.received, seq.lost, seq.reordered), (75, 0, 0));
            // The queue is empty and the last batch was short: readiness was cleared without
            // a WouldBlock...
            assert!(!ready_now(rx.readable()).await);
            // ...and a datagram that comes after sets it again.
            tx.send_to(&rtp(75, true, 100), to).expect("send");
            rx.readable().await.expect("readable");
            drain(&rx, Some(0), &mut batch, &mut c).expect("drain");
            assert_eq!((c.stats.packets, c.stats.frames), (76, 16));
        });
    }

    #[test]
    fn udp_batch_keeps_the_head_of_a_long_datagram() {
        runtime().block_on(async {
            let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let mut p = rtp(9, true, 1000);
            p[12] = 0x65; // an IDR slice
            tx.send_to(&p, rx.local_addr().expect("addr"))
                .expect("send");
            rx.readable().await.expect("readable");
            let mut batch = Batch::new();
            assert_eq!(batch.recv(&rx).expect("recv"), 1);
            let (head, len) = batch.datagram(0);
            assert_eq!((head, len), (&p[..HEAD], 1000));
            let mut c = counter();
            c.packet(0, head, len, Instant::now());
            assert!(c.key_seen);
            assert_eq!(c.stats.bytes, 1000);
        });
    }

    #[test]
    fn a_short_tcp_read_clears_readiness_and_later_data_sets_it_again() {
        runtime().block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let mut tx = TcpStream::connect(l.local_addr().expect("addr"))
                .await
                .expect("connect");
            let (rx, _) = l.accept().await.expect("accept");
            tx.write_all(&[b'x'; 100]).await.expect("write");
            rx.readable().await.expect("readable");
            let mut buf = [0u8; 4096];
            let mut got = 0;
            while got < 100 {
                rx.readable().await.expect("readable");
                match rx.try_read(&mut buf) {
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
            clear_readable(&rx);
            assert!(!ready_now(rx.readable()).await);
            tx.write_all(b"more").await.expect("write");
            rx.readable().await.expect("readable");
            assert_eq!(rx.try_read(&mut buf).expect("read"), 4);
        });
    }
}

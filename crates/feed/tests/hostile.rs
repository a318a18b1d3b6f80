//! loopcam's RTSP server against hostile peers (issue 14): each attack runs from 127.0.0.2 while
//! a reader on 127.0.0.3 plays the stream over TCP (DESCRIBE, SETUP interleaved, PLAY) and must
//! keep receiving RTP during it; the attacking connection must end refused or closed. Deadlines
//! and caps are small here (1 s, a few connections); every wait is a hang guard, never a timing
//! assert.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use md5::{Digest as _, Md5};
use nvrkit_feed::Clip;
use nvrkit_feed::rtsp::auth::Auth;
use nvrkit_feed::server::{Config, Server};
use nvrkit_media::Demuxer;
use nvrkit_testutil::hostile::{
    ATTACKER, CLIENT, HANG_GUARD, connect_from, eventually, read_until_closed, trickle_is_cut,
};

/// A server on its own runtime, stopped when dropped.
struct Loopcam {
    rt: tokio::runtime::Runtime,
    server: Option<Server>,
    addr: SocketAddr,
}

impl Drop for Loopcam {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(HANG_GUARD, s.shutdown()).await });
        }
    }
}

/// Short deadlines, no UDP, the embedded sample at `/sample`; `config` changes the rest.
fn start(config: impl FnOnce(&mut Config)) -> Loopcam {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: false,
        request_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    config(&mut c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
    let clip = Clip::load("sample", &demux).unwrap();
    let server = rt.block_on(Server::start(c, vec![clip])).unwrap();
    let addr = server.local_addr();
    Loopcam {
        rt,
        server: Some(server),
        addr,
    }
}

impl Loopcam {
    fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.addr.port())
    }

    fn tls_addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().tls_local_addr().unwrap()
    }
}

/// An RTSP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
}

impl Reply {
    /// Every value of header `name` (any case).
    fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.head.lines().filter_map(move |l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers(name).next()
    }

    /// The Digest challenge.
    fn digest_challenge(&self) -> &str {
        self.headers("www-authenticate")
            .find(|v| v.starts_with("Digest "))
            .unwrap_or_else(|| panic!("a Digest challenge in {}", self.head))
    }

    fn nonce(&self) -> String {
        let (_, rest) = self.digest_challenge().split_once("nonce=\"").unwrap();
        rest.split('"').next().unwrap().to_owned()
    }
}

/// Reads one response from `s` (bytes after it stay in `buf`); `None` if the connection ends
/// first.
fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Reply> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let body = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + body {
                buf.drain(..end + 4 + body);
                let status = head
                    .strip_prefix("RTSP/1.0 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                return Some(Reply { status, head });
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading a reply: {e} (hang guard?)"),
        }
    }
}

/// Sends one request (CSeq added) and reads its reply.
fn exchange(s: &mut TcpStream, cseq: u32, request: &str) -> Option<Reply> {
    let (line, rest) = request.split_once("\r\n").unwrap_or((request, ""));
    let text = format!("{line}\r\nCSeq: {cseq}\r\n{rest}\r\n");
    s.write_all(text.as_bytes()).ok()?;
    read_reply(s, &mut Vec::new())
}

/// `OPTIONS` on a new connection from the legitimate client's address.
fn options(cam: &Loopcam) -> Option<Reply> {
    exchange(
        &mut connect_from(CLIENT, cam.addr),
        1,
        &format!("OPTIONS {} RTSP/1.0\r\n", cam.url("sample")),
    )
}

/// A request head that never ends: `DESCRIBE` and a header line of `n` bytes of padding.
fn padded(cam: &Loopcam, n: usize) -> String {
    let mut request = format!(
        "DESCRIBE {} RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ",
        cam.url("sample")
    );
    request.extend(std::iter::repeat_n('a', n));
    request
}

/// A request on a new connection from the attacker's address.
fn attack(to: SocketAddr, request: &str) -> Option<Reply> {
    exchange(&mut connect_from(ATTACKER, to), 1, request)
}

/// `Authorization: Basic` of admin:s3cret.
const BASIC: &str = "Authorization: Basic YWRtaW46czNjcmV0\r\n";

/// A well-behaved reader on 127.0.0.3: plays `/sample` over TCP and counts the RTP packets it
/// receives, until told to stop or the server closes.
struct Reader {
    packets: Arc<AtomicU64>,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    fn start(cam: &Loopcam, auth: &'static str) -> Reader {
        let packets = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, url) = (cam.addr, cam.url("sample"));
        let (p, o, st) = (packets.clone(), open.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut s = connect_from(CLIENT, addr);
            let r = exchange(&mut s, 1, &format!("DESCRIBE {url} RTSP/1.0\r\n{auth}")).unwrap();
            assert_eq!(r.status, 200, "{}", r.head);
            let r = exchange(
                &mut s,
                2,
                &format!(
                    "SETUP {url}/trackID=0 RTSP/1.0\r\n{auth}Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                ),
            )
            .unwrap();
            assert_eq!(r.status, 200, "{}", r.head);
            let session = r
                .header("session")
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            s.write_all(
                format!("PLAY {url}/ RTSP/1.0\r\nCSeq: 3\r\n{auth}Session: {session}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            let mut buf = Vec::new();
            let r = read_reply(&mut s, &mut buf).unwrap();
            assert_eq!(r.status, 200, "{}", r.head);
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut chunk = [0u8; 16 * 1024];
            while !st.load(Ordering::Relaxed) {
                while buf.len() >= 4 && buf[0] == b'$' {
                    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                    if buf.len() < 4 + len {
                        break;
                    }
                    if buf[1] == 0 {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                    buf.drain(..4 + len);
                }
                assert!(buf.is_empty() || buf[0] == b'$', "only interleaved frames");
                match s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            o.store(false, Ordering::Relaxed);
        });
        let reader = Reader {
            packets,
            open,
            stop,
            thread: Some(thread),
        };
        reader.wait_for_more(0);
        reader
    }

    fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Waits (hang guard) until more than `than` packets have arrived, the reader still playing.
    fn wait_for_more(&self, than: u64) {
        eventually("the reader receives RTP", || {
            assert!(
                self.open.load(Ordering::Relaxed),
                "the reader's connection ended"
            );
            (self.packets() > than).then_some(())
        });
    }

    /// Asserts that RTP arrived after `before` (taken as the attack began), and goes on
    /// arriving.
    fn kept_receiving_since(&self, before: u64) {
        self.wait_for_more(before);
        self.wait_for_more(self.packets());
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the server closed `s` without a byte of answer.
fn closed_silently(s: &mut TcpStream) -> bool {
    read_until_closed(s).is_some_and(|got| got.is_empty())
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An `Authorization: Digest` line for admin:s3cret as a client computes it (with `nc`:
/// qop=auth).
fn digest(method: &str, uri: &str, nonce: &str, nc: Option<u32>) -> String {
    let ha1 = md5_hex("admin:nvrkit loopcam:s3cret");
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let common = format!(
        "Authorization: Digest username=\"admin\", realm=\"nvrkit loopcam\", nonce=\"{nonce}\", uri=\"{uri}\""
    );
    match nc {
        None => format!(
            "{common}, response=\"{}\"\r\n",
            md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
        ),
        Some(nc) => {
            let nc = format!("{nc:08x}");
            format!(
                "{common}, qop=auth, nc={nc}, cnonce=\"c0ffee\", response=\"{}\"\r\n",
                md5_hex(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"))
            )
        }
    }
}

fn with_auth(config: &mut Config, nonce_lifetime: Duration) {
    config.auth = Some(Auth::new("admin", "s3cret").with_nonce_lifetime(nonce_lifetime));
}

/// A nonce from a 401 to the attacker.
fn challenge(cam: &Loopcam) -> String {
    let r = attack(
        cam.addr,
        &format!("DESCRIBE {} RTSP/1.0\r\n", cam.url("sample")),
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.head);
    r.nonce()
}

#[test]
fn slowloris_request_is_cut_at_its_deadline() {
    let cam = start(|_| {});
    let reader = Reader::start(&cam, "");
    let before = reader.packets();
    let mut s = connect_from(ATTACKER, cam.addr);
    s.write_all(format!("DESCRIBE {} RTSP/1.0\r\nCSeq: 1\r\n", cam.url("sample")).as_bytes())
        .unwrap();
    assert!(closed_silently(&mut s), "a half-sent request is cut");
    reader.kept_receiving_since(before);
}

#[test]
fn trickled_request_is_cut_at_the_request_deadline() {
    let cam = start(|_| {});
    let reader = Reader::start(&cam, "");
    let before = reader.packets();
    let mut s = connect_from(ATTACKER, cam.addr);
    // 200 bytes at one per 50 ms: 10 s of trickle against a 1 s deadline (and a 30 s idle
    // timeout that each byte used to reset).
    let mut request = padded(&cam, 200);
    request.push_str("\r\n\r\n");
    assert!(
        trickle_is_cut(&mut s, request.as_bytes(), Duration::from_millis(50)),
        "a trickled request is cut before it completes"
    );
    reader.kept_receiving_since(before);
}

#[test]
fn idle_connection_is_closed_at_the_idle_timeout() {
    let cam = start(|c| c.idle_timeout = Duration::from_secs(1));
    let reader = Reader::start(&cam, "");
    let before = reader.packets();
    // One connection that never sends, one that sends a request and then nothing.
    let mut silent = connect_from(ATTACKER, cam.addr);
    let mut quiet = connect_from(ATTACKER, cam.addr);
    let r = exchange(
        &mut quiet,
        1,
        &format!("OPTIONS {} RTSP/1.0\r\n", cam.url("sample")),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        closed_silently(&mut silent),
        "a silent connection idles out"
    );
    assert!(closed_silently(&mut quiet), "so does one after its request");
    // The reader sends no keepalive: playing over TCP, its media is its liveness.
    reader.kept_receiving_since(before);
}

#[test]
fn connection_flood_past_the_cap_gets_503() {
    let cam = start(|c| c.max_conns = 6);
    let reader = Reader::start(&cam, "");
    let before = reader.packets();
    let held: Vec<TcpStream> = (0..5).map(|_| connect_from(ATTACKER, cam.addr)).collect();
    for _ in 0..3 {
        let mut s = connect_from(ATTACKER, cam.addr);
        let got = read_until_closed(&mut s).expect("refused and closed");
        assert!(
            got.starts_with(b"RTSP/1.0 503 Service Unavailable\r\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    reader.kept_receiving_since(before);
    drop(held);
    // The slots come back.
    let r = eventually("a slot is free again", || {
        options(&cam).filter(|r| r.status == 200)
    });
    assert_eq!(r.status, 200);
}

#[test]
fn per_address_cap_refuses_the_attacker_and_serves_others() {
    let cam = start(|c| c.max_conns_per_addr = Some(2));
    let reader = Reader::start(&cam, "");
    let before = reader.packets();
    let _held: Vec<TcpStream> = (0..2).map(|_| connect_from(ATTACKER, cam.addr)).collect();
    let mut s = connect_from(ATTACKER, cam.addr);
    let got = read_until_closed(&mut s).expect("refused and closed");
    assert!(
        got.starts_with(b"RTSP/1.0 503 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // 127.0.0.3 has one connection (the reader): a second is served.
    let r = options(&cam).unwrap();
    assert_eq!(r.status, 200);
    reader.kept_receiving_since(before);
}

#[test]
fn oversized_header_is_refused_and_closed() {
    let cam = start(|_| {});
    let reader = Reader::start(&cam, "");
    let before = reader.packets();
    let mut s = connect_from(ATTACKER, cam.addr);
    let request = padded(&cam, 70 * 1024);
    // The server may close while this is still being written.
    let _ = s.write_all(request.as_bytes());
    let got = read_until_closed(&mut s).expect("closed");
    assert!(
        got.starts_with(b"RTSP/1.0 400 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    reader.kept_receiving_since(before);
}

#[test]
fn half_open_rtsps_handshake_is_cut() {
    let cam = start(|c| c.tls_listen = Some("127.0.0.1:0".parse().unwrap()));
    let reader = Reader::start(&cam, "");
    let before = reader.packets();
    let mut silent = connect_from(ATTACKER, cam.tls_addr());
    // The first bytes of a TLS ClientHello, and no more.
    let mut partial = connect_from(ATTACKER, cam.tls_addr());
    partial
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .unwrap();
    assert!(closed_silently(&mut silent));
    assert!(closed_silently(&mut partial));
    reader.kept_receiving_since(before);
}

#[test]
fn digest_replayed_on_another_uri_is_refused() {
    let cam = start(|c| with_auth(c, Duration::from_secs(300)));
    let reader = Reader::start(&cam, BASIC);
    let before = reader.packets();
    let nonce = challenge(&cam);
    let url = cam.url("sample");
    // The header a client sent for /sample (without qop: accepted until the nonce expires)...
    let captured = digest("DESCRIBE", &url, &nonce, None);
    let r = attack(cam.addr, &format!("DESCRIBE {url} RTSP/1.0\r\n{captured}")).unwrap();
    assert_eq!(r.status, 200, "the captured header is good for its own URI");
    // ...does not open another path.
    for other in ["other", "sample/trackID=1"] {
        let r = attack(
            cam.addr,
            &format!("DESCRIBE {} RTSP/1.0\r\n{captured}", cam.url(other)),
        )
        .unwrap();
        assert_eq!(r.status, 401, "{other}: {}", r.head);
        assert!(!r.digest_challenge().contains("stale"));
    }
    reader.kept_receiving_since(before);
}

#[test]
fn stale_nonce_gets_401_with_stale_true() {
    let cam = start(|c| with_auth(c, Duration::from_secs(1)));
    let reader = Reader::start(&cam, BASIC);
    let before = reader.packets();
    let nonce = challenge(&cam);
    let url = cam.url("sample");
    let header = digest("DESCRIBE", &url, &nonce, Some(1));
    std::thread::sleep(Duration::from_millis(1500));
    let r = attack(cam.addr, &format!("DESCRIBE {url} RTSP/1.0\r\n{header}")).unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.digest_challenge().ends_with("stale=true"),
        "{}",
        r.digest_challenge()
    );
    // A client with the password retries on the new nonce.
    let renewed = digest("DESCRIBE", &url, &r.nonce(), Some(1));
    let r = attack(cam.addr, &format!("DESCRIBE {url} RTSP/1.0\r\n{renewed}")).unwrap();
    assert_eq!(r.status, 200);
    reader.kept_receiving_since(before);
}

#[test]
fn replayed_nc_is_refused() {
    let cam = start(|c| with_auth(c, Duration::from_secs(300)));
    let reader = Reader::start(&cam, BASIC);
    let before = reader.packets();
    let nonce = challenge(&cam);
    let url = cam.url("sample");
    let header = digest("DESCRIBE", &url, &nonce, Some(1));
    let r = attack(cam.addr, &format!("DESCRIBE {url} RTSP/1.0\r\n{header}")).unwrap();
    assert_eq!(r.status, 200);
    // The same header again, on a new connection and then on the same one.
    let r = attack(cam.addr, &format!("DESCRIBE {url} RTSP/1.0\r\n{header}")).unwrap();
    assert_eq!(r.status, 401, "{}", r.head);
    let mut s = connect_from(ATTACKER, cam.addr);
    let next = digest("DESCRIBE", &url, &nonce, Some(2));
    let r = exchange(&mut s, 1, &format!("DESCRIBE {url} RTSP/1.0\r\n{next}")).unwrap();
    assert_eq!(r.status, 200, "a higher nc is fine");
    let r = exchange(&mut s, 2, &format!("DESCRIBE {url} RTSP/1.0\r\n{next}")).unwrap();
    assert_eq!(r.status, 401);
    reader.kept_receiving_since(before);
}

#[test]
fn keepalive_on_an_authenticated_connection_outlives_its_nonce() {
    let cam = start(|c| with_auth(c, Duration::from_secs(1)));
    let nonce = challenge(&cam);
    let url = cam.url("sample");
    let mut s = connect_from(CLIENT, cam.addr);
    let r = exchange(
        &mut s,
        1,
        &format!(
            "DESCRIBE {url} RTSP/1.0\r\n{}",
            digest("DESCRIBE", &url, &nonce, Some(1))
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    for (cseq, nc) in [(2, Some(2)), (3, None)] {
        let r = exchange(
            &mut s,
            cseq,
            &format!(
                "GET_PARAMETER {url} RTSP/1.0\r\n{}",
                digest("GET_PARAMETER", &url, &nonce, nc)
            ),
        )
        .unwrap();
        assert_eq!(r.status, 200, "keepalive {cseq}: {}", r.head);
    }
    // Elsewhere, the nonce has expired.
    let r = attack(
        cam.addr,
        &format!(
            "GET_PARAMETER {url} RTSP/1.0\r\n{}",
            digest("GET_PARAMETER", &url, &nonce, Some(9))
        ),
    )
    .unwrap();
    assert_eq!(r.status, 401);
}

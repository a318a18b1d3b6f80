//! Attackers and a well-behaved client for the hostile-peer tests of the HTTP servers: plain
//! blocking sockets bound to a chosen loopback address (attackers 127.0.0.2, the legitimate
//! client 127.0.0.3), and outcomes only (every wait is a hang guard, never a timing assert).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Where attackers connect from.
pub const ATTACKER: [u8; 4] = [127, 0, 0, 2];
/// Where the legitimate client connects from.
pub const CLIENT: [u8; 4] = [127, 0, 0, 3];

/// How long any wait may take before the test fails as hung.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// A blocking TCP connection to `to` from the loopback address `from`.
///
/// # Panics
/// If the connection cannot be made.
pub fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    let s = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((from, 0)))?;
            socket.connect(to).await?.into_std()
        })
        .unwrap_or_else(|e| panic!("connect {to} from {from:?}: {e}"));
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s
}

/// A response: its status code, its header lines (lowercased names) and its body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code (0 if the connection closed with no response).
    pub status: u16,
    /// The head, as received, lowercased.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.trim() == name).then(|| v.trim())
        })
    }
}

/// Sends `request` as is on a new connection from `from` and reads the answer to the
/// connection's end (the request should say `Connection: close`).
pub fn request(from: [u8; 4], to: SocketAddr, request: &str) -> Response {
    let mut s = connect_from(from, to);
    let _ = s.write_all(request.as_bytes());
    parse(&read_until_closed(&mut s).expect("the server answers before the hang guard"))
}

/// `GET path` from `from` with `Host: host`, `Connection: close`.
pub fn get(from: [u8; 4], to: SocketAddr, host: &str, path: &str) -> Response {
    request(
        from,
        to,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

fn parse(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&raw[..i], raw[i + 4..].to_vec()),
        None => (raw, Vec::new()),
    };
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let status = head
        .strip_prefix("http/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Response { status, head, body }
}

/// Reads until the server closes the connection (EOF or reset): what it sent, or `None` if it
/// was still open at the hang guard.
pub fn read_until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(out),
        }
        if started.elapsed() > HANG_GUARD {
            return None;
        }
    }
}

/// Sends `bytes` one every `every`; true if the server closed the connection before they were
/// all sent, without having answered.
pub fn trickle_is_cut(s: &mut TcpStream, bytes: &[u8], every: Duration) -> bool {
    s.set_read_timeout(Some(every)).unwrap();
    let mut buf = [0u8; 512];
    for b in bytes {
        if s.write_all(&[*b]).is_err() {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// A request header of `n` bytes that never completes on its own: `GET / HTTP/1.1` and one
/// long header line.
pub fn long_header(host: &str, n: usize) -> Vec<u8> {
    let mut v = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Pad: ").into_bytes();
    v.resize(n.max(v.len()), b'a');
    v
}

/// Retries `f` until it returns `Some` (a slot freed asynchronously by the server), up to the
/// hang guard.
///
/// # Panics
/// At the hang guard.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "{what}: not within the hang guard"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! nvr's live view (`GET /api/live/{camera}`, a WebSocket) against hostile viewers: past the
//! viewer cap the upgrade is refused with 503, and a viewer that never reads is dropped (it
//! acknowledges nothing; its bounded queue would fill) while a reading viewer on 127.0.0.3 keeps
//! its stream and the API still answers. Outcomes only, no
//! timings (hang guards).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nvrkit_testutil::hostile::{ATTACKER, CLIENT, get};

mod common;
use common::{Nvr, assert_api_served, start};

/// A TCP connection from `from` with a receive buffer of `rcvbuf` bytes (small: a viewer that
/// does not read stops taking bytes soon).
fn connect_small(from: [u8; 4], to: SocketAddr, rcvbuf: u32) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let s = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(rcvbuf)?;
            socket.bind(SocketAddr::from((from, 0)))?;
            socket.connect(to).await?.into_std()
        })
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Sends a WebSocket upgrade for the demo camera's live view; returns the response head.
fn upgrade(s: &mut TcpStream, n: &Nvr) -> String {
    write!(
        s,
        "GET /api/live/demo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        n.addr
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn camera(n: &Nvr) -> serde_json::Value {
    let r = get(CLIENT, n.addr, &n.addr.to_string(), "/api/cameras");
    let cams: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    cams[0].clone()
}

/// Waits until the demo camera is connected and its ring holds frames, so a viewer gets a
/// stream (before that it is told "not connected yet" and closed).
fn wait_for_camera(n: &Nvr) {
    let t = Instant::now();
    loop {
        let c = camera(n);
        if c["connected"] == true && c["ring"]["frames"].as_u64().unwrap_or(0) > 0 {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "hang guard: the camera never connected: {c}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn viewers(n: &Nvr) -> u64 {
    let r = get(CLIENT, n.addr, &n.addr.to_string(), "/api/cameras");
    let cams: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    cams[0]["viewers"].as_u64().unwrap()
}

/// Past its share (2 of a camera, M3 in review-nvr.md) one address gets 503 while another is
/// still admitted; past the camera's 8 everyone gets 503; places come back when viewers leave.
#[test]
fn live_viewers_past_the_cap_get_503() {
    let n = start(&[]);
    wait_for_camera(&n);
    let admitted = |from: [u8; 4]| {
        let mut s = connect_small(from, n.addr, 1 << 20);
        let head = upgrade(&mut s, &n);
        (head.starts_with("HTTP/1.1 101"), head, s)
    };
    let mut open: Vec<TcpStream> = Vec::new();
    for _ in 0..2 {
        let (ok, head, s) = admitted(ATTACKER);
        assert!(ok, "{head}");
        open.push(s);
    }
    let (ok, head, _) = admitted(ATTACKER);
    assert!(
        !ok && head.starts_with("HTTP/1.1 503"),
        "the attacker's third viewer: {head}"
    );
    // Another address fills the camera up to its 8 (the client, then 127.0.0.4 to .6).
    for from in [
        CLIENT,
        [127, 0, 0, 4],
        [127, 0, 0, 4],
        [127, 0, 0, 5],
        [127, 0, 0, 5],
        [127, 0, 0, 6],
    ] {
        let (ok, head, s) = admitted(from);
        assert!(ok, "{from:?}: {head}");
        open.push(s);
    }
    let (ok, head, _) = admitted([127, 0, 0, 7]);
    assert!(
        !ok && head.starts_with("HTTP/1.1 503"),
        "the ninth viewer: {head}"
    );
    assert_api_served(&n);
    // Viewers that leave give their places back.
    drop(open);
    let t = Instant::now();
    while viewers(&n) > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "hang guard: places never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(admitted(ATTACKER).0);
}

#[test]
#[allow(clippy::print_stdout)] // reason: the measured figures in the test's output
fn a_live_viewer_that_does_not_read_is_dropped() {
    let n = start(&[]);
    wait_for_camera(&n);
    let mut s = connect_small(ATTACKER, n.addr, 4096);
    let head = upgrade(&mut s, &n);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A viewer that reads gets its stream meanwhile: the hello, then binary fragments.
    let mut reader = connect_small(CLIENT, n.addr, 1 << 20);
    assert!(upgrade(&mut reader, &n).starts_with("HTTP/1.1 101"));
    let mut first = [0u8; 2];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(first[0], 0x81, "a final text frame (the hello) first");
    // It acknowledges every second, as the page does (a masked text frame, mask 0).
    let mut acks = reader.try_clone().unwrap();
    std::thread::spawn(move || {
        while acks
            .write_all(&[0x81, 0x83, 0, 0, 0, 0, b'a', b'c', b'k'])
            .is_ok()
        {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let reading = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        while let Ok(k) = reader.read(&mut buf) {
            if k == 0 {
                break;
            }
            total += k;
        }
        total
    });
    assert_eq!(viewers(&n), 2);
    // It never reads nor acknowledges: dropped at the acknowledgement deadline (10 s), or
    // earlier when its socket buffers and then its queue fill.
    let t = Instant::now();
    while viewers(&n) > 1 {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "hang guard: a viewer that does not read was kept"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("dropped after {:.1} s", t.elapsed().as_secs_f64());
    // Not because the camera went away: one session all along, and the reader still served.
    let c = camera(&n);
    assert_eq!(c["sessions"], 1, "{c}");
    assert_eq!(c["viewers"], 1, "{c}");
    assert_api_served(&n);
    drop(n);
    assert!(
        reading.join().unwrap() > 50_000,
        "the reading viewer got its stream"
    );
}

//! tileserve against hostile peers (issue 14): each attack runs from 127.0.0.2 while a map
//! client on 127.0.0.3 must get its tile; the attacking connection must end closed or refused.
//! Deadlines are 1 s here; the tests assert outcomes, never timings.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nvrkit_testutil::hostile::{
    ATTACKER, CLIENT, connect_from, eventually, get, long_header, read_until_closed, trickle_is_cut,
};

const TILE: &[u8] = b"\x89PNG\r\n\x1a\n-tile-";

struct Tileserve {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Tileserve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Tileserve {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.mbtiles");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE metadata (name TEXT, value TEXT);
         CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
         INSERT INTO metadata VALUES ('format', 'png');",
    )
    .unwrap();
    db.execute(
        "INSERT INTO tiles VALUES (0, 0, 0, ?1)",
        rusqlite::params![TILE],
    )
    .unwrap();
    drop(db);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tileserve"))
        .arg(&path)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--request-timeout",
            "1s",
            "--idle-timeout",
            "1s",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading: a closed stdout would end the banner, and tileserve, with a broken pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("a URL in {line:?}"));
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    Tileserve {
        child,
        addr,
        _dir: dir,
    }
}

/// The map client's request: it must get the tile.
fn assert_tile_served(t: &Tileserve) {
    let r = get(CLIENT, t.addr, &t.addr.to_string(), "/map/0/0/0.png");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, TILE);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn slowloris_request_is_cut_at_its_deadline() {
    let t = start(&[]);
    let mut attackers: Vec<_> = (0..20)
        .map(|_| {
            let mut s = connect_from(ATTACKER, t.addr);
            s.write_all(&long_header("x", 200)).unwrap();
            s
        })
        .collect();
    assert_tile_served(&t);
    for s in &mut attackers {
        let got = read_until_closed(s).expect("the half-sent header is cut");
        assert!(!got.starts_with(b"HTTP/1.1 200"), "never answered");
    }
}

#[test]
fn trickled_header_is_cut_at_the_request_deadline() {
    let t = start(&[]);
    let addr = t.addr;
    let attack = std::thread::spawn(move || {
        let mut s = connect_from(ATTACKER, addr);
        // 100 ms a byte: 300 bytes would take 30 s; the deadline is 1 s from the first.
        trickle_is_cut(&mut s, &long_header("x", 300), Duration::from_millis(100))
    });
    assert_tile_served(&t);
    assert!(attack.join().unwrap(), "the trickle kept the connection");
    assert_tile_served(&t);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let t = start(&[]);
    let mut s = connect_from(ATTACKER, t.addr);
    write!(s, "GET /map/0/0/0.png HTTP/1.1\r\nHost: {}\r\n\r\n", t.addr).unwrap();
    // Kept alive after the answer, then closed when idle.
    let got = read_until_closed(&mut s).expect("the idle connection is closed");
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got.ends_with(TILE));
    assert_tile_served(&t);
}

#[test]
fn connection_flood_past_the_cap_gets_503() {
    let t = start(&["--max-conns", "4"]);
    let flood: Vec<_> = (0..4).map(|_| connect_from(ATTACKER, t.addr)).collect();
    let mut over = connect_from(ATTACKER, t.addr);
    let got = read_until_closed(&mut over).expect("the refusal closes");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("Connection: close"), "{text}");
    // While the flood holds every slot the map client is refused too; once it leaves (or
    // idles out), the client is served.
    drop(flood);
    eventually("the tile after the flood", || {
        let r = get(CLIENT, t.addr, &t.addr.to_string(), "/map/0/0/0.png");
        (r.status == 200).then_some(r)
    });
    assert_tile_served(&t);
}

#[test]
fn per_address_cap_refuses_the_attacker_and_serves_others() {
    let t = start(&["--max-conns", "16", "--max-conns-per-addr", "3"]);
    let _held: Vec<_> = (0..3).map(|_| connect_from(ATTACKER, t.addr)).collect();
    let mut over = connect_from(ATTACKER, t.addr);
    let got = read_until_closed(&mut over).expect("the refusal closes");
    assert!(
        got.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_tile_served(&t);
}

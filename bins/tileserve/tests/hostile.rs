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

/// A misbehaving nvr on 127.0.0.2 (`--nvr`): first an answer that never ends (a body streamed
/// without end), then one that never comes (headers never sent), then a good one. While it
/// misbehaves the map client is served its tile and the cameras (state `unknown`); the endless
/// body is cut (the fake nvr's writes fail once tileserve stops reading at its 8 MiB limit);
/// when nvr answers well the camera shows `online`, so the poller outlived both.
#[test]
fn a_hostile_nvr_leaves_states_unknown_and_the_map_served() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    const ENDLESS: usize = 0;
    const SILENT: usize = 1;
    const GOOD: usize = 2;
    let mode = Arc::new(AtomicUsize::new(ENDLESS));
    let cut_after = Arc::new(AtomicU64::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let nvr = listener.local_addr().unwrap();
    {
        let (mode, cut_after) = (mode.clone(), cut_after.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (mode, cut_after) = (mode.clone(), cut_after.clone());
                std::thread::spawn(move || {
                    let mut req = [0u8; 4096];
                    let n = std::io::Read::read(&mut conn, &mut req).unwrap_or(0);
                    let req = String::from_utf8_lossy(&req[..n]).into_owned();
                    match mode.load(Ordering::SeqCst) {
                        ENDLESS => {
                            let _ = conn.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[",
                            );
                            let chunk = [b' '; 65536];
                            let mut sent = 0u64;
                            while conn.write_all(&chunk).is_ok() {
                                sent += chunk.len() as u64;
                                if sent > 1 << 30 {
                                    break;
                                }
                            }
                            cut_after.store(sent, Ordering::SeqCst);
                        }
                        SILENT => std::thread::sleep(Duration::from_secs(30)),
                        _ => {
                            let body = if req.starts_with("GET /api/cameras") {
                                r#"[{"name": "demo", "connected": true}]"#
                            } else {
                                "[]"
                            };
                            let _ = write!(
                                conn,
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                        }
                    }
                });
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let cams = dir.path().join("cameras.json");
    std::fs::write(
        &cams,
        r#"{"cameras": [{"id": "demo", "lon": 10, "lat": 20}]}"#,
    )
    .unwrap();
    let t = start(&[
        "--cameras",
        cams.to_str().unwrap(),
        "--nvr",
        &format!("http://{nvr}"),
    ]);
    let state = |t: &Tileserve| {
        let r = get(CLIENT, t.addr, &t.addr.to_string(), "/map/cameras.geojson");
        assert_eq!(r.status, 200, "{}", r.head);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["features"][0]["properties"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cut = eventually("the endless answer to be cut", || {
        Some(cut_after.load(Ordering::SeqCst)).filter(|&n| n > 0)
    });
    // 8 MiB read, plus what the kernel's socket buffers held (CI raises them to 8 MiB each).
    assert!(
        cut < 32 << 20,
        "tileserve read {cut} bytes of the endless body"
    );
    assert_tile_served(&t);
    assert_eq!(state(&t), "unknown");
    mode.store(SILENT, Ordering::SeqCst);
    assert_tile_served(&t);
    assert_eq!(state(&t), "unknown");
    mode.store(GOOD, Ordering::SeqCst);
    eventually("the camera to show online", || {
        (state(&t) == "online").then_some(())
    });
    assert_tile_served(&t);
}

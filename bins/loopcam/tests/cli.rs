//! loopcam's command line.

#[test]
fn help_follows_the_cli_vocabulary() {
    nvrkit_testutil::check_cli_vocabulary(
        "loopcam",
        std::path::Path::new(env!("CARGO_BIN_EXE_loopcam")),
    );
}

/// The hardening flags reach the server: with `--max-conns 1`, a second connection gets 503;
/// with `--request-timeout 1s`, the half-sent request that held the slot is cut.
#[test]
fn max_conns_and_request_timeout_flags_take_effect() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    use nvrkit_testutil::hostile::{ATTACKER, CLIENT, connect_from, read_until_closed};

    let mut child = Command::new(env!("CARGO_BIN_EXE_loopcam"))
        .args(["--listen", "127.0.0.1:0", "--no-udp", "--max-conns", "1"])
        .args(["--request-timeout", "1s", "--idle-timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let addr: std::net::SocketAddr = url
        .trim()
        .trim_start_matches("rtsp://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut held = connect_from(ATTACKER, addr);
    held.write_all(b"OPTIONS rtsp://x/sample RTSP/1.0\r\nCSeq: 1\r\n")
        .unwrap();
    // The slot is taken once the server has accepted the first connection.
    let refused = nvrkit_testutil::hostile::eventually("a 503", || {
        let got = read_until_closed(&mut connect_from(CLIENT, addr))?;
        got.starts_with(b"RTSP/1.0 503 ").then_some(got)
    });
    assert!(!refused.is_empty());
    let mut rest = Vec::new();
    let _ = held.read_to_end(&mut rest);
    assert!(rest.is_empty(), "cut without an answer");
    let _ = child.kill();
    let _ = child.wait();
}

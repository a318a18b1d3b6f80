//! Hostile peers (docs/security.md): each test runs an attack from 127.0.0.2 and, at the same
//! time, a well-behaved camera from 127.0.0.3 that must get its `250`; the attacking connection
//! must end refused or closed. Outcomes only: every wait has a hang guard, no timing is asserted.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nvrkit_smtp::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use super::{GUARD, config, next_event, read_reply, start};

const ATTACKER: &str = "127.0.0.2";
const CAMERA: &str = "127.0.0.3";

/// A connection from `from` (a loopback address of its own, so per-address caps count it apart).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    timeout(GUARD, socket.connect(to))
        .await
        .expect("connect in time")
        .unwrap()
}

/// Sends one command line and reads its reply.
async fn say(s: &mut TcpStream, line: &str) -> String {
    s.write_all(line.as_bytes()).await.unwrap();
    read_reply(s).await
}

/// Greeting, EHLO, MAIL, RCPT and DATA; returns the reply to DATA.
async fn open_data(s: &mut TcpStream, rcpt: &str) -> String {
    read_reply(s).await;
    say(s, "EHLO cam\r\n").await;
    assert!(say(s, "MAIL FROM:<cam@x>\r\n").await.starts_with("250"));
    assert!(
        say(s, &format!("RCPT TO:<{rcpt}@nvr>\r\n"))
            .await
            .starts_with("250")
    );
    say(s, "DATA\r\n").await
}

/// A well-behaved camera's alarm mail from 127.0.0.3: the reply to its end of DATA.
async fn camera_mail(addr: SocketAddr, rcpt: &str) -> String {
    let mut s = connect_from(CAMERA, addr).await;
    assert!(open_data(&mut s, rcpt).await.starts_with("354"));
    s.write_all(b"Subject: Motion Detected\r\n\r\nEVENT TYPE: Motion Detected\r\n.\r\n")
        .await
        .unwrap();
    let reply = read_reply(&mut s).await;
    let _ = say(&mut s, "QUIT\r\n").await;
    reply
}

/// Reads until the server closes the connection (or the hang guard fires); returns what it said.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let _ = timeout(GUARD, s.read_to_end(&mut all))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&all).into_owned()
}

fn short(cfg: &mut ServerConfig) {
    cfg.request_timeout = Duration::from_secs(1);
    cfg.command_timeout = Duration::from_secs(2);
}

/// The mail of the report: part-header lines and no blank line (quadratic in extraction
/// before), sent whole while a camera mails.
#[tokio::test]
async fn worst_case_mail_for_extraction_delays_no_other_session() {
    let (server, mut events, addr) = start(config()).await;
    let mut attack = connect_from(ATTACKER, addr).await;
    assert!(open_data(&mut attack, "attacker").await.starts_with("354"));
    let mut mail = b"--b\r\nContent-Transfer-Encoding: base64\r\n".repeat(100_000);
    // And one long line of repeated `base64` (the second quadratic path).
    mail.extend_from_slice(b"\r\n");
    mail.extend_from_slice(&b"base64".repeat(150_000));
    mail.extend_from_slice(b"\r\n.\r\n");
    let sender = tokio::spawn(async move {
        attack.write_all(&mail).await.unwrap();
        read_reply(&mut attack).await
    });
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    let attacker_reply = timeout(GUARD, sender).await.unwrap().unwrap();
    assert!(attacker_reply.starts_with("250"), "{attacker_reply}");
    let mut cameras: Vec<String> = Vec::new();
    for _ in 0..2 {
        cameras.push(next_event(&mut events).await.camera.unwrap_or_default());
    }
    cameras.sort();
    assert_eq!(cameras, ["attacker", "door"]);
    server.shutdown().await;
}

#[tokio::test]
async fn slowloris_command_is_cut_at_its_deadline() {
    let mut cfg = config();
    short(&mut cfg);
    let (server, _events, addr) = start(cfg).await;
    let mut attack = connect_from(ATTACKER, addr).await;
    read_reply(&mut attack).await;
    let trickle = tokio::spawn(async move {
        // A byte every 100 ms for 10 s, never a line end: each byte is "activity".
        for byte in b"EHLO ".iter().chain(b"x".repeat(100).iter()) {
            if attack.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        read_to_close(&mut attack).await
    });
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    let said = timeout(GUARD, trickle).await.unwrap().unwrap();
    assert!(said.starts_with("421 4.4.2"), "{said:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn idle_session_is_closed_and_only_complete_commands_keep_it() {
    let mut cfg = config();
    short(&mut cfg);
    let (server, _events, addr) = start(cfg).await;
    let mut idle = connect_from(ATTACKER, addr).await;
    read_reply(&mut idle).await;
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    assert!(read_to_close(&mut idle).await.starts_with("421 4.4.2"));
    server.shutdown().await;
}

#[tokio::test]
async fn trickled_data_is_cut_by_the_minimum_rate() {
    let mut cfg = config();
    cfg.min_data_rate.grace = Duration::from_secs(1);
    let (server, _events, addr) = start(cfg).await;
    let mut attack = connect_from(ATTACKER, addr).await;
    assert!(open_data(&mut attack, "slow").await.starts_with("354"));
    let trickle = tokio::spawn(async move {
        // A line every 50 ms: well inside the 3-minute data timeout, far below 10 KiB/s.
        for _ in 0..400 {
            if attack.write_all(b"x\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        read_to_close(&mut attack).await
    });
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    let said = timeout(GUARD, trickle).await.unwrap().unwrap();
    assert!(said.contains("421 4.4.2 Transfer too slow"), "{said:?}");
    assert!(server.stats().cut_off() >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn trickled_bdat_chunks_are_cut_by_the_minimum_rate() {
    let mut cfg = config();
    cfg.min_data_rate.grace = Duration::from_secs(1);
    let (server, _events, addr) = start(cfg).await;
    let mut attack = connect_from(ATTACKER, addr).await;
    read_reply(&mut attack).await;
    say(&mut attack, "EHLO cam\r\n").await;
    say(&mut attack, "MAIL FROM:<a@x>\r\n").await;
    say(&mut attack, "RCPT TO:<b@x>\r\n").await;
    let trickle = tokio::spawn(async move {
        // Small chunks, each complete: every BDAT line is a complete command.
        for _ in 0..400 {
            if attack.write_all(b"BDAT 1\r\nx").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        read_to_close(&mut attack).await
    });
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    let said = timeout(GUARD, trickle).await.unwrap().unwrap();
    assert!(said.contains("421 4.4.2 Transfer too slow"), "{said:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn session_lifetime_is_enforced_on_a_busy_session() {
    let mut cfg = config();
    cfg.max_lifetime = Some(Duration::from_secs(2));
    let (server, _events, addr) = start(cfg).await;
    let mut attack = connect_from(ATTACKER, addr).await;
    read_reply(&mut attack).await;
    let busy = tokio::spawn(async move {
        // Valid commands, forever: only the lifetime ends this session.
        loop {
            if attack.write_all(b"NOOP\r\n").await.is_err() {
                break String::new();
            }
            let reply = read_reply(&mut attack).await;
            if !reply.starts_with("250") {
                break reply;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    let said = timeout(GUARD, busy).await.unwrap().unwrap();
    assert!(said.starts_with("421 4.4.2 Session too long"), "{said:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn per_address_cap_spares_other_addresses() {
    let mut cfg = config();
    cfg.max_sessions = 100;
    cfg.max_sessions_per_ip = 10;
    let (server, _events, addr) = start(cfg).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut s = connect_from(ATTACKER, addr).await;
        assert!(read_reply(&mut s).await.starts_with("220"));
        held.push(s);
    }
    let mut eleventh = connect_from(ATTACKER, addr).await;
    assert!(read_to_close(&mut eleventh).await.starts_with("421 4.7.0"));
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    assert!(server.stats().refused() >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_flood_gets_421_past_the_cap() {
    let mut cfg = config();
    cfg.max_sessions = 20;
    cfg.max_sessions_per_ip = 20;
    let (server, _events, addr) = start(cfg).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = connect_from(ATTACKER, addr).await;
        assert!(read_reply(&mut s).await.starts_with("220"));
        held.push(s);
    }
    // Past the total cap everyone gets the protocol's refusal at once (no hang, no silence).
    let mut refused = connect_from(CAMERA, addr).await;
    assert!(read_to_close(&mut refused).await.starts_with("421 4.7.0"));
    // Once the flood lets go, the camera is served.
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        if camera_mail_or_refused(addr).await {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served);
    server.shutdown().await;
}

/// True if the camera's mail got its 250, false if the connection was refused.
async fn camera_mail_or_refused(addr: SocketAddr) -> bool {
    let mut s = connect_from(CAMERA, addr).await;
    let greeting = read_reply(&mut s).await;
    if !greeting.starts_with("220") {
        return false;
    }
    say(&mut s, "HELO cam\r\n").await;
    say(&mut s, "MAIL FROM:<cam@x>\r\n").await;
    say(&mut s, "RCPT TO:<door@nvr>\r\n").await;
    say(&mut s, "DATA\r\n").await;
    s.write_all(b"Subject: motion\r\n\r\nx\r\n.\r\n")
        .await
        .unwrap();
    read_reply(&mut s).await.starts_with("250")
}

#[tokio::test]
async fn buffered_mail_budget_answers_452_and_recovers() {
    let mut cfg = config();
    cfg.mail_budget = 32 * 1024;
    let (server, mut events, addr) = start(cfg).await;
    // The attacker holds the whole budget in an unfinished DATA (32 lines of 1 KiB).
    let mut hog = connect_from(ATTACKER, addr).await;
    assert!(open_data(&mut hog, "hog").await.starts_with("354"));
    let line = [b"x".repeat(1022), b"\r\n".to_vec()].concat();
    for _ in 0..32 {
        hog.write_all(&line).await.unwrap();
    }
    // Wait until the server has buffered it all.
    for _ in 0..200 {
        if server.stats().buffered_bytes() >= 32 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.stats().buffered_bytes(), 32 * 1024);
    // MAIL now gets 452; a mail already in DATA is read to its end, then 452.
    let mut camera = connect_from(CAMERA, addr).await;
    read_reply(&mut camera).await;
    say(&mut camera, "EHLO cam\r\n").await;
    assert!(
        say(&mut camera, "MAIL FROM:<cam@x>\r\n")
            .await
            .starts_with("452 4.3.1")
    );
    // The hog finishes: its mail is accepted and its bytes come back once it is parsed.
    hog.write_all(b".\r\n").await.unwrap();
    assert!(read_reply(&mut hog).await.starts_with("250"));
    assert_eq!(next_event(&mut events).await.camera.as_deref(), Some("hog"));
    assert_eq!(server.stats().buffered_bytes(), 0);
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_mail_past_the_budget_is_read_to_its_end_then_452() {
    let mut cfg = config();
    cfg.mail_budget = 16 * 1024;
    let (server, mut events, addr) = start(cfg).await;
    let mut big = connect_from(ATTACKER, addr).await;
    assert!(open_data(&mut big, "big").await.starts_with("354"));
    let line = [b"x".repeat(1022), b"\r\n".to_vec()].concat();
    big.write_all(&line.repeat(40)).await.unwrap();
    big.write_all(b".\r\n").await.unwrap();
    assert!(read_reply(&mut big).await.starts_with("452 4.3.1"));
    // The session goes on, and nothing is left held.
    assert!(say(&mut big, "NOOP\r\n").await.starts_with("250"));
    assert_eq!(server.stats().buffered_bytes(), 0);
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    assert_eq!(
        next_event(&mut events).await.camera.as_deref(),
        Some("door")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn half_open_tls_handshake_is_cut() {
    let mut cfg = config();
    short(&mut cfg);
    let (server, _events, addr) = start(cfg).await;
    let tls_addr = server.info().tls_listen.unwrap();
    // A TCP connection to the implicit-TLS port that starts a ClientHello and stops.
    let mut attack = connect_from(ATTACKER, tls_addr).await;
    attack.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    assert!(camera_mail(addr, "door").await.starts_with("250"));
    let mut rest = Vec::new();
    let closed = timeout(GUARD, attack.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the half-open handshake is cut off");
    server.shutdown().await;
}

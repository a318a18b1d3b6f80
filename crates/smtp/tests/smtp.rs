//! nvrkit-smtp end to end: the tokio server with our client, raw sockets, and (ignored in plain
//! `cargo test`, run by `.ci/run` with `--ignored`) real clients nobody here wrote: swaks, Python
//! smtplib and curl. A missing peer fails its test.
//!
//! No test asserts on timing; every wait has a hang guard.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use nvrkit_smtp::client::{AlarmMail, Client, ClientAuth, ClientOptions, ClientTls};
use nvrkit_smtp::{
    AuthPolicy, CameraEvent, EventKind, EventPhase, Server, ServerConfig, SnapshotStore, Vendor,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

#[path = "smtp/hostile.rs"]
mod hostile;

const GUARD: Duration = Duration::from_secs(20);
const SNAPSHOT: &[u8] = include_bytes!("../testdata/snapshot.jpg");

fn loopback() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

fn config() -> ServerConfig {
    ServerConfig {
        listen: loopback(),
        tls_listen: loopback(),
        ..ServerConfig::default()
    }
}

async fn start(cfg: ServerConfig) -> (Server, Receiver<CameraEvent>, SocketAddr) {
    let (server, events) = Server::start(cfg).await.expect("server starts");
    let addr = server.info().listen.expect("plain listener");
    (server, events, addr)
}

async fn next_event(events: &mut Receiver<CameraEvent>) -> CameraEvent {
    timeout(GUARD, events.recv())
        .await
        .expect("an event within the hang guard")
        .expect("channel open")
}

/// Reads replies until one whose code starts a line without `-`, returning all text.
async fn read_reply(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let n = timeout(GUARD, stream.read(&mut byte))
            .await
            .expect("reply in time")
            .unwrap();
        if n == 0 {
            break;
        }
        text.push(byte[0]);
        if byte[0] == b'\n' {
            let s = String::from_utf8_lossy(&text);
            let last = s.trim_end().rsplit("\r\n").next().unwrap_or("");
            if last.len() >= 4 && last.as_bytes()[3] == b' ' {
                break;
            }
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

async fn say(stream: &mut TcpStream, line: &str) -> String {
    stream.write_all(line.as_bytes()).await.unwrap();
    read_reply(stream).await
}

fn hik_mail(camera: &str, to: &str) -> Vec<u8> {
    AlarmMail::new(
        "cam@x",
        to,
        "IPCamera: Motion Detected",
        &format!(
            "EVENT TYPE: Motion Detected\nEVENT TIME: 2015-05-22,14:52:18\nIPC NAME: {camera}\n"
        ),
    )
    .header("X-Mailer", "HIKMailer")
    .attach("snap.jpg", "image/jpeg", SNAPSHOT.to_vec())
    .to_bytes()
}

#[tokio::test]
async fn our_client_plain_starttls_and_implicit_tls_with_auth() {
    let (server, mut events, addr) = start(ServerConfig {
        session: nvrkit_smtp::SessionConfig {
            auth: AuthPolicy::Users(vec![("cam".into(), "pw".into())]),
            ..Default::default()
        },
        ..config()
    })
    .await;
    let tls_addr = server.info().tls_listen.unwrap();
    assert!(server.info().self_signed);
    assert_eq!(
        server.info().fingerprint.as_ref().unwrap().len(),
        32 * 3 - 1
    );
    let cases = [
        (addr, ClientTls::None, ClientAuth::Login, false),
        (addr, ClientTls::StartTls, ClientAuth::Plain, true),
        (tls_addr, ClientTls::Implicit, ClientAuth::Login, true),
    ];
    for (i, (target, tls, mech, want_tls)) in cases.into_iter().enumerate() {
        let camera = format!("cam{i}");
        let options = ClientOptions::default().tls(tls).auth(mech, "cam", "pw");
        let mut client = Client::connect(target, &options).await.unwrap();
        client
            .send("cam@x", &["nvr@x"], &hik_mail(&camera, "nvr@x"))
            .await
            .unwrap();
        client.quit().await.unwrap();
        let event = next_event(&mut events).await;
        assert_eq!(event.camera.as_deref(), Some(camera.as_str()));
        assert_eq!(event.source.tls, want_tls, "{tls:?}");
        assert_eq!(event.source.auth_user.as_deref(), Some("cam"));
        assert_eq!(&event.snapshots[0].data[..], SNAPSHOT);
    }
    // Wrong password: 535, and no mail without AUTH.
    let options = ClientOptions::default().auth(ClientAuth::Plain, "cam", "nope");
    let err = Client::connect(addr, &options).await.unwrap_err();
    assert!(err.to_string().contains("535"), "{err}");
    let mut client = Client::connect(addr, &ClientOptions::default())
        .await
        .unwrap();
    let err = client.send("a@x", &["b@x"], b"x").await.unwrap_err();
    assert!(err.to_string().contains("530"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn reset_right_after_250_still_delivers() {
    let (server, mut events, addr) = start(config()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    read_reply(&mut stream).await;
    // Everything pipelined, no QUIT; then a TCP reset as soon as the 250 arrives.
    stream
        .write_all(b"HELO cam\r\nMAIL FROM:<c@x>\r\nRCPT TO:<porch@x>\r\nDATA\r\nSubject: Motion alarm\r\n\r\nmotion\r\n.\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("queued") {
        seen.push_str(&read_reply(&mut stream).await);
    }
    stream.set_zero_linger().unwrap();
    drop(stream);
    let event = next_event(&mut events).await;
    assert_eq!(event.camera.as_deref(), Some("porch"));
    assert_eq!(event.kind, EventKind::Motion);
    server.shutdown().await;
}

#[tokio::test]
async fn helo_only_client_and_lenient_envelope() {
    let (server, mut events, addr) = start(config()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(read_reply(&mut s).await.starts_with("220 "));
    // A client that falls back to HELO after EHLO (some camera stacks), then no angle brackets.
    assert!(say(&mut s, "EHLO\r\n").await.starts_with("250-"));
    assert!(say(&mut s, "HELO\r\n").await.starts_with("250 "));
    assert!(say(&mut s, "MAIL FROM:cam@x\r\n").await.starts_with("250 "));
    assert!(say(&mut s, "RCPT TO:gate@x\r\n").await.starts_with("250 "));
    assert!(say(&mut s, "DATA\r\n").await.starts_with("354 "));
    assert!(
        say(
            &mut s,
            "Subject: Video Loss\r\n\r\nvideo loss on ch 3\r\n.\r\n"
        )
        .await
        .starts_with("250 ")
    );
    assert!(say(&mut s, "QUIT\r\n").await.starts_with("221 "));
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.kind, event.camera.as_deref()),
        (EventKind::VideoLoss, Some("gate"))
    );
    assert_eq!(event.source.mail_from, "cam@x");
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_mail_gets_552_then_the_next_mail_on_the_session_succeeds() {
    let mut cfg = config();
    cfg.session.max_message_size = 64 * 1024;
    let (server, mut events, addr) = start(cfg).await;
    let mut client = Client::connect(addr, &ClientOptions::default())
        .await
        .unwrap();
    let big =
        AlarmMail::new("c@x", "n@x", "big", "x").attach("a.jpg", "image/jpeg", vec![7; 100_000]);
    let err = client
        .send("c@x", &["n@x"], &big.to_bytes())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("552"), "{err}");
    client
        .send("c@x", &["small@x"], b"Subject: motion\r\n\r\nsmall\r\n")
        .await
        .unwrap();
    client.quit().await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event.camera.as_deref(), Some("small"));
    assert_eq!(server.stats().messages(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn slowloris_times_out_and_others_are_unaffected() {
    let mut cfg = config();
    // 2 s from the line's first byte: the slow line below takes 7.8 s; the fast client's
    // commands, on a loaded machine, never come near it.
    cfg.request_timeout = Duration::from_secs(2);
    let (server, mut events, addr) = start(cfg).await;
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        read_reply(&mut s).await;
        // One byte every 200 ms, never a whole line: each read is "activity", the line never ends.
        for byte in b"NOOP and on and on and on and on and on".iter() {
            if s.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        read_reply(&mut s).await
    });
    let mut client = Client::connect(addr, &ClientOptions::default())
        .await
        .unwrap();
    client
        .send("c@x", &["fast@x"], b"Subject: motion\r\n\r\nx\r\n")
        .await
        .unwrap();
    client.quit().await.unwrap();
    assert_eq!(
        next_event(&mut events).await.camera.as_deref(),
        Some("fast")
    );
    let reply = timeout(GUARD, slow).await.unwrap().unwrap();
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn thousand_idle_sessions_and_one_busy_one() {
    let mut cfg = config();
    cfg.max_sessions = 1100;
    cfg.max_sessions_per_ip = 1100;
    let (server, mut events, addr) = start(cfg).await;
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(read_reply(&mut s).await.starts_with("220 "));
        idle.push(s);
    }
    assert_eq!(server.stats().sessions(), 1000);
    let mut client = Client::connect(addr, &ClientOptions::default())
        .await
        .unwrap();
    client
        .send("c@x", &["busy@x"], b"Subject: motion\r\n\r\nx\r\n")
        .await
        .unwrap();
    client.quit().await.unwrap();
    assert_eq!(
        next_event(&mut events).await.camera.as_deref(),
        Some("busy")
    );
    drop(idle);
    server.shutdown().await;
}

#[tokio::test]
async fn session_limits_answer_421() {
    let mut cfg = config();
    cfg.max_sessions_per_ip = 2;
    let (server, _events, addr) = start(cfg).await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    read_reply(&mut a).await;
    read_reply(&mut b).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert!(read_reply(&mut c).await.starts_with("421 "));
    drop(a);
    // The slot is freed when the session ends; wait for it (hang-guarded).
    timeout(GUARD, async {
        while server.stats().sessions() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let mut d = TcpStream::connect(addr).await.unwrap();
    assert!(read_reply(&mut d).await.starts_with("220 "));
    assert_eq!(server.stats().refused(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn snapshots_are_saved_and_end_events_follow_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.snapshots = SnapshotStore::Dir(dir.path().join("snaps"));
    cfg.end_after = Some(Duration::from_millis(300));
    let (server, mut events, addr) = start(cfg).await;
    let mut client = Client::connect(addr, &ClientOptions::default())
        .await
        .unwrap();
    client
        .send("c@x", &["nvr@x"], &hik_mail("Garage", "nvr@x"))
        .await
        .unwrap();
    client.quit().await.unwrap();
    let start = next_event(&mut events).await;
    assert_eq!(start.phase, EventPhase::Start);
    let path = start.snapshots[0].path.clone().expect("saved");
    assert_eq!(std::fs::read(&path).unwrap(), SNAPSHOT);
    let end = next_event(&mut events).await;
    assert_eq!(end.phase, EventPhase::End);
    assert_eq!(end.camera.as_deref(), Some("Garage"));
    assert!(end.received_at >= start.received_at);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_open_sessions_421() {
    let (server, mut events, addr) = start(config()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    read_reply(&mut s).await;
    server.shutdown().await;
    assert!(read_reply(&mut s).await.starts_with("421 4.3.2"));
    drop(s);
    assert!(
        timeout(GUARD, events.recv()).await.unwrap().is_none(),
        "channel closes"
    );
}

#[tokio::test]
async fn tls_files_and_bad_material() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let generated = rcgen_pair();
    std::fs::write(&cert, generated.0).unwrap();
    std::fs::write(&key, generated.1).unwrap();
    let mut cfg = config();
    cfg.tls = nvrkit_smtp::TlsSource::Files {
        cert: cert.clone(),
        key: key.clone(),
    };
    let (server, mut events, _) = start(cfg.clone()).await;
    assert!(!server.info().self_signed);
    let options = ClientOptions::default().tls(ClientTls::Implicit);
    let mut client = Client::connect(server.info().tls_listen.unwrap(), &options)
        .await
        .unwrap();
    client
        .send("c@x", &["pem@x"], b"Subject: motion\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await.camera.as_deref(), Some("pem"));
    server.shutdown().await;

    std::fs::write(&cert, "not a certificate").unwrap();
    let err = Server::start(cfg).await.unwrap_err();
    assert!(err.to_string().contains("cert.pem"), "{err}");
}

/// A certificate and key in PEM, made with rcgen (as an operator's files would be).
fn rcgen_pair() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

// ---- Interop with real clients (ignored in plain `cargo test`; `.ci/run` runs them). ----

/// Runs a peer program to completion and requires success; a missing program fails the test.
async fn run_peer(program: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let (ok, text) = run_peer_status(program, args, stdin).await;
    assert!(ok, "{program} {args:?} failed:\n{text}");
    text
}

/// Runs a peer program to completion: whether it succeeded, and its stdout and stderr.
async fn run_peer_status(program: &str, args: &[&str], stdin: Option<&[u8]>) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}): .ci/run installs it with apt-get (APT_PACKAGES)")
    });
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).await.unwrap();
    }
    drop(input);
    let output = timeout(GUARD, child.wait_with_output())
        .await
        .expect("peer finishes")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn snapshot_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/snapshot.jpg")
        .display()
        .to_string()
}

/// swaks with the common arguments, against the plain or implicit-TLS listener.
async fn swaks(server: SocketAddr, extra: &[&str]) -> String {
    let server = server.to_string();
    let attach = format!("@{}", snapshot_path());
    let mut args = vec![
        "--server",
        &server,
        "--from",
        "cam@x",
        "--to",
        "driveway@nvr",
        "--header",
        "Subject: Motion Detected",
        "--attach",
        &attach,
    ];
    args.extend_from_slice(extra);
    run_peer("swaks", &args, None).await
}

fn assert_swaks_event(event: &CameraEvent) {
    assert_eq!(event.camera.as_deref(), Some("driveway"));
    assert_eq!(event.kind, EventKind::Motion);
    assert_eq!(event.to, ["driveway@nvr"]);
    assert_eq!(event.snapshots.len(), 1, "{event:?}");
    assert_eq!(&event.snapshots[0].data[..], SNAPSHOT);
    // The JSON form round-trips.
    let json = event.to_json();
    assert_eq!(CameraEvent::from_json(&json).unwrap().to_json(), json);
}

#[tokio::test]
#[ignore = "interop: needs swaks (.ci/run installs it)"]
async fn swaks_plain_auth_login_with_attachment() {
    let (server, mut events, addr) = start(config()).await;
    let out = swaks(
        addr,
        &[
            "--auth",
            "LOGIN",
            "--auth-user",
            "a",
            "--auth-password",
            "b",
        ],
    )
    .await;
    assert!(out.contains("235 2.7.0"), "{out}");
    let event = next_event(&mut events).await;
    assert_swaks_event(&event);
    assert_eq!(event.source.auth_user.as_deref(), Some("a"));
    assert!(!event.source.tls);
    server.shutdown().await;
}

#[tokio::test]
#[ignore = "interop: needs swaks and Net::SSLeay (.ci/run installs them)"]
async fn swaks_starttls_auth_plain() {
    let mut cfg = config();
    cfg.session.auth = AuthPolicy::Users(vec![("cam".into(), "secret".into())]);
    let (server, mut events, addr) = start(cfg).await;
    let out = swaks(
        addr,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "cam",
            "--auth-password",
            "secret",
        ],
    )
    .await;
    assert!(out.contains("TLS started"), "{out}");
    let event = next_event(&mut events).await;
    assert_swaks_event(&event);
    assert!(event.source.tls);
    assert_eq!(event.source.auth_user.as_deref(), Some("cam"));
    // Wrong password: swaks fails with 535.
    let attach = format!("@{}", snapshot_path());
    let addr_s = addr.to_string();
    let (ok, out) = run_peer_status(
        "swaks",
        &[
            "--server",
            &addr_s,
            "--to",
            "x@y",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "cam",
            "--auth-password",
            "wrong",
            "--attach",
            &attach,
        ],
        None,
    )
    .await;
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    assert_eq!(server.stats().messages(), 1);
    server.shutdown().await;
}

#[tokio::test]
#[ignore = "interop: needs swaks and Net::SSLeay (.ci/run installs them)"]
async fn swaks_implicit_tls() {
    let (server, mut events, _) = start(config()).await;
    let out = swaks(
        server.info().tls_listen.unwrap(),
        &[
            "--tlsc",
            "--auth",
            "LOGIN",
            "--auth-user",
            "a",
            "--auth-password",
            "b",
        ],
    )
    .await;
    assert!(out.contains("TLS started"), "{out}");
    let event = next_event(&mut events).await;
    assert_swaks_event(&event);
    assert!(event.source.tls);
    server.shutdown().await;
}

#[tokio::test]
#[ignore = "interop: needs swaks (.ci/run installs it)"]
async fn swaks_pipelining_and_helo() {
    let (server, mut events, addr) = start(config()).await;
    swaks(addr, &["--pipeline"]).await;
    assert_swaks_event(&next_event(&mut events).await);
    // Plain SMTP (HELO), as old camera stacks speak it.
    let out = swaks(addr, &["--protocol", "SMTP"]).await;
    assert!(out.contains(" -> HELO "), "{out}");
    let event = next_event(&mut events).await;
    assert_swaks_event(&event);
    server.shutdown().await;
}

const SMTPLIB_SCRIPT: &str = r#"
import smtplib, sys
from email.message import EmailMessage
port, jpeg = int(sys.argv[1]), sys.argv[2]
msg = EmailMessage()
msg["From"] = "ipc@cams.example"
msg["To"] = "porch@nvr"
msg["Subject"] = "IPC: Line Crossing Detection"
msg.set_content("EVENT TYPE: Line Crossing Detection\nEVENT TIME: 2024-01-02,03:04:05\nIPC NAME: Porch\n")
with open(jpeg, "rb") as f:
    msg.add_attachment(f.read(), maintype="image", subtype="jpeg", filename="porch.jpg")
with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
    s.starttls()
    s.login("cam", "pw")
    s.send_message(msg)
print("sent")
"#;

#[tokio::test]
#[ignore = "interop: needs python3 (.ci/run installs it)"]
async fn python_smtplib_send_message_with_jpeg() {
    let (server, mut events, addr) = start(config()).await;
    let port = addr.port().to_string();
    let out = run_peer(
        "python3",
        &["-c", SMTPLIB_SCRIPT, &port, &snapshot_path()],
        None,
    )
    .await;
    assert!(out.contains("sent"), "{out}");
    let event = next_event(&mut events).await;
    assert_eq!(
        event.vendor,
        Vendor::Hikvision,
        "EVENT TYPE/EVENT TIME keys"
    );
    assert_eq!(event.kind, EventKind::LineCrossing);
    assert_eq!(event.camera.as_deref(), Some("Porch"));
    assert_eq!(
        event.event_time.as_ref().unwrap().local.as_deref(),
        Some("2024-01-02T03:04:05")
    );
    assert_eq!(event.snapshots[0].name, "porch.jpg");
    assert_eq!(&event.snapshots[0].data[..], SNAPSHOT);
    assert!(event.source.tls);
    server.shutdown().await;
}

#[tokio::test]
#[ignore = "interop: needs curl (.ci/run installs it)"]
async fn curl_mail() {
    let (server, mut events, addr) = start(config()).await;
    let url = format!("smtp://{addr}");
    let mail = b"From: cam@x\r\nTo: yard@nvr\r\nSubject: Intrusion alarm\r\n\r\nRegion entrance detected\r\n";
    run_peer(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--mail-from",
            "cam@x",
            "--mail-rcpt",
            "yard@nvr",
            "--user",
            "a:b",
            "--upload-file",
            "-",
            &url,
        ],
        Some(mail),
    )
    .await;
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.kind.clone(), event.camera.as_deref()),
        (EventKind::Intrusion, Some("yard"))
    );
    assert_eq!(event.source.auth_user.as_deref(), Some("a"));
    server.shutdown().await;
}

#[test]
fn documented_schema_matches_the_code() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/event-schema.json")).unwrap();
    let example = &schema["examples"][0];
    let event = CameraEvent::from_json(&example.to_string()).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(
        &ours, example,
        "the documented sample is exactly what we write"
    );
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut keys: Vec<&str> = ours
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    required.sort_unstable();
    keys.sort_unstable();
    assert_eq!(required, keys);
}

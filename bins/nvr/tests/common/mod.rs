//! `nvr` as a child process for the hostile-peer tests (`hostile.rs`, `hostile_events.rs`): the
//! demo camera, listeners on loopback, HTTP deadlines of 1 s, and the addresses it printed.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nvrkit_testutil::hostile::{CLIENT, get};

/// An `nvr` child process, stopped when dropped: SIGINT (the recorder flushes and exits), then
/// killed at the hang guard.
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let child = &mut self.0;
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A running `nvr`: its HTTP address (`addr`) and SMTP address.
pub struct Nvr {
    _child: Stopped,
    /// The HTTP API.
    pub addr: SocketAddr,
    /// The SMTP listener.
    pub smtp: SocketAddr,
    _data: tempfile::TempDir,
}

/// Spawns `nvr` with its listeners on loopback (ephemeral ports), its store in a new temporary
/// directory, and `extra` flags: the child, its stdout, and the directory.
pub fn spawn(extra: &[&str]) -> (Stopped, BufReader<ChildStdout>, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let (child, out) = spawn_in(&data.path().join("store"), extra);
    (child, out, data)
}

/// Spawns `nvr` as [`spawn`] does, with its store in `store` (which may exist: a restart).
pub fn spawn_in(store: &std::path::Path, extra: &[&str]) -> (Stopped, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nvr"))
        .args([
            "--smtp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--rtsp-listen",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(store)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nvr starts");
    let out = BufReader::new(child.stdout.take().unwrap());
    (Stopped(child), out)
}

/// Starts `nvr` (the demo camera) with HTTP deadlines of 1 s and `extra` flags.
pub fn start(extra: &[&str]) -> Nvr {
    let mut flags = vec!["--request-timeout", "1s", "--idle-timeout", "1s"];
    flags.extend_from_slice(extra);
    let (child, mut out, data) = spawn(&flags);
    let (mut web, mut smtp) = (None, None);
    let mut line = String::new();
    // It prints `smtp: ADDR[ (AUTH required…)]`, then `web: http://ADDR/`.
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(s) = line.trim().strip_prefix("smtp: ") {
            smtp = s.split(' ').next().and_then(|a| a.parse().ok());
        }
        if let Some(w) = line.trim().strip_prefix("web: http://") {
            web = Some(w.trim_end_matches('/').parse().unwrap());
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Nvr {
        _child: child,
        addr: web.expect("nvr printed its web address"),
        smtp: smtp.expect("nvr printed its SMTP address"),
        _data: data,
    }
}

/// The legitimate client's request: it must get the camera list.
pub fn assert_api_served(n: &Nvr) {
    let r = get(CLIENT, n.addr, &n.addr.to_string(), "/api/cameras");
    assert_eq!(r.status, 200, "{}", r.head);
    let cams: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(cams[0]["name"], "demo");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

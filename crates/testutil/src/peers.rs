//! Peers the interop tests start themselves: [`NginxRtmp`], [`Mosquitto`] and its client
//! [`MqttSub`], and the port helpers every peer launcher needs.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released for the peer to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Waits until something accepts TCP on the port of 127.0.0.1 (hang guard: 20 s).
pub fn wait_for_port(port: u16, what: &str) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{what} never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx with libnginx-mod-rtmp in a directory of its own: one process (no master), a `live`
/// application on 127.0.0.1 that starts each player at a keyframe. Killed on drop.
#[derive(Debug)]
pub struct NginxRtmp {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl NginxRtmp {
    /// Where Debian's libnginx-mod-rtmp puts the module.
    pub const MODULE: &'static str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

    /// Starts nginx on a free port and waits until it listens; fails if nginx or the module
    /// is missing.
    pub fn start() -> NginxRtmp {
        assert!(
            Path::new(Self::MODULE).exists(),
            "{} is missing: apt-get install nginx libnginx-mod-rtmp",
            Self::MODULE
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\n\
                 error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
                 load_module {};\nevents {{ worker_connections 256; }}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
                 application live {{ live on; record off; wait_key on; wait_video on; }} }} }}\n",
                Self::MODULE
            ),
        )
        .expect("nginx.conf written");
        let child = Self::spawn(dir.path());
        wait_for_port(port, "nginx");
        NginxRtmp { dir, port, child }
    }

    fn spawn(dir: &Path) -> Child {
        Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("stderr.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is not installed (apt-get install nginx libnginx-mod-rtmp)")
    }

    /// Kills nginx (every connection drops) and starts it again on the same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.dir.path());
        wait_for_port(self.port, "nginx after the restart");
    }

    /// Its RTMP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of a stream of the `live` application.
    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{stream}", self.port)
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's mosquitto broker on a free port of 127.0.0.1 (anonymous access, no persistence), in
/// a directory of its own. Killed (its PID) on drop.
#[derive(Debug)]
pub struct Mosquitto {
    dir: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
    child: Child,
}

impl Mosquitto {
    /// Starts mosquitto and waits until it listens; fails if it is not installed.
    pub fn start() -> Mosquitto {
        Mosquitto::launch(false)
    }

    /// Starts mosquitto with a TLS listener too ([`Mosquitto::tls_port`]), its certificate
    /// self-signed for `127.0.0.1` by `openssl` ([`Mosquitto::ca_file`]).
    pub fn start_with_tls() -> Mosquitto {
        Mosquitto::launch(true)
    }

    fn launch(tls: bool) -> Mosquitto {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let mut conf_text = format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\nlistener {port} 127.0.0.1\n"
        );
        let tls_port = tls.then(|| {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let status = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1"])
                // A leaf, not a CA: webpki refuses a CA certificate as the server's own
                // (`CaUsedAsEndEntity`), which is what `openssl req -x509` makes by default.
                .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl is not installed");
            assert!(status.success(), "openssl could not make a certificate");
            // mosquitto started as root drops to the `mosquitto` user before it reads the key:
            // a throwaway test key, readable by all.
            use std::os::unix::fs::PermissionsExt as _;
            for (path, mode) in [(dir.path(), 0o755), (key.as_path(), 0o644)] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .expect("permissions set");
            }
            let tls_port = free_port();
            conf_text.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
            ));
            tls_port
        });
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, conf_text).expect("mosquitto.conf written");
        let child = Mosquitto::spawn(&conf);
        wait_for_port(port, "mosquitto");
        if let Some(p) = tls_port {
            wait_for_port(p, "mosquitto (TLS)");
        }
        Mosquitto {
            dir,
            port,
            tls_port,
            child,
        }
    }

    fn spawn(conf: &Path) -> Child {
        Command::new("mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
    }

    /// Kills mosquitto (every client is cut off; without persistence its retained messages are
    /// gone) and starts it again on the same ports.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Mosquitto::spawn(&self.dir.path().join("mosquitto.conf"));
        wait_for_port(self.port, "mosquitto after the restart");
    }

    /// The TLS listener's port ([`Mosquitto::start_with_tls`]).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The TLS listener's self-signed certificate, PEM ([`Mosquitto::start_with_tls`]).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message [`MqttSub`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttMessage {
    /// Its topic.
    pub topic: String,
    /// Whether the broker delivered it as retained (a message stored before the subscription).
    pub retained: bool,
    /// Its payload (text).
    pub payload: String,
}

/// `mosquitto_sub` on every topic (`#`) of a broker on 127.0.0.1, its messages in a channel.
/// Killed (its PID) on drop.
#[derive(Debug)]
pub struct MqttSub {
    child: Child,
    messages: mpsc::Receiver<MqttMessage>,
    /// Every message seen so far, in order.
    pub seen: Vec<MqttMessage>,
}

impl MqttSub {
    /// Subscribes to `#` on the broker at `port` and returns once the subscription is active
    /// (a probe published with `mosquitto_pub` on `nvrkit-test/probe` came back).
    pub fn start(port: u16) -> MqttSub {
        let mut sub = MqttSub::spawn(port);
        let t0 = Instant::now();
        loop {
            let status = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-t", "nvrkit-test/probe", "-m", "probe"])
                .status()
                .expect("mosquitto_pub is not installed (apt-get install mosquitto-clients)");
            assert!(status.success(), "mosquitto_pub failed");
            if let Ok(m) = sub.messages.recv_timeout(Duration::from_millis(500)) {
                sub.seen.push(m);
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "hang guard: mosquitto_sub never subscribed"
            );
        }
        sub
    }

    fn spawn(port: u16) -> MqttSub {
        let mut child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "#",
                "-V",
                "mqttv311",
            ])
            // Topic, retain flag, payload: one line a message (payloads here have no newline).
            .args(["-F", "%t\t%r\t%p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub is not installed (apt-get install mosquitto-clients)");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, '\t');
                let (Some(topic), Some(r), Some(payload)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let m = MqttMessage {
                    topic: topic.to_owned(),
                    retained: r == "1",
                    payload: payload.to_owned(),
                };
                if tx.send(m).is_err() {
                    return;
                }
            }
        });
        MqttSub {
            child,
            messages,
            seen: Vec::new(),
        }
    }

    /// The first message (seen before or arriving within the hang guard `guard`) on `topic`
    /// for which `ok` holds; panics with everything seen at the guard.
    pub fn wait_for(
        &mut self,
        topic: &str,
        guard: Duration,
        mut ok: impl FnMut(&MqttMessage) -> bool,
    ) -> MqttMessage {
        if let Some(m) = self.seen.iter().find(|m| m.topic == topic && ok(m)) {
            return m.clone();
        }
        let t0 = Instant::now();
        loop {
            let left = guard.saturating_sub(t0.elapsed());
            match self.messages.recv_timeout(left) {
                Ok(m) => {
                    self.seen.push(m.clone());
                    if m.topic == topic && ok(&m) {
                        return m;
                    }
                }
                Err(_) => panic!(
                    "hang guard: no message on {topic} as wanted; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }
}

impl MqttSub {
    /// Waits (hang guard `guard`) until the payloads on `topic`, from the first message on,
    /// contain `payloads` in this order (others may come between).
    pub fn wait_in_order(&mut self, topic: &str, payloads: &[&str], guard: Duration) {
        let mut next = 0;
        let mut seen_at = 0;
        let t0 = Instant::now();
        while next < payloads.len() {
            if seen_at < self.seen.len() {
                let m = &self.seen[seen_at];
                seen_at += 1;
                if m.topic == topic && m.payload == payloads[next] {
                    next += 1;
                }
                continue;
            }
            match self
                .messages
                .recv_timeout(guard.saturating_sub(t0.elapsed()))
            {
                Ok(m) => self.seen.push(m),
                Err(_) => panic!(
                    "hang guard: no {payloads:?} in order on {topic}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for MqttSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

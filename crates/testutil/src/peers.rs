//! Peers the interop tests start themselves: [`NginxRtmp`], and the port helpers every peer
//! launcher needs.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

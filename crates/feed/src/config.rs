//! The server's settings ([`Config`], re-exported as `server::Config`): what the socket layer,
//! the session core and the catalog of served loops each read.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::Auth;
use crate::fault::Alias;

/// Server settings. `Default` is what `loopcam` uses with no flags, except the listen address.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where RTSP listens.
    pub listen: SocketAddr,
    /// Largest RTP packet, header included (default 1400).
    pub mtu: usize,
    /// Credentials required on every path (Basic and Digest), when set.
    pub auth: Option<Auth>,
    /// A new client waits for the next keyframe instead of getting the current GOP at once.
    pub strict_start: bool,
    /// A set-up RTSP session with no keepalive (a complete request, or over UDP the client's
    /// RTCP) for this long ends (default 60 s), and the `Session` header announces it. A session
    /// playing over TCP lives as long as its connection: the media flowing is its liveness.
    pub session_timeout: Duration,
    /// Most connections at once, RTSP and RTSPS together (default 4,096): one more is answered
    /// `RTSP/1.0 503 Service Unavailable` (RTSPS: closed before the handshake), with a warning
    /// logged at most once a second.
    pub max_conns: usize,
    /// Most connections at once from one client address (IPv4 address, IPv6 /64), answered as
    /// [`Config::max_conns`] past it. Off by default: a VMS opens hundreds of sessions from one
    /// address.
    pub max_conns_per_addr: Option<usize>,
    /// An RTSP request must be complete this long after its first byte (default 10 s): a
    /// trickling client cannot stretch it. Also the deadline of an RTSPS handshake.
    pub request_timeout: Duration,
    /// A connection with no complete request for this long is closed (default 60 s); a partial
    /// request never resets it. A connection holding a set-up session waits
    /// [`Config::session_timeout`] instead when that is longer; one playing over TCP is alive
    /// while its media flows.
    pub idle_timeout: Duration,
    /// Offer RTP over UDP (default true).
    pub udp: bool,
    /// How much of each loop the ring keeps for late joiners (default 4 s, and always at least
    /// the current GOP).
    pub ring_duration: Duration,
    /// Every session's first RTP timestamp (tests use one just below 2³² to check the wrap);
    /// random when `None`.
    pub initial_rtptime: Option<u32>,
    /// Catch-up bursts over UDP are paced at most this many times real time (default 4).
    pub udp_burst_speed: u32,
    /// Set `TCP_NODELAY` on RTSP connections (default false, as gst-rtsp-server leaves it).
    /// Without it the kernel joins the frames a slow client has not yet acknowledged into one
    /// segment: at 500 clients that halves the server's CPU (21.5 % → 10.8 % of a core) and
    /// lowers delivery jitter (p99 10.7 → 5.2 ms). A frame goes out at once when nothing is
    /// unacknowledged; RTSP requests acknowledge all earlier data, so responses are not held.
    /// The cost, where the round trip is long or the client delays its ACKs (up to 200 ms on
    /// Windows): a frame's last partial segment can wait for the previous one's ACK, which
    /// bunches small frames (audio-only, low bitrates); set this for such clients. Measured
    /// (on loopback) with `benches/compare/loopcam.sh` and `benches/compare/rtsp_jitter.py`.
    pub tcp_nodelay: bool,
    /// A second listener for RTSP over TLS (`rtsps://`, RFC 7826 §19; usually port 322), when
    /// set. Its sessions carry RTP interleaved on the TLS connection: UDP is not offered there
    /// (plain RTP beside an encrypted control channel would defeat the point; SRTP is not done).
    pub tls_listen: Option<SocketAddr>,
    /// The RTSPS certificate: PEM files, or (the default) a self-signed one made at start whose
    /// SHA-256 fingerprint
    /// [`Server::tls_fingerprint`](crate::server::Server::tls_fingerprint) gives.
    pub tls: nvrkit_tls::TlsSource,
    /// Fault-file aliases ([`crate::fault::parse_fault_file`]): each served as its own path,
    /// playing a clip with its faults. A clip it names must be among those served.
    pub aliases: Vec<Alias>,
    /// Scripted alarms: each clip's pacer reports the frames they are cued on as it releases
    /// them ([`crate::alarm`]); `None` (the default): no alarms.
    pub alarms: Option<crate::alarm::Tap>,
    /// Number every video frame with an SEI stamp ([`crate::stamp`]; `nvr selftest`'s demo
    /// camera). Off by default.
    pub stamp_frames: bool,
    /// Serving threads (default: one per core): connections go round-robin to the caller's
    /// runtime and to `threads - 1` current-thread runtimes on threads of their own, each
    /// serving its connections to their end; 1 serves all on the caller's runtime.
    pub threads: usize,
}

impl Config {
    /// The RTSPS listener's TLS (its certificate made or loaded from [`Config::tls`]), when
    /// [`Config::tls_listen`] asks for one.
    pub(crate) fn server_tls(&self) -> crate::Result<Option<nvrkit_tls::ServerTls>> {
        let Some(addr) = self.tls_listen else {
            return Ok(None);
        };
        let tls = nvrkit_tls::server_tls(&self.tls, &[])?.ok_or(crate::Error::Unusable {
            name: addr.to_string(),
            what: "an RTSPS listener needs a certificate (TlsSource::Disabled given)".into(),
        })?;
        Ok(Some(tls))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8554)),
            mtu: 1400,
            auth: None,
            strict_start: false,
            session_timeout: Duration::from_secs(60),
            max_conns: 4096,
            max_conns_per_addr: None,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            udp: true,
            ring_duration: Duration::from_secs(4),
            initial_rtptime: None,
            udp_burst_speed: 4,
            tcp_nodelay: false,
            tls_listen: None,
            tls: nvrkit_tls::TlsSource::SelfSigned,
            aliases: Vec::new(),
            alarms: None,
            stamp_frames: false,
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        }
    }
}

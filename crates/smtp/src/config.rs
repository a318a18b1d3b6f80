//! Configuration of the SMTP session and server. Every field has a default that works on a laptop.

use subtle::ConstantTimeEq as _;

#[cfg(feature = "server")]
use crate::tls::TlsSource;
#[cfg(feature = "server")]
use std::net::SocketAddr;
#[cfg(feature = "server")]
use std::path::PathBuf;
#[cfg(feature = "server")]
use std::time::Duration;

/// Default maximum message size: 25 MiB, what the big mail providers accept, and far above a
/// camera mail with a few snapshots (typically 100–600 KB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;
/// Default maximum command line, terminator included. RFC 5321 §4.5.3.1.4 asks for at least 512;
/// smtp-proto's own limit is 4,096.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Default maximum DATA line. RFC 5321 says 1,000, but cameras send base64 snapshots with no line
/// wrapping (an 80 KB line is common), and aiosmtpd's `500 Line too long` for those is a known
/// failure of camera-to-SMTP bridges. 1 MiB fits any single snapshot.
pub const DEFAULT_MAX_DATA_LINE: usize = 1024 * 1024;

/// Default minimum average rate of a mail transfer after its first 30 s: 10 KiB/s.
pub const DEFAULT_MIN_DATA_RATE: u64 = 10 * 1024;
/// Default budget of mail buffered across all sessions: 1 GiB (512 sessions × 25 MiB would be
/// 12.8 GB).
pub const DEFAULT_MAIL_BUDGET: u64 = 1 << 30;

/// Who may submit mail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthPolicy {
    /// AUTH is optional, and any user name and password are accepted. The default: a camera's
    /// credentials are whatever its installer typed, and refusing them only loses events.
    #[default]
    AcceptAny,
    /// AUTH is required before `MAIL`, and only these `(user, password)` pairs pass.
    Users(Vec<(String, String)>),
}

impl AuthPolicy {
    /// Parses the CLI form: `any`, or `USER:PASS` (the first `:` splits).
    pub fn parse(text: &str) -> Option<AuthPolicy> {
        if text.eq_ignore_ascii_case("any") {
            return Some(AuthPolicy::AcceptAny);
        }
        let (user, pass) = text.split_once(':')?;
        Some(AuthPolicy::Users(vec![(user.to_owned(), pass.to_owned())]))
    }

    pub(crate) fn check(&self, user: &str, password: &str) -> bool {
        match self {
            AuthPolicy::AcceptAny => true,
            // Every pair is compared, each in constant time: the reply time tells nothing about
            // which user exists or how much of a password was right.
            AuthPolicy::Users(users) => users.iter().fold(false, |found, (u, p)| {
                let user_ok = bool::from(u.as_bytes().ct_eq(user.as_bytes()));
                let pass_ok = bool::from(p.as_bytes().ct_eq(password.as_bytes()));
                found | (user_ok & pass_ok)
            }),
        }
    }

    pub(crate) fn required(&self) -> bool {
        matches!(self, AuthPolicy::Users(_))
    }
}

/// How line endings are policed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineEndings {
    /// Bare LF ends a line like CRLF does, in commands and in DATA. The default: this server
    /// relays nothing, so SMTP smuggling (which needs a relay that reads the end of DATA
    /// differently from the next hop) does not apply, and a camera must never be refused for its
    /// line endings.
    #[default]
    Lenient,
    /// RFC 5321 §4.1.1.4 and §2.3.8: a command ending in bare LF gets `500`, and a message with a
    /// bare LF anywhere gets `550` at the end of DATA.
    Strict,
}

/// Settings of one SMTP session (the sans-I/O core).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Largest message accepted (`SIZE` in the EHLO reply); larger gets `552` and the session goes on.
    pub max_message_size: usize,
    /// Longest command line, terminator included; longer gets `500` and the session goes on.
    pub max_line: usize,
    /// Longest DATA line; a message with a longer line gets `500` at the end of DATA.
    pub max_data_line: usize,
    /// Most recipients in one transaction; more get `452`.
    pub max_recipients: usize,
    /// More bad commands than this end the session with `421`.
    pub max_errors: u32,
    /// Who may submit.
    pub auth: AuthPolicy,
    /// Line-ending policy.
    pub line_endings: LineEndings,
    /// Whether `STARTTLS` is offered (the tokio layer sets this when it has a TLS configuration).
    pub starttls: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "nvrkit".to_owned(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_line: DEFAULT_MAX_LINE,
            max_data_line: DEFAULT_MAX_DATA_LINE,
            max_recipients: 100,
            max_errors: 20,
            auth: AuthPolicy::default(),
            line_endings: LineEndings::default(),
            starttls: false,
        }
    }
}

#[cfg(feature = "server")]
/// Where snapshot attachments go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotStore {
    /// Kept in memory, in [`crate::Snapshot::data`]. The default.
    #[default]
    Memory,
    /// Written to this directory (created if missing); [`crate::Snapshot::path`] says where, and
    /// the bytes are still in [`crate::Snapshot::data`].
    Dir(PathBuf),
}

#[cfg(feature = "server")]
/// Settings of the tokio server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Plain listener (with `STARTTLS` when TLS is on). Default `0.0.0.0:2525`; `None` for none.
    pub listen: Option<SocketAddr>,
    /// Implicit-TLS listener (what cameras call "SSL", usually port 465). Default none.
    pub tls_listen: Option<SocketAddr>,
    /// The TLS certificate. [`TlsSource::Disabled`]: no `STARTTLS`, and an implicit-TLS
    /// listener is an error.
    pub tls: TlsSource,
    /// The SMTP dialogue.
    pub session: SessionConfig,
    /// Most sessions at once; one more gets `421` and is closed. Default 512.
    pub max_sessions: usize,
    /// Most sessions at once from one client address: an IPv4 address, or the /64 of an IPv6
    /// one ([`nvrkit_net::addr_key`]). Default 64: an NVR mails every channel from one address,
    /// often at the same moment.
    pub max_sessions_per_ip: usize,
    /// Idle time allowed between complete commands (RFC 5321 §4.5.3.2.7 asks for 5 minutes; a
    /// camera never pauses, so 60 s frees slots from dead peers sooner). Only a complete command
    /// line restarts it, never a byte.
    pub command_timeout: Duration,
    /// A command line (or AUTH continuation) must be complete this long after its first byte,
    /// and a TLS handshake this long after it starts. Default 30 s.
    pub request_timeout: Duration,
    /// Time allowed inside DATA or a BDAT chunk with no byte at all (RFC 5321 §4.5.3.2.6: 3
    /// minutes). A trickle that keeps this alive is cut by [`ServerConfig::min_data_rate`].
    pub data_timeout: Duration,
    /// After its grace period (30 s), a mail transfer (DATA, or BDAT from its first chunk to its
    /// last) must have averaged this rate since it began, else `421` (default 10 KiB/s; a camera
    /// on a 1 Mbit/s uplink sends 120 KiB/s). `bytes_per_sec: 0` turns it off.
    pub min_data_rate: nvrkit_net::MinRate,
    /// The longest a session may live, whatever it does (default 1 h; `None`: no limit).
    pub max_lifetime: Option<Duration>,
    /// Bytes of mail buffered at once across all sessions (default 1 GiB). Once spent, `MAIL`
    /// gets `452 4.3.1`, and a message being received is read to its end without being kept and
    /// then answered `452 4.3.1`; cameras retry later.
    pub mail_budget: u64,
    /// Mails parsed at once (MIME parsing and extraction run on tokio's blocking pool, never on
    /// the threads that serve sessions); 0 means one per core.
    pub extract_workers: usize,
    /// Where snapshots go.
    pub snapshots: SnapshotStore,
    /// When set, a camera that sends no mail for this long gets an "ended" event.
    pub end_after: Option<Duration>,
    /// Capacity of the event channel (default 128). When it is full, sessions wait before
    /// answering `250`, so a slow consumer slows the cameras down instead of losing events, and
    /// memory stays bounded (events hold their snapshots).
    pub channel_capacity: usize,
}

#[cfg(feature = "server")]
impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 2525))),
            tls_listen: None,
            tls: TlsSource::default(),
            session: SessionConfig::default(),
            max_sessions: 512,
            max_sessions_per_ip: 64,
            command_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(180),
            min_data_rate: nvrkit_net::MinRate {
                bytes_per_sec: DEFAULT_MIN_DATA_RATE,
                grace: Duration::from_secs(30),
            },
            max_lifetime: Some(Duration::from_secs(3600)),
            mail_budget: DEFAULT_MAIL_BUDGET,
            extract_workers: 0,
            snapshots: SnapshotStore::default(),
            end_after: None,
            channel_capacity: 128,
        }
    }
}

//! What every nvrkit server shares against hostile peers (see `docs/security.md`):
//!
//! - [`ConnLimiter`]: a cap on open connections in total and, optionally, per client address,
//!   where an address is [`addr_key`]: the IPv4 address, or the /64 of an IPv6 address (one
//!   IPv6 host usually owns a whole /64, so counting single addresses would cap nothing).
//! - [`MessageClock`]: the deadlines of a request-response protocol that a trickling peer
//!   cannot stretch: a message (command line, request, header) must be complete within a limit
//!   counted from its *first* byte, the idle timer is reset only by a *complete* message, and a
//!   connection has a total lifetime.
//!
//! - [`ByteBudget`]: bytes buffered across all connections (mail being received), so that many
//!   slow senders cannot exhaust memory together.
//! - `refuse` (feature `refuse`): the 503, linger and rate-limited warning of a connection
//!   past a cap, shared by the HTTP and RTSP servers.
//! - `threads` (feature `threads`): serving threads, one current-thread runtime each, that an
//!   acceptor deals connections to (tileserve, loopcam).
//! - [`units`]: the one grammar for sizes (`500M`), rates (`2Mbit`) and durations (`90s`,
//!   `1h30m`, `2.5s`) of every nvrkit flag and fault query (re-exported by `nvrkit-cli`).
//! - [`json_depth_within`]: a linear check of how deep untrusted JSON nests, before a parser
//!   that recurses sees it.
//!
//! All are plain code with no runtime: the tokio layers of the SMTP, RTSP and HTTP servers
//! enforce them. With the feature `http`, [`http`] (when built) is the HTTP server itself: an
//! axum router behind these caps and deadlines.
//!
//! ```
//! use std::net::IpAddr;
//! use nvrkit_net::{ConnLimiter, Refusal};
//! let limiter = ConnLimiter::new(2, Some(1));
//! let a: IpAddr = "127.0.0.2".parse().unwrap();
//! let b: IpAddr = "127.0.0.3".parse().unwrap();
//! let first = limiter.try_acquire(a).unwrap();
//! assert_eq!(limiter.try_acquire(a).unwrap_err(), Refusal::PerAddr);
//! let _second = limiter.try_acquire(b).unwrap();
//! assert_eq!(limiter.try_acquire(b).unwrap_err(), Refusal::Total);
//! drop(first);
//! assert!(limiter.try_acquire(a).is_ok());
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "refuse")]
pub mod refuse;
#[cfg(feature = "threads")]
pub mod threads;
pub mod units;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key a per-address cap counts by: the IPv4 address (an IPv4-mapped IPv6 address counts
/// as its IPv4 address, after [`IpAddr::to_canonical`]), or the /64 prefix of a native IPv6
/// address.
///
/// ```
/// use std::net::IpAddr;
/// let key = |s: &str| nvrkit_net::addr_key(s.parse::<IpAddr>().unwrap());
/// assert_eq!(key("2001:db8:1:2:3:4:5:6"), key("2001:db8:1:2:ffff::1"));
/// assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
/// assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
/// ```
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// Why [`ConnLimiter::try_acquire`] turned a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The server holds its maximum of connections.
    Total,
    /// This client address (or IPv6 /64) holds its maximum.
    PerAddr,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Total => "over the connection limit",
            Refusal::PerAddr => "over the per-address connection limit",
        })
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_addr: HashMap<IpAddr, usize>,
}

/// Caps open connections in total and per client address ([`addr_key`]). A granted
/// connection holds a [`Permit`]; dropping it frees the slot. Thread-safe: one limiter serves
/// every listener and runtime of a server.
#[derive(Debug)]
pub struct ConnLimiter {
    max_total: usize,
    max_per_addr: Option<usize>,
    counts: Mutex<Counts>,
    refused: AtomicU64,
}

impl ConnLimiter {
    /// A limiter for at most `max_total` connections, and at most `max_per_addr` from one
    /// address when given (`None`: no per-address cap).
    pub fn new(max_total: usize, max_per_addr: Option<usize>) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total,
            max_per_addr,
            counts: Mutex::new(Counts::default()),
            refused: AtomicU64::new(0),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent whatever panicked while holding the lock: each update is
        // one statement.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for a connection from `ip`, or says which cap it is over (and counts the
    /// refusal).
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let key = addr_key(ip);
        let mut counts = self.counts();
        let refusal = if counts.total >= self.max_total {
            Some(Refusal::Total)
        } else {
            match self.max_per_addr {
                Some(max) if counts.per_addr.get(&key).copied().unwrap_or(0) >= max => {
                    Some(Refusal::PerAddr)
                }
                _ => None,
            }
        };
        if let Some(refusal) = refusal {
            drop(counts);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        counts.total += 1;
        *counts.per_addr.entry(key).or_insert(0) += 1;
        Ok(Permit {
            limiter: Arc::clone(self),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// Connections open now from `ip`'s [`addr_key`].
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.counts()
            .per_addr
            .get(&addr_key(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The total cap.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// The per-address cap, if any.
    pub fn max_per_addr(&self) -> Option<usize> {
        self.max_per_addr
    }
}

/// One granted connection slot of a [`ConnLimiter`]; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_addr.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_addr.remove(&self.key);
            }
        }
    }
}

/// Deadlines of one connection of a request-response protocol, on a clock the caller passes in
/// (so tests need no sleeping):
///
/// - a message must complete within `message` of its first byte ([`MessageClock::on_bytes`]
///   starts that clock when a message begins, [`MessageClock::on_message`] stops it);
/// - between messages, the connection may sit idle for `idle`, counted from the end of the
///   last complete message, never from the last byte;
/// - the connection lives at most `lifetime` in all (`None`: no limit).
///
/// [`MessageClock::deadline`] is the earliest of those that applies now; the I/O layer sleeps
/// until it and then asks [`MessageClock::expired`] which one passed.
#[derive(Clone, Debug)]
pub struct MessageClock {
    message: Duration,
    idle: Duration,
    lifetime: Option<Duration>,
    opened: Instant,
    /// When the message being received began, if one has begun.
    started: Option<Instant>,
    /// When the last message ended (or the connection opened).
    last_complete: Instant,
}

/// Which deadline of a [`MessageClock`] passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expired {
    /// A message was begun and not finished in time (slowloris, trickle).
    Message,
    /// No message began for the idle limit.
    Idle,
    /// The connection reached its total lifetime.
    Lifetime,
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expired::Message => "message not complete within its deadline",
            Expired::Idle => "idle timeout",
            Expired::Lifetime => "connection lifetime reached",
        })
    }
}

impl MessageClock {
    /// A clock for a connection opened at `now`.
    pub fn new(
        now: Instant,
        message: Duration,
        idle: Duration,
        lifetime: Option<Duration>,
    ) -> MessageClock {
        MessageClock {
            message,
            idle,
            lifetime,
            opened: now,
            started: None,
            last_complete: now,
        }
    }

    /// Bytes arrived at `now` and a message is now partly buffered (`pending`: bytes of an
    /// unfinished message remain after parsing). Starts the message clock on the first such
    /// byte; never moves it later.
    pub fn on_bytes(&mut self, now: Instant, pending: bool) {
        if pending {
            self.started.get_or_insert(now);
        } else {
            self.started = None;
        }
    }

    /// A complete message was parsed at `now`: the idle timer restarts; if more bytes of a next
    /// message remain buffered, that message's clock starts now.
    pub fn on_message(&mut self, now: Instant, more_pending: bool) {
        self.last_complete = now;
        self.started = more_pending.then_some(now);
    }

    /// Whether a message has begun and is not complete.
    pub fn in_message(&self) -> bool {
        self.started.is_some()
    }

    /// The earliest deadline that applies now.
    pub fn deadline(&self) -> Instant {
        let local = match self.started {
            Some(started) => started + self.message,
            None => self.last_complete + self.idle,
        };
        match self.lifetime {
            Some(life) => local.min(self.opened + life),
            None => local,
        }
    }

    /// Which deadline has passed at `now`, if any.
    pub fn expired(&self, now: Instant) -> Option<Expired> {
        if self.lifetime.is_some_and(|life| now >= self.opened + life) {
            return Some(Expired::Lifetime);
        }
        match self.started {
            Some(started) if now >= started + self.message => Some(Expired::Message),
            None if now >= self.last_complete + self.idle => Some(Expired::Idle),
            _ => None,
        }
    }
}

/// A minimum average transfer rate, checked after a grace period: `--min-data-rate` of the
/// SMTP server, for DATA and BDAT. A transfer that has run for `grace` or longer must have
/// averaged at least `bytes_per_sec` since it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second; 0 turns the check off.
    pub bytes_per_sec: u64,
    /// How long a transfer runs before the rate is checked.
    pub grace: Duration,
}

impl MinRate {
    /// Whether a transfer that began at `began` and has moved `bytes` is too slow at `now`.
    pub fn too_slow(&self, began: Instant, bytes: u64, now: Instant) -> bool {
        if self.bytes_per_sec == 0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(began);
        if elapsed < self.grace {
            return false;
        }
        // bytes / elapsed < rate, in integers: bytes * 1000 < rate * elapsed_ms.
        u128::from(bytes) * 1000 < u128::from(self.bytes_per_sec) * elapsed.as_millis()
    }

    /// When the check could next fail if no byte arrives: the end of the grace period, or the
    /// moment `bytes` stops being enough for the elapsed time.
    pub fn next_check(&self, began: Instant, bytes: u64) -> Option<Instant> {
        if self.bytes_per_sec == 0 {
            return None;
        }
        let enough_for = Duration::from_millis(
            (u128::from(bytes) * 1000 / u128::from(self.bytes_per_sec))
                .try_into()
                .unwrap_or(u64::MAX),
        );
        Some(began + enough_for.max(self.grace))
    }
}

/// A budget of bytes shared by every connection of a server (the SMTP server's buffered mail):
/// a connection takes bytes before it buffers them and gives them back when it lets them go.
/// Once spent, new work is refused instead of memory growing without bound.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Takes `n` bytes if they are left; false (and nothing taken) if not.
    pub fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `n` bytes taken before.
    pub fn give_back(&self, n: u64) {
        // Saturating: a caller's bug must not wrap the count and lock everyone out.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Bytes taken now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether nothing is left.
    pub fn is_spent(&self) -> bool {
        self.used() >= self.limit
    }
}

/// Whether an HTTP `Host` header value is a plausible `host[:port]` (at most 255 bytes of
/// letters, digits and `.-:[]_`), so that a server may write it into a URL it answers with:
/// anything else (quotes, angle brackets, spaces) would let a client inject markup.
///
/// ```
/// assert!(nvrkit_net::plausible_host("cam.local:8000"));
/// assert!(nvrkit_net::plausible_host("[fe80::1]:80"));
/// assert!(!nvrkit_net::plausible_host("a\"><x"));
/// assert!(!nvrkit_net::plausible_host(""));
/// ```
pub fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// Whether `json` nests arrays and objects at most `max` deep: one pass, strings (with their
/// escapes) skipped. Malformed JSON is not refused here; that is the parser's job, and this only
/// keeps a deep input from reaching it.
///
/// ```
/// assert!(nvrkit_net::json_depth_within(br#"{"a":[1,{"b":"[[[["}]}"#, 3));
/// assert!(!nvrkit_net::json_depth_within(b"[[[[]]]]", 3));
/// ```
pub fn json_depth_within(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in json {
        if in_str {
            match b {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_past_its_limit_and_refills() {
        let b = ByteBudget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(41), "all or nothing");
        assert_eq!(b.used(), 60);
        assert!(b.try_take(40));
        assert!(b.is_spent());
        b.give_back(100);
        assert_eq!(b.used(), 0);
        b.give_back(5);
        assert_eq!(b.used(), 0, "never below zero");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let l = ConnLimiter::new(100, Some(2));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let _p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(b).unwrap();
        assert_eq!(
            l.try_acquire("2001:db8::3".parse().unwrap()).unwrap_err(),
            Refusal::PerAddr
        );
        assert!(l.try_acquire(c).is_ok(), "another /64 is another client");
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let _q1 = l.try_acquire(v4).unwrap();
        let _q2 = l.try_acquire(mapped).unwrap();
        assert_eq!(l.try_acquire(v4).unwrap_err(), Refusal::PerAddr);
        assert_eq!(l.open_from(mapped), 2);
        assert_eq!(l.refused(), 2);
    }

    #[test]
    fn no_per_addr_cap_when_none() {
        let l = ConnLimiter::new(3, None);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let permits: Vec<_> = (0..3).map(|_| l.try_acquire(ip).unwrap()).collect();
        assert_eq!(l.try_acquire(ip).unwrap_err(), Refusal::Total);
        drop(permits);
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn trickled_bytes_do_not_move_the_message_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = MessageClock::new(t0, 10 * s, 60 * s, Some(3600 * s));
        assert_eq!(c.deadline(), t0 + 60 * s);
        c.on_bytes(t0 + s, true);
        // One byte a second for a minute: the deadline stays 10 s after the first.
        for i in 2..60 {
            c.on_bytes(t0 + i * s, true);
            assert_eq!(c.deadline(), t0 + 11 * s);
        }
        assert_eq!(c.expired(t0 + 11 * s), Some(Expired::Message));
        assert_eq!(c.expired(t0 + 10 * s), None);
    }

    #[test]
    fn only_a_complete_message_resets_idle() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = MessageClock::new(t0, 10 * s, 60 * s, None);
        c.on_bytes(t0 + 5 * s, true);
        c.on_message(t0 + 6 * s, false);
        assert!(!c.in_message());
        assert_eq!(c.deadline(), t0 + 66 * s);
        assert_eq!(c.expired(t0 + 66 * s), Some(Expired::Idle));
        // Pipelined: a second message already begun when the first completes.
        c.on_message(t0 + 7 * s, true);
        assert_eq!(c.deadline(), t0 + 17 * s);
    }

    #[test]
    fn lifetime_caps_everything() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = MessageClock::new(t0, 10 * s, 60 * s, Some(30 * s));
        c.on_message(t0 + 25 * s, false);
        assert_eq!(c.deadline(), t0 + 30 * s);
        assert_eq!(c.expired(t0 + 30 * s), Some(Expired::Lifetime));
    }

    #[test]
    fn min_rate_after_grace() {
        let t0 = Instant::now();
        let r = MinRate {
            bytes_per_sec: 10 * 1024,
            grace: Duration::from_secs(30),
        };
        assert!(!r.too_slow(t0, 0, t0 + Duration::from_secs(29)));
        assert!(r.too_slow(t0, 0, t0 + Duration::from_secs(30)));
        assert!(!r.too_slow(t0, 400 * 1024, t0 + Duration::from_secs(40)));
        assert!(r.too_slow(t0, 399 * 1024, t0 + Duration::from_secs(40)));
        assert_eq!(r.next_check(t0, 0), Some(t0 + Duration::from_secs(30)));
        assert_eq!(
            r.next_check(t0, 500 * 1024),
            Some(t0 + Duration::from_secs(50))
        );
        let off = MinRate {
            bytes_per_sec: 0,
            grace: Duration::ZERO,
        };
        assert!(!off.too_slow(t0, 0, t0 + Duration::from_secs(1000)));
    }
}

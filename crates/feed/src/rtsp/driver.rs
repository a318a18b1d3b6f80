//! One RTSP connection as a state machine, sans-I/O: the [`Connection`] (dialogue and session)
//! with everything around it that decides *when*: the request framer, the request and idle
//! deadlines, session liveness and timeout, the sender-report schedule, which ring PLAY reads
//! and which frame may start it (`strict_start`), UDP catch-up pacing, the timed faults'
//! wake-ups and what closing sends.
//!
//! Events go in at an explicit instant ([`Now`]): bytes read ([`Driver::read`]), a frame from
//! the ring ([`Driver::due`], [`Driver::frame`]), a timer fired ([`Driver::timer`]), a batch of
//! frames written ([`Driver::after_frames`]), UDP RTCP seen (the `udp_seen` lookup those
//! take), the connection ending ([`Driver::end`]). What to do comes out as data: responses and
//! packets, in order, into a [`Sink`] ([`Outgoing`]; UDP ones with their route, head and body),
//! a [`Step`] (go on, start PLAY from a ring, close or linger), and the next instant to wake
//! at ([`Driver::wake`]). The socket layer (`server/conn.rs`) only reads, writes, sleeps until
//! that instant and awaits the ring; every decision here is unit-tested at chosen instants.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nvrkit_media::{Frame, WallTime};
use nvrkit_net::{Expired, MessageClock};
use rtsp_types::Response;

use super::auth::Auth;
use super::core::{
    Action, Catalog, ConnConfig, Connection, StreamInfo, Transport, bad_request, serialize,
};
use super::framing::{Framer, Incoming};
use super::play::RtpConfig;
use crate::config::Config;
use crate::fault::FaultSet;
use crate::rtp::{Outgoing, Route, Sink};

/// How often a playing session gets RTCP sender reports and every session a liveness check.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// How long PLAY waits for a frame it may start at before answering `503`.
pub const PLAY_WAIT: Duration = Duration::from_secs(10);

/// A UDP frame this far behind the wall clock (µs) is part of a catch-up burst, paced.
const CATCH_UP_US: i64 = 100_000;

/// An event's instant, on both clocks: the monotonic one for deadlines, the wall clock the
/// frames carry (`strict_start`, UDP catch-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic.
    pub at: Instant,
    /// Wall clock.
    pub wall: WallTime,
}

/// What the socket layer does after an event, once it has written what was queued.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait for the next event.
    Continue,
    /// PLAY: look up the path's rings, let [`Driver::ring`] choose one, read it from its newest
    /// keyframe and [`Driver::offer`] each frame until one starts the session
    /// ([`Driver::start`]); at `until` (or when the ring closes) give up ([`Driver::not_started`]).
    /// Then [`Driver::resume`] the requests read after the PLAY.
    Play {
        /// What the session plays.
        stream: Arc<StreamInfo>,
        /// Its faults (they may give it a loop of its own).
        faults: FaultSet,
        /// When to give up.
        until: Instant,
    },
    /// Close the connection; with `linger`, drain what the client still sends first (it sent
    /// an oversized request).
    Close {
        /// Drain the client's bytes before closing.
        linger: bool,
    },
}

impl PartialEq for Step {
    fn eq(&self, other: &Step) -> bool {
        match (self, other) {
            (Step::Continue, Step::Continue) => true,
            (Step::Close { linger: a }, Step::Close { linger: b }) => a == b,
            (
                Step::Play {
                    stream: a,
                    faults: fa,
                    until: ua,
                },
                Step::Play {
                    stream: b,
                    faults: fb,
                    until: ub,
                },
            ) => Arc::ptr_eq(a, b) && fa == fb && ua == ub,
            _ => false,
        }
    }
}

/// The rings a PLAY may read: every track's, and (when the path has one) the video's alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rings<R> {
    /// The video stream (a session starts at one of its keyframes).
    pub master: usize,
    /// Every track's frames.
    pub all: R,
    /// The video frames only.
    pub video: Option<R>,
}

/// Timeouts and pacing of a connection (from [`Config`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request must be complete this long after its first byte.
    pub request_timeout: Duration,
    /// A connection without a session and no complete request for this long is closed.
    pub idle_timeout: Duration,
    /// PLAY starts at a keyframe released after it, not the ring's newest.
    pub strict_start: bool,
    /// UDP catch-up bursts go at most this many times real time.
    pub udp_burst_speed: u32,
}

/// A PLAY waiting for its first frame.
#[derive(Debug)]
struct Starting {
    cseq: String,
    /// When it was asked for (`strict_start`: frames released before are not fresh).
    joined: WallTime,
    master: usize,
}

/// One connection's state machine.
#[derive(Debug)]
pub struct Driver {
    conn: Connection,
    framer: Framer,
    clock: MessageClock,
    limits: Limits,
    /// For the logs.
    peer: SocketAddr,
    /// The last sign of life of a session: a complete request, or interleaved RTCP while
    /// playing. A set-up session is kept [`Driver::session_limit`] past it (UDP RTCP counts too).
    last_alive: Instant,
    session_limit: Duration,
    next_report: Instant,
    /// UDP catch-up: (instant the burst started, wall time of its first frame).
    burst: Option<(Instant, WallTime)>,
    starting: Option<Starting>,
    /// PLAY started a ring reader, not ended since (TEARDOWN, a PLAY that failed).
    reading: bool,
    /// Requests read and not yet all handled (a PLAY interrupted them): the read's instant
    /// and whether one was complete.
    pending: Option<(Instant, bool)>,
}

/// A response, as the next chunk to write on the connection.
fn respond(out: &mut impl Sink, r: &Response<Vec<u8>>) {
    out.push(Outgoing {
        route: Route::Interleaved,
        head: Bytes::from(serialize(r)),
        body: Bytes::new(),
    });
}

impl Driver {
    /// A connection accepted at `now` from `peer` on the server's `local` address, `secure`
    /// on the RTSPS listener (RTP then rides the encrypted connection only: UDP is not
    /// offered), with the server's UDP ports when it has them.
    pub fn for_server(
        config: &Config,
        auth: Option<Arc<Auth>>,
        udp_ports: Option<(u16, u16)>,
        (local, peer): (SocketAddr, SocketAddr),
        secure: bool,
        now: Instant,
    ) -> Driver {
        let conn = ConnConfig {
            auth,
            udp_ports: udp_ports.filter(|_| !secure),
            session_timeout: config.session_timeout,
            scheme: if secure { "rtsps" } else { "rtsp" },
            // As a URL's host and port (an IPv6 scope is left out).
            host: match local {
                SocketAddr::V4(a) => a.to_string(),
                SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            },
            server_ip: local.ip().to_string(),
            rtp: RtpConfig {
                mtu: config.mtu,
                initial_rtptime: config.initial_rtptime,
            },
        };
        let limits = Limits {
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
            strict_start: config.strict_start,
            udp_burst_speed: config.udp_burst_speed,
        };
        Driver::new(conn, limits, peer, now)
    }

    /// A connection opened at `now`.
    pub fn new(conn: ConnConfig, limits: Limits, peer: SocketAddr, now: Instant) -> Driver {
        // Capped at a year: an absurd flag value must not overflow the clock's instants.
        let year = Duration::from_secs(365 * 86_400);
        let session_limit = limits.idle_timeout.max(conn.session_timeout);
        Driver {
            conn: Connection::new(conn),
            framer: Framer::new(),
            // The request deadline (from a request's first byte) and, while there is no
            // session, the idle timeout (from the last complete request): a trickled byte
            // moves neither.
            clock: MessageClock::new(
                now,
                limits.request_timeout.min(year),
                limits.idle_timeout.min(year),
                None,
            ),
            limits,
            peer,
            last_alive: now,
            session_limit,
            next_report: now + REPORT_INTERVAL,
            burst: None,
            starting: None,
            reading: false,
            pending: None,
        }
    }

    /// The dialogue and session.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Bytes the framer holds (bounded by [`super::framing::MAX_MESSAGE`]).
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// Whether the session's frames are to be read from the ring now (PLAY started it, not
    /// paused or torn down since): while so, frames drive the connection and [`Driver::wake`]
    /// arms no timer but a request's deadline and the faults'.
    pub fn reads(&self) -> bool {
        self.reading && self.conn.playing()
    }

    /// Bytes read at `now`: every complete request is answered into `out`, in order.
    pub fn read(
        &mut self,
        bytes: &[u8],
        now: Now,
        catalog: &dyn Catalog,
        out: &mut impl Sink,
    ) -> Step {
        self.framer.push(bytes);
        self.pending = Some((now.at, false));
        self.resume(now, catalog, out)
    }

    /// Goes on with the requests read after a PLAY ([`Step::Play`]), once it was answered.
    pub fn resume(&mut self, now: Now, catalog: &dyn Catalog, out: &mut impl Sink) -> Step {
        let Some((at, mut completed)) = self.pending else {
            return Step::Continue;
        };
        let peer = self.peer;
        while let Some(msg) = self.framer.next_message() {
            match msg {
                Incoming::Request(req) => {
                    completed = true;
                    self.last_alive = at;
                    let (resp, action) = self.conn.handle_at(&req, catalog, at);
                    match action {
                        Action::Play => {
                            let cseq = req
                                .header(&rtsp_types::headers::CSEQ)
                                .map(|v| v.as_str().to_owned())
                                .unwrap_or_default();
                            self.reading = false;
                            let Some(s) = self.conn.session() else {
                                respond(out, &self.conn.play_failed(&cseq));
                                continue;
                            };
                            let step = Step::Play {
                                stream: s.stream.clone(),
                                faults: s.faults.clone(),
                                until: at + PLAY_WAIT,
                            };
                            self.starting = Some(Starting {
                                cseq,
                                joined: now.wall,
                                master: 0,
                            });
                            self.pending = Some((at, completed));
                            return step;
                        }
                        Action::Teardown => {
                            respond(out, &resp);
                            self.reading = false;
                            self.conn.bye(out);
                        }
                        Action::Pause | Action::None => respond(out, &resp),
                    }
                }
                Incoming::Malformed(why) => {
                    tracing::debug!(%peer, "malformed request: {why}");
                    respond(out, &bad_request());
                }
                Incoming::TooLarge(why) => {
                    tracing::info!(%peer, "request refused and connection closed: {why}");
                    respond(out, &bad_request());
                    self.pending = None;
                    return Step::Close { linger: true };
                }
                // Interleaved RTCP from a playing client is liveness; from any other
                // connection it keeps nothing alive.
                Incoming::Data { .. } if self.conn.playing() => self.last_alive = at,
                Incoming::Data { .. } | Incoming::Response => {}
            }
        }
        self.pending = None;
        if completed {
            self.clock.on_message(at, self.framer.in_message());
        } else {
            self.clock.on_bytes(at, self.framer.in_message());
        }
        Step::Continue
    }

    /// The ring the starting PLAY reads: the video's alone when the session set up only the
    /// video (it is not woken for audio frames it would drop), else every track's.
    pub fn ring<R>(&mut self, rings: Rings<R>) -> R {
        if let Some(s) = self.starting.as_mut() {
            s.master = rings.master;
        }
        let video_only = self
            .conn
            .session()
            .is_some_and(|s| s.tracks.iter().all(|t| t.stream == rings.master));
        match rings.video {
            Some(v) if video_only => v,
            _ => rings.all,
        }
    }

    /// Whether the starting PLAY may start at `f`, a frame of its ring: a keyframe of the video
    /// and, with `strict_start`, one released after the PLAY (else the ring's newest will do:
    /// a late joiner gets the current GOP at once).
    pub fn offer(&self, f: &Frame) -> bool {
        let Some(s) = &self.starting else {
            return false;
        };
        let fresh = !self.limits.strict_start || f.wall.is_some_and(|w| w >= s.joined);
        f.stream == s.master && f.keyframe && fresh
    }

    /// The starting PLAY starts at `first`: its response (with RTP-Info) and the sender reports
    /// that go before the first packet, into `out`. The caller then sends `first` as any frame
    /// ([`Driver::due`], [`Driver::frame`]).
    pub fn start(&mut self, first: &Frame, out: &mut impl Sink) {
        let Some(s) = self.starting.take() else {
            return;
        };
        let mut reports = Vec::new();
        let r = self.conn.play(&s.cseq, first, s.master, &mut reports);
        respond(out, &r);
        reports.into_iter().for_each(|o| out.push(o));
        self.burst = None;
        self.reading = true;
    }

    /// No frame the starting PLAY may start at came in time (or the ring closed, or the path
    /// has no rings for it): `503`, the session set up and not playing.
    pub fn not_started(&mut self, out: &mut impl Sink) {
        if let Some(s) = self.starting.take() {
            respond(out, &self.conn.play_failed(&s.cseq));
        }
    }

    /// When `f`, read from the ring at `now`, may be sent; `None`: at once. A session catching
    /// up over UDP (its frame more than 100 ms behind the wall clock) gets the burst at most
    /// `udp_burst_speed` × real time: a whole 720p GOP at once overflows Linux's default socket
    /// receive buffer (212,992 bytes).
    pub fn due(&mut self, f: &Frame, now: Now) -> Option<Instant> {
        let udp = self
            .conn
            .playout()
            .and_then(|p| p.transport_of(f.stream))
            .is_some_and(|t| matches!(t, Transport::Udp { .. }));
        let w = f.wall.filter(|_| udp)?;
        if now.wall.micros_since(w) <= CATCH_UP_US {
            self.burst = None;
            return None;
        }
        let (t0, w0) = *self.burst.get_or_insert((now.at, w));
        let speed = u64::from(self.limits.udp_burst_speed.max(1));
        let due = t0 + Duration::from_micros((w.micros_since(w0).max(0) as u64) / speed);
        (due > now.at).then_some(due)
    }

    /// Sends `f` at `now`: its packets (as the session's faults shape them) into `out`.
    pub fn frame(&mut self, f: &Frame, now: Instant, out: &mut impl Sink) {
        self.conn.frame_at(f, now, out);
    }

    /// The ring skipped this slow reader forward to a keyframe: a join point, and the end of
    /// any catch-up burst.
    pub fn lagged(&mut self) {
        self.burst = None;
        self.conn.rejoin();
    }

    /// The next instant [`Driver::timer`] wants to run at: the request deadline, the idle
    /// timeout of a connection without a session, the report and liveness schedule (unless
    /// frames drive it, [`Driver::reads`]), a held packet (`jitter`), `disconnect_every`.
    pub fn wake(&self) -> Option<Instant> {
        let in_message = self.clock.in_message();
        // The message clock applies to a request in progress, and its idle deadline to a
        // connection without a session (a session has its own timeout, checked periodically).
        let clocked = in_message || self.conn.session().is_none();
        let deadline = clocked.then(|| self.clock.deadline());
        let wake = match (self.reads(), deadline) {
            (true, d) => d.filter(|_| in_message),
            (false, Some(d)) => Some(d.min(self.next_report)),
            (false, None) => Some(self.next_report),
        };
        [wake, self.conn.next_due(), self.conn.close_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The timer given by [`Driver::wake`] fired at `now`: `disconnect_every`, held packets
    /// due, request and idle deadlines, and the periodic work when due ([`Driver::after_frames`]).
    pub fn timer(
        &mut self,
        now: Instant,
        udp_seen: impl Fn(u16) -> Option<Instant>,
        out: &mut impl Sink,
    ) -> Step {
        let peer = self.peer;
        if self.conn.disconnect_due(now) {
            tracing::info!(%peer, "connection closed: disconnect_every fault");
            return Step::Close { linger: false };
        }
        self.conn.release(now, out);
        let expired = self.clock.expired(now).filter(|e| match e {
            Expired::Message => self.clock.in_message(),
            _ => self.conn.session().is_none(),
        });
        if let Some(e) = expired {
            tracing::info!(%peer, "connection closed: {e}");
            return Step::Close { linger: false };
        }
        self.after_frames(now, udp_seen, out)
    }

    /// Frames were written at `now` (or the timer fired): every [`REPORT_INTERVAL`], the
    /// sender reports of a playing session into `out`, and the liveness check. Liveness is a
    /// complete request, interleaved RTCP while playing, or RTCP from one of the client's UDP
    /// ports (`udp_seen`: when the server last got RTCP from that port of the peer); a session
    /// without any for the session timeout (the idle timeout, when longer) is closed. Over TCP
    /// the open connection carrying the media is itself the liveness signal (gst-rtsp-server and
    /// mediamtx do the same): clients that send no keepalive keep playing.
    pub fn after_frames(
        &mut self,
        now: Instant,
        udp_seen: impl Fn(u16) -> Option<Instant>,
        out: &mut impl Sink,
    ) -> Step {
        if now < self.next_report {
            return Step::Continue;
        }
        self.next_report = now + REPORT_INTERVAL;
        if self.conn.playing() {
            self.conn.sender_reports(out);
        }
        let alive = self
            .udp_rtcp_ports()
            .filter_map(&udp_seen)
            .fold(self.last_alive, Instant::max);
        let tcp_playing = self.conn.playing() && self.conn.playout().is_some_and(|p| p.all_tcp());
        let quiet = now.saturating_duration_since(alive);
        if self.conn.session().is_some() && !tcp_playing && quiet > self.session_limit {
            tracing::info!(peer = %self.peer, "session timed out");
            return Step::Close { linger: false };
        }
        Step::Continue
    }

    /// The client RTCP ports of the session's UDP tracks, once PLAY started it (the socket
    /// layer notes RTCP from them, [`Driver::after_frames`]'s `udp_seen`).
    pub fn udp_rtcp_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.conn
            .playout()
            .into_iter()
            .flat_map(|p| p.udp_rtcp_ports())
    }

    /// The connection ends (closed by either side, timed out, or the server stops): every
    /// track's last sender report and BYE into `out` for a session that played (none after
    /// `disconnect_every`, which just drops off), and the session forgotten. Returns the client
    /// RTCP ports it had set up over UDP, to stop watching.
    pub fn end(&mut self, out: &mut impl Sink) -> Vec<u16> {
        self.conn.bye(out);
        let Some(s) = self.conn.drop_session() else {
            return Vec::new();
        };
        s.tracks
            .iter()
            .filter_map(|t| match t.transport {
                Transport::Udp { rtcp, .. } => Some(rtcp),
                Transport::Tcp { .. } => None,
            })
            .collect()
    }
}

/// When the server last got RTCP from each client UDP port a playing session set up: the UDP
/// side of liveness ([`Driver::after_frames`]), shared by the connections and the task that
/// reads the server's RTCP socket. Only ports a session registered at PLAY count: a spoofed
/// packet from anywhere else does not grow the table.
#[derive(Debug, Default)]
pub struct UdpLiveness(Mutex<HashMap<SocketAddr, Instant>>);

impl UdpLiveness {
    /// Watches client `ip`'s RTCP `ports` from `now` (its PLAY).
    pub fn watch(&self, ip: IpAddr, ports: impl IntoIterator<Item = u16>, now: Instant) {
        if let Ok(mut seen) = self.0.lock() {
            seen.extend(ports.into_iter().map(|p| (SocketAddr::new(ip, p), now)));
        }
    }

    /// A receiver's RTCP packet came from `from` at `now`: noted, if that port is watched.
    pub fn heard(&self, from: SocketAddr, now: Instant) {
        if let Ok(mut seen) = self.0.lock()
            && let Some(at) = seen.get_mut(&from)
        {
            *at = now;
        }
    }

    /// When RTCP last came from `port` of `ip` (or its watch began).
    pub fn last(&self, ip: IpAddr, port: u16) -> Option<Instant> {
        self.0.lock().ok()?.get(&SocketAddr::new(ip, port)).copied()
    }

    /// Stops watching client `ip`'s `ports` (its session ended).
    pub fn forget(&self, ip: IpAddr, ports: impl IntoIterator<Item = u16>) {
        if let Ok(mut seen) = self.0.lock() {
            for p in ports {
                seen.remove(&SocketAddr::new(ip, p));
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The sans-I/O SMTP session: bytes from the client in, reply bytes and [`SessionEvent`]s out.
//!
//! Commands are parsed by [`smtp_proto`] (RFC 5321 with every registered extension); this module
//! adds the state machine, the limits, and the leniency cameras need:
//! - `MAIL FROM:cam@x` and `RCPT TO:nvr@x` without angle brackets (smtp-proto refuses them; many
//!   camera SMTP stacks send them);
//! - `HELO` with no domain;
//! - bare LF line endings, in commands and in DATA, unless [`LineEndings::Strict`];
//! - AUTH LOGIN and PLAIN offered over plain TCP (cameras that only speak AUTH LOGIN over plain
//!   TCP give up on a server that hides AUTH until STARTTLS, as aiosmtpd does by default);
//! - DATA lines up to [`SessionConfig::max_data_line`] (unwrapped base64 snapshots).
//!
//! The session never fails: a bad command gets an SMTP error reply and the dialogue goes on, until
//! [`SessionConfig::max_errors`] bad commands end it with `421`.
//!
//! ```
//! use std::sync::Arc;
//! use nvrkit_smtp::{Session, SessionConfig, SessionEvent};
//!
//! let mut session = Session::new(Arc::new(SessionConfig::default()), false);
//! assert!(session.output().starts_with(b"220 "));
//! session.clear_output();
//! let input = b"EHLO cam\r\nMAIL FROM:<cam@x>\r\nRCPT TO:<nvr@x>\r\nDATA\r\nSubject: hi\r\n\r\nmotion\r\n.\r\n";
//! let fed = session.feed(input);
//! let Some(SessionEvent::Message(message)) = fed.event else { panic!("no message") };
//! assert_eq!(fed.consumed, input.len());
//! assert_eq!(message.rcpt_to, ["nvr@x"]);
//! assert_eq!(&message.data[..], b"Subject: hi\r\n\r\nmotion\r\n");
//! assert!(session.output().ends_with(b"250 2.0.0 Ok: queued as 1\r\n"));
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use bytes::Bytes;
use memchr::memchr;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Request};

use nvrkit_net::ByteBudget;

use crate::config::{LineEndings, SessionConfig};

/// A message accepted at the end of DATA (or the last BDAT chunk), with its envelope.
///
/// A message from a [`Session`] with a [`ByteBudget`] holds its bytes of the budget until it
/// (and every clone of it) is dropped.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Message {
    /// The `HELO`/`EHLO` argument (empty when the client sent none).
    pub helo: String,
    /// The user name the client authenticated as, if it did.
    pub auth_user: Option<String>,
    /// Whether the session was under TLS (implicit or STARTTLS).
    pub tls: bool,
    /// The envelope sender (`MAIL FROM`), empty for the null sender `<>`.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub rcpt_to: Vec<String>,
    /// The message (headers and body) with dot-stuffing removed and line endings as sent.
    pub data: Bytes,
    /// Its share of the server's buffered-mail budget, given back on drop.
    _lease: Option<Arc<Lease>>,
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        (
            &self.helo,
            &self.auth_user,
            self.tls,
            &self.mail_from,
            &self.rcpt_to,
            &self.data,
        ) == (
            &other.helo,
            &other.auth_user,
            other.tls,
            &other.mail_from,
            &other.rcpt_to,
            &other.data,
        )
    }
}

impl Eq for Message {}

/// Bytes of a [`ByteBudget`] held by a delivered [`Message`].
#[derive(Debug)]
struct Lease {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

impl Message {
    /// A message with this envelope and content (no HELO, no AUTH, no TLS): for feeding
    /// [`crate::extract()`] mail that did not come through a [`Session`].
    pub fn new(
        mail_from: impl Into<String>,
        rcpt_to: Vec<String>,
        data: impl Into<Bytes>,
    ) -> Message {
        Message {
            helo: String::new(),
            auth_user: None,
            tls: false,
            mail_from: mail_from.into(),
            rcpt_to,
            data: data.into(),
            _lease: None,
        }
    }
}

/// Something the I/O layer must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A message was accepted. Its `250` reply is already in the output: hand the message on
    /// before writing the output, so a client that resets the connection right after reading
    /// `250` still has its mail delivered.
    Message(Message),
    /// Write the output (`220 Ready to start TLS`), then run the TLS handshake and call
    /// [`Session::tls_started`]. Bytes after the `STARTTLS` line must be discarded (RFC 3207 §5,
    /// the STARTTLS command injection of CVE-2011-0411): [`Feed::consumed`] stops at that line.
    StartTls,
    /// Write the output, then close the connection.
    Close,
}

/// What [`Session::feed`] did.
#[derive(Debug)]
#[must_use]
pub struct Feed {
    /// How many input bytes were used. Less than the input only when `event` is set: feed the rest
    /// again after handling the event (except after `StartTls` and `Close`).
    pub consumed: usize,
    /// An event, if one happened; feeding stops at the first.
    pub event: Option<SessionEvent>,
}

/// What the session is waiting for, for the I/O layer's timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// A command (or an AUTH continuation line).
    Command,
    /// Message content (DATA or a BDAT chunk).
    Data,
    /// Nothing: the session is over.
    Closed,
}

#[derive(Debug)]
enum State {
    Command,
    AuthLoginUser,
    AuthLoginPass {
        user: String,
    },
    AuthPlain,
    Data,
    Bdat {
        remaining: usize,
        last: bool,
        reject: Option<&'static str>,
    },
    Closed,
}

#[derive(Debug)]
struct Transaction {
    from: String,
    rcpts: Vec<String>,
    bdat: bool,
}

/// Scanner state inside DATA.
#[derive(Debug, Default)]
struct DataScan {
    /// At the beginning of a line.
    bol: bool,
    /// 0: nothing; 1: a `.` at the beginning of the line; 2: `.` then CR.
    dot: u8,
    /// Length of the current line so far.
    line_len: usize,
    /// The last byte appended.
    last: u8,
    oversize: bool,
    /// The server's buffered-mail budget ran out during this message.
    no_storage: bool,
    long_line: bool,
    bare_lf: bool,
}

/// One SMTP server session, sans I/O: bytes from the client in, reply bytes and
/// [`SessionEvent`]s out. Commands are parsed by [`smtp_proto`]; the session adds the state
/// machine, the limits and the leniency cameras need (addresses without angle brackets, `HELO`
/// with no domain, bare LF unless [`LineEndings::Strict`], AUTH offered over plain TCP, long
/// DATA lines up to [`SessionConfig::max_data_line`]).
#[derive(Debug)]
pub struct Session {
    cfg: Arc<SessionConfig>,
    state: State,
    out: Vec<u8>,
    line: Vec<u8>,
    line_overflow: bool,
    helo: Option<String>,
    tls: bool,
    auth_user: Option<String>,
    txn: Option<Transaction>,
    body: Vec<u8>,
    scan: DataScan,
    errors: u32,
    queued: u64,
    progress: u64,
    /// The server's buffered-mail budget, and how much of it `body` holds.
    budget: Option<Arc<ByteBudget>>,
    held: u64,
}

/// Why the I/O layer closes a session ([`Session::close`]); each has its `421` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// No complete command for the idle limit, or a command line not complete within its
    /// deadline from its first byte, or no byte inside DATA for the data timeout.
    Timeout,
    /// A mail transfer averaged less than the minimum data rate.
    TooSlow,
    /// The session reached its total lifetime.
    Lifetime,
    /// The server is stopping.
    Shutdown,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.drop_body();
    }
}

const LOGIN_USERNAME: &str = "334 VXNlcm5hbWU6"; // base64("Username:")
const LOGIN_PASSWORD: &str = "334 UGFzc3dvcmQ6"; // base64("Password:")

impl Session {
    /// A new session; the `220` greeting is already in the output. `tls` says whether the
    /// connection is already under TLS (the implicit-TLS listener).
    pub fn new(cfg: Arc<SessionConfig>, tls: bool) -> Session {
        let mut session = Session {
            state: State::Command,
            out: Vec::with_capacity(512),
            line: Vec::new(),
            line_overflow: false,
            helo: None,
            tls,
            auth_user: None,
            txn: None,
            body: Vec::new(),
            scan: DataScan::default(),
            errors: 0,
            queued: 0,
            progress: 0,
            budget: None,
            held: 0,
            cfg,
        };
        let greeting = format!(
            "220 {} ESMTP nvrkit camera event server",
            session.cfg.hostname
        );
        session.reply(&greeting);
        session
    }

    /// Counts the mail this session buffers against `budget`, shared by every session of a
    /// server: once it is spent, `MAIL` gets `452 4.3.1`, and a message being received is read
    /// to its end without being kept, then answered `452 4.3.1`.
    pub fn set_budget(&mut self, budget: Arc<ByteBudget>) {
        self.budget = Some(budget);
    }

    /// Whether part of a command line is buffered (so its deadline, counted from its first
    /// byte, runs).
    pub fn pending_line(&self) -> bool {
        !self.line.is_empty() || self.line_overflow
    }

    /// Whether a mail transfer is under way: inside DATA, or a BDAT transaction that has not
    /// had its last chunk. The minimum data rate is measured over it.
    pub fn in_transfer(&self) -> bool {
        matches!(self.state, State::Data | State::Bdat { .. })
            || self.txn.as_ref().is_some_and(|t| t.bdat)
    }

    /// Reply bytes to send to the client.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the output once it is sent.
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// What the session waits for.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Data | State::Bdat { .. } => Phase::Data,
            State::Closed => Phase::Closed,
            _ => Phase::Command,
        }
    }

    /// Whether the session is under TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Counts complete command lines and message ends. The I/O layer restarts its command timer
    /// only when this moves, so a client that trickles a command byte by byte (slowloris) still
    /// times out.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// How many messages this session accepted.
    pub fn messages(&self) -> u64 {
        self.queued
    }

    /// The TLS handshake after `STARTTLS` succeeded: the session starts over (RFC 3207 §4.2), the
    /// client must say EHLO again.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.auth_user = None;
        self.txn = None;
        self.drop_body();
        self.line.clear();
        self.state = State::Command;
    }

    /// The I/O layer's idle timer fired: `421` and close.
    pub fn timed_out(&mut self) {
        self.close(CloseReason::Timeout);
    }

    /// The server is stopping: `421` and close.
    pub fn shutting_down(&mut self) {
        self.close(CloseReason::Shutdown);
    }

    /// Ends the session with the `421` reply for `reason`; a message being received is dropped.
    pub fn close(&mut self, reason: CloseReason) {
        self.reply(match reason {
            CloseReason::Timeout => "421 4.4.2 Timeout, closing connection",
            CloseReason::TooSlow => "421 4.4.2 Transfer too slow, closing connection",
            CloseReason::Lifetime => "421 4.4.2 Session too long, closing connection",
            CloseReason::Shutdown => "421 4.3.2 Server shutting down",
        });
        self.txn = None;
        self.drop_body();
        self.state = State::Closed;
    }

    /// Forgets the buffered message and gives its bytes back to the budget.
    fn drop_body(&mut self) {
        self.body = Vec::new();
        if let Some(budget) = &self.budget {
            budget.give_back(self.held);
        }
        self.held = 0;
    }

    /// Feeds client bytes. Stops at the first event; see [`Feed`].
    pub fn feed(&mut self, input: &[u8]) -> Feed {
        let mut pos = 0;
        while pos < input.len() {
            let event = match self.state {
                State::Closed => {
                    pos = input.len();
                    None
                }
                State::Data => {
                    let (used, done) = self.scan_data(&input[pos..]);
                    pos += used;
                    if done { self.end_of_data() } else { None }
                }
                State::Bdat {
                    ref mut remaining,
                    reject,
                    ..
                } => {
                    let take = (*remaining).min(input.len() - pos);
                    *remaining -= take;
                    let chunk = &input[pos..pos + take];
                    pos += take;
                    if reject.is_none() {
                        self.append_body(chunk);
                    }
                    if matches!(self.state, State::Bdat { remaining: 0, .. }) {
                        self.end_of_chunk()
                    } else {
                        None
                    }
                }
                _ => {
                    let rest = &input[pos..];
                    match memchr(b'\n', rest) {
                        None => {
                            self.buffer_partial_line(rest);
                            pos = input.len();
                            None
                        }
                        Some(end) => {
                            pos += end + 1;
                            let piece = &rest[..=end];
                            if self.line_overflow {
                                self.line_overflow = false;
                                self.line.clear();
                                let text = format!(
                                    "500 5.5.2 Line too long (limit {} bytes)",
                                    self.cfg.max_line
                                );
                                self.error_reply(&text)
                            } else if self.line.is_empty() {
                                if piece.len() > self.cfg.max_line {
                                    let text = format!(
                                        "500 5.5.2 Line too long (limit {} bytes)",
                                        self.cfg.max_line
                                    );
                                    self.error_reply(&text)
                                } else {
                                    self.handle_line(piece)
                                }
                            } else {
                                let mut line = std::mem::take(&mut self.line);
                                let event = if line.len() + piece.len() > self.cfg.max_line {
                                    let text = format!(
                                        "500 5.5.2 Line too long (limit {} bytes)",
                                        self.cfg.max_line
                                    );
                                    self.error_reply(&text)
                                } else {
                                    line.extend_from_slice(piece);
                                    self.handle_line(&line)
                                };
                                line.clear();
                                self.line = line;
                                event
                            }
                        }
                    }
                }
            };
            if event.is_some() {
                return Feed {
                    consumed: pos,
                    event,
                };
            }
        }
        Feed {
            consumed: pos,
            event: None,
        }
    }

    fn buffer_partial_line(&mut self, rest: &[u8]) {
        if self.line_overflow {
            return;
        }
        if self.line.len() + rest.len() > self.cfg.max_line {
            self.line.clear();
            self.line_overflow = true;
        } else {
            self.line.extend_from_slice(rest);
        }
    }

    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A `5xx` reply to a bad command; too many of them end the session.
    fn error_reply(&mut self, text: &str) -> Option<SessionEvent> {
        self.reply(text);
        self.count_error()
    }

    fn count_error(&mut self) -> Option<SessionEvent> {
        self.errors += 1;
        if self.errors > self.cfg.max_errors {
            self.reply("421 4.7.0 Too many errors, closing connection");
            self.state = State::Closed;
            return Some(SessionEvent::Close);
        }
        None
    }

    /// One complete line (terminator included) in a line state.
    fn handle_line(&mut self, raw: &[u8]) -> Option<SessionEvent> {
        self.progress += 1;
        let bare_lf = !raw.ends_with(b"\r\n");
        if bare_lf && self.cfg.line_endings == LineEndings::Strict {
            return self.error_reply("500 5.5.2 Bare LF line ending refused (RFC 5321 4.1.1.4)");
        }
        match std::mem::replace(&mut self.state, State::Command) {
            State::AuthLoginUser => {
                let user = match self.decode_auth_line(raw) {
                    Ok(user) => user,
                    Err(()) => return self.count_error(),
                };
                self.state = State::AuthLoginPass {
                    user: String::from_utf8_lossy(&user).into_owned(),
                };
                self.reply(LOGIN_PASSWORD);
                None
            }
            State::AuthLoginPass { user } => {
                let password = match self.decode_auth_line(raw) {
                    Ok(password) => password,
                    Err(()) => return self.count_error(),
                };
                self.finish_auth(user, &String::from_utf8_lossy(&password))
            }
            State::AuthPlain => match self.decode_auth_line(raw) {
                Ok(decoded) => self.auth_plain(&decoded),
                Err(()) => self.count_error(),
            },
            _ => {
                if bare_lf {
                    // smtp-proto wants CRLF; give it one.
                    let mut fixed = Vec::with_capacity(raw.len() + 1);
                    fixed.extend_from_slice(&raw[..raw.len() - 1]);
                    fixed.extend_from_slice(b"\r\n");
                    self.command(&fixed)
                } else {
                    self.command(raw)
                }
            }
        }
    }

    /// Decodes an AUTH continuation line; `*` cancels (RFC 4954 §4).
    /// On failure the error reply is written; the caller returns [`Session::count_error`].
    fn decode_auth_line(&mut self, raw: &[u8]) -> Result<Vec<u8>, ()> {
        let text = trim_line(raw);
        if text == b"*" {
            self.reply("501 5.7.0 Authentication cancelled");
            return Err(());
        }
        decode_base64(text).ok_or_else(|| self.reply("501 5.5.2 Invalid base64 data"))
    }

    fn command(&mut self, line: &[u8]) -> Option<SessionEvent> {
        let parsed = Request::parse(&mut line.iter());
        match parsed {
            Ok(request) => self.request(request),
            Err(err) => self.lenient(line, err),
        }
    }

    fn request(&mut self, request: Request<Cow<'_, str>>) -> Option<SessionEvent> {
        match request {
            Request::Ehlo { host } => self.hello(&host, true),
            Request::Helo { host } => self.hello(&host, false),
            Request::Mail { from } => self.mail(&from.address, from.size),
            Request::Rcpt { to } => self.rcpt(&to.address),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response),
            Request::Noop { .. } => {
                self.reply("250 2.0.0 OK");
                None
            }
            Request::Vrfy { .. } => {
                self.reply("252 2.1.5 Cannot VRFY user, but will accept message");
                None
            }
            Request::Help { .. } => {
                self.reply("214 2.0.0 nvrkit camera event server: mail is turned into events");
                None
            }
            Request::StartTls => self.starttls(),
            Request::Rset => {
                self.txn = None;
                self.drop_body();
                self.reply("250 2.0.0 OK");
                None
            }
            Request::Quit => {
                self.reply("221 2.0.0 Bye");
                self.state = State::Closed;
                Some(SessionEvent::Close)
            }
            Request::Lhlo { .. } => self.error_reply("500 5.5.1 This is SMTP, not LMTP"),
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error_reply("502 5.5.1 Command not implemented"),
        }
    }

    /// What smtp-proto refused, read leniently where cameras need it.
    fn lenient(&mut self, line: &[u8], err: smtp_proto::Error) -> Option<SessionEvent> {
        let text = String::from_utf8_lossy(trim_line(line)).into_owned();
        let verb = text.get(..4).unwrap_or("").to_ascii_uppercase();
        let args = text.get(4..).unwrap_or("");
        let address_error = matches!(
            err,
            smtp_proto::Error::InvalidSenderAddress
                | smtp_proto::Error::InvalidRecipientAddress
                | smtp_proto::Error::SyntaxError { .. }
        );
        match verb.as_str() {
            // "HELO" alone, or with junk smtp-proto does not take as a domain.
            "HELO" | "EHLO" if args.is_empty() || args.starts_with(' ') => {
                return self.hello(args.trim(), verb == "EHLO");
            }
            "MAIL" if address_error => {
                if let Some((address, params)) =
                    strip_prefix_ci(args.trim_start(), "FROM:").map(lenient_address)
                {
                    let size = params
                        .split_ascii_whitespace()
                        .find_map(|p| strip_prefix_ci(p, "SIZE="))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    return self.mail(address, size);
                }
            }
            "RCPT" if address_error => {
                if let Some((address, _)) =
                    strip_prefix_ci(args.trim_start(), "TO:").map(lenient_address)
                    && !address.is_empty()
                {
                    return self.rcpt(address);
                }
            }
            _ => {}
        }
        let reply = match err {
            smtp_proto::Error::UnknownCommand => "500 5.5.1 Unknown command".to_owned(),
            smtp_proto::Error::InvalidSenderAddress => {
                "501 5.1.7 Invalid sender address".to_owned()
            }
            smtp_proto::Error::InvalidRecipientAddress => {
                "501 5.1.3 Invalid recipient address".to_owned()
            }
            smtp_proto::Error::SyntaxError { syntax } => format!("501 5.5.2 Syntax: {syntax}"),
            smtp_proto::Error::InvalidParameter { param } => {
                format!("501 5.5.4 Invalid parameter {param}")
            }
            smtp_proto::Error::UnsupportedParameter { param } => {
                let param: String = param.chars().take(64).collect();
                format!("504 5.5.4 Unsupported parameter {param}")
            }
            _ => "500 5.5.2 Syntax error".to_owned(),
        };
        self.error_reply(&reply)
    }

    fn hello(&mut self, host: &str, extended: bool) -> Option<SessionEvent> {
        self.txn = None;
        self.helo = Some(host.to_owned());
        if !extended {
            let text = format!("250 {}", self.cfg.hostname);
            self.reply(&text);
            return None;
        }
        let mut text = String::with_capacity(256);
        let _ = write!(
            text,
            "250-{} Hello {}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
             250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE {}\r\n",
            self.cfg.hostname,
            if host.is_empty() { "there" } else { host },
            self.cfg.max_message_size
        );
        if self.auth_user.is_none() {
            // "AUTH=" is the pre-RFC 2554 form some old clients still look for.
            text.push_str("250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n");
        }
        if self.cfg.starttls && !self.tls {
            text.push_str("250-STARTTLS\r\n");
        }
        text.push_str("250 HELP");
        self.reply(&text);
        None
    }

    fn mail(&mut self, address: &str, size: usize) -> Option<SessionEvent> {
        if self.cfg.auth.required() && self.auth_user.is_none() {
            return self.error_reply("530 5.7.0 Authentication required");
        }
        if self.txn.is_some() {
            return self.error_reply("503 5.5.1 Nested MAIL command");
        }
        if self.budget.as_ref().is_some_and(|b| b.is_spent()) {
            self.reply("452 4.3.1 Insufficient system storage, try again later");
            return None;
        }
        if size > self.cfg.max_message_size {
            let text = format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.cfg.max_message_size
            );
            self.reply(&text);
            return None;
        }
        self.txn = Some(Transaction {
            from: address.to_owned(),
            rcpts: Vec::new(),
            bdat: false,
        });
        self.reply("250 2.1.0 OK");
        None
    }

    fn rcpt(&mut self, address: &str) -> Option<SessionEvent> {
        let max = self.cfg.max_recipients;
        let Some(txn) = self.txn.as_mut() else {
            return self.error_reply("503 5.5.1 Need MAIL before RCPT");
        };
        if txn.rcpts.len() >= max {
            self.reply("452 4.5.3 Too many recipients");
            return None;
        }
        txn.rcpts.push(address.to_owned());
        self.reply("250 2.1.5 OK");
        None
    }

    fn data(&mut self) -> Option<SessionEvent> {
        match &self.txn {
            None => return self.error_reply("503 5.5.1 Need MAIL before DATA"),
            Some(txn) if txn.rcpts.is_empty() => {
                return self.error_reply("503 5.5.1 Need RCPT before DATA");
            }
            Some(txn) if txn.bdat => return self.error_reply("503 5.5.1 DATA after BDAT"),
            Some(_) => {}
        }
        self.drop_body();
        self.scan = DataScan {
            bol: true,
            ..DataScan::default()
        };
        self.state = State::Data;
        self.reply("354 Start mail input; end with <CRLF>.<CRLF>");
        None
    }

    fn bdat(&mut self, size: usize, last: bool) -> Option<SessionEvent> {
        let reject = match self.txn.as_mut() {
            None => Some("503 5.5.1 Need MAIL before BDAT"),
            Some(txn) if txn.rcpts.is_empty() => Some("503 5.5.1 Need RCPT before BDAT"),
            Some(txn) => {
                if !txn.bdat {
                    txn.bdat = true;
                    self.drop_body();
                    self.scan = DataScan::default();
                }
                None
            }
        };
        self.state = State::Bdat {
            remaining: size,
            last,
            reject,
        };
        if size == 0 { self.end_of_chunk() } else { None }
    }

    fn auth(&mut self, mechanism: u64, initial: &str) -> Option<SessionEvent> {
        if self.auth_user.is_some() {
            return self.error_reply("503 5.5.1 Already authenticated");
        }
        if self.txn.is_some() {
            return self.error_reply("503 5.5.1 AUTH not allowed during a mail transaction");
        }
        // RFC 4954 §4: "=" is an empty initial response.
        let initial = if initial == "=" { "" } else { initial };
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.state = State::AuthPlain;
                self.reply("334 ");
                None
            }
            AUTH_PLAIN => match decode_base64(initial.as_bytes()) {
                Some(decoded) => self.auth_plain(&decoded),
                None => self.error_reply("501 5.5.2 Invalid base64 data"),
            },
            AUTH_LOGIN if initial.is_empty() => {
                self.state = State::AuthLoginUser;
                self.reply(LOGIN_USERNAME);
                None
            }
            AUTH_LOGIN => match decode_base64(initial.as_bytes()) {
                Some(user) => {
                    self.state = State::AuthLoginPass {
                        user: String::from_utf8_lossy(&user).into_owned(),
                    };
                    self.reply(LOGIN_PASSWORD);
                    None
                }
                None => self.error_reply("501 5.5.2 Invalid base64 data"),
            },
            _ => self.error_reply("504 5.5.4 Unrecognized authentication type"),
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`.
    fn auth_plain(&mut self, decoded: &[u8]) -> Option<SessionEvent> {
        let mut parts = decoded.split(|&b| b == 0);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_authzid), Some(user), Some(password), None) => {
                let user = String::from_utf8_lossy(user).into_owned();
                self.finish_auth(user, &String::from_utf8_lossy(password))
            }
            _ => self.error_reply("501 5.5.2 Malformed AUTH PLAIN response"),
        }
    }

    fn finish_auth(&mut self, user: String, password: &str) -> Option<SessionEvent> {
        if self.cfg.auth.check(&user, password) {
            self.auth_user = Some(user);
            self.reply("235 2.7.0 Authentication successful");
            None
        } else {
            self.error_reply("535 5.7.8 Authentication credentials invalid")
        }
    }

    fn starttls(&mut self) -> Option<SessionEvent> {
        if !self.cfg.starttls {
            return self.error_reply("502 5.5.1 STARTTLS not available");
        }
        if self.tls {
            return self.error_reply("503 5.5.1 Already under TLS");
        }
        self.reply("220 2.0.0 Ready to start TLS");
        Some(SessionEvent::StartTls)
    }

    fn append_body(&mut self, bytes: &[u8]) {
        if self.scan.oversize || self.scan.no_storage {
            return;
        }
        if self.body.len() + bytes.len() > self.cfg.max_message_size {
            self.scan.oversize = true;
            self.drop_body();
            return;
        }
        if let Some(budget) = &self.budget {
            let n = bytes.len() as u64;
            if !budget.try_take(n) {
                self.scan.no_storage = true;
                self.drop_body();
                return;
            }
            self.held += n;
        }
        self.body.extend_from_slice(bytes);
    }

    /// The reply to a message that was not kept, if it was not (and the transaction ends).
    fn refusal(&mut self) -> Option<String> {
        let text = if self.scan.no_storage {
            "452 4.3.1 Insufficient system storage, try again later".to_owned()
        } else if self.scan.oversize {
            format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.cfg.max_message_size
            )
        } else {
            return None;
        };
        self.txn = None;
        self.drop_body();
        Some(text)
    }

    /// Scans DATA content: dot-unstuffing (RFC 5321 §4.5.2), the end marker, line lengths and
    /// bare LFs. Returns the bytes used and whether the end marker was seen.
    fn scan_data(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.scan.bol && self.scan.dot == 0 {
                if input[i] == b'.' {
                    self.scan.dot = 1;
                    i += 1;
                    continue;
                }
                self.scan.bol = false;
            } else if self.scan.dot == 1 {
                match input[i] {
                    b'\n' => {
                        // ".<LF>": the end marker with a bare LF.
                        self.scan.bare_lf = true;
                        return (i + 1, true);
                    }
                    b'\r' => {
                        self.scan.dot = 2;
                        i += 1;
                        continue;
                    }
                    _ => {
                        // A stuffed dot: drop it, the line goes on.
                        self.scan.dot = 0;
                        self.scan.bol = false;
                        self.scan.line_len = 1;
                    }
                }
            } else if self.scan.dot == 2 {
                if input[i] == b'\n' {
                    return (i + 1, true);
                }
                // ".<CR>x": a stuffed dot before a bare CR.
                self.scan.dot = 0;
                self.scan.bol = false;
                self.scan.line_len = 2;
                self.scan.last = b'\r';
                self.append_body(b"\r");
            }
            // Whole lines at once, up to the next line that starts with a dot (or the input's
            // end): one search for "\n." per run, one append (and one budget take) per run, and
            // no per-line work unless a check needs it; a mail of short lines is otherwise
            // dominated by per-line work.
            let rest = &input[i..];
            let stop = LINE_THEN_DOT.find(rest).map_or(rest.len(), |at| at + 1);
            let span = &rest[..stop];
            if self.cfg.line_endings == LineEndings::Strict && !self.scan.bare_lf {
                self.scan.bare_lf = has_bare_lf(span, self.scan.last);
            }
            let line_start = match long_line(span, self.scan.line_len, self.cfg.max_data_line) {
                Lines::Long => {
                    self.scan.long_line = true;
                    memchr::memrchr(b'\n', span).map_or(0, |end| end + 1)
                }
                Lines::Fit { last_start } => last_start,
            };
            if line_start > 0 {
                self.scan.line_len = 0;
            }
            if line_start == stop {
                // The span ends at a line end: the next byte (if any) starts a line.
                self.scan.bol = true;
            } else {
                self.scan.line_len += stop - line_start;
                if self.scan.line_len > self.cfg.max_data_line {
                    self.scan.long_line = true;
                }
            }
            if let Some(&last) = span.last() {
                self.scan.last = last;
            }
            self.append_body(span);
            i += stop;
        }
        (input.len(), false)
    }

    fn end_of_data(&mut self) -> Option<SessionEvent> {
        self.progress += 1;
        self.state = State::Command;
        if let Some(text) = self.refusal() {
            self.reply(&text);
            return None;
        }
        if self.scan.long_line {
            self.txn = None;
            self.drop_body();
            let text = format!(
                "500 5.5.6 Line too long in message (limit {} bytes)",
                self.cfg.max_data_line
            );
            self.reply(&text);
            return None;
        }
        if self.scan.bare_lf && self.cfg.line_endings == LineEndings::Strict {
            self.txn = None;
            self.drop_body();
            self.reply("550 5.6.11 Bare LF in message refused (RFC 5321 2.3.8)");
            return None;
        }
        self.deliver()
    }

    fn end_of_chunk(&mut self) -> Option<SessionEvent> {
        self.progress += 1;
        let State::Bdat { last, reject, .. } = std::mem::replace(&mut self.state, State::Command)
        else {
            return None;
        };
        if let Some(reject) = reject {
            return self.error_reply(reject);
        }
        if let Some(text) = self.refusal() {
            self.reply(&text);
            return None;
        }
        if last {
            return self.deliver();
        }
        let text = format!("250 2.0.0 {} octets received", self.body.len());
        self.reply(&text);
        None
    }

    fn deliver(&mut self) -> Option<SessionEvent> {
        let txn = self.txn.take()?;
        let lease = self.budget.as_ref().map(|budget| {
            Arc::new(Lease {
                budget: Arc::clone(budget),
                bytes: std::mem::take(&mut self.held),
            })
        });
        self.queued += 1;
        let text = format!("250 2.0.0 Ok: queued as {}", self.queued);
        self.reply(&text);
        Some(SessionEvent::Message(Message {
            helo: self.helo.clone().unwrap_or_default(),
            auth_user: self.auth_user.clone(),
            tls: self.tls,
            mail_from: txn.from,
            rcpt_to: txn.rcpts,
            data: Bytes::from(std::mem::take(&mut self.body)),
            _lease: lease,
        }))
    }
}

/// The reply the I/O layer sends, then closes, when a connection is over a session limit.
pub const BUSY_REPLY: &[u8] = b"421 4.7.0 Too many connections, try again later\r\n";

/// Finds the end of a run of DATA lines: a line feed followed by a line that starts with a dot.
static LINE_THEN_DOT: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"\n."));

/// What [`long_line`] found in a run of DATA bytes.
#[derive(Debug, PartialEq, Eq)]
enum Lines {
    /// Some line (line feed included) is longer than the limit.
    Long,
    /// Every line fits; the last line (unfinished when the run does not end with a line feed)
    /// starts at `last_start` (0: the run holds no line feed).
    Fit { last_start: usize },
}

/// Whether `span` holds a line longer than `max` bytes (its line feed included), where the
/// line that `span` begins already had `carried` bytes. Linear and with no per-line work: each
/// step searches back from the furthest place the current line may end, so it jumps over
/// every line that ends in that window (at most 2 × `span.len()` bytes searched in all).
fn long_line(span: &[u8], carried: usize, max: usize) -> Lines {
    let mut start = 0; // Where the current line's bytes in `span` begin.
    let mut carried = carried;
    let mut last_start = 0;
    loop {
        // The current line fits if its line feed is before `start + room`.
        let room = max.saturating_sub(carried);
        let end = (start + room).min(span.len());
        match memchr::memrchr(b'\n', &span[start..end]) {
            Some(at) => {
                start += at + 1;
                last_start = start;
                carried = 0;
            }
            None if end == span.len() => {
                // No line feed left: the unfinished line must not already be too long.
                return if carried + (span.len() - start) > max {
                    Lines::Long
                } else {
                    Lines::Fit { last_start }
                };
            }
            None => return Lines::Long,
        }
    }
}

/// Whether a line of `span` ends with a bare LF; `before` is the byte before `span`.
fn has_bare_lf(span: &[u8], before: u8) -> bool {
    memchr::memchr_iter(b'\n', span).any(|end| {
        let prev = if end > 0 { span[end - 1] } else { before };
        prev != b'\r'
    })
}

/// A line without its CRLF or LF, and without surrounding blanks.
fn trim_line(raw: &[u8]) -> &[u8] {
    raw.trim_ascii()
}

fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `<a@b> PARAMS`, `a@b PARAMS` or ` a@b`: the address and the rest.
fn lenient_address(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    if let Some(inner) = text.strip_prefix('<') {
        match inner.find('>') {
            Some(end) => (inner[..end].trim(), &inner[end + 1..]),
            None => (inner.trim(), ""),
        }
    } else {
        match text.find(char::is_whitespace) {
            Some(end) => (&text[..end], &text[end..]),
            None => (text, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthPolicy;

    fn session_with(cfg: SessionConfig) -> Session {
        let mut s = Session::new(Arc::new(cfg), false);
        s.clear_output();
        s
    }

    fn session() -> Session {
        session_with(SessionConfig {
            starttls: true,
            ..SessionConfig::default()
        })
    }

    /// Feeds everything, collecting events (continuing after messages, as the I/O layer does).
    fn run(s: &mut Session, input: &[u8]) -> (String, Vec<SessionEvent>) {
        let mut events = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let fed = s.feed(&input[pos..]);
            pos += fed.consumed;
            match fed.event {
                Some(e @ (SessionEvent::Close | SessionEvent::StartTls)) => {
                    events.push(e);
                    break;
                }
                Some(e) => events.push(e),
                None => assert_eq!(pos, input.len(), "feed stopped without an event"),
            }
        }
        let out = String::from_utf8(s.output().to_vec()).unwrap();
        s.clear_output();
        (out, events)
    }

    fn codes(out: &str) -> Vec<&str> {
        out.lines()
            .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
            .map(|l| &l[..3])
            .collect()
    }

    fn messages(events: &[SessionEvent]) -> Vec<&Message> {
        events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// `long_line` against the obvious per-line scan, on random runs of short and long lines.
    #[test]
    fn long_line_agrees_with_a_per_line_scan() {
        fn naive(span: &[u8], carried: usize, max: usize) -> Lines {
            let mut len = carried;
            let mut last_start = 0;
            for (i, &b) in span.iter().enumerate() {
                len += 1;
                if b == b'\n' {
                    if len > max {
                        return Lines::Long;
                    }
                    len = 0;
                    last_start = i + 1;
                }
            }
            if len > max {
                Lines::Long
            } else {
                Lines::Fit { last_start }
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..5000 {
            let max = 1 + (next() % 40) as usize;
            let carried = (next() % 45) as usize;
            let len = (next() % 200) as usize;
            // Line feeds dense in some rounds, sparse in others.
            let density = 1 + round % 50;
            let span: Vec<u8> = (0..len)
                .map(|_| {
                    if next() % density as u64 == 0 {
                        b'\n'
                    } else {
                        b'x'
                    }
                })
                .collect();
            assert_eq!(
                long_line(&span, carried, max),
                naive(&span, carried, max),
                "span {:?} carried {carried} max {max}",
                String::from_utf8_lossy(&span)
            );
        }
    }

    #[test]
    fn bare_lf_is_found_across_runs() {
        assert!(!has_bare_lf(b"a\r\nb\r\n", b'x'));
        assert!(has_bare_lf(b"a\r\nb\n", b'x'));
        assert!(!has_bare_lf(b"\nb", b'\r'));
        assert!(has_bare_lf(b"\nb", b'x'));
    }

    #[test]
    fn table_of_dialogues() {
        // (input, expected final reply codes)
        let cases: &[(&[u8], &[&str])] = &[
            (b"EHLO cam\r\n", &["250"]),
            (b"HELO\r\n", &["250"]),
            (b"HELO \r\n", &["250"]),
            (b"helo cam.local\r\n", &["250"]),
            (b"NOOP\r\nVRFY root\r\nHELP\r\n", &["250", "252", "214"]),
            (b"EXPN list\r\n", &["502"]),
            (b"LHLO x\r\n", &["500"]),
            (b"FOO bar\r\n", &["500"]),
            (b"RCPT TO:<a@b>\r\n", &["503"]),
            (b"DATA\r\n", &["503"]),
            (b"MAIL FROM:<a@b>\r\nDATA\r\n", &["250", "503"]),
            (b"MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n", &["250", "503"]),
            (
                b"MAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<a@b>\r\n",
                &["250", "250", "250"],
            ),
            // Cameras: no angle brackets, a space after the colon, the null sender.
            (b"MAIL FROM:cam@x\r\nRCPT TO:nvr@x\r\n", &["250", "250"]),
            (b"MAIL FROM: cam@x\r\nRCPT TO: nvr@x\r\n", &["250", "250"]),
            (b"MAIL FROM:<>\r\nRCPT TO:<nvr@x>\r\n", &["250", "250"]),
            (b"MAIL FROM:<a@b> SIZE=99999999999\r\n", &["552"]),
            (b"MAIL FROM:cam@x SIZE=99999999999\r\n", &["552"]),
            (b"RCPT TO:\r\n", &["501"]),
            (b"AUTH CRAM-MD5\r\n", &["504"]),
            (b"AUTH PLAIN !!!\r\n", &["501"]),
            (b"AUTH LOGIN\r\n*\r\n", &["334", "501"]),
            (b"STARTTLS\r\n", &["220"]),
            (b"QUIT\r\n", &["221"]),
            (b"BDAT 3\r\nabc", &["503"]),
        ];
        for (input, want) in cases {
            let mut s = session();
            let (out, _) = run(&mut s, input);
            assert_eq!(
                codes(&out),
                *want,
                "input {:?}\nout {out}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn ehlo_advertises_what_cameras_need() {
        let mut s = session();
        let (out, _) = run(&mut s, b"EHLO cam\r\n");
        for keyword in [
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            "CHUNKING",
            "SIZE 26214400",
            "AUTH PLAIN LOGIN",
            "STARTTLS",
        ] {
            assert!(out.contains(keyword), "{keyword} missing from {out}");
        }
        // After STARTTLS, no STARTTLS; after AUTH, no AUTH.
        s.tls_started();
        let (out, _) = run(&mut s, b"EHLO cam\r\nAUTH PLAIN AGEAYg==\r\nEHLO cam\r\n");
        let last_ehlo = out.rsplit("235").next().unwrap();
        assert!(
            !last_ehlo.contains("STARTTLS") && !last_ehlo.contains("AUTH"),
            "{out}"
        );
    }

    #[test]
    fn pipelined_mail_is_delivered_with_replies_in_order() {
        let mut s = session();
        let input = b"EHLO cam\r\nMAIL FROM:<cam@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
        let (out, events) = run(&mut s, input);
        assert_eq!(
            codes(&out),
            ["250", "250", "250", "250", "354", "250", "221"]
        );
        let m = messages(&events);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mail_from, "cam@x");
        assert_eq!(m[0].rcpt_to, ["a@x", "b@x"]);
        assert_eq!(&m[0].data[..], b"Subject: s\r\n\r\n.dot\r\n");
        assert!(matches!(events.last(), Some(SessionEvent::Close)));
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once() {
        let input: &[u8] = b"EHLO cam\r\nAUTH LOGIN\r\nYQ==\r\nYg==\r\nMAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\nline 1\r\n..\r\n.x\r\n\r\n.\r\nBDAT 4\r\nabcdBDAT 2 LAST\r\nef";
        let mut whole = session();
        let (out_whole, ev_whole) = run(&mut whole, input);
        let mut split = session();
        let mut out_split = String::new();
        let mut ev_split = Vec::new();
        for b in input.chunks(1) {
            let (o, e) = run(&mut split, b);
            out_split.push_str(&o);
            ev_split.extend(e);
        }
        assert_eq!(out_whole, out_split);
        assert_eq!(ev_whole, ev_split);
        let m = messages(&ev_whole);
        assert_eq!(m.len(), 1, "{out_whole}");
        assert_eq!(&m[0].data[..], b"line 1\r\n.\r\nx\r\n\r\n");
        assert_eq!(m[0].auth_user.as_deref(), Some("a"));
        // BDAT needs MAIL/RCPT again after the DATA message.
        assert!(
            out_whole.ends_with(
                "503 5.5.1 Need MAIL before BDAT\r\n503 5.5.1 Need MAIL before BDAT\r\n"
            ),
            "{out_whole}"
        );
    }

    #[test]
    fn bdat_chunks_make_one_message() {
        let mut s = session();
        let (out, events) = run(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\n",
        );
        assert_eq!(codes(&out), ["250", "250", "250", "250", "250"]);
        assert_eq!(&messages(&events)[0].data[..], b"hello");
        let (out, _) = run(
            &mut s,
            b"MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nBDAT 2\r\nabDATA\r\n",
        );
        assert_eq!(codes(&out), ["250", "250", "250", "503"]);
    }

    #[test]
    fn bare_lf_is_accepted_by_default_and_refused_when_strict() {
        let input = b"HELO cam\nMAIL FROM:<c@x>\nRCPT TO:<n@x>\nDATA\nSubject: lf\n\nbody\n.\n";
        let mut s = session();
        let (out, events) = run(&mut s, input);
        assert_eq!(codes(&out), ["250", "250", "250", "354", "250"]);
        assert_eq!(&messages(&events)[0].data[..], b"Subject: lf\n\nbody\n");

        let mut strict = session_with(SessionConfig {
            line_endings: LineEndings::Strict,
            ..SessionConfig::default()
        });
        let (out, _) = run(&mut strict, b"HELO cam\n");
        assert_eq!(codes(&out), ["500"]);
        let (out, events) = run(
            &mut strict,
            b"HELO cam\r\nMAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\nbare\nlf\r\n.\r\n",
        );
        assert_eq!(codes(&out), ["250", "250", "250", "354", "550"]);
        assert!(messages(&events).is_empty());
    }

    #[test]
    fn oversized_mail_gets_552_and_the_session_goes_on() {
        let mut s = session_with(SessionConfig {
            max_message_size: 100,
            ..SessionConfig::default()
        });
        let big = format!(
            "MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\n{}\r\n.\r\n",
            "x".repeat(500)
        );
        let (out, events) = run(&mut s, big.as_bytes());
        assert_eq!(codes(&out), ["250", "250", "354", "552"]);
        assert!(messages(&events).is_empty());
        let (out, events) = run(
            &mut s,
            b"MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\nsmall\r\n.\r\n",
        );
        assert_eq!(codes(&out), ["250", "250", "354", "250"]);
        assert_eq!(messages(&events).len(), 1);
        let (out, _) = run(
            &mut s,
            format!(
                "MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nBDAT 500 LAST\r\n{}",
                "y".repeat(500)
            )
            .as_bytes(),
        );
        assert_eq!(codes(&out), ["250", "250", "552"]);
    }

    #[test]
    fn the_budget_is_held_while_buffered_and_given_back_on_every_path() {
        let budget = ByteBudget::new(1000);
        let mut s = session();
        s.set_budget(Arc::clone(&budget));
        // Half a mail, then RSET: given back.
        let _ = run(&mut s, b"MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nBDAT 100\r\n");
        let _ = run(&mut s, &[b'x'; 100]);
        assert_eq!(budget.used(), 100);
        let _ = run(&mut s, b"RSET\r\n");
        assert_eq!(budget.used(), 0);
        // A delivered message holds its bytes until dropped.
        let (_, events) = run(
            &mut s,
            b"MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\n0123456789\r\n.\r\n",
        );
        assert_eq!(budget.used(), 12);
        drop(events);
        assert_eq!(budget.used(), 0);
        // Past the budget: read to the end, 452, nothing held; MAIL refused while spent.
        let big = format!(
            "MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\n{}\r\n.\r\n",
            "x".repeat(1500)
        );
        let (out, events) = run(&mut s, big.as_bytes());
        assert_eq!(codes(&out), ["250", "250", "354", "452"]);
        assert!(messages(&events).is_empty());
        assert_eq!(budget.used(), 0);
        assert!(budget.try_take(1000));
        let (out, _) = run(&mut s, b"MAIL FROM:<c@x>\r\n");
        assert_eq!(codes(&out), ["452"]);
        budget.give_back(1000);
        // A session dropped mid-DATA gives its bytes back.
        let _ = run(
            &mut s,
            b"MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\nabc\r\n",
        );
        assert_eq!(budget.used(), 5);
        drop(s);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn unwrapped_base64_line_up_to_the_data_line_limit() {
        let mut s = session();
        let line = "QUJD".repeat(20_000); // 80 KB on one line
        let input = format!("MAIL FROM:<c@x>\r\nRCPT TO:<n@x>\r\nDATA\r\n{line}\r\n.\r\n");
        let (out, events) = run(&mut s, input.as_bytes());
        assert_eq!(codes(&out), ["250", "250", "354", "250"]);
        assert_eq!(messages(&events)[0].data.len(), line.len() + 2);

        let mut tight = session_with(SessionConfig {
            max_data_line: 1000,
            ..SessionConfig::default()
        });
        let (out, _) = run(&mut tight, input.as_bytes());
        assert_eq!(codes(&out), ["250", "250", "354", "500"]);
    }

    #[test]
    fn long_command_line_gets_500_and_the_session_goes_on() {
        let mut s = session();
        let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(5000));
        let (out, _) = run(&mut s, long.as_bytes());
        assert_eq!(codes(&out), ["500", "250"]);
        // The same, split across reads.
        let (a, b) = long.split_at(3000);
        let (mut out, _) = run(&mut s, a.as_bytes());
        out.push_str(&run(&mut s, b.as_bytes()).0);
        assert_eq!(codes(&out), ["500", "250"]);
    }

    #[test]
    fn auth_plain_and_login_with_configured_users() {
        let cfg = SessionConfig {
            auth: AuthPolicy::Users(vec![("cam".into(), "secret".into())]),
            ..SessionConfig::default()
        };
        // PLAIN "\0cam\0secret" and "\0cam\0wrong"
        let mut s = session_with(cfg.clone());
        let (out, _) = run(&mut s, b"EHLO c\r\nMAIL FROM:<c@x>\r\nAUTH PLAIN AGNhbQB3cm9uZw==\r\nAUTH PLAIN AGNhbQBzZWNyZXQ=\r\nMAIL FROM:<c@x>\r\n");
        assert_eq!(codes(&out), ["250", "530", "535", "235", "250"]);
        // PLAIN with the response on its own line; LOGIN with an initial response.
        let mut s = session_with(cfg.clone());
        let (out, _) = run(&mut s, b"AUTH PLAIN\r\nAGNhbQBzZWNyZXQ=\r\n");
        assert_eq!(codes(&out), ["334", "235"]);
        let mut s = session_with(cfg);
        let (out, _) = run(&mut s, b"AUTH LOGIN Y2Ft\r\nc2VjcmV0\r\nAUTH LOGIN\r\n");
        assert_eq!(codes(&out), ["334", "235", "503"]);
    }

    #[test]
    fn starttls_stops_reading_at_the_command() {
        let mut s = session();
        let input = b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\n";
        let fed = s.feed(input);
        assert_eq!(fed.event, Some(SessionEvent::StartTls));
        assert_eq!(fed.consumed, b"EHLO c\r\nSTARTTLS\r\n".len());
        s.tls_started();
        s.clear_output();
        assert!(s.is_tls());
        let (out, _) = run(&mut s, b"STARTTLS\r\n");
        assert_eq!(codes(&out), ["503"]);
        let mut no_tls = session_with(SessionConfig::default());
        let (out, _) = run(&mut no_tls, b"STARTTLS\r\n");
        assert_eq!(codes(&out), ["502"]);
    }

    #[test]
    fn too_many_errors_end_the_session() {
        let mut s = session_with(SessionConfig {
            max_errors: 3,
            ..SessionConfig::default()
        });
        let (out, events) = run(&mut s, b"X\r\nX\r\nX\r\nX\r\nNOOP\r\n");
        assert_eq!(codes(&out), ["500", "500", "500", "500", "421"]);
        assert_eq!(events, [SessionEvent::Close]);
        assert_eq!(s.phase(), Phase::Closed);
    }

    #[test]
    fn timeout_and_shutdown_close_with_421() {
        let mut s = session();
        s.timed_out();
        assert!(s.output().starts_with(b"421 4.4.2"));
        assert_eq!(s.phase(), Phase::Closed);
        let fed = s.feed(b"NOOP\r\n");
        assert_eq!((fed.consumed, fed.event), (6, None));
    }

    #[test]
    fn smtputf8_addresses_and_8bit_content() {
        let mut s = session();
        let input = "EHLO cam\r\nMAIL FROM:<josé@exämple.com> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<后院@nvr>\r\nDATA\r\nSubject: 移动侦测\r\n\r\n\u{e9}t\u{e9}\r\n.\r\n";
        let (out, events) = run(&mut s, input.as_bytes());
        assert_eq!(codes(&out), ["250", "250", "250", "354", "250"], "{out}");
        let m = messages(&events);
        assert_eq!(m[0].mail_from, "josé@exämple.com");
        assert_eq!(m[0].rcpt_to, ["后院@nvr"]);
    }

    #[test]
    fn too_many_recipients_get_452() {
        let mut s = session_with(SessionConfig {
            max_recipients: 1,
            ..SessionConfig::default()
        });
        let (out, _) = run(
            &mut s,
            b"MAIL FROM:<c@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n",
        );
        assert_eq!(codes(&out), ["250", "250", "452"]);
    }
}

//! A small SMTP client: enough to send camera-like alarm mails to an event server (the NVR's demo
//! camera, tests, load generation). It speaks EHLO (falling back to HELO), STARTTLS or implicit
//! TLS (accepting any certificate: see [`ClientTls`]), AUTH PLAIN/LOGIN, and DATA with
//! dot-stuffing. It is not a mail relay: no MX lookup, no queue, no retries.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nvrkit_smtp::Error> {
//! use nvrkit_smtp::client::{AlarmMail, Client, ClientOptions};
//! let mail = AlarmMail::new("cam@x", "nvr@x", "Motion Detected", "EVENT TYPE: Motion Detected\n")
//!     .attach("snapshot.jpg", "image/jpeg", vec![0xff, 0xd8, 0xff, 0xd9]);
//! let mut client = Client::connect("127.0.0.1:2525".parse().unwrap(), &ClientOptions::default()).await?;
//! client.send("cam@x", &["nvr@x"], &mail.to_bytes()).await?;
//! client.quit().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::error::{Error, Result};

/// Transport security for the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientTls {
    /// Plain TCP.
    #[default]
    None,
    /// Plain TCP, then `STARTTLS` (fails if the server does not offer it).
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// AUTH mechanism for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// RFC 4616 PLAIN, with an initial response.
    Plain,
    /// The LOGIN mechanism (user name and password in two base64 steps), as cameras use.
    Login,
}

/// How the client connects. TLS never verifies the server certificate: this client talks to
/// camera event servers with self-signed certificates, never to real mail servers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The EHLO name.
    pub helo: String,
    /// Transport security.
    pub tls: ClientTls,
    /// Credentials, if any.
    pub auth: Option<(ClientAuth, String, String)>,
    /// Deadline for each reply, counted from when it is awaited (not reset by each byte).
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            helo: "nvrkit-client".to_owned(),
            tls: ClientTls::None,
            auth: None,
            timeout: Duration::from_secs(30),
        }
    }
}

impl ClientOptions {
    /// Sets the transport security.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }
    /// Sets credentials.
    pub fn auth(mut self, mechanism: ClientAuth, user: &str, password: &str) -> Self {
        self.auth = Some((mechanism, user.to_owned(), password.to_owned()));
        self
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A reply: code and text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Text of each line, after the code and separator.
    pub lines: Vec<String>,
}

/// An open SMTP client session.
pub struct Client {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    timeout: Duration,
    /// The EHLO keywords of the server (upper case), empty after a HELO fallback.
    extensions: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects, reads the greeting, says EHLO (HELO if EHLO is refused), and does STARTTLS and
    /// AUTH as the options say.
    pub async fn connect(addr: SocketAddr, options: &ClientOptions) -> Result<Client> {
        let tcp = timeout(options.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Connection(format!("connecting to {addr} timed out")))?
            .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = if options.tls == ClientTls::Implicit {
            Box::new(tls_connect(tcp, options.timeout).await?)
        } else {
            Box::new(tcp)
        };
        let mut client = Client {
            stream,
            buf: Vec::new(),
            timeout: options.timeout,
            extensions: Vec::new(),
        };
        client.expect("greeting", 220).await?;
        client.hello(&options.helo).await?;
        if options.tls == ClientTls::StartTls {
            if !client.has_extension("STARTTLS") {
                return Err(Error::Connection(
                    "server does not offer STARTTLS".to_owned(),
                ));
            }
            client.command("STARTTLS", 220).await?;
            // The TCP stream is the only thing inside the box here: rebuild it under TLS.
            let plain = std::mem::replace(&mut client.stream, Box::new(tokio::io::empty()));
            client.stream = Box::new(tls_connect(plain, options.timeout).await?);
            client.buf.clear();
            client.hello(&options.helo).await?;
        }
        if let Some((mechanism, user, password)) = &options.auth {
            client.authenticate(*mechanism, user, password).await?;
        }
        Ok(client)
    }

    /// Whether the server's EHLO reply has this keyword.
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.split_whitespace().next() == Some(keyword))
    }

    async fn hello(&mut self, name: &str) -> Result<()> {
        let reply = self.request(&format!("EHLO {name}")).await?;
        if reply.code == 250 {
            self.extensions = reply
                .lines
                .iter()
                .skip(1)
                .map(|l| l.to_ascii_uppercase())
                .collect();
            return Ok(());
        }
        self.extensions.clear();
        self.command(&format!("HELO {name}"), 250).await.map(drop)
    }

    async fn authenticate(
        &mut self,
        mechanism: ClientAuth,
        user: &str,
        password: &str,
    ) -> Result<()> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        match mechanism {
            ClientAuth::Plain => {
                let token = b64(format!("\0{user}\0{password}").as_bytes());
                self.command(&format!("AUTH PLAIN {token}"), 235).await?;
            }
            ClientAuth::Login => {
                self.command("AUTH LOGIN", 334).await?;
                self.auth_line(&b64(user.as_bytes()), 334).await?;
                self.auth_line(&b64(password.as_bytes()), 235).await?;
            }
        }
        Ok(())
    }

    /// Sends one message. `message` is the RFC 5322 text; line endings are normalized to CRLF
    /// and dot-stuffing is added.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> Result<()> {
        self.command(&format!("MAIL FROM:<{from}>"), 250).await?;
        for rcpt in to {
            self.command(&format!("RCPT TO:<{rcpt}>"), 250).await?;
        }
        self.command("DATA", 354).await?;
        let wire = dot_stuff(message);
        self.write(&wire).await?;
        self.expect("end of DATA", 250).await.map(drop)
    }

    /// `RSET`.
    pub async fn reset(&mut self) -> Result<()> {
        self.command("RSET", 250).await.map(drop)
    }

    /// `QUIT`, then close.
    pub async fn quit(mut self) -> Result<()> {
        self.command("QUIT", 221).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Sends a raw command line (CRLF added) and returns the reply, whatever its code.
    pub async fn request(&mut self, line: &str) -> Result<Reply> {
        let mut wire = Vec::with_capacity(line.len() + 2);
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
        self.write(&wire).await?;
        self.read_reply(verb(line)).await
    }

    /// Sends a command and requires the reply code `want`.
    pub async fn command(&mut self, line: &str, want: u16) -> Result<Reply> {
        let reply = self.request(line).await?;
        check(verb(line), reply, want)
    }

    /// An AUTH continuation line: errors name "AUTH", never the line.
    async fn auth_line(&mut self, line: &str, want: u16) -> Result<Reply> {
        let mut wire = line.as_bytes().to_vec();
        wire.extend_from_slice(b"\r\n");
        self.write(&wire).await?;
        self.expect("AUTH", want).await
    }

    async fn expect(&mut self, what: &str, want: u16) -> Result<Reply> {
        let reply = self.read_reply(what).await?;
        check(what, reply, want)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        timeout(self.timeout, io)
            .await
            .map_err(|_| Error::Connection("write timed out".to_owned()))?
            .map_err(|e| Error::io("writing to the SMTP server", e))
    }

    /// One reply, multi-line or not: at most [`MAX_REPLY_LINES`] lines and [`MAX_REPLY_BYTES`]
    /// bytes, complete within the timeout counted from when it was awaited (a server that
    /// trickles a byte at a time, or sends `250-` lines forever, is cut off).
    async fn read_reply(&mut self, command: &str) -> Result<Reply> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut lines = Vec::new();
        let mut bytes = 0usize;
        loop {
            let line = self.read_line(command, deadline).await?;
            bytes += line.len();
            if lines.len() >= MAX_REPLY_LINES || bytes > MAX_REPLY_BYTES {
                return Err(Error::MalformedReply {
                    command: command.to_owned(),
                    line: format!(
                        "reply longer than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes"
                    ),
                });
            }
            let malformed = || Error::MalformedReply {
                command: command.to_owned(),
                line: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
            };
            if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
                return Err(malformed());
            }
            let code: u16 = std::str::from_utf8(&line[..3])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(malformed)?;
            let more = line.get(3) == Some(&b'-');
            lines.push(String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
    }

    async fn read_line(
        &mut self,
        command: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>> {
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.buf) {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(Error::MalformedReply {
                    command: command.to_owned(),
                    line: "reply line longer than 64 KiB".to_owned(),
                });
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| Error::Connection(format!("no reply to {command}")))?
                .map_err(|e| Error::io("reading from the SMTP server", e))?;
            if n == 0 {
                return Err(Error::Connection(format!(
                    "server closed the connection before replying to {command}"
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The most lines of one reply (EHLO answers have about 10).
const MAX_REPLY_LINES: usize = 100;
/// The most bytes of one reply, line ends left out.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The command name for error messages: the first word, never the arguments (which may hold
/// credentials).
fn verb(line: &str) -> &str {
    line.split([' ', ':']).next().unwrap_or(line)
}

fn check(command: &str, reply: Reply, want: u16) -> Result<Reply> {
    if reply.code == want {
        Ok(reply)
    } else {
        Err(Error::Rejected {
            command: command.to_owned(),
            code: reply.code,
            text: reply.lines.join(" "),
        })
    }
}

async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    limit: Duration,
) -> Result<tokio_rustls::client::TlsStream<S>> {
    let connector = crate::tls::insecure_client()?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")
        .map_err(|e| Error::Connection(e.to_string()))?;
    timeout(limit, connector.connect(name, stream))
        .await
        .map_err(|_| Error::Connection("TLS handshake timed out".to_owned()))?
        .map_err(|e| Error::io("TLS handshake", e))
}

/// Message text to DATA wire form: CRLF line endings, leading dots doubled, `.` line appended.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    for line in message.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A camera-like alarm mail: text body and image attachments, base64 wrapped at 76 columns.
#[derive(Clone, Debug)]
pub struct AlarmMail {
    from: String,
    to: String,
    subject: String,
    body: String,
    headers: Vec<(String, String)>,
    attachments: Vec<(String, String, Vec<u8>)>,
}

impl AlarmMail {
    /// A mail with a text body.
    pub fn new(from: &str, to: &str, subject: &str, body: &str) -> AlarmMail {
        AlarmMail {
            from: from.to_owned(),
            to: to.to_owned(),
            subject: subject.to_owned(),
            body: body.to_owned(),
            headers: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// Adds a header (`X-Mailer`, …).
    pub fn header(mut self, name: &str, value: &str) -> AlarmMail {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds an attachment.
    pub fn attach(mut self, name: &str, content_type: &str, data: Vec<u8>) -> AlarmMail {
        self.attachments
            .push((name.to_owned(), content_type.to_owned(), data));
        self
    }

    /// The RFC 5322 text, CRLF line endings.
    pub fn to_bytes(&self) -> Vec<u8> {
        let boundary = "nvrkit-boundary-7d1c";
        let mut out = String::new();
        out.push_str(&format!(
            "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMIME-Version: 1.0\r\n",
            self.from, self.to, self.subject
        ));
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.body.replace("\r\n", "\n").replace('\n', "\r\n");
        if self.attachments.is_empty() {
            out.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            out.push_str(&body);
            return out.into_bytes();
        }
        out.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        ));
        for (name, ctype, data) in &self.attachments {
            out.push_str(&format!(
                "--{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
            ));
            let encoded = base64::engine::general_purpose::STANDARD.encode(data);
            for chunk in encoded.as_bytes().chunks(76) {
                out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                out.push_str("\r\n");
            }
        }
        out.push_str(&format!("--{boundary}--\r\n"));
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\n.b\r\n..\n"), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    /// A server that greets with `greeting`, then sends `then` forever (in pieces, `gap` apart).
    async fn hostile_server(
        greeting: &'static [u8],
        then: &'static [u8],
        gap: Duration,
    ) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            if tcp.write_all(greeting).await.is_err() {
                return;
            }
            loop {
                if tcp.write_all(then).await.is_err() {
                    return;
                }
                tokio::time::sleep(gap).await;
            }
        });
        addr
    }

    /// `250-` lines forever: refused once the reply passes its line cap (it grew without
    /// bound before).
    #[tokio::test]
    async fn an_endless_multiline_reply_is_refused() {
        let addr = hostile_server(b"220 hi\r\n", b"250-x\r\n", Duration::ZERO).await;
        let options = ClientOptions::default();
        let err = Client::connect(addr, &options).await.unwrap_err();
        assert!(
            matches!(err, Error::MalformedReply { ref line, .. } if line.contains("lines")),
            "{err}"
        );
    }

    /// A reply trickled a byte at a time, each byte well inside the timeout: cut at the
    /// reply's deadline (each read restarted the timer before, so it never ended).
    #[tokio::test]
    async fn a_trickled_reply_is_cut_at_its_deadline() {
        let addr = hostile_server(b"2", b"5", Duration::from_millis(100)).await;
        let options = ClientOptions {
            timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        };
        // Hang guard only (no timing assertion): without the reply deadline this never ends.
        let err = tokio::time::timeout(Duration::from_secs(30), Client::connect(addr, &options))
            .await
            .expect("the trickled reply was never cut off")
            .unwrap_err();
        assert!(
            matches!(err, Error::Connection(ref m) if m.contains("no reply")),
            "{err}"
        );
    }

    #[test]
    fn verbs_hide_credentials() {
        assert_eq!(verb("MAIL FROM:<a@b>"), "MAIL");
        assert_eq!(verb("AUTH PLAIN AGEAYg=="), "AUTH");
        assert_eq!(verb("DATA"), "DATA");
    }
}

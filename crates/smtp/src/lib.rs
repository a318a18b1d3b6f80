//! `nvrkit-smtp`: an SMTP server that turns IP cameras' alarm mails into typed [`CameraEvent`]s.
//!
//! Nearly every IP camera and NVR can send an e-mail on motion, line crossing, intrusion, video
//! loss or a bad login. This crate is the "mail server" such a camera is pointed at: it accepts
//! every mail (a refused mail makes a camera retry forever), reads it with the vendor's profile
//! (Hikvision, Dahua/Amcrest, Reolink, else generic), and hands a [`CameraEvent`] to the caller on
//! a channel, before the camera reads its `250`.
//!
//! Layers:
//! - [`Session`]: the sans-I/O SMTP dialogue on [`smtp_proto`] (EHLO/HELO, AUTH PLAIN and LOGIN,
//!   STARTTLS, SIZE, PIPELINING, 8BITMIME, SMTPUTF8, CHUNKING/BDAT, limits, camera leniency);
//! - [`Server`]: tokio listeners (plain with STARTTLS, and implicit TLS), session limits,
//!   timeouts, rustls with a self-signed certificate when none is given;
//! - [`extract()`]: MIME with `mail-parser` (all legacy charsets) into a [`CameraEvent`], whose
//!   JSON form ([`CameraEvent::to_json`], `"v": 1`) is documented in `docs/event-schema.json`;
//! - [`client`]: a small SMTP client for demo cameras and tests.
//!
//! Feature `server` (default) brings [`Server`] and [`client`] (tokio, rustls). Without it the
//! crate is the session, the extractor and the event schema alone: no tokio, no TLS.
//!
//! Non-goals: relaying or storing mail, DKIM/SPF, being a general mail server.
//!
//! # An event from mail bytes (no server)
//! ```
//! use nvrkit_smtp::{EventKind, Message, Vendor, extract};
//! let mail = &b"X-Mailer: HIKMailer\r\nSubject: IPC: Motion Detected\r\n\r\nEVENT TYPE: Motion Detected\r\nIPC NAME: Garage\r\n"[..];
//! let event = extract(&Message::new("cam@x", vec!["nvr@x".into()], mail), None, nvrkit_media::WallTime::now());
//! assert_eq!((event.vendor, event.kind), (Vendor::Hikvision, EventKind::Motion));
//! assert_eq!(event.camera.as_deref(), Some("Garage"));
//! ```
//!
//! # Receiving events
//! ```
//! # #[cfg(feature = "server")] {
//! use nvrkit_smtp::client::{AlarmMail, Client, ClientAuth, ClientOptions};
//! use nvrkit_smtp::{EventKind, Server, ServerConfig, Vendor};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = ServerConfig {
//!     listen: Some("127.0.0.1:0".parse().unwrap()),
//!     ..ServerConfig::default()
//! };
//! let (server, mut events) = Server::start(config).await?;
//! let addr = server.info().listen.unwrap();
//!
//! // A Hikvision-style alarm mail, sent with AUTH LOGIN as cameras do.
//! let mail = AlarmMail::new("cam@x", "garage@nvr", "IPC: Motion Detected",
//!     "EVENT TYPE: Motion Detected\nEVENT TIME: 2015-05-22,14:52:18\nIPC NAME: Garage\n")
//!     .header("X-Mailer", "HIKMailer");
//! let options = ClientOptions::default().auth(ClientAuth::Login, "admin", "12345");
//! let mut client = Client::connect(addr, &options).await?;
//! client.send("cam@x", &["garage@nvr"], &mail.to_bytes()).await?;
//! client.quit().await?;
//!
//! let event = events.recv().await.unwrap();
//! assert_eq!(event.vendor, Vendor::Hikvision);
//! assert_eq!(event.kind, EventKind::Motion);
//! assert_eq!(event.camera.as_deref(), Some("Garage"));
//! assert_eq!(event.event_time.unwrap().local.as_deref(), Some("2015-05-22T14:52:18"));
//! server.shutdown().await;
//! # Ok::<(), nvrkit_smtp::Error>(())
//! # }).unwrap();
//! # }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

#[cfg(feature = "server")]
pub mod client;
mod config;
mod error;
mod event;
mod extract;
#[cfg(feature = "server")]
mod server;
mod session;
#[cfg(feature = "server")]
mod tls;

pub use config::{
    AuthPolicy, DEFAULT_MAIL_BUDGET, DEFAULT_MAX_DATA_LINE, DEFAULT_MAX_LINE,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MIN_DATA_RATE, LineEndings, SessionConfig,
};
#[cfg(feature = "server")]
pub use config::{ServerConfig, SnapshotStore};
pub use error::{Error, Result};
pub use event::{
    CameraEvent, EventKind, EventPhase, EventTime, MAX_UNTRUSTED_EVENT_DEPTH,
    MAX_UNTRUSTED_EVENT_JSON, SCHEMA_VERSION, Snapshot, Source, Vendor,
};
pub use extract::extract;
#[cfg(feature = "server")]
pub use server::{Server, ServerInfo, Stats};
pub use session::{BUSY_REPLY, CloseReason, Feed, Message, Phase, Session, SessionEvent};
#[cfg(feature = "server")]
pub use tls::{ServerTls, TlsSource, fingerprint, server_tls};

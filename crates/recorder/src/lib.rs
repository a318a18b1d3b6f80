//! nvrkit's recorder as a library: RTSP cameras into RAM frame rings, camera events mapped to
//! cameras, and the footage from `pre` before an event to `post` after it written into a
//! segment store ([`nvrkit_store`]). `nvr` is this crate plus argument and config parsing, an SMTP
//! listener, an HTTP API and page, and MQTT.
//!
//! - [`ingest`]: a retina RTSP session per camera → [`nvrkit_media::Frame`]s on the NVR's clock,
//!   decode times rebuilt per GOP, pushed into the camera's [`nvrkit_ring`]; reconnects with
//!   backoff.
//! - [`recorder`]: per camera, a thread that turns events into store writes (pre/post ranges from
//!   the ring, or everything with [`Mode::All`]) and tags.
//! - [`events`]: which camera an event is for ([`events::map`]: `--map` rules, then recipient,
//!   camera name, channel, sender) and the bounded list of recent events.
//! - [`Recorder`]: all of it started from a validated [`Config`]; events go in through
//!   [`Recorder::dispatcher`], from any source (an SMTP server, an HTTP API, a test).
//!
//! Not here: where events come from (nvrkit-smtp's server, nvr's HTTP API), serving the footage
//! (nvrkit-store's export), replication (nvrkit-replicate).
//!
//! # Example
//! A camera (the loop feeder serving the embedded sample clip over loopback RTSP), a store in a
//! temporary directory, one event, and its clip read back from the store:
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use nvrkit_recorder::{CameraSource, Config, Recorder};
//!
//! let demux = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
//! let clip = nvrkit_feed::Clip::load("sample", &demux)?;
//! let feed_config = nvrkit_feed::server::Config {
//!     listen: "127.0.0.1:0".parse()?,
//!     ..Default::default()
//! };
//! let camera = nvrkit_feed::server::Server::start(feed_config, vec![clip]).await?;
//! let url = camera.urls("127.0.0.1")[0].parse()?;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(nvrkit_store::Store::open(dir.path(), Default::default())?);
//! let mut config = Config::new(vec![CameraSource { name: "demo".into(), url, udp: false }]);
//! config.pre = Duration::from_secs(1);
//! config.post = Duration::from_secs(1);
//! let recorder = Recorder::start(config, store.clone())?;
//!
//! // Wait for the first frames, then raise an event for camera "demo".
//! while recorder.cameras()[0].state.frames.load(std::sync::atomic::Ordering::Relaxed) < 30 {
//!     tokio::time::sleep(Duration::from_millis(50)).await;
//! }
//! let event = nvrkit_smtp::CameraEvent::from_short_json(r#"{"camera":"demo"}"#)?;
//! let at = event.received_at;
//! recorder.dispatcher().send(event).await?;
//! // The clip is tagged once `post` has passed and the range is written.
//! while recorder.cameras()[0].recorder.clips.load(std::sync::atomic::Ordering::Relaxed) == 0 {
//!     tokio::time::sleep(Duration::from_millis(50)).await;
//! }
//! recorder.shutdown().await;
//! let frames = store.frames("demo", at.add_micros(-5_000_000), at.add_micros(5_000_000))?.count();
//! assert!(frames > 0);
//! camera.shutdown().await;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
pub mod event_disk;
pub mod events;
pub mod ingest;
pub mod recorder;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvrkit_ring::Ring;
use nvrkit_smtp::CameraEvent;
use nvrkit_store::Store;
use tokio::sync::watch;

pub use error::{ConfigError, IngestError, MapRuleError, ModeError, StartError};
pub use events::{EventLog, MapRule};
pub use ingest::{CameraSource, CameraState};
pub use recorder::{Mode, RecorderStats};

/// What an event no camera matches does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmapped {
    /// It is listed in the [`EventLog`] and records nothing.
    #[default]
    Log,
    /// It triggers every camera.
    All,
}

/// What a [`Recorder`] records: its cameras and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cameras (names unique, valid store directory names; `rtsp://` URLs).
    pub cameras: Vec<CameraSource>,
    /// Footage kept before an event.
    pub pre: Duration,
    /// Footage kept after an event (extended by later events).
    pub post: Duration,
    /// Around events only, or everything.
    pub mode: Mode,
    /// Mapping rules, tried before the recipient, camera name, channel and sender.
    pub maps: Vec<MapRule>,
    /// What an event that maps to no camera does.
    pub unmapped: Unmapped,
    /// A ring holds `pre` plus this (a GOP of a camera with long GOPs, and the delay of ingest's
    /// GOP buffer).
    pub ring_margin: Duration,
    /// A ring's byte bound.
    pub ring_max_bytes: u64,
    /// Where the events and their snapshots are kept ([`event_disk`]): read back at start (ids
    /// continue), each new one durable there before it is listed. `None`: in memory only, without
    /// snapshots. nvr uses `STORE/.events` (a name no camera can have).
    pub events_dir: Option<std::path::PathBuf>,
}

impl Config {
    /// Cameras with nvr's defaults: 10 s before an event, 20 s after, events only, unmapped
    /// events logged, rings of `pre` + 10 s and at most 512 MiB.
    pub fn new(cameras: Vec<CameraSource>) -> Self {
        Config {
            cameras,
            pre: Duration::from_secs(10),
            post: Duration::from_secs(20),
            mode: Mode::Events,
            maps: Vec::new(),
            unmapped: Unmapped::Log,
            ring_margin: Duration::from_secs(10),
            ring_max_bytes: 512 << 20,
            events_dir: None,
        }
    }

    /// Checks the cameras: at least one, `rtsp://` URLs, names the store accepts, no two alike.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cameras.is_empty() {
            return Err(ConfigError::NoCamera);
        }
        for (i, c) in self.cameras.iter().enumerate() {
            if c.url.scheme() != "rtsp" {
                return Err(ConfigError::Scheme {
                    camera: c.name.clone(),
                    scheme: c.url.scheme().to_owned(),
                });
            }
            nvrkit_store::layout::check_camera(&c.name).map_err(|source| ConfigError::Name {
                camera: c.name.clone(),
                source: Box::new(source),
            })?;
            if self.cameras[..i].iter().any(|o| o.name == c.name) {
                return Err(ConfigError::Duplicate(c.name.clone()));
            }
        }
        Ok(())
    }
}

/// A running camera, as an API or page shows it.
#[derive(Debug, Clone)]
pub struct Camera {
    /// Its name.
    pub name: String,
    /// Its URL without credentials.
    pub url: String,
    /// Ingest state (connected, tracks, frames, last error).
    pub state: Arc<CameraState>,
    /// Its RAM ring (a [`Ring::reader`] follows the camera live).
    pub ring: Ring,
    /// Its recorder's figures.
    pub recorder: Arc<RecorderStats>,
}

/// Called for each camera an event maps to, with the event's bounded JSON note
/// ([`events::note`]), before the recorder gets it (nvr publishes it to MQTT).
pub type EventHook = Arc<dyn Fn(&str, &serde_json::Value) + Send + Sync>;

/// Events queued for the dispatcher at most; past it [`Recorder::dispatcher`]'s `send` waits.
pub const DISPATCH_QUEUE: usize = 256;

/// The recorder: per camera an ingest task, a ring and a recorder thread, and one dispatcher
/// that maps events to cameras. Dropping it without [`Recorder::shutdown`] stops ingest and the
/// recorders without flushing held frames.
pub struct Recorder {
    cameras: Vec<Camera>,
    commands: Vec<std::sync::mpsc::Sender<recorder::Command>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    events: Arc<EventLog>,
    dispatch: tokio::sync::mpsc::Sender<CameraEvent>,
    hooks: Arc<Mutex<Vec<EventHook>>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("cameras", &self.cameras)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Validates `config` and starts recording into `store`. Call inside a tokio runtime
    /// (ingest and the dispatcher are tasks on it; the recorders are threads, as store writes
    /// block).
    pub fn start(config: Config, store: Arc<Store>) -> Result<Recorder, StartError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let (stop_tx, stop) = watch::channel(false);
        let settings = recorder::Settings {
            pre: config.pre,
            post: config.post,
            mode: config.mode,
        };
        let mut cameras = Vec::new();
        let mut commands = Vec::new();
        let mut threads = Vec::new();
        for source in &config.cameras {
            let ring_config = nvrkit_ring::Config::new()
                .max_duration(config.pre + config.ring_margin)
                .max_bytes(config.ring_max_bytes)
                .video_stream(0);
            let (writer, ring) =
                nvrkit_ring::ring(ring_config).map_err(|source_err| StartError::Ring {
                    camera: source.name.clone(),
                    source: source_err,
                })?;
            let state = Arc::new(CameraState::default());
            runtime.spawn(ingest::run(
                source.clone(),
                writer,
                state.clone(),
                stop.clone(),
            ));
            let (tx, rx) = std::sync::mpsc::channel();
            let stats = Arc::new(RecorderStats::default());
            let thread = {
                let (name, ring, state, store, stats) = (
                    source.name.clone(),
                    ring.clone(),
                    state.clone(),
                    store.clone(),
                    stats.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("rec-{}", source.name))
                    .spawn(move || recorder::run(name, ring, state, store, settings, rx, stats))
                    .map_err(|e| StartError::Thread {
                        camera: source.name.clone(),
                        source: e,
                    })?
            };
            cameras.push(Camera {
                name: source.name.clone(),
                url: source.display_url(),
                state,
                ring,
                recorder: stats,
            });
            commands.push(tx);
            threads.push(thread);
        }
        let events = Arc::new(match &config.events_dir {
            Some(dir) => EventLog::open(dir).map_err(|source| StartError::Events {
                dir: dir.clone(),
                source,
            })?,
            None => EventLog::default(),
        });
        let hooks: Arc<Mutex<Vec<EventHook>>> = Arc::default();
        let (dispatch, dispatch_rx) = tokio::sync::mpsc::channel(DISPATCH_QUEUE);
        let names: Vec<String> = cameras.iter().map(|c| c.name.clone()).collect();
        let targets: Vec<(String, std::sync::mpsc::Sender<recorder::Command>)> = names
            .iter()
            .cloned()
            .zip(commands.iter().cloned())
            .collect();
        runtime.spawn(dispatch_events(
            dispatch_rx,
            config.maps.clone(),
            config.unmapped,
            names,
            targets,
            events.clone(),
            hooks.clone(),
        ));
        Ok(Recorder {
            cameras,
            commands,
            threads,
            events,
            dispatch,
            hooks,
            stop: stop_tx,
        })
    }

    /// The cameras, in config order.
    pub fn cameras(&self) -> &[Camera] {
        &self.cameras
    }

    /// The events seen (mapped or not), newest first in [`EventLog::list`].
    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    /// Where events go in: each `Start` event is mapped to cameras ([`events::map`]), logged,
    /// handed to the [`EventHook`]s and to the cameras' recorders. Other phases are ignored.
    pub fn dispatcher(&self) -> tokio::sync::mpsc::Sender<CameraEvent> {
        self.dispatch.clone()
    }

    /// Adds a hook called for each (camera, event) the dispatcher maps from now on.
    pub fn on_event(&self, hook: EventHook) {
        if let Ok(mut h) = self.hooks.lock() {
            h.push(hook);
        }
    }

    /// Stops ingest (each camera's held GOP goes into its ring first), lets the recorders write
    /// what is in their rings up to the end of their open ranges, tags them and waits for the
    /// recorder threads.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Let ingest hand its held GOPs to the rings before the recorders drain and close.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for c in &self.commands {
            let _ = c.send(recorder::Command::Shutdown);
        }
        for t in self.threads {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

async fn dispatch_events(
    mut rx: tokio::sync::mpsc::Receiver<CameraEvent>,
    maps: Vec<MapRule>,
    unmapped: Unmapped,
    names: Vec<String>,
    commands: Vec<(String, std::sync::mpsc::Sender<recorder::Command>)>,
    log: Arc<EventLog>,
    hooks: Arc<Mutex<Vec<EventHook>>>,
) {
    while let Some(event) = rx.recv().await {
        if event.phase != nvrkit_smtp::EventPhase::Start {
            continue;
        }
        let arrived = Instant::now();
        let (targets, reason) = match events::map(&event, &maps, &names) {
            Some((cam, why)) => (vec![cam], why),
            None if unmapped == Unmapped::All => (
                names.clone(),
                "unmapped: triggers every camera (--unmapped all)".into(),
            ),
            None => (
                Vec::new(),
                format!(
                    "unmapped: no --map rule, recipient, camera name ({:?}), channel ({:?}) or sender ({}) names a camera",
                    event.camera, event.channel, event.from
                ),
            ),
        };
        let reason = nvrkit_store::note::truncate(&reason, events::MAX_REASON);
        if targets.is_empty() {
            tracing::warn!(
                from = nvrkit_store::note::truncate(&event.from, 256),
                "{reason}"
            );
        } else {
            tracing::info!(cameras = ?targets, kind = event.kind.as_str(), "event: {reason}");
        }
        // Bounded: a subject of a megabyte is not kept (or tagged) whole.
        let json = events::note(&event);
        let hooks: Vec<EventHook> = hooks.lock().map(|h| h.clone()).unwrap_or_default();
        for t in &targets {
            for h in &hooks {
                h(t, &json);
            }
            if let Some((_, tx)) = commands.iter().find(|(n, _)| n == t) {
                let _ = tx.send(recorder::Command::Event {
                    at: event.received_at,
                    arrived,
                    json: json.clone(),
                });
            }
        }
        // Durable on disk (snapshots and all) before it is listed: on the blocking pool, one
        // event at a time so ids reach the disk in order.
        let l = log.clone();
        let _ = tokio::task::spawn_blocking(move || l.push(&event, targets, reason)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, url: &str) -> CameraSource {
        CameraSource {
            name: name.into(),
            url: url.parse().unwrap(),
            udp: false,
        }
    }

    #[test]
    fn a_config_is_validated() {
        assert!(matches!(
            Config::new(vec![]).validate(),
            Err(ConfigError::NoCamera)
        ));
        let ok = Config::new(vec![source("a", "rtsp://h/1"), source("b", "rtsp://h/2")]);
        ok.validate().unwrap();
        let e = Config::new(vec![source("a", "http://h/1")]).validate();
        assert!(matches!(e, Err(ConfigError::Scheme { .. })), "{e:?}");
        let e = Config::new(vec![source("../x", "rtsp://h/1")]).validate();
        assert!(matches!(e, Err(ConfigError::Name { .. })), "{e:?}");
        let e = Config::new(vec![source("a", "rtsp://h/1"), source("a", "rtsp://h/2")]).validate();
        assert!(matches!(e, Err(ConfigError::Duplicate(n)) if n == "a"));
    }

    #[test]
    fn a_recorder_needs_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
        let e = Recorder::start(Config::new(vec![source("a", "rtsp://h/1")]), store);
        assert!(matches!(e, Err(StartError::NoRuntime)), "{e:?}");
    }

    #[test]
    fn modes_parse() {
        assert_eq!("events".parse::<Mode>().unwrap(), Mode::Events);
        assert_eq!("ALL".parse::<Mode>().unwrap(), Mode::All);
        assert!("some".parse::<Mode>().is_err());
    }
}

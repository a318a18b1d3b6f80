//! The publisher: a connection to the broker that reconnects on its own, fed through a bounded
//! queue that never blocks the caller.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvrkit_tls::tokio_rustls::rustls::pki_types::CertificateDer;
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::Error;
use crate::topic::{self, CameraTopics, MOTION_OFF, MOTION_ON, OFFLINE, ONLINE};
use crate::url::BrokerUrl;

/// Messages waiting to be sent, by default; past it a message is dropped and counted.
pub const DEFAULT_QUEUE: usize = 1024;

/// Cameras a publisher keeps state for (motion, availability, discovery), by default. Camera
/// names can come from mail: past this, a new camera's events are still published on its event
/// topic, but it gets no retained topics (a sender inventing names cannot fill the broker).
pub const DEFAULT_MAX_CAMERAS: usize = 256;

/// The largest event JSON published; a larger one is dropped and counted (the broker's and
/// the client's packet limits would otherwise end the connection).
pub const MAX_EVENT_JSON: usize = 64 * 1024;

/// A drop warning is logged for the first dropped message, then for every this many.
const WARN_EVERY: u64 = 1000;

/// The longest wait between reconnection attempts (the first waits 1 s, then doubling).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a [`Publisher`] connects and what it announces.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The broker.
    pub broker: BrokerUrl,
    /// The MQTT client id (default `nvrkit-<program>`); it also names the bridge availability
    /// topic ([`topic::bridge_availability`]). Two publishers on one broker need two ids.
    pub client_id: String,
    /// What runs the publisher (`nvr`, `camevents`): the Home Assistant device model.
    pub program: String,
    /// Messages queued at most ([`DEFAULT_QUEUE`]).
    pub queue: usize,
    /// Cameras with retained state at most ([`DEFAULT_MAX_CAMERAS`]).
    pub max_cameras: usize,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// `mqtts://`: certificates trusted besides Mozilla's roots (a private CA, a self-signed
    /// broker), e.g. from [`nvrkit_tls::load_certificates`].
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Options {
    /// The defaults for `program` on `broker`.
    pub fn new(broker: BrokerUrl, program: &str) -> Options {
        Options {
            broker,
            client_id: format!("nvrkit-{program}"),
            program: program.to_owned(),
            queue: DEFAULT_QUEUE,
            max_cameras: DEFAULT_MAX_CAMERAS,
            keep_alive: Duration::from_secs(30),
            extra_roots: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Camera {
    topics: CameraTopics,
    motion: bool,
    /// `--motion-hold`: when the motion goes `OFF` by itself.
    off_at: Option<Instant>,
}

#[derive(Debug)]
struct Shared {
    client: AsyncClient,
    bridge: String,
    program: String,
    max_cameras: usize,
    cameras: Mutex<BTreeMap<String, Camera>>,
    dropped: AtomicU64,
    connected: AtomicBool,
    stopping: AtomicBool,
    told_full: AtomicBool,
}

impl Shared {
    fn send(&self, topic: &str, retain: bool, payload: impl Into<Vec<u8>>) {
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_err()
        {
            self.drop_one("queue full");
        }
    }

    fn drop_one(&self, why: &str) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_multiple_of(WARN_EVERY) {
            tracing::warn!("mqtt: {why}, message dropped ({n} dropped so far)");
        }
    }

    fn announce(&self, c: &Camera) {
        let t = &c.topics;
        self.send(
            &t.discovery,
            true,
            t.discovery_payload(&self.bridge, &self.program),
        );
        self.send(&t.availability, true, ONLINE);
        self.send(
            &t.motion,
            true,
            if c.motion { MOTION_ON } else { MOTION_OFF },
        );
    }

    /// Runs `f` on the camera's state, adding (and announcing) it if it is new and there is
    /// room; `None` past [`Options::max_cameras`].
    fn with_camera<R>(&self, name: &str, f: impl FnOnce(&mut Camera) -> R) -> Option<R> {
        let mut cameras = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        let key = topic::segment(name);
        if !cameras.contains_key(&key) {
            if cameras.len() >= self.max_cameras {
                if !self.told_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "mqtt: {} cameras known; new cameras get no motion, availability or discovery topics",
                        self.max_cameras
                    );
                }
                return None;
            }
            let c = Camera {
                topics: CameraTopics::new(name),
                motion: false,
                off_at: None,
            };
            self.announce(&c);
            cameras.insert(key.clone(), c);
        }
        cameras.get_mut(&key).map(f)
    }
}

/// Publishes events, motion and availability to an MQTT broker.
///
/// Every method returns at once: messages go into a bounded queue ([`Options::queue`]) served by
/// a task that connects, reconnects with backoff (1 s doubling to 30 s) while the broker is down
/// and, on each connection, publishes the bridge `online`, then every known camera's discovery
/// config, availability and motion state again. When the queue is full a message is dropped,
/// counted ([`Publisher::dropped`]) and a warning logged.
///
/// Topics: see [`CameraTopics`]. The connection's last will sets the bridge availability
/// ([`topic::bridge_availability`]) to `offline`, retained: MQTT has one will per connection,
/// so each camera's discovery config lists the bridge topic and the camera's own, both needed.
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    tasks: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl Publisher {
    /// Starts the publisher on the current tokio runtime. It does not wait for the broker.
    ///
    /// # Errors
    /// [`Error::Tls`] when the TLS configuration cannot be made, [`Error::NoRuntime`] outside
    /// a runtime.
    pub fn start(options: Options) -> Result<Publisher, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let b = &options.broker;
        let bridge = topic::bridge_availability(&options.client_id);
        let mut mqtt = MqttOptions::new(options.client_id.clone(), b.host.clone(), b.port);
        mqtt.set_keep_alive(options.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(256 * 1024, MAX_EVENT_JSON + 4096)
            .set_request_channel_capacity(options.queue.max(1))
            .set_last_will(LastWill::new(&bridge, OFFLINE, QoS::AtLeastOnce, true));
        if let Some((user, pass)) = &b.credentials {
            mqtt.set_credentials(user, pass);
        }
        if b.tls {
            let config =
                nvrkit_tls::client_config(&options.extra_roots).map_err(|source| Error::Tls {
                    broker: format!("{}:{}", b.host, b.port),
                    source,
                })?;
            mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, options.queue.max(1));
        let shared = Arc::new(Shared {
            client,
            bridge,
            program: options.program.clone(),
            max_cameras: options.max_cameras,
            cameras: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            told_full: AtomicBool::new(false),
        });
        let broker = options.broker.to_string();
        let connection = {
            let shared = shared.clone();
            runtime.spawn(async move {
                let mut backoff = Duration::from_secs(1);
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                            tracing::info!("mqtt: connected to {broker} ({:?})", ack.code);
                            shared.connected.store(true, Ordering::Relaxed);
                            backoff = Duration::from_secs(1);
                            shared.send(&shared.bridge, true, ONLINE);
                            let cameras = shared.cameras.lock().unwrap_or_else(|p| p.into_inner());
                            for c in cameras.values() {
                                shared.announce(c);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if shared.stopping.load(Ordering::Relaxed) {
                                return;
                            }
                            let was = shared.connected.swap(false, Ordering::Relaxed);
                            tracing::warn!(
                                "mqtt: {broker}: {e}{}; retrying in {backoff:?}",
                                if was { " (connection lost)" } else { "" }
                            );
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            })
        };
        let ticker = {
            let shared = shared.clone();
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    let mut cameras = shared.cameras.lock().unwrap_or_else(|p| p.into_inner());
                    for c in cameras.values_mut() {
                        if c.off_at.is_some_and(|t| t <= now) {
                            c.off_at = None;
                            c.motion = false;
                            shared.send(&c.topics.motion, true, MOTION_OFF);
                        }
                    }
                }
            })
        };
        Ok(Publisher {
            shared,
            tasks: Mutex::new(Some((connection, ticker))),
        })
    }

    /// Makes `camera` known: its discovery config, availability `online` and motion `OFF` are
    /// published (once; again after each reconnection). Returns false past
    /// [`Options::max_cameras`].
    pub fn camera(&self, camera: &str) -> bool {
        self.shared.with_camera(camera, |_| ()).is_some()
    }

    /// Publishes an event's JSON on the camera's event topic (not retained). A JSON over
    /// [`MAX_EVENT_JSON`] bytes is dropped and counted.
    pub fn event(&self, camera: &str, json: &str) {
        if json.len() > MAX_EVENT_JSON {
            self.shared.drop_one("event JSON over 64 KiB");
            return;
        }
        let topics = self
            .shared
            .with_camera(camera, |c| c.topics.event.clone())
            .unwrap_or_else(|| CameraTopics::new(camera).event);
        self.shared.send(&topics, false, json);
    }

    /// Sets the camera's retained motion state (`ON`, `OFF`), cancelling a hold.
    pub fn motion(&self, camera: &str, on: bool) {
        let shared = &self.shared;
        shared.with_camera(camera, |c| {
            c.off_at = None;
            c.motion = on;
            shared.send(
                &c.topics.motion,
                true,
                if on { MOTION_ON } else { MOTION_OFF },
            );
        });
    }

    /// Motion `ON` now, and `OFF` once `hold` has passed with no other call for this camera
    /// (each call extends it). `ON` is published only if the state was `OFF`.
    pub fn motion_for(&self, camera: &str, hold: Duration) {
        let shared = &self.shared;
        shared.with_camera(camera, |c| {
            c.off_at = Some(Instant::now() + hold);
            if !c.motion {
                c.motion = true;
                shared.send(&c.topics.motion, true, MOTION_ON);
            }
        });
    }

    /// Messages dropped so far (queue full, event too large).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Whether the publisher is connected to the broker now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Says goodbye: every camera's motion `OFF` and availability `offline`, the bridge
    /// `offline`, then a clean DISCONNECT; waits at most `timeout` for the broker to take them
    /// (a broker that is down gets nothing: it has already set the bridge `offline` from the
    /// last will, or never saw it `online`). Messages after it are dropped.
    pub async fn finish(&self, timeout: Duration) {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((mut connection, ticker)) = tasks else {
            return;
        };
        let shared = &self.shared;
        ticker.abort();
        {
            let cameras = shared.cameras.lock().unwrap_or_else(|p| p.into_inner());
            for c in cameras.values() {
                if c.motion {
                    shared.send(&c.topics.motion, true, MOTION_OFF);
                }
                shared.send(&c.topics.availability, true, OFFLINE);
            }
        }
        shared.send(&shared.bridge, true, OFFLINE);
        shared.stopping.store(true, Ordering::Relaxed);
        let _ = shared.client.try_disconnect();
        if tokio::time::timeout(timeout, &mut connection)
            .await
            .is_err()
        {
            connection.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback port with nothing listening.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_broker_that_is_down_never_blocks_the_caller_and_drops_are_counted() {
        for scheme in ["mqtt", "mqtts"] {
            let url = format!("{scheme}://u:p@127.0.0.1:{}", closed_port());
            let mut options = Options::new(url.parse().unwrap(), "test");
            options.queue = 8;
            let mqtt = Publisher::start(options).unwrap();
            for i in 0..100 {
                mqtt.event(&format!("cam{}", i % 3), "{}");
                mqtt.motion_for("cam0", Duration::from_secs(30));
            }
            assert!(!mqtt.connected());
            assert!(mqtt.dropped() > 50, "{}", mqtt.dropped());
            let big = "x".repeat(MAX_EVENT_JSON + 1);
            let before = mqtt.dropped();
            mqtt.event("cam0", &big);
            assert_eq!(mqtt.dropped(), before + 1);
            mqtt.finish(Duration::from_millis(500)).await;
        }
    }

    #[tokio::test]
    async fn cameras_past_the_cap_get_no_retained_topics() {
        let url = format!("mqtt://127.0.0.1:{}", closed_port());
        let mut options = Options::new(url.parse().unwrap(), "test");
        options.max_cameras = 2;
        let mqtt = Publisher::start(options).unwrap();
        assert!(mqtt.camera("a") && mqtt.camera("b") && mqtt.camera("a"));
        assert!(!mqtt.camera("c"));
        assert_eq!(mqtt.shared.cameras.lock().unwrap().len(), 2);
        mqtt.finish(Duration::from_millis(100)).await;
    }

    #[test]
    fn outside_a_runtime_it_says_so() {
        let options = Options::new("mqtt://127.0.0.1".parse().unwrap(), "test");
        assert!(matches!(Publisher::start(options), Err(Error::NoRuntime)));
    }
}

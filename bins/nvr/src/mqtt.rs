//! `--mqtt`: nvr's events and each camera's recording state on an MQTT broker
//! ([`nvrkit_mqtt`]; topics in docs/mqtt.md).
//!
//! `--record events`: a camera's motion goes ON when an event is mapped to it and OFF when its
//! event range closes (the recorder's [`RecorderStats::ranges_closed`] moves and no range is
//! open), so the motion state is "recording an event". `--record all` records without ranges:
//! there motion goes OFF `--post` after the camera's last event.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nvrkit_mqtt::{BrokerUrl, Options, Publisher};
use nvrkit_tls::tokio_rustls::rustls::pki_types::CertificateDer;

use nvrkit_recorder::{Mode, RecorderStats};

/// How often the range watcher looks at the recorders.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Motion stays ON at least this long after a camera's latest event: a range that closed while
/// that event was still on its way to the recorder is not the end (the recorder opens a new
/// range for it within a loop turn, well under this).
const SETTLE: Duration = Duration::from_secs(1);

struct Camera {
    name: String,
    stats: Arc<RecorderStats>,
    /// While motion is ON: the count of closed ranges at its first event (motion goes OFF
    /// when a range closes after it) and when the latest event came.
    on_since: std::sync::Mutex<Option<(u64, Instant)>>,
}

/// nvr's MQTT output.
pub struct Mqtt {
    publisher: Publisher,
    cameras: Vec<Camera>,
    mode: Mode,
    post: Duration,
}

impl Mqtt {
    /// Connects (in the background) and announces every camera; watches their recorders.
    pub fn start(
        url: BrokerUrl,
        extra_roots: Vec<CertificateDer<'static>>,
        cameras: &[(String, Arc<RecorderStats>)],
        mode: Mode,
        post: Duration,
    ) -> anyhow::Result<Arc<Mqtt>> {
        let mut options = Options::new(url, "nvr");
        options.extra_roots = extra_roots;
        let publisher = Publisher::start(options)?;
        for (name, _) in cameras {
            publisher.camera(name);
        }
        let mqtt = Arc::new(Mqtt {
            publisher,
            cameras: cameras
                .iter()
                .map(|(name, stats)| Camera {
                    name: name.clone(),
                    stats: stats.clone(),
                    on_since: std::sync::Mutex::new(None),
                })
                .collect(),
            mode,
            post,
        });
        if mode == Mode::Events {
            let weak = Arc::downgrade(&mqtt);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(WATCH_EVERY);
                loop {
                    tick.tick().await;
                    let Some(mqtt) = weak.upgrade() else { return };
                    mqtt.watch_ranges(Instant::now());
                }
            });
        }
        Ok(mqtt)
    }

    /// An event mapped to `camera`, as the JSON nvr keeps of it.
    pub fn event(&self, camera: &str, json: &serde_json::Value) {
        self.publisher.event(camera, &json.to_string());
        match self.mode {
            Mode::All => self.publisher.motion_for(camera, self.post),
            Mode::Events => {
                let Some(c) = self.cameras.iter().find(|c| c.name == camera) else {
                    return;
                };
                let mut on = c.on_since.lock().unwrap_or_else(|p| p.into_inner());
                // Counted before the recorder sees the event: a range that closes from now on
                // holds this event, or a later one reopens motion.
                match on.as_mut() {
                    Some((_, last)) => *last = Instant::now(),
                    None => {
                        let closed = c.stats.ranges_closed.load(Ordering::Relaxed);
                        *on = Some((closed, Instant::now()));
                        self.publisher.motion(camera, true);
                    }
                }
            }
        }
    }

    /// Turns motion OFF for each camera whose range has closed, as of `now`.
    fn watch_ranges(&self, now: Instant) {
        for c in &self.cameras {
            let mut on = c.on_since.lock().unwrap_or_else(|p| p.into_inner());
            let Some((since, last)) = *on else { continue };
            let closed = c.stats.ranges_closed.load(Ordering::Relaxed) > since;
            let open = c.stats.open.lock().map(|o| o.is_some()).unwrap_or(true);
            if closed && !open && now.saturating_duration_since(last) >= SETTLE {
                *on = None;
                self.publisher.motion(&c.name, false);
            }
        }
    }

    /// At shutdown, after the recorders have closed their ranges.
    pub async fn finish(&self) {
        self.publisher.finish(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(m: &Mqtt) -> bool {
        m.cameras[0].on_since.lock().unwrap().is_some()
    }

    #[tokio::test]
    async fn motion_goes_off_only_when_a_range_closed_after_the_event_and_none_is_open() {
        // No broker: the state machine is what is under test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("mqtt://127.0.0.1:{port}").parse().unwrap();
        let stats = Arc::new(RecorderStats::default());
        let cams = [("cam".to_owned(), stats.clone())];
        let m = Mqtt::start(url, Vec::new(), &cams, Mode::Events, Duration::from_secs(2)).unwrap();
        let later = || Instant::now() + SETTLE;
        m.event("cam", &serde_json::json!({"kind": "motion"}));
        assert!(on(&m));
        *stats.open.lock().unwrap() = Some((nvrkit_media::WallTime::now(), None));
        m.watch_ranges(later());
        assert!(on(&m), "the range is open");
        // Closed, but a new range (a later event) is already open: still ON.
        stats.ranges_closed.fetch_add(1, Ordering::Relaxed);
        m.watch_ranges(later());
        assert!(on(&m), "another range is open");
        *stats.open.lock().unwrap() = None;
        m.watch_ranges(Instant::now());
        assert!(
            on(&m),
            "an event less than SETTLE ago may still be on its way"
        );
        m.watch_ranges(later());
        assert!(!on(&m), "closed, none open: OFF");
        // The next event counts from the closes so far.
        m.event("cam", &serde_json::json!({"kind": "motion"}));
        m.watch_ranges(later());
        assert!(on(&m), "no range closed since this event");
        m.finish().await;
    }
}

//! `--exec`, `--webhook` and `--mqtt`: per-event side effects that never stall the SMTP server,
//! and never grow without bound when a sink is down or slow.
//!
//! Each sink has a bounded queue of [`SINK_QUEUE`] events served by a fixed number of workers
//! (`--exec-concurrency` for `--exec`, [`WEBHOOK_WORKERS`] for `--webhook`). When a queue is
//! full the event is dropped for that sink alone, its `dropped` counter goes up, and a warning
//! is logged for the first drop and then every [`WARN_EVERY`]th. A webhook request ends at
//! `--webhook-timeout`; an `--exec` command is killed past `--exec-timeout`.
//!
//! `--mqtt` is an [`nvrkit_mqtt::Publisher`], with a bounded queue of its own (same policy:
//! drop, count, warn) and a connection that reconnects by itself. Each event's JSON goes to
//! `nvrkit/<camera>/event`; an alarm of a motion-like kind ([`motion_like`]) sets
//! `nvrkit/<camera>/motion` ON until `--mqtt-motion-hold` passes with no further alarm from
//! that camera, or until its `end` event (`--end-after`) if that comes first.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nvrkit_smtp::{CameraEvent, EventKind, EventPhase};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

/// Events waiting per sink; past it an event is dropped for that sink.
pub(crate) const SINK_QUEUE: usize = 1024;

/// Webhook POSTs in flight at once (the webhook sink's workers).
pub(crate) const WEBHOOK_WORKERS: usize = 8;

/// A drop warning is logged for the first dropped event of a sink, then for every this many.
pub(crate) const WARN_EVERY: u64 = 1000;

/// One event as a sink sees it.
struct Job {
    json: String,
    kind: String,
    camera: String,
}

/// What a sink does with an event.
#[derive(Clone)]
enum Action {
    Exec {
        cmd: String,
        timeout: Duration,
    },
    Webhook {
        url: String,
        attempts: u32,
        agent: ureq::Agent,
    },
}

/// One sink: its queue, its counter of dropped events, its workers.
struct Sink {
    name: String,
    tx: mpsc::Sender<Job>,
    dropped: AtomicU64,
}

impl Sink {
    fn start(name: String, action: Action, workers: usize, tasks: &mut JoinSet<()>) -> Sink {
        let (tx, rx) = mpsc::channel::<Job>(SINK_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let (rx, action) = (Arc::clone(&rx), action.clone());
            tasks.spawn(async move {
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some(job) = job else { return };
                    run(&action, job).await;
                }
            });
        }
        Sink {
            name,
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    fn offer(&self, job: Job) {
        if self.tx.try_send(job).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(WARN_EVERY) {
                tracing::warn!(
                    "{}: queue of {SINK_QUEUE} events full, event dropped ({n} dropped so far)",
                    self.name
                );
            }
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        SINK_QUEUE - self.tx.capacity()
    }
}

async fn run(action: &Action, job: Job) {
    match action {
        Action::Exec { cmd, timeout } => {
            if let Err(e) = run_exec(cmd, &job.json, &job.kind, &job.camera, *timeout).await {
                tracing::warn!("--exec {cmd:?}: {e:#}");
            }
        }
        Action::Webhook {
            url,
            attempts,
            agent,
        } => post_with_retries(agent.clone(), url.clone(), job.json, *attempts).await,
    }
}

/// How the sinks run.
pub(crate) struct SinkOptions {
    pub(crate) exec: Option<String>,
    pub(crate) exec_concurrency: usize,
    pub(crate) exec_timeout: Duration,
    pub(crate) webhook: Option<String>,
    pub(crate) webhook_attempts: u32,
    pub(crate) webhook_timeout: Duration,
    pub(crate) mqtt: Option<nvrkit_mqtt::BrokerUrl>,
    pub(crate) ca_file: Option<std::path::PathBuf>,
    pub(crate) mqtt_motion_hold: Duration,
}

pub(crate) struct Sinks {
    exec: Option<Sink>,
    webhook: Option<Sink>,
    mqtt: Option<(nvrkit_mqtt::Publisher, Duration)>,
    tasks: JoinSet<()>,
}

/// Whether an alarm of this kind turns a camera's MQTT motion state ON: what a motion sensor
/// means (motion, a line crossed, an intrusion, an alarm input, a kind we do not know), not a
/// test mail, a video loss, tampering or a failed login.
pub(crate) fn motion_like(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Test | EventKind::VideoLoss | EventKind::Tamper | EventKind::IllegalLogin
    )
}

impl Sinks {
    pub(crate) fn new(o: SinkOptions) -> anyhow::Result<Sinks> {
        let mut tasks = JoinSet::new();
        let exec = o.exec.map(|cmd| {
            let action = Action::Exec {
                cmd,
                timeout: o.exec_timeout,
            };
            Sink::start("--exec".into(), action, o.exec_concurrency, &mut tasks)
        });
        let webhook = o.webhook.map(|url| {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(o.webhook_timeout))
                .http_status_as_error(true)
                .build()
                .into();
            let name = format!("--webhook {url}");
            let action = Action::Webhook {
                url,
                attempts: o.webhook_attempts.max(1),
                agent,
            };
            Sink::start(name, action, WEBHOOK_WORKERS, &mut tasks)
        });
        let mqtt = match o.mqtt {
            Some(url) => {
                let mut options = nvrkit_mqtt::Options::new(url, "camevents");
                if let Some(ca) = &o.ca_file {
                    options.extra_roots = nvrkit_tls::load_certificates(ca)?;
                }
                let publisher = nvrkit_mqtt::Publisher::start(options)?;
                Some((publisher, o.mqtt_motion_hold))
            }
            None => None,
        };
        Ok(Sinks {
            exec,
            webhook,
            mqtt,
            tasks,
        })
    }

    pub(crate) fn dispatch(&self, event: &CameraEvent, json: String) {
        if let Some((mqtt, hold)) = &self.mqtt {
            // The key `--end-after` tracks: the camera name (else device, else sender) and
            // the channel. Untrusted: nvrkit-mqtt makes a bounded, wildcard-free topic of it.
            let camera = event.camera_key();
            mqtt.event(&camera, &json);
            match event.phase {
                EventPhase::Start if motion_like(&event.kind) => mqtt.motion_for(&camera, *hold),
                EventPhase::End => mqtt.motion(&camera, false),
                _ => {}
            }
        }
        let kind = event.kind.as_str();
        let camera = event.camera.as_deref().unwrap_or_default();
        self.dispatch_parts(kind, camera, json);
    }

    fn dispatch_parts(&self, kind: &str, camera: &str, json: String) {
        let job = |json: String| Job {
            json,
            kind: kind.to_owned(),
            camera: camera.to_owned(),
        };
        match (&self.exec, &self.webhook) {
            (Some(e), Some(w)) => {
                e.offer(job(json.clone()));
                w.offer(job(json));
            }
            (Some(s), None) | (None, Some(s)) => s.offer(job(json)),
            (None, None) => {}
        }
    }

    /// Closes the queues and waits for what they hold (at shutdown).
    pub(crate) async fn finish(self) {
        let Sinks {
            exec,
            webhook,
            mqtt,
            mut tasks,
        } = self;
        drop((exec, webhook));
        while tasks.join_next().await.is_some() {}
        if let Some((mqtt, _)) = mqtt {
            mqtt.finish(Duration::from_secs(2)).await;
        }
    }
}

async fn run_exec(
    cmd: &str,
    json: &str,
    kind: &str,
    camera: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("CAMEVENTS_KIND", kind)
        .env("CAMEVENTS_CAMERA", camera)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let work = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read stdin closes it early: that is fine.
            let _ = stdin.write_all(json.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        child.wait().await
    };
    let status = match tokio::time::timeout(timeout, work).await {
        Ok(status) => status?,
        Err(_) => {
            let _ = child.kill().await;
            anyhow::bail!("still running after --exec-timeout {timeout:?}: killed");
        }
    };
    if !status.success() {
        anyhow::bail!("exited with {status}");
    }
    Ok(())
}

async fn post_with_retries(agent: ureq::Agent, url: String, json: String, attempts: u32) {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=attempts {
        let (agent, url2, body) = (agent.clone(), url.clone(), json.clone());
        let result = tokio::task::spawn_blocking(move || {
            agent
                .post(&url2)
                .header("Content-Type", "application/json")
                .send(body.as_bytes())
                .map(drop)
        })
        .await;
        match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => tracing::warn!("--webhook {url}: attempt {attempt}/{attempts}: {e}"),
            Err(e) => tracing::warn!("--webhook {url}: {e}"),
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
    tracing::error!("--webhook {url}: gave up on an event after {attempts} attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `ok` until it holds, within the hang guard.
    async fn eventually(mut ok: impl FnMut() -> bool) {
        let guard = tokio::time::Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(tokio::time::Instant::now() < guard, "hang guard");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhook_that_never_answers_drops_events_and_exec_still_gets_them() {
        // The "webhook" accepts and never answers (127.0.0.2, the attacker's address).
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming() {
                match c {
                    Ok(c) => held.push(c),
                    Err(_) => return,
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events");
        let sinks = Sinks::new(SinkOptions {
            exec: Some(format!("cat >> '{}'", out.display())),
            exec_concurrency: 4,
            exec_timeout: Duration::from_secs(2),
            webhook: Some(url),
            webhook_attempts: 1,
            webhook_timeout: Duration::from_secs(2),
            mqtt: None,
            ca_file: None,
            mqtt_motion_hold: Duration::from_secs(30),
        })
        .unwrap();
        // Bounded: the workers are all the tasks there are, whatever the events.
        assert_eq!(sinks.tasks.len(), 4 + WEBHOOK_WORKERS);
        for i in 0..5000 {
            sinks.dispatch_parts("motion", "cam", format!("{{\"n\":{i}}}"));
        }
        let webhook = sinks.webhook.as_ref().unwrap();
        let exec = sinks.exec.as_ref().unwrap();
        assert!(webhook.dropped.load(Ordering::Relaxed) > 0);
        assert!(webhook.queued() <= SINK_QUEUE);
        assert_eq!(sinks.tasks.len(), 4 + WEBHOOK_WORKERS);

        // The healthy sink drains its queue and takes a new event while the webhook hangs.
        eventually(|| exec.queued() == 0).await;
        sinks.dispatch_parts("motion", "cam", "{\"n\":\"last\"}".into());
        let got = || std::fs::read_to_string(&out).unwrap_or_default();
        eventually(|| got().contains("\"last\"")).await;
        assert!(got().lines().count() > 1);
    }

    #[tokio::test]
    async fn exec_past_its_timeout_is_killed() {
        let e = run_exec(
            "sleep 30",
            "{}",
            "motion",
            "cam",
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
    }
}

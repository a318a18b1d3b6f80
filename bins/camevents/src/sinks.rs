//! `--exec` and `--webhook`: per-event side effects with bounded concurrency. A slow sink never
//! stalls the SMTP server: events queue in tasks, each sink limited by a semaphore.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nvrkit_smtp::CameraEvent;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Webhook POSTs in flight at once.
const WEBHOOK_CONCURRENCY: usize = 8;

pub(crate) struct Sinks {
    exec: Option<(String, Arc<Semaphore>)>,
    webhook: Option<(String, u32, Arc<Semaphore>, ureq::Agent)>,
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl Sinks {
    pub(crate) fn new(
        exec: Option<String>,
        exec_concurrency: usize,
        webhook: Option<String>,
        attempts: u32,
    ) -> Sinks {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(true)
            .build()
            .into();
        Sinks {
            exec: exec.map(|cmd| (cmd, Arc::new(Semaphore::new(exec_concurrency.max(1))))),
            webhook: webhook.map(|url| {
                (
                    url,
                    attempts.max(1),
                    Arc::new(Semaphore::new(WEBHOOK_CONCURRENCY)),
                    agent,
                )
            }),
            tasks: std::sync::Mutex::new(JoinSet::new()),
        }
    }

    pub(crate) fn dispatch(&self, event: &CameraEvent, json: String) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        if let Some((cmd, limit)) = &self.exec {
            let (cmd, limit, json) = (cmd.clone(), Arc::clone(limit), json.clone());
            let kind = event.kind.as_str().to_owned();
            let camera = event.camera.clone().unwrap_or_default();
            tasks.spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                if let Err(e) = run_exec(&cmd, &json, &kind, &camera).await {
                    tracing::warn!("--exec {cmd:?}: {e:#}");
                }
            });
        }
        if let Some((url, attempts, limit, agent)) = &self.webhook {
            let (url, attempts, limit, agent) =
                (url.clone(), *attempts, Arc::clone(limit), agent.clone());
            tasks.spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                post_with_retries(agent, url, json, attempts).await;
            });
        }
    }

    /// Waits for running sinks (at shutdown).
    pub(crate) async fn finish(self) {
        let mut tasks = self.tasks.into_inner().unwrap_or_else(|p| p.into_inner());
        while tasks.join_next().await.is_some() {}
    }
}

async fn run_exec(cmd: &str, json: &str, kind: &str, camera: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("CAMEVENTS_KIND", kind)
        .env("CAMEVENTS_CAMERA", camera)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read stdin closes it early: that is fine.
        let _ = stdin.write_all(json.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    let status = child.wait().await?;
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

//! `--nvr URL`: the cameras' live state from nvr's HTTP API, polled every second.
//!
//! - online: the camera's entry in `GET /api/cameras` has `"connected": true` (`offline` when
//!   it is listed and not connected, `unknown` when nvr does not list it);
//! - alarm: an event in `GET /api/events` lists the camera in `cameras` and was received
//!   within the last `--alarm-hold` (by this machine's clock against nvr's `received_at`).
//!
//! nvr is a peer like any other: each request has a 5 s deadline, no redirects are followed,
//! a body over 8 MiB is refused; the bodies are read by `nvrkit_mbtiles::cameras::nvr_states`
//! (fuzzed: `cameras_json`). When nvr cannot be read every state is `unknown` until it can.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nvrkit_mbtiles::cameras::{Live, nvr_states};
use nvrkit_media::WallTime;

/// How often nvr is asked.
pub const POLL: Duration = Duration::from_secs(1);
/// The deadline of one request, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
pub const MAX_RESPONSE: u64 = 8 << 20;

fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<Vec<u8>> {
    let mut r = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    r.body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .with_context(|| format!("GET {url}: body"))
}

/// Polls nvr at `base` (`http://127.0.0.1:8080`) on its own thread, setting `live`'s states.
pub fn spawn(live: Arc<Live>, base: String, hold: Duration) -> std::io::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(true)
        .build()
        .into();
    std::thread::Builder::new()
        .name("nvr-poll".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                let res = get(&agent, &format!("{base}/api/cameras")).and_then(|cams| {
                    let events = get(&agent, &format!("{base}/api/events"))?;
                    Ok(nvr_states(
                        live.cameras(),
                        &cams,
                        &events,
                        WallTime::now(),
                        hold,
                    )?)
                });
                match res {
                    Ok(s) => {
                        if failing {
                            tracing::info!("nvr {base}: reachable again");
                            failing = false;
                        }
                        if live.set(s) {
                            let now: Vec<String> = live
                                .cameras()
                                .iter()
                                .zip(live.states())
                                .map(|(c, s)| format!("{}={}", c.id, s.name()))
                                .collect();
                            tracing::info!("cameras: {}", now.join(" "));
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!("nvr {base}: {e:#}; camera states unknown");
                            failing = true;
                        }
                        live.set(Vec::new());
                    }
                }
                std::thread::sleep(POLL);
            }
        })
        .map(drop)
}

//! `--nvr URL`: the cameras' live state from nvr's HTTP API, polled every second.
//!
//! - online: the camera's entry in `GET /api/cameras` has `"connected": true` (`offline` when
//!   it is listed and not connected, `unknown` when nvr does not list it);
//! - alarm: an event in `GET /api/events` lists the camera in `cameras` and was received
//!   within the last `--alarm-hold` (by this machine's clock against nvr's `received_at`).
//!
//! nvr is a peer like any other: each request has a 5 s deadline, no redirects are followed,
//! a body over 8 MiB is refused, JSON nested deeper than 64 levels is not parsed. When nvr
//! cannot be read every state is `unknown` until it can.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use nvrkit_mbtiles::cameras::{Camera, Live, State};
use nvrkit_media::WallTime;
use serde_json::Value;

/// How often nvr is asked.
pub const POLL: Duration = Duration::from_secs(1);
/// The deadline of one request, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
pub const MAX_RESPONSE: u64 = 8 << 20;

fn parse(what: &str, body: &[u8]) -> anyhow::Result<Vec<Value>> {
    if !nvrkit_net::json_depth_within(body, 64) {
        bail!("{what}: JSON nested deeper than 64 levels");
    }
    match serde_json::from_slice(body).with_context(|| format!("{what}: not JSON"))? {
        Value::Array(a) => Ok(a),
        _ => bail!("{what}: not a JSON array"),
    }
}

/// The states of `cameras` from the bodies of `/api/cameras` and `/api/events`.
pub fn states(
    cameras: &[Camera],
    api_cameras: &[u8],
    api_events: &[u8],
    now: WallTime,
    hold: Duration,
) -> anyhow::Result<Vec<State>> {
    let listed = parse("/api/cameras", api_cameras)?;
    let events = parse("/api/events", api_events)?;
    let hold_us = i64::try_from(hold.as_micros()).unwrap_or(i64::MAX);
    let recent: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e.get("received_at")
                .and_then(Value::as_str)
                .and_then(|t| WallTime::parse_rfc3339(t).ok())
                .is_some_and(|t| now.micros_since(t) <= hold_us)
        })
        .collect();
    Ok(cameras
        .iter()
        .map(|c| {
            let alarm = recent.iter().any(|e| {
                e.get("cameras")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(&c.id)))
            });
            let entry = listed
                .iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some(&c.id));
            match (alarm, entry) {
                (true, _) => State::Alarm,
                (false, None) => State::Unknown,
                (false, Some(x)) if x.get("connected") == Some(&Value::Bool(true)) => State::Online,
                (false, Some(_)) => State::Offline,
            }
        })
        .collect())
}

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
                    states(live.cameras(), &cams, &events, WallTime::now(), hold)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_offline_unknown_and_alarm_within_the_hold() {
        let cams = nvrkit_mbtiles::cameras::parse(
            br#"{"cameras": [{"id": "demo", "lon": 0, "lat": 0}, {"id": "yard", "lon": 1, "lat": 1},
                {"id": "gone", "lon": 2, "lat": 2}]}"#,
        )
        .unwrap();
        let api = br#"[{"name": "demo", "connected": true}, {"name": "yard", "connected": false}]"#;
        let now = WallTime::parse_rfc3339("2026-01-01T00:01:00Z").unwrap();
        let hold = Duration::from_secs(30);
        let s = states(&cams, api, b"[]", now, hold).unwrap();
        assert_eq!(s, [State::Online, State::Offline, State::Unknown]);
        let events = br#"[{"received_at": "2026-01-01T00:00:45Z", "cameras": ["yard"]},
            {"received_at": "2026-01-01T00:00:10Z", "cameras": ["demo"]}]"#;
        let s = states(&cams, api, events, now, hold).unwrap();
        assert_eq!(s, [State::Online, State::Alarm, State::Unknown]);
        assert!(states(&cams, b"{}", b"[]", now, hold).is_err());
        assert!(states(&cams, api, &[b'['; 100], now, hold).is_err());
    }
}

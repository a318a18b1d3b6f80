//! The alarm dispatcher (feature `alarm`): ONVIF motion on the clip's device, and alarm mails
//! with nvrkit-smtp's client.

use std::sync::Arc;

use bytes::Bytes;
use nvrkit_media::WallTime;
use nvrkit_smtp::client::{AlarmMail, Client, ClientOptions};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::{
    Alarm, Fired, JpegSource, MAIL_ATTEMPTS, MAIL_TIMEOUT, MAILS_IN_FLIGHT, Picture, Target,
    alarm_header, hold, mail_text, snapshot_header,
};
use crate::onvif::events::Hub;

/// Where the dispatcher sends what the pacers report.
#[derive(Clone)]
pub struct Dispatcher {
    /// The alarms, in the order given to [`super::Tap::new`].
    pub alarms: Vec<Alarm>,
    /// Each clip's loop period, µs (the motion hold is derived from it).
    pub periods: Vec<(String, i64)>,
    /// The ONVIF event state of each clip's device (none: no ONVIF events).
    pub hubs: Vec<(String, Arc<Hub>)>,
    /// The snapshot of a clip for its mail.
    pub jpeg: Option<JpegSource>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("alarms", &self.alarms)
            .field("hubs", &self.hubs.len())
            .field("jpeg", &self.jpeg.is_some())
            .finish()
    }
}

fn mailbox(clip: &str) -> String {
    clip.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The alarm mail's bytes, envelope sender and recipient. Headers `X-Loopcam-Alarm` (the
/// alarm frame) and, with a JPEG, `X-Loopcam-Snapshot` (the frame it is of).
pub(crate) fn mail(
    clip: &str,
    fired: &Fired,
    jpeg: Option<(Bytes, Picture)>,
) -> (String, String, Vec<u8>) {
    let picture = jpeg.as_ref().map_or(Picture::Keyframe, |(_, p)| *p);
    let (subject, body, name) = mail_text(clip, fired, picture);
    let from = format!("loopcam-{}@loopcam.invalid", mailbox(clip));
    let to = format!("{}@nvr.invalid", mailbox(clip));
    let mut m = AlarmMail::new(&from, &to, &subject, &body)
        .header("X-Mailer", "HIKMailer")
        .header("X-Loopcam-Alarm", &alarm_header(fired));
    if let Some((j, picture)) = jpeg {
        m = m
            .header("X-Loopcam-Snapshot", &snapshot_header(fired, picture))
            .attach(&name, "image/jpeg", j.to_vec());
    }
    (from, to, m.to_bytes())
}

async fn send_once(
    addr: std::net::SocketAddr,
    from: &str,
    to: &str,
    bytes: &[u8],
) -> Result<(), nvrkit_smtp::Error> {
    let mut options = ClientOptions::default();
    options.helo = "loopcam".into();
    options.timeout = MAIL_TIMEOUT;
    let mut c = Client::connect(addr, &options).await?;
    c.send(from, &[to], bytes).await?;
    c.quit().await
}

/// Handles the pacers' reports until the channel closes (every [`super::Cues`] dropped).
/// Returns at once; the task runs on the current runtime.
pub fn run(d: Dispatcher, mut rx: mpsc::Receiver<Fired>) -> JoinHandle<()> {
    let in_flight: Vec<Arc<Semaphore>> = d
        .alarms
        .iter()
        .map(|_| Arc::new(Semaphore::new(MAILS_IN_FLIGHT)))
        .collect();
    tokio::spawn(async move {
        while let Some(fired) = rx.recv().await {
            let Some(alarm) = d.alarms.get(fired.alarm) else {
                continue;
            };
            let clip = alarm.clip.clone();
            tracing::info!(
                "alarm {clip}@{:.6}s: lap {}, frame {} at {}",
                fired.frame_position_micros as f64 / 1e6,
                fired.lap,
                fired.frame,
                fired.wall
            );
            if let Some((_, hub)) = d.hubs.iter().find(|(n, _)| *n == clip) {
                hub.publish(true, fired.wall, WallTime::now());
                let period = d
                    .periods
                    .iter()
                    .find(|(n, _)| *n == clip)
                    .map_or(2_000_000, |(_, p)| *p);
                let held = hold(period);
                let hub = Arc::clone(hub);
                let off_at = fired
                    .wall
                    .add_micros(i64::try_from(held.as_micros()).unwrap_or(0));
                tokio::spawn(async move {
                    tokio::time::sleep(held).await;
                    hub.publish(false, off_at, WallTime::now());
                });
            }
            let Target::Smtp(addr) = alarm.target else {
                continue;
            };
            let Ok(permit) = Arc::clone(&in_flight[fired.alarm]).try_acquire_owned() else {
                tracing::warn!(
                    "alarm {clip}: lap {} mail skipped: {MAILS_IN_FLIGHT} to {addr} are still being sent",
                    fired.lap
                );
                continue;
            };
            // The keyframe at or before the alarm frame, whenever this runs (a late dispatch
            // must not mail a later picture).
            let jpeg = d.jpeg.as_ref().map(|f| f(&clip, fired.keyframe));
            tokio::spawn(async move {
                let jpeg = match jpeg {
                    Some(j) => j.await,
                    None => None,
                };
                if jpeg.is_none() {
                    tracing::warn!("alarm {clip}: no snapshot; the mail goes without one");
                }
                let (from, to, bytes) = mail(&clip, &fired, jpeg);
                for attempt in 1..=MAIL_ATTEMPTS {
                    match send_once(addr, &from, &to, &bytes).await {
                        Ok(()) => break,
                        Err(e) if attempt < MAIL_ATTEMPTS => {
                            tracing::debug!("alarm {clip}: mail to {addr}, attempt {attempt}: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                        Err(e) => tracing::warn!(
                            "alarm {clip}: lap {} mail to {addr} failed {MAIL_ATTEMPTS} times: {e}",
                            fired.lap
                        ),
                    }
                }
                drop(permit);
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_smtp::{EventKind, Message, Vendor, extract};

    #[test]
    fn nvrkit_smtp_reads_the_mail_as_hikvision_motion_with_its_jpeg() {
        let fired = Fired {
            alarm: 0,
            lap: 1,
            frame: 80,
            frame_position_micros: 3_200_000,
            wall: WallTime::parse_rfc3339("2026-12-03T15:25:58.2Z").unwrap(),
            keyframe: 75,
            keyframe_lap: 1,
            keyframe_position_micros: 3_000_000,
        };
        let jpeg = Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9]);
        let (from, to, bytes) = mail("bikes", &fired, Some((jpeg.clone(), Picture::Keyframe)));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("X-Loopcam-Snapshot: keyframe; lap=1; frame=75; pos=3.000000s\r\n"),
            "{text}"
        );
        assert!(
            text.contains("X-Loopcam-Alarm: lap=1; frame=80; pos=3.200000s; utc=2026-12-03T15:25:58.200000Z\r\n"),
            "{text}"
        );
        let event = extract(
            &Message::new(&from, vec![to], bytes.clone()),
            None,
            WallTime::now(),
        );
        assert_eq!(event.vendor, Vendor::Hikvision);
        assert_eq!(event.kind, EventKind::Motion);
        assert_eq!(event.camera.as_deref(), Some("bikes"));
        assert_eq!(event.snapshots.len(), 1);
        assert_eq!(event.snapshots[0].data, jpeg);
        assert_eq!(
            event.snapshots[0].name,
            "bikes_20261203T152558.200000Z_lap1_pos3.200000s_key3.000000s.jpg"
        );
    }
}

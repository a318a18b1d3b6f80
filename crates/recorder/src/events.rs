//! Which camera an event is for, and the list of events the NVR has seen.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use nvrkit_smtp::CameraEvent;

use crate::event_disk::{DiskEvent, EventDisk};

use crate::MapRuleError;

/// One field of an event a `--map` rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The channel as the device numbers it.
    Channel,
    /// The sender address.
    From,
    /// A recipient address.
    To,
    /// The device's own name.
    Device,
    /// The camera name in the event.
    Camera,
}

/// `--map 'channel=2:garage'`: events whose channel is 2 belong to camera `garage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRule {
    /// What to look at.
    pub field: Field,
    /// The value it must have (case-insensitive).
    pub value: String,
    /// The camera it maps to.
    pub camera: String,
}

impl std::str::FromStr for MapRule {
    type Err = MapRuleError;

    fn from_str(s: &str) -> Result<Self, MapRuleError> {
        let Some((cond, camera)) = s.rsplit_once(':') else {
            return Err(MapRuleError::Shape);
        };
        let Some((field, value)) = cond.split_once('=') else {
            return Err(MapRuleError::NoEquals(cond.to_owned()));
        };
        let field = match field.trim().to_ascii_lowercase().as_str() {
            "channel" => Field::Channel,
            "from" => Field::From,
            "to" => Field::To,
            "device" => Field::Device,
            "camera" => Field::Camera,
            other => return Err(MapRuleError::Field(other.to_owned())),
        };
        if camera.trim().is_empty() {
            return Err(MapRuleError::NoCamera(s.to_owned()));
        }
        Ok(MapRule {
            field,
            value: value.trim().to_owned(),
            camera: camera.trim().to_owned(),
        })
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn local_part(addr: &str) -> &str {
    addr.trim_matches(['<', '>'])
        .split('@')
        .next()
        .unwrap_or("")
}

/// The cameras an event is for, and why. In order: `--map` rules, a recipient's local part,
/// the camera or channel name in the event, the sender's local part.
pub fn map(event: &CameraEvent, rules: &[MapRule], cameras: &[String]) -> Option<(String, String)> {
    let find = |name: &str| cameras.iter().find(|c| eq(c, name)).cloned();
    for r in rules {
        let hit = match r.field {
            Field::Channel => event.channel.as_deref().is_some_and(|c| eq(c, &r.value)),
            Field::From => eq(&event.from, &r.value) || eq(local_part(&event.from), &r.value),
            Field::To => event
                .to
                .iter()
                .any(|t| eq(t, &r.value) || eq(local_part(t), &r.value)),
            Field::Device => event.device.as_deref().is_some_and(|d| eq(d, &r.value)),
            Field::Camera => event.camera.as_deref().is_some_and(|d| eq(d, &r.value)),
        };
        if hit && let Some(c) = find(&r.camera) {
            return Some((c, format!("map rule {:?}={}", r.field, r.value)));
        }
    }
    for t in &event.to {
        if let Some(c) = find(local_part(t)) {
            return Some((c, format!("recipient {t}")));
        }
    }
    if let Some(c) = event.camera.as_deref().and_then(find) {
        return Some((c, "camera name in the event".into()));
    }
    if let Some(c) = event.channel.as_deref().and_then(find) {
        return Some((c, "channel name in the event".into()));
    }
    if let Some(c) = find(local_part(&event.from)) {
        return Some((c, format!("sender {}", event.from)));
    }
    None
}

/// Bytes of an event's `reason` kept (it quotes names from the event).
pub const MAX_REASON: usize = 512;

/// The event as the note kept with its tag and in the event list: its JSON, bounded
/// ([`nvrkit_store::note::bound`]: long subjects and fields cut with a marker, at most
/// [`nvrkit_store::note::MAX_NOTE_BYTES`]).
pub fn note(event: &CameraEvent) -> serde_json::Value {
    let json = serde_json::from_str(&event.to_json()).unwrap_or(serde_json::Value::Null);
    nvrkit_store::note::bound(&json)
}

/// An event as the API lists it: the record kept on disk ([`crate::event_disk`]).
pub type EventRecord = DiskEvent;

/// The most recent events (newest last), bounded; with a directory, written there with every
/// snapshot of their mails, and read back on start (ids go on where they stopped).
#[derive(Debug, Default)]
pub struct EventLog {
    inner: Mutex<(u64, VecDeque<EventRecord>)>,
    /// Held across a save on disk (so ids reach the disk in order); `inner` is not, so
    /// [`EventLog::list`] (the HTTP handlers) never waits for snapshot writes and fsyncs.
    disk_order: Mutex<()>,
    disk: Option<EventDisk>,
}

impl EventLog {
    const KEEP: usize = crate::event_disk::KEEP_EVENTS;

    /// The events kept in `dir` (created if missing), and more to come there.
    pub fn open(dir: &Path) -> std::io::Result<EventLog> {
        let (disk, found, last) = EventDisk::open(dir)?;
        Ok(EventLog {
            inner: Mutex::new((last, found.into())),
            disk_order: Mutex::new(()),
            disk: Some(disk),
        })
    }

    /// Records an event (blocking: with a directory, it is durable on disk when this returns,
    /// snapshots and all); returns its id.
    pub fn push(&self, event: &CameraEvent, cameras: Vec<String>, reason: String) -> u64 {
        let json = note(event);
        let reason = nvrkit_store::note::truncate(&reason, MAX_REASON);
        let Ok(_order) = self.disk_order.lock() else {
            return 0;
        };
        let id = {
            let Ok(mut g) = self.inner.lock() else {
                return 0;
            };
            g.0 += 1;
            g.0
        };
        let mut record = EventRecord {
            id,
            received_at: event.received_at,
            cameras,
            reason,
            json,
            snapshots: Vec::new(),
            dropped_snapshots: event.snapshots.len(),
        };
        let mut stripped = Vec::new();
        if let Some(disk) = &self.disk {
            // Under `disk_order` only: ids reach the disk in order, readers are not held up.
            match disk.save(record.clone(), &event.snapshots) {
                Ok(saved) => {
                    record = saved.event;
                    stripped = saved.stripped;
                }
                Err(e) => tracing::error!(id = record.id, "event not stored on disk: {e}"),
            }
        }
        let Ok(mut g) = self.inner.lock() else {
            return 0;
        };
        for e in g.1.iter_mut().filter(|e| stripped.contains(&e.id)) {
            e.dropped_snapshots += e.snapshots.len();
            e.snapshots.clear();
        }
        g.1.push_back(record);
        while g.1.len() > Self::KEEP {
            g.1.pop_front();
        }
        id
    }

    /// All kept events, newest first.
    pub fn list(&self) -> Vec<EventRecord> {
        self.inner
            .lock()
            .map(|g| g.1.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// One event.
    pub fn get(&self, id: u64) -> Option<EventRecord> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.1.iter().find(|e| e.id == id).cloned())
    }

    /// Snapshot `n` of event `id`: its content type and bytes (blocking: read from disk).
    pub fn snapshot(&self, id: u64, n: usize) -> Option<(String, Vec<u8>)> {
        let event = self.get(id)?;
        let ct = event.snapshots.get(n)?.content_type.clone();
        let data = self.disk.as_ref()?.snapshot(&event, n).ok()?;
        Some((ct, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(to: &str, from: &str, camera: Option<&str>, channel: Option<&str>) -> CameraEvent {
        let mut e = CameraEvent::from_json(
            r#"{"v":1,"phase":"start","received_at":"2026-11-25T12:00:00Z","vendor":"generic","kind":"motion","subject":"x","from":"a@b","to":[],"snapshots":[],"source":{"peer":"127.0.0.1:1","helo":"test","auth_user":null,"tls":false,"mail_from":"a@b"}}"#,
        )
        .expect("a minimal event parses");
        e.to = vec![to.to_owned()];
        e.from = from.to_owned();
        e.camera = camera.map(str::to_owned);
        e.channel = channel.map(str::to_owned);
        e
    }

    #[test]
    fn mapping_order() {
        let cams = vec!["garage".to_owned(), "yard".to_owned(), "door".to_owned()];
        let rules: Vec<MapRule> = vec![
            "channel=2:garage".parse().unwrap(),
            "from=nvr1@site:yard".parse().unwrap(),
        ];
        // A rule wins over everything.
        let e = event("door@nvr", "x@y", Some("door"), Some("2"));
        assert_eq!(map(&e, &rules, &cams).unwrap().0, "garage");
        let e = event("door@nvr", "nvr1@site", None, None);
        assert_eq!(map(&e, &rules, &cams).unwrap().0, "yard");
        // Then the recipient's local part, then the camera name, then the sender.
        assert_eq!(
            map(&event("Door@nvr", "x@y", Some("yard"), None), &[], &cams)
                .unwrap()
                .0,
            "door"
        );
        assert_eq!(
            map(&event("nvr@x", "x@y", Some("Yard"), None), &[], &cams)
                .unwrap()
                .0,
            "yard"
        );
        assert_eq!(
            map(&event("nvr@x", "garage@cams", None, None), &[], &cams)
                .unwrap()
                .0,
            "garage"
        );
        assert!(
            map(
                &event("nvr@x", "x@y", Some("attic"), Some("9")),
                &rules,
                &cams
            )
            .is_none()
        );
    }

    #[test]
    fn a_huge_subject_is_kept_bounded_in_memory() {
        let mut e = event("garage@nvr", "x@y", Some(&"c".repeat(100_000)), None);
        e.subject = "Motion Detected ".repeat(65_536); // 1 MiB
        e.kind = nvrkit_smtp::EventKind::Other("k".repeat(100_000));
        let log = EventLog::default();
        let reason = format!("unmapped: camera {:?}", e.camera);
        let id = log.push(&e, vec!["garage".into()], reason);
        let r = log.get(id).unwrap();
        let bytes = serde_json::to_vec(&r.json).unwrap().len();
        assert!(bytes <= nvrkit_store::note::MAX_NOTE_BYTES, "{bytes}");
        let subject = r.json["subject"].as_str().unwrap();
        assert!(subject.starts_with("Motion Detected"));
        assert!(subject.ends_with(nvrkit_store::note::TRUNCATED));
        assert!(r.json["kind_text"].as_str().unwrap().len() <= 512);
        assert!(r.reason.len() <= MAX_REASON);
        assert!(r.reason.ends_with(nvrkit_store::note::TRUNCATED));
    }

    /// M1 (review-nvr.md): while an event is being saved on disk (snapshots, fsyncs), the
    /// list the HTTP handlers read is not locked: `list` answers during the save, and the
    /// save's record appears once it is done.
    #[test]
    fn the_list_answers_while_an_event_is_being_saved() {
        let tmp = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(EventLog::open(tmp.path()).unwrap());
        let e = event("garage@nvr", "x@y", None, None);
        log.push(&e, vec!["garage".into()], "recipient".into());
        // A save in progress holds the disk's order lock, as `push` does.
        let saving = log.disk_order.lock().unwrap();
        let pusher = {
            let (log, e) = (log.clone(), e.clone());
            std::thread::spawn(move || log.push(&e, vec!["garage".into()], "recipient".into()))
        };
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || tx.send(log.list().len()));
        }
        let listed = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("hang guard: list waited for the save");
        assert_eq!(listed, 1, "the event being saved is not listed yet");
        drop(saving);
        assert_eq!(pusher.join().unwrap(), 2);
        assert_eq!(log.list().len(), 2);
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["garage", "channel:garage", "color=red:garage", "channel=2:"] {
            assert!(bad.parse::<MapRule>().is_err(), "{bad}");
        }
    }
}

//! Events on disk, in the store directory (`STORE/.events/`, a name no camera can have): each event's record and every snapshot its alarm mail
//! carried, so the event list, its thumbnails and its ids survive a restart.
//!
//! Layout: `DIR/<id>/` (the id zero-padded to 10 digits) holding `<n>.jpg` / `<n>.png` (the
//! snapshots in mail order) and `event.json` (the record, written last: a directory without it
//! is an event a crash interrupted, removed on open). Every file is written to a `.tmp` name,
//! synced and renamed; the directories are synced after. Ids are never reused: the next id is one
//! past the highest directory name found, complete or not.
//!
//! Caps (hostile input): at most [`MAX_SNAPSHOTS`] snapshots per event, each at most
//! [`MAX_SNAPSHOT_BYTES`] and together at most [`MAX_EVENT_SNAPSHOT_BYTES`] (the rest are
//! counted as dropped, not stored); [`KEEP_EVENTS`] events are kept, the oldest removed first;
//! [`MAX_STORED_SNAPSHOT_BYTES`] of snapshots in all, the oldest unmapped events' snapshots
//! removed first; an `event.json` over [`MAX_RECORD_BYTES`] is not read.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use nvrkit_media::WallTime;
use nvrkit_smtp::Snapshot;
use serde_json::json;

/// Snapshots stored per event at most.
pub const MAX_SNAPSHOTS: usize = 8;
/// Bytes of one stored snapshot at most.
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;
/// Bytes of one event's stored snapshots together at most.
pub const MAX_EVENT_SNAPSHOT_BYTES: usize = 16 << 20;
/// Events kept on disk (and listed).
pub const KEEP_EVENTS: usize = 1000;
/// The largest `event.json` read back (the note is bounded to far less).
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// Snapshot bytes kept in the events directory in all. The directory is outside the store's
/// retention accounting (only `--min-free` sees its space), so without this a mail flood could
/// take 16 GB there and make retention delete footage. Past it the snapshots of the oldest
/// events go first, those of events no camera matched before any camera's (the records stay,
/// their snapshots counted as dropped).
pub const MAX_STORED_SNAPSHOT_BYTES: u64 = 1 << 30;

/// One stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Its name in the mail (bounded).
    pub name: String,
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    /// Bytes.
    pub size: usize,
}

impl StoredSnapshot {
    fn file(&self, n: usize) -> String {
        let ext = if self.content_type == "image/png" {
            "png"
        } else {
            "jpg"
        };
        format!("{n}.{ext}")
    }
}

/// An event as written to and read from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskEvent {
    /// Its id.
    pub id: u64,
    /// When the NVR received it.
    pub received_at: WallTime,
    /// The cameras it triggered.
    pub cameras: Vec<String>,
    /// How it was mapped.
    pub reason: String,
    /// The bounded event JSON.
    pub json: serde_json::Value,
    /// Its stored snapshots, in mail order.
    pub snapshots: Vec<StoredSnapshot>,
    /// Snapshots of the mail not stored (over a cap, or not an image).
    pub dropped_snapshots: usize,
}

impl DiskEvent {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "received_at": self.received_at.to_rfc3339(),
            "cameras": self.cameras,
            "reason": self.reason,
            "event": self.json,
            "snapshots": self.snapshots.iter().map(|s| json!({
                "name": s.name, "content_type": s.content_type, "size": s.size,
            })).collect::<Vec<_>>(),
            "dropped_snapshots": self.dropped_snapshots,
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<DiskEvent> {
        let snapshots = v["snapshots"]
            .as_array()?
            .iter()
            .take(MAX_SNAPSHOTS)
            .map(|s| {
                Some(StoredSnapshot {
                    name: s["name"].as_str()?.to_owned(),
                    content_type: match s["content_type"].as_str()? {
                        t @ ("image/jpeg" | "image/png") => t.to_owned(),
                        _ => return None,
                    },
                    size: usize::try_from(s["size"].as_u64()?).ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(DiskEvent {
            id: v["id"].as_u64()?,
            received_at: WallTime::parse_rfc3339(v["received_at"].as_str()?).ok()?,
            cameras: v["cameras"]
                .as_array()?
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            reason: v["reason"].as_str()?.to_owned(),
            json: v["event"].clone(),
            snapshots,
            dropped_snapshots: v["dropped_snapshots"].as_u64().unwrap_or(0) as usize,
        })
    }
}

/// The events directory.
#[derive(Debug)]
pub struct EventDisk {
    dir: PathBuf,
    keep: usize,
    budget: u64,
    /// Per kept event with snapshots, in id order: (id, snapshot bytes, mapped to a camera).
    usage: std::sync::Mutex<std::collections::VecDeque<(u64, u64, bool)>>,
}

/// What [`EventDisk::save`] did: the event as stored, and the older events whose snapshots it
/// removed to stay within the byte budget (their records now list none).
#[derive(Debug)]
pub struct Saved {
    /// The event as stored.
    pub event: DiskEvent,
    /// Ids of older events left without snapshots.
    pub stripped: Vec<u64>,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes `data` to `dir/name` crash-safely: `name.tmp`, sync, rename.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))
}

fn id_of(name: &str) -> Option<u64> {
    (name.len() == 10 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

impl EventDisk {
    /// Opens (creating) `dir`: the complete events found, oldest first, and the highest id ever
    /// used there (0 for none). Directories a crash left without `event.json` are removed.
    pub fn open(dir: &Path) -> io::Result<(EventDisk, Vec<DiskEvent>, u64)> {
        Self::open_keeping(dir, KEEP_EVENTS)
    }

    /// [`EventDisk::open`], keeping `keep` events instead of [`KEEP_EVENTS`].
    pub fn open_keeping(dir: &Path, keep: usize) -> io::Result<(EventDisk, Vec<DiskEvent>, u64)> {
        Self::open_with(dir, keep, MAX_STORED_SNAPSHOT_BYTES)
    }

    /// [`EventDisk::open_keeping`] with `budget` snapshot bytes in all instead of
    /// [`MAX_STORED_SNAPSHOT_BYTES`] (enforced at the next save).
    pub fn open_with(
        dir: &Path,
        keep: usize,
        budget: u64,
    ) -> io::Result<(EventDisk, Vec<DiskEvent>, u64)> {
        fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(id) = entry.file_name().to_str().and_then(id_of) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let last = ids.last().copied().unwrap_or(0);
        let disk = EventDisk {
            dir: dir.to_owned(),
            keep,
            budget,
            usage: Default::default(),
        };
        let mut events = Vec::new();
        for id in ids {
            match disk.read_record(id) {
                Some(e) => events.push(e),
                None => {
                    tracing::warn!(
                        "event {id} on disk is incomplete or unreadable (a crash while writing it): removed"
                    );
                    let _ = fs::remove_dir_all(disk.event_dir(id));
                }
            }
        }
        let excess = events.len().saturating_sub(keep);
        for e in events.drain(..excess) {
            let _ = fs::remove_dir_all(disk.event_dir(e.id));
        }
        if let Ok(mut u) = disk.usage.lock() {
            u.extend(events.iter().filter(|e| !e.snapshots.is_empty()).map(|e| {
                let bytes = e.snapshots.iter().map(|s| s.size as u64).sum();
                (e.id, bytes, !e.cameras.is_empty())
            }));
        }
        Ok((disk, events, last))
    }

    /// Event `id`'s record from disk, if complete and readable (bounded read).
    fn read_record(&self, id: u64) -> Option<DiskEvent> {
        let path = self.event_dir(id).join("event.json");
        let mut b = Vec::new();
        let f = fs::File::open(path).ok()?;
        io::Read::read_to_end(&mut io::Read::take(f, MAX_RECORD_BYTES + 1), &mut b).ok()?;
        if b.len() as u64 > MAX_RECORD_BYTES {
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&b)
            .ok()
            .and_then(|v| DiskEvent::from_json(&v))
            .filter(|e| e.id == id)
    }

    /// Removes snapshots, oldest unmapped events first, then the oldest mapped, until the
    /// snapshot bytes are within the budget; returns the events stripped.
    fn enforce_budget(&self) -> Vec<u64> {
        let Ok(mut usage) = self.usage.lock() else {
            return Vec::new();
        };
        let mut total: u64 = usage.iter().map(|u| u.1).sum();
        let mut stripped = Vec::new();
        while total > self.budget {
            let Some(i) = usage
                .iter()
                .position(|u| !u.2)
                .or((!usage.is_empty()).then_some(0))
            else {
                break;
            };
            let Some((id, bytes, _)) = usage.remove(i) else {
                break;
            };
            total -= bytes;
            if let Err(e) = self.strip(id) {
                tracing::warn!(id, "event snapshots not removed: {e}");
            }
            stripped.push(id);
        }
        if !stripped.is_empty() {
            tracing::info!(
                events = stripped.len(),
                budget = self.budget,
                "event snapshots over the byte budget: the oldest (unmapped first) removed"
            );
        }
        stripped
    }

    /// Removes event `id`'s snapshot files; its record then lists them as dropped (rewritten
    /// first, so a crash between leaves a record without files rather than the reverse).
    fn strip(&self, id: u64) -> io::Result<()> {
        let dir = self.event_dir(id);
        let Some(mut e) = self.read_record(id) else {
            return fs::remove_dir_all(dir);
        };
        let files: Vec<String> = e
            .snapshots
            .iter()
            .enumerate()
            .map(|(n, s)| s.file(n))
            .collect();
        e.dropped_snapshots += e.snapshots.len();
        e.snapshots.clear();
        let record = serde_json::to_vec(&e.to_json()).map_err(io::Error::other)?;
        write_atomic(&dir, "event.json", &record)?;
        for f in files {
            let _ = fs::remove_file(dir.join(f));
        }
        sync_dir(&dir)
    }

    fn event_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:010}"))
    }

    /// Stores an event with the snapshots of its mail, within the caps; returns it as stored.
    /// Durable when this returns. Removes the oldest events beyond the number kept, and the
    /// snapshots of older events past the byte budget ([`Saved::stripped`]).
    pub fn save(&self, mut event: DiskEvent, snapshots: &[Snapshot]) -> io::Result<Saved> {
        let dir = self.event_dir(event.id);
        fs::create_dir(&dir)?;
        sync_dir(&self.dir)?;
        let mut total = 0usize;
        event.snapshots.clear();
        event.dropped_snapshots = 0;
        for s in snapshots {
            let image = matches!(s.content_type.as_str(), "image/jpeg" | "image/png");
            if !image
                || s.data.is_empty()
                || s.data.len() > MAX_SNAPSHOT_BYTES
                || total + s.data.len() > MAX_EVENT_SNAPSHOT_BYTES
                || event.snapshots.len() == MAX_SNAPSHOTS
            {
                event.dropped_snapshots += 1;
                continue;
            }
            let stored = StoredSnapshot {
                name: nvrkit_store::note::truncate(&s.name, 256),
                content_type: s.content_type.clone(),
                size: s.data.len(),
            };
            write_atomic(&dir, &stored.file(event.snapshots.len()), &s.data)?;
            total += s.data.len();
            event.snapshots.push(stored);
        }
        let record = serde_json::to_vec(&event.to_json()).map_err(io::Error::other)?;
        write_atomic(&dir, "event.json", &record)?;
        sync_dir(&dir)?;
        if let Some(old) = event.id.checked_sub(self.keep as u64) {
            self.prune(old);
        }
        if let Ok(mut u) = self.usage.lock() {
            if let Some(old) = event.id.checked_sub(self.keep as u64) {
                u.retain(|x| x.0 > old);
            }
            if total > 0 {
                u.push_back((event.id, total as u64, !event.cameras.is_empty()));
            }
        }
        let stripped = self.enforce_budget();
        if stripped.contains(&event.id) {
            event.dropped_snapshots += event.snapshots.len();
            event.snapshots.clear();
        }
        Ok(Saved { event, stripped })
    }

    /// Removes events with ids up to `upto`.
    fn prune(&self, upto: u64) {
        let Ok(list) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in list.flatten() {
            if let Some(id) = entry.file_name().to_str().and_then(id_of)
                && id <= upto
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    /// The bytes of snapshot `n` of `event`.
    pub fn snapshot(&self, event: &DiskEvent, n: usize) -> io::Result<Vec<u8>> {
        let s = event
            .snapshots
            .get(n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such snapshot"))?;
        let f = fs::File::open(self.event_dir(event.id).join(s.file(n)))?;
        let mut out = Vec::with_capacity(s.size.min(MAX_SNAPSHOT_BYTES));
        io::Read::read_to_end(&mut io::Read::take(f, MAX_SNAPSHOT_BYTES as u64), &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, ct: &str, len: usize) -> Snapshot {
        Snapshot::new(name.into(), ct.into(), vec![0xFF; len].into())
    }

    fn event(id: u64) -> DiskEvent {
        DiskEvent {
            id,
            received_at: WallTime::parse_rfc3339("2026-12-03T10:00:00Z").unwrap(),
            cameras: vec!["demo".into()],
            reason: "recipient demo@nvr".into(),
            json: json!({"kind": "motion"}),
            snapshots: Vec::new(),
            dropped_snapshots: 0,
        }
    }

    #[test]
    fn every_snapshot_is_stored_within_the_caps_and_read_back_after_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, found, last) = EventDisk::open(tmp.path()).unwrap();
        assert!(found.is_empty());
        assert_eq!(last, 0);
        let mut mail = vec![
            snap("a.jpg", "image/jpeg", 1000),
            snap("b.png", "image/png", 2000),
            snap("x.exe", "application/octet-stream", 10),
            snap("huge.jpg", "image/jpeg", MAX_SNAPSHOT_BYTES + 1),
        ];
        mail.extend((0..20).map(|i| snap(&format!("{i}.jpg"), "image/jpeg", 100)));
        let saved = disk.save(event(1), &mail).unwrap().event;
        assert_eq!(saved.snapshots.len(), MAX_SNAPSHOTS);
        assert_eq!(saved.dropped_snapshots, mail.len() - MAX_SNAPSHOTS);
        assert_eq!(disk.snapshot(&saved, 1).unwrap().len(), 2000);
        drop(disk);
        let (disk, found, last) = EventDisk::open(tmp.path()).unwrap();
        assert_eq!(last, 1);
        assert_eq!(found, vec![saved.clone()]);
        assert_eq!(disk.snapshot(&found[0], 0).unwrap(), vec![0xFF; 1000]);
        assert!(disk.snapshot(&found[0], MAX_SNAPSHOTS).is_err());
    }

    #[test]
    fn an_event_a_crash_cut_short_is_removed_and_its_id_not_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, _, _) = EventDisk::open(tmp.path()).unwrap();
        disk.save(event(1), &[snap("a.jpg", "image/jpeg", 10)])
            .unwrap();
        // A crash after the snapshot, before event.json: a directory and a temporary file.
        let cut = tmp.path().join(format!("{:010}", 2));
        fs::create_dir(&cut).unwrap();
        fs::write(cut.join("0.jpg.tmp"), b"half").unwrap();
        // And a record that is not one.
        let bad = tmp.path().join(format!("{:010}", 3));
        fs::create_dir(&bad).unwrap();
        fs::write(bad.join("event.json"), b"{\"id\": 3").unwrap();
        let (_, found, last) = EventDisk::open(tmp.path()).unwrap();
        assert_eq!(found.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
        assert_eq!(last, 3, "ids seen on disk are not given again");
        assert!(!cut.exists() && !bad.exists());
    }

    /// H6 (review-nvr.md): snapshots beyond the byte budget go, the oldest unmapped events'
    /// first; their records stay, listing them as dropped, also after a reopen.
    #[test]
    fn snapshots_past_the_byte_budget_go_unmapped_first() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, _, _) = EventDisk::open_with(tmp.path(), 100, 10_000).unwrap();
        let unmapped = |id| DiskEvent {
            cameras: Vec::new(),
            ..event(id)
        };
        let jpeg = || [snap("a.jpg", "image/jpeg", 3000)];
        assert!(disk.save(event(1), &jpeg()).unwrap().stripped.is_empty());
        assert!(disk.save(unmapped(2), &jpeg()).unwrap().stripped.is_empty());
        assert!(disk.save(unmapped(3), &jpeg()).unwrap().stripped.is_empty());
        // 12,000 > 10,000: the oldest unmapped (2) goes, not the older mapped one (1).
        assert_eq!(disk.save(event(4), &jpeg()).unwrap().stripped, [2]);
        assert_eq!(disk.save(event(5), &jpeg()).unwrap().stripped, [3]);
        // No unmapped left: the oldest mapped.
        assert_eq!(disk.save(event(6), &jpeg()).unwrap().stripped, [1]);
        assert!(!tmp.path().join("0000000002/0.jpg").exists());
        drop(disk);
        let (disk, found, _) = EventDisk::open_with(tmp.path(), 100, 10_000).unwrap();
        let with: Vec<u64> = found
            .iter()
            .filter(|e| !e.snapshots.is_empty())
            .map(|e| e.id)
            .collect();
        assert_eq!(with, [4, 5, 6]);
        assert_eq!(found[1].dropped_snapshots, 1, "{:?}", found[1]);
        assert_eq!(disk.snapshot(&found[3], 0).unwrap().len(), 3000);
        // The budget holds across the reopen.
        assert_eq!(disk.save(event(7), &jpeg()).unwrap().stripped, [4]);
    }

    #[test]
    fn old_events_beyond_the_cap_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, _, _) = EventDisk::open_keeping(tmp.path(), 10).unwrap();
        for id in 1..=13 {
            disk.save(event(id), &[]).unwrap();
        }
        let (_, found, last) = EventDisk::open_keeping(tmp.path(), 10).unwrap();
        assert_eq!(last, 13);
        assert_eq!(found.len(), 10);
        assert_eq!(found[0].id, 4);
        // Fewer kept on a later start: the oldest go.
        let (_, found, _) = EventDisk::open_keeping(tmp.path(), 5).unwrap();
        assert_eq!(
            found.iter().map(|e| e.id).collect::<Vec<_>>(),
            [9, 10, 11, 12, 13]
        );
    }
}

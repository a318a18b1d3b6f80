//! The replication queue: a durable journal beside the store that says which sealed segments a
//! backup target still lacks, how valuable each is, and how far a multipart upload got.
//!
//! ```text
//! STORE/.replicate/
//!   queue.jsonl     the journal: one JSON record per line, appended and synced
//!   queue.lock      flock held while appending or compacting (writers and replicators may be
//!                   different processes)
//! ```
//!
//! The store appends a [`Record::Seal`] in the same step that seals a segment (after its sidecar,
//! also for segments sealed by crash recovery) and a [`Record::Tag`] in the same step that tags
//! a range, whenever the journal exists: a replicator creates it ([`Journal::create`]) and seeds
//! it with the footage already stored. A replicator appends what it did: [`Record::Done`] after
//! an upload is verified, [`Record::Upload`] and [`Record::Part`] while a multipart upload is under
//! way (so a restart re-sends at most the part in flight), [`Record::Skip`] for footage its policy
//! leaves out. Retention reads the journal so it does not delete footage not yet replicated
//! unless the free-space guard forces it ([`Record::Lost`]).
//!
//! The journal is folded into a [`QueueState`] by [`parse`] and [`QueueState::apply`]; it is
//! rewritten (compacted) to the records of unfinished entries by [`Journal::compact`]. A torn last
//! line (a crash while appending) is ignored, and so is any line this version does not
//! understand: the parser treats the file as untrusted (the `store_queue` fuzz target).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io as sio;
use crate::meta::{SegmentMeta, Tag};

/// The queue's directory in a store's root.
pub const DIR: &str = ".replicate";
/// The journal's file name.
pub const FILE: &str = "queue.jsonl";
/// The lock file's name.
pub const LOCK_FILE: &str = "queue.lock";
/// Lines longer than this are not records (a seal line is about 250 bytes).
pub const MAX_LINE: usize = 64 << 10;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Record {
    /// A replication target, named by its URL (`s3://bucket/site`, `/mnt/backup`). Every
    /// registered target must have an entry done (or skipped) before the entry leaves the queue.
    Target {
        /// The target's URL.
        target: String,
    },
    /// A segment was sealed: it is to be replicated.
    Seal {
        /// The camera.
        camera: String,
        /// Its start (its key), wall-clock µs.
        start_us: i64,
        /// Its end, wall-clock µs.
        end_us: i64,
        /// Its length in bytes.
        bytes: u64,
        /// Its BLAKE3, lowercase hex.
        blake3: String,
        /// The tags of the ranges it overlapped when it was sealed.
        #[serde(default)]
        tags: Vec<Tag>,
    },
    /// A range was tagged: segments of it already queued get the tag.
    Tag {
        /// The camera.
        camera: String,
        /// The tag.
        tag: Tag,
        /// Start of the range, wall-clock µs.
        from_us: i64,
        /// End of the range (exclusive), wall-clock µs.
        to_us: i64,
    },
    /// The target holds a verified copy of the segment.
    Done {
        /// The target's URL.
        target: String,
        /// The camera.
        camera: String,
        /// The segment's start.
        start_us: i64,
    },
    /// The target's policy leaves the segment out (continuous footage with no motion).
    Skip {
        /// The target's URL.
        target: String,
        /// The camera.
        camera: String,
        /// The segment's start.
        start_us: i64,
    },
    /// A multipart upload of the segment was started.
    Upload {
        /// The target's URL.
        target: String,
        /// The camera.
        camera: String,
        /// The segment's start.
        start_us: i64,
        /// The target's id of the upload.
        upload_id: String,
        /// Bytes per part (the last one may be shorter).
        part_size: u64,
    },
    /// A part of a multipart upload arrived (the target answered with its id).
    Part {
        /// The target's URL.
        target: String,
        /// The camera.
        camera: String,
        /// The segment's start.
        start_us: i64,
        /// The part's index, from 0.
        n: u32,
        /// The target's id of the part (for S3 its ETag).
        etag: String,
    },
    /// The multipart upload was abandoned (the target forgot it); the next try starts anew.
    Abort {
        /// The target's URL.
        target: String,
        /// The camera.
        camera: String,
        /// The segment's start.
        start_us: i64,
    },
    /// The segment was deleted locally before every target had it (the free-space guard).
    Lost {
        /// The camera.
        camera: String,
        /// The segment's start.
        start_us: i64,
    },
}

/// A multipart upload in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upload {
    /// The target's id of the upload.
    pub upload_id: String,
    /// Bytes per part.
    pub part_size: u64,
    /// Parts the target has, by index: their ids.
    pub parts: BTreeMap<u32, String>,
}

/// A queued segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The camera.
    pub camera: String,
    /// Start, wall-clock µs.
    pub start_us: i64,
    /// End, wall-clock µs.
    pub end_us: i64,
    /// Length in bytes.
    pub bytes: u64,
    /// BLAKE3, hex.
    pub blake3: String,
    /// Its tags (at seal, plus later tags of overlapping ranges).
    pub tags: BTreeSet<Tag>,
    /// Index of the record that queued it (the order segments arrived in).
    pub seq: u64,
    /// Targets that hold a verified copy.
    pub done: BTreeSet<String>,
    /// Targets whose policy leaves it out.
    pub skipped: BTreeSet<String>,
    /// Multipart uploads in progress, by target.
    pub uploads: BTreeMap<String, Upload>,
}

impl Entry {
    /// The start as a [`WallTime`](nvrkit_media::WallTime).
    pub fn start(&self) -> nvrkit_media::WallTime {
        nvrkit_media::WallTime::from_micros(self.start_us)
    }

    /// The end as a [`WallTime`](nvrkit_media::WallTime).
    pub fn end(&self) -> nvrkit_media::WallTime {
        nvrkit_media::WallTime::from_micros(self.end_us)
    }

    /// Finished for `target`: done or skipped.
    pub fn finished_for(&self, target: &str) -> bool {
        self.done.contains(target) || self.skipped.contains(target)
    }
}

/// The journal folded: registered targets and unfinished segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Registered targets.
    pub targets: BTreeSet<String>,
    /// Segments by (camera, start).
    pub entries: BTreeMap<(String, i64), Entry>,
    /// Segments recorded as lost before replication.
    pub lost: u64,
    /// Records applied.
    pub records: u64,
}

impl QueueState {
    /// Folds records into a state.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> QueueState {
        let mut s = QueueState::default();
        for r in records {
            s.apply(r);
        }
        s
    }

    /// Applies one record. Records about segments not queued are ignored (a done line for a
    /// segment compacted away, a part of an entry already finished).
    pub fn apply(&mut self, r: &Record) {
        let seq = self.records;
        self.records += 1;
        match r {
            Record::Target { target } => {
                self.targets.insert(target.clone());
            }
            Record::Seal {
                camera,
                start_us,
                end_us,
                bytes,
                blake3,
                tags,
            } => {
                let e = self
                    .entries
                    .entry((camera.clone(), *start_us))
                    .or_insert_with(|| Entry {
                        camera: camera.clone(),
                        start_us: *start_us,
                        end_us: *end_us,
                        bytes: *bytes,
                        blake3: blake3.clone(),
                        tags: BTreeSet::new(),
                        seq,
                        done: BTreeSet::new(),
                        skipped: BTreeSet::new(),
                        uploads: BTreeMap::new(),
                    });
                if e.bytes != *bytes || e.blake3 != *blake3 {
                    // The same start with other content (re-sealed after a repair): the old
                    // copies and uploads are of other bytes.
                    e.bytes = *bytes;
                    e.blake3.clone_from(blake3);
                    e.done.clear();
                    e.uploads.clear();
                }
                e.end_us = *end_us;
                e.tags.extend(tags.iter().copied());
            }
            Record::Tag {
                camera,
                tag,
                from_us,
                to_us,
            } => {
                let lo = (camera.clone(), i64::MIN);
                let hi = (camera.clone(), *to_us);
                for (_, e) in self.entries.range_mut(lo..hi) {
                    let end = e.end_us.max(e.start_us.saturating_add(1));
                    if e.start_us < *to_us && end > *from_us {
                        e.tags.insert(*tag);
                        // A motion or event tag brings skipped footage back.
                        if matches!(tag, Tag::Motion | Tag::Event | Tag::Pinned) {
                            e.skipped.clear();
                        }
                    }
                }
            }
            Record::Done {
                target,
                camera,
                start_us,
            } => {
                if let Some(e) = self.entries.get_mut(&(camera.clone(), *start_us)) {
                    e.done.insert(target.clone());
                    e.uploads.remove(target);
                }
            }
            Record::Skip {
                target,
                camera,
                start_us,
            } => {
                if let Some(e) = self.entries.get_mut(&(camera.clone(), *start_us)) {
                    e.skipped.insert(target.clone());
                }
            }
            Record::Upload {
                target,
                camera,
                start_us,
                upload_id,
                part_size,
            } => {
                if let Some(e) = self.entries.get_mut(&(camera.clone(), *start_us)) {
                    e.uploads.insert(
                        target.clone(),
                        Upload {
                            upload_id: upload_id.clone(),
                            part_size: *part_size,
                            parts: BTreeMap::new(),
                        },
                    );
                }
            }
            Record::Part {
                target,
                camera,
                start_us,
                n,
                etag,
            } => {
                if let Some(u) = self
                    .entries
                    .get_mut(&(camera.clone(), *start_us))
                    .and_then(|e| e.uploads.get_mut(target))
                {
                    u.parts.insert(*n, etag.clone());
                }
            }
            Record::Abort {
                target,
                camera,
                start_us,
            } => {
                if let Some(e) = self.entries.get_mut(&(camera.clone(), *start_us)) {
                    e.uploads.remove(target);
                }
            }
            Record::Lost { camera, start_us } => {
                if self.entries.remove(&(camera.clone(), *start_us)).is_some() {
                    self.lost += 1;
                }
            }
        }
    }

    /// True when some registered target still lacks the segment (and does not skip it).
    pub fn is_pending(&self, camera: &str, start_us: i64) -> bool {
        self.entries
            .get(&(camera.to_owned(), start_us))
            .is_some_and(|e| self.targets.iter().any(|t| !e.finished_for(t)))
    }

    /// The segments some registered target still lacks.
    pub fn pending_keys(&self) -> HashSet<(String, i64)> {
        self.entries
            .values()
            .filter(|e| self.targets.iter().any(|t| !e.finished_for(t)))
            .map(|e| (e.camera.clone(), e.start_us))
            .collect()
    }

    /// The records that rebuild this state without finished entries: what compaction writes.
    pub fn compacted(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .targets
            .iter()
            .map(|t| Record::Target { target: t.clone() })
            .collect();
        let mut entries: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| self.targets.is_empty() || self.targets.iter().any(|t| !e.finished_for(t)))
            .collect();
        // Keep the order they arrived in: the replicator's notion of backlog depends on it.
        entries.sort_by_key(|e| e.seq);
        for e in entries {
            let k = |target: &String| (target.clone(), e.camera.clone(), e.start_us);
            out.push(Record::Seal {
                camera: e.camera.clone(),
                start_us: e.start_us,
                end_us: e.end_us,
                bytes: e.bytes,
                blake3: e.blake3.clone(),
                tags: e.tags.iter().copied().collect(),
            });
            for t in &e.done {
                let (target, camera, start_us) = k(t);
                out.push(Record::Done {
                    target,
                    camera,
                    start_us,
                });
            }
            for t in &e.skipped {
                let (target, camera, start_us) = k(t);
                out.push(Record::Skip {
                    target,
                    camera,
                    start_us,
                });
            }
            for (t, u) in &e.uploads {
                let (target, camera, start_us) = k(t);
                out.push(Record::Upload {
                    target: target.clone(),
                    camera: camera.clone(),
                    start_us,
                    upload_id: u.upload_id.clone(),
                    part_size: u.part_size,
                });
                for (n, etag) in &u.parts {
                    out.push(Record::Part {
                        target: target.clone(),
                        camera: camera.clone(),
                        start_us,
                        n: *n,
                        etag: etag.clone(),
                    });
                }
            }
        }
        out
    }
}

/// Parses journal bytes: the records, and the length of the prefix of complete lines (a torn
/// last line is left out). Lines that are not records this version knows are skipped.
pub fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut valid = 0;
    let mut pos = 0;
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let line = &bytes[pos..pos + nl];
        pos += nl + 1;
        valid = pos;
        if line.len() > MAX_LINE || line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Ok(r) = serde_json::from_slice::<Record>(line)
            && r.is_valid()
        {
            out.push(r);
        }
    }
    (out, valid)
}

impl Record {
    /// One line of JSON with its newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    fn is_valid(&self) -> bool {
        match self {
            Record::Seal {
                camera,
                start_us,
                end_us,
                blake3,
                ..
            } => {
                crate::layout::check_camera(camera).is_ok()
                    && end_us >= start_us
                    && blake3.len() == 64
                    && blake3.bytes().all(|b| b.is_ascii_hexdigit())
            }
            Record::Tag {
                camera,
                from_us,
                to_us,
                ..
            } => crate::layout::check_camera(camera).is_ok() && from_us < to_us,
            Record::Upload { part_size, .. } => *part_size > 0,
            _ => true,
        }
    }
}

/// Where a reader of the journal is: which file (inode) and how far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalPos {
    ino: u64,
    offset: u64,
}

/// The journal of a store (see the module docs).
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

struct Locked {
    _file: File,
}

impl Journal {
    /// The journal of the store at `root`, if replication was ever set up there.
    pub fn open(root: &Path) -> Option<Journal> {
        let dir = root.join(DIR);
        dir.join(FILE).is_file().then_some(Journal { dir })
    }

    /// Creates the journal of the store at `root` (or opens it if it exists). Returns the
    /// journal and whether it was created now.
    pub fn create(root: &Path) -> Result<(Journal, bool)> {
        if let Some(j) = Journal::open(root) {
            return Ok((j, false));
        }
        let dir = root.join(DIR);
        sio::create_dirs(&dir)?;
        let j = Journal { dir };
        let _l = j.lock()?;
        let path = j.path();
        let created = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => {
                f.sync_all().map_err(|e| Error::io(&path, e))?;
                sio::sync_dir(&j.dir)?;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(Error::io(&path, e)),
        };
        Ok((j, created))
    }

    /// The journal file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    fn lock(&self) -> Result<Locked> {
        let path = self.dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.lock().map_err(|e| Error::io(&path, e))?;
        Ok(Locked { _file: f })
    }

    /// Appends records and syncs them: durable when this returns.
    pub fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&r.to_line());
        }
        let _l = self.lock()?;
        let path = self.path();
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // A torn line left by a crash must not swallow this one.
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            let mut r = File::open(&path).map_err(|e| Error::io(&path, e))?;
            r.seek(SeekFrom::Start(len - 1))
                .and_then(|_| r.read_exact(&mut last))
                .map_err(|e| Error::io(&path, e))?;
            if last[0] != b'\n' {
                buf.insert(0, b'\n');
            }
        }
        f.write_all(&buf)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io(&path, e))
    }

    /// Reads the records after `pos` (from the start for the default position, or when the file
    /// was replaced by compaction since: then `true` is returned with every record).
    pub fn read_from(&self, pos: JournalPos) -> Result<(Vec<Record>, JournalPos, bool)> {
        let path = self.path();
        let mut f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = f.metadata().map_err(|e| Error::io(&path, e))?;
        let (start, replaced) = if meta.ino() == pos.ino && pos.offset <= meta.len() {
            (pos.offset, false)
        } else {
            (0, pos != JournalPos::default())
        };
        f.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(&path, e))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?;
        let (records, valid) = parse(&bytes);
        Ok((
            records,
            JournalPos {
                ino: meta.ino(),
                offset: start + valid as u64,
            },
            replaced,
        ))
    }

    /// Reads and folds the whole journal.
    pub fn state(&self) -> Result<QueueState> {
        let (records, _, _) = self.read_from(JournalPos::default())?;
        Ok(QueueState::from_records(&records))
    }

    /// Rewrites the journal to [`QueueState::compacted`] of its current content (temporary
    /// file, sync, rename, directory sync), under the lock so no append is lost. Returns the
    /// state and the position at the end of the new file.
    pub fn compact(&self) -> Result<(QueueState, JournalPos)> {
        let _l = self.lock()?;
        let state = self.state()?;
        let mut bytes = Vec::new();
        for r in state.compacted() {
            bytes.extend_from_slice(&r.to_line());
        }
        let path = self.path();
        sio::write_atomic(&path, &bytes)?;
        let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        // Fold the compacted records again: the state a reader from the new file sees (the
        // same entries, with `seq` renumbered).
        let (records, _) = parse(&bytes);
        Ok((
            QueueState::from_records(&records),
            JournalPos {
                ino: meta.ino(),
                offset: meta.len(),
            },
        ))
    }
}

/// The record that queues a sealed segment.
pub fn seal_record(camera: &str, m: &SegmentMeta, tags: &BTreeSet<Tag>) -> Record {
    Record::Seal {
        camera: camera.to_owned(),
        start_us: m.start_us,
        end_us: m.end_us,
        bytes: m.bytes,
        blake3: m.blake3.clone(),
        tags: tags.iter().copied().collect(),
    }
}

/// Appends to the journal of the store at `root` if it has one; a failure is logged, not
/// returned (recording must not stop because the backup queue cannot be written).
pub(crate) fn hook(root: &Path, records: &[Record]) {
    if let Some(j) = Journal::open(root)
        && let Err(e) = j.append(records)
    {
        tracing::error!("replication queue: {e}: these segments may not be replicated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(camera: &str, start: i64, tags: &[Tag]) -> Record {
        Record::Seal {
            camera: camera.into(),
            start_us: start,
            end_us: start + 10,
            bytes: 100,
            blake3: "a".repeat(64),
            tags: tags.to_vec(),
        }
    }

    #[test]
    fn fold_tags_done_and_compaction() {
        let t = "s3://b/site".to_string();
        let records = vec![
            Record::Target { target: t.clone() },
            seal("front", 0, &[]),
            seal("front", 10, &[Tag::Motion]),
            seal("yard", 0, &[]),
            Record::Tag {
                camera: "front".into(),
                tag: Tag::Event,
                from_us: 5,
                to_us: 12,
            },
            Record::Done {
                target: t.clone(),
                camera: "yard".into(),
                start_us: 0,
            },
            Record::Upload {
                target: t.clone(),
                camera: "front".into(),
                start_us: 10,
                upload_id: "u1".into(),
                part_size: 50,
            },
            Record::Part {
                target: t.clone(),
                camera: "front".into(),
                start_us: 10,
                n: 0,
                etag: "\"e0\"".into(),
            },
        ];
        let s = QueueState::from_records(&records);
        let e0 = &s.entries[&("front".to_string(), 0)];
        let e1 = &s.entries[&("front".to_string(), 10)];
        assert!(e0.tags.contains(&Tag::Event) && e1.tags.contains(&Tag::Event));
        assert!(e1.tags.contains(&Tag::Motion));
        assert_eq!(e1.uploads[&t].parts.len(), 1);
        assert!(!s.is_pending("yard", 0));
        assert!(s.is_pending("front", 0));
        let c = s.compacted();
        // The done entry is gone; the upload and its part survive.
        let s2 = QueueState::from_records(&c);
        assert_eq!(s2.entries.len(), 2);
        assert_eq!(
            s2.entries[&("front".to_string(), 10)].uploads,
            e1.uploads.clone()
        );
        assert_eq!(s2.pending_keys(), s.pending_keys());
    }

    #[test]
    fn torn_and_unknown_lines_are_skipped() {
        let mut bytes = seal("front", 0, &[]).to_line();
        bytes.extend_from_slice(b"{\"op\":\"hologram\"}\n");
        bytes.extend_from_slice(b"not json\n");
        bytes.extend_from_slice(
            br#"{"op":"seal","camera":"../x","start_us":0,"end_us":1,"bytes":1,"blake3":"""#,
        );
        bytes.extend_from_slice(b"\n");
        let valid_len = bytes.len();
        bytes.extend_from_slice(b"{\"op\":\"se");
        let (records, valid) = parse(&bytes);
        assert_eq!(valid, valid_len);
        assert_eq!(records, vec![seal("front", 0, &[])]);
    }

    #[test]
    fn journal_appends_reads_incrementally_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let (j, created) = Journal::create(dir.path()).unwrap();
        assert!(created);
        assert!(!Journal::create(dir.path()).unwrap().1);
        let t = "/backup".to_string();
        j.append(&[Record::Target { target: t.clone() }, seal("a", 0, &[])])
            .unwrap();
        let (r, pos, replaced) = j.read_from(JournalPos::default()).unwrap();
        assert_eq!((r.len(), replaced), (2, false));
        // A crash left half a line: the next append starts a new one.
        let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
        f.write_all(b"{\"op\":\"do").unwrap();
        j.append(&[
            seal("a", 10, &[]),
            Record::Done {
                target: t.clone(),
                camera: "a".into(),
                start_us: 0,
            },
        ])
        .unwrap();
        let (r, pos2, _) = j.read_from(pos).unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
        let (state, pos3) = j.compact().unwrap();
        assert_eq!(state.entries.len(), 1);
        let (r, _, replaced) = j.read_from(pos2).unwrap();
        assert!(replaced);
        assert_eq!(r.len(), 2); // target + the one pending seal
        let (r, _, replaced) = j.read_from(pos3).unwrap();
        assert!(r.is_empty() && !replaced);
    }
}

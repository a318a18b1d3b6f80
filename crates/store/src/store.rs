//! [`Store`]: opening a store directory, recovering what a crash left, the in-memory index, range
//! queries and tags.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nvrkit_media::{Demuxer, WallTime};

use crate::error::{Error, Result};
use crate::fragments;
use crate::io::{self as sio, Lock, WriteBack};
use crate::layout::{self, SegmentPaths};
use crate::meta::{
    DaySummary, FORMAT_VERSION, SegmentMeta, Tag, TagOp, TagRange, TagRecord, apply_tag_log,
    parse_tag_log,
};
use crate::queue;
use crate::retention::RetentionPolicy;
use crate::segment;

/// How a store is opened for writing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Target segment length: a segment is cut at the first keyframe at or after it
    /// (default 60 s).
    pub segment_duration: Duration,
    /// How segment data reaches the disk before sealing (default [`WriteBack::Early`]).
    pub write_back: WriteBack,
    /// Retention run after every sealed segment, if any (default none).
    pub retention: Option<RetentionPolicy>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_duration: Duration::from_secs(60),
            write_back: WriteBack::Early,
            retention: None,
        }
    }
}

impl Options {
    /// Sets the target segment length.
    pub fn segment_duration(mut self, d: Duration) -> Self {
        self.segment_duration = d;
        self
    }

    /// Sets the write-back mode.
    pub fn write_back(mut self, w: WriteBack) -> Self {
        self.write_back = w;
        self
    }

    /// Sets the retention policy applied after each sealed segment.
    pub fn retention(mut self, p: RetentionPolicy) -> Self {
        self.retention = Some(p);
        self
    }
}

/// A segment as listed by [`Store::segments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The camera.
    pub camera: String,
    /// Start (the segment's key).
    pub start: WallTime,
    /// End of its last frame (for an open segment: of its last complete fragment).
    pub end: WallTime,
    /// Bytes on disk.
    pub bytes: u64,
    /// The MP4 file.
    pub path: PathBuf,
    /// Still being written (no sidecar yet).
    pub open: bool,
    /// Tags of the ranges it overlaps.
    pub tags: BTreeSet<Tag>,
    /// The sidecar (for an open segment: what its complete fragments say, without a hash).
    pub meta: SegmentMeta,
}

/// A run of contiguous footage (segments with no gap and no discontinuity between them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Start of the first segment.
    pub start: WallTime,
    /// End of the last segment.
    pub end: WallTime,
    /// Number of segments.
    pub segments: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// Tags of any of its segments.
    pub tags: BTreeSet<Tag>,
}

/// What opening a store for writing had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments a crash left open, sealed now (their incomplete last fragment cut off).
    pub sealed: Vec<PathBuf>,
    /// Bytes cut off those segments.
    pub cut_bytes: u64,
    /// Files removed: segments with no complete fragment, sidecars without a segment,
    /// temporary files.
    pub removed: Vec<PathBuf>,
    /// Segments that could not be read as MP4, renamed to `NAME.mp4.corrupt` (never deleted).
    pub quarantined: Vec<PathBuf>,
}

/// A problem found while opening (read-only) or verifying a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub what: String,
}

/// Gaps up to this long between two segments still count as one recording (a segment ends
/// where its last frame ends, the next starts at its first keyframe's clock reading).
const CONTIGUOUS_US: i64 = 1_000_000;

#[derive(Debug, Default)]
pub(crate) struct Camera {
    pub(crate) segments: BTreeMap<i64, SegmentMeta>,
    /// Longest segment, so a range query can start early enough.
    pub(crate) max_len_us: i64,
    pub(crate) bytes: u64,
    pub(crate) tags: Vec<TagRange>,
    pub(crate) open: Option<OpenInfo>,
    pub(crate) writer: bool,
}

/// The segment a writer (of this process, or, for a read-only store, of another) has open.
#[derive(Debug, Clone)]
pub(crate) struct OpenInfo {
    pub(crate) meta: SegmentMeta,
}

impl Camera {
    fn insert(&mut self, m: SegmentMeta) {
        self.max_len_us = self.max_len_us.max(m.duration_us());
        self.bytes += m.bytes;
        if let Some(old) = self.segments.insert(m.start_us, m) {
            self.bytes -= old.bytes;
        }
    }

    pub(crate) fn remove(&mut self, start_us: i64) -> Option<SegmentMeta> {
        let m = self.segments.remove(&start_us)?;
        self.bytes -= m.bytes;
        Some(m)
    }

    /// Sealed segments overlapping `[from, to)`, in start order.
    pub(crate) fn overlapping(&self, from: i64, to: i64) -> impl Iterator<Item = &SegmentMeta> {
        let lo = from.saturating_sub(self.max_len_us);
        self.segments
            .range(lo..to.max(lo))
            .map(|(_, m)| m)
            .filter(move |m| m.end_us > from || (m.start_us >= from && m.end_us == m.start_us))
    }

    pub(crate) fn tags_of(&self, start: i64, end: i64) -> BTreeSet<Tag> {
        let end = end.max(start + 1);
        self.tags
            .iter()
            .filter(|t| t.from_us < end && t.to_us > start)
            .map(|t| t.tag)
            .collect()
    }

    pub(crate) fn open_bytes(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.meta.bytes)
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) cameras: BTreeMap<String, Camera>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) writable: bool,
    _lock: Option<Lock>,
    pub(crate) options: Options,
    pub(crate) state: Mutex<State>,
    recovery: Recovery,
    problems: Vec<Problem>,
}

/// A segment store: per-camera, time-named, immutable fragmented-MP4 segments on the file
/// system, with an in-memory index rebuilt from the directory on open.
///
/// Cloning is cheap (an `Arc`); clones share the index. One process at a time opens a store for
/// writing ([`Store::open`] takes a lock); any number open it read-only beside it
/// ([`Store::open_read_only`]).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl Store {
    /// Opens (creating if needed) the store at `root` for writing: takes the writer lock,
    /// recovers segments a crash left open, removes temporary and orphan files, and loads the
    /// index. See [`Store::recovery`] for what was repaired.
    pub fn open(root: impl AsRef<Path>, options: Options) -> Result<Store> {
        let root = root.as_ref().to_owned();
        if options.segment_duration.is_zero() {
            return Err(Error::InvalidArgument("segment duration 0".into()));
        }
        sio::create_dirs(&root)?;
        let lock = Lock::acquire(&root)?;
        check_marker(&root, true)?;
        let mut recovery = RecoveryLog::default();
        let mut problems = Vec::new();
        let state = load(&root, true, &mut recovery, &mut problems)?;
        for (camera, path) in &recovery.sealed {
            tracing::warn!(camera, path = %path.display(), "recovered a segment left open");
        }
        Ok(Store {
            inner: Arc::new(Inner {
                root,
                writable: true,
                _lock: Some(lock),
                options,
                state: Mutex::new(state),
                recovery: Recovery {
                    sealed: recovery.sealed.into_iter().map(|(_, p)| p).collect(),
                    cut_bytes: recovery.cut_bytes,
                    removed: recovery.removed,
                    quarantined: recovery.quarantined,
                },
                problems,
            }),
        })
    }

    /// Opens the store at `root` for reading, beside a writer that may be running: nothing is
    /// changed on disk. Segments being written are listed as open, with the extent of their
    /// complete fragments.
    pub fn open_read_only(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_owned();
        check_marker(&root, false)?;
        let mut recovery = RecoveryLog::default();
        let mut problems = Vec::new();
        let state = load(&root, false, &mut recovery, &mut problems)?;
        Ok(Store {
            inner: Arc::new(Inner {
                root,
                writable: false,
                _lock: None,
                options: Options::default(),
                state: Mutex::new(state),
                recovery: Recovery::default(),
                problems,
            }),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// True when opened with [`Store::open`].
    pub fn is_writable(&self) -> bool {
        self.inner.writable
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// What [`Store::open`] repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// Metadata problems found while opening (a corrupt sidecar is listed here and its segment
    /// left out of a read-only index; a writable open regenerates it instead).
    pub fn problems(&self) -> &[Problem] {
        &self.inner.problems
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index inconsistent in a way that
        // matters more than losing the store: keep going with what is there.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.inner.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly {
                path: self.inner.root.clone(),
            })
        }
    }

    /// The cameras that have footage or tags.
    pub fn cameras(&self) -> Vec<String> {
        self.state().cameras.keys().cloned().collect()
    }

    /// Segments of `camera` overlapping `[from, to)`, in time order, including the open one.
    pub fn segments(&self, camera: &str, from: WallTime, to: WallTime) -> Vec<Segment> {
        let st = self.state();
        let Some(cam) = st.cameras.get(camera) else {
            return Vec::new();
        };
        let (f, t) = (from.as_micros(), to.as_micros());
        let mut out: Vec<Segment> = cam
            .overlapping(f, t)
            .map(|m| self.segment(camera, cam, m, false))
            .collect();
        if let Some(o) = &cam.open
            && o.meta.start_us < t
            && o.meta.end_us >= f
        {
            out.push(self.segment(camera, cam, &o.meta, true));
        }
        out
    }

    fn segment(&self, camera: &str, cam: &Camera, m: &SegmentMeta, open: bool) -> Segment {
        Segment {
            camera: camera.to_owned(),
            start: m.start(),
            end: m.end(),
            bytes: m.bytes,
            path: layout::segment_paths(&self.inner.root, camera, m.start()).segment,
            open,
            tags: cam.tags_of(m.start_us, m.end_us),
            meta: m.clone(),
        }
    }

    /// Contiguous recordings of `camera` overlapping `[from, to)`: segments joined where the
    /// gap between them is under a second and no discontinuity was recorded.
    pub fn recordings(&self, camera: &str, from: WallTime, to: WallTime) -> Vec<Recording> {
        let mut out: Vec<Recording> = Vec::new();
        for s in self.segments(camera, from, to) {
            match out.last_mut() {
                Some(r)
                    if !s.meta.discontinuity
                        && s.start.micros_since(r.end) <= CONTIGUOUS_US
                        && s.start >= r.start =>
                {
                    r.end = r.end.max(s.end);
                    r.segments += 1;
                    r.bytes += s.bytes;
                    r.tags.extend(s.tags);
                }
                _ => out.push(Recording {
                    start: s.start,
                    end: s.end,
                    segments: 1,
                    bytes: s.bytes,
                    tags: s.tags,
                }),
            }
        }
        out
    }

    /// Total bytes of `camera`'s segments (sealed and open), or of all cameras.
    pub fn bytes(&self, camera: Option<&str>) -> u64 {
        let st = self.state();
        st.cameras
            .iter()
            .filter(|(name, _)| camera.is_none_or(|c| c == name.as_str()))
            .map(|(_, c)| c.bytes + c.open_bytes())
            .sum()
    }

    /// Tag ranges of `camera` overlapping `[from, to)`.
    pub fn tags(&self, camera: &str, from: WallTime, to: WallTime) -> Vec<TagRange> {
        let st = self.state();
        st.cameras.get(camera).map_or_else(Vec::new, |c| {
            c.tags
                .iter()
                .filter(|t| t.from_us < to.as_micros() && t.to_us > from.as_micros())
                .cloned()
                .collect()
        })
    }

    /// Tags `[from, to)` of `camera` (footage already stored or still to come), with an optional
    /// note (an event's JSON), bounded by [`crate::note::bound`] (at most
    /// [`crate::note::MAX_NOTE_BYTES`], long strings cut with a marker). Durable when this
    /// returns.
    pub fn tag(
        &self,
        camera: &str,
        from: WallTime,
        to: WallTime,
        tag: Tag,
        note: Option<serde_json::Value>,
    ) -> Result<()> {
        self.tag_op(camera, from, to, tag, TagOp::Add, note)
    }

    /// Removes `tag` from `[from, to)` of `camera` (for example an unpin).
    pub fn untag(&self, camera: &str, from: WallTime, to: WallTime, tag: Tag) -> Result<()> {
        self.tag_op(camera, from, to, tag, TagOp::Remove, None)
    }

    /// Pins `[from, to)`: retention never deletes segments overlapping it.
    pub fn pin(&self, camera: &str, from: WallTime, to: WallTime) -> Result<()> {
        self.tag(camera, from, to, Tag::Pinned, None)
    }

    fn tag_op(
        &self,
        camera: &str,
        from: WallTime,
        to: WallTime,
        tag: Tag,
        op: TagOp,
        note: Option<serde_json::Value>,
    ) -> Result<()> {
        self.check_writable()?;
        layout::check_camera(camera)?;
        if to <= from {
            return Err(Error::InvalidArgument(format!(
                "empty tag range {from} .. {to}"
            )));
        }
        // A note comes from a device (an e-mail's subject): bounded before it is written and kept.
        let rec = TagRecord {
            op,
            tag,
            from_us: from.as_micros(),
            to_us: to.as_micros(),
            note: note.as_ref().map(crate::note::bound),
        };
        let mut line = serde_json::to_vec(&rec)
            .map_err(|e| Error::InvalidArgument(format!("tag note: {e}")))?;
        line.push(b'\n');
        let mut st = self.state();
        let dir = self.inner.root.join(camera);
        sio::create_dirs(&dir)?;
        let path = dir.join(layout::TAGS);
        let existed = path.exists();
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io(&path, e))?;
        if !existed {
            sio::sync_dir(&dir)?;
        }
        let cam = st.cameras.entry(camera.to_owned()).or_default();
        let mut records: Vec<TagRecord> = Vec::new();
        // Re-apply on the current ranges: adds append, removes split.
        for t in cam.tags.drain(..) {
            records.push(TagRecord {
                op: TagOp::Add,
                tag: t.tag,
                from_us: t.from_us,
                to_us: t.to_us,
                note: t.note,
            });
        }
        let queued = (op == TagOp::Add).then(|| queue::Record::Tag {
            camera: camera.to_owned(),
            tag,
            from_us: rec.from_us,
            to_us: rec.to_us,
        });
        records.push(rec);
        cam.tags = apply_tag_log(&records);
        drop(st);
        // The replication queue, in the same step: footage already queued gets the tag.
        if let Some(r) = queued {
            queue::hook(&self.inner.root, &[r]);
        }
        Ok(())
    }

    /// Rewrites the day summary of `camera` for the day of `day_of` from the index.
    pub(crate) fn write_summary(&self, camera: &str, day_of: WallTime) -> Result<()> {
        let day = layout::day_name(day_of);
        let dir = self.inner.root.join(camera).join(&day);
        let segments: Vec<SegmentMeta> = {
            let st = self.state();
            let Some(cam) = st.cameras.get(camera) else {
                return Ok(());
            };
            cam.segments
                .values()
                .filter(|m| layout::day_name(m.start()) == day)
                .cloned()
                .collect()
        };
        if segments.is_empty() {
            return sio::remove_file(&dir.join(layout::SUMMARY));
        }
        sio::write_atomic(
            &dir.join(layout::SUMMARY),
            &DaySummary {
                version: FORMAT_VERSION,
                segments,
            }
            .to_json(),
        )
    }

    /// Checks every sealed segment (of one camera, or all): the file exists, its length and
    /// BLAKE3 match the sidecar, it demuxes with no sample cut off and with the frame counts
    /// the sidecar gives. Calls `progress(bytes)` after each segment. Returns the problems
    /// (empty when all is well), including those found at open.
    pub fn verify(&self, camera: Option<&str>, mut progress: impl FnMut(u64)) -> Vec<Problem> {
        let list: Vec<(String, SegmentMeta)> = {
            let st = self.state();
            st.cameras
                .iter()
                .filter(|(n, _)| camera.is_none_or(|c| c == n.as_str()))
                .flat_map(|(n, c)| c.segments.values().map(move |m| (n.clone(), m.clone())))
                .collect()
        };
        let mut problems: Vec<Problem> = self.inner.problems.clone();
        for (cam, m) in list {
            let path = layout::segment_paths(&self.inner.root, &cam, m.start()).segment;
            if let Err(what) = verify_segment(&path, &m) {
                problems.push(Problem { path, what });
            }
            progress(m.bytes);
        }
        problems
    }

    /// Adds sidecars to the in-memory index only (no files): for benchmarks of queries over
    /// more segments than a test can create on disk. Not part of the API.
    #[doc(hidden)]
    pub fn index_only_for_bench(&self, camera: &str, metas: impl IntoIterator<Item = SegmentMeta>) {
        let mut st = self.state();
        let cam = st.cameras.entry(camera.to_owned()).or_default();
        for m in metas {
            cam.insert(m);
        }
    }

    /// The paths of `camera`'s segment starting at `start`.
    pub fn paths(&self, camera: &str, start: WallTime) -> SegmentPaths {
        layout::segment_paths(&self.inner.root, camera, start)
    }
}

/// Checks one sealed segment against its sidecar.
pub(crate) fn verify_segment(path: &Path, m: &SegmentMeta) -> std::result::Result<(), String> {
    let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len != m.bytes {
        return Err(format!(
            "{len} bytes on disk, the sidecar says {} (truncated or appended to)",
            m.bytes
        ));
    }
    let (hash, _) = segment::hash_file(path).map_err(|e| e.to_string())?;
    if hash != m.blake3 {
        return Err("BLAKE3 does not match the sidecar: the content changed".into());
    }
    let d = Demuxer::open(path).map_err(|e| e.to_string())?;
    if d.dropped_samples() > 0 {
        return Err(format!("{} samples past the end", d.dropped_samples()));
    }
    let counts: Vec<u64> = d
        .tracks()
        .iter()
        .map(|t| d.samples(t.stream).len() as u64)
        .collect();
    let want: Vec<u64> = m.tracks.iter().map(|t| t.frames).collect();
    if counts != want {
        return Err(format!(
            "frame counts {counts:?}, the sidecar says {want:?}"
        ));
    }
    Ok(())
}

fn check_marker(root: &Path, create: bool) -> Result<()> {
    let marker = root.join(layout::MARKER);
    match fs::read(&marker) {
        Ok(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(&marker, format!("store marker: {e}")))?;
            let version = v.get("version").and_then(|v| v.as_u64());
            if v.get("format").and_then(|f| f.as_str()) != Some("nvrkit-store")
                || version != Some(u64::from(FORMAT_VERSION))
            {
                return Err(Error::NotAStore {
                    path: root.to_owned(),
                    why: format!("marker {v} (this library reads version {FORMAT_VERSION})"),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(Error::NotAStore {
                    path: root.to_owned(),
                    why: if root.is_dir() {
                        format!("no {} file", layout::MARKER)
                    } else {
                        "no such directory".into()
                    },
                });
            }
            let foreign = fs::read_dir(root)
                .map_err(|e| Error::io(root, e))?
                .filter_map(|e| e.ok())
                .any(|e| e.file_name() != layout::LOCK);
            if foreign {
                return Err(Error::NotAStore {
                    path: root.to_owned(),
                    why: format!(
                        "the directory is not empty and has no {} file",
                        layout::MARKER
                    ),
                });
            }
            sio::write_atomic(
                &marker,
                format!("{{\"format\":\"nvrkit-store\",\"version\":{FORMAT_VERSION}}}\n")
                    .as_bytes(),
            )
        }
        Err(e) => Err(Error::io(&marker, e)),
    }
}

#[derive(Debug, Default)]
struct RecoveryLog {
    sealed: Vec<(String, PathBuf)>,
    cut_bytes: u64,
    removed: Vec<PathBuf>,
    quarantined: Vec<PathBuf>,
}

fn read_dir_names(dir: &Path) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let Ok(name) = e.file_name().into_string() {
            out.push((name, is_dir));
        }
    }
    out.sort();
    Ok(out)
}

fn load(
    root: &Path,
    writable: bool,
    rec: &mut RecoveryLog,
    problems: &mut Vec<Problem>,
) -> Result<State> {
    let mut state = State::default();
    for (name, is_dir) in read_dir_names(root)? {
        if !is_dir || layout::check_camera(&name).is_err() {
            continue;
        }
        let mut cam = Camera::default();
        let cam_dir = root.join(&name);
        for (day, is_dir) in read_dir_names(&cam_dir)? {
            if is_dir && layout::is_day_name(&day) {
                load_day(root, &name, &day, writable, &mut cam, rec, problems)?;
            }
        }
        load_tags(&cam_dir, writable, &mut cam)?;
        state.cameras.insert(name, cam);
    }
    Ok(state)
}

fn load_tags(cam_dir: &Path, writable: bool, cam: &mut Camera) -> Result<()> {
    let path = cam_dir.join(layout::TAGS);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let (records, valid) = parse_tag_log(&bytes);
    if writable && valid < bytes.len() {
        // A crash while appending: cut the torn line so the next append starts a new one.
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.set_len(valid as u64)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&path, e))?;
    }
    cam.tags = apply_tag_log(&records);
    Ok(())
}

fn load_day(
    root: &Path,
    camera: &str,
    day: &str,
    writable: bool,
    cam: &mut Camera,
    rec: &mut RecoveryLog,
    problems: &mut Vec<Problem>,
) -> Result<()> {
    let dir = &root.join(camera).join(day);
    let mut segments = BTreeSet::new();
    let mut sidecars = BTreeSet::new();
    let mut has_summary = false;
    for (name, is_dir) in read_dir_names(dir)? {
        if is_dir {
            continue;
        }
        if name == layout::SUMMARY {
            has_summary = true;
        } else if let Some((t, sidecar)) =
            layout::parse_file_name(&name).filter(|(t, _)| layout::day_name(*t) == day)
        {
            if sidecar {
                sidecars.insert(t.as_micros());
            } else {
                segments.insert(t.as_micros());
            }
        } else if writable && name.starts_with('.') && name.ends_with(".tmp") {
            let p = dir.join(&name);
            sio::remove_file(&p)?;
            rec.removed.push(p);
        }
    }
    let paths = |t: i64| layout::segment_paths(root, camera, WallTime::from_micros(t));

    // Sidecars whose segment is gone (retention removes the segment first).
    for &t in sidecars.difference(&segments) {
        if writable {
            let p = paths(t).sidecar;
            sio::remove_file(&p)?;
            rec.removed.push(p);
        }
    }
    let sealed: BTreeSet<i64> = sidecars.intersection(&segments).copied().collect();

    // The summary, when it lists exactly the sealed segments.
    let mut metas: BTreeMap<i64, SegmentMeta> = BTreeMap::new();
    let mut summary_ok = false;
    if has_summary
        && let Ok(bytes) = fs::read(dir.join(layout::SUMMARY))
        && let Ok(s) = DaySummary::parse(&bytes)
        && s.segments
            .iter()
            .map(|m| m.start_us)
            .eq(sealed.iter().copied())
    {
        metas = s.segments.into_iter().map(|m| (m.start_us, m)).collect();
        summary_ok = true;
    }
    let mut changed = false;
    if !summary_ok {
        for &t in &sealed {
            let p = paths(t);
            let parsed = fs::read(&p.sidecar)
                .map_err(|e| e.to_string())
                .and_then(|b| SegmentMeta::parse(&b))
                .and_then(|m| {
                    if m.start_us == t {
                        Ok(m)
                    } else {
                        Err("its start does not match its name".into())
                    }
                });
            match parsed {
                Ok(m) => {
                    metas.insert(t, m);
                }
                Err(what) if writable => {
                    tracing::warn!(path = %p.sidecar.display(), "corrupt sidecar ({what}): regenerating it from the segment");
                    if let Some(m) = recover_segment(camera, &p, t, rec)? {
                        metas.insert(t, m);
                    }
                }
                Err(what) => problems.push(Problem {
                    path: p.sidecar.clone(),
                    what: format!("corrupt sidecar: {what}"),
                }),
            }
        }
        changed = true;
    }

    // Segments without a sidecar: left open by a crash (writable), or being written now.
    for &t in segments.difference(&sidecars) {
        let p = paths(t);
        if writable {
            if let Some(m) = recover_segment(camera, &p, t, rec)? {
                metas.insert(t, m);
                changed = true;
            }
        } else if let Ok(m) = describe_open(&p.segment, t) {
            // Only the newest open segment is the writer's; older ones await recovery.
            cam.open = Some(OpenInfo { meta: m });
        }
    }
    for (_, m) in metas {
        cam.insert(m);
    }
    if writable && changed {
        let day_segments: Vec<SegmentMeta> = cam
            .segments
            .values()
            .filter(|m| paths(m.start_us).dir == *dir)
            .cloned()
            .collect();
        if day_segments.is_empty() {
            sio::remove_file(&dir.join(layout::SUMMARY))?;
            // An empty day directory (everything in it was removed) goes too.
            if read_dir_names(dir)?.is_empty() {
                let _ = fs::remove_dir(dir);
            }
        } else {
            sio::write_atomic(
                &dir.join(layout::SUMMARY),
                &DaySummary {
                    version: FORMAT_VERSION,
                    segments: day_segments,
                }
                .to_json(),
            )?;
        }
    }
    Ok(())
}

/// The store root of a segment's paths (`ROOT/CAMERA/DAY/`).
fn root_of(p: &SegmentPaths) -> &Path {
    p.dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
}

/// What a reader can tell of a segment being written: its complete fragments.
fn describe_open(path: &Path, t: i64) -> Result<SegmentMeta> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let layout = fragments::scan_file(&f, len);
    let d = Demuxer::open(path).map_err(|e| Error::media(path, e))?;
    let mut m = segment::describe(path, WallTime::from_micros(t), &d, &layout)?;
    m.bytes = len;
    Ok(m)
}

/// Seals a segment a crash left open: cuts it to its last complete fragment, hashes it and
/// writes its sidecar. A segment with no complete fragment is removed; one that cannot be read
/// as MP4 is renamed aside (`.corrupt`), never deleted.
fn recover_segment(
    camera: &str,
    p: &SegmentPaths,
    t: i64,
    rec: &mut RecoveryLog,
) -> Result<Option<SegmentMeta>> {
    let path = &p.segment;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let layout = fragments::scan_file(&f, len);
    if layout.fragments.is_empty() {
        drop(f);
        sio::remove_file(path)?;
        sio::remove_file(&p.sidecar)?;
        sio::sync_dir(&p.dir)?;
        rec.removed.push(path.clone());
        return Ok(None);
    }
    if layout.complete_len < len {
        f.set_len(layout.complete_len)
            .map_err(|e| Error::io(path, e))?;
        rec.cut_bytes += len - layout.complete_len;
    }
    f.sync_all().map_err(|e| Error::io(path, e))?;
    drop(f);
    let described = Demuxer::open(path)
        .map_err(|e| Error::media(path, e))
        .and_then(|d| segment::describe(path, WallTime::from_micros(t), &d, &layout));
    let mut m = match described {
        Ok(m) => m,
        Err(e) => {
            let aside = path.with_extension("mp4.corrupt");
            tracing::error!(path = %path.display(), "unreadable segment ({e}): renamed to {}", aside.display());
            fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
            sio::remove_file(&p.sidecar)?;
            sio::sync_dir(&p.dir)?;
            rec.quarantined.push(aside);
            return Ok(None);
        }
    };
    let (hash, bytes) = segment::hash_file(path)?;
    m.blake3 = hash;
    m.bytes = bytes;
    m.recovered = true;
    sio::write_atomic(&p.sidecar, &m.to_json())?;
    // The replication queue: recovery seals like a writer does (tags are added by the queue's
    // own tag records, which it already has).
    queue::hook(
        root_of(p),
        &[queue::seal_record(camera, &m, &Default::default())],
    );
    rec.sealed.push((camera.to_owned(), path.clone()));
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TrackMeta;

    fn meta(start: i64, end: i64) -> SegmentMeta {
        SegmentMeta {
            version: FORMAT_VERSION,
            start_us: start,
            end_us: end,
            bytes: 10,
            blake3: "0".repeat(64),
            tracks: vec![TrackMeta {
                codec: "avc1".into(),
                timescale: 90000,
                width: 1,
                height: 1,
                frames: 1,
            }],
            anchor_stream: 0,
            anchor_pts: 0,
            discontinuity: false,
            recovered: false,
            fragments: vec![],
        }
    }

    #[test]
    fn overlapping_finds_a_long_segment_that_starts_before_the_range() {
        let mut c = Camera::default();
        c.insert(meta(0, 100));
        c.insert(meta(100, 1000)); // long
        c.insert(meta(1000, 1010));
        c.insert(meta(2000, 2010));
        let got = |f, t| c.overlapping(f, t).map(|m| m.start_us).collect::<Vec<_>>();
        assert_eq!(got(500, 600), vec![100]);
        assert_eq!(got(0, 1), vec![0]);
        assert_eq!(got(99, 101), vec![0, 100]);
        assert_eq!(got(1010, 2000), Vec::<i64>::new());
        assert_eq!(got(1005, 2001), vec![1000, 2000]);
        assert_eq!(got(-50, 0), Vec::<i64>::new());
        assert_eq!(c.bytes, 40);
        c.remove(100);
        assert_eq!(c.bytes, 30);
    }
}

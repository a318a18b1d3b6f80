//! The replicator: follows the store's queue and sends segments to one target, most valuable
//! first, under the upstream cap, resuming multipart uploads from the queue after a restart.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nvrkit_media::WallTime;
use nvrkit_store::queue::{Entry, Journal, JournalPos, QueueState, Record, seal_record};
use nvrkit_store::{Store, layout};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest, ManifestEntry};
use crate::rate::RateLimit;
use crate::schedule::{self, Policy, Priority};
use crate::stats::{Counters, Stats};
use crate::target::{
    PutOutcome, Target, TargetSpec, day_prefix, manifest_key, md5_hex, multipart_etag, plain_etag,
    segment_key,
};

/// How a replicator runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Upstream cap in bytes per second (`None`: uncapped).
    pub upstream: Option<u64>,
    /// What to leave out.
    pub policy: Policy,
    /// Bytes per part of a multipart upload (default 8 MiB; S3 wants at least 5 MiB for every
    /// part but the last).
    pub part_size: u64,
    /// Segments larger than this go multipart (default: the part size).
    pub multipart_threshold: u64,
    /// Keep running and send new segments as they are sealed (`nvr`); otherwise stop when the
    /// queue is empty (`segstore replicate`).
    pub follow: bool,
    /// How often an idle replicator looks for new segments (default 1 s).
    pub poll: Duration,
    /// A day's manifest is rewritten when the day has nothing left to send, and at least this
    /// often while it does (default 5 min).
    pub manifest_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            upstream: None,
            policy: Policy::default(),
            part_size: 8 << 20,
            multipart_threshold: 8 << 20,
            follow: false,
            poll: Duration::from_secs(1),
            manifest_interval: Duration::from_secs(300),
        }
    }
}

impl Options {
    /// Sets the upstream cap (bytes per second).
    pub fn upstream(mut self, bytes_per_sec: u64) -> Self {
        self.upstream = Some(bytes_per_sec);
        self
    }

    /// Leaves out continuous footage (no motion, event or pin).
    pub fn skip_no_motion(mut self, skip: bool) -> Self {
        self.policy.skip_no_motion = skip;
        self
    }

    /// Sets the part size and the multipart threshold.
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self.multipart_threshold = bytes;
        self
    }

    /// Keeps running for new segments.
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }
}

/// A running replicator (its own thread and tokio runtime). Dropping it stops it.
#[derive(Debug)]
pub struct Handle {
    url: String,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Handle {
    /// The target's URL.
    pub fn target(&self) -> &str {
        &self.url
    }

    /// Progress so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// The segments replicated since the last call, in the order they completed.
    pub fn take_completed(&self) -> Vec<crate::stats::Completed> {
        self.counters.take_completed()
    }

    /// Asks the replicator to stop (a part in flight is abandoned; the queue keeps every part
    /// the target confirmed).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// True when the replicator has stopped (done, stopped, or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the replicator to end; its last stats, or the error that stopped it.
    pub fn join(mut self) -> Result<Stats> {
        self.wait()?;
        Ok(self.counters.snapshot())
    }

    fn wait(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Runtime("the replicator thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
        if let Err(e) = self.wait() {
            tracing::error!(target = self.url, "replication stopped: {e}");
        }
    }
}

/// Starts replicating `store` to `target`: registers the target in the store's queue (queuing
/// the footage already stored the first time), then sends in the background. Errors in setting
/// up (a bad URL, an unreadable queue) are returned here; later ones end the replicator (see
/// [`Handle::join`]), except those worth retrying, which it waits out with backoff.
pub fn start(store: &Store, target: &TargetSpec, options: Options) -> Result<Handle> {
    if options.part_size < 64 << 10 {
        return Err(Error::InvalidArgument(format!(
            "part size {} bytes: at least 64 KiB (S3 wants 5 MiB)",
            options.part_size
        )));
    }
    let url = target.url();
    let journal = register(store, &url)?;
    let counters = Arc::new(Counters::default());
    let limit = options
        .upstream
        .map(|r| Arc::new(RateLimit::new(r, options.part_size)));
    let target = target.build(limit, counters.clone())?;
    let (stop, stop_rx) = watch::channel(false);
    let ctx = Ctx {
        root: store.root().to_owned(),
        journal,
        target,
        options,
        counters: counters.clone(),
        stop: stop_rx,
    };
    let thread = std::thread::Builder::new()
        .name("replicator".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Runtime(e.to_string()))?;
            rt.block_on(ctx.run())
        })
        .map_err(|e| Error::Runtime(e.to_string()))?;
    Ok(Handle {
        url,
        counters,
        stop,
        thread: Some(thread),
    })
}

/// Creates the store's queue if needed and registers `url`, queuing every sealed segment the
/// queue does not have the first time.
fn register(store: &Store, url: &str) -> Result<Journal> {
    let (journal, _) = Journal::create(store.root())?;
    let state = journal.state()?;
    if state.targets.contains(url) {
        return Ok(journal);
    }
    let mut records = vec![Record::Target {
        target: url.to_owned(),
    }];
    let (from, to) = (
        WallTime::from_micros(-(1 << 60)),
        WallTime::from_micros(1 << 60),
    );
    for camera in store.cameras() {
        for s in store.segments(&camera, from, to) {
            if !s.open
                && !state
                    .entries
                    .contains_key(&(camera.clone(), s.meta.start_us))
            {
                records.push(seal_record(&camera, &s.meta, &s.tags));
            }
        }
    }
    tracing::info!(
        target = url,
        segments = records.len() - 1,
        "new replication target: queued the footage already stored"
    );
    journal.append(&records)?;
    Ok(journal)
}

struct Ctx {
    root: PathBuf,
    journal: Journal,
    target: Arc<dyn Target>,
    options: Options,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
}

enum Outcome {
    Done,
    Paused,
    Lost,
}

struct Follow {
    state: QueueState,
    pos: JournalPos,
}

struct DayManifest {
    camera: String,
    start_us: i64,
    entries: Vec<ManifestEntry>,
    since: Instant,
}

impl Ctx {
    fn url(&self) -> &str {
        self.target.url()
    }

    fn refresh(&self, f: &mut Follow) -> Result<()> {
        let (records, pos, replaced) = self.journal.read_from(f.pos)?;
        if replaced {
            f.state = QueueState::default();
        }
        for r in &records {
            f.state.apply(r);
        }
        f.pos = pos;
        Ok(())
    }

    fn append(&self, f: &mut Follow, records: &[Record]) -> Result<()> {
        self.journal.append(records)?;
        self.refresh(f)
    }

    async fn stopped(&self) {
        let mut rx = self.stop.clone();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(self) -> Result<()> {
        let (state, pos) = self.journal.compact()?;
        let mut f = Follow { state, pos };
        self.refresh(&mut f)?;
        let backlog: HashSet<(String, i64)> = f.state.entries.keys().cloned().collect();
        let mut failed: HashSet<(String, i64)> = HashSet::new();
        let mut days: BTreeMap<String, DayManifest> = BTreeMap::new();
        let mut backoff = Duration::ZERO;
        let url = self.url().to_owned();
        let policy = self.options.policy;
        loop {
            if self.is_stopped() {
                break;
            }
            self.refresh(&mut f)?;
            let skips: Vec<Record> = schedule::to_skip(&f.state, &url, policy)
                .into_iter()
                .map(|e| Record::Skip {
                    target: url.clone(),
                    camera: e.camera.clone(),
                    start_us: e.start_us,
                })
                .collect();
            if !skips.is_empty() {
                self.counters.add_skipped(skips.len() as u64);
                self.append(&mut f, &skips)?;
            }
            let pending = schedule::pending(&f.state, &url, policy);
            self.counters.set_pending(pending);
            if pending[0].0 == 0 {
                self.counters.events_safe_now();
            }
            let next = schedule::next(&f.state, &url, policy, &backlog, &failed).cloned();
            let Some(entry) = next else {
                self.flush_manifests(&mut days, &f.state, true).await;
                if !self.options.follow {
                    break;
                }
                self.counters.set_idle(true);
                tokio::select! {
                    _ = tokio::time::sleep(self.options.poll) => {}
                    _ = self.stopped() => break,
                }
                continue;
            };
            self.counters.set_idle(false);
            let key = segment_key(&entry.camera, entry.start_us, entry.end_us);
            self.counters.set_current(Some(key.clone()));
            let result = tokio::select! {
                r = self.replicate(&entry, &key, &mut f, &backlog, &failed) => r,
                _ = self.stopped() => break,
            };
            self.counters.set_current(None);
            match result {
                Ok(Outcome::Done) => {
                    backoff = Duration::ZERO;
                    let p = Priority::of(&entry.tags);
                    self.counters.add_done(p, key.clone(), entry.bytes);
                    tracing::debug!(key, priority = %p, "replicated");
                    let day = day_prefix(&entry.camera, entry.start_us);
                    days.entry(day)
                        .or_insert_with(|| DayManifest {
                            camera: entry.camera.clone(),
                            start_us: entry.start_us,
                            entries: Vec::new(),
                            since: Instant::now(),
                        })
                        .entries
                        .push(ManifestEntry {
                            key: key.clone(),
                            start: entry.start().to_rfc3339(),
                            start_us: entry.start_us,
                            end_us: entry.end_us,
                            bytes: entry.bytes,
                            blake3: entry.blake3.clone(),
                            tags: entry.tags.iter().copied().collect(),
                        });
                    self.flush_manifests(&mut days, &f.state, false).await;
                }
                Ok(Outcome::Paused) => self.counters.add_preempted(),
                Ok(Outcome::Lost) => self.counters.add_lost(),
                Err(Error::Mismatch { key, what }) => {
                    tracing::error!(key, "not replicated: {what}");
                    self.counters.add_failed(format!("{key}: {what}"));
                    failed.insert((entry.camera.clone(), entry.start_us));
                }
                Err(e) if e.is_transient() => {
                    if let Error::Target {
                        upload_gone: true, ..
                    } = &e
                    {
                        self.append(
                            &mut f,
                            &[Record::Abort {
                                target: url.clone(),
                                camera: entry.camera.clone(),
                                start_us: entry.start_us,
                            }],
                        )?;
                    }
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
                    // Jitter (±25 %) so many recorders do not retry in step.
                    let nanos = u64::from(Instant::now().elapsed().subsec_nanos())
                        ^ u64::from(std::process::id());
                    let wait = backoff.mul_f64(0.75 + (nanos % 500) as f64 / 1000.0);
                    tracing::warn!(key, "{e}: retrying in {wait:.1?}");
                    self.counters.add_retry(e.to_string());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stopped() => break,
                    }
                }
                Err(e) => return Err(e),
            }
            if f.state.records > 4 * f.state.entries.len() as u64 + 10_000 {
                let (state, pos) = self.journal.compact()?;
                f = Follow { state, pos };
            }
        }
        self.flush_manifests(&mut days, &f.state, true).await;
        Ok(())
    }

    /// Sends one segment. Returns `Paused` when event footage arrived during a multipart upload
    /// of less valuable footage (at a part boundary).
    async fn replicate(
        &self,
        e: &Entry,
        key: &str,
        f: &mut Follow,
        backlog: &HashSet<(String, i64)>,
        failed: &HashSet<(String, i64)>,
    ) -> Result<Outcome> {
        let url = self.url().to_owned();
        let path = layout::segment_paths(&self.root, &e.camera, e.start()).segment;
        if !path.exists() {
            tracing::warn!(
                key,
                "lost before replication: the segment is gone from the store"
            );
            self.append(
                f,
                &[Record::Lost {
                    camera: e.camera.clone(),
                    start_us: e.start_us,
                }],
            )?;
            return Ok(Outcome::Lost);
        }
        let done = Record::Done {
            target: url.clone(),
            camera: e.camera.clone(),
            start_us: e.start_us,
        };
        if e.bytes <= self.options.multipart_threshold {
            let data = read_range(&path, 0, e.bytes).await?;
            if blake3::hash(&data).to_hex().as_str() != e.blake3 {
                return Err(mismatch(
                    &path,
                    "the segment no longer matches its sidecar's BLAKE3",
                ));
            }
            let md5 = md5_hex(&data);
            let outcome = self.target.put_new(key, data, &e.blake3).await?;
            self.check_copy(key, e.bytes, Some(&md5), outcome).await?;
            self.append(f, &[done])?;
            return Ok(Outcome::Done);
        }

        // Multipart, resumed from the queue where it has a record.
        let part_size = e
            .uploads
            .get(&url)
            .map_or(self.options.part_size, |u| u.part_size);
        let nparts = e.bytes.div_ceil(part_size);
        let (upload_id, mut parts) = match e.uploads.get(&url) {
            Some(u) => {
                if !u.parts.is_empty() {
                    self.counters.add_resumed();
                }
                (u.upload_id.clone(), u.parts.clone())
            }
            None => {
                let id = self.target.begin(key).await?;
                self.append(
                    f,
                    &[Record::Upload {
                        target: url.clone(),
                        camera: e.camera.clone(),
                        start_us: e.start_us,
                        upload_id: id.clone(),
                        part_size,
                    }],
                )?;
                (id, BTreeMap::new())
            }
        };
        let mut hasher = blake3::Hasher::new();
        let mut md5s = Vec::with_capacity(nparts as usize);
        let mut next_part = Some(tokio::spawn(read_part(path.clone(), 0, part_size, e.bytes)));
        for n in 0..nparts {
            let (data, md5) = match next_part.take() {
                Some(h) => h.await.map_err(|e| Error::Runtime(e.to_string()))??,
                None => read_part(path.clone(), n, part_size, e.bytes).await?,
            };
            // Read and hash the next part while this one is sent.
            if n + 1 < nparts {
                next_part = Some(tokio::spawn(read_part(
                    path.clone(),
                    n + 1,
                    part_size,
                    e.bytes,
                )));
            }
            hasher.update(&data);
            let known = parts
                .get(&(n as u32))
                .is_some_and(|etag| plain_etag(etag).is_none_or(|p| p == md5));
            if !known {
                let etag = self
                    .target
                    .put_part(key, &upload_id, n as u32, n * part_size, data)
                    .await?;
                if let Some(p) = plain_etag(&etag).filter(|p| !p.contains('-'))
                    && p != md5
                {
                    return Err(Error::Target {
                        target: url.clone(),
                        op: "part",
                        key: key.to_owned(),
                        what: format!("part {n}: the target's MD5 {p} is not the part's {md5}"),
                        transient: true,
                        upload_gone: false,
                    });
                }
                self.append(
                    f,
                    &[Record::Part {
                        target: url.clone(),
                        camera: e.camera.clone(),
                        start_us: e.start_us,
                        n: n as u32,
                        etag: etag.clone(),
                    }],
                )?;
                parts.insert(n as u32, etag);
                // Event footage waiting preempts less valuable footage at a part boundary.
                if n + 1 < nparts {
                    let mine = f
                        .state
                        .entries
                        .get(&(e.camera.clone(), e.start_us))
                        .map_or(Priority::of(&e.tags), |x| Priority::of(&x.tags));
                    let urgent =
                        schedule::next(&f.state, &url, self.options.policy, backlog, failed)
                            .is_some_and(|x| Priority::of(&x.tags) < mine);
                    if urgent {
                        tracing::info!(key, "paused at part {n} for event footage");
                        return Ok(Outcome::Paused);
                    }
                }
            }
            md5s.push(md5);
        }
        if hasher.finalize().to_hex().as_str() != e.blake3 {
            return Err(mismatch(
                &path,
                "the segment no longer matches its sidecar's BLAKE3",
            ));
        }
        let ids: Vec<String> = (0..nparts as u32)
            .map(|n| parts.get(&n).cloned().unwrap_or_default())
            .collect();
        self.target
            .complete(key, &upload_id, &ids, &e.blake3)
            .await?;
        let etag = multipart_etag(&md5s);
        self.check_copy(key, e.bytes, etag.as_deref(), PutOutcome::Created)
            .await?;
        self.append(f, &[done])?;
        Ok(Outcome::Done)
    }

    /// HEAD after upload: the size, and the ETag where the target gives an MD5-style one.
    async fn check_copy(
        &self,
        key: &str,
        bytes: u64,
        etag: Option<&str>,
        outcome: PutOutcome,
    ) -> Result<()> {
        let Some(obj) = self.target.head(key).await? else {
            return Err(Error::Target {
                target: self.url().to_owned(),
                op: "HEAD",
                key: key.to_owned(),
                what: "the object is not there after the upload".into(),
                transient: true,
                upload_gone: false,
            });
        };
        let remote = obj.etag.as_deref().and_then(plain_etag);
        let etag_differs = match (remote, etag) {
            (Some(r), Some(want)) => r != want,
            _ => false,
        };
        if obj.size != bytes || etag_differs {
            let what = format!(
                "the copy has {} bytes (ETag {:?}), the segment {bytes} (MD5 {:?}){}",
                obj.size,
                obj.etag,
                etag,
                if outcome == PutOutcome::Existed {
                    ": an object of another content already has this key"
                } else {
                    ""
                }
            );
            return Err(Error::Mismatch {
                key: key.to_owned(),
                what,
            });
        }
        Ok(())
    }

    /// Writes the manifests of days with nothing left to send (or all with `all`), and those
    /// dirty for longer than the interval.
    async fn flush_manifests(
        &self,
        days: &mut BTreeMap<String, DayManifest>,
        state: &QueueState,
        all: bool,
    ) {
        let url = self.url().to_owned();
        let busy: HashSet<String> = state
            .entries
            .values()
            .filter(|e| !e.finished_for(&url))
            .map(|e| day_prefix(&e.camera, e.start_us))
            .collect();
        let due: Vec<String> = days
            .iter()
            .filter(|(d, m)| {
                all || !busy.contains(*d) || m.since.elapsed() >= self.options.manifest_interval
            })
            .map(|(d, _)| d.clone())
            .collect();
        for d in due {
            let Some(m) = days.remove(&d) else { continue };
            if let Err(e) = self.write_manifest(&m).await {
                tracing::warn!(day = d, "manifest not written ({e}); it will be retried");
                self.counters.add_retry(e.to_string());
                days.insert(d, m);
            }
        }
    }

    async fn write_manifest(&self, m: &DayManifest) -> Result<()> {
        let key = manifest_key(&m.camera, m.start_us);
        let mut entries: BTreeMap<String, ManifestEntry> = BTreeMap::new();
        if let Some(head) = self.target.head(&key).await? {
            // The target's copy is untrusted: one over the limit is replaced, never read.
            let old = if head.size > MAX_MANIFEST_BYTES {
                Err(format!(
                    "{} bytes, over the limit of {MAX_MANIFEST_BYTES}",
                    head.size
                ))
            } else {
                match self.target.get(&key, None).await {
                    Ok(b) => Manifest::parse(&b).map_err(|e| e.to_string()),
                    Err(e @ Error::TooLarge { .. }) => Err(e.to_string()),
                    Err(e) => return Err(e),
                }
            };
            match old {
                Ok(old) => entries.extend(old.segments.into_iter().map(|s| (s.key.clone(), s))),
                Err(e) => tracing::warn!(key, "replacing an unreadable manifest: {e}"),
            }
        }
        entries.extend(m.entries.iter().map(|s| (s.key.clone(), s.clone())));
        let mut segments: Vec<ManifestEntry> = entries.into_values().collect();
        segments.sort_by_key(|s| s.start_us);
        let manifest = Manifest::new(&m.camera, segments);
        self.target
            .put_overwrite(&key, Bytes::from(manifest.to_bytes()))
            .await
    }
}

fn mismatch(path: &Path, what: &str) -> Error {
    Error::Mismatch {
        key: path.display().to_string(),
        what: what.into(),
    }
}

async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Bytes> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| Error::Runtime(e.to_string()))?
}

/// Reads part `n` and its MD5.
async fn read_part(path: PathBuf, n: u64, part_size: u64, total: u64) -> Result<(Bytes, String)> {
    let offset = n * part_size;
    let len = part_size.min(total.saturating_sub(offset));
    let data = read_range(&path, offset, len).await?;
    let d = data.clone();
    let md5 = tokio::task::spawn_blocking(move || md5_hex(&d))
        .await
        .map_err(|e| Error::Runtime(e.to_string()))?;
    Ok((data, md5))
}

//! Retention: deleting the least valuable footage first, by bytes, by age and by free space.
//!
//! Order of deletion: untagged footage (oldest first), then footage tagged `motion`, then
//! `event`. Segments overlapping a `pinned` range are never deleted, and neither is a segment
//! being written (but its bytes count toward the budget, so a store that is over budget with
//! open segments deletes enough sealed ones to make room for them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nvrkit_media::WallTime;

use crate::error::Result;
use crate::io as sio;
use crate::layout;
use crate::meta::Tag;
use crate::store::Store;

/// Limits for one camera, or for the whole store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// At most this many bytes of footage (open segments included).
    pub max_bytes: Option<u64>,
    /// Untagged footage older than this (by its end) is deleted.
    pub max_age: Option<Duration>,
    /// Motion footage older than this is deleted (default: `max_age`).
    pub max_age_motion: Option<Duration>,
    /// Event footage older than this is deleted (default: never by age, only for space).
    pub max_age_event: Option<Duration>,
}

impl Limits {
    /// Sets `max_bytes`.
    pub fn max_bytes(mut self, b: u64) -> Self {
        self.max_bytes = Some(b);
        self
    }

    /// Sets `max_age`.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = Some(d);
        self
    }

    /// Sets `max_age_motion`.
    pub fn max_age_motion(mut self, d: Duration) -> Self {
        self.max_age_motion = Some(d);
        self
    }

    /// Sets `max_age_event`.
    pub fn max_age_event(mut self, d: Duration) -> Self {
        self.max_age_event = Some(d);
        self
    }

    fn age_of(&self, class: Class) -> Option<Duration> {
        match class {
            Class::Untagged => self.max_age,
            Class::Motion => self.max_age_motion.or(self.max_age),
            Class::Event => self.max_age_event,
        }
    }
}

/// What retention enforces: limits for the whole store, per camera, and free space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Limits over all cameras.
    pub overall: Limits,
    /// Limits of single cameras: they replace the overall ages and byte budget for that camera;
    /// the overall `max_bytes` still caps the sum of all cameras.
    pub cameras: BTreeMap<String, Limits>,
    /// Delete footage while the file system has less free space than this, so the disk never
    /// fills (a full disk stops every writer).
    pub min_free_bytes: Option<u64>,
}

impl RetentionPolicy {
    /// Sets the overall limits.
    pub fn overall(mut self, l: Limits) -> Self {
        self.overall = l;
        self
    }

    /// Sets one camera's limits.
    pub fn camera(mut self, name: &str, l: Limits) -> Self {
        self.cameras.insert(name.to_owned(), l);
        self
    }

    /// Sets the free-space guard.
    pub fn min_free_bytes(mut self, b: u64) -> Self {
        self.min_free_bytes = Some(b);
        self
    }
}

/// Retention class of a segment: what it overlaps. Deleted in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Untagged,
    Motion,
    Event,
}

/// Why a segment was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Older than its class's age limit.
    Age,
    /// Its camera was over its byte budget.
    CameraBytes,
    /// The store was over its byte budget.
    StoreBytes,
    /// The file system was short of free space.
    FreeSpace,
}

/// One deleted segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The camera.
    pub camera: String,
    /// The segment's start.
    pub start: WallTime,
    /// Its bytes.
    pub bytes: u64,
    /// Why.
    pub reason: Reason,
    /// Its file.
    pub path: PathBuf,
}

/// What a retention run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Deleted segments, in the order they went.
    pub deleted: Vec<Deleted>,
    /// Budgets still exceeded because only pinned or open footage is left.
    pub unmet: Vec<String>,
}

impl RetentionReport {
    /// Bytes freed.
    pub fn freed_bytes(&self) -> u64 {
        self.deleted.iter().map(|d| d.bytes).sum()
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    camera: String,
    start_us: i64,
    end_us: i64,
    bytes: u64,
    class: Class,
    /// Not yet replicated: only the free-space guard may delete it.
    pending: bool,
}

impl Store {
    /// Applies `policy` now (also run after every sealed segment when the store was opened with
    /// a policy in [`crate::Options`]).
    pub fn retain(&self, policy: &RetentionPolicy) -> Result<RetentionReport> {
        self.retain_at(policy, WallTime::now())
    }

    /// [`Store::retain`] with "now" given (for tests and for replaying a policy).
    pub fn retain_at(&self, policy: &RetentionPolicy, now: WallTime) -> Result<RetentionReport> {
        self.check_writable()?;
        let mut report = RetentionReport::default();
        // Footage a replication target still lacks (see `queue`): kept unless space runs out.
        let journal = crate::queue::Journal::open(self.root());
        let pending = match &journal {
            Some(j) => j.state()?.pending_keys(),
            None => Default::default(),
        };
        // Snapshot: candidates by camera, in deletion order, and each camera's bytes.
        let (mut by_camera, mut totals) = {
            let st = self.state();
            let mut by_camera: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
            let mut totals: BTreeMap<String, u64> = BTreeMap::new();
            for (name, cam) in &st.cameras {
                totals.insert(name.clone(), cam.bytes + cam.open_bytes());
                let list = by_camera.entry(name.clone()).or_default();
                for m in cam.segments.values() {
                    let tags = cam.tags_of(m.start_us, m.end_us);
                    if tags.contains(&Tag::Pinned) {
                        continue;
                    }
                    let class = if tags.contains(&Tag::Event) {
                        Class::Event
                    } else if tags.contains(&Tag::Motion) {
                        Class::Motion
                    } else {
                        Class::Untagged
                    };
                    list.push(Candidate {
                        camera: name.clone(),
                        start_us: m.start_us,
                        end_us: m.end_us,
                        bytes: m.bytes,
                        class,
                        pending: pending.contains(&(name.clone(), m.start_us)),
                    });
                }
                // Replicated footage before footage still waiting for its backup.
                list.sort_by_key(|c| (c.pending, c.class, c.start_us));
            }
            (by_camera, totals)
        };

        let mut doomed: Vec<(Candidate, Reason)> = Vec::new();
        let take = |list: &mut Vec<Candidate>,
                    i: usize,
                    reason,
                    totals: &mut BTreeMap<String, u64>,
                    doomed: &mut Vec<(Candidate, Reason)>| {
            let c = list.remove(i);
            if let Some(t) = totals.get_mut(&c.camera) {
                *t = t.saturating_sub(c.bytes);
            }
            doomed.push((c, reason));
        };

        // Ages, then each camera's bytes.
        for (name, list) in by_camera.iter_mut() {
            let limits = policy.cameras.get(name).unwrap_or(&policy.overall);
            let mut i = 0;
            while i < list.len() {
                let c = &list[i];
                let old = limits.age_of(c.class).is_some_and(|age| {
                    c.end_us < now.as_micros().saturating_sub(age.as_micros() as i64)
                });
                if old && !c.pending {
                    take(list, i, Reason::Age, &mut totals, &mut doomed);
                } else {
                    i += 1;
                }
            }
            if let Some(max) = limits.max_bytes {
                while totals.get(name).copied().unwrap_or(0) > max
                    && list.first().is_some_and(|c| !c.pending)
                {
                    take(list, 0, Reason::CameraBytes, &mut totals, &mut doomed);
                }
                if totals.get(name).copied().unwrap_or(0) > max {
                    report.unmet.push(format!(
                        "camera {name}: {} bytes of pinned, open or not yet replicated footage over {max}",
                        totals[name]
                    ));
                }
            }
        }

        // The store's bytes, then free space: across cameras, least valuable and oldest first.
        let mut free_needed = 0u64;
        if let Some(min_free) = policy.min_free_bytes {
            let (free, _) = sio::disk_space(self.root())?;
            free_needed = min_free.saturating_sub(free);
        }
        let store_max = policy.overall.max_bytes;
        loop {
            let total: u64 = totals.values().sum();
            let reason = if store_max.is_some_and(|m| total > m) {
                Reason::StoreBytes
            } else if free_needed > 0 {
                Reason::FreeSpace
            } else {
                break;
            };
            let next = by_camera
                .iter()
                .filter_map(|(n, l)| {
                    l.first()
                        .filter(|c| !c.pending || reason == Reason::FreeSpace)
                        .map(|c| (c.pending, c.class, c.start_us, n.clone()))
                })
                .min();
            let Some((_, _, _, name)) = next else {
                report.unmet.push(match reason {
                    Reason::FreeSpace => format!("{free_needed} more bytes of free space wanted, but only pinned or open footage is left"),
                    _ => format!("store: {total} bytes of pinned, open or not yet replicated footage over the budget"),
                });
                break;
            };
            let list = by_camera.get_mut(&name).expect("listed above");
            let bytes = list[0].bytes;
            take(list, 0, reason, &mut totals, &mut doomed);
            if reason == Reason::FreeSpace {
                free_needed = free_needed.saturating_sub(bytes);
            }
        }

        // Delete: the segment first, then its sidecar (an orphan sidecar is removed at the
        // next open; an orphan segment would be resurrected by recovery).
        let mut touched_days: BTreeMap<(String, String), WallTime> = BTreeMap::new();
        let mut lost = Vec::new();
        for (c, reason) in doomed {
            let start = WallTime::from_micros(c.start_us);
            if c.pending {
                tracing::warn!(camera = c.camera, start = %start, "lost before replication: the free-space guard deleted a segment no backup has yet");
                lost.push(crate::queue::Record::Lost {
                    camera: c.camera.clone(),
                    start_us: c.start_us,
                });
            }
            let p = layout::segment_paths(self.root(), &c.camera, start);
            sio::remove_file(&p.segment)?;
            sio::remove_file(&p.sidecar)?;
            {
                let mut st = self.state();
                if let Some(cam) = st.cameras.get_mut(&c.camera) {
                    cam.remove(c.start_us);
                }
            }
            touched_days.insert((c.camera.clone(), layout::day_name(start)), start);
            tracing::debug!(camera = c.camera, start = %start, ?reason, "retention deleted a segment");
            report.deleted.push(Deleted {
                camera: c.camera,
                start,
                bytes: c.bytes,
                reason,
                path: p.segment,
            });
        }
        if let Some(j) = &journal {
            j.append(&lost)?;
        }
        for ((camera, _), t) in touched_days {
            let p = layout::segment_paths(self.root(), &camera, t);
            self.write_summary(&camera, t)?;
            if std::fs::read_dir(&p.dir).is_ok_and(|mut d| d.next().is_none()) {
                let _ = std::fs::remove_dir(&p.dir);
            }
            if let Some(parent) = p.dir.parent() {
                sio::sync_dir(parent)?;
            }
            if p.dir.exists() {
                sio::sync_dir(&p.dir)?;
            }
        }
        Ok(report)
    }
}

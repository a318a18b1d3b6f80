//! `verify --remote`: spot-checks a target against the store and the day manifests.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use nvrkit_media::WallTime;
use nvrkit_store::queue::Journal;
use nvrkit_store::{Store, layout};

use crate::error::{Error, Result};
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest, ManifestEntry};
use crate::stats::Counters;
use crate::target::TargetSpec;

/// Bytes compared per range read.
const RANGE: u64 = 64 << 10;

/// Bytes per range read when an object is read whole to hash it (so at most this much of it is
/// held at once, and no more than the listed size is read).
const HASH_RANGE: u64 = 8 << 20;

/// What [`verify_remote`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteReport {
    /// Segment objects on the target.
    pub objects: u64,
    /// Of them, checked (sampled).
    pub checked: u64,
    /// Range reads compared with the local segment.
    pub ranges: u64,
    /// Objects read whole and hashed (no local copy left, or `full`).
    pub hashed: u64,
    /// Segments the queue says the target still lacks.
    pub pending: u64,
    /// What does not match; empty when all is well.
    pub problems: Vec<String>,
}

/// Splits `<camera>/<YYYY>/<MM>/<DD>/<start>-<end>.mp4` into (camera, start).
fn parse_key(key: &str) -> Option<(String, WallTime)> {
    let name = key.strip_suffix(".mp4")?;
    let mut parts = name.split('/');
    let camera = parts.next()?.to_owned();
    let last = name.rsplit('/').next()?;
    let (start, _) = last.split_once('-')?;
    Some((camera, WallTime::parse_compact(start).ok()?))
}

/// Checks the target: every manifest entry is there with its size; every `every`-th segment
/// object (all with 1) has the size of its local segment and equal bytes in three 64 KiB range
/// reads (start, middle, end), or, with `full` or when the store no longer has it, is read
/// whole and matches the BLAKE3 its manifest (or sidecar) gives. `progress(done, total)` is
/// called after each object.
pub fn verify_remote(
    store: &Store,
    target: &TargetSpec,
    every: u64,
    full: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<RemoteReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let t = target.build(None, Arc::new(Counters::default()))?;
    let url = target.url();
    let every = every.max(1);
    rt.block_on(async move {
        let mut report = RemoteReport::default();
        if let Some(j) = Journal::open(store.root()) {
            let state = j.state()?;
            report.pending = state
                .entries
                .values()
                .filter(|e| !e.finished_for(&url))
                .count() as u64;
        }
        let objects = t.list("").await?;
        let sizes: BTreeMap<&str, u64> = objects.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        let mut known: BTreeMap<String, ManifestEntry> = BTreeMap::new();
        for (key, size) in objects
            .iter()
            .filter(|(k, _)| k.ends_with("/manifest.json"))
        {
            if *size > MAX_MANIFEST_BYTES {
                report.problems.push(format!(
                    "{key}: unreadable manifest: {size} bytes, over the limit of {MAX_MANIFEST_BYTES}"
                ));
                continue;
            }
            let parsed = match t.get(key, None).await {
                Ok(bytes) => Manifest::parse(&bytes).map_err(|e| e.to_string()),
                Err(e @ Error::TooLarge { .. }) => Err(e.to_string()),
                Err(e) => return Err(e),
            };
            match parsed {
                Ok(m) => {
                    for s in m.segments {
                        match sizes.get(s.key.as_str()) {
                            None => report
                                .problems
                                .push(format!("{}: in {key} but not on the target", s.key)),
                            Some(&size) if size != s.bytes => report
                                .problems
                                .push(format!("{}: {size} bytes, {key} says {}", s.key, s.bytes)),
                            _ => {}
                        }
                        known.insert(s.key.clone(), s);
                    }
                }
                Err(e) => report
                    .problems
                    .push(format!("{key}: unreadable manifest: {e}")),
            }
        }
        let segments: Vec<&(String, u64)> = objects
            .iter()
            .filter(|(k, _)| k.ends_with(".mp4"))
            .collect();
        report.objects = segments.len() as u64;
        let total = report.objects.div_ceil(every);
        for (i, (key, size)) in segments.iter().enumerate() {
            if !(i as u64).is_multiple_of(every) {
                continue;
            }
            report.checked += 1;
            let Some((camera, start)) = parse_key(key) else {
                report.problems.push(format!("{key}: not a segment key"));
                continue;
            };
            let local = store
                .segments(&camera, start, start.add_micros(1))
                .into_iter()
                .find(|s| s.start == start && !s.open);
            let want_hash = known
                .get(key.as_str())
                .map(|m| m.blake3.clone())
                .or_else(|| local.as_ref().map(|s| s.meta.blake3.clone()));
            let path = layout::segment_paths(store.root(), &camera, start).segment;
            let file = std::fs::File::open(&path).ok();
            match (&local, file) {
                (Some(seg), Some(file)) if !full => {
                    if seg.bytes != *size {
                        report.problems.push(format!(
                            "{key}: {size} bytes, the local segment {}",
                            seg.bytes
                        ));
                    } else {
                        let mid = (size / 2).saturating_sub(RANGE / 2);
                        let end = size.saturating_sub(RANGE);
                        let mut starts = vec![0, mid, end];
                        starts.dedup();
                        for s in starts {
                            let r = s..(s + RANGE).min(*size);
                            let remote = t.get(key, Some(r.clone())).await?;
                            let mut mine = vec![0u8; (r.end - r.start) as usize];
                            file.read_exact_at(&mut mine, r.start)
                                .map_err(|e| Error::io(&path, e))?;
                            report.ranges += 1;
                            if remote[..] != mine[..] {
                                report.problems.push(format!(
                                    "{key}: bytes {}..{} differ from the local segment",
                                    r.start, r.end
                                ));
                                break;
                            }
                        }
                    }
                }
                _ => match want_hash {
                    Some(h) => {
                        let mut hasher = blake3::Hasher::new();
                        let mut at = 0;
                        while at < *size {
                            let end = (at + HASH_RANGE).min(*size);
                            hasher.update(&t.get(key, Some(at..end)).await?);
                            at = end;
                        }
                        report.hashed += 1;
                        if hasher.finalize().to_hex().as_str() != h {
                            report.problems.push(format!("{key}: BLAKE3 differs"));
                        }
                    }
                    None => report.problems.push(format!(
                        "{key}: neither the store nor a manifest knows this segment"
                    )),
                },
            }
            progress(report.checked, total);
        }
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let k = "front/2026/11/25/20261125T163703.500000Z-20261125T163803.500000Z.mp4";
        let (c, t) = parse_key(k).unwrap();
        assert_eq!(
            (c.as_str(), t.to_rfc3339().as_str()),
            ("front", "2026-11-25T16:37:03.500000Z")
        );
        assert!(parse_key("front/2026/11/25/manifest.json").is_none());
        assert!(parse_key("x.mp4").is_none());
    }
}

//! Where things live in a store directory, and the names of files.
//!
//! ```text
//! STORE/
//!   .nvrkit-store                 marker: {"format":"nvrkit-store","version":1}
//!   .lock                         the writer's lock (flock), with the holder's pid
//!   CAMERA/
//!     tags.jsonl                  tag ranges (event, motion, pinned), append-only
//!     2026-11-25/                 one directory per UTC day of segment start
//!       20261125T163703.123456Z.mp4    a segment: fragmented MP4, immutable once sealed
//!       20261125T163703.123456Z.json   its sidecar, written when it is sealed
//!       summary.json              every sidecar of the day in one file (regenerable)
//! ```
//!
//! A segment is named by the wall-clock time (UTC) of its first frame, so the name is the key,
//! sorting names sorts by time, and a backup is a copy of the files (the replicator's object keys
//! are `<site>/<camera>/<YYYY>/<MM>/<DD>/<start>-<end>.mp4`). Files starting with `.` are temporary or private; a camera name
//! cannot start with one.

use std::path::{Path, PathBuf};

use nvrkit_media::WallTime;

use crate::error::{Error, Result};

/// The marker file in a store's root.
pub const MARKER: &str = ".nvrkit-store";
/// The writer's lock file in a store's root.
pub const LOCK: &str = ".lock";
/// The per-camera tag log.
pub const TAGS: &str = "tags.jsonl";
/// The per-day summary.
pub const SUMMARY: &str = "summary.json";
/// Extension of segment files.
pub const SEGMENT_EXT: &str = "mp4";
/// Extension of sidecars.
pub const SIDECAR_EXT: &str = "json";

/// Checks a camera name: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_camera(name: &str) -> Result<()> {
    let err = |why| {
        Err(Error::CameraName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return err("must be 1 to 64 characters");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return err("must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return err("may contain only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// The day directory name (`2026-11-25`) of an instant.
pub fn day_name(t: WallTime) -> String {
    let c = t.to_compact();
    format!("{}-{}-{}", &c[0..4], &c[4..6], &c[6..8])
}

/// True for a day directory name as [`day_name`] writes it.
pub fn is_day_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The file stem of a segment starting at `start`: `20261125T163703.123456Z`.
pub fn segment_stem(start: WallTime) -> String {
    start.to_compact()
}

/// Parses a segment or sidecar file name into (start, is_sidecar). `None` for other names.
pub fn parse_file_name(name: &str) -> Option<(WallTime, bool)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let sidecar = match ext {
        SEGMENT_EXT => false,
        SIDECAR_EXT => true,
        _ => return None,
    };
    let start = WallTime::parse_compact(stem).ok()?;
    // Only the canonical spelling: two names must never map to the same segment.
    (start.to_compact() == stem).then_some((start, sidecar))
}

/// Paths of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPaths {
    /// The day directory.
    pub dir: PathBuf,
    /// The MP4 file.
    pub segment: PathBuf,
    /// The sidecar.
    pub sidecar: PathBuf,
}

/// The paths of the segment of `camera` starting at `start` in the store at `root`.
pub fn segment_paths(root: &Path, camera: &str, start: WallTime) -> SegmentPaths {
    let dir = root.join(camera).join(day_name(start));
    let stem = segment_stem(start);
    SegmentPaths {
        segment: dir.join(format!("{stem}.{SEGMENT_EXT}")),
        sidecar: dir.join(format!("{stem}.{SIDECAR_EXT}")),
        dir,
    }
}

/// A temporary name beside `path` (`.NAME.tmp`), removed by recovery if a crash leaves it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_names() {
        for ok in ["front", "cam-1", "Garage_2", "a.b", "0"] {
            check_camera(ok).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "..",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_camera(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn file_names_round_trip_and_sort_by_time() {
        let t = WallTime::parse_rfc3339("2026-11-25T16:37:03.123456Z").unwrap();
        let p = segment_paths(Path::new("/s"), "front", t);
        assert_eq!(
            p.segment,
            Path::new("/s/front/2026-11-25/20261125T163703.123456Z.mp4")
        );
        assert_eq!(day_name(t), "2026-11-25");
        assert!(is_day_name("2026-11-25"));
        assert!(!is_day_name("2026-11-2x") && !is_day_name("tags.jsonl"));
        assert_eq!(
            parse_file_name("20261125T163703.123456Z.mp4"),
            Some((t, false))
        );
        assert_eq!(
            parse_file_name("20261125T163703.123456Z.json"),
            Some((t, true))
        );
        for other in [
            "summary.json",
            ".20261125T163703.123456Z.json.tmp",
            "20261125T163703.123456Z.mp4.part",
            "20261131T000000.000000Z.mp4",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
        let later = t.add_micros(1);
        assert!(segment_stem(t) < segment_stem(later));
    }

    #[test]
    fn temp_names_are_hidden() {
        assert_eq!(
            temp_path(Path::new("/a/b/x.json")),
            Path::new("/a/b/.x.json.tmp")
        );
    }
}

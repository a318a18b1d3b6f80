//! The store's own metadata files: segment sidecars, day summaries and the tag log.
//!
//! All three are JSON, written whole to a temporary file that is synced and renamed into place
//! (sidecars, summaries) or appended line by line with a sync (tags). They are read back with
//! [`SegmentMeta::parse`], [`DaySummary::parse`] and [`parse_tag_log`], which treat the bytes as
//! untrusted: sizes are bounded, every field is checked, and nothing panics (the `store_meta`
//! fuzz target runs them on random input).

use std::fmt;

use nvrkit_media::WallTime;
use serde::{Deserialize, Serialize};

/// The version of the sidecar and summary formats this library writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Sidecars larger than this are refused (a 60 s segment's is about 4 kB).
pub const MAX_SIDECAR_BYTES: usize = 1 << 20;
/// Day summaries larger than this are refused (a day of 10 s segments is about 40 MB).
pub const MAX_SUMMARY_BYTES: usize = 256 << 20;

/// One stream of a segment, as its sidecar describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMeta {
    /// The RFC 6381 codec string (`avc1.4D401F`, `mp4a.40.2`).
    pub codec: String,
    /// Ticks per second of the stream's timestamps.
    pub timescale: u32,
    /// Width in pixels (0 for audio).
    #[serde(default)]
    pub width: u32,
    /// Height in pixels (0 for audio).
    #[serde(default)]
    pub height: u32,
    /// Frames of this stream in the segment.
    pub frames: u64,
}

/// Everything the store knows about a sealed segment: its sidecar file.
///
/// Times are wall-clock UTC microseconds. The segment's frames keep the media timestamps they
/// were written with; `anchor_pts` (in the timescale of stream `anchor_stream`) is the media time
/// of `start_us`, so a frame's wall time is `start_us + (pts - anchor_pts)` in microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Wall time of the first frame (a keyframe): the segment's key and file name.
    pub start_us: i64,
    /// Wall time at which the last frame ends.
    pub end_us: i64,
    /// Length of the segment file in bytes.
    pub bytes: u64,
    /// BLAKE3 of the whole segment file, lowercase hex.
    pub blake3: String,
    /// The streams, in the file's track order.
    pub tracks: Vec<TrackMeta>,
    /// The stream whose timestamps anchor the wall clock (the first video stream).
    pub anchor_stream: u32,
    /// Media time (PTS) in that stream of `start_us`.
    pub anchor_pts: i64,
    /// The stream had a gap (a reconnect, a timestamp jump) just before this segment.
    #[serde(default)]
    pub discontinuity: bool,
    /// The segment was left open by a crash and sealed by recovery (its last, incomplete
    /// fragment was cut off).
    #[serde(default)]
    pub recovered: bool,
    /// Each fragment (GOP): byte offset of its `moof` and wall time of its first frame.
    #[serde(default)]
    pub fragments: Vec<(u64, i64)>,
}

fn bad(what: impl Into<String>) -> String {
    what.into()
}

impl SegmentMeta {
    /// The start as a [`WallTime`].
    pub fn start(&self) -> WallTime {
        WallTime::from_micros(self.start_us)
    }

    /// The end as a [`WallTime`].
    pub fn end(&self) -> WallTime {
        WallTime::from_micros(self.end_us)
    }

    /// Duration in microseconds.
    pub fn duration_us(&self) -> i64 {
        self.end_us - self.start_us
    }

    /// Total frames of all streams.
    pub fn frames(&self) -> u64 {
        self.tracks.iter().map(|t| t.frames).sum()
    }

    /// Serializes the sidecar (one line of JSON and a newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and checks a sidecar. The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_SIDECAR_BYTES {
            return Err(bad(format!(
                "{} bytes: larger than any sidecar",
                bytes.len()
            )));
        }
        let m: SegmentMeta = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        m.check()?;
        Ok(m)
    }

    /// Checks the fields' invariants.
    pub fn check(&self) -> Result<(), String> {
        if self.version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} (this library reads {FORMAT_VERSION})",
                self.version
            )));
        }
        if self.end_us < self.start_us {
            return Err(bad("ends before it starts"));
        }
        if self.blake3.len() != 64 || !self.blake3.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("blake3 is not 64 hex digits"));
        }
        if self.tracks.is_empty() || self.tracks.iter().any(|t| t.timescale == 0) {
            return Err(bad("no tracks, or a track with timescale 0"));
        }
        if self.anchor_stream as usize >= self.tracks.len() {
            return Err(bad("anchor stream out of range"));
        }
        if self
            .fragments
            .windows(2)
            .any(|w| w[1].0 <= w[0].0 || w[1].1 < w[0].1)
            || self.fragments.iter().any(|f| f.0 >= self.bytes)
        {
            return Err(bad("fragment list out of order or past the end"));
        }
        // Wall times far outside any plausible range would overflow later arithmetic.
        const LIMIT: i64 = 1 << 60;
        if self.start_us.abs() > LIMIT || self.end_us.abs() > LIMIT {
            return Err(bad("time out of range"));
        }
        Ok(())
    }

    /// Wall time of media time `pts` of stream `stream` (timescale `timescale`), in µs.
    pub fn wall_of(&self, pts: i64, timescale: u32) -> i64 {
        let anchor_ts = self
            .tracks
            .get(self.anchor_stream as usize)
            .map_or(1, |t| t.timescale);
        let us = |v: i64, ts: u32| nvrkit_media::time::rescale(v, ts, 1_000_000);
        self.start_us
            .saturating_add(us(pts, timescale))
            .saturating_sub(us(self.anchor_pts, anchor_ts))
    }
}

/// Every sealed segment of one camera and day: `summary.json` in the day directory.
///
/// A cache: the store reads it instead of one sidecar per segment when its list of segments
/// matches the directory, and rewrites it otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySummary {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The sidecars, ordered by start.
    pub segments: Vec<SegmentMeta>,
}

impl DaySummary {
    /// Serializes the summary.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and checks a summary.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_SUMMARY_BYTES {
            return Err(bad(format!(
                "{} bytes: larger than any summary",
                bytes.len()
            )));
        }
        let s: DaySummary = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.version != FORMAT_VERSION {
            return Err(bad(format!("format version {}", s.version)));
        }
        for m in &s.segments {
            m.check()?;
        }
        if s.segments
            .windows(2)
            .any(|w| w[1].start_us <= w[0].start_us)
        {
            return Err(bad("segments out of order"));
        }
        Ok(s)
    }
}

/// A tag on a time range of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Tag {
    /// Motion was detected. Retention keeps it longer than untagged footage.
    Motion,
    /// An event (an alarm, a camera e-mail). Retention keeps it longer than motion.
    Event,
    /// Pinned by a person: retention never deletes it.
    Pinned,
}

impl Tag {
    /// The tag's name: `motion`, `event`, `pinned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Motion => "motion",
            Tag::Event => "event",
            Tag::Pinned => "pinned",
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "motion" => Ok(Tag::Motion),
            "event" => Ok(Tag::Event),
            "pinned" | "pin" => Ok(Tag::Pinned),
            _ => Err(format!("unknown tag {s:?} (motion, event, pinned)")),
        }
    }
}

/// Add or remove a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagOp {
    /// The range gets the tag.
    Add,
    /// The tag is removed from the range (for example an unpin).
    Remove,
}

/// One line of a camera's `tags.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Add or remove.
    pub op: TagOp,
    /// The tag.
    pub tag: Tag,
    /// Start of the range, wall-clock µs.
    pub from_us: i64,
    /// End of the range (exclusive), wall-clock µs.
    pub to_us: i64,
    /// Free-form JSON kept with the tag (an event's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<serde_json::Value>,
}

/// A tag on a range, after applying the log's adds and removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRange {
    /// The tag.
    pub tag: Tag,
    /// Start, wall-clock µs.
    pub from_us: i64,
    /// End (exclusive), wall-clock µs.
    pub to_us: i64,
    /// The note given when it was added.
    pub note: Option<serde_json::Value>,
}

/// Parses a tag log. Returns the records and the length of the valid prefix: a crash while
/// appending can leave a partial last line, which is left out (and cut off by a writer).
/// Lines this version does not understand (a future tag) are skipped. Notes are bounded
/// ([`crate::note::bound`]).
pub fn parse_tag_log(bytes: &[u8]) -> (Vec<TagRecord>, usize) {
    let mut out = Vec::new();
    let mut valid = 0;
    let mut pos = 0;
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let line = &bytes[pos..pos + nl];
        pos += nl + 1;
        valid = pos;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Ok(mut r) = serde_json::from_slice::<TagRecord>(line)
            && r.from_us < r.to_us
        {
            // A log written before notes were bounded may hold huge ones: bounded in memory.
            r.note = r.note.as_ref().map(crate::note::bound);
            out.push(r);
        }
    }
    (out, valid)
}

/// Applies adds and removes in order: the ranges that carry each tag now.
pub fn apply_tag_log(records: &[TagRecord]) -> Vec<TagRange> {
    let mut ranges: Vec<TagRange> = Vec::new();
    for r in records {
        match r.op {
            TagOp::Add => ranges.push(TagRange {
                tag: r.tag,
                from_us: r.from_us,
                to_us: r.to_us,
                note: r.note.clone(),
            }),
            TagOp::Remove => {
                let mut kept = Vec::with_capacity(ranges.len());
                for x in ranges.drain(..) {
                    if x.tag != r.tag || x.to_us <= r.from_us || x.from_us >= r.to_us {
                        kept.push(x);
                        continue;
                    }
                    // Keep the parts outside the removed range.
                    if x.from_us < r.from_us {
                        kept.push(TagRange {
                            to_us: r.from_us,
                            ..x.clone()
                        });
                    }
                    if x.to_us > r.to_us {
                        kept.push(TagRange {
                            from_us: r.to_us,
                            ..x
                        });
                    }
                }
                ranges = kept;
            }
        }
    }
    ranges.sort_by_key(|r| (r.from_us, r.to_us));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn meta(start: i64, end: i64) -> SegmentMeta {
        SegmentMeta {
            version: FORMAT_VERSION,
            start_us: start,
            end_us: end,
            bytes: 1000,
            blake3: "0".repeat(64),
            tracks: vec![TrackMeta {
                codec: "avc1.4D401E".into(),
                timescale: 12800,
                width: 640,
                height: 360,
                frames: 25,
            }],
            anchor_stream: 0,
            anchor_pts: 512,
            discontinuity: false,
            recovered: false,
            fragments: vec![(0, start), (500, start + 1)],
        }
    }

    #[test]
    fn sidecar_round_trip() {
        let m = meta(1_000_000, 2_000_000);
        assert_eq!(SegmentMeta::parse(&m.to_json()).unwrap(), m);
        // A frame at the anchor is at the start; one second later in media time is 1 s later.
        assert_eq!(m.wall_of(512, 12800), 1_000_000);
        assert_eq!(m.wall_of(512 + 12800, 12800), 2_000_000);
        assert_eq!(m.wall_of(48_000, 48_000), 1_000_000 + 1_000_000 - 40_000);
    }

    #[test]
    fn sidecar_checks() {
        let good = meta(0, 10);
        let cases: Vec<(&str, SegmentMeta)> = vec![
            (
                "version",
                SegmentMeta {
                    version: 2,
                    ..good.clone()
                },
            ),
            (
                "order",
                SegmentMeta {
                    end_us: -1,
                    ..good.clone()
                },
            ),
            (
                "hash",
                SegmentMeta {
                    blake3: "xyz".into(),
                    ..good.clone()
                },
            ),
            (
                "anchor",
                SegmentMeta {
                    anchor_stream: 1,
                    ..good.clone()
                },
            ),
            (
                "fragments",
                SegmentMeta {
                    fragments: vec![(5, 0), (5, 0)],
                    ..good.clone()
                },
            ),
            (
                "fragment past end",
                SegmentMeta {
                    fragments: vec![(5000, 0)],
                    ..good.clone()
                },
            ),
            (
                "tracks",
                SegmentMeta {
                    tracks: vec![],
                    ..good.clone()
                },
            ),
        ];
        for (what, m) in cases {
            assert!(SegmentMeta::parse(&m.to_json()).is_err(), "{what} accepted");
        }
        assert!(SegmentMeta::parse(b"").is_err());
        assert!(SegmentMeta::parse(b"{\"version\":1}").is_err());
    }

    #[test]
    fn summary_round_trip_and_order() {
        let s = DaySummary {
            version: FORMAT_VERSION,
            segments: vec![meta(0, 10), meta(10, 20)],
        };
        assert_eq!(DaySummary::parse(&s.to_json()).unwrap(), s);
        let unordered = DaySummary {
            version: FORMAT_VERSION,
            segments: vec![meta(10, 20), meta(0, 10)],
        };
        assert!(DaySummary::parse(&unordered.to_json()).is_err());
    }

    #[test]
    fn tag_log_skips_a_torn_last_line_and_unknown_tags() {
        let add = |tag: &str, a: i64, b: i64| {
            format!("{{\"op\":\"add\",\"tag\":\"{tag}\",\"from_us\":{a},\"to_us\":{b}}}\n")
        };
        let mut log = add("event", 0, 100) + &add("hologram", 0, 5) + &add("pinned", 50, 60);
        let valid_len = log.len();
        log.push_str("{\"op\":\"add\",\"tag\":\"mot");
        let (records, valid) = parse_tag_log(log.as_bytes());
        assert_eq!(valid, valid_len);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].tag, Tag::Pinned);
    }

    #[test]
    fn removing_part_of_a_range_splits_it() {
        let rec = |op, from_us, to_us| TagRecord {
            op,
            tag: Tag::Pinned,
            from_us,
            to_us,
            note: None,
        };
        let r = apply_tag_log(&[rec(TagOp::Add, 0, 100), rec(TagOp::Remove, 40, 60)]);
        let spans: Vec<(i64, i64)> = r.iter().map(|x| (x.from_us, x.to_us)).collect();
        assert_eq!(spans, vec![(0, 40), (60, 100)]);
        let r = apply_tag_log(&[rec(TagOp::Add, 0, 100), rec(TagOp::Remove, -5, 500)]);
        assert!(r.is_empty());
    }
}

//! # nvrkit-store
//!
//! Video on the plain file system, keyed by time. Per camera, immutable segment files named by
//! their start time (UTC), each a fragmented MP4 (an init segment, then one fragment per GOP)
//! that plays on its own in any player; a small JSON sidecar per segment with its extent, frame
//! counts, BLAKE3 hash and fragment index; tags (`event`, `motion`, `pinned`) on time ranges in a
//! per-camera log; and an in-memory index rebuilt from the directory on open, with a per-day
//! summary file so a large store opens quickly. See [`layout`] for the directory layout.
//!
//! - **Writing** ([`Store::writer`]): frames in, segments cut at keyframes (default every
//!   60 s), at codec parameter changes and at discontinuities. Each GOP is written as soon as it
//!   is complete and handed to write-back early, so sealing a segment does not stall and a crash
//!   loses at most the GOP in progress. Durability in Moonfire NVR's order: `O_EXCL` create,
//!   write, `fdatasync`, directory sync, then the sidecar (temporary file, sync, rename, sync).
//! - **Recovery** ([`Store::open`]): a segment without a sidecar was open when the writer died;
//!   it is cut back to its last complete fragment, hashed and sealed. Orphan and temporary files
//!   are removed. One process writes a store at a time (a lock file); readers
//!   ([`Store::open_read_only`]) work beside it.
//! - **Reading**: [`Store::segments`], [`Store::recordings`], [`Store::frames`] from any time,
//!   and [`Store::export`] of a time range to one MP4 that starts exactly at the asked time.
//! - **Retention** ([`Store::retain`]): by bytes and age, per camera and overall, with a
//!   free-space guard; untagged footage goes first, then motion, then events; pinned footage
//!   never.
//! - **Checking** ([`Store::verify`]): length, hash and structure of every segment.
//!
//! Non-goals: a database (the file system is the index), transcoding, codecs the muxer of
//! `nvrkit-media` does not write (H.264, H.265 and AAC are supported).
//!
//! ## Record, then export a minute
//!
//! ```
//! use std::time::Duration;
//! use nvrkit_media::{Demuxer, WallTime};
//! use nvrkit_store::{ExportFormat, Options, Store, Tag};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default().segment_duration(Duration::from_secs(4)))?;
//!
//! // Write the embedded 10 s sample as camera "front", as if it started at 12:00:00.
//! let clip = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
//! let t0 = WallTime::parse_rfc3339("2026-11-25T12:00:00Z").unwrap();
//! let mut writer = store.writer("front", clip.tracks())?;
//! for frame in clip.frames() {
//!     let mut frame = frame.unwrap();
//!     frame.wall = Some(t0.add_ticks(frame.pts, frame.timescale));
//!     writer.push(frame)?;
//! }
//! writer.finish()?;
//! assert_eq!(store.segments("front", t0, t0.add_micros(10_000_000)).len(), 3); // 4 s, 4 s, 2 s
//!
//! // An event arrived: tag it, then export 2.5 s around it, starting mid-GOP.
//! let (from, to) = (t0.add_micros(5_500_000), t0.add_micros(8_000_000));
//! store.tag("front", from, to, Tag::Event, Some(serde_json::json!({"source": "doc test"})))?;
//! let mut mp4 = Vec::new();
//! store.export("front", from, to, ExportFormat::Mp4)?.write_to(&mut mp4, |_| {})?;
//! let out = Demuxer::from_bytes("export.mp4", mp4.into()).unwrap();
//! // From the frame on screen at 5.5 s (5.48 s, 25 fps) to the end of the one before 8 s.
//! assert_eq!(out.tracks()[0].duration, 12800 * 252 / 100);
//! # Ok::<(), nvrkit_store::Error>(())
//! ```
//!
//! ## Reopen after a crash
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use nvrkit_store::{Options, Store};
//!
//! let store = Store::open(dir.path(), Options::default())?;
//! let r = store.recovery();
//! println!("sealed {} open segments, cut {} bytes, removed {} files",
//!          r.sealed.len(), r.cut_bytes, r.removed.len());
//! assert!(store.verify(None, |_| {}).is_empty());
//! # Ok::<(), nvrkit_store::Error>(())
//! ```

#![deny(missing_docs)]

pub mod error;
pub mod fragments;
mod io;
pub mod layout;
pub mod meta;
pub mod note;
pub mod query;
pub mod queue;
mod read;
mod retention;
mod segment;
mod store;
pub mod timeline;
mod writer;

pub use error::{Error, Result};
pub use io::{WriteBack, disk_space};
pub use meta::{DaySummary, SegmentMeta, Tag, TagRange, TrackMeta};
pub use read::{Export, ExportFormat, Frames, ImportOptions, ImportReport};
pub use retention::{Deleted, Limits, Reason, RetentionPolicy, RetentionReport};
pub use store::{Options, Problem, Recording, Recovery, Segment, Store};
pub use writer::Writer;

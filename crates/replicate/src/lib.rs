//! # nvrkit-replicate
//!
//! Keeps a backup site up to date with an nvrkit segment store over a thin uplink, most valuable
//! footage first: event and pinned footage (P0), then motion (P1), then continuous footage
//! (P2, which a policy may skip). Targets are a directory (a NAS mount, a second disk) or
//! S3-compatible object storage (AWS S3, MinIO, Garage, Ceph RGW, R2) through `object_store`.
//!
//! - **The queue** lives beside the store (`nvrkit_store::queue`): the store appends to it in
//!   the same step that seals a segment or tags a range, so nothing sealed is forgotten by a
//!   crash; the replicator appends what it confirmed. See [`schedule`] for the order.
//! - **The upstream cap** ([`rate`]) is one token bucket in front of every byte sent, paced in
//!   16 KiB pieces as bodies reach the socket.
//! - **Resumable**: segments up to the part size go in one create-if-absent `PUT`; larger ones
//!   are multipart uploads whose id and part ETags are in the queue, so after `kill -9` at most
//!   the part in flight is sent again.
//! - **Verified**: the local file is checked against its sidecar's BLAKE3 as it is read; each
//!   part's and each object's ETag against the MD5 of what was sent (where the target answers
//!   MD5-style ETags, as S3, MinIO, s3s-fs and moto do); the size by `HEAD` after upload; a
//!   directory target checks the assembled file's BLAKE3 before renaming it into place.
//!   [`verify_remote`] spot-checks a target with range reads.
//! - **Keys**: `<site>/<camera>/<YYYY>/<MM>/<DD>/<start>-<end>.mp4` and a per-day
//!   `manifest.json` with each segment's times, size, BLAKE3 and tags.
//!
//! - **Bounded reads**: every body an S3 endpoint answers is read in pieces up to a limit by
//!   what it answers ([`target::s3`]: a manifest 16 MiB, a list page 8 MiB, a range its length,
//!   anything else 64 KiB), and [`Error::TooLarge`] names the object and the limit.
//! - **Features**: `s3` (default) is the S3 target; without it the crate has no `object_store`
//!   and no `reqwest` (the [`manifest`] parser's fuzz target builds it so).
//!
//! Non-goals: deleting from the target (retention of the backup is the target's lifecycle
//! policy), replicating open segments, several uploads at once (on a thin uplink one stream
//! fills it; uncapped throughput is in docs/benchmarks.md).
//!
//! ## Replicate a store to a directory
//!
//! ```
//! use nvrkit_media::{Demuxer, WallTime};
//! use nvrkit_replicate::{Options, TargetSpec};
//! use nvrkit_store::{ImportOptions, Store, Tag};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("store"), Default::default())?;
//! let clip = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
//! let t0 = WallTime::parse_rfc3339("2026-11-25T12:00:00Z").unwrap();
//! store.import("front", &clip, &ImportOptions::default().start(t0), |_| {})?;
//! store.tag("front", t0, t0.add_micros(1_000_000), Tag::Event, None)?;
//!
//! let target = TargetSpec::parse(dir.path().join("backup").to_str().unwrap())?;
//! let stats = nvrkit_replicate::start(&store, &target, Options::default())?.join()?;
//! assert_eq!(stats.done[0], 1); // the event segment (P0)
//! assert!(dir.path().join("backup/front/2026/11/25/manifest.json").is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod error;
pub mod manifest;
pub mod rate;
mod replicator;
pub mod schedule;
pub mod stats;
pub mod target;
mod verify;

pub use error::{Error, Result};
pub use manifest::{Manifest, ManifestEntry};
pub use replicator::{Handle, Options, start};
pub use schedule::{Policy, Priority};
pub use stats::Stats;
pub use target::{Target, TargetSpec};
pub use verify::{RemoteReport, verify_remote};

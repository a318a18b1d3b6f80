//! The per-day `manifest.json` a replicator writes beside a camera's segments on a target, and
//! its parser.
//!
//! A manifest is read back from the target (to merge new entries into it, and by
//! `verify --remote`), so its bytes are untrusted: [`Manifest::parse`] refuses more than
//! [`MAX_MANIFEST_BYTES`] before looking at them and is otherwise `serde_json`, which is linear in
//! its input and limits nesting to 128 levels. This module needs neither `object_store` nor
//! `reqwest` (the `replicate_manifest` fuzz target builds `nvrkit-replicate` without its `s3`
//! feature).

use serde::{Deserialize, Serialize};

/// The largest manifest read from a target, and parsed: 16 MiB. A pretty-printed entry is about
/// 300 bytes, so this is some 50,000 segments of one camera in one day (one-minute segments make
/// 1,440). An S3 `GET` of a whole object stops reading at this many bytes.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The `format` of a manifest.
pub const FORMAT: &str = "nvrkit-replica-manifest";

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Over [`MAX_MANIFEST_BYTES`]; not parsed.
    #[error("{len} bytes, over the manifest limit of {limit} bytes")]
    TooLarge {
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Not JSON, or not a manifest's fields.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Another format or version.
    #[error("format {format:?} version {version}")]
    Format {
        /// The `format` field.
        format: String,
        /// The `version` field.
        version: u32,
    },
}

/// One entry of a day manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The object key (under the target's prefix).
    pub key: String,
    /// Start, RFC 3339.
    pub start: String,
    /// Start, wall-clock µs.
    pub start_us: i64,
    /// End, wall-clock µs.
    pub end_us: i64,
    /// Bytes.
    pub bytes: u64,
    /// BLAKE3, hex.
    pub blake3: String,
    /// Tags.
    pub tags: Vec<nvrkit_store::Tag>,
}

/// A camera's day on a target: `<camera>/<YYYY>/<MM>/<DD>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `nvrkit-replica-manifest`.
    pub format: String,
    /// 1.
    pub version: u32,
    /// The camera.
    pub camera: String,
    /// The segments replicated so far, by start.
    pub segments: Vec<ManifestEntry>,
}

impl Manifest {
    /// A manifest of this format and version.
    pub fn new(camera: &str, segments: Vec<ManifestEntry>) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: 1,
            camera: camera.to_owned(),
            segments,
        }
    }

    /// Parses a manifest of at most [`MAX_MANIFEST_BYTES`], in time linear in its length.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let len = bytes.len() as u64;
        if len > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                len,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.format != FORMAT || m.version != 1 {
            return Err(ManifestError::Format {
                format: m.format,
                version: m.version,
            });
        }
        Ok(m)
    }

    /// The manifest as written: pretty JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ManifestEntry {
        ManifestEntry {
            key: "front/2026/11/25/a-b.mp4".into(),
            start: "2026-11-25T12:00:00Z".into(),
            start_us: 1,
            end_us: 2,
            bytes: 3,
            blake3: "ab".into(),
            tags: vec![nvrkit_store::Tag::Event],
        }
    }

    #[test]
    fn round_trips() {
        let m = Manifest::new("front", vec![entry()]);
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn other_formats_and_versions_are_refused() {
        let mut m = Manifest::new("front", vec![]);
        m.version = 2;
        assert!(matches!(
            Manifest::parse(&m.to_bytes()),
            Err(ManifestError::Format { version: 2, .. })
        ));
        assert!(matches!(
            Manifest::parse(b"{\"format\":"),
            Err(ManifestError::Json(_))
        ));
    }

    #[test]
    fn oversized_manifest_is_refused_unparsed() {
        // Valid JSON up to the limit and beyond: refused by its length alone.
        let mut big = Manifest::new("front", vec![]).to_bytes();
        big.resize(MAX_MANIFEST_BYTES as usize + 1, b' ');
        assert!(matches!(
            Manifest::parse(&big),
            Err(ManifestError::TooLarge {
                limit: MAX_MANIFEST_BYTES,
                ..
            })
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(Manifest::parse(deep.as_bytes()).is_err());
    }
}

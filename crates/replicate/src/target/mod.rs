//! Where copies go: the [`Target`] trait, its two implementations (a directory, S3-compatible
//! object storage), target URLs and object keys.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use nvrkit_media::WallTime;

use crate::error::{Error, Result};
use crate::rate::RateLimit;
use crate::stats::Counters;

pub mod dir;
#[cfg(feature = "s3")]
pub mod s3;

/// What a target says about an object it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// Its length in bytes.
    pub size: u64,
    /// The target's entity tag, if it has one (S3: the MD5 of a single-PUT object, or the MD5
    /// of the parts' MD5s with `-N` for a multipart one).
    pub etag: Option<String>,
}

/// How a create-if-absent PUT ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    /// The object was created.
    Created,
    /// An object of that key existed already (an earlier try got through): check it.
    Existed,
}

/// A replication target. Every byte a target sends goes through the shared [`RateLimit`].
///
/// Parts are numbered from 0; all parts but the last have the upload's part size. Part ids are
/// what the target answers (S3: the part's ETag); the replicator persists them and hands them
/// back to [`Target::complete`].
#[async_trait]
pub trait Target: fmt::Debug + Send + Sync {
    /// The target's URL (its name in the replication queue).
    fn url(&self) -> &str;

    /// The object's size and tag, or `None` if there is none.
    async fn head(&self, key: &str) -> Result<Option<RemoteObject>>;

    /// Creates the object if it does not exist (S3: `If-None-Match: *`; a directory: a link
    /// that fails if the name exists). `blake3` is stored with it where the target can.
    async fn put_new(&self, key: &str, data: Bytes, blake3: &str) -> Result<PutOutcome>;

    /// Writes the object, replacing any (manifests).
    async fn put_overwrite(&self, key: &str, data: Bytes) -> Result<()>;

    /// Starts a multipart upload; returns its id.
    async fn begin(&self, key: &str) -> Result<String>;

    /// Sends part `n` (at byte `offset` of the object); returns the part's id.
    async fn put_part(
        &self,
        key: &str,
        upload: &str,
        n: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<String>;

    /// Completes a multipart upload from its parts' ids, in order. `blake3` is the whole
    /// object's hash (a directory target checks the assembled file against it).
    async fn complete(&self, key: &str, upload: &str, parts: &[String], blake3: &str)
    -> Result<()>;

    /// Abandons a multipart upload (best effort).
    async fn abort(&self, key: &str, upload: &str) -> Result<()>;

    /// Reads the object, or a byte range of it.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes>;

    /// Keys and sizes of the objects under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>>;
}

/// Where to replicate to, parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetSpec {
    /// A directory (a mounted NAS, a second disk): `/mnt/backup` or `file:///mnt/backup`.
    Dir {
        /// The directory.
        path: PathBuf,
    },
    /// S3-compatible object storage: `s3://bucket/site`. Credentials, region and endpoint come
    /// from the usual `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`) unless set
    /// here.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (the site), without slashes at either end; may be empty.
        prefix: String,
        /// Endpoint URL (MinIO, Garage, R2 …); `None`: the environment, else AWS.
        endpoint: Option<String>,
        /// Region; `None`: the environment, else `us-east-1`.
        region: Option<String>,
        /// Allow plain HTTP to the endpoint.
        allow_http: bool,
    },
}

impl TargetSpec {
    /// Parses `s3://bucket[/prefix]`, `file:///path` or a plain path.
    pub fn parse(url: &str) -> Result<TargetSpec> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::InvalidArgument(format!("{url}: no bucket")));
            }
            let prefix = prefix.trim_matches('/').to_owned();
            if prefix.split('/').any(|p| p == ".." || p == ".") {
                return Err(Error::InvalidArgument(format!(
                    "{url}: '.' or '..' in the prefix"
                )));
            }
            return Ok(TargetSpec::S3 {
                bucket: bucket.to_owned(),
                prefix,
                endpoint: None,
                region: None,
                allow_http: false,
            });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(Error::InvalidArgument(format!(
                "{url}: use s3://bucket/site or a directory"
            )));
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() {
            return Err(Error::InvalidArgument("empty target".into()));
        }
        Ok(TargetSpec::Dir {
            path: PathBuf::from(path),
        })
    }

    /// The URL that names the target in the replication queue.
    pub fn url(&self) -> String {
        match self {
            TargetSpec::Dir { path } => {
                let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("file://{}", abs.display())
            }
            TargetSpec::S3 { bucket, prefix, .. } if prefix.is_empty() => format!("s3://{bucket}"),
            TargetSpec::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// Builds the target; its traffic goes through `limit` and is counted in `counters`.
    pub fn build(
        &self,
        limit: Option<Arc<RateLimit>>,
        counters: Arc<Counters>,
    ) -> Result<Arc<dyn Target>> {
        Ok(match self {
            TargetSpec::Dir { path } => {
                Arc::new(dir::DirTarget::new(path, self.url(), limit, counters)?)
            }
            #[cfg(feature = "s3")]
            TargetSpec::S3 { .. } => Arc::new(s3::S3Target::new(self, limit, counters)?),
            #[cfg(not(feature = "s3"))]
            TargetSpec::S3 { .. } => {
                let _ = (limit, counters);
                return Err(Error::InvalidArgument(format!(
                    "{}: nvrkit-replicate was built without its `s3` feature",
                    self.url()
                )));
            }
        })
    }
}

/// The key of a segment: `<camera>/<YYYY>/<MM>/<DD>/<start>-<end>.mp4` (UTC, compact times),
/// under the target's prefix (which the target adds).
pub fn segment_key(camera: &str, start_us: i64, end_us: i64) -> String {
    let (s, e) = (
        WallTime::from_micros(start_us).to_compact(),
        WallTime::from_micros(end_us).to_compact(),
    );
    format!("{}/{s}-{e}.mp4", day_prefix(camera, start_us))
}

/// The directory of a camera's day: `<camera>/<YYYY>/<MM>/<DD>`.
pub fn day_prefix(camera: &str, start_us: i64) -> String {
    let c = WallTime::from_micros(start_us).to_compact();
    format!("{camera}/{}/{}/{}", &c[0..4], &c[4..6], &c[6..8])
}

/// The key of a camera's day manifest.
pub fn manifest_key(camera: &str, start_us: i64) -> String {
    format!("{}/manifest.json", day_prefix(camera, start_us))
}

/// Lowercase hex MD5 (what S3 answers as the ETag of a single-PUT object or a part).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex(&md5::Md5::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, `-` and their count.
pub fn multipart_etag(part_md5s: &[String]) -> Option<String> {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for p in part_md5s {
        if p.len() != 32 {
            return None;
        }
        for i in (0..32).step_by(2) {
            h.update([u8::from_str_radix(&p[i..i + 2], 16).ok()?]);
        }
    }
    Some(format!("{}-{}", hex(&h.finalize()), part_md5s.len()))
}

/// An ETag without quotes, lowercase, if it looks like an MD5 (`-N` suffix allowed).
pub fn plain_etag(etag: &str) -> Option<String> {
    let e = etag
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase();
    let (md5, n) = e
        .split_once('-')
        .map_or((e.as_str(), None), |(a, b)| (a, Some(b)));
    let md5_like = md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit());
    let n_ok = n.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (md5_like && n_ok).then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            TargetSpec::parse("s3://b/site/").unwrap(),
            TargetSpec::S3 {
                bucket: "b".into(),
                prefix: "site".into(),
                endpoint: None,
                region: None,
                allow_http: false
            }
        );
        assert_eq!(TargetSpec::parse("s3://b").unwrap().url(), "s3://b");
        assert_eq!(TargetSpec::parse("s3://b/x/y").unwrap().url(), "s3://b/x/y");
        assert_eq!(
            TargetSpec::parse("file:///mnt/b").unwrap(),
            TargetSpec::Dir {
                path: "/mnt/b".into()
            }
        );
        for bad in ["s3://", "s3:///x", "http://x/y", "", "s3://b/../x"] {
            assert!(TargetSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys() {
        let t = WallTime::parse_rfc3339("2026-11-25T16:37:03.5Z").unwrap();
        assert_eq!(
            segment_key("front", t.as_micros(), t.as_micros() + 60_000_000),
            "front/2026/11/25/20261125T163703.500000Z-20261125T163803.500000Z.mp4"
        );
        assert_eq!(
            manifest_key("front", t.as_micros()),
            "front/2026/11/25/manifest.json"
        );
    }

    #[test]
    fn etags() {
        // Known values: MD5("") and the S3 ETag of a two-part upload of "a" and "b".
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        let parts = [md5_hex(b"a"), md5_hex(b"b")];
        let e = multipart_etag(&parts).unwrap();
        assert!(e.ends_with("-2") && e.len() == 34, "{e}");
        assert_eq!(
            plain_etag("\"D41D8CD98F00B204E9800998ECF8427E\""),
            Some("d41d8cd98f00b204e9800998ecf8427e".into())
        );
        assert_eq!(plain_etag(&format!("\"{e}\"")), Some(e));
        assert_eq!(plain_etag("\"abc\""), None);
        assert_eq!(multipart_etag(&["xyz".into()]), None);
    }
}

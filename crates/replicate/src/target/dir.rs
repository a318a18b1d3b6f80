//! A directory target: a mounted NAS, a second disk.
//!
//! Objects are files at their key under the directory. A whole object is written to a hidden
//! temporary file beside its final name, synced, and linked to the final name (`link` fails if
//! the name exists: create-if-absent), then the directory is synced. A multipart upload is a
//! hidden `.NAME.part` file written part by part at each part's offset and synced after each,
//! so a restart continues where the queue says; on completion the file is checked against the
//! segment's BLAKE3 and renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{PutOutcome, RemoteObject, Target, md5_hex};
use crate::error::{Error, Result};
use crate::rate::{PIECE, RateLimit};
use crate::stats::Counters;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct DirTarget {
    root: PathBuf,
    url: String,
    limit: Option<Arc<RateLimit>>,
    counters: Arc<Counters>,
}

impl DirTarget {
    /// A target writing under `root` (created if missing).
    pub fn new(
        root: &Path,
        url: String,
        limit: Option<Arc<RateLimit>>,
        counters: Arc<Counters>,
    ) -> Result<DirTarget> {
        fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        Ok(DirTarget {
            root: root.to_owned(),
            url,
            limit,
            counters,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::InvalidArgument(format!("object key {key:?}")));
        }
        Ok(self.root.join(key))
    }

    fn err(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> Error {
        Error::Target {
            target: self.url.clone(),
            op,
            key: key.to_owned(),
            what: e.to_string(),
            // A full or unmounted disk may come back; the replicator retries with backoff.
            transient: true,
            upload_gone: false,
        }
    }

    /// Creates (or truncates) `path`, writes `data` into it under the upload cap and syncs it.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        self.write_paced(&f, 0, data)?;
        f.sync_all()
    }

    /// Writes `data` at `offset` of `f`, paced by the limiter.
    fn write_paced(&self, f: &File, mut offset: u64, data: &[u8]) -> io::Result<()> {
        for piece in data.chunks(PIECE) {
            if let Some(l) = &self.limit {
                l.acquire_blocking(piece.len() as u64);
            }
            f.write_all_at(piece, offset)?;
            self.counters.add_sent(piece.len() as u64);
            offset += piece.len() as u64;
        }
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(DirTarget) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| Error::Runtime(e.to_string()))?
    }
}

fn hidden(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

#[async_trait]
impl Target for DirTarget {
    fn url(&self) -> &str {
        &self.url
    }

    async fn head(&self, key: &str) -> Result<Option<RemoteObject>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(RemoteObject {
                size: m.len(),
                etag: None,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", key, e)),
        }
    }

    async fn put_new(&self, key: &str, data: Bytes, _blake3: &str) -> Result<PutOutcome> {
        let path = self.path(key)?;
        let key = key.to_owned();
        self.blocking(move |me| {
            let dir = parent(&path);
            fs::create_dir_all(dir).map_err(|e| me.err("mkdir", &key, e))?;
            let tmp = hidden(&path, "tmp");
            me.write_file(&tmp, &data)
                .map_err(|e| me.err("write", &key, e))?;
            let outcome = match fs::hard_link(&tmp, &path) {
                Ok(()) => PutOutcome::Created,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => PutOutcome::Existed,
                Err(e) => return Err(me.err("link", &key, e)),
            };
            fs::remove_file(&tmp).map_err(|e| me.err("remove", &key, e))?;
            sync_dir(dir).map_err(|e| me.err("sync", &key, e))?;
            Ok(outcome)
        })
        .await
    }

    async fn put_overwrite(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let key = key.to_owned();
        self.blocking(move |me| {
            let dir = parent(&path);
            fs::create_dir_all(dir).map_err(|e| me.err("mkdir", &key, e))?;
            let tmp = hidden(&path, "tmp");
            me.write_file(&tmp, &data)
                .and_then(|()| fs::rename(&tmp, &path))
                .and_then(|()| sync_dir(dir))
                .map_err(|e| me.err("write", &key, e))
        })
        .await
    }

    async fn begin(&self, key: &str) -> Result<String> {
        let path = self.path(key)?;
        let key = key.to_owned();
        self.blocking(move |me| {
            let dir = parent(&path);
            fs::create_dir_all(dir).map_err(|e| me.err("mkdir", &key, e))?;
            let part = hidden(&path, "part");
            File::create(&part)
                .and_then(|f| f.sync_all())
                .and_then(|()| sync_dir(dir))
                .map_err(|e| me.err("create", &key, e))?;
            Ok("part-file".to_owned())
        })
        .await
    }

    async fn put_part(
        &self,
        key: &str,
        _upload: &str,
        _n: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<String> {
        let path = self.path(key)?;
        let key = key.to_owned();
        self.blocking(move |me| {
            let part = hidden(&path, "part");
            let f = match OpenOptions::new().write(true).open(&part) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::Target {
                        target: me.url.clone(),
                        op: "part",
                        key,
                        what: "the partial file is gone".into(),
                        transient: true,
                        upload_gone: true,
                    });
                }
                Err(e) => return Err(me.err("open", &key, e)),
            };
            me.write_paced(&f, offset, &data)
                .and_then(|()| f.sync_data())
                .map_err(|e| me.err("write", &key, e))?;
            Ok(md5_hex(&data))
        })
        .await
    }

    async fn complete(
        &self,
        key: &str,
        _upload: &str,
        _parts: &[String],
        blake3: &str,
    ) -> Result<()> {
        let path = self.path(key)?;
        let key = key.to_owned();
        let blake3 = blake3.to_owned();
        self.blocking(move |me| {
            let part = hidden(&path, "part");
            let gone = |what: String| Error::Target {
                target: me.url.clone(),
                op: "complete",
                key: key.clone(),
                what,
                transient: true,
                upload_gone: true,
            };
            let mut f = File::open(&part).map_err(|e| gone(e.to_string()))?;
            let mut h = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(|e| me.err("read", &key, e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            if h.finalize().to_hex().as_str() != blake3 {
                // A part written before a crash that the queue does not know of was cut short,
                // or the disk changed it: start over.
                let _ = fs::remove_file(&part);
                return Err(gone(
                    "the assembled file does not match the segment's BLAKE3".into(),
                ));
            }
            fs::rename(&part, &path)
                .and_then(|()| sync_dir(parent(&path)))
                .map_err(|e| me.err("rename", &key, e))
        })
        .await
    }

    async fn abort(&self, key: &str, _upload: &str) -> Result<()> {
        let part = hidden(&self.path(key)?, "part");
        match fs::remove_file(&part) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("remove", key, e)),
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let path = self.path(key)?;
        let key = key.to_owned();
        self.blocking(move |me| {
            let mut f = File::open(&path).map_err(|e| me.err("open", &key, e))?;
            let mut out = Vec::new();
            match range {
                None => {
                    f.read_to_end(&mut out)
                        .map_err(|e| me.err("read", &key, e))?;
                }
                Some(r) => {
                    out.resize(r.end.saturating_sub(r.start) as usize, 0);
                    f.read_exact_at(&mut out, r.start)
                        .map_err(|e| me.err("read", &key, e))?;
                }
            }
            Ok(Bytes::from(out))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let root = self.root.clone();
        let start = if prefix.is_empty() {
            root.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        self.blocking(move |me| {
            fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, u64)>) -> io::Result<()> {
                for e in fs::read_dir(dir)? {
                    let e = e?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue;
                    }
                    let p = e.path();
                    let m = e.metadata()?;
                    if m.is_dir() {
                        walk(&p, root, out)?;
                    } else if let Ok(rel) = p.strip_prefix(root) {
                        out.push((rel.to_string_lossy().into_owned(), m.len()));
                    }
                }
                Ok(())
            }
            let mut out = Vec::new();
            match walk(&start, &root, &mut out) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(me.err("list", &start.to_string_lossy(), e)),
            }
            out.sort();
            Ok(out)
        })
        .await
    }
}

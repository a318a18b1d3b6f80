//! A catalog of tilesets from files and directories, kept in step with the file system.
//!
//! [`Catalog::refresh`] looks at every source: a file is one tileset, a directory holds one
//! tileset per `*.mbtiles` or `*.pmtiles` file in it (not recursive). The tileset id is the file stem. A file
//! whose length, modification time or inode changed (or whose `-wal` file did) is opened again;
//! until the new open succeeds, requests keep going to the old handle, which still reads the old
//! file after an atomic rename. So a replaced file is served without a failed request in between.
//! A file that cannot be opened (corrupt, not SQLite, no tiles table) disables that tileset only;
//! the catalog shows why. A file that is busy (locked by a writer) keeps its old handle and is
//! tried again at the next refresh. [`Catalog::watch`] refreshes on a timer (default 1 s,
//! [`Catalog::DEFAULT_POLL`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::format::TileFormat;
use crate::pmtiles::PmTiles;
use crate::reader::{Layout, MbTiles, Metadata, Tile};
use crate::scheme::TileId;

/// A tileset's file: MBTiles (SQLite) or PMTiles (v3), chosen by the extension.
#[derive(Debug)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "one per open file, inside an Arc'd Tileset: 232 bytes more per tileset is nothing"
)]
pub enum Source {
    /// An `.mbtiles` file.
    MbTiles(MbTiles),
    /// A `.pmtiles` file.
    PmTiles(PmTiles),
}

impl Source {
    /// Opens `path`: PMTiles if its extension is `pmtiles` (any case), else MBTiles.
    pub fn open(path: &Path) -> Result<Source> {
        if is_pmtiles(path) {
            PmTiles::open(path).map(Source::PmTiles)
        } else {
            MbTiles::open(path).map(Source::MbTiles)
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Source::MbTiles(t) => t.path(),
            Source::PmTiles(t) => t.path(),
        }
    }

    /// The MBTiles layout (`None` for PMTiles).
    pub fn layout(&self) -> Option<Layout> {
        match self {
            Source::MbTiles(t) => Some(t.layout()),
            Source::PmTiles(_) => None,
        }
    }

    /// `mbtiles` or `pmtiles`.
    pub fn container(&self) -> &'static str {
        match self {
            Source::MbTiles(_) => "mbtiles",
            Source::PmTiles(_) => "pmtiles",
        }
    }

    /// The metadata (see [`MbTiles::metadata`], [`PmTiles::metadata`]).
    pub fn metadata(&self) -> &Metadata {
        match self {
            Source::MbTiles(t) => t.metadata(),
            Source::PmTiles(t) => t.metadata(),
        }
    }

    /// The tile format.
    pub fn format(&self) -> TileFormat {
        match self {
            Source::MbTiles(t) => t.format(),
            Source::PmTiles(t) => t.format(),
        }
    }

    /// The lowest and highest zoom with tiles.
    pub fn zoom_range(&self) -> Option<(u8, u8)> {
        match self {
            Source::MbTiles(t) => t.zoom_range(),
            Source::PmTiles(t) => t.zoom_range(),
        }
    }

    /// Reads one tile; `Ok(None)` if there is none there.
    pub fn tile(&self, id: TileId) -> Result<Option<Tile>> {
        match self {
            Source::MbTiles(t) => t.tile(id),
            Source::PmTiles(t) => t.tile(id),
        }
    }

    /// Whether the file has UTFGrid data (PMTiles has none).
    pub fn has_grids(&self) -> bool {
        match self {
            Source::MbTiles(t) => t.has_grids(),
            Source::PmTiles(_) => false,
        }
    }

    /// The UTFGrid of a tile (see [`MbTiles::grid`]); `Ok(None)` for PMTiles.
    pub fn grid(&self, id: TileId) -> Result<Option<Vec<u8>>> {
        match self {
            Source::MbTiles(t) => t.grid(id),
            Source::PmTiles(_) => Ok(None),
        }
    }
}

/// Whether a path names a PMTiles file (extension `pmtiles`, any case).
pub fn is_pmtiles(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pmtiles"))
}

/// An open tileset.
#[derive(Debug)]
pub struct Tileset {
    /// The id in URLs: the file stem.
    pub id: String,
    /// The reader.
    pub tiles: Source,
    /// The zoom that Ocularis level 0 stands for.
    pub ocularis_maxzoom: u8,
    /// Whether `ocularis_maxzoom` was set by the operator rather than read from the tiles.
    pub ocularis_overridden: bool,
    /// Unique per open of a file in this process: the tile cache's key, so a reloaded file
    /// never serves its old tiles.
    pub generation: u64,
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A catalog entry: an open tileset, or why it is disabled.
#[derive(Debug)]
pub struct Entry {
    /// The id in URLs.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// The tileset, or the error that disabled it.
    pub state: std::result::Result<Arc<Tileset>, String>,
    fingerprint: Fingerprint,
}

/// What changed in a refresh, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A tileset was opened (first time or after its file changed).
    Opened {
        /// Tileset id.
        id: String,
        /// Whether it replaced an earlier version.
        reloaded: bool,
    },
    /// A file could not be opened; the tileset is disabled.
    Disabled {
        /// Tileset id.
        id: String,
        /// Why.
        error: String,
    },
    /// A file changed but is locked by a writer: the old version is still served.
    Deferred {
        /// Tileset id.
        id: String,
    },
    /// A file disappeared.
    Removed {
        /// Tileset id.
        id: String,
    },
    /// Two sources give the same id; the later one is skipped.
    Duplicate {
        /// Tileset id.
        id: String,
        /// The file that was skipped.
        path: PathBuf,
    },
}

/// Identity of a file's current version, cheap to read (one `stat` or two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    wal: Option<(u64, Option<SystemTime>)>,
}

impl Fingerprint {
    fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let m = std::fs::metadata(path)?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = std::fs::metadata(&wal_path)
            .ok()
            .map(|w| (w.len(), w.modified().ok()));
        Ok(Fingerprint {
            len: m.len(),
            modified: m.modified().ok(),
            inode: inode(&m),
            wal,
        })
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The set of tilesets served.
#[derive(Debug)]
pub struct Catalog {
    sources: Vec<PathBuf>,
    overrides: HashMap<String, u8>,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
}

impl Catalog {
    /// How often [`Catalog::watch`] looks at the files by default.
    pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

    /// A catalog over files and directories, with per-tileset Ocularis `maxzoom` overrides. It is
    /// empty until the first [`Catalog::refresh`].
    pub fn new(sources: Vec<PathBuf>, ocularis_overrides: HashMap<String, u8>) -> Catalog {
        Catalog {
            sources,
            overrides: ocularis_overrides,
            entries: RwLock::new(BTreeMap::new()),
        }
    }

    /// A catalog opened once (a convenience for tests and examples).
    ///
    /// Fails only if a source directory cannot be listed; bad files become disabled entries.
    pub fn open(sources: Vec<PathBuf>) -> Result<Catalog> {
        let c = Catalog::new(sources, HashMap::new());
        c.refresh()?;
        Ok(c)
    }

    /// One entry by id.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.read().get(id).cloned()
    }

    /// Every entry, sorted by id.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at every source once and opens what is new or changed. Blocking (file system and
    /// SQLite); call it from a blocking context.
    ///
    /// Fails only if a source directory cannot be listed (the entries are then left as they were).
    pub fn refresh(&self) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        for src in &self.sources {
            if src.is_dir() {
                let dir = std::fs::read_dir(src).map_err(|e| Error::Dir {
                    path: src.clone(),
                    source: e,
                })?;
                let mut files: Vec<PathBuf> = dir
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.extension().is_some_and(|e| {
                            e.eq_ignore_ascii_case("mbtiles") || e.eq_ignore_ascii_case("pmtiles")
                        }) && !p.is_dir()
                    })
                    .collect();
                files.sort();
                found.extend(files.into_iter().filter_map(|p| Some((stem(&p)?, p))));
            } else if let Some(id) = stem(src) {
                found.push((id, src.clone()));
            }
        }

        let old = self.read().clone();
        let mut next = BTreeMap::new();
        for (id, path) in found {
            if next.contains_key(&id) {
                changes.push(Change::Duplicate { id, path });
                continue;
            }
            let fp = Fingerprint::of(&path);
            let prev = old.get(&id).filter(|e| e.path == path);
            if let (Some(prev), Ok(fp)) = (prev, &fp)
                && prev.fingerprint == *fp
            {
                next.insert(id, prev.clone());
                continue;
            }
            let fingerprint = match fp {
                Ok(fp) => fp,
                Err(_) if prev.is_none() && !path.exists() => continue,
                Err(_) => {
                    // Vanished between listing and stat (mid-rename): look again next time.
                    if let Some(prev) = prev {
                        next.insert(id, prev.clone());
                    }
                    continue;
                }
            };
            let state = match Source::open(&path) {
                Ok(tiles) => {
                    let (maxzoom, overridden) = match self.overrides.get(&id) {
                        Some(&z) => (z, true),
                        None => (
                            tiles
                                .zoom_range()
                                .map(|(_, hi)| hi)
                                .or(tiles.metadata().maxzoom)
                                .unwrap_or(0),
                            false,
                        ),
                    };
                    changes.push(Change::Opened {
                        id: id.clone(),
                        reloaded: prev.is_some(),
                    });
                    Ok(Arc::new(Tileset {
                        id: id.clone(),
                        tiles,
                        ocularis_maxzoom: maxzoom,
                        ocularis_overridden: overridden,
                        generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    }))
                }
                Err(e) if e.is_busy() && prev.is_some() => {
                    changes.push(Change::Deferred { id: id.clone() });
                    if let Some(prev) = prev {
                        next.insert(id, prev.clone());
                    }
                    continue;
                }
                Err(e) => {
                    changes.push(Change::Disabled {
                        id: id.clone(),
                        error: e.to_string(),
                    });
                    Err(e.to_string())
                }
            };
            next.insert(
                id.clone(),
                Arc::new(Entry {
                    id,
                    path,
                    state,
                    fingerprint,
                }),
            );
        }
        for id in old.keys() {
            if !next.contains_key(id) {
                changes.push(Change::Removed { id: id.clone() });
            }
        }
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(changes)
    }

    #[cfg(feature = "http")]
    /// Refreshes every `interval` on the tokio runtime, logging changes with `tracing`, until
    /// the returned handle is aborted.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let c = Arc::clone(&me);
                match tokio::task::spawn_blocking(move || c.refresh()).await {
                    Ok(Ok(changes)) => log_changes(&changes),
                    Ok(Err(e)) => tracing::warn!("refresh: {e}"),
                    Err(e) => tracing::error!("refresh task failed: {e}"),
                }
            }
        })
    }
}

/// Logs refresh changes with `tracing` (info for opens, warn for problems).
pub fn log_changes(changes: &[Change]) {
    for c in changes {
        match c {
            Change::Opened {
                id,
                reloaded: false,
            } => tracing::info!(tileset = %id, "opened"),
            Change::Opened { id, reloaded: true } => tracing::info!(tileset = %id, "reloaded"),
            Change::Disabled { id, error } => tracing::warn!(tileset = %id, "disabled: {error}"),
            Change::Deferred { id } => {
                tracing::info!(tileset = %id, "changed but locked by a writer; serving the old version")
            }
            Change::Removed { id } => tracing::info!(tileset = %id, "removed"),
            Change::Duplicate { id, path } => {
                tracing::warn!(tileset = %id, "duplicate id, skipped {}", path.display())
            }
        }
    }
}

fn stem(p: &Path) -> Option<String> {
    Some(p.file_stem()?.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
}

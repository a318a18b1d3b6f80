//! The [PMTiles v3] reader: a header, a root directory and leaf directories of run-length
//! entries, read from the file with bounded range reads (never the whole file).
//!
//! Our own code, not the `pmtiles` crate's reader: that reader (pmtiles 0.26) is async only
//! (its `AsyncPmTilesReader` needs tokio, which this crate keeps out of its no-default-features
//! build), and its sync `Header` keeps the directory offsets crate-private, so its parsers cannot
//! locate a directory. Its writer is what `tileserve convert` uses ([`crate::convert`]).
//!
//! Everything in a file is untrusted input:
//! - [`parse_header`] checks the 127 bytes and that every section lies inside the file;
//! - [`parse_directory`] is linear in its input: the entry count is bounded by the bytes
//!   present (each entry needs 4 bytes or more) and by [`MAX_DIRECTORY_ENTRIES`], every varint
//!   by 10 bytes and its column's range, every run by the tile-id space;
//! - a directory is at most [`MAX_DIRECTORY_BYTES`] as stored and [`MAX_DIRECTORY_INFLATED`]
//!   inflated, the metadata at most [`crate::reader::MAX_METADATA_BYTES`] either way;
//! - a lookup follows at most [`MAX_LEAF_DEPTH`] leaf directories (the reference JavaScript
//!   reader's limit), so a directory that points at itself ends with an error;
//! - a tile is at most [`crate::reader::MAX_TILE_BYTES`] and must lie in the data section.
//!
//! Leaf directories are kept in a small cache bounded by entry count ([`DIR_CACHE_ENTRIES`]).
//!
//! [PMTiles v3]: https://github.com/protomaps/PMTiles/blob/main/spec/v3/spec.md

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::TileFormat;
use crate::reader::{MAX_JSON_DEPTH, MAX_METADATA_BYTES, MAX_TILE_BYTES, Metadata, Tile};
use crate::scheme::{MAX_ZOOM, TileId};

/// The length of a v3 header.
pub const HEADER_LEN: usize = 127;

/// The largest directory read as stored (16 MiB). The spec keeps the root within the first
/// 16 KiB; leaves of planet-sized archives are a few MiB.
pub const MAX_DIRECTORY_BYTES: u64 = 16 << 20;

/// The largest directory inflated (32 MiB).
pub const MAX_DIRECTORY_INFLATED: u64 = 32 << 20;

/// The most entries in one directory (2^21 = 2,097,152; 48 MiB parsed).
pub const MAX_DIRECTORY_ENTRIES: usize = 1 << 21;

/// The most leaf directories a lookup follows below the root (3, as the reference reader).
pub const MAX_LEAF_DEPTH: usize = 3;

/// The most directory entries kept in the leaf cache (2^20, about 24 MiB).
pub const DIR_CACHE_ENTRIES: usize = 1 << 20;

/// What is wrong with a PMTiles file's bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PmTilesError {
    /// Shorter than a header, or not starting with `PMTiles`.
    #[error("not a PMTiles file (no `PMTiles` magic in a 127-byte header)")]
    NotPmTiles,
    /// A version other than 3.
    #[error("PMTiles version {0} is not supported (version 3 is)")]
    Version(u8),
    /// A compression we do not decode.
    #[error("{what} compression {code} ({name}) is not supported (none or gzip are)")]
    Compression {
        /// Internal or tile.
        what: &'static str,
        /// The header byte.
        code: u8,
        /// Its name in the spec.
        name: &'static str,
    },
    /// A section or tile that lies outside the file or its section.
    #[error("{what} at {offset}+{length} lies outside {limit} bytes")]
    OutOfBounds {
        /// What was read.
        what: &'static str,
        /// Where.
        offset: u64,
        /// How long.
        length: u64,
        /// The bound it crossed.
        limit: u64,
    },
    /// Over one of this module's limits.
    #[error("{what}: {size} bytes or entries, over the limit of {limit}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size (a lower bound where it was cut off).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A directory that does not decode.
    #[error("directory: {0}")]
    Directory(&'static str),
    /// Leaf directories nested deeper than [`MAX_LEAF_DEPTH`].
    #[error("leaf directories nested deeper than {MAX_LEAF_DEPTH}")]
    LeafDepth,
    /// Gzip data that does not inflate.
    #[error("{what}: bad gzip data: {source}")]
    Inflate {
        /// What.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata is not a JSON object (or is nested deeper than the JSON limit).
    #[error("metadata is not a JSON object within 64 levels")]
    Metadata,
}

/// Compression as the header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is (header value 1; 0, "unknown", is read as none too).
    None,
    /// gzip (2).
    Gzip,
}

impl Compression {
    fn from_byte(what: &'static str, b: u8) -> std::result::Result<Self, PmTilesError> {
        let name = match b {
            0 | 1 => return Ok(Compression::None),
            2 => return Ok(Compression::Gzip),
            3 => "brotli",
            4 => "zstd",
            _ => "undefined",
        };
        Err(PmTilesError::Compression {
            what,
            code: b,
            name,
        })
    }
}

/// A v3 header (offsets in bytes from the start of the file).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Header {
    /// Root directory offset.
    pub root_offset: u64,
    /// Root directory length.
    pub root_length: u64,
    /// Metadata offset.
    pub metadata_offset: u64,
    /// Metadata length.
    pub metadata_length: u64,
    /// Leaf directories section offset.
    pub leaf_offset: u64,
    /// Leaf directories section length.
    pub leaf_length: u64,
    /// Tile data section offset.
    pub data_offset: u64,
    /// Tile data section length.
    pub data_length: u64,
    /// Addressed tiles (0 if unknown).
    pub addressed_tiles: u64,
    /// Tile entries (0 if unknown).
    pub tile_entries: u64,
    /// Distinct tile contents (0 if unknown).
    pub tile_contents: u64,
    /// Whether tile data is in tile-id order.
    pub clustered: bool,
    /// Compression of directories and metadata.
    pub internal_compression: Compression,
    /// Compression of the tiles.
    pub tile_compression: Compression,
    /// Tile type byte: 0 unknown, 1 MVT, 2 PNG, 3 JPEG, 4 WebP, 5 AVIF.
    pub tile_type: u8,
    /// Lowest zoom.
    pub min_zoom: u8,
    /// Highest zoom.
    pub max_zoom: u8,
    /// West, south, east, north in degrees.
    pub bounds: [f64; 4],
    /// Center zoom.
    pub center_zoom: u8,
    /// Center longitude and latitude.
    pub center: [f64; 2],
}

impl Header {
    /// The tile format the header names ([`TileFormat::Unknown`] for AVIF and unknown).
    pub fn format(&self) -> TileFormat {
        match self.tile_type {
            1 => TileFormat::Pbf,
            2 => TileFormat::Png,
            3 => TileFormat::Jpg,
            4 => TileFormat::Webp,
            _ => TileFormat::Unknown,
        }
    }
}

/// Parses a v3 header and checks that its sections lie within a file of `file_len` bytes.
pub fn parse_header(b: &[u8], file_len: u64) -> std::result::Result<Header, PmTilesError> {
    if b.len() < HEADER_LEN || !b.starts_with(b"PMTiles") {
        return Err(PmTilesError::NotPmTiles);
    }
    if b[7] != 3 {
        return Err(PmTilesError::Version(b[7]));
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let coord_at = |i: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[i..i + 4]);
        f64::from(i32::from_le_bytes(a)) / 10_000_000.0
    };
    let h = Header {
        root_offset: u64_at(8),
        root_length: u64_at(16),
        metadata_offset: u64_at(24),
        metadata_length: u64_at(32),
        leaf_offset: u64_at(40),
        leaf_length: u64_at(48),
        data_offset: u64_at(56),
        data_length: u64_at(64),
        addressed_tiles: u64_at(72),
        tile_entries: u64_at(80),
        tile_contents: u64_at(88),
        clustered: b[96] == 1,
        internal_compression: Compression::from_byte("internal", b[97])?,
        tile_compression: Compression::from_byte("tile", b[98])?,
        tile_type: b[99],
        min_zoom: b[100],
        max_zoom: b[101],
        bounds: [coord_at(102), coord_at(106), coord_at(110), coord_at(114)],
        center_zoom: b[118],
        center: [coord_at(119), coord_at(123)],
    };
    for (what, offset, length) in [
        ("root directory", h.root_offset, h.root_length),
        ("metadata", h.metadata_offset, h.metadata_length),
        ("leaf directories", h.leaf_offset, h.leaf_length),
        ("tile data", h.data_offset, h.data_length),
    ] {
        within(what, offset, length, file_len)?;
    }
    if h.max_zoom > MAX_ZOOM || h.min_zoom > h.max_zoom {
        return Err(PmTilesError::Directory("zoom range outside 0..=30"));
    }
    Ok(h)
}

fn within(
    what: &'static str,
    offset: u64,
    length: u64,
    limit: u64,
) -> std::result::Result<(), PmTilesError> {
    match offset.checked_add(length) {
        Some(end) if end <= limit => Ok(()),
        _ => Err(PmTilesError::OutOfBounds {
            what,
            offset,
            length,
            limit,
        }),
    }
}

/// One directory entry: a run of tiles with the same content, or (run length 0) a leaf
/// directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The first tile id (Hilbert order across zooms).
    pub tile_id: u64,
    /// From the start of the data section (a tile) or the leaf section (a leaf).
    pub offset: u64,
    /// Bytes.
    pub length: u32,
    /// How many consecutive tile ids share the content; 0 for a leaf directory.
    pub run_length: u32,
}

/// The highest tile id of zoom [`MAX_ZOOM`] (ids count every tile of lower zooms first).
pub const MAX_TILE_ID: u64 = {
    let mut sum = 0u64;
    let mut z = 0;
    while z <= MAX_ZOOM as u32 {
        sum += 1u64 << (2 * z);
        z += 1;
    }
    sum - 1
};

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn varint(&mut self) -> std::result::Result<u64, PmTilesError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or(PmTilesError::Directory("truncated varint"))?;
            self.0 = rest;
            if i == 9 && b > 1 {
                return Err(PmTilesError::Directory("varint over 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(PmTilesError::Directory("varint over 10 bytes"))
    }
}

/// Decodes an (inflated) directory: the entry count, then the tile-id deltas, run lengths,
/// lengths and offsets, each column as varints. Linear in `b`.
pub fn parse_directory(b: &[u8]) -> std::result::Result<Vec<Entry>, PmTilesError> {
    let mut c = Cursor(b);
    let n = c.varint()?;
    // Every entry takes at least one byte in each of the four columns.
    if n > (c.0.len() / 4) as u64 {
        return Err(PmTilesError::Directory(
            "more entries than the bytes can hold",
        ));
    }
    let n = n as usize;
    if n > MAX_DIRECTORY_ENTRIES {
        return Err(PmTilesError::TooLarge {
            what: "directory entries",
            size: n as u64,
            limit: MAX_DIRECTORY_ENTRIES as u64,
        });
    }
    let mut entries = vec![
        Entry {
            tile_id: 0,
            offset: 0,
            length: 0,
            run_length: 0
        };
        n
    ];
    let mut id = 0u64;
    for e in &mut entries {
        id = id
            .checked_add(c.varint()?)
            .filter(|&i| i <= MAX_TILE_ID)
            .ok_or(PmTilesError::Directory("tile id past the highest zoom"))?;
        e.tile_id = id;
    }
    for e in &mut entries {
        e.run_length = u32::try_from(c.varint()?)
            .map_err(|_| PmTilesError::Directory("run length over 32 bits"))?;
        if e.run_length > 0 && e.tile_id + u64::from(e.run_length) - 1 > MAX_TILE_ID {
            return Err(PmTilesError::Directory("run past the highest zoom"));
        }
    }
    for e in &mut entries {
        e.length = u32::try_from(c.varint()?)
            .ok()
            .filter(|&l| l > 0)
            .ok_or(PmTilesError::Directory("length 0 or over 32 bits"))?;
    }
    let mut prev: Option<(u64, u32)> = None;
    for e in &mut entries {
        let v = c.varint()?;
        e.offset = match (v, prev) {
            (0, Some((o, l))) => o
                .checked_add(u64::from(l))
                .ok_or(PmTilesError::Directory("offset over 64 bits"))?,
            (0, None) => return Err(PmTilesError::Directory("first offset refers back")),
            (v, _) => v - 1,
        };
        prev = Some((e.offset, e.length));
    }
    Ok(entries)
}

/// The entry that holds `tile_id`: the run that covers it, or the leaf directory to look in.
pub fn find(entries: &[Entry], tile_id: u64) -> Option<Entry> {
    let i = entries.partition_point(|e| e.tile_id <= tile_id);
    let e = *entries.get(i.checked_sub(1)?)?;
    if e.run_length == 0 || tile_id - e.tile_id < u64::from(e.run_length) {
        Some(e)
    } else {
        None
    }
}

/// The PMTiles tile id of a stored (TMS) address.
pub fn tile_id_of(t: TileId) -> u64 {
    let c = pmtiles::TileCoord::new(t.z(), t.x(), t.y_down()).expect("a TileId is in range");
    pmtiles::TileId::from(c).value()
}

/// The stored (TMS) address of a PMTiles tile id (`None` past zoom [`MAX_ZOOM`]).
pub fn tile_of_id(id: u64) -> Option<TileId> {
    let c = pmtiles::TileCoord::from(pmtiles::TileId::new(id).ok()?);
    let z = u32::from(c.z());
    let y = (1u32 << z) - 1 - c.y();
    TileId::new(z, c.x(), y).ok()
}

/// Inflates `data` (if `c` is gzip) to at most `limit` bytes.
pub fn inflate(
    what: &'static str,
    c: Compression,
    data: Vec<u8>,
    limit: u64,
) -> std::result::Result<Vec<u8>, PmTilesError> {
    let out = match c {
        Compression::None => data,
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&data[..])
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|source| PmTilesError::Inflate { what, source })?;
            out
        }
    };
    if out.len() as u64 > limit {
        return Err(PmTilesError::TooLarge {
            what,
            size: out.len() as u64,
            limit,
        });
    }
    Ok(out)
}

/// Parses a directory as stored: inflated per the header, then decoded.
pub fn decode_directory(
    c: Compression,
    data: Vec<u8>,
) -> std::result::Result<Vec<Entry>, PmTilesError> {
    parse_directory(&inflate("directory", c, data, MAX_DIRECTORY_INFLATED)?)
}

/// Leaf directories by (offset, length), first in first out, at most [`DIR_CACHE_ENTRIES`].
#[derive(Debug, Default)]
struct DirCache {
    map: HashMap<(u64, u32), Arc<Vec<Entry>>>,
    order: VecDeque<(u64, u32)>,
    entries: usize,
}

impl DirCache {
    fn insert(&mut self, key: (u64, u32), dir: Arc<Vec<Entry>>) {
        if dir.len() > DIR_CACHE_ENTRIES || self.map.contains_key(&key) {
            return;
        }
        while self.entries + dir.len() > DIR_CACHE_ENTRIES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(d) = self.map.remove(&old) {
                self.entries -= d.len();
            }
        }
        self.entries += dir.len();
        self.order.push_back(key);
        self.map.insert(key, dir);
    }
}

/// An open PMTiles v3 file.
#[derive(Debug)]
pub struct PmTiles {
    path: PathBuf,
    file: File,
    header: Header,
    metadata: Metadata,
    format: TileFormat,
    root: Vec<Entry>,
    cache: Mutex<DirCache>,
}

impl PmTiles {
    /// Opens a file: reads the header, the root directory and the metadata.
    pub fn open(path: impl AsRef<Path>) -> Result<PmTiles> {
        let path = path.as_ref().to_path_buf();
        let io = |what: &'static str, e: std::io::Error| Error::Io {
            path: path.clone(),
            what,
            source: e,
        };
        let file = File::open(&path).map_err(|e| io("opening", e))?;
        let len = file.metadata().map_err(|e| io("stat", e))?.len();
        let bad = |e: PmTilesError| Error::PmTiles {
            path: path.clone(),
            source: e,
        };
        let mut head = vec![0u8; HEADER_LEN.min(len as usize)];
        read_at(&file, &mut head, 0).map_err(|e| io("reading the header", e))?;
        let header = parse_header(&head, len).map_err(bad)?;
        let root = read_section(
            &file,
            "root directory",
            header.root_offset,
            header.root_length,
            MAX_DIRECTORY_BYTES,
        )
        .map_err(|e| e.into_error(&path))?;
        let root = decode_directory(header.internal_compression, root).map_err(bad)?;
        let meta = read_section(
            &file,
            "metadata",
            header.metadata_offset,
            header.metadata_length,
            MAX_METADATA_BYTES as u64,
        )
        .map_err(|e| e.into_error(&path))?;
        let meta = inflate(
            "metadata",
            header.internal_compression,
            meta,
            MAX_METADATA_BYTES as u64,
        )
        .map_err(bad)?;
        let metadata = metadata_of(&header, &meta).map_err(bad)?;
        let format = match metadata.format.as_deref().map(TileFormat::from_metadata) {
            _ if header.format() != TileFormat::Unknown => header.format(),
            Some(f) => f,
            None => TileFormat::Unknown,
        };
        Ok(PmTiles {
            path,
            file,
            header,
            metadata,
            format,
            root,
            cache: Mutex::default(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The metadata: the JSON object's members as rows, with bounds, center and zooms from the
    /// header.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tile format: the header's tile type, else the metadata's `format`.
    pub fn format(&self) -> TileFormat {
        self.format
    }

    /// The header's zoom range.
    pub fn zoom_range(&self) -> Option<(u8, u8)> {
        (self.header.addressed_tiles > 0 || !self.root.is_empty())
            .then_some((self.header.min_zoom, self.header.max_zoom))
    }

    /// Reads one tile; `Ok(None)` if the file has none there. One binary search per directory
    /// level: the root, then at most [`MAX_LEAF_DEPTH`] leaves (cached).
    pub fn tile(&self, id: TileId) -> Result<Option<Tile>> {
        let tid = tile_id_of(id);
        let mut dir: Arc<Vec<Entry>>;
        let mut entries: &[Entry] = &self.root;
        for _ in 0..=MAX_LEAF_DEPTH {
            let Some(e) = find(entries, tid) else {
                return Ok(None);
            };
            if e.run_length > 0 {
                return self.read_tile(id, e).map(Some);
            }
            dir = self.leaf(e)?;
            entries = &dir;
        }
        Err(self.bad(PmTilesError::LeafDepth))
    }

    fn leaf(&self, e: Entry) -> Result<Arc<Vec<Entry>>> {
        let key = (e.offset, e.length);
        if let Some(d) = self.lock().map.get(&key) {
            return Ok(Arc::clone(d));
        }
        let (start, len) = (self.header.leaf_offset, self.header.leaf_length);
        let data = self.read_in("leaf directory", (start, len), e, MAX_DIRECTORY_BYTES)?;
        let dir = Arc::new(
            decode_directory(self.header.internal_compression, data).map_err(|s| self.bad(s))?,
        );
        self.lock().insert(key, Arc::clone(&dir));
        Ok(dir)
    }

    /// Reads what entry `e` points at in the section `(offset, length)`, which it must lie in.
    fn read_in(
        &self,
        what: &'static str,
        (start, len): (u64, u64),
        e: Entry,
        limit: u64,
    ) -> Result<Vec<u8>> {
        within(what, e.offset, u64::from(e.length), len).map_err(|s| self.bad(s))?;
        read_section(
            &self.file,
            what,
            start + e.offset,
            u64::from(e.length),
            limit,
        )
        .map_err(|x| x.into_error(&self.path))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DirCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bad(&self, source: PmTilesError) -> Error {
        Error::PmTiles {
            path: self.path.clone(),
            source,
        }
    }

    fn read_tile(&self, id: TileId, e: Entry) -> Result<Tile> {
        if u64::from(e.length) > MAX_TILE_BYTES {
            return Err(Error::TileTooLarge {
                path: self.path.clone(),
                z: id.z(),
                x: id.x(),
                y: id.y(),
                size: u64::from(e.length),
                limit: MAX_TILE_BYTES,
            });
        }
        let (start, len) = (self.header.data_offset, self.header.data_length);
        let data = self.read_in("tile", (start, len), e, MAX_TILE_BYTES)?;
        let (format, gzip) = match TileFormat::sniff(&data) {
            Some((TileFormat::Pbf, true)) if self.format != TileFormat::Pbf => (self.format, true),
            Some(f) => f,
            None => (self.format, false),
        };
        Ok(Tile {
            data: Bytes::from(data),
            format,
            gzip,
        })
    }

    /// Calls `f` with every addressed tile in tile-id order (runs expanded), with where its
    /// bytes are in the data section. Follows leaves as [`PmTiles::tile`] does.
    pub fn visit(&self, f: &mut dyn FnMut(TileId, Entry) -> Result<()>) -> Result<()> {
        self.visit_dir(&self.root, 0, f)
    }

    fn visit_dir(
        &self,
        entries: &[Entry],
        depth: usize,
        f: &mut dyn FnMut(TileId, Entry) -> Result<()>,
    ) -> Result<()> {
        for &e in entries {
            if e.run_length == 0 {
                if depth >= MAX_LEAF_DEPTH {
                    return Err(self.bad(PmTilesError::LeafDepth));
                }
                let leaf = self.leaf(e)?;
                self.visit_dir(&leaf, depth + 1, f)?;
                continue;
            }
            for i in 0..u64::from(e.run_length) {
                if let Some(t) = tile_of_id(e.tile_id + i) {
                    f(t, e)?;
                }
            }
        }
        Ok(())
    }

    /// Reads the tile an entry of [`PmTiles::visit`] points at.
    pub fn read_entry(&self, id: TileId, e: Entry) -> Result<Tile> {
        self.read_tile(id, e)
    }
}

/// The metadata of a PMTiles file: the JSON object's members as MBTiles rows (strings as is,
/// other values as JSON text), then the header's bounds, center and zooms over them.
fn metadata_of(h: &Header, json: &[u8]) -> std::result::Result<Metadata, PmTilesError> {
    let obj = if json.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        if !nvrkit_net::json_depth_within(json, MAX_JSON_DEPTH) {
            return Err(PmTilesError::Metadata);
        }
        match serde_json::from_slice::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(o)) => o,
            _ => return Err(PmTilesError::Metadata),
        }
    };
    let raw: BTreeMap<String, String> = obj
        .iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            (k.clone(), s)
        })
        .collect();
    let mut m = crate::reader::parse_metadata(raw);
    if let Some(v) = obj.get("vector_layers").filter(|v| v.is_array()) {
        m.vector_layers = Some(v.clone());
    }
    let b = h.bounds;
    if b.iter().all(|v| v.is_finite()) && b[0] < b[2] && b[1] < b[3] {
        m.bounds = Some(b);
    }
    m.center = Some([h.center[0], h.center[1], f64::from(h.center_zoom)]);
    m.minzoom = Some(h.min_zoom);
    m.maxzoom = Some(h.max_zoom);
    Ok(m)
}

enum ReadError {
    Io(&'static str, std::io::Error),
    Bad(PmTilesError),
}

impl ReadError {
    fn into_error(self, path: &Path) -> Error {
        match self {
            ReadError::Io(what, source) => Error::Io {
                path: path.to_path_buf(),
                what,
                source,
            },
            ReadError::Bad(source) => Error::PmTiles {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

fn read_section(
    file: &File,
    what: &'static str,
    offset: u64,
    length: u64,
    limit: u64,
) -> std::result::Result<Vec<u8>, ReadError> {
    if length > limit {
        return Err(ReadError::Bad(PmTilesError::TooLarge {
            what,
            size: length,
            limit,
        }));
    }
    let mut buf = vec![0u8; length as usize];
    read_at(file, &mut buf, offset).map_err(|e| ReadError::Io(what, e))?;
    Ok(buf)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn encode(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, entries.len() as u64);
        let mut last = 0;
        for e in entries {
            varint(&mut out, e.tile_id - last);
            last = e.tile_id;
        }
        for e in entries {
            varint(&mut out, u64::from(e.run_length));
        }
        for e in entries {
            varint(&mut out, u64::from(e.length));
        }
        for (i, e) in entries.iter().enumerate() {
            let follows =
                i > 0 && e.offset == entries[i - 1].offset + u64::from(entries[i - 1].length);
            varint(&mut out, if follows { 0 } else { e.offset + 1 });
        }
        out
    }

    fn e(tile_id: u64, offset: u64, length: u32, run_length: u32) -> Entry {
        Entry {
            tile_id,
            offset,
            length,
            run_length,
        }
    }

    #[test]
    fn directory_round_trips_and_finds_runs_and_leaves() {
        let d = vec![
            e(0, 0, 10, 1),
            e(1, 10, 5, 3),
            e(4, 10, 5, 1),
            e(30, 0, 99, 0),
        ];
        let parsed = parse_directory(&encode(&d)).unwrap();
        assert_eq!(parsed, d);
        assert_eq!(find(&parsed, 0), Some(d[0]));
        assert_eq!(find(&parsed, 3), Some(d[1]));
        assert_eq!(find(&parsed, 5), None);
        assert_eq!(find(&parsed, 1000), Some(d[3]));
    }

    #[test]
    fn hostile_directories_are_errors() {
        // A count far past what the bytes hold.
        let mut b = Vec::new();
        varint(&mut b, u64::MAX >> 1);
        assert!(parse_directory(&b).is_err());
        // An 11-byte varint.
        assert!(parse_directory(&[0xff; 11]).is_err());
        // Zero length, a first offset of 0 (refers back), a run past the id space.
        assert!(parse_directory(&[1, 0, 1, 0, 1]).is_err());
        assert!(parse_directory(&[1, 0, 1, 5, 0]).is_err());
        let mut b = vec![1];
        varint(&mut b, MAX_TILE_ID);
        b.extend([2, 1, 1]);
        assert!(parse_directory(&b).is_err());
        assert!(parse_directory(&[]).is_err());
    }

    #[test]
    fn tile_ids_follow_the_spec() {
        // Spec examples: 0/0/0 is 0, 1/0/0 is 1, 1/1/0 (XYZ) is 4... (Hilbert within a zoom).
        assert_eq!(tile_id_of(TileId::new(0, 0, 0).unwrap()), 0);
        assert_eq!(tile_id_of(TileId::new(1, 0, 1).unwrap()), 1);
        for id in [0, 1, 2, 3, 4, 5, 20, 21, 12345, MAX_TILE_ID] {
            assert_eq!(tile_id_of(tile_of_id(id).unwrap()), id);
        }
    }

    #[test]
    fn a_gzip_bomb_directory_is_cut_at_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..40 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(matches!(
            decode_directory(Compression::Gzip, bomb),
            Err(PmTilesError::TooLarge { .. })
        ));
    }

    /// A v3 header over `root` and `leaves` (uncompressed), with an empty metadata object and
    /// `data` as the tile data.
    fn file(root: &[u8], leaves: &[u8], data: &[u8]) -> Vec<u8> {
        let meta = b"{}";
        let mut h = b"PMTiles\x03".to_vec();
        let root_off = HEADER_LEN as u64;
        let meta_off = root_off + root.len() as u64;
        let leaf_off = meta_off + meta.len() as u64;
        let data_off = leaf_off + leaves.len() as u64;
        for v in [
            root_off,
            root.len() as u64,
            meta_off,
            meta.len() as u64,
            leaf_off,
            leaves.len() as u64,
            data_off,
            data.len() as u64,
            1,
            1,
            1,
        ] {
            h.extend(v.to_le_bytes());
        }
        h.extend([1, 1, 1, 2, 0, 0]); // clustered, none, none, PNG, zooms 0..=0
        h.resize(HEADER_LEN, 0);
        [
            h,
            root.to_vec(),
            meta.to_vec(),
            leaves.to_vec(),
            data.to_vec(),
        ]
        .concat()
    }

    #[test]
    fn a_leaf_that_points_at_itself_stops_at_the_depth_cap() {
        let leaf = encode(&[e(0, 0, 0, 0)]);
        let len = leaf.len() as u32;
        let leaf = encode(&[e(0, 0, len, 0)]);
        assert_eq!(leaf.len() as u32, len);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loop.pmtiles");
        std::fs::write(&path, file(&leaf, &leaf, b"\x89PNG")).unwrap();
        let pm = PmTiles::open(&path).unwrap();
        let t = TileId::new(0, 0, 0).unwrap();
        assert!(matches!(
            pm.tile(t),
            Err(Error::PmTiles {
                source: PmTilesError::LeafDepth,
                ..
            })
        ));
        assert!(pm.visit(&mut |_, _| Ok(())).is_err());
    }

    #[test]
    fn a_tile_outside_its_section_or_a_truncated_file_is_an_error() {
        let root = encode(&[e(0, 2, 100, 1)]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.pmtiles");
        let bytes = file(&root, &[], b"\x89PNG\r\n\x1a\n");
        std::fs::write(&path, &bytes).unwrap();
        let pm = PmTiles::open(&path).unwrap();
        assert!(matches!(
            pm.tile(TileId::new(0, 0, 0).unwrap()),
            Err(Error::PmTiles {
                source: PmTilesError::OutOfBounds { .. },
                ..
            })
        ));
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(
            PmTiles::open(&path),
            Err(Error::PmTiles {
                source: PmTilesError::OutOfBounds { .. },
                ..
            })
        ));
        std::fs::write(&path, &bytes[..50]).unwrap();
        assert!(PmTiles::open(&path).is_err());
    }
}

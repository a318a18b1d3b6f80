//! The MBTiles reader: read-only SQLite connections, metadata, tiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::{Error, Result};
use crate::format::TileFormat;
use crate::scheme::{MAX_ZOOM, TileId};

/// How the file stores its tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Layout {
    /// One `tiles` table (or a view of that name that we cannot see through): what GDAL writes.
    Flat,
    /// `map` (`zoom_level`, `tile_column`, `tile_row`, `tile_id`) and `images` (`tile_id`,
    /// `tile_data`): the deduplicated layout of TileMill / mbutil / martin's "normalized" files.
    /// Read through the two tables directly, not the `tiles` view.
    Deduplicated,
    /// martin's flat-with-hash layout: table `tiles_with_hash` with a `tile_hash` column.
    FlatWithHash,
}

impl Layout {
    fn tile_query(self) -> &'static str {
        match self {
            // The size first (`octet_length` of a BLOB reads no content), the bytes only when
            // they are within ?4 (MAX_TILE_BYTES).
            Layout::Flat => {
                "SELECT octet_length(tile_data), \
                 CASE WHEN octet_length(tile_data) <= ?4 THEN tile_data END \
                 FROM tiles WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3"
            }
            Layout::Deduplicated => {
                "SELECT octet_length(images.tile_data), \
                 CASE WHEN octet_length(images.tile_data) <= ?4 THEN images.tile_data END \
                 FROM map JOIN images ON images.tile_id = map.tile_id \
                 WHERE map.zoom_level = ?1 AND map.tile_column = ?2 AND map.tile_row = ?3"
            }
            Layout::FlatWithHash => {
                "SELECT octet_length(tile_data), \
                 CASE WHEN octet_length(tile_data) <= ?4 THEN tile_data END \
                 FROM tiles_with_hash WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3"
            }
        }
    }

    /// The table with the coordinates (indexed on them in every layout we know).
    fn index_table(self) -> &'static str {
        match self {
            Layout::Flat => "tiles",
            Layout::Deduplicated => "map",
            Layout::FlatWithHash => "tiles_with_hash",
        }
    }
}

/// The `metadata` table, parsed (MBTiles 1.3), plus what we derived from the tiles where a field
/// is missing (GDAL, for one, writes no `center` and no `scheme`).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct Metadata {
    /// `name`.
    pub name: Option<String>,
    /// `format` as written (`png`, `jpg`, `webp`, `pbf`, …).
    pub format: Option<String>,
    /// `bounds`: west, south, east, north in degrees (derived from the deepest zoom if missing).
    pub bounds: Option<[f64; 4]>,
    /// `center`: longitude, latitude, zoom (the middle of `bounds` at `minzoom` if missing).
    pub center: Option<[f64; 3]>,
    /// `minzoom` (the lowest zoom with tiles if missing).
    pub minzoom: Option<u8>,
    /// `maxzoom` (the highest zoom with tiles if missing).
    pub maxzoom: Option<u8>,
    /// `attribution`.
    pub attribution: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `type`: `overlay` or `baselayer`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `vector_layers` from the `json` row (required there for vector tilesets).
    pub vector_layers: Option<serde_json::Value>,
    /// The `json` row, parsed (`None` if absent or not valid JSON).
    pub json: Option<serde_json::Value>,
    /// Every row as stored, for fields not modelled here.
    pub raw: BTreeMap<String, String>,
    /// The fields above that were derived from the tiles rather than read.
    pub derived: Vec<&'static str>,
    /// Rows left out because their name or value is over [`MAX_METADATA_NAME`] or
    /// [`MAX_METADATA_VALUE`] bytes, or the rows so far already hold [`MAX_METADATA_BYTES`]
    /// (their names, cut to [`MAX_METADATA_NAME`] bytes).
    pub oversized: Vec<String>,
}

/// The longest `metadata` value read (1 MiB): a longer one is left out (named in
/// [`Metadata::oversized`]), never loaded whole.
pub const MAX_METADATA_VALUE: usize = 1 << 20;

/// The longest `metadata` name read (256 bytes); a row with a longer one is left out.
pub const MAX_METADATA_NAME: usize = 256;

/// The most `metadata` rows read (10,000; MBTiles 1.3 defines a dozen names). A file with more
/// is refused ([`Error::Limit`]).
pub const MAX_METADATA_ROWS: usize = 10_000;

/// The most bytes of names and values kept from the `metadata` table (16 MiB); rows past it are
/// left out (named in [`Metadata::oversized`]).
pub const MAX_METADATA_BYTES: usize = 16 << 20;

/// The deepest nesting of arrays and objects accepted in the `json` row (64); a deeper one is
/// not parsed (`json` and `vector_layers` stay `None`).
pub const MAX_JSON_DEPTH: usize = 64;

/// The largest tile served (16 MiB): a larger one is refused with [`Error::TileTooLarge`]
/// before its bytes are loaded.
pub const MAX_TILE_BYTES: u64 = 16 << 20;

/// Why a `metadata` table is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// More rows than [`MAX_METADATA_ROWS`].
    #[error("the metadata table has more than {limit} rows")]
    TooManyRows {
        /// The limit.
        limit: usize,
    },
}

/// One tile as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// The bytes as stored (gzip'd for most vector tiles).
    pub data: Bytes,
    /// The format, from the magic bytes, else from the metadata.
    pub format: TileFormat,
    /// Whether `data` is a gzip stream.
    pub gzip: bool,
}

/// An open MBTiles file.
///
/// Cheap to share behind an `Arc`: reads take a connection from a small pool (one per thread
/// that reads at the same time), so concurrent reads do not serialise on one SQLite handle.
#[derive(Debug)]
pub struct MbTiles {
    path: PathBuf,
    layout: Layout,
    metadata: Metadata,
    format: TileFormat,
    zooms: Option<(u8, u8)>,
    grids: Option<Grids>,
    pool: Mutex<Vec<Connection>>,
}

/// The UTFGrid tables or views a file has (see [`crate::grid`]).
#[derive(Debug, Clone, Copy)]
struct Grids {
    /// Whether `grid_data` is there too (else `data` comes from the grid JSON, or is `{}`).
    data: bool,
}

// The size first, the bytes only within ?4 (MAX_GRID_BYTES), as for tiles.
const GRID_QUERY: &str = "SELECT octet_length(grid), \
     CASE WHEN octet_length(grid) <= ?4 THEN grid END \
     FROM grids WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3";

// One row past ?5 (MAX_GRID_DATA_ROWS) tells that there are too many; a key name over ?6 bytes
// or a value over ?4 is not loaded (NULL).
const GRID_DATA_QUERY: &str = "SELECT \
     CASE WHEN octet_length(key_name) <= ?6 THEN key_name END, \
     octet_length(key_json), \
     CASE WHEN octet_length(key_json) <= ?4 THEN key_json END \
     FROM grid_data WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3 LIMIT ?5";

/// Connections kept open per file when idle: enough for every worker thread of a small server.
const MAX_IDLE: usize = 16;

impl MbTiles {
    /// How long a read waits for a writer's lock before it gives up with [`Error::Busy`]. SQLite
    /// sleeps and retries inside this window (`sqlite3_busy_timeout`); a writer that holds its
    /// lock longer than this gets a 503 from the server instead of a request that hangs (a
    /// file being updated made tileserver-gl fail with `SQLITE_BUSY` at once:
    /// maptiler/tileserver-gl#283).
    pub const BUSY_TIMEOUT: Duration = Duration::from_millis(200);

    /// Opens a file read-only and reads its schema and metadata.
    ///
    /// Fails with [`Error::Corrupt`] for a file that is not SQLite, [`Error::Schema`] for an
    /// SQLite file that holds no tiles table we can read.
    pub fn open(path: impl AsRef<Path>) -> Result<MbTiles> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(Error::Open {
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some("not a regular file".into()),
                ),
                path,
            });
        }
        let conn = open_connection(&path)?;
        let layout = detect_layout(&conn, &path)?;
        // Prepare the tile query once now, so a missing column is a schema error at open and
        // not a 500 on every request.
        conn.prepare_cached(layout.tile_query()).map_err(|e| {
            match Error::from_sqlite(&path, "preparing the tile query", e) {
                Error::Sqlite { source, .. } => Error::Schema {
                    path: path.clone(),
                    what: format!("tile query: {source}"),
                },
                other => other,
            }
        })?;
        let mut metadata = read_metadata(&conn, &path)?;
        let zooms = zoom_range(&conn, &path, layout)?;
        derive_missing(&conn, &path, layout, zooms, &mut metadata)?;
        // A file whose grid tables are unreadable still serves its tiles: it just has no grids.
        let grids = conn.prepare_cached(GRID_QUERY).is_ok().then(|| Grids {
            data: conn.prepare_cached(GRID_DATA_QUERY).is_ok(),
        });
        let format = match metadata.format.as_deref().map(TileFormat::from_metadata) {
            Some(f) if f != TileFormat::Unknown => f,
            _ => first_tile_format(&conn, &path, layout)?,
        };
        Ok(MbTiles {
            path,
            layout,
            metadata,
            format,
            zooms,
            grids,
            pool: Mutex::new(vec![conn]),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the file stores its tiles.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The metadata, with missing fields derived from the tiles.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tile format: the `format` row, else the magic bytes of the first tile.
    pub fn format(&self) -> TileFormat {
        self.format
    }

    /// The lowest and highest `zoom_level` that hold tiles (`None` for a file without tiles).
    /// The highest is the Ocularis `maxzoom` unless overridden.
    pub fn zoom_range(&self) -> Option<(u8, u8)> {
        self.zooms
    }

    /// Reads one tile; `Ok(None)` if the file has no tile there.
    ///
    /// A writer's lock is waited out for [`MbTiles::BUSY_TIMEOUT`], then [`Error::Busy`].
    pub fn tile(&self, id: TileId) -> Result<Option<Tile>> {
        let conn = self.take()?;
        let res = self.read(&conn, id);
        self.give_back(conn);
        let data = match res? {
            Some(d) => d,
            None => return Ok(None),
        };
        let (format, gzip) = TileFormat::sniff(&data).unwrap_or((self.format, false));
        Ok(Some(Tile {
            data: Bytes::from(data),
            format,
            gzip,
        }))
    }

    fn read(&self, conn: &Connection, id: TileId) -> Result<Option<Vec<u8>>> {
        let err = |e| Error::from_sqlite(&self.path, "reading a tile", e);
        let mut stmt = conn.prepare_cached(self.layout.tile_query()).map_err(err)?;
        let limit = i64::try_from(MAX_TILE_BYTES).unwrap_or(i64::MAX);
        let row = stmt
            .query_row((id.z(), id.x(), id.y(), limit), |row| {
                use rusqlite::types::ValueRef;
                let size: Option<i64> = row.get(0)?;
                // A NULL or non-BLOB tile_data (seen in hand-edited files) reads as no tile.
                Ok(match row.get_ref(1)? {
                    ValueRef::Blob(b) | ValueRef::Text(b) => Ok(Some(b.to_vec())),
                    ValueRef::Null if size.is_some_and(|n| n > limit) => Err(size.unwrap_or(0)),
                    _ => Ok(None),
                })
            })
            .optional()
            .map_err(err)?;
        match row {
            None => Ok(None),
            Some(Ok(data)) => Ok(data),
            Some(Err(size)) => Err(Error::TileTooLarge {
                path: self.path.clone(),
                z: id.z(),
                x: id.x(),
                y: id.y(),
                size: size as u64,
                limit: MAX_TILE_BYTES,
            }),
        }
    }

    /// Whether the file has UTFGrids (a readable `grids` table or view).
    pub fn has_grids(&self) -> bool {
        self.grids.is_some()
    }

    /// The UTFGrid of one tile as served (see [`crate::grid::assemble`]): `grid` and `keys` from
    /// the `grids` row, inflated, and `data` from the tile's `grid_data` rows. `Ok(None)` if the
    /// file has no grids or none for this tile.
    ///
    /// Bounded: a stored grid over [`crate::grid::MAX_GRID_BYTES`] is refused before it is
    /// loaded, one that inflates past [`crate::grid::MAX_GRID_JSON`] is cut there, and the
    /// tile's `grid_data` may hold at most [`crate::grid::MAX_GRID_DATA_ROWS`] rows and
    /// [`crate::grid::MAX_GRID_DATA_BYTES`] bytes; past any of them, [`Error::Grid`].
    pub fn grid(&self, id: TileId) -> Result<Option<Vec<u8>>> {
        let Some(grids) = self.grids else {
            return Ok(None);
        };
        let conn = self.take()?;
        let res = self.read_grid(&conn, id, grids);
        self.give_back(conn);
        let Some((blob, rows)) = res? else {
            return Ok(None);
        };
        let grid_err = |source| Error::Grid {
            path: self.path.clone(),
            z: id.z(),
            x: id.x(),
            y: id.y(),
            source,
        };
        let json = crate::grid::inflate(&blob).map_err(grid_err)?;
        crate::grid::assemble(&json, rows)
            .map(Some)
            .map_err(grid_err)
    }

    #[allow(clippy::type_complexity)] // (blob, rows), read under one connection
    fn read_grid(
        &self,
        conn: &Connection,
        id: TileId,
        grids: Grids,
    ) -> Result<Option<(Vec<u8>, Vec<(String, String)>)>> {
        use crate::grid::{
            GridError, MAX_GRID_BYTES, MAX_GRID_DATA_BYTES, MAX_GRID_DATA_ROWS, MAX_KEY_NAME,
        };
        use rusqlite::types::ValueRef;
        let err = |e| Error::from_sqlite(&self.path, "reading a grid", e);
        let too_large = |what, limit| Error::Grid {
            path: self.path.clone(),
            z: id.z(),
            x: id.x(),
            y: id.y(),
            source: GridError::TooLarge { what, limit },
        };
        let data_limit = MAX_GRID_DATA_BYTES as u64;
        let limit = i64::try_from(MAX_GRID_BYTES).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(GRID_QUERY).map_err(err)?;
        let row = stmt
            .query_row((id.z(), id.x(), id.y(), limit), |row| {
                let size: Option<i64> = row.get(0)?;
                Ok(match row.get_ref(1)? {
                    ValueRef::Blob(b) | ValueRef::Text(b) => Ok(Some(b.to_vec())),
                    ValueRef::Null if size.is_some_and(|n| n > limit) => Err(()),
                    _ => Ok(None),
                })
            })
            .optional()
            .map_err(err)?;
        let blob = match row {
            None | Some(Ok(None)) => return Ok(None),
            Some(Ok(Some(b))) => b,
            Some(Err(())) => return Err(too_large("stored grid", MAX_GRID_BYTES)),
        };
        let mut rows = Vec::new();
        if grids.data {
            let mut stmt = conn.prepare_cached(GRID_DATA_QUERY).map_err(err)?;
            let q = stmt
                .query_map(
                    (
                        id.z(),
                        id.x(),
                        id.y(),
                        MAX_GRID_DATA_BYTES as i64,
                        MAX_GRID_DATA_ROWS as i64 + 1,
                        MAX_KEY_NAME as i64,
                    ),
                    |r| {
                        // Lossy: a hand-edited file's invalid UTF-8 costs that row's text, not
                        // the whole grid.
                        let text = |v: ValueRef<'_>| match v {
                            ValueRef::Text(b) | ValueRef::Blob(b) => {
                                Some(String::from_utf8_lossy(b).into_owned())
                            }
                            _ => None,
                        };
                        Ok((
                            text(r.get_ref(0)?),
                            r.get::<_, Option<i64>>(1)?,
                            text(r.get_ref(2)?),
                        ))
                    },
                )
                .map_err(err)?;
            let mut bytes = 0usize;
            for row in q {
                let (name, size, value) = row.map_err(err)?;
                if rows.len() >= MAX_GRID_DATA_ROWS {
                    return Err(too_large("grid_data rows (more than 65,536)", data_limit));
                }
                if size.is_some_and(|n| n > MAX_GRID_DATA_BYTES as i64) {
                    return Err(too_large("grid_data value", data_limit));
                }
                let (Some(name), Some(value)) = (name, value) else {
                    continue;
                };
                bytes += name.len() + value.len();
                if bytes > MAX_GRID_DATA_BYTES {
                    return Err(too_large("grid_data of one tile", data_limit));
                }
                rows.push((name, value));
            }
        }
        Ok(Some((blob, rows)))
    }

    /// Every stored tile address, sorted (rows with coordinates outside the grid are skipped).
    /// Meant for tests, benchmarks and tools; it reads the whole index.
    pub fn tile_ids(&self) -> Result<Vec<TileId>> {
        let conn = self.take()?;
        let res = (|| {
            let sql = format!(
                "SELECT zoom_level, tile_column, tile_row FROM {} ORDER BY 1, 2, 3",
                self.layout.index_table()
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (z, x, y) = row?;
                if let (Ok(z), Ok(x), Ok(y)) =
                    (u32::try_from(z), u32::try_from(x), u32::try_from(y))
                    && let Ok(id) = TileId::new(z, x, y)
                {
                    out.push(id);
                }
            }
            Ok(out)
        })()
        .map_err(|e| Error::from_sqlite(&self.path, "listing tiles", e));
        self.give_back(conn);
        res
    }

    fn take(&self) -> Result<Connection> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(c) => Ok(c),
            None => open_connection(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE {
            pool.push(conn);
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    // Read-only: the server never writes, and a read-only handle cannot create a missing file
    // or take a write lock that would block the tool that updates the tileset. No mmap (SQLite's
    // default): reading through mmap is what turned a truncated file into a SIGSEGV in
    // consbio/mbtileserver#55; read() turns it into SQLITE_CORRUPT or an I/O error instead.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::from_sqlite(path, "opening", e))?;
    conn.busy_timeout(MbTiles::BUSY_TIMEOUT)
        .map_err(|e| Error::from_sqlite(path, "setting the busy timeout", e))?;
    Ok(conn)
}

fn detect_layout(conn: &Connection, path: &Path) -> Result<Layout> {
    let err = |e| Error::from_sqlite(path, "reading the schema", e);
    let mut stmt = conn
        .prepare("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view')")
        .map_err(err)?;
    let objects: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(err)?;
    let has = |kind: &str, name: &str| {
        objects
            .iter()
            .any(|(k, n)| k == kind && n.eq_ignore_ascii_case(name))
    };
    if has("table", "map") && has("table", "images") {
        Ok(Layout::Deduplicated)
    } else if has("table", "tiles_with_hash") {
        Ok(Layout::FlatWithHash)
    } else if has("table", "tiles") || has("view", "tiles") {
        Ok(Layout::Flat)
    } else {
        Err(Error::Schema {
            path: path.to_path_buf(),
            what: "no `tiles` table or view, no `map` and `images` tables".into(),
        })
    }
}

fn read_metadata(conn: &Connection, path: &Path) -> Result<Metadata> {
    let err = |e| Error::from_sqlite(path, "reading metadata", e);
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let exists: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'metadata'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(err)?
        > 0;
    if exists {
        // At most one byte past each limit and one row past the row limit reach us: enough to
        // tell that a value or the table is too large, never the whole of it.
        let mut stmt = conn
            .prepare(
                "SELECT CASE WHEN typeof(name) IN ('text', 'blob') \
                   THEN substr(CAST(name AS BLOB), 1, ?1) ELSE name END, \
                 CASE WHEN typeof(value) IN ('text', 'blob') \
                   THEN substr(CAST(value AS BLOB), 1, ?2) ELSE value END \
                 FROM metadata LIMIT ?3",
            )
            .map_err(err)?;
        let q = stmt
            .query_map(
                (
                    MAX_METADATA_NAME as i64 + 1,
                    MAX_METADATA_VALUE as i64 + 1,
                    MAX_METADATA_ROWS as i64 + 1,
                ),
                |r| {
                    Ok((
                        bytes_of(r.get_ref(0)?).unwrap_or_default(),
                        bytes_of(r.get_ref(1)?).unwrap_or_default(),
                    ))
                },
            )
            .map_err(err)?;
        for row in q {
            rows.push(row.map_err(err)?);
        }
    }
    parse_metadata_rows(rows).map_err(|e| Error::Limit {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

fn bytes_of(v: rusqlite::types::ValueRef<'_>) -> Option<Vec<u8>> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
        ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        ValueRef::Real(f) => Some(f.to_string().into_bytes()),
        ValueRef::Null => None,
    }
}

/// Builds the [`Metadata`] of a file from its `metadata` rows (name, value), as stored: what
/// [`MbTiles::open`] does after reading the table, reachable without SQLite.
///
/// Bounded for untrusted files: more than [`MAX_METADATA_ROWS`] rows is an error; a row whose
/// name or value is over [`MAX_METADATA_NAME`] or [`MAX_METADATA_VALUE`] bytes, or that would
/// take the rows kept past [`MAX_METADATA_BYTES`], is left out and named in
/// [`Metadata::oversized`]; the `json` row is parsed only when nested at most
/// [`MAX_JSON_DEPTH`] deep. The first row of a name wins. Values that do not parse are left out
/// of the typed fields (and kept in `raw`): a bad `bounds` row should not disable a tileset.
/// Time is linear in the bytes given. Fields derived from the tiles are not filled in here.
pub fn parse_metadata_rows<N, V>(
    rows: impl IntoIterator<Item = (N, V)>,
) -> std::result::Result<Metadata, MetadataError>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut raw = BTreeMap::new();
    let mut oversized = Vec::new();
    let mut kept = 0usize;
    for (i, (name, value)) in rows.into_iter().enumerate() {
        if i >= MAX_METADATA_ROWS {
            return Err(MetadataError::TooManyRows {
                limit: MAX_METADATA_ROWS,
            });
        }
        let (name, value) = (name.as_ref(), value.as_ref());
        let cost = name.len() + value.len();
        if name.len() > MAX_METADATA_NAME
            || value.len() > MAX_METADATA_VALUE
            || kept + cost > MAX_METADATA_BYTES
        {
            let cut = &name[..name.len().min(MAX_METADATA_NAME)];
            oversized.push(String::from_utf8_lossy(cut).into_owned());
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if let std::collections::btree_map::Entry::Vacant(e) = raw.entry(name) {
            kept += cost;
            e.insert(String::from_utf8_lossy(value).into_owned());
        }
    }
    let mut m = parse_metadata(raw);
    m.oversized = oversized;
    Ok(m)
}

/// Parses the metadata rows kept (see [`parse_metadata_rows`]).
pub(crate) fn parse_metadata(raw: BTreeMap<String, String>) -> Metadata {
    let get = |k: &str| {
        raw.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let floats = |k: &str| -> Option<Vec<f64>> {
        get(k)?
            .split(',')
            .map(|p| p.trim().parse::<f64>().ok().filter(|f| f.is_finite()))
            .collect()
    };
    let zoom = |k: &str| {
        get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|z| z.fract() == 0.0 && *z >= 0.0 && *z <= f64::from(MAX_ZOOM))
            .map(|z| z as u8)
    };
    let bounds = floats("bounds")
        .and_then(|v| <[f64; 4]>::try_from(v).ok())
        .filter(|b| b[0] <= b[2] && b[1] <= b[3]);
    let center = floats("center").and_then(|v| match v.len() {
        3 => Some([v[0], v[1], v[2]]),
        2 => Some([v[0], v[1], 0.0]),
        _ => None,
    });
    let json = get("json")
        .filter(|j| nvrkit_net::json_depth_within(j.as_bytes(), MAX_JSON_DEPTH))
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok());
    let vector_layers = json
        .as_ref()
        .and_then(|j| j.get("vector_layers"))
        .filter(|v| v.is_array())
        .cloned();
    Metadata {
        name: get("name"),
        format: get("format"),
        bounds,
        center,
        minzoom: zoom("minzoom"),
        maxzoom: zoom("maxzoom"),
        attribution: get("attribution"),
        description: get("description"),
        kind: get("type"),
        version: get("version"),
        vector_layers,
        json,
        derived: Vec::new(),
        oversized: Vec::new(),
        raw,
    }
}

fn zoom_range(conn: &Connection, path: &Path, layout: Layout) -> Result<Option<(u8, u8)>> {
    // MIN/MAX on the first column of the (zoom_level, tile_column, tile_row) index are two
    // index seeks, not a scan.
    let sql = format!(
        "SELECT min(zoom_level), max(zoom_level) FROM {} WHERE zoom_level BETWEEN 0 AND {MAX_ZOOM}",
        layout.index_table()
    );
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| Error::from_sqlite(path, "reading the zoom range", e))?;
    Ok(match (lo, hi) {
        (Some(lo), Some(hi)) => Some((lo as u8, hi as u8)),
        _ => None,
    })
}

fn derive_missing(
    conn: &Connection,
    path: &Path,
    layout: Layout,
    zooms: Option<(u8, u8)>,
    m: &mut Metadata,
) -> Result<()> {
    let Some((lo, hi)) = zooms else {
        return Ok(());
    };
    if m.minzoom.is_none() {
        m.minzoom = Some(lo);
        m.derived.push("minzoom");
    }
    if m.maxzoom.is_none() {
        m.maxzoom = Some(hi);
        m.derived.push("maxzoom");
    }
    if m.bounds.is_none() {
        let sql = format!(
            "SELECT min(tile_column), max(tile_column), min(tile_row), max(tile_row) FROM {} \
             WHERE zoom_level = ?1",
            layout.index_table()
        );
        let r: (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = conn
            .query_row(&sql, [hi], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| Error::from_sqlite(path, "deriving bounds", e))?;
        if let (Some(x0), Some(x1), Some(y0), Some(y1)) = r {
            let n = (1i64 << hi) as f64;
            let clamp = |v: i64| v.clamp(0, 1i64 << hi) as f64;
            let lon = |x: f64| x / n * 360.0 - 180.0;
            // TMS row r has its southern edge at r and northern edge at r + 1 (counted up).
            let lat = |row_up: f64| {
                let y_down = n - row_up;
                (std::f64::consts::PI * (1.0 - 2.0 * y_down / n))
                    .sinh()
                    .atan()
                    .to_degrees()
            };
            m.bounds = Some([
                lon(clamp(x0)),
                lat(clamp(y0)),
                lon(clamp(x1 + 1)),
                lat(clamp(y1 + 1)),
            ]);
            m.derived.push("bounds");
        }
    }
    if m.center.is_none()
        && let Some(b) = m.bounds
    {
        let z = m.minzoom.unwrap_or(lo);
        m.center = Some([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, f64::from(z)]);
        m.derived.push("center");
    }
    Ok(())
}

fn first_tile_format(conn: &Connection, path: &Path, layout: Layout) -> Result<TileFormat> {
    let sql = match layout {
        // The magic bytes are all we need: never the whole of a (maybe huge) tile.
        Layout::Deduplicated => "SELECT substr(tile_data, 1, 16) FROM images LIMIT 1",
        Layout::Flat => "SELECT substr(tile_data, 1, 16) FROM tiles LIMIT 1",
        Layout::FlatWithHash => "SELECT substr(tile_data, 1, 16) FROM tiles_with_hash LIMIT 1",
    };
    let data: Option<Option<Vec<u8>>> = conn
        .query_row(sql, [], |r| r.get(0))
        .optional()
        .map_err(|e| Error::from_sqlite(path, "reading the first tile", e))?;
    Ok(data
        .flatten()
        .and_then(|d| TileFormat::sniff(&d))
        .map(|(f, _)| f)
        .unwrap_or(TileFormat::Unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn metadata_parses_mbtiles_1_3_fields() {
        let m = parse_metadata(raw(&[
            ("name", "world"),
            ("format", "pbf"),
            ("bounds", "-180.0,-85,180,85"),
            ("center", "10.5, 47, 3"),
            ("minzoom", "0"),
            ("maxzoom", "14"),
            ("json", r#"{"vector_layers":[{"id":"roads","fields":{}}]}"#),
        ]));
        assert_eq!(m.name.as_deref(), Some("world"));
        assert_eq!(m.bounds, Some([-180.0, -85.0, 180.0, 85.0]));
        assert_eq!(m.center, Some([10.5, 47.0, 3.0]));
        assert_eq!((m.minzoom, m.maxzoom), (Some(0), Some(14)));
        assert_eq!(m.vector_layers.unwrap()[0]["id"], "roads");
    }

    #[test]
    fn bad_metadata_values_are_ignored_not_fatal() {
        let m = parse_metadata(raw(&[
            ("bounds", "1,2,3"),
            ("center", "a,b,c"),
            ("minzoom", "-1"),
            ("maxzoom", "99"),
            ("json", "{not json"),
        ]));
        assert_eq!(m.bounds, None);
        assert_eq!(m.center, None);
        assert_eq!((m.minzoom, m.maxzoom), (None, None));
        assert!(m.json.is_none());
        assert_eq!(m.raw.len(), 5);
    }

    fn file(sql: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.mbtiles");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE metadata (name TEXT, value TEXT);
             CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER,
                                 tile_data BLOB);
             INSERT INTO tiles VALUES (0, 0, 0, x'89504E470D0A1A0A');",
        )
        .unwrap();
        db.execute_batch(sql).unwrap();
        (dir, path)
    }

    #[test]
    fn oversized_metadata_value_is_left_out_not_loaded() {
        let big = "x".repeat(MAX_METADATA_VALUE + 1);
        let m = parse_metadata_rows([
            ("name", "world".to_owned()),
            ("description", big),
            ("attribution", "x".repeat(MAX_METADATA_VALUE)),
        ])
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("world"));
        assert_eq!(m.description, None);
        assert_eq!(m.attribution.map(|a| a.len()), Some(MAX_METADATA_VALUE));
        assert_eq!(m.oversized, ["description"]);

        // The same from a file: a 64 MiB value in SQLite reaches us as 1 MiB + 1 byte at most.
        let (_d, path) = file(
            "INSERT INTO metadata VALUES ('name', 'world');
             INSERT INTO metadata VALUES ('description', CAST(zeroblob(67108864) AS TEXT));
             INSERT INTO metadata VALUES ('json', zeroblob(67108864));",
        );
        let t = MbTiles::open(&path).unwrap();
        assert_eq!(t.metadata().name.as_deref(), Some("world"));
        assert_eq!(t.metadata().oversized, ["description", "json"]);
        assert!(
            t.metadata()
                .raw
                .values()
                .all(|v| v.len() <= MAX_METADATA_VALUE)
        );
    }

    #[test]
    fn oversized_metadata_name_is_left_out() {
        let long = "n".repeat(MAX_METADATA_NAME + 1);
        let m = parse_metadata_rows([(long.as_str(), "v"), ("name", "ok")]).unwrap();
        assert_eq!(m.oversized, [&long[..MAX_METADATA_NAME]]);
        assert_eq!(m.raw.len(), 1);
    }

    #[test]
    fn metadata_past_its_total_budget_is_left_out() {
        let value = "v".repeat(MAX_METADATA_VALUE);
        let rows: Vec<(String, String)> = (0..20)
            .map(|i| (format!("k{i:02}"), value.clone()))
            .collect();
        let m = parse_metadata_rows(rows).unwrap();
        let kept: usize = m.raw.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(kept <= MAX_METADATA_BYTES);
        assert_eq!(m.raw.len() + m.oversized.len(), 20);
        assert!(!m.oversized.is_empty());
    }

    #[test]
    fn too_many_metadata_rows_refuse_the_file() {
        let rows = (0..=MAX_METADATA_ROWS).map(|i| (format!("k{i}"), String::new()));
        assert_eq!(
            parse_metadata_rows(rows).unwrap_err(),
            MetadataError::TooManyRows {
                limit: MAX_METADATA_ROWS
            }
        );
        let rows = (0..MAX_METADATA_ROWS).map(|i| (format!("k{i}"), String::new()));
        assert_eq!(
            parse_metadata_rows(rows).unwrap().raw.len(),
            MAX_METADATA_ROWS
        );

        let (_d, path) = file(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {MAX_METADATA_ROWS})
             INSERT INTO metadata SELECT 'k' || i, 'v' FROM n;"
        ));
        let e = MbTiles::open(&path).unwrap_err();
        assert!(matches!(e, Error::Limit { .. }), "{e}");
        assert!(e.to_string().contains("more than 10000 rows"), "{e}");
    }

    #[test]
    fn deeply_nested_json_row_is_not_parsed() {
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        let m = parse_metadata_rows([("json", deep.as_str())]).unwrap();
        assert!(m.json.is_none());
        let ok = format!(
            "{{\"vector_layers\":[{}{}],\"s\":\"[[[[\\\"\"}}",
            "[".repeat(MAX_JSON_DEPTH - 3),
            "]".repeat(MAX_JSON_DEPTH - 3)
        );
        let m = parse_metadata_rows([("json", ok.as_str())]).unwrap();
        assert!(m.json.is_some(), "{ok}");
        assert!(m.vector_layers.is_some());
    }

    #[test]
    fn oversized_tile_is_refused_before_it_is_loaded() {
        let (_d, path) = file(&format!(
            "INSERT INTO metadata VALUES ('format', 'png');
             INSERT INTO tiles VALUES (1, 0, 0, zeroblob({}));
             INSERT INTO tiles VALUES (1, 1, 0, zeroblob({MAX_TILE_BYTES}));",
            MAX_TILE_BYTES + 1
        ));
        let t = MbTiles::open(&path).unwrap();
        match t.tile(TileId::new(1, 0, 0).unwrap()) {
            Err(Error::TileTooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (MAX_TILE_BYTES + 1, MAX_TILE_BYTES));
            }
            other => panic!("{other:?}"),
        }
        let at_limit = t.tile(TileId::new(1, 1, 0).unwrap()).unwrap().unwrap();
        assert_eq!(at_limit.data.len() as u64, MAX_TILE_BYTES);
        assert!(t.tile(TileId::new(0, 0, 0).unwrap()).unwrap().is_some());
    }
}

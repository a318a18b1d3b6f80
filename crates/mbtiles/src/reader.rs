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
            Layout::Flat => {
                "SELECT tile_data FROM tiles WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3"
            }
            Layout::Deduplicated => {
                "SELECT images.tile_data FROM map JOIN images ON images.tile_id = map.tile_id \
                 WHERE map.zoom_level = ?1 AND map.tile_column = ?2 AND map.tile_row = ?3"
            }
            Layout::FlatWithHash => {
                "SELECT tile_data FROM tiles_with_hash WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3"
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
    pool: Mutex<Vec<Connection>>,
}

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
        stmt.query_row((id.z(), id.x(), id.y()), |row| {
            // A NULL or non-BLOB tile_data (seen in hand-edited files) reads as no tile.
            Ok(match row.get_ref(0)? {
                rusqlite::types::ValueRef::Blob(b) => Some(b.to_vec()),
                rusqlite::types::ValueRef::Text(t) => Some(t.to_vec()),
                _ => None,
            })
        })
        .optional()
        .map(Option::flatten)
        .map_err(err)
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
    let mut raw = BTreeMap::new();
    let exists: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'metadata'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(err)?
        > 0;
    if exists {
        let mut stmt = conn
            .prepare("SELECT name, value FROM metadata")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    text(r.get_ref(0)?).unwrap_or_default(),
                    text(r.get_ref(1)?).unwrap_or_default(),
                ))
            })
            .map_err(err)?;
        for row in rows {
            let (k, v) = row.map_err(err)?;
            raw.entry(k).or_insert(v);
        }
    }
    Ok(parse_metadata(raw))
}

fn text(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Null => None,
    }
}

/// Parses the metadata rows. Values we cannot parse are left out of the typed fields (and kept in
/// `raw`): a bad `bounds` row should not disable a tileset.
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
    let json = get("json").and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok());
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
        Layout::Deduplicated => "SELECT tile_data FROM images LIMIT 1",
        Layout::Flat => "SELECT tile_data FROM tiles LIMIT 1",
        Layout::FlatWithHash => "SELECT tile_data FROM tiles_with_hash LIMIT 1",
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
}

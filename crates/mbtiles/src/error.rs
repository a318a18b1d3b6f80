//! Errors of `nvrkit-mbtiles`.
//!
//! Two enums, split by who reacts: [`Error`] is about a file (open, read), and the server turns it
//! into a disabled tileset, a 500 or a 503; [`CoordError`] is about a request's tile coordinates,
//! and the server turns it into a 400.

use std::path::PathBuf;

/// Everything that can go wrong opening or reading an MBTiles file.
///
/// Every variant names the file, so a log line is enough to find it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened (missing, permissions, a directory).
    #[error("{path}: cannot open: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite or the OS said.
        #[source]
        source: rusqlite::Error,
    },

    /// The file is not an SQLite database, or its pages are damaged (`SQLITE_NOTADB`,
    /// `SQLITE_CORRUPT`). Distinct from [`Error::Schema`]: the bytes themselves are wrong.
    #[error("{path}: not a valid SQLite file: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },

    /// The file is a valid SQLite database but not an MBTiles file we can read (no `tiles` table or
    /// view, no `map`/`images` pair, no `tiles_with_hash`, missing columns).
    #[error("{path}: not an MBTiles file: {what}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: String,
    },

    /// Another process holds a write lock on the file and did not release it within the busy
    /// timeout (`SQLITE_BUSY`, see `MbTiles::BUSY_TIMEOUT`). Retrying later may succeed.
    #[error("{path}: busy (locked by a writer)")]
    Busy {
        /// The file.
        path: PathBuf,
    },

    /// Any other SQLite error while reading (I/O error, a file truncated under us).
    #[error("{path}: {what}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },

    /// The file is over one of the reader's limits (see `reader::MAX_METADATA_ROWS`): it is
    /// refused rather than read.
    #[error("{path}: refused: {what}")]
    Limit {
        /// The file.
        path: PathBuf,
        /// Which limit.
        what: String,
    },

    /// A tile is larger than `reader::MAX_TILE_BYTES`: refused without loading it.
    #[error("{path}: tile {z}/{x}/{y} (TMS): {size} bytes, over the tile limit of {limit} bytes")]
    TileTooLarge {
        /// The file.
        path: PathBuf,
        /// Zoom level.
        z: u8,
        /// Column.
        x: u32,
        /// Row as stored (TMS, Y up).
        y: u32,
        /// The tile's size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A gzip'd tile could not be decompressed for a client that does not accept gzip.
    #[error("{path}: tile {z}/{x}/{y} (TMS): bad gzip data: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// Zoom level.
        z: u8,
        /// Column.
        x: u32,
        /// Row as stored (TMS, Y up).
        y: u32,
        /// What the decoder said.
        #[source]
        source: std::io::Error,
    },

    /// A UTFGrid could not be served: over a limit (a zip bomb), damaged, or not a UTFGrid.
    #[error("{path}: grid {z}/{x}/{y} (TMS): {source}")]
    Grid {
        /// The file.
        path: PathBuf,
        /// Zoom level.
        z: u8,
        /// Column.
        x: u32,
        /// Row as stored (TMS, Y up).
        y: u32,
        /// What is wrong with it.
        #[source]
        source: crate::grid::GridError,
    },

    /// A PMTiles file whose bytes are wrong or over a limit (see [`crate::pmtiles`]).
    #[error("{path}: PMTiles: {source}")]
    PmTiles {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::pmtiles::PmTilesError,
    },

    /// Writing a converted file failed (see [`crate::convert`]).
    #[error("{path}: writing: {what}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },

    /// Reading a (PMTiles) file failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// A directory given as a tileset source could not be listed.
    #[error("{path}: cannot list directory: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Maps a SQLite error on `path` to the variant a caller reacts to.
    pub(crate) fn from_sqlite(
        path: &std::path::Path,
        what: &'static str,
        e: rusqlite::Error,
    ) -> Self {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy { path },
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                Error::Corrupt { path, source: e }
            }
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                Error::Open { path, source: e }
            }
            _ => Error::Sqlite {
                path,
                what,
                source: e,
            },
        }
    }

    /// Whether retrying later may succeed (the file is locked by a writer).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}

/// Tile coordinates that name no tile: a zoom beyond [`crate::MAX_ZOOM`], a column or row outside
/// `0..2^z`, an Ocularis level above the tileset's top level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// The zoom (or Ocularis level) is out of range.
    #[error("zoom {z} out of range 0..={max}")]
    Zoom {
        /// The zoom asked for.
        z: u32,
        /// The largest valid value.
        max: u32,
    },
    /// The column is not in `0..2^z`.
    #[error("x {x} out of range 0..{limit} at zoom {z}")]
    X {
        /// The column asked for.
        x: u32,
        /// The zoom.
        z: u8,
        /// `2^z`.
        limit: u64,
    },
    /// The row is not in `0..2^z`.
    #[error("y {y} out of range 0..{limit} at zoom {z}")]
    Y {
        /// The row asked for.
        y: u32,
        /// The zoom.
        z: u8,
        /// `2^z`.
        limit: u64,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

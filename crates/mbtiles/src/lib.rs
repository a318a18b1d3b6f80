//! # nvrkit-mbtiles
//!
//! Read [MBTiles 1.3] and [PMTiles v3] files and serve their tiles over HTTP in the schemes VMS
//! clients ask for.
//!
//! - [`MbTiles`]: a read-only reader on SQLite (compiled in): metadata with missing fields derived
//!   from the tiles, tiles from the flat `tiles` table, the deduplicated `map`/`images` layout and
//!   martin's `tiles_with_hash`, format from the metadata and the magic bytes.
//! - **Untrusted files**: what is read of a file is bounded ([`reader`]): `metadata` values
//!   1 MiB, names 256 bytes, 10,000 rows and 16 MiB in all, the `json` row 64 levels deep, a
//!   tile 16 MiB ([`Error::TileTooLarge`]); [`parse_metadata_rows`] builds the metadata from
//!   (name, value) pairs without SQLite (the `mbtiles_metadata` fuzz target).
//! - [`grid`]: UTFGrid from the `grids` and `grid_data` tables (mbutil) or views (TileMill),
//!   zlib or gzip, inflated with a cap, `data` filled from `grid_data`; served as JSON or JSONP.
//! - [`PmTiles`]: a PMTiles v3 reader with range reads and a bounded leaf-directory cache,
//!   its directories parsed as untrusted input ([`pmtiles`]); [`convert`] writes MBTiles to
//!   PMTiles (the `pmtiles` crate's writer: dedup by content hash, clustered) and back.
//! - [`cameras`]: cameras on the map from a `cameras.json` (lon/lat or floor-plan pixel,
//!   heading, field of view), their state from nvr's API, as GeoJSON and a vector tile layer.
//! - [`scheme`]: XYZ, TMS, Ocularis and ArcGIS as types, each a pair of pure functions between a
//!   request address and the stored row ([`TileId`]), with the Ocularis mapping worked through.
//! - [`Catalog`]: tilesets from files and directories, reopened when a file is replaced or
//!   edited, a bad file disabling only its own tileset.
//! - [`wmts`]: OGC WMTS 1.0.0 capabilities (GoogleMapsCompatible and Ocularis tile matrix sets)
//!   and the KVP and RESTful `GetTile` the router answers.
//! - [`http::router`]: an axum router with TileJSON 3.0, a catalog, an HTML preview, ETags, gzip
//!   pass-through and CORS; the `tileserve` binary mounts it. It and [`Catalog::watch`] are
//!   the default feature `http`: without it (`default-features = false`) the crate has no
//!   tokio and no axum (`cargo tree -p nvrkit-mbtiles --no-default-features -e normal`: 69
//!   lines, 149 with it; the `pmtiles` writer added 13, nvrkit-media for nvr's times 3).
//!
//! Non-goals: rendering vector tiles to images, over-zooming, PMTiles over HTTP ranges or S3.
//!
//! ## Read a tile by its XYZ address
//!
//! ```
//! use nvrkit_mbtiles::{MbTiles, TileScheme, Xyz, ZxyCoord};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("world.mbtiles");
//! # let db = rusqlite::Connection::open(&path).unwrap();
//! # db.execute_batch("CREATE TABLE metadata (name TEXT, value TEXT);
//! #   CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
//! #   INSERT INTO metadata VALUES ('name', 'world'), ('format', 'png');
//! #   INSERT INTO tiles VALUES (1, 0, 1, x'89504E470D0A1A0A');").unwrap();
//! # drop(db);
//! let tiles = MbTiles::open(&path)?;
//! assert_eq!(tiles.metadata().name.as_deref(), Some("world"));
//! // XYZ 1/0/0 is the north-west tile; MBTiles stores it at TMS row 1.
//! let id = Xyz.to_tile(ZxyCoord { z: 1, x: 0, y: 0 }).expect("in range");
//! assert_eq!(id.y(), 1);
//! let tile = tiles.tile(id)?.expect("stored");
//! assert_eq!(tile.format.content_type(), "image/png");
//! # Ok::<(), nvrkit_mbtiles::Error>(())
//! ```
//!
//! ## Serve a directory of tilesets
//!
//! ```no_run
//! use std::sync::Arc;
//! use nvrkit_mbtiles::{Catalog, http};
//!
//! # async fn serve() -> std::io::Result<()> {
//! let catalog = Arc::new(Catalog::new(vec!["maps/".into()], Default::default()));
//! catalog.refresh().expect("maps/ is readable");
//! let _watcher = catalog.watch(Catalog::DEFAULT_POLL);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, http::router(catalog, http::Config::default())).await
//! # }
//! ```
//!
//! [MBTiles 1.3]: https://github.com/mapbox/mbtiles-spec/blob/master/1.3/spec.md
//! [PMTiles v3]: https://github.com/protomaps/PMTiles/blob/main/spec/v3/spec.md

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cache;
pub mod cameras;
pub mod catalog;
pub mod convert;
pub mod error;
pub mod format;
pub mod grid;
#[cfg(feature = "http")]
pub mod http;
pub mod mvt;
pub mod pmtiles;
pub mod reader;
pub mod route;
pub mod scheme;
pub mod tilejson;
pub mod wmts;

pub use catalog::{Catalog, Source, Tileset};
pub use error::{CoordError, Error, Result};
pub use format::TileFormat;
pub use pmtiles::PmTiles;
pub use reader::{Layout, MbTiles, Metadata, MetadataError, Tile, parse_metadata_rows};
pub use scheme::{
    ArcGis, ArcGisCoord, MAX_ZOOM, Ocularis, OcularisCoord, SchemeKind, TileId, TileScheme, Tms,
    Xyz, ZxyCoord,
};

//! The reader on each layout, metadata derivation and bad files.

use nvrkit_mbtiles::{Error, Layout, MbTiles, TileFormat, TileId};

use crate::fixtures::{self, png, pyramid};

#[test]
fn every_layout_reads_the_same_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let meta = [("name", "t"), ("format", "png")];
    let tiles = pyramid(3);
    let flat = dir.path().join("flat.mbtiles");
    let dedup = dir.path().join("dedup.mbtiles");
    let hash = dir.path().join("hash.mbtiles");
    fixtures::flat(&flat, &meta, &tiles, png);
    fixtures::dedup(&dedup, &meta, &tiles);
    fixtures::with_hash(&hash, &meta, &tiles);
    for (path, layout) in [
        (&flat, Layout::Flat),
        (&dedup, Layout::Deduplicated),
        (&hash, Layout::FlatWithHash),
    ] {
        let m = MbTiles::open(path).unwrap();
        assert_eq!(m.layout(), layout);
        assert_eq!(m.zoom_range(), Some((0, 3)));
        assert_eq!(m.tile_ids().unwrap().len(), tiles.len());
        for &(z, x, y) in &tiles {
            let t = m.tile(TileId::new(z, x, y).unwrap()).unwrap().unwrap();
            let want = if layout == Layout::Deduplicated && z == 2 {
                png(2, 0, 0)
            } else {
                png(z, x, y)
            };
            assert_eq!(t.data, want, "{layout:?} {z}/{x}/{y}");
            assert_eq!(t.format, TileFormat::Png);
        }
        assert!(m.tile(TileId::new(4, 0, 0).unwrap()).unwrap().is_none());
    }
}

#[test]
fn missing_metadata_is_derived_from_the_tiles() {
    // Like GDAL: no center; here also no minzoom, maxzoom, bounds or format.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bare.mbtiles");
    // Zoom 2 and 3, the north-east quarter only: XYZ x >= n/2, y < n/2.
    let tiles: Vec<_> = (2..=3u32)
        .flat_map(|z| {
            let n = 1 << z;
            (n / 2..n).flat_map(move |x| (n / 2..n).map(move |y| (z, x, y)))
        })
        .collect();
    fixtures::flat(&path, &[("name", "bare")], &tiles, png);
    let m = MbTiles::open(&path).unwrap();
    let md = m.metadata();
    assert_eq!((md.minzoom, md.maxzoom), (Some(2), Some(3)));
    assert_eq!(m.format(), TileFormat::Png, "sniffed from the first tile");
    let b = md.bounds.unwrap();
    assert!(
        (b[0] - 0.0).abs() < 1e-9 && (b[2] - 180.0).abs() < 1e-9,
        "{b:?}"
    );
    assert!(
        (b[1] - 0.0).abs() < 1e-9 && (b[3] - 85.0511287798).abs() < 1e-6,
        "{b:?}"
    );
    let c = md.center.unwrap();
    assert_eq!(c[2], 2.0);
    assert_eq!(md.derived, vec!["minzoom", "maxzoom", "bounds", "center"]);
}

#[test]
fn a_text_file_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.mbtiles");
    std::fs::write(
        &path,
        "this is not a database, it is a shopping list\n".repeat(100),
    )
    .unwrap();
    assert!(matches!(MbTiles::open(&path), Err(Error::Corrupt { .. })));
}

#[test]
fn a_truncated_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.mbtiles");
    fixtures::flat(&path, &[("format", "png")], &pyramid(5), png);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.mbtiles");
    for keep in [0, 50, 100, 1024, 4096, bytes.len() / 2] {
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        // Opening may succeed (the first pages are intact); reading must then fail cleanly.
        if let Ok(m) = MbTiles::open(&cut) {
            for id in [(5, 31, 31), (5, 0, 0), (0, 0, 0)] {
                let _ = m.tile(TileId::new(id.0, id.1, id.2).unwrap());
            }
        }
    }
}

#[test]
fn an_sqlite_file_without_tiles_is_a_schema_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.mbtiles");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE people (name TEXT);")
        .unwrap();
    assert!(matches!(MbTiles::open(&path), Err(Error::Schema { .. })));
    // A `tiles` table with the wrong columns is caught at open, not per request.
    let path = dir.path().join("wrong.mbtiles");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE tiles (z INTEGER, x INTEGER, y INTEGER, data BLOB);")
        .unwrap();
    assert!(
        matches!(MbTiles::open(&path), Err(Error::Schema { .. })),
        "{:?}",
        MbTiles::open(&path)
    );
}

#[test]
fn a_missing_file_is_an_open_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.mbtiles");
    assert!(matches!(MbTiles::open(&path), Err(Error::Open { .. })));
    assert!(!path.exists());
}

#[test]
fn a_writer_lock_is_busy_then_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.mbtiles");
    fixtures::flat(&path, &[("format", "png")], &pyramid(1), png);
    let m = MbTiles::open(&path).unwrap();
    let id = TileId::new(1, 0, 0).unwrap();
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = m.tile(id).unwrap_err();
    assert!(err.is_busy(), "{err}");
    writer.execute_batch("COMMIT").unwrap();
    assert!(m.tile(id).unwrap().is_some());
}

/// GDAL 3.6's vector writer stores edge-buffer tiles outside the grid (tile_row -1, tile_column
/// 2^z), found by the interop test: they must not break the zoom range, the derived bounds or
/// the tile list.
#[test]
fn gdal_out_of_grid_rows_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gdal.mbtiles");
    fixtures::flat(
        &path,
        &[("format", "png")],
        &[(0, 0, 0), (1, 0, 0), (1, 1, 1)],
        png,
    );
    let db = rusqlite::Connection::open(&path).unwrap();
    for (z, x, y) in [
        (0i64, 0i64, -1i64),
        (0, 1, -1),
        (0, 1, 0),
        (1, 2, -1),
        (1, 2, 1),
    ] {
        db.execute(
            "INSERT INTO tiles VALUES (?1, ?2, ?3, x'89504E47')",
            (z, x, y),
        )
        .unwrap();
    }
    drop(db);
    let m = MbTiles::open(&path).unwrap();
    assert_eq!(m.zoom_range(), Some((0, 1)));
    assert_eq!(m.tile_ids().unwrap().len(), 3);
    let b = m.metadata().bounds.unwrap();
    assert_eq!((b[0], b[2]), (-180.0, 180.0), "clamped to the world: {b:?}");
    assert!(b[1] >= -85.06 && b[3] <= 85.06, "{b:?}");
}

/// tippecanoe and martin-cp can leave files in WAL mode; a read-only handle must still read
/// them, including rows still in the `-wal` file of a writer that is open.
#[test]
fn a_wal_mode_file_is_read_with_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.mbtiles");
    fixtures::flat(&path, &[("format", "png")], &pyramid(1), png);
    let w = rusqlite::Connection::open(&path).unwrap();
    let mode: String = w
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    w.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    w.execute("INSERT INTO tiles VALUES (2, 0, 0, ?1)", [png(2, 0, 0)])
        .unwrap();
    assert!(dir.path().join("wal.mbtiles-wal").exists());
    let m = MbTiles::open(&path).unwrap();
    assert_eq!(m.zoom_range(), Some((0, 2)));
    let t = m.tile(TileId::new(2, 0, 0).unwrap()).unwrap().unwrap();
    assert_eq!(t.data, png(2, 0, 0));
    // A writer in the middle of a transaction does not block WAL readers.
    w.execute_batch("BEGIN IMMEDIATE; INSERT INTO tiles VALUES (2, 1, 0, x'00');")
        .unwrap();
    assert!(m.tile(TileId::new(2, 1, 0).unwrap()).unwrap().is_none());
    w.execute_batch("COMMIT").unwrap();
    assert!(m.tile(TileId::new(2, 1, 0).unwrap()).unwrap().is_some());
}

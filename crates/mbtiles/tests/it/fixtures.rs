//! MBTiles files made with rusqlite for the tests, in each layout the reader supports.

use std::io::Write;
use std::path::Path;

use rusqlite::Connection;

/// Bytes of a fake PNG tile that names its stored (TMS) address, so a wrong flip shows.
pub fn png(z: u32, x: u32, y: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(format!("tile {z}/{x}/{y}").as_bytes());
    v
}

/// A gzip'd fake vector tile with one layer named after its address.
pub fn gz_pbf(z: u32, x: u32, y: u32) -> Vec<u8> {
    let name = format!("layer-{z}-{x}-{y}");
    let mut layer = vec![0x0a, name.len() as u8];
    layer.extend_from_slice(name.as_bytes());
    let mut raw = vec![0x1a, layer.len() as u8];
    raw.extend_from_slice(&layer);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&raw).unwrap();
    enc.finish().unwrap()
}

/// Every tile of zooms `0..=maxzoom`, as `(z, x, y_tms)`.
pub fn pyramid(maxzoom: u32) -> Vec<(u32, u32, u32)> {
    let mut v = Vec::new();
    for z in 0..=maxzoom {
        for x in 0..1 << z {
            for y in 0..1 << z {
                v.push((z, x, y));
            }
        }
    }
    v
}

const METADATA: &str = "CREATE TABLE metadata (name TEXT, value TEXT);
    CREATE UNIQUE INDEX name ON metadata (name);";

fn metadata(db: &Connection, meta: &[(&str, &str)]) {
    for (k, v) in meta {
        db.execute("INSERT INTO metadata VALUES (?1, ?2)", (k, v))
            .unwrap();
    }
}

/// The flat layout GDAL writes.
pub fn flat(
    path: &Path,
    meta: &[(&str, &str)],
    tiles: &[(u32, u32, u32)],
    data: fn(u32, u32, u32) -> Vec<u8>,
) {
    let mut db = Connection::open(path).unwrap();
    db.execute_batch(&format!(
        "{METADATA}
         CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
         CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);"
    ))
    .unwrap();
    metadata(&db, meta);
    let tx = db.transaction().unwrap();
    for &(z, x, y) in tiles {
        tx.execute(
            "INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)",
            (z, x, y, data(z, x, y)),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The deduplicated `map` + `images` layout (mbutil, TileMill), with its `tiles` view. Every tile
/// at zoom 2 shares one image, as in an ocean.
pub fn dedup(path: &Path, meta: &[(&str, &str)], tiles: &[(u32, u32, u32)]) {
    let mut db = Connection::open(path).unwrap();
    db.execute_batch(&format!(
        "{METADATA}
         CREATE TABLE map (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_id TEXT);
         CREATE UNIQUE INDEX map_index ON map (zoom_level, tile_column, tile_row);
         CREATE TABLE images (tile_data BLOB, tile_id TEXT);
         CREATE UNIQUE INDEX images_id ON images (tile_id);
         CREATE VIEW tiles AS SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
           map.tile_row AS tile_row, images.tile_data AS tile_data
           FROM map JOIN images ON images.tile_id = map.tile_id;"
    ))
    .unwrap();
    metadata(&db, meta);
    let tx = db.transaction().unwrap();
    for &(z, x, y) in tiles {
        let (id, data) = if z == 2 {
            ("ocean".to_string(), png(2, 0, 0))
        } else {
            (format!("{z}-{x}-{y}"), png(z, x, y))
        };
        tx.execute("INSERT OR IGNORE INTO images VALUES (?1, ?2)", (data, &id))
            .unwrap();
        tx.execute("INSERT INTO map VALUES (?1, ?2, ?3, ?4)", (z, x, y, &id))
            .unwrap();
    }
    tx.commit().unwrap();
}

/// martin's flat-with-hash layout.
pub fn with_hash(path: &Path, meta: &[(&str, &str)], tiles: &[(u32, u32, u32)]) {
    let mut db = Connection::open(path).unwrap();
    db.execute_batch(&format!(
        "{METADATA}
         CREATE TABLE tiles_with_hash (zoom_level INTEGER NOT NULL, tile_column INTEGER NOT NULL,
           tile_row INTEGER NOT NULL, tile_data BLOB, tile_hash TEXT,
           PRIMARY KEY (zoom_level, tile_column, tile_row));
         CREATE VIEW tiles AS SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles_with_hash;"
    ))
    .unwrap();
    metadata(&db, meta);
    let tx = db.transaction().unwrap();
    for &(z, x, y) in tiles {
        tx.execute(
            "INSERT INTO tiles_with_hash VALUES (?1, ?2, ?3, ?4, ?5)",
            (z, x, y, png(z, x, y), format!("{z}{x}{y}")),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

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

/// The UTFGrid JSON of a stored tile: a 4 × 4 grid with two keys named after its address (TMS),
/// `k-z-x-y-a` on the left half and `k-z-x-y-b` on the right, blank top row.
pub fn grid_json(z: u32, x: u32, y: u32) -> String {
    format!(
        r#"{{"grid":["    ","!!##","!!##","!!##"],"keys":["","k-{z}-{x}-{y}-a","k-{z}-{x}-{y}-b"]}}"#
    )
}

/// The `key_json` of a key: the stored address it belongs to and which half.
pub fn key_json(z: u32, x: u32, y: u32, half: &str) -> String {
    format!(r#"{{"tile":"{z}/{x}/{y}","half":"{half}"}}"#)
}

/// zlib, as mbutil and TileMill store grids.
pub fn zlib(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// gzip, as some tools store grids.
pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// The mbutil layout with UTFGrids: flat `tiles`, `grids` and `grid_data` tables, grids zlib'd.
/// Every tile in `tiles` gets a grid except those in `without_grid`.
pub fn mbutil_grids(path: &Path, tiles: &[(u32, u32, u32)], without_grid: &[(u32, u32, u32)]) {
    flat(path, &[("name", "grids"), ("format", "png")], tiles, png);
    let mut db = Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE grids (zoom_level integer, tile_column integer, tile_row integer, grid blob);
         CREATE TABLE grid_data (zoom_level integer, tile_column integer, tile_row integer,
           key_name text, key_json text);
         CREATE UNIQUE INDEX grid_index ON grids (zoom_level, tile_column, tile_row);
         CREATE UNIQUE INDEX grid_data_index ON grid_data (zoom_level, tile_column, tile_row, key_name);",
    )
    .unwrap();
    let tx = db.transaction().unwrap();
    for &(z, x, y) in tiles.iter().filter(|t| !without_grid.contains(t)) {
        tx.execute(
            "INSERT INTO grids VALUES (?1, ?2, ?3, ?4)",
            (z, x, y, zlib(grid_json(z, x, y).as_bytes())),
        )
        .unwrap();
        for half in ["a", "b"] {
            tx.execute(
                "INSERT INTO grid_data VALUES (?1, ?2, ?3, ?4, ?5)",
                (
                    z,
                    x,
                    y,
                    format!("k-{z}-{x}-{y}-{half}"),
                    key_json(z, x, y, half),
                ),
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// TileMill's layout: `map` (with `grid_id`), `images`, `grid_utfgrid`, `grid_key`, `keymap`,
/// and the `tiles`, `grids` and `grid_data` views over them (node-mbtiles' schema). Grids are
/// gzip'd here, to cover the other encoding.
pub fn tilemill_grids(path: &Path, tiles: &[(u32, u32, u32)], without_grid: &[(u32, u32, u32)]) {
    let mut db = Connection::open(path).unwrap();
    db.execute_batch(&format!(
        "{METADATA}
         CREATE TABLE map (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_id TEXT,
           grid_id TEXT);
         CREATE UNIQUE INDEX map_index ON map (zoom_level, tile_column, tile_row);
         CREATE TABLE images (tile_data blob, tile_id text);
         CREATE TABLE grid_utfgrid (grid_id TEXT, grid_utfgrid BLOB);
         CREATE TABLE grid_key (grid_id TEXT, key_name TEXT);
         CREATE TABLE keymap (key_name TEXT, key_json TEXT);
         CREATE VIEW tiles AS SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
           map.tile_row AS tile_row, images.tile_data AS tile_data
           FROM map JOIN images ON images.tile_id = map.tile_id;
         CREATE VIEW grids AS SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
           map.tile_row AS tile_row, grid_utfgrid.grid_utfgrid AS grid
           FROM map JOIN grid_utfgrid ON grid_utfgrid.grid_id = map.grid_id;
         CREATE VIEW grid_data AS SELECT map.zoom_level AS zoom_level,
           map.tile_column AS tile_column, map.tile_row AS tile_row,
           keymap.key_name AS key_name, keymap.key_json AS key_json
           FROM map JOIN grid_key ON map.grid_id = grid_key.grid_id
           JOIN keymap ON grid_key.key_name = keymap.key_name;"
    ))
    .unwrap();
    metadata(&db, &[("name", "tilemill"), ("format", "png")]);
    let tx = db.transaction().unwrap();
    for &(z, x, y) in tiles {
        let tile_id = format!("t{z}-{x}-{y}");
        let has_grid = !without_grid.contains(&(z, x, y));
        let grid_id = has_grid.then(|| format!("g{z}-{x}-{y}"));
        tx.execute(
            "INSERT INTO map VALUES (?1, ?2, ?3, ?4, ?5)",
            (z, x, y, &tile_id, &grid_id),
        )
        .unwrap();
        tx.execute(
            "INSERT INTO images VALUES (?1, ?2)",
            (png(z, x, y), &tile_id),
        )
        .unwrap();
        let Some(grid_id) = grid_id else { continue };
        tx.execute(
            "INSERT INTO grid_utfgrid VALUES (?1, ?2)",
            (&grid_id, gzip(grid_json(z, x, y).as_bytes())),
        )
        .unwrap();
        for half in ["a", "b"] {
            let key = format!("k-{z}-{x}-{y}-{half}");
            tx.execute("INSERT INTO grid_key VALUES (?1, ?2)", (&grid_id, &key))
                .unwrap();
            tx.execute(
                "INSERT INTO keymap VALUES (?1, ?2)",
                (&key, key_json(z, x, y, half)),
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

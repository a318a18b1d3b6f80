//! MBTiles to PMTiles and back, as `tileserve convert` runs it.
//!
//! The PMTiles side is written by the `pmtiles` crate's writer (0.26, feature `write` only:
//! synchronous, no tokio), which finds repeated tiles by a 128-bit hash of their bytes, stores
//! each content once, merges consecutive equal tiles into one run and lays tiles out in tile-id
//! (Hilbert) order, so the archive is clustered. The conventions are those of `pmtiles-convert`
//! (the PyPI package): tiles are copied as stored (gzip'd vector tiles stay gzip'd, and the
//! header says so; a vector tile stored raw is gzip'd), the metadata rows become the JSON object's members, with the header's
//! bounds, center and zooms taken from them. The MBTiles side is a flat `tiles` table with a
//! unique index, as `pmtiles-convert` writes it.
//!
//! Both write to a temporary file beside the output and rename it into place, so a catalog that
//! watches the directory never opens half a file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::TileFormat;
use crate::pmtiles::{PmTiles, tile_id_of};
use crate::reader::MbTiles;

/// What a conversion wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Tiles read from the input (addressed tiles).
    pub tiles: u64,
    /// Distinct tile contents written (PMTiles output), or tiles written (MBTiles output).
    pub written: u64,
}

fn write_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

fn temp_beside(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    out.with_file_name(name)
}

/// Removes the temporary file unless the conversion got to the rename.
struct TempGuard(PathBuf, bool);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Writes every tile of `src` into a new PMTiles file `out`. `progress(done, total)` is called
/// as tiles are copied.
pub fn mbtiles_to_pmtiles(
    src: &MbTiles,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Stats> {
    let mut ids: Vec<(u64, crate::TileId)> = src
        .tile_ids()?
        .into_iter()
        .map(|t| (tile_id_of(t), t))
        .collect();
    // Clustered: tile data in tile-id order.
    ids.sort_unstable_by_key(|(id, _)| *id);
    let total = ids.len() as u64;
    let m = src.metadata();
    let format = src.format();
    let tile_type = match format {
        TileFormat::Pbf => pmtiles::TileType::Mvt,
        TileFormat::Png => pmtiles::TileType::Png,
        TileFormat::Jpg => pmtiles::TileType::Jpeg,
        TileFormat::Webp => pmtiles::TileType::Webp,
        _ => pmtiles::TileType::Unknown,
    };
    // Tiles are copied as stored: a gzip'd vector tileset says gzip in the header.
    let gzip =
        format == TileFormat::Pbf || m.raw.get("compression").map(String::as_str) == Some("gzip");
    let tile_compression = if gzip {
        pmtiles::Compression::Gzip
    } else {
        pmtiles::Compression::None
    };
    let meta: serde_json::Map<String, serde_json::Value> = m
        .raw
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let (lo, hi) = src.zoom_range().unwrap_or((0, 0));
    let b = m
        .bounds
        .unwrap_or([-180.0, -85.051_128_78, 180.0, 85.051_128_78]);
    let c = m
        .center
        .unwrap_or([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, f64::from(lo)]);

    let tmp = temp_beside(out);
    let mut guard = TempGuard(tmp.clone(), false);
    let file = std::fs::File::create(&tmp).map_err(|e| write_err(&tmp, e))?;
    let mut w = pmtiles::PmTilesWriter::new(tile_type)
        .precompressed(tile_compression)
        .internal_compression(pmtiles::Compression::Gzip)
        .min_zoom(m.minzoom.unwrap_or(lo))
        .max_zoom(m.maxzoom.unwrap_or(hi))
        .bounds(b[0], b[1], b[2], b[3])
        .center(c[0], c[1])
        .center_zoom(c[2].clamp(0.0, 30.0) as u8)
        .metadata(serde_json::Value::Object(meta).to_string())
        .create(std::io::BufWriter::new(file))
        .map_err(|e| write_err(&tmp, e))?;
    let mut stats = Stats::default();
    for (i, (_, t)) in ids.iter().enumerate() {
        let Some(tile) = src.tile(*t)? else {
            continue;
        };
        let coord =
            pmtiles::TileCoord::new(t.z(), t.x(), t.y_down()).map_err(|e| write_err(&tmp, e))?;
        // The header says gzip for the whole archive: a vector tile stored raw is gzip'd, as
        // pmtiles-convert does ("force gzip compression only for vector").
        let data = if gzip && !tile.gzip {
            use std::io::Write;
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&tile.data)
                .and_then(|()| z.finish())
                .map_err(|e| write_err(&tmp, e))?
        } else {
            tile.data.to_vec()
        };
        w.add_tile(coord, &data).map_err(|e| write_err(&tmp, e))?;
        stats.tiles += 1;
        progress(i as u64 + 1, total);
    }
    w.finalize().map_err(|e| write_err(&tmp, e))?;
    // The writer's counts are in the header it wrote; read them back with our own reader,
    // which also proves the file opens.
    let check = PmTiles::open(&tmp)?;
    stats.written = check.header().tile_contents;
    drop(check);
    std::fs::rename(&tmp, out).map_err(|e| write_err(out, e))?;
    guard.1 = true;
    Ok(stats)
}

/// Writes every tile of `src` into a new MBTiles file `out` (flat `tiles` table, runs
/// expanded). `progress(done, total)` is called as tiles are copied; `total` is the header's
/// addressed-tile count (0 if the header does not say).
pub fn pmtiles_to_mbtiles(
    src: &PmTiles,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Stats> {
    let tmp = temp_beside(out);
    let mut guard = TempGuard(tmp.clone(), false);
    let _ = std::fs::remove_file(&tmp);
    let sql = |e: rusqlite::Error| write_err(&tmp, e);
    let mut db = rusqlite::Connection::open(&tmp).map_err(sql)?;
    db.execute_batch(
        "CREATE TABLE metadata (name TEXT, value TEXT);
         CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);",
    )
    .map_err(sql)?;
    let h = src.header().clone();
    let m = src.metadata();
    let tx = db.transaction().map_err(sql)?;
    let stats = {
        let mut rows = m.raw.clone();
        let b = h.bounds;
        rows.entry("minzoom".into())
            .or_insert_with(|| h.min_zoom.to_string());
        rows.entry("maxzoom".into())
            .or_insert_with(|| h.max_zoom.to_string());
        rows.entry("bounds".into())
            .or_insert_with(|| format!("{},{},{},{}", b[0], b[1], b[2], b[3]));
        rows.entry("center".into())
            .or_insert_with(|| format!("{},{},{}", h.center[0], h.center[1], h.center_zoom));
        if src.format() != TileFormat::Unknown {
            rows.entry("format".into())
                .or_insert_with(|| src.format().extension().to_string());
        }
        let mut meta = tx
            .prepare("INSERT INTO metadata VALUES (?1, ?2)")
            .map_err(sql)?;
        for (k, v) in &rows {
            meta.execute((k, v)).map_err(sql)?;
        }
        drop(meta);
        let mut ins = tx
            .prepare("INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)")
            .map_err(sql)?;
        let total = h.addressed_tiles;
        let mut stats = Stats::default();
        // Consecutive ids of one run share bytes: read them once.
        let mut last: Option<(u64, u32, bytes::Bytes)> = None;
        src.visit(&mut |t, e| {
            let data = match &last {
                Some((o, l, d)) if *o == e.offset && *l == e.length => d.clone(),
                _ => {
                    let d = src.read_entry(t, e)?.data;
                    last = Some((e.offset, e.length, d.clone()));
                    d
                }
            };
            ins.execute((t.z(), t.x(), t.y(), &data[..]))
                .map_err(|e| write_err(&tmp, e))?;
            stats.tiles += 1;
            stats.written += 1;
            progress(stats.tiles, total);
            Ok(())
        })?;
        stats
    };
    tx.execute_batch(
        "CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);",
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    drop(db);
    std::fs::rename(&tmp, out).map_err(|e| write_err(out, e))?;
    guard.1 = true;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TileId;

    fn mbtiles(dir: &Path, vector: bool) -> PathBuf {
        let p = dir.join("src.mbtiles");
        let db = rusqlite::Connection::open(&p).unwrap();
        db.execute_batch(
            "CREATE TABLE metadata (name TEXT, value TEXT);
             CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
             CREATE UNIQUE INDEX t ON tiles (zoom_level, tile_column, tile_row);",
        )
        .unwrap();
        let format = if vector { "pbf" } else { "png" };
        db.execute(
            "INSERT INTO metadata VALUES ('name', 'src'), ('format', ?1), ('attribution', 'x')",
            [format],
        )
        .unwrap();
        for z in 0..=4u32 {
            for x in 0..(1u32 << z) {
                for y in 0..(1u32 << z) {
                    // Half the tiles the same bytes (an ocean), the rest unique.
                    let mut data = if vector && x == 1 {
                        // A raw (not gzip'd) vector tile: converted, it is gzip'd.
                        b"\x1a\x00".to_vec()
                    } else if vector {
                        b"\x1f\x8b\x08\x00".to_vec()
                    } else {
                        b"\x89PNG\r\n\x1a\n".to_vec()
                    };
                    if (x + y) % 2 == 0 {
                        data.extend(format!("{z}/{x}/{y}").as_bytes());
                    } else {
                        data.extend(b"ocean");
                    }
                    db.execute("INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)", (z, x, y, data))
                        .unwrap();
                }
            }
        }
        p
    }

    #[test]
    fn mbtiles_to_pmtiles_and_back_keeps_every_tile_and_dedups() {
        for vector in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let src = MbTiles::open(mbtiles(dir.path(), vector)).unwrap();
            let pm_path = dir.path().join("out.pmtiles");
            let mut calls = 0;
            let stats = mbtiles_to_pmtiles(&src, &pm_path, &mut |_, _| calls += 1).unwrap();
            assert_eq!(stats.tiles, 341);
            assert_eq!(calls, 341);
            // 171 unique tiles plus one "ocean" (two for vector: the raw ocean tiles at x = 1,
            // gzip'd alike, and the stored-gzip ones).
            assert_eq!(stats.written, if vector { 173 } else { 172 });
            let pm = PmTiles::open(&pm_path).unwrap();
            assert!(pm.header().clustered);
            assert_eq!(pm.metadata().name.as_deref(), Some("src"));
            assert_eq!(pm.zoom_range(), Some((0, 4)));
            for id in src.tile_ids().unwrap() {
                let a = src.tile(id).unwrap().unwrap();
                let b = pm.tile(id).unwrap().unwrap();
                if vector && id.x() == 1 {
                    assert!(b.gzip, "{id}");
                    let mut raw = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(&b.data[..]),
                        &mut raw,
                    )
                    .unwrap();
                    assert_eq!(raw, a.data, "{id}");
                } else {
                    assert_eq!(a, b, "{id}");
                }
            }
            assert_eq!(pm.tile(TileId::new(5, 0, 0).unwrap()).unwrap(), None);

            let back_path = dir.path().join("back.mbtiles");
            let stats = pmtiles_to_mbtiles(&pm, &back_path, &mut |_, _| {}).unwrap();
            assert_eq!(stats.tiles, 341);
            let back = MbTiles::open(&back_path).unwrap();
            assert_eq!(back.tile_ids().unwrap(), src.tile_ids().unwrap());
            for id in src.tile_ids().unwrap() {
                assert_eq!(pm.tile(id).unwrap(), back.tile(id).unwrap(), "{id}");
            }
            assert_eq!(back.metadata().attribution.as_deref(), Some("x"));
        }
    }
}

//! nvrkit-mbtiles: random tile reads (against plain rusqlite on the same file, the floor), the
//! scheme functions and the request-path parser. The HTTP comparison with martin is
//! `benches/compare/mbtiles.sh` (wrk).
//!
//! The read benchmarks measure the reading thread's CPU time (`cpu_time::ThreadTime`), not wall
//! time: the figures are per core, and on the shared 2-core machine wall time mostly
//! measures the other builds.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nvrkit_mbtiles::{MbTiles, SchemeKind, TileId, route};

/// Zooms 0..=5 (1,365 tiles) of `size`-byte pseudo-random BLOBs with a JPEG signature: 1 KiB is
/// about the mean tile of the GDAL JPEG file the wrk comparison serves (826 bytes), 16 KiB a
/// typical aerial-photo tile (four SQLite overflow pages each).
fn make_file(path: &std::path::Path, size: usize) -> Vec<TileId> {
    let mut db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE metadata (name TEXT, value TEXT);
         INSERT INTO metadata VALUES ('format', 'jpg');
         CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
         CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);",
    )
    .unwrap();
    let tx = db.transaction().unwrap();
    let mut ids = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for z in 0..=5u32 {
        for x in 0..1 << z {
            for y in 0..1 << z {
                let mut blob = vec![0xff, 0xd8, 0xff, 0xe0];
                blob.extend((0..size / 8).flat_map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed.to_le_bytes()
                }));
                tx.execute("INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)", (z, x, y, blob))
                    .unwrap();
                ids.push(TileId::new(z, x, y).unwrap());
            }
        }
    }
    tx.commit().unwrap();
    ids
}

/// A fixed pseudo-random visiting order, so every run reads the same tiles.
fn shuffled(ids: &[TileId], n: usize) -> Vec<TileId> {
    let mut s = 12345u64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ids[(s >> 33) as usize % ids.len()]
        })
        .collect()
}

fn reader(c: &mut Criterion) {
    for (label, size) in [("1 KiB", 1024), ("16 KiB", 16 * 1024)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.mbtiles");
        let ids = make_file(&path, size);
        let order = shuffled(&ids, 10_000);
        let mut g = c.benchmark_group(format!("mbtiles/read {label} tiles"));
        g.throughput(Throughput::Elements(order.len() as u64));

        let tiles = MbTiles::open(&path).unwrap();
        g.bench_function("MbTiles::tile, 10k random tiles, thread CPU time", |b| {
            b.iter_custom(|iters| {
                let t = cpu_time::ThreadTime::now();
                for _ in 0..iters {
                    for &id in &order {
                        black_box(tiles.tile(id).unwrap().unwrap());
                    }
                }
                t.elapsed()
            })
        });

        // The floor: one rusqlite connection, one cached statement, the BLOB copied out.
        let db = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        g.bench_function("rusqlite alone, 10k random tiles, thread CPU time", |b| {
            let mut stmt = db
                .prepare_cached(
                    "SELECT tile_data FROM tiles WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3",
                )
                .unwrap();
            b.iter_custom(|iters| {
                let t = cpu_time::ThreadTime::now();
                for _ in 0..iters {
                    for &id in &order {
                        let v: Vec<u8> =
                            stmt.query_row((id.z(), id.x(), id.y()), |r| r.get(0)).unwrap();
                        black_box(v);
                    }
                }
                t.elapsed()
            })
        });
        g.finish();
    }
}

fn schemes_and_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("mbtiles/request");
    let paths: Vec<String> = (0..1000u32)
        .map(|i| format!("/world/{}/{}/{}.png", 10, i, 1023 - i))
        .collect();
    g.throughput(Throughput::Elements(paths.len() as u64));
    g.bench_function("route::parse + SchemeKind::to_tile, 1000 paths", |b| {
        b.iter(|| {
            for p in &paths {
                if let Ok(route::Route::Tile { scheme, nums, .. }) = route::parse(black_box(p)) {
                    black_box(scheme.to_tile(nums[0], nums[1], nums[2], 12).unwrap());
                }
            }
        })
    });
    g.bench_function("every scheme, 1000 round trips", |b| {
        b.iter(|| {
            for i in 0..1000u32 {
                let t = TileId::new(10, i, 1023 - i).unwrap();
                for s in SchemeKind::ALL {
                    let [a, b2, c2] = s.coord_of(black_box(t), 12).unwrap();
                    black_box(s.to_tile(a, b2, c2, 12).unwrap());
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, reader, schemes_and_paths);
criterion_main!(benches);

//! Arbitrary bytes as the untrusted parts of a PMTiles v3 file. The first byte picks the mode:
//! 0, an inflated directory (`parse_directory`); 1, a gzip'd one (`decode_directory`, inflated
//! with its cap); 2, a whole file (header, root and leaf directories, metadata), opened and
//! read at a few tile ids and visited. Nothing may panic; parsed directories hold no more
//! entries than the bytes allow, every run stays in the tile-id space, and a lookup finds an
//! entry that covers its id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_mbtiles::TileId;
use nvrkit_mbtiles::pmtiles::{
    Compression, MAX_TILE_ID, PmTiles, decode_directory, find, parse_directory,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 | 1 => {
            let parsed = if mode % 3 == 0 {
                parse_directory(rest)
            } else {
                decode_directory(Compression::Gzip, rest.to_vec())
            };
            if let Ok(entries) = parsed {
                if mode % 3 == 0 {
                    assert!(entries.len() * 4 <= rest.len());
                }
                for w in entries.windows(2) {
                    assert!(w[0].tile_id <= w[1].tile_id);
                }
                for e in &entries {
                    assert!(e.length > 0);
                    assert!(e.tile_id + u64::from(e.run_length.max(1)) - 1 <= MAX_TILE_ID);
                    if let Some(found) = find(&entries, e.tile_id) {
                        assert!(found.tile_id <= e.tile_id);
                    }
                }
            }
        }
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.pmtiles");
            std::fs::write(&path, rest).unwrap();
            if let Ok(pm) = PmTiles::open(&path) {
                for (z, x, y) in [(0, 0, 0), (1, 1, 0), (3, 5, 2), (12, 1000, 3000)] {
                    let _ = pm.tile(TileId::new(z, x, y).unwrap());
                }
                let mut n = 0u32;
                // Visiting stops at the first error; cap the callback count for the fuzzer's
                // sake (a run of 2^32 tiles is valid and would take minutes).
                let _ = pm.visit(&mut |_, _| {
                    n += 1;
                    if n > 10_000 {
                        return Err(nvrkit_mbtiles::Error::Write {
                            path: path.clone(),
                            what: "enough".into(),
                        });
                    }
                    Ok(())
                });
            }
        }
    }
});

//! Arbitrary bytes as the `metadata` table of an untrusted `.mbtiles` file: split into
//! (name, value) rows at NUL bytes (name, value, name, value …) and built into the metadata and
//! its TileJSON fields without SQLite. Nothing may panic; every limit holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_mbtiles::parse_metadata_rows;
use nvrkit_mbtiles::reader::{MAX_METADATA_BYTES, MAX_METADATA_NAME, MAX_METADATA_VALUE};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let mut rows = Vec::new();
    while let Some(name) = parts.next() {
        rows.push((name, parts.next().unwrap_or_default()));
    }
    if let Ok(m) = parse_metadata_rows(rows) {
        let kept: usize = m.raw.iter().map(|(k, v)| k.len() + v.len()).sum();
        // Lossy UTF-8 may grow a value by at most 3 bytes per invalid byte.
        assert!(kept <= 3 * MAX_METADATA_BYTES);
        assert!(m.raw.keys().all(|k| k.len() <= 3 * MAX_METADATA_NAME));
        assert!(m.raw.values().all(|v| v.len() <= 3 * MAX_METADATA_VALUE));
        if let Some(b) = m.bounds {
            assert!(b[0] <= b[2] && b[1] <= b[3]);
        }
        let _ = debug_len(&m);
    }
});

fn debug_len(m: &nvrkit_mbtiles::Metadata) -> usize {
    format!("{m:?}").len()
}

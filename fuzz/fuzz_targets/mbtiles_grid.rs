//! Arbitrary bytes as a stored UTFGrid BLOB of an untrusted `.mbtiles` file (zlib, gzip or
//! JSON by its magic), inflated with the cap and assembled with one `grid_data` row. Nothing may
//! panic; the inflated JSON never passes `MAX_GRID_JSON`, and `assemble` writes a UTFGrid object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_mbtiles::grid::{MAX_GRID_JSON, assemble, inflate, jsonp, valid_callback};

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = inflate(data) {
        assert!(json.len() as u64 <= MAX_GRID_JSON);
        if let Ok(out) = assemble(&json, [("k".to_string(), "{\"v\":1}".to_string())]) {
            assert!(out.starts_with(b"{\"grid\":[") && out.ends_with(b"}"));
        }
    }
    // The same bytes as a JSONP callback: accepted only if they cannot leave the call.
    if let Ok(name) = std::str::from_utf8(data)
        && valid_callback(name)
    {
        let body = jsonp(name, b"{}");
        assert!(!name.contains(['(', ')', ';', '<', '/', ' ']));
        assert!(body.starts_with(b"/**/"));
    }
});

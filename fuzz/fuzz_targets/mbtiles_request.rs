//! Untrusted request input into nvrkit-mbtiles: the URL path parser, the scheme functions, the
//! vector-tile layer walker, and whole requests through the axum router over a small tileset.
//!
//! The first byte picks the mode: raw bytes as the path, or each byte picks a token of the URL
//! alphabet (scheme words, edge-case numbers, extensions, percent-escapes), which reaches every
//! route far faster than raw bytes. Invariants: no panic; a parsed tile route either converts to
//! a stored tile that converts back to the same three numbers, or fails cleanly; the router
//! answers every request with a status in 200..600 and never 500 on this healthy file.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use nvrkit_mbtiles::route::{self, Route};
use nvrkit_mbtiles::{Catalog, http, mvt};
use tower::ServiceExt;

const TOKENS: &[&str] = &[
    "/", "/", "/", "w", "0", "1", "2", "7", "30", "31", "4294967295", "4294967296", "00",
    ".png", ".pbf", ".jpg", ".", "tms", "ocularis", "MapServer", "mapserver", "tile", "info",
    "preview", ".json", "%20", "%2F", "%", "%ff", "%00", "-1", "+1", " ", "?", "#", "é", "\u{0}",
    ".grid.json", "?callback=", "cb", "(", "wmts", "WMTSCapabilities.xml", "GoogleMapsCompatible",
    "GoogleMapsCompatible-1", "Ocularis-1", "-", "&", "=", "REQUEST=GetTile", "REQUEST=",
    "LAYER=w", "TILEMATRIXSET=", "TILEMATRIX=", "TILEROW=", "TILECOL=", "FORMAT=", "+",
];

struct Fixture {
    _dir: tempfile::TempDir,
    router: axum::Router,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.mbtiles");
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE metadata (name TEXT, value TEXT);
             INSERT INTO metadata VALUES ('format', 'pbf');
             CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
             CREATE UNIQUE INDEX t ON tiles (zoom_level, tile_column, tile_row);
             INSERT INTO tiles VALUES (0, 0, 0, x'1f8b08000000000002039362e7622dca4f4c2906006d60404009000000');
             INSERT INTO tiles VALUES (1, 0, 1, x'1a070a05726f616473');
             INSERT INTO tiles VALUES (1, 1, 1, x'1f8b08000000');",
        )
        .unwrap();
        drop(db);
        let catalog = Arc::new(Catalog::open(vec![dir.path().to_path_buf()]).unwrap());
        let mut config = http::Config::default();
        config.cache_bytes = 1 << 20;
        let router = http::router(catalog, config);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        Fixture { _dir: dir, router, rt }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let path: String = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        rest.iter().map(|&b| TOKENS[b as usize % TOKENS.len()]).collect()
    };
    let maxzoom = mode >> 2;

    if let Ok(Route::Tile { scheme, nums, .. }) = route::parse(&path) {
        if let Ok(t) = scheme.to_tile(nums[0], nums[1], nums[2], maxzoom) {
            assert_eq!(scheme.coord_of(t, maxzoom).unwrap(), nums, "{path}");
        }
    }
    // A segment never holds '/' (the parser splits on it) and decode refuses an escaped one.
    if let Ok(id) = route::decode(&path)
        && !id.contains(['/', '\0'])
    {
        assert_eq!(route::decode(&route::encode(&id)).unwrap(), id);
    }
    let _ = mvt::layers(rest);
    let _ = http::none_match_hits(rest, b"\"0123456789abcdef-gz\"");

    // Whole requests: the path (when it is a valid URI) and headers made of the same bytes.
    let f = fixture();
    let Ok(uri) = path.parse::<axum::http::Uri>() else { return };
    let mut req = Request::builder().uri(uri);
    if mode & 2 != 0 {
        if let Ok(v) = axum::http::HeaderValue::from_bytes(rest) {
            req = req
                .header("accept-encoding", v.clone())
                .header("if-none-match", v.clone())
                .header("host", v.clone())
                .header("origin", v);
        }
    }
    let Ok(req) = req.body(Body::empty()) else { return };
    let resp = f.rt.block_on(f.router.clone().oneshot(req)).unwrap();
    let status = resp.status().as_u16();
    assert!((200..600).contains(&status));
    // The only broken tile is 1/1/1 (TMS), a truncated gzip stream: decompressing it for a
    // client without gzip is the one allowed 500.
    if status == 500 {
        assert!(path.contains('1'), "500 for {path:?}");
    }
});

//! Arbitrary bytes as tileserve's camera inputs. Mode byte 0: a `cameras.json`, parsed and,
//! when valid, drawn as GeoJSON and as a vector tile at a few zooms. Mode 1: nvr's answers
//! (`/api/cameras`, a NUL, `/api/events`) read into the states of three cameras. Nothing may
//! panic; every state vector has one state per camera; every tile drawn parses as a tile.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nvrkit_mbtiles::TileId;
use nvrkit_mbtiles::cameras::{Frame, Live, nvr_states, parse};
use nvrkit_media::WallTime;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(cams) = parse(rest) {
            let live = Live::new(cams);
            for (maxzoom, t) in [(0, TileId::new(0, 0, 0)), (5, TileId::new(3, 2, 5)), (30, TileId::new(30, 7, 9))] {
                let frame = Frame { maxzoom, bounds: Some([-10.0, -10.0, 10.0, 10.0]) };
                let _ = live.geojson("floor", frame).to_string();
                let tile = live.mvt("floor", frame, t.unwrap());
                nvrkit_mbtiles::mvt::layers(&tile).expect("our own tile parses");
            }
        }
    } else {
        let cams = parse(
            br#"{"cameras": [{"id": "demo", "lon": 0, "lat": 0}, {"id": "yard", "lon": 1, "lat": 1},
                {"id": "gate", "tileset": "floor", "pixel": [10, 10]}]}"#,
        )
        .unwrap();
        let (a, b) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b"[]"[..]),
        };
        let now = WallTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        if let Ok(s) = nvr_states(&cams, a, b, now, Duration::from_secs(30)) {
            assert_eq!(s.len(), 3);
        }
    }
});

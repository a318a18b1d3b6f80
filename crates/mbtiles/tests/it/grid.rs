//! UTFGrids: mbutil's tables and TileMill's views, every scheme, JSONP, limits.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use nvrkit_mbtiles::http::{Config, MissingTile};
use nvrkit_mbtiles::{Error, MbTiles, SchemeKind, TileId};

use crate::app;
use crate::fixtures::{self, pyramid};
use crate::http::get;

/// The tile without a grid in both fixtures (TMS address).
const NO_GRID: (u32, u32, u32) = (2, 1, 3);

fn files() -> (tempfile::TempDir, [PathBuf; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let mbutil = dir.path().join("mbutil.mbtiles");
    let tilemill = dir.path().join("tilemill.mbtiles");
    fixtures::mbutil_grids(&mbutil, &pyramid(3), &[NO_GRID]);
    fixtures::tilemill_grids(&tilemill, &pyramid(3), &[NO_GRID]);
    (dir, [mbutil, tilemill])
}

fn grid_path(id: &str, scheme: SchemeKind, [a, b, c]: [u32; 3]) -> String {
    match scheme {
        SchemeKind::Xyz => format!("/{id}/{a}/{b}/{c}.grid.json"),
        SchemeKind::Tms => format!("/{id}/tms/{a}/{b}/{c}.grid.json"),
        SchemeKind::Ocularis => format!("/{id}/ocularis/{a}/{b}/{c}.grid.json"),
        _ => format!("/{id}/MapServer/tile/{a}/{b}/{c}.grid.json"),
    }
}

/// Checks that every key of a served grid resolves to the `grid_data` row of the stored tile.
fn check_grid(body: &[u8], (z, x, y): (u32, u32, u32), what: &str) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        v["grid"],
        serde_json::json!(["    ", "!!##", "!!##", "!!##"]),
        "{what}"
    );
    let keys: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["", &format!("k-{z}-{x}-{y}-a"), &format!("k-{z}-{x}-{y}-b")],
        "{what}"
    );
    let data = v["data"].as_object().unwrap();
    assert_eq!(data.len(), 2, "{what}: {data:?}");
    for (key, half) in keys[1..].iter().zip(["a", "b"]) {
        let want: serde_json::Value =
            serde_json::from_str(&fixtures::key_json(z, x, y, half)).unwrap();
        assert_eq!(data[*key], want, "{what}: {key}");
    }
}

#[tokio::test]
async fn grid_keys_resolve_to_their_grid_data_rows_in_every_scheme() {
    let (_dir, files) = files();
    for file in &files {
        let id = file.file_stem().unwrap().to_str().unwrap();
        let (_c, router) = app(&[file.as_path()], Config::default());
        let mut served = 0;
        for (z, x, y) in pyramid(3) {
            let t = TileId::new(z, x, y).unwrap();
            for scheme in SchemeKind::ALL {
                let p = grid_path(id, scheme, scheme.coord_of(t, 3).unwrap());
                let got = get(&router, &p, &[]).await;
                if (z, x, y) == NO_GRID {
                    assert_eq!(got.status, StatusCode::NOT_FOUND, "{p}");
                    continue;
                }
                assert_eq!(got.status, StatusCode::OK, "{p}");
                assert_eq!(got.header("content-type"), Some("application/json"), "{p}");
                check_grid(&got.body, (z, x, y), &p);
                served += 1;
            }
        }
        assert_eq!(served, 4 * (85 - 1), "{id}");
        // Spelled out, so the test does not only check the scheme code against itself: XYZ
        // 1/0/0 is stored at TMS row 1; Ocularis level 0 is zoom 3 (XYZ row 1 = TMS row 6);
        // ArcGIS is z/row/col.
        for (p, stored) in [
            (format!("/{id}/1/0/0.grid.json"), (1, 0, 1)),
            (format!("/{id}/tms/1/0/0.grid.json"), (1, 0, 0)),
            (format!("/{id}/ocularis/0/5/1.grid.json"), (3, 5, 6)),
            (format!("/{id}/ocularis/2/0/0.grid.json"), (1, 0, 1)),
            (format!("/{id}/MapServer/tile/2/0/3.grid.json"), (2, 3, 3)),
        ] {
            let got = get(&router, &p, &[]).await;
            assert_eq!(got.status, StatusCode::OK, "{p}");
            check_grid(&got.body, stored, &p);
        }
        // Out of the grid: 400, as for tiles.
        for p in [
            format!("/{id}/2/4/0.grid.json"),
            format!("/{id}/ocularis/4/0/0.grid.json"),
            format!("/{id}/1/0/x.grid.json"),
        ] {
            assert_eq!(
                get(&router, &p, &[]).await.status,
                StatusCode::BAD_REQUEST,
                "{p}"
            );
        }
    }
}

#[tokio::test]
async fn jsonp_wraps_the_grid_and_refuses_callbacks_that_could_inject() {
    let (_dir, files) = files();
    let (_c, router) = app(&[files[0].as_path()], Config::default());
    let plain = get(&router, "/mbutil/1/0/0.grid.json", &[]).await.body;
    for cb in ["cb", "jQuery1_2.$x", "grid%5F1"] {
        let got = get(
            &router,
            &format!("/mbutil/1/0/0.grid.json?callback={cb}"),
            &[],
        )
        .await;
        assert_eq!(got.status, StatusCode::OK, "{cb}");
        assert_eq!(
            got.header("content-type"),
            Some("application/javascript; charset=utf-8")
        );
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        let name = cb.replace("%5F", "_");
        let mut want = format!("/**/{name}(").into_bytes();
        want.extend_from_slice(&plain);
        want.extend_from_slice(b");");
        assert_eq!(got.body, want, "{cb}");
    }
    let long = "a".repeat(nvrkit_mbtiles::grid::MAX_CALLBACK + 1);
    for cb in [
        "alert(1)",
        "a%3Balert(1)%2F%2F",
        "%3C%2Fscript%3E",
        "a+b",
        "a-b",
        "",
        "%E2%80%A8",
        long.as_str(),
        "%zz",
    ] {
        let got = get(
            &router,
            &format!("/mbutil/1/0/0.grid.json?callback={cb}"),
            &[],
        )
        .await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{cb}");
        assert_eq!(
            got.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(!got.body.starts_with(b"/**/"), "{cb}");
    }
    // Other parameters are ignored; the grid is plain JSON without a callback.
    let got = get(&router, "/mbutil/1/0/0.grid.json?v=2", &[]).await;
    assert_eq!(got.body, plain);
}

#[tokio::test]
async fn grids_have_etags_missing_ones_follow_the_missing_setting() {
    let (_dir, files) = files();
    let mut config = Config::default();
    config.missing = MissingTile::NoContent;
    let (_c, router) = app(&[files[1].as_path()], config);
    let a = get(&router, "/tilemill/2/1/1.grid.json", &[]).await;
    let etag = a.header("etag").unwrap().to_string();
    let again = get(
        &router,
        "/tilemill/2/1/1.grid.json",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let jsonp = get(&router, "/tilemill/2/1/1.grid.json?callback=f", &[]).await;
    assert_ne!(jsonp.header("etag"), Some(etag.as_str()));
    let (z, x, y) = NO_GRID;
    let xyz_row = (1 << z) - 1 - y;
    let missing = get(
        &router,
        &format!("/tilemill/{z}/{x}/{xyz_row}.grid.json"),
        &[],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn tilejson_and_catalog_list_grids_only_where_there_are_some() {
    let (dir, _files) = files();
    fixtures::flat(
        &dir.path().join("plain.mbtiles"),
        &[("format", "png")],
        &pyramid(1),
        fixtures::png,
    );
    let (_c, router) = app(&[dir.path()], Config::default());
    let tj: serde_json::Value =
        serde_json::from_slice(&get(&router, "/mbutil.json", &[("host", "h:1")]).await.body)
            .unwrap();
    assert_eq!(
        tj["grids"],
        serde_json::json!(["http://h:1/mbutil/{z}/{x}/{y}.grid.json"])
    );
    let tj: serde_json::Value =
        serde_json::from_slice(&get(&router, "/plain.json", &[]).await.body).unwrap();
    assert!(tj.get("grids").is_none(), "{tj}");
    let got = get(&router, "/plain/0/0/0.grid.json", &[]).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&got.body).contains("no UTFGrids"));
    let cat: serde_json::Value =
        serde_json::from_slice(&get(&router, "/", &[("host", "h:1")]).await.body).unwrap();
    let by_id = |id: &str| {
        cat["tilesets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_id("tilemill")["grids"]["arcgis"],
        "http://h:1/tilemill/MapServer/tile/{z}/{y}/{x}.grid.json"
    );
    assert_eq!(
        by_id("tilemill")["grids"]["ocularis"],
        "http://h:1/tilemill/ocularis/{z}/{x}/{y}.grid.json"
    );
    assert!(by_id("plain").get("grids").is_none());
}

fn one_grid(path: &Path, blob_sql: &str) {
    fixtures::mbutil_grids(path, &pyramid(0), &[(0, 0, 0)]);
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(&format!("INSERT INTO grids VALUES (0, 0, 0, {blob_sql});"))
        .unwrap();
}

#[tokio::test]
async fn a_zip_bomb_or_an_oversized_grid_is_a_clear_error_not_an_oom() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB of zeros inside a JSON string, ~64 KiB of zlib.
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b"{\"grid\":[\"").unwrap();
    let chunk = vec![b'0'; 1 << 20];
    for _ in 0..64 {
        e.write_all(&chunk).unwrap();
    }
    let bomb = e.finish().unwrap();
    let hex: String = bomb.iter().map(|b| format!("{b:02X}")).collect();
    let cases = [
        (
            "bomb",
            format!("x'{hex}'"),
            "grid JSON (inflated) over the limit of 16777216 bytes",
        ),
        (
            "huge",
            format!("zeroblob({})", (16 << 20) + 1),
            "stored grid over the limit",
        ),
        (
            "png",
            "x'89504E470D0A1A0A'".to_string(),
            "not zlib, gzip or JSON",
        ),
        ("notgrid", "x'7B7D'".to_string(), "not a UTFGrid"),
    ];
    for (name, sql, _) in &cases {
        one_grid(&dir.path().join(format!("{name}.mbtiles")), sql);
    }
    let (_c, router) = app(&[dir.path()], Config::default());
    for (name, _, want) in cases {
        let got = get(&router, &format!("/{name}/0/0/0.grid.json"), &[]).await;
        assert_eq!(got.status, StatusCode::INTERNAL_SERVER_ERROR, "{name}");
        let body = String::from_utf8_lossy(&got.body);
        assert!(body.contains(want), "{name}: {body}");
        // The tiles themselves are still served.
        assert_eq!(
            get(&router, &format!("/{name}/0/0/0"), &[]).await.status,
            StatusCode::OK
        );
    }
    let t = MbTiles::open(dir.path().join("bomb.mbtiles")).unwrap();
    assert!(matches!(
        t.grid(TileId::new(0, 0, 0).unwrap()),
        Err(Error::Grid { .. })
    ));
}

#[test]
fn grid_data_over_its_limits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.mbtiles");
    fixtures::mbutil_grids(&path, &pyramid(1), &[]);
    let db = rusqlite::Connection::open(&path).unwrap();
    let limit = nvrkit_mbtiles::grid::MAX_GRID_DATA_ROWS;
    db.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {limit})
         INSERT INTO grid_data SELECT 0, 0, 0, 'x' || i, '1' FROM n;
         INSERT INTO grid_data VALUES (1, 0, 0, 'big', CAST(zeroblob({}) AS TEXT));
         INSERT INTO grid_data VALUES (1, 1, 0, zeroblob(2000), '1');
         INSERT INTO grid_data VALUES (1, 0, 1, x'FF', x'22FF22');
         INSERT INTO grid_data VALUES (1, 0, 1, 'n', 7);",
        (16 << 20) + 1
    ))
    .unwrap();
    drop(db);
    let t = MbTiles::open(&path).unwrap();
    assert!(t.has_grids());
    let e = t.grid(TileId::new(0, 0, 0).unwrap()).unwrap_err();
    assert!(e.to_string().contains("more than 65,536"), "{e}");
    let e = t.grid(TileId::new(1, 0, 0).unwrap()).unwrap_err();
    assert!(e.to_string().contains("grid_data value"), "{e}");
    // A key name over 1 KiB is left out; the tile's other keys are served.
    let g = t.grid(TileId::new(1, 1, 0).unwrap()).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&g).unwrap();
    assert_eq!(v["data"].as_object().unwrap().len(), 2);
    // Invalid UTF-8 is read lossily; a number (stored as text by the column's affinity) is JSON.
    let g = t.grid(TileId::new(1, 0, 1).unwrap()).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&g).unwrap();
    assert_eq!(v["data"]["\u{fffd}"], "\u{fffd}", "{v}");
    assert_eq!(v["data"]["n"], 7, "{v}");
    let g = t.grid(TileId::new(1, 1, 1).unwrap()).unwrap().unwrap();
    check_grid(&g, (1, 1, 1), "1/1/1");
}

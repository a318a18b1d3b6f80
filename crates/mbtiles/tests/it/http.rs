//! The router, request by request, without sockets.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nvrkit_mbtiles::http::{Config, Cors, MissingTile};
use nvrkit_mbtiles::{SchemeKind, TileId};
use tower::ServiceExt;

use crate::app;
use crate::fixtures::{self, gz_pbf, png, pyramid};

pub struct Got {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub async fn get(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> Got {
    send(router, "GET", path, headers).await
}

async fn send(router: &axum::Router, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap()
        .to_vec();
    Got {
        status,
        headers,
        body,
    }
}

fn raster_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("world.mbtiles");
    fixtures::flat(
        &path,
        &[("name", "World"), ("format", "png"), ("attribution", "us")],
        &pyramid(3),
        png,
    );
    (dir, path)
}

#[tokio::test]
async fn every_scheme_serves_the_stored_row() {
    let (_dir, path) = raster_dir();
    let (_c, router) = app(&[&path], Config::default());
    for (z, x, y) in pyramid(3) {
        let t = TileId::new(z, x, y).unwrap();
        for scheme in SchemeKind::ALL {
            let [a, b, c] = scheme.coord_of(t, 3).unwrap();
            let p = match scheme {
                SchemeKind::Xyz => format!("/world/{a}/{b}/{c}.png"),
                SchemeKind::Tms => format!("/world/tms/{a}/{b}/{c}"),
                SchemeKind::Ocularis => format!("/world/ocularis/{a}/{b}/{c}.png"),
                _ => format!("/world/MapServer/tile/{a}/{b}/{c}"),
            };
            let got = get(&router, &p, &[]).await;
            assert_eq!(got.status, StatusCode::OK, "{p}");
            assert_eq!(got.body, png(z, x, y), "{p}");
            assert_eq!(got.header("content-type"), Some("image/png"));
        }
    }
    // Spelled out once, so the test does not only check the scheme code against itself:
    // XYZ 1/0/0 is the north-west tile, stored at TMS row 1; Ocularis level 0 is zoom 3.
    assert_eq!(get(&router, "/world/1/0/0", &[]).await.body, png(1, 0, 1));
    assert_eq!(
        get(&router, "/world/tms/1/0/0", &[]).await.body,
        png(1, 0, 0)
    );
    assert_eq!(
        get(&router, "/world/ocularis/2/0/0", &[]).await.body,
        png(1, 0, 1)
    );
    assert_eq!(
        get(&router, "/world/ocularis/0/5/1", &[]).await.body,
        png(3, 5, 6)
    );
    assert_eq!(
        get(&router, "/world/MapServer/tile/2/0/3", &[]).await.body,
        png(2, 3, 3)
    );
}

#[tokio::test]
async fn etag_and_304() {
    let (_dir, path) = raster_dir();
    let (_c, router) = app(&[&path], Config::default());
    let a = get(&router, "/world/2/1/1", &[]).await;
    let b = get(&router, "/world/2/1/2", &[]).await;
    let etag = a.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    assert_ne!(Some(etag.as_str()), b.header("etag"));
    assert_eq!(a.header("cache-control"), Some("no-cache"));
    let again = get(&router, "/world/2/1/1", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let weak = format!("\"zzz\", W/{etag}");
    let again = get(&router, "/world/2/1/1", &[("if-none-match", &weak)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let other = get(&router, "/world/2/1/1", &[("if-none-match", "\"nope\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
}

#[tokio::test]
async fn gzip_pbf_is_passed_through_or_gunzipped_never_recompressed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roads.mbtiles");
    fixtures::flat(
        &path,
        &[
            ("format", "pbf"),
            ("json", r#"{"vector_layers":[{"id":"roads","fields":{}}]}"#),
        ],
        &pyramid(2),
        gz_pbf,
    );
    let (_c, router) = app(&[&path], Config::default());
    let stored = gz_pbf(1, 1, 0);
    let gz = get(
        &router,
        "/roads/1/1/1.pbf",
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(gz.status, StatusCode::OK);
    assert_eq!(gz.body, stored, "the BLOB itself");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gz.header("content-type"),
        Some("application/vnd.mapbox-vector-tile")
    );
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    let plain = get(&router, "/roads/1/1/1.pbf", &[]).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    let mut want = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&stored[..]), &mut want).unwrap();
    assert_eq!(plain.body, want);
    let (e1, e2) = (gz.header("etag").unwrap(), plain.header("etag").unwrap());
    assert_ne!(e1, e2, "one strong ETag per encoding");
    // The gzip ETag does not validate the identity representation, nor the other way round.
    let cross = get(&router, "/roads/1/1/1.pbf", &[("if-none-match", e1)]).await;
    assert_eq!(cross.status, StatusCode::OK);
    let same = get(
        &router,
        "/roads/1/1/1.pbf",
        &[("if-none-match", e1), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    let refused = get(
        &router,
        "/roads/1/1/1.pbf",
        &[("accept-encoding", "gzip;q=0, *")],
    )
    .await;
    assert_eq!(refused.body, want);
    // The wrong extension for the tileset's format.
    assert_eq!(
        get(&router, "/roads/1/1/1.png", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // TileJSON carries the vector layers; info lists the tile's layers.
    let tj: serde_json::Value =
        serde_json::from_slice(&get(&router, "/roads.json", &[]).await.body).unwrap();
    assert_eq!(tj["vector_layers"][0]["id"], "roads");
    let info: serde_json::Value =
        serde_json::from_slice(&get(&router, "/roads/info/1/1/1", &[]).await.body).unwrap();
    assert_eq!(info["layers"][0]["name"], "layer-1-1-0");
    assert_eq!(info["gzip"], true);
}

#[tokio::test]
async fn status_codes_for_bad_and_missing() {
    let (_dir, path) = raster_dir();
    let (_c, router) = app(&[&path], Config::default());
    for (p, want) in [
        ("/world/4/0/0", StatusCode::NOT_FOUND), // valid, not in the file
        ("/world/2/4/0", StatusCode::BAD_REQUEST), // x beyond 2^z
        ("/world/31/0/0", StatusCode::BAD_REQUEST),
        ("/world/2/x/0", StatusCode::BAD_REQUEST),
        ("/world/2/1/-1", StatusCode::BAD_REQUEST),
        ("/world/ocularis/4/0/0", StatusCode::BAD_REQUEST), // above level maxzoom
        ("/world/MapServer/tile/1/2/0", StatusCode::BAD_REQUEST), // row 2 at zoom 1
        ("/nope/0/0/0", StatusCode::NOT_FOUND),
        ("/world/0/0", StatusCode::NOT_FOUND),
        ("/world/0/0/0.jpg", StatusCode::NOT_FOUND),
        ("/world/0/0/0.jpg%00", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(get(&router, p, &[]).await.status, want, "{p}");
    }
    assert_eq!(
        send(&router, "POST", "/world/0/0/0", &[]).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let head = send(&router, "HEAD", "/world/0/0/0", &[]).await;
    assert_eq!(head.status, StatusCode::OK);

    let mut cfg = Config::default();
    cfg.missing = MissingTile::NoContent;
    let (_c, router) = app(&[&path], cfg);
    assert_eq!(
        get(&router, "/world/4/0/0", &[]).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn tilejson_matches_the_metadata() {
    let (_dir, path) = raster_dir();
    let (_c, router) = app(&[&path], Config::default());
    let got = get(&router, "/world.json", &[("host", "127.0.0.1:9999")]).await;
    assert_eq!(got.header("content-type"), Some("application/json"));
    let tj: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(tj["tilejson"], "3.0.0");
    assert_eq!(tj["name"], "World");
    assert_eq!(tj["attribution"], "us");
    assert_eq!(
        tj["tiles"][0],
        "http://127.0.0.1:9999/world/{z}/{x}/{y}.png"
    );
    assert_eq!(
        (tj["minzoom"].as_u64(), tj["maxzoom"].as_u64()),
        (Some(0), Some(3))
    );
    assert!(tj.get("vector_layers").is_none());
    // A hostile Host header does not reach the JSON.
    let got = get(&router, "/world.json", &[("host", "a\"b")]).await;
    let tj: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(tj["tiles"][0], "http://localhost/world/{z}/{x}/{y}.png");
}

#[tokio::test]
async fn a_corrupt_file_disables_only_its_tileset() {
    let (dir, _path) = raster_dir();
    std::fs::write(
        dir.path().join("broken.mbtiles"),
        b"SQLite format 3\0garbage garbage",
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.mbtiles"), b"").unwrap();
    let (_c, router) = app(&[dir.path()], Config::default());
    let cat: serde_json::Value =
        serde_json::from_slice(&get(&router, "/", &[]).await.body).unwrap();
    let list = cat["tilesets"].as_array().unwrap();
    let by_id = |id: &str| list.iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(by_id("world")["state"], "ok");
    assert_eq!(by_id("world")["ocularis_maxzoom"], 3);
    assert_eq!(by_id("broken")["state"], "disabled");
    assert!(
        by_id("broken")["error"]
            .as_str()
            .unwrap()
            .contains("broken.mbtiles")
    );
    // An empty file is a valid empty SQLite database, but not MBTiles.
    assert_eq!(by_id("empty")["state"], "disabled");
    assert_eq!(
        get(&router, "/broken/0/0/0", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&router, "/world/0/0/0", &[]).await.status,
        StatusCode::OK
    );
    // The HTML catalog and the preview page.
    let html = get(&router, "/", &[("accept", "text/html")]).await;
    assert!(
        String::from_utf8(html.body)
            .unwrap()
            .contains("/world/preview")
    );
    let page = String::from_utf8(get(&router, "/world/preview", &[]).await.body).unwrap();
    assert!(page.contains("\"ocularis_maxzoom\":3"), "config injected");
    assert!(!page.contains("/*CONFIG*/"));
}

#[tokio::test]
async fn a_locked_file_gives_503_then_recovers() {
    let (_dir, path) = raster_dir();
    let (_c, router) = app(&[&path], Config::default());
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let got = get(&router, "/world/0/0/0", &[]).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.header("retry-after"), Some("1"));
    writer.execute_batch("COMMIT").unwrap();
    assert_eq!(
        get(&router, "/world/0/0/0", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cors_policies() {
    let (_dir, path) = raster_dir();
    let (_c, router) = app(&[&path], Config::default());
    let got = get(&router, "/world/0/0/0", &[("origin", "http://vms.local")]).await;
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    let pre = send(
        &router,
        "OPTIONS",
        "/world/0/0/0",
        &[
            ("origin", "http://vms.local"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert!(
        pre.header("access-control-allow-methods")
            .unwrap()
            .contains("GET")
    );

    let mut cfg = Config::default();
    cfg.cors = Cors::Origins(vec!["http://vms.local".into()]);
    cfg.cache_control = Some("public, max-age=60".into());
    let (_c, router) = app(&[&path], cfg);
    let ok = get(&router, "/world/0/0/0", &[("origin", "http://vms.local")]).await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://vms.local")
    );
    assert_eq!(ok.header("cache-control"), Some("public, max-age=60"));
    let no = get(&router, "/world/0/0/0", &[("origin", "http://evil.local")]).await;
    assert_eq!(no.header("access-control-allow-origin"), None);
    assert!(
        no.headers
            .get_all(header::VARY)
            .iter()
            .any(|v| v == "Origin")
    );

    let mut cfg = Config::default();
    cfg.cors = Cors::None;
    let (_c, router) = app(&[&path], cfg);
    let none = get(&router, "/world/0/0/0", &[("origin", "http://vms.local")]).await;
    assert_eq!(none.header("access-control-allow-origin"), None);
}

/// Replace a file by rename while requests run: every request succeeds, and after the next
/// refresh the new file is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_file_is_reloaded_with_no_failed_request() {
    let (dir, path) = raster_dir();
    let (catalog, router) = app(&[dir.path()], Config::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            let mut seen_v2 = false;
            // Bounded: at most 200,000 requests even if the stop flag never comes.
            while n < 200_000 && !(stop.load(std::sync::atomic::Ordering::SeqCst) && seen_v2) {
                let got = get(&router, "/world/1/0/0", &[]).await;
                assert_eq!(got.status, StatusCode::OK, "request {n}");
                seen_v2 |= got.body.ends_with(b"v2");
                n += 1;
                tokio::task::yield_now().await;
            }
            (n, seen_v2)
        })
    };
    for round in 0..5 {
        let tmp = dir.path().join(format!("world.mbtiles.tmp{round}"));
        fixtures::flat(
            &tmp,
            &[("format", "png"), ("name", "v2")],
            &pyramid(3),
            |z, x, y| {
                let mut v = png(z, x, y);
                v.extend_from_slice(b"v2");
                v
            },
        );
        std::fs::rename(&tmp, &path).unwrap();
        let c = catalog.clone();
        tokio::task::spawn_blocking(move || c.refresh().unwrap())
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (n, seen_v2) = load.await.unwrap();
    assert!(seen_v2, "the new file was served after {n} requests");
    let cat = catalog.get("world").unwrap();
    assert_eq!(
        cat.state.as_ref().unwrap().tiles.metadata().name.as_deref(),
        Some("v2")
    );
}

#[tokio::test]
async fn a_file_edited_in_place_and_new_files_are_picked_up() {
    let (dir, path) = raster_dir();
    let (catalog, router) = app(&[dir.path()], Config::default());
    assert_eq!(
        get(&router, "/world/4/0/0", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let w = rusqlite::Connection::open(&path).unwrap();
    w.execute("INSERT INTO tiles VALUES (4, 0, 15, ?1)", [png(4, 0, 15)])
        .unwrap();
    drop(w);
    // Tiles are read live; the refresh picks up the new zoom range for Ocularis.
    assert_eq!(get(&router, "/world/4/0/0", &[]).await.body, png(4, 0, 15));
    let changes = catalog.refresh().unwrap();
    assert!(
        matches!(
            &changes[..],
            [nvrkit_mbtiles::catalog::Change::Opened { reloaded: true, .. }]
        ),
        "{changes:?}"
    );
    assert_eq!(
        get(&router, "/world/ocularis/0/0/0", &[]).await.body,
        png(4, 0, 15)
    );

    fixtures::flat(
        &dir.path().join("second.mbtiles"),
        &[("format", "png")],
        &pyramid(0),
        png,
    );
    catalog.refresh().unwrap();
    assert_eq!(
        get(&router, "/second/0/0/0", &[]).await.status,
        StatusCode::OK
    );
    std::fs::remove_file(dir.path().join("second.mbtiles")).unwrap();
    catalog.refresh().unwrap();
    assert_eq!(
        get(&router, "/second/0/0/0", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn works_mounted_under_a_prefix() {
    let (_dir, path) = raster_dir();
    let (_c, router) = app(&[&path], Config::default());
    let outer = axum::Router::new().nest_service("/tiles", router);
    let got = get(&outer, "/tiles/world/1/0/0.png", &[]).await;
    assert_eq!(got.body, png(1, 0, 1));
    let page = String::from_utf8(get(&outer, "/tiles/world/preview", &[]).await.body).unwrap();
    assert!(page.contains(r#""base":".""#) && page.contains(r#""tilejson":"../world.json""#));
}

#[tokio::test]
async fn metadata_cannot_inject_script_into_the_preview() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.mbtiles");
    let name = "</script><script>alert(1)</script><!--";
    fixtures::flat(
        &path,
        &[("format", "png"), ("name", name)],
        &pyramid(0),
        png,
    );
    let (_c, router) = app(&[&path], Config::default());
    let page = String::from_utf8(get(&router, "/evil/preview", &[]).await.body).unwrap();
    assert_eq!(page.matches("</script>").count(), 1, "only the page's own");
    assert!(!page.contains("<!--"));
    assert!(page.contains(r"\u003c/script>\u003cscript>alert(1)"));
}

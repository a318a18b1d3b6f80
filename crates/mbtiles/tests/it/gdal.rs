//! Interop with real peers (run by `.ci/run` with `-- --ignored`): MBTiles files made by GDAL
//! (`testdata/make-gdal.sh`), BLOBs read back by the `sqlite3` shell, tiles fetched by `curl`
//! over a real socket. A missing peer fails these tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nvrkit_mbtiles::http::Config;
use nvrkit_mbtiles::{SchemeKind, TileId};

use crate::app;

fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is missing: install gdal-bin, sqlite3 and curl (see .ci/run)"
    );
}

fn run(cmd: &mut Command) -> Vec<u8> {
    // GDAL's WMS/WMTS driver caches tiles in ./gdalwmscache by default: keep it out of the tree
    // (and out of the next run's reads).
    let cache = std::env::temp_dir().join(format!("nvrkit-gdalwmscache-{}", std::process::id()));
    cmd.env("GDAL_DEFAULT_WMS_CACHE_PATH", &cache);
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Makes the GDAL files once per test binary run.
fn gdal_files() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        for tool in [
            "gdal_create",
            "gdal_translate",
            "gdaladdo",
            "gdal_rasterize",
            "ogr2ogr",
            "sqlite3",
            "curl",
        ] {
            need(tool);
        }
        // Under target/tmp: remade on every run, never left in /tmp.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mbtiles-gdal");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/make-gdal.sh");
        run(Command::new("bash").arg(script).arg(&dir));
        dir
    })
}

/// `(z, x, y_tms) → BLOB` as the sqlite3 shell reads it.
fn sqlite_tiles(file: &Path) -> BTreeMap<(i64, i64, i64), Vec<u8>> {
    let out = run(Command::new("sqlite3").arg("-readonly").arg(file).arg(
        "SELECT zoom_level, tile_column, tile_row, hex(tile_data) FROM tiles ORDER BY 1, 2, 3",
    ));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let hex = f[3];
            let data = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (
                (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                ),
                data,
            )
        })
        .collect()
}

fn sqlite_metadata(file: &Path) -> BTreeMap<String, String> {
    // `json` spans lines: read each value as hex.
    let out = run(Command::new("sqlite3")
        .arg("-readonly")
        .arg(file)
        .arg("SELECT name, hex(value) FROM metadata"));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, hex) = l.split_once('|').unwrap();
            let v: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (k.to_string(), String::from_utf8(v).unwrap())
        })
        .collect()
}

/// Fetches every URL with one curl process; returns `(status, content type, content encoding)`
/// per URL and leaves the bodies in `dir/<i>`.
fn curl_all(urls: &[String], headers: &[&str], dir: &Path) -> Vec<(u16, String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut config = String::new();
    for (i, u) in urls.iter().enumerate() {
        writeln!(
            config,
            "url = \"{u}\"\noutput = \"{}\"",
            dir.join(i.to_string()).display()
        )
        .unwrap();
    }
    let cfg = dir.join("curl.cfg");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-K"]).arg(&cfg).args([
        "-w",
        "%{http_code} %{content_type} %header{content-encoding}\\n",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = String::from_utf8(run(&mut cmd)).unwrap();
    let rows: Vec<(u16, String, String)> = out
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap_or_default().to_string(),
                f.next().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(rows.len(), urls.len());
    rows
}

fn curl_bytes(args: &[&str]) -> Vec<u8> {
    run(Command::new("curl").arg("-s").args(args))
}

fn curl_one(args: &[&str]) -> String {
    String::from_utf8(curl_bytes(args)).unwrap()
}

/// Serves `dir` on 127.0.0.1:0 from a thread with its own runtime; returns the base URL.
fn serve(dir: &Path) -> String {
    let (_catalog, router) = app(&[dir], Config::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
    out
}

fn check_file(base: &str, id: &str, file: &Path, content_type: &str, gzip: bool) {
    let stored = sqlite_tiles(file);
    assert!(stored.len() > 20, "{id}: {} tiles", stored.len());
    let meta = sqlite_metadata(file);
    let maxzoom = stored.keys().map(|k| k.0).max().unwrap() as u8;
    let scratch = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for scheme in SchemeKind::ALL {
        let mut urls = Vec::new();
        let mut want = Vec::new();
        for (&(z, x, y), blob) in &stored {
            // GDAL 3.6's vector writer stores edge tiles outside the grid (tile_row -1,
            // tile_column 2^z); no scheme can address them.
            let Ok(t) = TileId::new(z as u32, x as u32, y as u32) else {
                continue;
            };
            let [a, b, c] = scheme.coord_of(t, maxzoom).unwrap();
            urls.push(match scheme {
                SchemeKind::Xyz => format!("{base}/{id}/{a}/{b}/{c}"),
                SchemeKind::Tms => format!("{base}/{id}/tms/{a}/{b}/{c}"),
                SchemeKind::Ocularis => format!("{base}/{id}/ocularis/{a}/{b}/{c}"),
                _ => format!("{base}/{id}/MapServer/tile/{a}/{b}/{c}"),
            });
            want.push(blob);
        }
        let passes: &[(&[&str], bool)] = if gzip {
            &[(&[], false), (&["Accept-Encoding: gzip"], true)]
        } else {
            &[(&[], false)]
        };
        for (i, &(headers, gz_out)) in passes.iter().enumerate() {
            let dir = scratch.path().join(format!("{}-{i}", scheme.name()));
            let got = curl_all(&urls, headers, &dir);
            for (j, (status, ctype, enc)) in got.iter().enumerate() {
                assert_eq!(*status, 200, "{}", urls[j]);
                assert_eq!(ctype, content_type, "{}", urls[j]);
                let body = std::fs::read(dir.join(j.to_string())).unwrap();
                if gzip && !gz_out {
                    assert_eq!(enc, "", "{}", urls[j]);
                    assert_eq!(body, gunzip(want[j]), "{}", urls[j]);
                } else {
                    assert_eq!(enc, if gz_out { "gzip" } else { "" }, "{}", urls[j]);
                    assert_eq!(&body, want[j], "{}: not the BLOB sqlite3 returns", urls[j]);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0);

    // TileJSON against the metadata table.
    let tj: serde_json::Value =
        serde_json::from_str(&curl_one(&[&format!("{base}/{id}.json")])).unwrap();
    assert_eq!(tj["tilejson"], "3.0.0");
    assert_eq!(tj["name"].as_str(), meta.get("name").map(String::as_str));
    assert_eq!(tj["minzoom"].to_string(), meta["minzoom"]);
    assert_eq!(tj["maxzoom"].to_string(), meta["maxzoom"]);
    let bounds: Vec<f64> = meta["bounds"]
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let tj_bounds: Vec<f64> = tj["bounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(tj_bounds, bounds);
    assert_eq!(
        tj["format"].as_str(),
        meta.get("format").map(String::as_str)
    );
    if let Some(json) = meta.get("json") {
        let json: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(tj["vector_layers"], json["vector_layers"]);
        assert!(tj["vector_layers"].as_array().unwrap().len() >= 2);
    }
}

#[test]
#[ignore = "interop: needs gdal-bin, sqlite3 and curl (run by .ci/run)"]
fn gdal_raster_and_vector_tiles_match_sqlite3_over_every_scheme() {
    let dir = gdal_files();
    let base = serve(dir);
    check_file(
        &base,
        "raster-png",
        &dir.join("raster-png.mbtiles"),
        "image/png",
        false,
    );
    check_file(
        &base,
        "raster-jpeg",
        &dir.join("raster-jpeg.mbtiles"),
        "image/jpeg",
        false,
    );
    check_file(
        &base,
        "vector",
        &dir.join("vector.mbtiles"),
        "application/vnd.mapbox-vector-tile",
        true,
    );
}

#[test]
#[ignore = "interop: needs gdal-bin, sqlite3 and curl (run by .ci/run)"]
fn curl_sees_etag_304_gzip_404_400() {
    let dir = gdal_files();
    let base = serve(dir);
    let url = format!("{base}/vector/0/0/0");
    // ETag, then 304 with it, per encoding.
    let head = curl_one(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Accept-Encoding: gzip",
        &url,
    ]);
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag header")
        .trim()
        .to_string();
    assert!(
        head.lines().any(|l| l.trim() == "vary: Accept-Encoding"),
        "{head}"
    );
    assert!(
        head.lines().any(|l| l.trim() == "content-encoding: gzip"),
        "{head}"
    );
    let inm = format!("If-None-Match: {etag}");
    let code = |args: &[&str]| {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(args);
        curl_one(&a)
    };
    assert_eq!(
        code(&["-H", &inm, "-H", "Accept-Encoding: gzip", &url]),
        "304"
    );
    assert_eq!(
        code(&["-H", &inm, &url]),
        "200",
        "the gzip ETag must not match the identity body"
    );
    // `--compressed` makes curl ask for gzip and decode it: the result equals the plain body.
    let plain = curl_bytes(&[&url]);
    let decoded = curl_bytes(&["--compressed", &url]);
    assert!(!plain.is_empty());
    assert_eq!(plain, decoded);
    assert_eq!(
        code(&[&format!("{base}/vector/3/0/0")]),
        "404",
        "in range, no tile (ocean)"
    );
    assert_eq!(code(&[&format!("{base}/raster-png/9/0/0")]), "404");
    assert_eq!(code(&[&format!("{base}/raster-png/2/4/0")]), "400");
    assert_eq!(code(&[&format!("{base}/raster-png/2/1/zz")]), "400");
    assert_eq!(code(&[&format!("{base}/raster-png/ocularis/4/0/0")]), "400");
    assert_eq!(code(&[&format!("{base}/nope/0/0/0")]), "404");
    assert_eq!(code(&["-X", "DELETE", &url]), "405");
}

/// `gdalinfo -checksum` of a GeoTIFF, one checksum per band.
fn checksums(tif: &Path) -> Vec<String> {
    let out = String::from_utf8(run(Command::new("gdalinfo").arg("-checksum").arg(tif))).unwrap();
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Checksum="))
        .map(str::to_string)
        .collect()
}

/// The "done when" for WMTS: GDAL opens the capabilities of each GDAL-made raster file,
/// and a tile-aligned 2 × 2-tile window read through WMTS (both tile matrix sets, the deepest
/// zoom and an overview zoom) has the checksums of the same window read from the file by GDAL's
/// MBTiles driver.
#[test]
#[ignore = "interop: needs gdal-bin and curl (run by .ci/run)"]
fn gdal_reads_wmts_and_its_2x2_tile_windows_match_the_mbtiles_driver() {
    need("gdalinfo");
    let dir = gdal_files();
    let base = serve(dir);
    let scratch = tempfile::tempdir().unwrap();
    for id in ["raster-png", "raster-jpeg"] {
        let caps = format!("WMTS:{base}/{id}/WMTSCapabilities.xml");
        let info = String::from_utf8(run(Command::new("gdalinfo").arg(&caps))).unwrap();
        assert!(info.contains("Driver: WMTS/"), "{info}");
        assert!(info.contains("Size is 2048, 2048"), "{info}");
        assert!(
            info.contains("tilematrixset=GoogleMapsCompatible-3"),
            "{info}"
        );
        assert!(info.contains("tilematrixset=Ocularis-3"), "{info}");
        let file = dir.join(format!("{id}.mbtiles"));
        // (zoom, window in pixels of that zoom): tiles (2..4, 2..4) at zoom 3, (1..3, 1..3) at 2.
        for (zoom, off) in [(3, "512"), (2, "256")] {
            let want_tif = scratch.path().join(format!("{id}-{zoom}-mbtiles.tif"));
            run(Command::new("gdal_translate")
                .args(["-q", "-oo", &format!("ZOOM_LEVEL={zoom}")])
                .args(["-srcwin", off, off, "512", "512"])
                .arg(&file)
                .arg(&want_tif));
            let want = checksums(&want_tif);
            assert_eq!(want.len(), 4, "{id}: RGBA");
            for set in ["GoogleMapsCompatible-3", "Ocularis-3"] {
                let got_tif = scratch.path().join(format!("{id}-{zoom}-{set}.tif"));
                run(Command::new("gdal_translate")
                    .args(["-q", "-srcwin", off, off, "512", "512"])
                    .arg(format!("{caps},tilematrixset={set},zoom_level={zoom}"))
                    .arg(&got_tif));
                assert_eq!(checksums(&got_tif), want, "{id} zoom {zoom} via {set}");
            }
        }
    }
    // The vector tileset is no WMTS layer; the catalog-wide document lists the two rasters.
    let all = curl_one(&[&format!("{base}/WMTSCapabilities.xml")]);
    assert_eq!(all.matches("<Layer>").count(), 2, "{all}");
    let info = String::from_utf8(run(
        Command::new("gdalinfo").arg(format!("WMTS:{base}/WMTSCapabilities.xml"))
    ))
    .unwrap();
    assert!(
        info.contains("layer=raster-jpeg") && info.contains("layer=raster-png"),
        "{info}"
    );
    // KVP GetTile is the same tile as the RESTful and XYZ URLs.
    let kvp = curl_bytes(&[&format!(
        "{base}/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=raster-png&STYLE=default\
         &TILEMATRIXSET=GoogleMapsCompatible-3&TILEMATRIX=3&TILEROW=2&TILECOL=5&FORMAT=image%2Fpng"
    )]);
    assert_eq!(kvp, curl_bytes(&[&format!("{base}/raster-png/3/5/2.png")]));
    assert_eq!(
        kvp,
        curl_bytes(&[&format!("{base}/raster-png/wmts/Ocularis-3/0/2/5.png")])
    );
}

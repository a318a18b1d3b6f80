//! WMTS through the router: capabilities, KVP and RESTful GetTile, OWS exceptions.

use axum::http::StatusCode;
use nvrkit_mbtiles::http::Config;
use nvrkit_mbtiles::{SchemeKind, TileId};

use crate::app;
use crate::fixtures::{self, png, pyramid};
use crate::http::get;

fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fixtures::flat(
        &dir.path().join("world.mbtiles"),
        &[
            ("name", "World <b>&</b>"),
            ("format", "png"),
            ("description", "]]> <!-- \u{7}"),
        ],
        &pyramid(3),
        png,
    );
    fixtures::flat(
        &dir.path().join("roads.mbtiles"),
        &[("format", "pbf")],
        &pyramid(1),
        fixtures::gz_pbf,
    );
    // A floor plan in one corner: zooms 0..=2 but only the north-east quarter's tiles.
    fixtures::flat(
        &dir.path().join("floor.mbtiles"),
        &[("format", "png"), ("bounds", "10,10,170,80")],
        &[(0, 0, 0), (1, 1, 1), (2, 2, 2), (2, 3, 3)],
        png,
    );
    dir
}

fn xml(body: &[u8]) -> String {
    // Well-formed: quick-xml reads it to the end without an error.
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut r = quick_xml::Reader::from_str(&text);
    loop {
        match r.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not XML: {e}\n{text}"),
        }
    }
    text
}

#[tokio::test]
async fn capabilities_list_the_raster_tilesets_with_their_matrix_sets_escaped() {
    let d = dir();
    let (_c, router) = app(&[d.path()], Config::default());
    let got = get(&router, "/WMTSCapabilities.xml", &[("host", "h:1")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-type"), Some("application/xml"));
    let doc = xml(&got.body);
    assert_eq!(doc.matches("<Layer>").count(), 2, "{doc}");
    assert!(
        !doc.contains("roads"),
        "vector tilesets are not WMTS layers"
    );
    assert!(
        doc.contains("<ows:Title>World &lt;b&gt;&amp;&lt;/b&gt;</ows:Title>"),
        "{doc}"
    );
    assert!(doc.contains("]]&gt; &lt;!-- \u{fffd}"), "{doc}");
    for id in [
        "GoogleMapsCompatible-3",
        "Ocularis-3",
        "GoogleMapsCompatible-2",
        "Ocularis-2",
    ] {
        assert!(
            doc.contains(&format!("<TileMatrixSet>{id}</TileMatrixSet>")),
            "{id}"
        );
    }
    assert!(doc.contains(
        "template=\"http://h:1/world/wmts/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}.png\""
    ));
    // The floor plan's extent is widened to whole tiles of zoom 2: the north-east quarter.
    let half = nvrkit_mbtiles::wmts::HALF_WORLD;
    let floor = doc
        .split("<ows:Identifier>floor</ows:Identifier>")
        .next()
        .unwrap();
    let floor = floor.rsplit("<Layer>").next().unwrap();
    assert!(
        floor.contains(&format!("<ows:LowerCorner>0 0</ows:LowerCorner>\n        <ows:UpperCorner>{half} {half}</ows:UpperCorner>")),
        "{floor}"
    );
    // Its tile matrix limits: at zoom 2 rows 0..=1 (from the north) and columns 2..=3, in
    // both sets (Ocularis level 0 is zoom 2).
    let links = doc
        .split("<ows:Identifier>floor</ows:Identifier>")
        .nth(1)
        .unwrap();
    let links = links.split("</Layer>").next().unwrap();
    let flat: String = links.split_whitespace().collect();
    for (set, matrix) in [("GoogleMapsCompatible-2", 2), ("Ocularis-2", 0)] {
        let link = flat
            .split(&format!("<TileMatrixSet>{set}</TileMatrixSet>"))
            .nth(1)
            .unwrap();
        let link = link.split("</TileMatrixSetLink>").next().unwrap();
        assert!(
            link.contains(&format!(
                "<TileMatrix>{matrix}</TileMatrix><MinTileRow>0</MinTileRow><MaxTileRow>1</MaxTileRow>\
                 <MinTileCol>2</MinTileCol><MaxTileCol>3</MaxTileCol>"
            )),
            "{set}: {link}"
        );
    }
    // The catalog links each raster tileset's capabilities.
    let cat: serde_json::Value =
        serde_json::from_slice(&get(&router, "/", &[("host", "h:1")]).await.body).unwrap();
    let wmts: Vec<&str> = cat["tilesets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["wmts"].as_str())
        .collect();
    assert_eq!(
        wmts,
        [
            "http://h:1/floor/WMTSCapabilities.xml",
            "http://h:1/world/WMTSCapabilities.xml"
        ]
    );
    let html = get(&router, "/", &[("accept", "text/html")]).await.body;
    assert!(
        String::from_utf8(html)
            .unwrap()
            .contains("/world/WMTSCapabilities.xml\">WMTS</a>")
    );
    // One tileset's document, the KVP GetCapabilities, and the 404s.
    let one = xml(&get(&router, "/world/WMTSCapabilities.xml", &[]).await.body);
    assert_eq!(one.matches("<Layer>").count(), 1);
    assert!(!one.contains("Ocularis-2"));
    let kvp = get(
        &router,
        "/wmts?service=wmts&request=GetCapabilities",
        &[("host", "h:1")],
    )
    .await;
    assert_eq!(kvp.body, got.body);
    assert_eq!(
        get(&router, "/roads/WMTSCapabilities.xml", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&router, "/nope/WMTSCapabilities.xml", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn kvp_and_restful_get_tile_serve_the_stored_tile_in_both_matrix_sets() {
    let d = dir();
    let (_c, router) = app(&[d.path()], Config::default());
    for (z, x, y) in pyramid(3) {
        let t = TileId::new(z, x, y).unwrap();
        let [_, row, col] = SchemeKind::ArcGis.coord_of(t, 3).unwrap();
        let level = 3 - z;
        for path in [
            format!("/world/wmts/GoogleMapsCompatible-3/{z}/{row}/{col}.png"),
            format!("/world/wmts/GoogleMapsCompatible/{z}/{row}/{col}"),
            format!("/world/wmts/Ocularis-3/{level}/{row}/{col}.png"),
            format!(
                "/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=world&STYLE=default\
                 &TILEMATRIXSET=GoogleMapsCompatible-3&TILEMATRIX={z}&TILEROW={row}&TILECOL={col}\
                 &FORMAT=image%2Fpng"
            ),
            format!(
                "/wmts?request=GetTile&layer=world&tilematrixset=Ocularis-3&tilematrix={level}\
                 &tilerow={row}&tilecol={col}"
            ),
        ] {
            let got = get(&router, &path, &[]).await;
            assert_eq!(got.status, StatusCode::OK, "{path}");
            assert_eq!(got.body, png(z, x, y), "{path}");
        }
    }
    // Spelled out: the north-west tile of zoom 1 is stored at TMS row 1.
    let nw = get(&router, "/world/wmts/Ocularis-3/2/0/0.png", &[]).await;
    assert_eq!(nw.body, png(1, 0, 1));
    // In range, not stored: the missing-tile answer, which GDAL reads as an empty tile.
    let missing = get(&router, "/floor/wmts/GoogleMapsCompatible-2/2/3/0.png", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for (path, want) in [
        (
            "/world/wmts/GoogleMapsCompatible-2/0/0/0.png",
            StatusCode::NOT_FOUND,
        ),
        ("/world/wmts/Ocularis-5/0/0/0.png", StatusCode::NOT_FOUND),
        ("/world/wmts/EPSG:4326/0/0/0.png", StatusCode::NOT_FOUND),
        (
            "/roads/wmts/GoogleMapsCompatible-1/0/0/0",
            StatusCode::NOT_FOUND,
        ),
        (
            "/world/wmts/GoogleMapsCompatible-3/0/0/0.jpg",
            StatusCode::NOT_FOUND,
        ),
        (
            "/world/wmts/GoogleMapsCompatible-3/4/0/0.png",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/world/wmts/GoogleMapsCompatible-3/2/4/0.png",
            StatusCode::BAD_REQUEST,
        ),
        ("/world/wmts/Ocularis-3/4/0/0.png", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(get(&router, path, &[]).await.status, want, "{path}");
    }
}

#[tokio::test]
async fn kvp_errors_are_ows_exception_reports() {
    let d = dir();
    let (_c, router) = app(&[d.path()], Config::default());
    let tile = "REQUEST=GetTile&LAYER=world&TILEMATRIXSET=GoogleMapsCompatible-3";
    for (query, status, code, locator) in [
        ("SERVICE=WMTS", 400, "MissingParameterValue", "REQUEST"),
        (
            "SERVICE=WMS&REQUEST=GetCapabilities",
            400,
            "InvalidParameterValue",
            "SERVICE",
        ),
        (
            "REQUEST=GetFeatureInfo",
            501,
            "OperationNotSupported",
            "REQUEST",
        ),
        (
            "REQUEST=GetTile&TILEMATRIX=0",
            400,
            "MissingParameterValue",
            "LAYER",
        ),
        (
            "REQUEST=GetTile&LAYER=nope",
            400,
            "InvalidParameterValue",
            "LAYER",
        ),
        (
            &format!("{tile}&TILEMATRIX=0&TILEROW=0"),
            400,
            "MissingParameterValue",
            "TILECOL",
        ),
        (
            &format!("{tile}&TILEMATRIX=0&TILEROW=-1&TILECOL=0"),
            400,
            "InvalidParameterValue",
            "TILEROW",
        ),
        (
            &format!("{tile}&TILEMATRIX=1&TILEROW=2&TILECOL=0"),
            400,
            "TileOutOfRange",
            "TILEROW",
        ),
        (
            &format!("{tile}&TILEMATRIX=1&TILEROW=0&TILECOL=9"),
            400,
            "TileOutOfRange",
            "TILECOL",
        ),
        (
            &format!("{tile}&TILEMATRIX=9&TILEROW=0&TILECOL=0"),
            400,
            "TileOutOfRange",
            "TILEMATRIX",
        ),
        (
            &format!("{tile}&TILEMATRIX=0&TILEROW=0&TILECOL=0&FORMAT=image/jpeg"),
            400,
            "InvalidParameterValue",
            "FORMAT",
        ),
        (
            "REQUEST=GetTile&LAYER=world&TILEMATRIXSET=Ocularis-9&TILEMATRIX=0&TILEROW=0&TILECOL=0",
            400,
            "InvalidParameterValue",
            "TILEMATRIXSET",
        ),
        (
            "REQUEST=GetTile&LAYER=roads&TILEMATRIXSET=Ocularis-1&TILEMATRIX=0&TILEROW=0&TILECOL=0",
            400,
            "InvalidParameterValue",
            "LAYER",
        ),
        (
            "REQUEST=GetTile&LAYER=%00",
            400,
            "InvalidParameterValue",
            "LAYER",
        ),
    ] {
        let got = get(&router, &format!("/wmts?{query}"), &[]).await;
        assert_eq!(got.status.as_u16(), status, "{query}");
        assert_eq!(
            got.header("content-type"),
            Some("application/xml"),
            "{query}"
        );
        let doc = xml(&got.body);
        assert!(
            doc.contains(&format!("exceptionCode=\"{code}\" locator=\"{locator}\"")),
            "{query}: {doc}"
        );
    }
}

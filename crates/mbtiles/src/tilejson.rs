//! [TileJSON 3.0.0](https://github.com/mapbox/tilejson-spec/tree/master/3.0.0) for a tileset.

use serde_json::{Map, Value, json};

use crate::catalog::Tileset;
use crate::route::encode;
use crate::scheme::SchemeKind;

/// The URL template of a tileset's tiles in one scheme, under `base` (`http://host:port`, no
/// trailing slash). The placeholders are `{z}`, `{x}`, `{y}` as map clients expect; for Ocularis
/// `{z}` stands for the level, and for ArcGIS the order is `{z}/{y}/{x}`.
pub fn template(base: &str, id: &str, scheme: SchemeKind, ext: &str) -> String {
    let id = encode(id);
    match scheme {
        SchemeKind::Xyz => format!("{base}/{id}/{{z}}/{{x}}/{{y}}.{ext}"),
        SchemeKind::Tms => format!("{base}/{id}/tms/{{z}}/{{x}}/{{y}}.{ext}"),
        SchemeKind::Ocularis => format!("{base}/{id}/ocularis/{{z}}/{{x}}/{{y}}.{ext}"),
        SchemeKind::ArcGis => format!("{base}/{id}/MapServer/tile/{{z}}/{{y}}/{{x}}"),
    }
}

/// The URL template of a tileset's UTFGrids in one scheme: the tile template with `.grid.json`
/// as the extension (ArcGIS too).
pub fn grid_template(base: &str, id: &str, scheme: SchemeKind) -> String {
    let t = template(base, id, scheme, "");
    format!(
        "{}{}",
        t.strip_suffix('.').unwrap_or(&t),
        crate::route::GRID_EXT
    )
}

/// The TileJSON document of a tileset, with XYZ tile URLs under `base`.
///
/// `vector_layers` is required by TileJSON 3.0 for vector tilesets; it is copied from the
/// MBTiles `json` row, or an empty list when the file has none.
pub fn tilejson(t: &Tileset, base: &str) -> Value {
    let m = t.tiles.metadata();
    let format = t.tiles.format();
    let mut o = Map::new();
    o.insert("tilejson".into(), json!("3.0.0"));
    o.insert(
        "tiles".into(),
        json!([template(base, &t.id, SchemeKind::Xyz, format.extension())]),
    );
    o.insert(
        "name".into(),
        json!(m.name.clone().unwrap_or_else(|| t.id.clone())),
    );
    for (k, v) in [
        ("description", &m.description),
        ("attribution", &m.attribution),
        ("version", &m.version),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), json!(v));
        }
    }
    if t.tiles.has_grids() {
        o.insert(
            "grids".into(),
            json!([grid_template(base, &t.id, SchemeKind::Xyz)]),
        );
    }
    o.insert("scheme".into(), json!("xyz"));
    if let Some(z) = m.minzoom {
        o.insert("minzoom".into(), json!(z));
    }
    if let Some(z) = m.maxzoom {
        o.insert("maxzoom".into(), json!(z));
    }
    if let Some(b) = m.bounds {
        o.insert("bounds".into(), json!(b));
    }
    if let Some(c) = m.center {
        o.insert("center".into(), json!(c));
    }
    if format == crate::TileFormat::Pbf {
        o.insert(
            "vector_layers".into(),
            m.vector_layers.clone().unwrap_or_else(|| json!([])),
        );
    }
    // Not in TileJSON, but what clients need to pick a renderer; martin and tileserver-gl add it.
    o.insert("format".into(), json!(format.extension()));
    Value::Object(o)
}

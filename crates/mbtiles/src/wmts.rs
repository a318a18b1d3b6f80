//! [OGC WMTS 1.0.0] for the raster tilesets: the capabilities document GIS clients (QGIS, ArcGIS,
//! GDAL) add a layer from, and the tile matrix sets that map its requests to stored tiles.
//!
//! Two tile matrix sets per tileset, both in EPSG:3857 with 256-pixel tiles:
//!
//! - `GoogleMapsCompatible-{Z}`: OGC's well-known GoogleMapsCompatible scale set, matrices `0`
//!   to `Z` (the tileset's deepest zoom), so `{TileMatrix}/{TileRow}/{TileCol}` is XYZ's
//!   `z/y/x` (row from the north): the ArcGIS order of [`crate::scheme`];
//! - `Ocularis-{Z}`: the same grids with Ocularis level numbers as matrix identifiers (`0` the
//!   most detailed, `Z` = the tileset's Ocularis `maxzoom`), listed coarsest first as WMTS wants.
//!
//! The zoom is part of the identifier because a client reads the last matrix of a set as the
//! full resolution (GDAL does): one set for every tileset would send it to zooms a file does not
//! have. A set named without `-{Z}` (`GoogleMapsCompatible`, `Ocularis`) is accepted in requests
//! too. The document is written with `quick-xml`, which escapes every name and title taken from
//! a file's metadata; characters XML 1.0 cannot carry at all (control characters) become U+FFFD.
//!
//! [OGC WMTS 1.0.0]: https://portal.ogc.org/files/?artifact_id=35326

use std::io::Write;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::catalog::Tileset;
use crate::format::TileFormat;
use crate::route::{GOOGLE_MAPS_COMPATIBLE, OCULARIS_MATRIX_SET, encode};
use crate::scheme::MAX_ZOOM;

/// Half the width of the EPSG:3857 square in metres (`π · 6378137`).
pub const HALF_WORLD: f64 = 20_037_508.342_789_244;

/// The scale denominator of zoom 0 in the GoogleMapsCompatible set (WMTS 1.0.0 annex E.4):
/// 156,543.03… m per pixel over the standard 0.28 mm pixel.
pub const SCALE_ZOOM_0: f64 = 559_082_264.028_717_8;

/// The CRS of both tile matrix sets, spelled the same in `SupportedCRS` and in the layers'
/// `BoundingBox` (GDAL matches the two as strings).
pub const CRS: &str = "urn:ogc:def:crs:EPSG::3857";

/// The two kinds of tile matrix set served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixSetKind {
    /// Matrix `z`, XYZ zooms.
    GoogleMapsCompatible,
    /// Matrix = Ocularis level.
    Ocularis,
}

/// A tile matrix set named in a request or a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixSet {
    /// Which numbering.
    pub kind: MatrixSetKind,
    /// The deepest zoom (GoogleMapsCompatible) or the Ocularis `maxzoom` in the identifier;
    /// `None` for the bare name.
    pub maxzoom: Option<u8>,
}

impl MatrixSet {
    /// Parses an identifier: `GoogleMapsCompatible`, `GoogleMapsCompatible-5`, `Ocularis`,
    /// `Ocularis-5` (exact case, zoom at most [`MAX_ZOOM`]).
    ///
    /// ```
    /// use nvrkit_mbtiles::wmts::{MatrixSet, MatrixSetKind};
    /// let s = MatrixSet::parse("Ocularis-5").unwrap();
    /// assert_eq!((s.kind, s.maxzoom), (MatrixSetKind::Ocularis, Some(5)));
    /// assert_eq!(s.identifier(), "Ocularis-5");
    /// assert!(MatrixSet::parse("GoogleMapsCompatible-31").is_none());
    /// assert!(MatrixSet::parse("EPSG:4326").is_none());
    /// ```
    pub fn parse(id: &str) -> Option<MatrixSet> {
        let (name, zoom) = match id.split_once('-') {
            Some((name, z)) => {
                let ok = !z.is_empty() && z.len() <= 2 && z.bytes().all(|b| b.is_ascii_digit());
                let z: u8 = z.parse().ok().filter(|&z| ok && z <= MAX_ZOOM)?;
                (name, Some(z))
            }
            None => (id, None),
        };
        let kind = match name {
            GOOGLE_MAPS_COMPATIBLE => MatrixSetKind::GoogleMapsCompatible,
            OCULARIS_MATRIX_SET => MatrixSetKind::Ocularis,
            _ => return None,
        };
        Some(MatrixSet {
            kind,
            maxzoom: zoom,
        })
    }

    /// The identifier, as written in documents and URLs.
    pub fn identifier(self) -> String {
        let name = match self.kind {
            MatrixSetKind::GoogleMapsCompatible => GOOGLE_MAPS_COMPATIBLE,
            MatrixSetKind::Ocularis => OCULARIS_MATRIX_SET,
        };
        match self.maxzoom {
            Some(z) => format!("{name}-{z}"),
            None => name.to_string(),
        }
    }
}

/// What the capabilities say of one tileset.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The tileset id: the layer's `ows:Identifier` and the first segment of its URLs.
    pub id: String,
    /// `ows:Title`: the `name` metadata, else the id.
    pub title: String,
    /// `ows:Abstract`: the `description` metadata.
    pub description: Option<String>,
    /// The tile format (a raster one).
    pub format: TileFormat,
    /// West, south, east, north in degrees.
    pub bounds: [f64; 4],
    /// The deepest zoom with tiles: the last matrix of `GoogleMapsCompatible-{maxzoom}`.
    pub maxzoom: u8,
    /// The zoom of Ocularis level 0: the `Ocularis-{ocularis_maxzoom}` set.
    pub ocularis_maxzoom: u8,
}

impl Layer {
    /// The layer of a tileset, or `None` for a vector one (WMTS serves images).
    pub fn of(t: &Tileset) -> Option<Layer> {
        let format = t.tiles.format();
        if !format.is_raster() {
            return None;
        }
        let m = t.tiles.metadata();
        let maxzoom = t
            .tiles
            .zoom_range()
            .map(|(_, hi)| hi)
            .or(m.maxzoom)
            .unwrap_or(0);
        Some(Layer {
            id: t.id.clone(),
            title: m.name.clone().unwrap_or_else(|| t.id.clone()),
            description: m.description.clone(),
            format,
            bounds: m.bounds.unwrap_or([-180.0, -MAX_LAT, 180.0, MAX_LAT]),
            maxzoom,
            ocularis_maxzoom: t.ocularis_maxzoom,
        })
    }

    /// The two tile matrix sets of this layer.
    pub fn matrix_sets(&self) -> [MatrixSet; 2] {
        [
            MatrixSet {
                kind: MatrixSetKind::GoogleMapsCompatible,
                maxzoom: Some(self.maxzoom),
            },
            MatrixSet {
                kind: MatrixSetKind::Ocularis,
                maxzoom: Some(self.ocularis_maxzoom),
            },
        ]
    }

    /// Whether a request's matrix set belongs to this layer (a bare name always does).
    pub fn has_matrix_set(&self, s: MatrixSet) -> bool {
        s.maxzoom.is_none() || self.matrix_sets().contains(&s)
    }
}

/// The northmost latitude of Web Mercator (the square's edge), in degrees.
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// `bounds` (degrees) in EPSG:3857 metres, widened to whole tiles of zoom `z`: what a client
/// should read as the layer's extent, so its pixels fall on the tile grid.
///
/// ```
/// use nvrkit_mbtiles::wmts::{tile_aligned_extent, HALF_WORLD};
/// let e = tile_aligned_extent([-180.0, -85.06, 180.0, 85.06], 3);
/// assert_eq!(e, [-HALF_WORLD, -HALF_WORLD, HALF_WORLD, HALF_WORLD]);
/// let e = tile_aligned_extent([1.0, 1.0, 2.0, 2.0], 1);
/// assert_eq!(e, [0.0, 0.0, HALF_WORLD, HALF_WORLD]);
/// ```
pub fn tile_aligned_extent(bounds: [f64; 4], z: u8) -> [f64; 4] {
    let (tile, [x0, y0, x1, y1]) = tile_span(bounds, z);
    let at = |i: u32| f64::from(i) * tile - HALF_WORLD;
    [at(x0), at(y0), at(x1), at(y1)]
}

/// The tiles of zoom `z` that `bounds` (degrees) touch, as a WMTS `TileMatrixLimits`:
/// `[min_row, max_row, min_col, max_col]`, rows from the north, inclusive.
///
/// ```
/// use nvrkit_mbtiles::wmts::tile_limits;
/// assert_eq!(tile_limits([-180.0, -85.06, 180.0, 85.06], 2), [0, 3, 0, 3]);
/// // The north-east quarter of the world, at zoom 2: rows 0..=1, columns 2..=3.
/// assert_eq!(tile_limits([10.0, 10.0, 170.0, 80.0], 2), [0, 1, 2, 3]);
/// ```
pub fn tile_limits(bounds: [f64; 4], z: u8) -> [u32; 4] {
    let n = 1u32 << z.min(MAX_ZOOM);
    let (_, [x0, y0, x1, y1]) = tile_span(bounds, z);
    [n - y1, n - 1 - y0, x0, x1 - 1]
}

/// The tile size at `z` in metres, and the tiles `bounds` touch as `[west, south, east, north]`
/// edge indices counted from the west and the south (`west < east`, `south < north`).
fn tile_span(bounds: [f64; 4], z: u8) -> (f64, [u32; 4]) {
    let n = 1u32 << z.min(MAX_ZOOM);
    let nf = f64::from(n);
    let tile = 2.0 * HALF_WORLD / nf;
    let x = |lon: f64| lon.clamp(-180.0, 180.0) / 180.0 * HALF_WORLD;
    let y = |lat: f64| {
        let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
        (std::f64::consts::FRAC_PI_4 + lat / 2.0).tan().ln() * HALF_WORLD / std::f64::consts::PI
    };
    // The tolerance keeps an edge that is a tile boundary up to rounding (GDAL's
    // ±85.0511287798 bounds) from taking one tile more.
    const EPS: f64 = 1e-6;
    let lo = |v: f64| (((v + HALF_WORLD) / tile + EPS).floor()).clamp(0.0, nf - 1.0) as u32;
    let hi = |v: f64, lo: u32| {
        (((v + HALF_WORLD) / tile - EPS).ceil()).clamp(f64::from(lo + 1), nf) as u32
    };
    let [w, s, e, north] = bounds;
    let (x0, y0) = (lo(x(w)), lo(y(s)));
    (tile, [x0, y0, hi(x(e), x0), hi(y(north), y0)])
}

/// Replaces what XML 1.0 cannot carry even escaped (control characters but tab, LF and CR;
/// U+FFFE, U+FFFF) with U+FFFD.
pub fn xml_text(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    if s.chars().any(bad) {
        s.chars()
            .map(|c| if bad(c) { '\u{fffd}' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

type W = Writer<Vec<u8>>;

fn text(w: &mut W, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(&xml_text(value)))?;
    Ok(())
}

fn start() -> std::io::Result<W> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    Ok(w)
}

/// The capabilities document of `layers` (`base`: `http://host:port`, no trailing slash): one
/// `Layer` each with its two tile matrix sets, RESTful `ResourceURL`s and KVP `GetTile` at
/// `{base}/wmts`. Sets shared by several layers are written once.
pub fn capabilities(base: &str, layers: &[Layer]) -> std::io::Result<Vec<u8>> {
    let mut w = start()?;
    let kvp = format!("{base}/wmts?");
    w.create_element("Capabilities")
        .with_attributes([
            ("xmlns", "http://www.opengis.net/wmts/1.0"),
            ("xmlns:ows", "http://www.opengis.net/ows/1.1"),
            ("xmlns:xlink", "http://www.w3.org/1999/xlink"),
            ("version", "1.0.0"),
        ])
        .write_inner_content(|w| {
            w.create_element("ows:ServiceIdentification")
                .write_inner_content(|w| {
                    text(w, "ows:Title", "tileserve")?;
                    text(w, "ows:ServiceType", "OGC WMTS")?;
                    text(w, "ows:ServiceTypeVersion", "1.0.0")
                })?;
            w.create_element("ows:OperationsMetadata")
                .write_inner_content(|w| {
                    for op in ["GetCapabilities", "GetTile"] {
                        operation(w, op, &kvp)?;
                    }
                    Ok(())
                })?;
            w.create_element("Contents").write_inner_content(|w| {
                for l in layers {
                    layer(w, base, l)?;
                }
                let mut sets: Vec<MatrixSet> = layers.iter().flat_map(Layer::matrix_sets).collect();
                sets.sort_by_key(|s| (s.kind == MatrixSetKind::Ocularis, s.maxzoom));
                sets.dedup();
                for s in sets {
                    matrix_set(w, s)?;
                }
                Ok(())
            })?;
            w.create_element("ServiceMetadataURL")
                .with_attribute((
                    "xlink:href",
                    format!("{base}/WMTSCapabilities.xml").as_str(),
                ))
                .write_empty()?;
            Ok(())
        })?;
    Ok(w.into_inner())
}

fn operation(w: &mut W, name: &str, kvp: &str) -> std::io::Result<()> {
    w.create_element("ows:Operation")
        .with_attribute(("name", name))
        .write_inner_content(|w| {
            w.create_element("ows:DCP").write_inner_content(|w| {
                w.create_element("ows:HTTP").write_inner_content(|w| {
                    w.create_element("ows:Get")
                        .with_attribute(("xlink:href", kvp))
                        .write_inner_content(|w| {
                            w.create_element("ows:Constraint")
                                .with_attribute(("name", "GetEncoding"))
                                .write_inner_content(|w| {
                                    w.create_element("ows:AllowedValues")
                                        .write_inner_content(|w| text(w, "ows:Value", "KVP"))?;
                                    Ok(())
                                })?;
                            Ok(())
                        })?;
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok(())
        })?;
    Ok(())
}

fn corner(v: [f64; 2]) -> String {
    format!("{} {}", v[0], v[1])
}

fn layer(w: &mut W, base: &str, l: &Layer) -> std::io::Result<()> {
    let ctype = l.format.content_type();
    let extent = tile_aligned_extent(l.bounds, l.maxzoom);
    let template = format!(
        "{base}/{}/wmts/{{TileMatrixSet}}/{{TileMatrix}}/{{TileRow}}/{{TileCol}}.{}",
        encode(&l.id),
        l.format.extension()
    );
    w.create_element("Layer").write_inner_content(|w| {
        text(w, "ows:Title", &l.title)?;
        if let Some(d) = &l.description {
            text(w, "ows:Abstract", d)?;
        }
        let [west, south, east, north] = l.bounds;
        w.create_element("ows:WGS84BoundingBox")
            .write_inner_content(|w| {
                text(
                    w,
                    "ows:LowerCorner",
                    &corner([west.max(-180.0), south.max(-MAX_LAT)]),
                )?;
                text(
                    w,
                    "ows:UpperCorner",
                    &corner([east.min(180.0), north.min(MAX_LAT)]),
                )
            })?;
        w.create_element("ows:BoundingBox")
            .with_attribute(("crs", CRS))
            .write_inner_content(|w| {
                text(w, "ows:LowerCorner", &corner([extent[0], extent[1]]))?;
                text(w, "ows:UpperCorner", &corner([extent[2], extent[3]]))
            })?;
        text(w, "ows:Identifier", &l.id)?;
        w.create_element("Style")
            .with_attribute(("isDefault", "true"))
            .write_inner_content(|w| text(w, "ows:Identifier", "default"))?;
        text(w, "Format", ctype)?;
        for s in l.matrix_sets() {
            w.create_element("TileMatrixSetLink")
                .write_inner_content(|w| {
                    text(w, "TileMatrixSet", &s.identifier())?;
                    limits(w, l, s)
                })?;
        }
        w.create_element("ResourceURL")
            .with_attributes([
                ("format", ctype),
                ("resourceType", "tile"),
                ("template", template.as_str()),
            ])
            .write_empty()?;
        Ok(())
    })?;
    Ok(())
}

/// The tiles of each matrix the layer's bounds touch, so a client asks for no tile outside them.
fn limits(w: &mut W, l: &Layer, s: MatrixSet) -> std::io::Result<()> {
    let top = s.maxzoom.unwrap_or(0);
    w.create_element("TileMatrixSetLimits")
        .write_inner_content(|w| {
            for z in 0..=top {
                let [r0, r1, c0, c1] = tile_limits(l.bounds, z);
                w.create_element("TileMatrixLimits")
                    .write_inner_content(|w| {
                        text(w, "TileMatrix", &matrix_id(s.kind, top, z).to_string())?;
                        text(w, "MinTileRow", &r0.to_string())?;
                        text(w, "MaxTileRow", &r1.to_string())?;
                        text(w, "MinTileCol", &c0.to_string())?;
                        text(w, "MaxTileCol", &c1.to_string())
                    })?;
            }
            Ok(())
        })?;
    Ok(())
}

/// The identifier of zoom `z`'s matrix in a set whose deepest zoom is `top`.
fn matrix_id(kind: MatrixSetKind, top: u8, z: u8) -> u8 {
    match kind {
        MatrixSetKind::GoogleMapsCompatible => z,
        MatrixSetKind::Ocularis => top - z,
    }
}

fn matrix_set(w: &mut W, s: MatrixSet) -> std::io::Result<()> {
    let top = s.maxzoom.unwrap_or(0);
    w.create_element("TileMatrixSet").write_inner_content(|w| {
        text(w, "ows:Identifier", &s.identifier())?;
        w.create_element("ows:BoundingBox")
            .with_attribute(("crs", CRS))
            .write_inner_content(|w| {
                text(w, "ows:LowerCorner", &corner([-HALF_WORLD, -HALF_WORLD]))?;
                text(w, "ows:UpperCorner", &corner([HALF_WORLD, HALF_WORLD]))
            })?;
        text(w, "ows:SupportedCRS", CRS)?;
        if s.kind == MatrixSetKind::GoogleMapsCompatible {
            text(
                w,
                "WellKnownScaleSet",
                "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible",
            )?;
        }
        // Coarsest first in both sets: zoom 0 is GoogleMapsCompatible's matrix 0 and Ocularis'
        // level `top`.
        for z in 0..=top {
            let id = matrix_id(s.kind, top, z);
            let n = (1u64 << z).to_string();
            w.create_element("TileMatrix").write_inner_content(|w| {
                text(w, "ows:Identifier", &id.to_string())?;
                text(
                    w,
                    "ScaleDenominator",
                    &(SCALE_ZOOM_0 / f64::from(1u32 << z)).to_string(),
                )?;
                text(w, "TopLeftCorner", &corner([-HALF_WORLD, HALF_WORLD]))?;
                text(w, "TileWidth", "256")?;
                text(w, "TileHeight", "256")?;
                text(w, "MatrixWidth", &n)?;
                text(w, "MatrixHeight", &n)
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

/// An OWS 1.1 `ExceptionReport` (WMTS 1.0.0 §8.3.3): `code` is `MissingParameterValue`,
/// `InvalidParameterValue`, `TileOutOfRange`, `OperationNotSupported`…, `locator` the parameter.
pub fn exception(code: &str, locator: Option<&str>, message: &str) -> std::io::Result<Vec<u8>> {
    let mut w = start()?;
    w.create_element("ows:ExceptionReport")
        .with_attributes([
            ("xmlns:ows", "http://www.opengis.net/ows/1.1"),
            ("version", "1.1.0"),
            ("xml:lang", "en"),
        ])
        .write_inner_content(|w| {
            let mut e = w
                .create_element("ows:Exception")
                .with_attribute(("exceptionCode", code));
            if let Some(l) = locator {
                e = e.with_attribute(("locator", xml_text(l).as_ref()));
            }
            e.write_inner_content(|w| text(w, "ows:ExceptionText", message))?;
            Ok(())
        })?;
    let mut out = w.into_inner();
    out.write_all(b"\n")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(id: &str, title: &str) -> Layer {
        Layer {
            id: id.into(),
            title: title.into(),
            description: Some("a <b> & \"c\"\u{1}".into()),
            format: TileFormat::Png,
            bounds: [-180.0, -MAX_LAT, 180.0, MAX_LAT],
            maxzoom: 3,
            ocularis_maxzoom: 3,
        }
    }

    #[test]
    fn untrusted_names_and_titles_are_escaped() {
        let doc = capabilities(
            "http://h:1",
            &[layer("a&b<c>\"", "</ows:Title><script>x</script>")],
        )
        .unwrap();
        let doc = String::from_utf8(doc).unwrap();
        assert!(!doc.contains("<script>"), "{doc}");
        assert!(doc.contains("&lt;/ows:Title&gt;&lt;script&gt;"), "{doc}");
        assert!(
            doc.contains("<ows:Identifier>a&amp;b&lt;c&gt;&quot;</ows:Identifier>"),
            "{doc}"
        );
        // In the URL template the id is percent-encoded, then `&` escaped for the attribute.
        assert!(
            doc.contains("template=\"http://h:1/a&amp;b%3Cc%3E%22/wmts/"),
            "{doc}"
        );
        assert!(
            doc.contains("a &lt;b&gt; &amp; &quot;c&quot;\u{fffd}"),
            "{doc}"
        );
        assert!(!doc.contains('\u{1}'));
    }

    #[test]
    fn sets_are_shared_and_ordered_coarsest_first() {
        let mut deep = layer("deep", "Deep");
        deep.maxzoom = 5;
        deep.ocularis_maxzoom = 5;
        let doc = capabilities("http://h", &[layer("a", "A"), layer("b", "B"), deep]).unwrap();
        let doc = String::from_utf8(doc).unwrap();
        for id in [
            "GoogleMapsCompatible-3",
            "GoogleMapsCompatible-5",
            "Ocularis-3",
            "Ocularis-5",
        ] {
            let def = format!("<TileMatrixSet>\n      <ows:Identifier>{id}</ows:Identifier>");
            assert_eq!(doc.matches(&def).count(), 1, "{id}: {doc}");
        }
        let ocularis = doc
            .split("<ows:Identifier>Ocularis-3</ows:Identifier>")
            .nth(1)
            .unwrap();
        let levels: Vec<&str> = ocularis
            .split("<TileMatrix>")
            .skip(1)
            .take(4)
            .map(|m| {
                m.split("<ows:Identifier>")
                    .nth(1)
                    .unwrap()
                    .split('<')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(levels, ["3", "2", "1", "0"]);
        assert!(doc.contains("<ScaleDenominator>559082264.0287178</ScaleDenominator>"));
        assert!(doc.contains("<ScaleDenominator>69885283.00358972</ScaleDenominator>"));
    }

    #[test]
    fn matrix_set_names() {
        for id in [
            "GoogleMapsCompatible",
            "GoogleMapsCompatible-0",
            "Ocularis-30",
            "Ocularis",
        ] {
            assert_eq!(MatrixSet::parse(id).unwrap().identifier(), id);
        }
        for id in [
            "",
            "googlemapscompatible",
            "Ocularis-",
            "Ocularis-031",
            "Ocularis-+1",
            "Ocularis-99",
            "X-1",
        ] {
            assert!(MatrixSet::parse(id).is_none(), "{id}");
        }
    }

    #[test]
    fn exception_report_escapes_its_locator() {
        let e = String::from_utf8(
            exception("InvalidParameterValue", Some("<x>"), "bad & worse").unwrap(),
        )
        .unwrap();
        assert!(
            e.contains("exceptionCode=\"InvalidParameterValue\" locator=\"&lt;x&gt;\""),
            "{e}"
        );
        assert!(e.contains("bad &amp; worse"), "{e}");
    }
}

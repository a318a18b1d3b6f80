//! Request paths: a pure parser from the URL path to a [`Route`], so the whole URL grammar is in
//! one place, unit-tested and fuzzed (`fuzz/fuzz_targets/mbtiles_request.rs`).
//!
//! | path | route |
//! | --- | --- |
//! | `/` | [`Route::Catalog`] |
//! | `/{tileset}.json` | [`Route::TileJson`] (TileJSON 3.0) |
//! | `/{tileset}/preview` | [`Route::Preview`] (HTML map) |
//! | `/{tileset}/{z}/{x}/{y}[.ext]` | [`Route::Tile`], XYZ |
//! | `/{tileset}/tms/{z}/{x}/{y}[.ext]` | [`Route::Tile`], TMS |
//! | `/{tileset}/ocularis/{level}/{x}/{y}[.ext]` | [`Route::Tile`], Ocularis |
//! | `/{tileset}/MapServer/tile/{z}/{y}/{x}` | [`Route::Tile`], ArcGIS (`MapServer` in any case) |
//! | `/{tileset}/info/{z}/{x}/{y}` | [`Route::TileInfo`]: size and vector layers of an XYZ tile |
//! | any tile path above with `.grid.json` as its extension | [`Route::Grid`]: the tile's UTFGrid (`?callback=` for JSONP) |
//! | `/WMTSCapabilities.xml` | [`Route::WmtsCapabilities`] of every raster tileset |
//! | `/{tileset}/WMTSCapabilities.xml` | [`Route::WmtsCapabilities`] of one |
//! | `/wmts?SERVICE=WMTS&REQUEST=…` | [`Route::WmtsKvp`]: WMTS key-value requests (the query is read by the server) |
//! | `/{tileset}/cameras.geojson` | [`Route::Cameras`]: the cameras on the tileset (`tileserve --cameras`) |
//! | `/{tileset}/cameras/{z}/{x}/{y}.pbf` | [`Route::CameraTile`]: the same as a vector tile layer (XYZ; `.mvt` too) |
//! | `/{tileset}/wmts/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}[.ext]` | [`Route::WmtsTile`]: `GoogleMapsCompatible-{Z}` (XYZ zoom) or `Ocularis-{Z}` (level) |
//!
//! `{tileset}` is percent-decoded. A path of the right shape with a malformed or out-of-range
//! number is [`RouteError::BadRequest`] (400); any other path is [`RouteError::NotFound`] (404).

use std::borrow::Cow;

use crate::scheme::SchemeKind;

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route<'a> {
    /// The catalog of tilesets.
    Catalog,
    /// A tileset's TileJSON.
    TileJson {
        /// Tileset id.
        tileset: Cow<'a, str>,
    },
    /// A tileset's HTML preview page.
    Preview {
        /// Tileset id.
        tileset: Cow<'a, str>,
    },
    /// One tile.
    Tile {
        /// Tileset id.
        tileset: Cow<'a, str>,
        /// The scheme the numbers are in.
        scheme: SchemeKind,
        /// The three numbers in URL order (see [`SchemeKind::to_tile`]).
        nums: [u32; 3],
        /// The extension of the last segment, without the dot (`png`), if any.
        ext: Option<&'a str>,
    },
    /// The UTFGrid of one tile.
    Grid {
        /// Tileset id.
        tileset: Cow<'a, str>,
        /// The scheme the numbers are in.
        scheme: SchemeKind,
        /// The three numbers in URL order (see [`SchemeKind::to_tile`]).
        nums: [u32; 3],
    },
    /// WMTS capabilities: of every raster tileset (`None`) or of one.
    WmtsCapabilities {
        /// Tileset id, for one tileset's document.
        tileset: Option<Cow<'a, str>>,
    },
    /// A WMTS RESTful tile: `{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}`.
    WmtsTile {
        /// Tileset id (the layer).
        tileset: Cow<'a, str>,
        /// The tile matrix set's identifier (see [`crate::wmts::MatrixSet::parse`]).
        matrix_set: Cow<'a, str>,
        /// Tile matrix, row (from the north), column.
        nums: [u32; 3],
        /// The extension, if any.
        ext: Option<&'a str>,
    },
    /// A WMTS key-value request at `/wmts` (`GetCapabilities`, `GetTile`): the query string says
    /// which.
    WmtsKvp,
    /// The cameras drawn on a tileset, as GeoJSON.
    Cameras {
        /// Tileset id.
        tileset: Cow<'a, str>,
    },
    /// The cameras drawn on a tileset, as a vector tile (XYZ address).
    CameraTile {
        /// Tileset id.
        tileset: Cow<'a, str>,
        /// `z`, `x`, `y` (XYZ).
        nums: [u32; 3],
    },
    /// Size and layers of one tile, by XYZ address.
    TileInfo {
        /// Tileset id.
        tileset: Cow<'a, str>,
        /// `z`, `x`, `y` (XYZ).
        nums: [u32; 3],
    },
}

/// Why a path names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No route has this shape.
    #[error("no such path")]
    NotFound,
    /// The shape is right but a part is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// Parses a URL path (without the query string).
///
/// ```
/// use nvrkit_mbtiles::{route::{parse, Route}, SchemeKind};
/// let r = parse("/world/ocularis/0/3/1.png").unwrap();
/// assert_eq!(r, Route::Tile { tileset: "world".into(), scheme: SchemeKind::Ocularis, nums: [0, 3, 1], ext: Some("png") });
/// assert!(parse("/world/1/2/x.png").is_err());
/// ```
pub fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    let rest = match path.strip_prefix('/') {
        Some("") => return Ok(Route::Catalog),
        Some(rest) => rest,
        None => return Err(RouteError::NotFound),
    };
    let mut segs = rest.split('/');
    let first = segs.next().unwrap_or_default();
    let segs: Vec<&str> = segs.collect();
    if segs.is_empty() {
        match first {
            WMTS_CAPABILITIES => return Ok(Route::WmtsCapabilities { tileset: None }),
            "wmts" => return Ok(Route::WmtsKvp),
            _ => {}
        }
        return match first.strip_suffix(".json") {
            Some(id) if !id.is_empty() => Ok(Route::TileJson {
                tileset: decode(id)?,
            }),
            _ => Err(RouteError::NotFound),
        };
    }
    if first.is_empty() {
        return Err(RouteError::NotFound);
    }
    let tileset = || decode(first);
    match segs.as_slice() {
        ["preview"] => Ok(Route::Preview {
            tileset: tileset()?,
        }),
        [z, x, y] => tile(tileset()?, SchemeKind::Xyz, [z, x, y]),
        ["tms", z, x, y] => tile(tileset()?, SchemeKind::Tms, [z, x, y]),
        ["ocularis", level, x, y] => tile(tileset()?, SchemeKind::Ocularis, [level, x, y]),
        [ms, "tile", z, row, col] if ms.eq_ignore_ascii_case("mapserver") => {
            tile(tileset()?, SchemeKind::ArcGis, [z, row, col])
        }
        [WMTS_CAPABILITIES] => Ok(Route::WmtsCapabilities {
            tileset: Some(tileset()?),
        }),
        ["wmts", set, m, row, col] => {
            let (nums, ext) = numbers([m, row, col])?;
            Ok(Route::WmtsTile {
                tileset: tileset()?,
                matrix_set: decode(set)?,
                nums,
                ext,
            })
        }
        ["cameras.geojson"] => Ok(Route::Cameras {
            tileset: tileset()?,
        }),
        ["cameras", z, x, y] => {
            let (nums, ext) = numbers([z, x, y])?;
            if !matches!(ext, Some("pbf" | "mvt")) {
                return Err(RouteError::NotFound);
            }
            Ok(Route::CameraTile {
                tileset: tileset()?,
                nums,
            })
        }
        ["info", z, x, y] => {
            let (nums, ext) = numbers([z, x, y])?;
            if ext.is_some() {
                return Err(RouteError::NotFound);
            }
            Ok(Route::TileInfo {
                tileset: tileset()?,
                nums,
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

/// The last segment of a WMTS capabilities URL.
pub const WMTS_CAPABILITIES: &str = "WMTSCapabilities.xml";
/// The WMTS name of the XYZ tile matrix sets (OGC's well-known `GoogleMapsCompatible`).
pub const GOOGLE_MAPS_COMPATIBLE: &str = "GoogleMapsCompatible";
/// The WMTS name of the tile matrix sets whose matrices are Ocularis levels.
pub const OCULARIS_MATRIX_SET: &str = "Ocularis";
/// The extension that turns a tile path into a UTFGrid path.
pub const GRID_EXT: &str = ".grid.json";

fn tile<'a>(
    tileset: Cow<'a, str>,
    scheme: SchemeKind,
    parts: [&&'a str; 3],
) -> Result<Route<'a>, RouteError> {
    if let Some(last) = parts[2].strip_suffix(GRID_EXT) {
        let (nums, ext) = numbers([parts[0], parts[1], &last])?;
        if ext.is_some() {
            return Err(bad(parts[2]));
        }
        return Ok(Route::Grid {
            tileset,
            scheme,
            nums,
        });
    }
    let (nums, ext) = numbers(parts)?;
    Ok(Route::Tile {
        tileset,
        scheme,
        nums,
        ext,
    })
}

fn numbers<'a>(parts: [&&'a str; 3]) -> Result<([u32; 3], Option<&'a str>), RouteError> {
    let (last, ext) = match parts[2].split_once('.') {
        Some((n, ext)) if !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            (n, Some(ext))
        }
        Some(_) => return Err(bad(parts[2])),
        None => (*parts[2], None),
    };
    let mut nums = [0u32; 3];
    for (n, s) in nums.iter_mut().zip([*parts[0], *parts[1], last]) {
        *n = number(s).ok_or_else(|| bad(s))?;
    }
    Ok((nums, ext))
}

fn bad(s: &str) -> RouteError {
    let shown: String = s.chars().take(32).collect();
    RouteError::BadRequest(format!("{shown:?} is not a tile number"))
}

/// A decimal number of at most 10 digits that fits a `u32`: no sign, no spaces.
pub fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Percent-decodes a path segment (RFC 3986 §2.1). Malformed escapes and non-UTF-8 results are a
/// 400; a decoded `/` or NUL is refused, since no tileset id holds one.
pub fn decode(seg: &str) -> Result<Cow<'_, str>, RouteError> {
    percent_decode(seg, false)
}

/// Percent-decodes a query-string key or value (`+` is a space, as in
/// `application/x-www-form-urlencoded`); an escaped `/` is allowed (`image%2Fpng`), NUL and
/// non-UTF-8 are refused as in [`decode`].
pub fn decode_query(s: &str) -> Result<Cow<'_, str>, RouteError> {
    percent_decode(s, true)
}

/// The most `key=value` pairs read from a query string (64); the rest are ignored.
pub const MAX_QUERY_PAIRS: usize = 64;

/// The value of the first query parameter named `name` (ASCII case-insensitive, as OGC KVP
/// requests want), decoded. Only the first [`MAX_QUERY_PAIRS`] pairs are looked at.
///
/// ```
/// use nvrkit_mbtiles::route::query_param;
/// let q = "service=WMTS&Request=GetTile&FORMAT=image%2Fpng&callback=a+b";
/// assert_eq!(query_param(Some(q), "REQUEST").unwrap().as_deref(), Some("GetTile"));
/// assert_eq!(query_param(Some(q), "format").unwrap().as_deref(), Some("image/png"));
/// assert_eq!(query_param(Some(q), "callback").unwrap().as_deref(), Some("a b"));
/// assert_eq!(query_param(None, "x").unwrap(), None);
/// ```
pub fn query_param<'q>(
    query: Option<&'q str>,
    name: &str,
) -> Result<Option<Cow<'q, str>>, RouteError> {
    for pair in query.unwrap_or_default().split('&').take(MAX_QUERY_PAIRS) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_query(k)?.eq_ignore_ascii_case(name) {
            return decode_query(v).map(Some);
        }
    }
    Ok(None)
}

fn percent_decode(seg: &str, plus_is_space: bool) -> Result<Cow<'_, str>, RouteError> {
    if !(seg.contains('%') || plus_is_space && seg.contains('+')) {
        return Ok(Cow::Borrowed(seg));
    }
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let v = match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h * 16 + l) as u8,
                _ => return Err(RouteError::BadRequest("malformed percent-escape".into())),
            };
            if (v == b'/' && !plus_is_space) || v == 0 {
                return Err(RouteError::BadRequest(
                    "escaped '/' or NUL in a tileset id".into(),
                ));
            }
            out.push(v);
            i += 3;
        } else if plus_is_space && b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| RouteError::BadRequest("tileset id is not UTF-8".into()))
}

/// Percent-encodes a tileset id for use as one path segment (the inverse of [`decode`]).
pub fn encode(id: &str) -> Cow<'_, str> {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
    if id.bytes().all(keep) {
        return Cow::Borrowed(id);
    }
    let mut s = String::with_capacity(id.len() * 3);
    for b in id.bytes() {
        if keep(b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(
        ts: &str,
        scheme: SchemeKind,
        nums: [u32; 3],
        ext: Option<&'static str>,
    ) -> Route<'static> {
        Route::Tile {
            tileset: Cow::Owned(ts.into()),
            scheme,
            nums,
            ext,
        }
    }

    #[test]
    fn table_of_paths() {
        use RouteError::*;
        use SchemeKind::*;
        let nf = Err(NotFound);
        let cases: Vec<(&str, Result<Route<'static>, RouteError>)> = vec![
            ("/", Ok(Route::Catalog)),
            ("", nf.clone()),
            (
                "/w.json",
                Ok(Route::TileJson {
                    tileset: "w".into(),
                }),
            ),
            ("/.json", nf.clone()),
            ("/w", nf.clone()),
            (
                "/w/preview",
                Ok(Route::Preview {
                    tileset: "w".into(),
                }),
            ),
            ("/w/1/0/1", Ok(t("w", Xyz, [1, 0, 1], None))),
            ("/w/1/0/1.png", Ok(t("w", Xyz, [1, 0, 1], Some("png")))),
            ("/w/tms/1/0/1.pbf", Ok(t("w", Tms, [1, 0, 1], Some("pbf")))),
            ("/w/ocularis/0/5/6", Ok(t("w", Ocularis, [0, 5, 6], None))),
            (
                "/w/MapServer/tile/3/2/1",
                Ok(t("w", ArcGis, [3, 2, 1], None)),
            ),
            (
                "/w/mapserver/tile/3/2/1",
                Ok(t("w", ArcGis, [3, 2, 1], None)),
            ),
            (
                "/w/info/3/2/1",
                Ok(Route::TileInfo {
                    tileset: "w".into(),
                    nums: [3, 2, 1],
                }),
            ),
            ("/my%20map/0/0/0", Ok(t("my map", Xyz, [0, 0, 0], None))),
            ("/w/1/0/1/", nf.clone()),
            ("//1/0/1", nf.clone()),
            ("/w/xyz/1/0/1", nf.clone()),
            ("/w/1/0", nf.clone()),
            (
                "/w/1/0/1.grid.json",
                Ok(Route::Grid {
                    tileset: "w".into(),
                    scheme: Xyz,
                    nums: [1, 0, 1],
                }),
            ),
            (
                "/w/ocularis/0/5/6.grid.json",
                Ok(Route::Grid {
                    tileset: "w".into(),
                    scheme: Ocularis,
                    nums: [0, 5, 6],
                }),
            ),
            (
                "/w/MapServer/tile/3/2/1.grid.json",
                Ok(Route::Grid {
                    tileset: "w".into(),
                    scheme: ArcGis,
                    nums: [3, 2, 1],
                }),
            ),
            (
                "/w/tms/3/2/1.grid.json",
                Ok(Route::Grid {
                    tileset: "w".into(),
                    scheme: Tms,
                    nums: [3, 2, 1],
                }),
            ),
            (
                "/WMTSCapabilities.xml",
                Ok(Route::WmtsCapabilities { tileset: None }),
            ),
            (
                "/w/WMTSCapabilities.xml",
                Ok(Route::WmtsCapabilities {
                    tileset: Some("w".into()),
                }),
            ),
            ("/wmts", Ok(Route::WmtsKvp)),
            (
                "/w/wmts/GoogleMapsCompatible-3/3/2/1.png",
                Ok(Route::WmtsTile {
                    tileset: "w".into(),
                    matrix_set: "GoogleMapsCompatible-3".into(),
                    nums: [3, 2, 1],
                    ext: Some("png"),
                }),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
        for path in [
            "/w/1/0/-1",
            "/w/1/0/+1",
            "/w/a/0/1",
            "/w/1/0/",
            "/w/99999999999/0/1",
            "/w/4294967296/0/1",
            "/w/1/0/1.",
            "/w/1/0/1.png.gz",
            "/w/1/ 0/1",
            "/%zz/0/0/0",
            "/a%2Fb/0/0/0",
            "/%ff/0/0/0",
            "/w/1/0/x.grid.json",
            "/w/1/0/.grid.json",
            "/w/1/0/1.png.grid.json",
            "/w/wmts/GoogleMapsCompatible/1/0/-1.png",
        ] {
            assert!(
                matches!(parse(path), Err(BadRequest(_))),
                "{path}: {:?}",
                parse(path)
            );
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(id in "\\PC{1,20}") {
            prop_assume!(!id.contains('/') && !id.contains('\0'));
            let enc = encode(&id);
            prop_assert!(!enc.contains('/'));
            prop_assert_eq!(decode(&enc).unwrap(), id.as_str());
        }

        #[test]
        fn parse_never_panics(path in "/[a-zA-Z0-9%./]{0,40}") {
            let _ = parse(&path);
        }
    }
}

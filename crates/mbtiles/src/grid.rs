//! [UTFGrid 1.3](https://github.com/mapbox/utfgrid-spec/blob/master/1.3/utfgrid.md): the
//! interactivity layer TileMill and mbutil store beside the image tiles.
//!
//! MBTiles 1.3 ("Grids") keeps them in two tables or views:
//!
//! - `grids (zoom_level, tile_column, tile_row, grid BLOB)`: the grid JSON (`grid` rows of
//!   code points, `keys`), zlib-compressed by mbutil and TileMill, gzip'd by some tools;
//! - `grid_data (zoom_level, tile_column, tile_row, key_name, key_json)`: the attributes of each
//!   key, one row per key per tile.
//!
//! TileMill writes views of those names over `map`, `grid_utfgrid`, `grid_key` and `keymap`;
//! mbutil writes plain tables. Both are read through the names `grids` and `grid_data`.
//!
//! The pure part is here, reachable without SQLite: [`inflate`] (zlib, gzip or plain JSON,
//! detected by the magic bytes, with an output cap) and [`assemble`] (the JSON served, with its
//! `data` member filled from `grid_data`). Both are bounded for untrusted files: a blob over
//! [`MAX_GRID_BYTES`] is refused before it is loaded, one that inflates past [`MAX_GRID_JSON`]
//! (a zip bomb) is cut there with [`GridError::TooLarge`], and only `grid` and `keys` are kept
//! from the parsed JSON, as borrowed slices (no tree of values is built from a file's claims).

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The largest stored grid BLOB read (16 MiB), checked with `octet_length` before loading.
pub const MAX_GRID_BYTES: u64 = 16 << 20;

/// The largest grid JSON accepted after inflating (16 MiB): a 256 × 256 grid of 4-byte code
/// points with 65,536 keys is under 1 MiB, so this refuses only bombs and junk.
pub const MAX_GRID_JSON: u64 = 16 << 20;

/// The most `grid_data` rows read for one tile (65,536: a 256 × 256 grid has at most that many
/// distinct keys).
pub const MAX_GRID_DATA_ROWS: usize = 65_536;

/// The most bytes of `grid_data` names and values read for one tile (16 MiB in all).
pub const MAX_GRID_DATA_BYTES: usize = 16 << 20;

/// The longest `key_name` read (1 KiB); a row with a longer one is left out.
pub const MAX_KEY_NAME: usize = 1024;

/// Why a stored grid cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    /// The BLOB is neither zlib nor gzip nor JSON.
    #[error("grid is not zlib, gzip or JSON (first bytes {0:02x?})")]
    UnknownEncoding(Vec<u8>),
    /// The zlib or gzip stream is damaged.
    #[error("grid: bad {encoding} data: {source}")]
    Inflate {
        /// `zlib` or `gzip`.
        encoding: &'static str,
        /// What the decoder said.
        #[source]
        source: std::io::Error,
    },
    /// The grid (stored, inflated, or its `grid_data`) is over a limit.
    #[error("grid: {what} over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The JSON is not a UTFGrid (not an object with `grid` and `keys` arrays).
    #[error("grid: not a UTFGrid: {0}")]
    NotUtfGrid(String),
}

/// How a grid BLOB is stored, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// zlib (RFC 1950): what mbutil and TileMill write.
    Zlib,
    /// gzip (RFC 1952).
    Gzip,
    /// JSON as is.
    Plain,
}

impl Encoding {
    /// The encoding of a stored grid, or `None` if it is none we read.
    ///
    /// ```
    /// use nvrkit_mbtiles::grid::Encoding;
    /// assert_eq!(Encoding::sniff(b"\x78\x9c..."), Some(Encoding::Zlib));
    /// assert_eq!(Encoding::sniff(b"\x1f\x8b\x08"), Some(Encoding::Gzip));
    /// assert_eq!(Encoding::sniff(b" {\"grid\":[]}"), Some(Encoding::Plain));
    /// assert_eq!(Encoding::sniff(b"\x89PNG"), None);
    /// ```
    pub fn sniff(data: &[u8]) -> Option<Encoding> {
        match data {
            [0x1f, 0x8b, ..] => Some(Encoding::Gzip),
            // RFC 1950 §2.2: CM = 8 (deflate), CINFO <= 7, and CMF·256 + FLG a multiple of 31.
            [cmf, flg, ..]
                if cmf & 0x0f == 8
                    && cmf >> 4 <= 7
                    && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0 =>
            {
                Some(Encoding::Zlib)
            }
            _ if data.trim_ascii_start().starts_with(b"{") => Some(Encoding::Plain),
            _ => None,
        }
    }
}

/// The grid JSON of a stored BLOB: inflated (zlib or gzip, by the magic bytes) or as is, at most
/// [`MAX_GRID_JSON`] bytes.
pub fn inflate(blob: &[u8]) -> Result<Vec<u8>, GridError> {
    let encoding = Encoding::sniff(blob)
        .ok_or_else(|| GridError::UnknownEncoding(blob.iter().take(4).copied().collect()))?;
    let (name, reader): (&'static str, Box<dyn Read + '_>) = match encoding {
        Encoding::Plain => {
            if blob.len() as u64 > MAX_GRID_JSON {
                return Err(too_large());
            }
            return Ok(blob.to_vec());
        }
        Encoding::Zlib => ("zlib", Box::new(flate2::read::ZlibDecoder::new(blob))),
        Encoding::Gzip => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(blob))),
    };
    let mut out = Vec::with_capacity(blob.len().saturating_mul(4).min(1 << 20));
    reader
        .take(MAX_GRID_JSON + 1)
        .read_to_end(&mut out)
        .map_err(|source| GridError::Inflate {
            encoding: name,
            source,
        })?;
    if out.len() as u64 > MAX_GRID_JSON {
        return Err(too_large());
    }
    Ok(out)
}

fn too_large() -> GridError {
    GridError::TooLarge {
        what: "grid JSON (inflated)",
        limit: MAX_GRID_JSON,
    }
}

/// The members of a stored grid we keep, borrowed from its JSON. Other members are skipped
/// without being built (serde's `IgnoredAny`).
#[derive(Deserialize)]
struct Parts<'a> {
    #[serde(borrow)]
    grid: &'a RawValue,
    #[serde(borrow)]
    keys: &'a RawValue,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    grid: &'a RawValue,
    keys: &'a RawValue,
    data: Data<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Rows(&'a BTreeMap<String, Box<RawValue>>),
    Stored(&'a RawValue),
}

/// The UTFGrid served: `grid` and `keys` from the grid JSON, `data` from the tile's `grid_data`
/// rows (`key_name` → `key_json`). With no rows, the grid's own `data` member is kept (some tools
/// store it inline), else `data` is `{}`. A `key_json` that is not JSON is left out.
///
/// ```
/// use nvrkit_mbtiles::grid::assemble;
/// let json = br#"{"grid":["  !!"],"keys":["","cam-1"]}"#;
/// let out = assemble(json, [("cam-1".to_string(), r#"{"id":1}"#.to_string())]).unwrap();
/// assert_eq!(out, br#"{"grid":["  !!"],"keys":["","cam-1"],"data":{"cam-1":{"id":1}}}"#);
/// ```
pub fn assemble(
    json: &[u8],
    rows: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<u8>, GridError> {
    let parts: Parts<'_> =
        serde_json::from_slice(json).map_err(|e| GridError::NotUtfGrid(e.to_string()))?;
    for (name, v) in [("grid", parts.grid), ("keys", parts.keys)] {
        if !v.get().starts_with('[') {
            return Err(GridError::NotUtfGrid(format!("`{name}` is not an array")));
        }
    }
    let mut data = BTreeMap::new();
    for (k, v) in rows {
        if let Ok(v) = RawValue::from_string(v) {
            data.entry(k).or_insert(v);
        }
    }
    let stored = parts.data.filter(|d| d.get().starts_with('{'));
    let out = Out {
        grid: parts.grid,
        keys: parts.keys,
        data: match stored {
            Some(d) if data.is_empty() => Data::Stored(d),
            _ => Data::Rows(&data),
        },
    };
    serde_json::to_vec(&out).map_err(|e| GridError::NotUtfGrid(e.to_string()))
}

/// Whether `name` is a safe JSONP callback: 1 to [`MAX_CALLBACK`] characters of
/// `[A-Za-z0-9_.$]`. Anything else could close the call and inject script (the response is
/// `application/javascript`), so the server answers 400 instead.
///
/// ```
/// use nvrkit_mbtiles::grid::valid_callback;
/// assert!(valid_callback("grid"));
/// assert!(valid_callback("jQuery_1.$cb"));
/// assert!(!valid_callback("alert(1)//"));
/// assert!(!valid_callback(""));
/// ```
pub fn valid_callback(name: &str) -> bool {
    (1..=MAX_CALLBACK).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.$".contains(&b))
}

/// The longest JSONP callback name accepted (128 bytes).
pub const MAX_CALLBACK: usize = 128;

/// Wraps JSON for JSONP: `/**/NAME(JSON);`. The leading comment keeps the body from starting
/// with bytes a plugin could read as another file type (the "Rosetta Flash" attack); `name`
/// must have passed [`valid_callback`].
pub fn jsonp(name: &str, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + name.len() + 8);
    out.extend_from_slice(b"/**/");
    out.extend_from_slice(name.as_bytes());
    out.push(b'(');
    out.extend_from_slice(json);
    out.extend_from_slice(b");");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    const GRID: &[u8] = br#"{"grid":["!! ","$$ "],"keys":["","a","b"],"data":{"a":{"x":0}}}"#;

    #[test]
    fn zlib_gzip_and_plain_inflate_to_the_same_json() {
        for blob in [zlib(GRID), gzip(GRID), GRID.to_vec()] {
            assert_eq!(inflate(&blob).unwrap(), GRID);
        }
        // Every zlib level python's zlib.compress can write (header 78 01 / 5e / 9c / da).
        for level in 0..=9 {
            let mut e =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(GRID).unwrap();
            let b = e.finish().unwrap();
            assert_eq!(Encoding::sniff(&b), Some(Encoding::Zlib), "level {level}");
        }
        assert!(matches!(
            inflate(b"\x89PNG\r\n"),
            Err(GridError::UnknownEncoding(_))
        ));
        assert!(matches!(
            inflate(&zlib(GRID)[..10]),
            Err(GridError::Inflate {
                encoding: "zlib",
                ..
            })
        ));
    }

    #[test]
    fn zip_bomb_in_a_grid_is_cut_at_the_cap() {
        // 64 MiB of spaces in a ~64 KiB zlib stream: read to the cap, then refused.
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b"{\"grid\":[\"").unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..64 {
            e.write_all(&chunk).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        let err = inflate(&bomb).unwrap_err();
        assert!(
            matches!(
                err,
                GridError::TooLarge {
                    limit: MAX_GRID_JSON,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("over the limit"), "{err}");
        for b in [
            gzip(&vec![b'{'; (MAX_GRID_JSON + 1) as usize]),
            vec![b'{'; (MAX_GRID_JSON + 1) as usize],
        ] {
            assert!(matches!(inflate(&b), Err(GridError::TooLarge { .. })));
        }
    }

    #[test]
    fn data_comes_from_the_rows_else_from_the_grid() {
        let out = assemble(
            GRID,
            [
                ("b".into(), r#"{"name":"B"}"#.into()),
                ("a".into(), "1".into()),
            ],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"], serde_json::json!({"a": 1, "b": {"name": "B"}}));
        assert_eq!(v["keys"], serde_json::json!(["", "a", "b"]));
        let out = assemble(GRID, []).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"], serde_json::json!({"a": {"x": 0}}));
        let out = assemble(
            br#"{"keys":[],"grid":[],"extra":[[[1]]]}"#,
            [("k".into(), "not json".into())],
        )
        .unwrap();
        assert_eq!(out, br#"{"grid":[],"keys":[],"data":{}}"#);
    }

    #[test]
    fn not_a_utfgrid_is_an_error() {
        for bad in [
            &b"[]"[..],
            b"{}",
            br#"{"grid":{},"keys":[]}"#,
            br#"{"grid":[],"keys":"x"}"#,
            b"{\"grid\":[",
            br#"{"grid":[],"grid":[],"keys":[]}"#,
        ] {
            assert!(
                matches!(assemble(bad, []), Err(GridError::NotUtfGrid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn jsonp_callbacks_that_could_inject_are_refused() {
        for ok in [
            "cb",
            "grid_1",
            "a.b.c",
            "$",
            "jQuery123_456",
            &"x".repeat(MAX_CALLBACK),
        ] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "a(b)",
            "a;alert(1)",
            "</script>",
            "a b",
            "a\u{2028}",
            "a-b",
            "é",
            &"x".repeat(MAX_CALLBACK + 1),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
        assert_eq!(jsonp("cb", b"{}"), b"/**/cb({});");
    }
}

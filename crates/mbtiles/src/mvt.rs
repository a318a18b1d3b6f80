//! Just enough of the [Mapbox Vector Tile 2.1] protobuf to list a tile's layers (for the preview
//! page's grid of vector tiles). Input is untrusted: every length is checked, nothing panics
//! (fuzzed by `fuzz/fuzz_targets/mbtiles_request.rs`).
//!
//! [Mapbox Vector Tile 2.1]: https://github.com/mapbox/vector-tile-spec/blob/master/2.1/vector_tile.proto

/// A layer's name and feature count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerSummary {
    /// `Layer.name` (field 1).
    pub name: String,
    /// Number of `Layer.features` (field 2).
    pub features: usize,
}

/// Why a vector tile could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed vector tile at byte {offset}: {what}")]
pub struct MvtError {
    /// Byte offset of the bad field, within the message being walked.
    pub offset: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// The layers of an (uncompressed) vector tile, in order.
///
/// ```
/// // Tile { layers: [Layer { name: "roads" }] }
/// let tile = b"\x1a\x07\x0a\x05roads";
/// let layers = nvrkit_mbtiles::mvt::layers(tile).unwrap();
/// assert_eq!(layers[0].name, "roads");
/// ```
pub fn layers(tile: &[u8]) -> Result<Vec<LayerSummary>, MvtError> {
    let mut out = Vec::new();
    for field in Fields::new(tile) {
        let (num, value) = field?;
        if let (3, Value::Bytes(layer)) = (num, value) {
            let mut summary = LayerSummary {
                name: String::new(),
                features: 0,
            };
            for f in Fields::new(layer) {
                match f? {
                    (1, Value::Bytes(name)) => {
                        summary.name = String::from_utf8_lossy(name).into_owned()
                    }
                    (2, Value::Bytes(_)) => summary.features += 1,
                    _ => {}
                }
            }
            out.push(summary);
        }
    }
    Ok(out)
}

/// A feature property value for [`LayerWriter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PropValue<'a> {
    /// `Value.string_value` (field 1).
    Str(&'a str),
    /// `Value.double_value` (field 3).
    Double(f64),
}

/// Writes one layer of point features and wraps it in a tile (`Tile.layers`, field 3): what
/// the cameras layer needs, no more. Keys and values are deduplicated as the spec asks.
#[derive(Debug)]
pub struct LayerWriter {
    name: String,
    extent: u32,
    features: Vec<u8>,
    keys: Vec<String>,
    values: Vec<Vec<u8>>,
    next_id: u64,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, num: u32, data: &[u8]) {
    varint(out, u64::from(num << 3 | 2));
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn zigzag(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

impl LayerWriter {
    /// A layer named `name` with `extent` units per tile side (4096 is usual).
    pub fn new(name: &str, extent: u32) -> LayerWriter {
        LayerWriter {
            name: name.to_string(),
            extent,
            features: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            next_id: 1,
        }
    }

    /// Adds a point at (`x`, `y`) in tile units, with properties.
    pub fn point(&mut self, x: i32, y: i32, props: &[(&str, PropValue<'_>)]) {
        let mut tags = Vec::new();
        for (k, v) in props {
            let ki = match self.keys.iter().position(|x| x == k) {
                Some(i) => i,
                None => {
                    self.keys.push((*k).to_string());
                    self.keys.len() - 1
                }
            };
            let mut enc = Vec::new();
            match v {
                PropValue::Str(s) => bytes_field(&mut enc, 1, s.as_bytes()),
                PropValue::Double(d) => {
                    enc.push(3 << 3 | 1);
                    enc.extend_from_slice(&d.to_le_bytes());
                }
            }
            let vi = match self.values.iter().position(|x| *x == enc) {
                Some(i) => i,
                None => {
                    self.values.push(enc);
                    self.values.len() - 1
                }
            };
            varint(&mut tags, ki as u64);
            varint(&mut tags, vi as u64);
        }
        let mut geom = Vec::new();
        varint(&mut geom, 1 << 3 | 1); // MoveTo, count 1
        varint(&mut geom, zigzag(x));
        varint(&mut geom, zigzag(y));
        let mut f = Vec::new();
        f.push(1 << 3); // id
        varint(&mut f, self.next_id);
        self.next_id += 1;
        bytes_field(&mut f, 2, &tags);
        f.push(3 << 3); // type: POINT
        f.push(1);
        bytes_field(&mut f, 4, &geom);
        bytes_field(&mut self.features, 2, &f);
    }

    /// The tile: this layer alone.
    pub fn into_tile(self) -> Vec<u8> {
        let mut layer = Vec::new();
        layer.push(15 << 3); // version
        layer.push(2);
        bytes_field(&mut layer, 1, self.name.as_bytes());
        layer.extend_from_slice(&self.features);
        for k in &self.keys {
            bytes_field(&mut layer, 3, k.as_bytes());
        }
        for v in &self.values {
            bytes_field(&mut layer, 4, v);
        }
        layer.push(5 << 3);
        varint(&mut layer, u64::from(self.extent));
        let mut tile = Vec::new();
        bytes_field(&mut tile, 3, &layer);
        tile
    }
}

enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, MvtError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(MvtError {
                    offset: start,
                    what: "varint runs past the end",
                });
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(MvtError {
            offset: start,
            what: "varint longer than 10 bytes",
        })
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], MvtError> {
        let start = self.pos;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or(MvtError {
                offset: start,
                what,
            })?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), MvtError> {
        let at = self.pos;
        let key = self.varint()?;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Varint
            }
            1 => {
                self.skip(8, "fixed64 runs past the end")?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.skip(len, "length-delimited field runs past the end")?)
            }
            5 => {
                self.skip(4, "fixed32 runs past the end")?;
                Value::Fixed
            }
            _ => {
                return Err(MvtError {
                    offset: at,
                    what: "unsupported wire type",
                });
            }
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), MvtError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.field();
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_features_and_skips_other_fields() {
        // Layer { version: 2 (field 15 varint), name: "a", features: [{}, {}], extent: 4096 }
        let layer = b"\x78\x02\x0a\x01a\x12\x00\x12\x00\x28\x80\x20";
        let mut tile = vec![0x1a, layer.len() as u8];
        tile.extend_from_slice(layer);
        assert_eq!(
            layers(&tile).unwrap(),
            vec![LayerSummary {
                name: "a".into(),
                features: 2
            }]
        );
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error() {
        assert!(layers(b"\x1a\x10\x0a").is_err());
        assert!(layers(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").is_err());
        assert!(layers(b"\x1f").is_err()); // wire type 7
        assert_eq!(layers(b"").unwrap(), vec![]);
    }
}

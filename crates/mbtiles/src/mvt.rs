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

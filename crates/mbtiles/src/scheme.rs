//! Tile schemes: how a client's tile address maps to the row MBTiles stores.
//!
//! MBTiles stores tiles in the TMS layout ([MBTiles 1.3], "Content"): `zoom_level` 0 is the whole
//! world in one tile, and `tile_row` 0 is the *southernmost* row (Y up). Web maps (Leaflet,
//! OpenLayers, MapLibre) ask in the XYZ layout, Y down. Every scheme here is a type with two pure
//! functions, [`TileScheme::to_tile`] (request → stored) and [`TileScheme::coord_of`] (stored →
//! request), which are inverses of each other (property-tested below). Getting this flip wrong
//! is the classic MBTiles bug (mapbox/node-mbtiles#1, simonw/datasette-tiles#15): tiles show,
//! but upside down by rows, so the types here make the flip impossible to forget.
//!
//! | scheme | URL | zoom | row |
//! | --- | --- | --- | --- |
//! | [`Xyz`] | `/{tileset}/{z}/{x}/{y}` | `z` | `2^z − 1 − y` |
//! | [`Tms`] | `/{tileset}/tms/{z}/{x}/{y}` | `z` | `y` (as stored) |
//! | [`Ocularis`] | `/{tileset}/ocularis/{level}/{x}/{y}` | `maxzoom − level` | `2^z − 1 − y` |
//! | [`ArcGis`] | `/{tileset}/MapServer/tile/{z}/{y}/{x}` | `z` | `2^z − 1 − y` (row before column) |
//!
//! ## Ocularis, worked example
//!
//! Ocularis (OnSSI / Qognify) numbers map levels the other way round: level 0 is the *most
//! detailed* layer. `maxzoom` is the highest `zoom_level` present in the file's tiles (the
//! catalog shows it; it can be overridden per tileset). With a file whose tiles span zooms 0..=5
//! (`maxzoom` = 5), the request `ocularis/1/20/9` means:
//!
//! - zoom `z = maxzoom − level = 5 − 1 = 4` (a 16 × 16 grid);
//! - column `x = 20`? No: at zoom 4 columns run `0..16`, so this request is out of range (400).
//!
//! and `ocularis/1/12/5` means zoom 4, column 12, XYZ row 5 (Y down), which MBTiles stores at
//! `tile_row = 2^4 − 1 − 5 = 10`. The same tile is `/{tileset}/4/12/5` in XYZ,
//! `/{tileset}/tms/4/12/10` in TMS and `/{tileset}/MapServer/tile/4/5/12` in ArcGIS. Level 5 is the
//! whole world (zoom 0), and level 6 does not exist (400).
//!
//! [MBTiles 1.3]: https://github.com/mapbox/mbtiles-spec/blob/master/1.3/spec.md

use crate::error::CoordError;

/// The deepest zoom level accepted: at zoom 30 a tile is about 4 cm at the equator, and `2^30`
/// columns still fit in a `u32` with room for the arithmetic.
pub const MAX_ZOOM: u8 = 30;

/// A tile as MBTiles stores it: `zoom_level`, `tile_column`, `tile_row` (TMS, row 0 at the south).
///
/// A `TileId` is always valid: `z <= MAX_ZOOM` and `x, y < 2^z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    z: u8,
    x: u32,
    y: u32,
}

impl TileId {
    /// Checks and builds a stored tile address.
    ///
    /// ```
    /// use nvrkit_mbtiles::TileId;
    /// assert!(TileId::new(2, 3, 0).is_ok());
    /// assert!(TileId::new(2, 4, 0).is_err()); // zoom 2 has columns 0..4
    /// ```
    pub fn new(z: u32, x: u32, y: u32) -> Result<Self, CoordError> {
        let z = check_zoom(z)?;
        let limit = 1u64 << z;
        if u64::from(x) >= limit {
            return Err(CoordError::X { x, z, limit });
        }
        if u64::from(y) >= limit {
            return Err(CoordError::Y { y, z, limit });
        }
        Ok(TileId { z, x, y })
    }

    /// `zoom_level`.
    pub fn z(self) -> u8 {
        self.z
    }
    /// `tile_column`.
    pub fn x(self) -> u32 {
        self.x
    }
    /// `tile_row` (TMS, Y up).
    pub fn y(self) -> u32 {
        self.y
    }
    /// The row counted from the north (XYZ, Y down).
    pub fn y_down(self) -> u32 {
        flip(self.z, self.y)
    }
}

impl std::fmt::Display for TileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{} (TMS)", self.z, self.x, self.y)
    }
}

fn check_zoom(z: u32) -> Result<u8, CoordError> {
    match u8::try_from(z) {
        Ok(z) if z <= MAX_ZOOM => Ok(z),
        _ => Err(CoordError::Zoom {
            z,
            max: MAX_ZOOM.into(),
        }),
    }
}

/// Turns a row counted from one edge into the row counted from the other. `y < 2^z` is checked
/// by the callers, so this cannot underflow.
fn flip(z: u8, y: u32) -> u32 {
    // (2^z − 1) − y in u64: 2^30 − 1 fits, and y <= 2^z − 1.
    ((1u64 << z) - 1 - u64::from(y)) as u32
}

/// A way of addressing tiles in requests.
pub trait TileScheme {
    /// The tile address as a client writes it.
    type Coord;
    /// The stored tile a request names, or why it names none (a 400).
    fn to_tile(&self, c: Self::Coord) -> Result<TileId, CoordError>;
    /// The request address of a stored tile, or an error where the scheme cannot name it (an
    /// Ocularis level below zero: a tile deeper than the scheme's `maxzoom`).
    fn coord_of(&self, t: TileId) -> Result<Self::Coord, CoordError>;
}

/// Tile address `z/x/y`, as written in a URL by XYZ and TMS clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZxyCoord {
    /// Zoom.
    pub z: u32,
    /// Column, west to east.
    pub x: u32,
    /// Row: from the north for [`Xyz`], from the south for [`Tms`].
    pub y: u32,
}

/// XYZ ("slippy map", Google, OSM): Y down, row 0 at the north. What web maps ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Xyz;

impl TileScheme for Xyz {
    type Coord = ZxyCoord;
    fn to_tile(&self, c: ZxyCoord) -> Result<TileId, CoordError> {
        let t = TileId::new(c.z, c.x, c.y)?;
        Ok(TileId {
            y: flip(t.z, t.y),
            ..t
        })
    }
    fn coord_of(&self, t: TileId) -> Result<ZxyCoord, CoordError> {
        Ok(ZxyCoord {
            z: t.z.into(),
            x: t.x,
            y: t.y_down(),
        })
    }
}

/// TMS: Y up, exactly as MBTiles stores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tms;

impl TileScheme for Tms {
    type Coord = ZxyCoord;
    fn to_tile(&self, c: ZxyCoord) -> Result<TileId, CoordError> {
        TileId::new(c.z, c.x, c.y)
    }
    fn coord_of(&self, t: TileId) -> Result<ZxyCoord, CoordError> {
        Ok(ZxyCoord {
            z: t.z.into(),
            x: t.x,
            y: t.y,
        })
    }
}

/// Tile address in the Ocularis scheme: `level/x/y`, level 0 the most detailed, Y down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OcularisCoord {
    /// Level: `maxzoom − z`.
    pub level: u32,
    /// Column, west to east.
    pub x: u32,
    /// Row from the north.
    pub y: u32,
}

/// Ocularis: the zoom inverted (`level = maxzoom − z`) and Y down. See the module docs for a
/// worked example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ocularis {
    /// The zoom that level 0 stands for: by default the highest `zoom_level` in the file.
    pub maxzoom: u8,
}

impl TileScheme for Ocularis {
    type Coord = OcularisCoord;
    fn to_tile(&self, c: OcularisCoord) -> Result<TileId, CoordError> {
        let max = u32::from(self.maxzoom.min(MAX_ZOOM));
        if c.level > max {
            return Err(CoordError::Zoom { z: c.level, max });
        }
        Xyz.to_tile(ZxyCoord {
            z: max - c.level,
            x: c.x,
            y: c.y,
        })
    }
    fn coord_of(&self, t: TileId) -> Result<OcularisCoord, CoordError> {
        let max = self.maxzoom.min(MAX_ZOOM);
        if t.z > max {
            return Err(CoordError::Zoom {
                z: t.z.into(),
                max: max.into(),
            });
        }
        Ok(OcularisCoord {
            level: u32::from(max - t.z),
            x: t.x,
            y: t.y_down(),
        })
    }
}

/// Tile address in the ArcGIS REST scheme: `level/row/col`, row before column, Y down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArcGisCoord {
    /// Level of detail (same as the XYZ zoom for Web Mercator caches).
    pub level: u32,
    /// Row from the north.
    pub row: u32,
    /// Column, west to east.
    pub col: u32,
}

/// ArcGIS / ESRI tile cache: `MapServer/tile/{level}/{row}/{col}`, the row (Y down) first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArcGis;

impl TileScheme for ArcGis {
    type Coord = ArcGisCoord;
    fn to_tile(&self, c: ArcGisCoord) -> Result<TileId, CoordError> {
        Xyz.to_tile(ZxyCoord {
            z: c.level,
            x: c.col,
            y: c.row,
        })
    }
    fn coord_of(&self, t: TileId) -> Result<ArcGisCoord, CoordError> {
        Ok(ArcGisCoord {
            level: t.z.into(),
            row: t.y_down(),
            col: t.x,
        })
    }
}

/// The schemes by name, for routing and catalogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemeKind {
    /// [`Xyz`].
    Xyz,
    /// [`Tms`].
    Tms,
    /// [`Ocularis`].
    Ocularis,
    /// [`ArcGis`].
    ArcGis,
}

impl SchemeKind {
    /// Every scheme.
    pub const ALL: [SchemeKind; 4] = [
        SchemeKind::Xyz,
        SchemeKind::Tms,
        SchemeKind::Ocularis,
        SchemeKind::ArcGis,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            SchemeKind::Xyz => "xyz",
            SchemeKind::Tms => "tms",
            SchemeKind::Ocularis => "ocularis",
            SchemeKind::ArcGis => "arcgis",
        }
    }

    /// The stored tile for the three numbers in URL order (`a/b/c` as they appear after the
    /// scheme's prefix), with `ocularis_maxzoom` for [`SchemeKind::Ocularis`].
    pub fn to_tile(
        self,
        a: u32,
        b: u32,
        c: u32,
        ocularis_maxzoom: u8,
    ) -> Result<TileId, CoordError> {
        match self {
            SchemeKind::Xyz => Xyz.to_tile(ZxyCoord { z: a, x: b, y: c }),
            SchemeKind::Tms => Tms.to_tile(ZxyCoord { z: a, x: b, y: c }),
            SchemeKind::Ocularis => Ocularis {
                maxzoom: ocularis_maxzoom,
            }
            .to_tile(OcularisCoord {
                level: a,
                x: b,
                y: c,
            }),
            SchemeKind::ArcGis => ArcGis.to_tile(ArcGisCoord {
                level: a,
                row: b,
                col: c,
            }),
        }
    }

    /// The three URL numbers (in URL order) that name a stored tile in this scheme.
    pub fn coord_of(self, t: TileId, ocularis_maxzoom: u8) -> Result<[u32; 3], CoordError> {
        Ok(match self {
            SchemeKind::Xyz => {
                let c = Xyz.coord_of(t)?;
                [c.z, c.x, c.y]
            }
            SchemeKind::Tms => {
                let c = Tms.coord_of(t)?;
                [c.z, c.x, c.y]
            }
            SchemeKind::Ocularis => {
                let c = Ocularis {
                    maxzoom: ocularis_maxzoom,
                }
                .coord_of(t)?;
                [c.level, c.x, c.y]
            }
            SchemeKind::ArcGis => {
                let c = ArcGis.coord_of(t)?;
                [c.level, c.row, c.col]
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tile() -> impl Strategy<Value = TileId> {
        (0u8..=MAX_ZOOM).prop_flat_map(|z| {
            let n = 1u32 << z;
            (Just(z), 0..n, 0..n).prop_map(|(z, x, y)| TileId { z, x, y })
        })
    }

    #[test]
    fn ocularis_worked_example_from_the_docs() {
        let o = Ocularis { maxzoom: 5 };
        let t = o
            .to_tile(OcularisCoord {
                level: 1,
                x: 12,
                y: 5,
            })
            .unwrap();
        assert_eq!((t.z(), t.x(), t.y()), (4, 12, 10));
        assert_eq!(Xyz.to_tile(ZxyCoord { z: 4, x: 12, y: 5 }), Ok(t));
        assert_eq!(Tms.to_tile(ZxyCoord { z: 4, x: 12, y: 10 }), Ok(t));
        let a = ArcGisCoord {
            level: 4,
            row: 5,
            col: 12,
        };
        assert_eq!(ArcGis.to_tile(a), Ok(t));
        assert!(matches!(
            o.to_tile(OcularisCoord {
                level: 1,
                x: 20,
                y: 9
            }),
            Err(CoordError::X { x: 20, z: 4, .. })
        ));
        // Level 5 is the whole world, level 6 does not exist.
        let world = o
            .to_tile(OcularisCoord {
                level: 5,
                x: 0,
                y: 0,
            })
            .unwrap();
        assert_eq!((world.z(), world.x(), world.y()), (0, 0, 0));
        assert_eq!(
            o.to_tile(OcularisCoord {
                level: 6,
                x: 0,
                y: 0
            }),
            Err(CoordError::Zoom { z: 6, max: 5 })
        );
    }

    #[test]
    fn xyz_row_zero_is_north_tms_row_zero_is_south() {
        // At zoom 1, XYZ (0,0) is the north-west tile, stored in TMS row 1.
        let t = Xyz.to_tile(ZxyCoord { z: 1, x: 0, y: 0 }).unwrap();
        assert_eq!(t.y(), 1);
        assert_eq!(t.y_down(), 0);
    }

    #[test]
    fn out_of_range_is_an_error_not_a_wrap() {
        assert!(matches!(
            Xyz.to_tile(ZxyCoord { z: 31, x: 0, y: 0 }),
            Err(CoordError::Zoom { .. })
        ));
        assert!(matches!(
            Xyz.to_tile(ZxyCoord {
                z: u32::MAX,
                x: 0,
                y: 0
            }),
            Err(CoordError::Zoom { .. })
        ));
        assert!(matches!(
            Tms.to_tile(ZxyCoord { z: 0, x: 1, y: 0 }),
            Err(CoordError::X { .. })
        ));
        assert!(matches!(
            ArcGis.to_tile(ArcGisCoord {
                level: 3,
                row: 8,
                col: 0
            }),
            Err(CoordError::Y { y: 8, .. })
        ));
        assert!(TileId::new(30, (1 << 30) - 1, (1 << 30) - 1).is_ok());
        assert!(TileId::new(30, 1 << 30, 0).is_err());
    }

    proptest! {
        #[test]
        fn every_scheme_round_trips(t in tile(), extra in 0u8..=4) {
            let maxzoom = (t.z() + extra).min(MAX_ZOOM);
            for kind in SchemeKind::ALL {
                let [a, b, c] = kind.coord_of(t, maxzoom).unwrap();
                prop_assert_eq!(kind.to_tile(a, b, c, maxzoom), Ok(t), "{:?}", kind);
            }
        }

        #[test]
        fn requests_round_trip_or_fail_cleanly(z in 0u32..40, x in any::<u32>(), y in any::<u32>(), maxzoom in 0u8..=40) {
            for kind in SchemeKind::ALL {
                match kind.to_tile(z, x, y, maxzoom) {
                    Ok(t) => {
                        prop_assert!(t.z() <= MAX_ZOOM);
                        prop_assert!(u64::from(t.x()) < 1u64 << t.z());
                        prop_assert!(u64::from(t.y()) < 1u64 << t.z());
                        prop_assert_eq!(kind.coord_of(t, maxzoom), Ok([z, x, y]));
                    }
                    Err(_) => {
                        // A request is rejected exactly when one of its numbers is out of range.
                        let (zoom, col, row) = match kind {
                            SchemeKind::Ocularis => {
                                let top = u32::from(maxzoom.min(MAX_ZOOM));
                                if z > top { continue; }
                                (top - z, x, y)
                            }
                            SchemeKind::ArcGis => (z, y, x),
                            _ => (z, x, y),
                        };
                        prop_assert!(zoom > u32::from(MAX_ZOOM) || u64::from(col) >= 1u64 << zoom || u64::from(row) >= 1u64 << zoom);
                    }
                }
            }
        }

        #[test]
        fn xyz_and_tms_differ_only_by_the_flip(t in tile()) {
            let xyz = Xyz.coord_of(t).unwrap();
            let tms = Tms.coord_of(t).unwrap();
            prop_assert_eq!(xyz.x, tms.x);
            prop_assert_eq!(u64::from(xyz.y) + u64::from(tms.y), (1u64 << t.z()) - 1);
        }

        #[test]
        fn ocularis_level_zero_is_the_deepest_zoom(maxzoom in 0u8..=MAX_ZOOM, x in any::<u32>(), y in any::<u32>()) {
            let n = 1u32.checked_shl(maxzoom.into()).unwrap_or(u32::MAX);
            let (x, y) = (x % n, y % n);
            let t = Ocularis { maxzoom }.to_tile(OcularisCoord { level: 0, x, y }).unwrap();
            prop_assert_eq!(t.z(), maxzoom);
            prop_assert_eq!(t.y_down(), y);
        }
    }
}

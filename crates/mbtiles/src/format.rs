//! Tile formats: from the `format` metadata row and from the tile's first bytes.

/// What a tile's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TileFormat {
    /// PNG image.
    Png,
    /// JPEG image.
    Jpg,
    /// WebP image.
    Webp,
    /// Mapbox Vector Tile (protobuf), as the MBTiles 1.3 `pbf` format.
    Pbf,
    /// JSON (UTFGrid and other JSON tiles).
    Json,
    /// Anything else: served as `application/octet-stream`.
    Unknown,
}

impl TileFormat {
    /// The format named by the MBTiles `format` metadata value (case-insensitive; `jpeg` and
    /// `mvt` accepted as aliases).
    pub fn from_metadata(value: &str) -> TileFormat {
        match value.trim().to_ascii_lowercase().as_str() {
            "png" => TileFormat::Png,
            "jpg" | "jpeg" => TileFormat::Jpg,
            "webp" => TileFormat::Webp,
            "pbf" | "mvt" => TileFormat::Pbf,
            "json" | "grid" => TileFormat::Json,
            _ => TileFormat::Unknown,
        }
    }

    /// The format of a tile from its magic bytes, with whether it is gzip-compressed. A gzip
    /// stream is taken as a gzip'd vector tile (what MBTiles `pbf` tilesets store); an
    /// unrecognised prefix gives `None` (raw protobuf has no magic).
    ///
    /// ```
    /// use nvrkit_mbtiles::TileFormat;
    /// assert_eq!(TileFormat::sniff(b"\x89PNG\r\n\x1a\n...."), Some((TileFormat::Png, false)));
    /// assert_eq!(TileFormat::sniff(b"\x1f\x8b\x08\x00"), Some((TileFormat::Pbf, true)));
    /// assert_eq!(TileFormat::sniff(b"\x1a\x05"), None);
    /// ```
    pub fn sniff(data: &[u8]) -> Option<(TileFormat, bool)> {
        match data {
            [0x89, b'P', b'N', b'G', ..] => Some((TileFormat::Png, false)),
            [0xff, 0xd8, 0xff, ..] => Some((TileFormat::Jpg, false)),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some((TileFormat::Webp, false)),
            [0x1f, 0x8b, ..] => Some((TileFormat::Pbf, true)),
            [b'{', ..] => Some((TileFormat::Json, false)),
            _ => None,
        }
    }

    /// The `Content-Type` to serve.
    pub fn content_type(self) -> &'static str {
        match self {
            TileFormat::Png => "image/png",
            TileFormat::Jpg => "image/jpeg",
            TileFormat::Webp => "image/webp",
            // IANA-registered type of Mapbox Vector Tiles.
            TileFormat::Pbf => "application/vnd.mapbox-vector-tile",
            TileFormat::Json => "application/json",
            TileFormat::Unknown => "application/octet-stream",
        }
    }

    /// The usual file extension (also the MBTiles `format` value).
    pub fn extension(self) -> &'static str {
        match self {
            TileFormat::Png => "png",
            TileFormat::Jpg => "jpg",
            TileFormat::Webp => "webp",
            TileFormat::Pbf => "pbf",
            TileFormat::Json => "json",
            TileFormat::Unknown => "bin",
        }
    }

    /// Whether a URL extension names this format (`jpeg` for `jpg`, `mvt` for `pbf`).
    pub fn matches_extension(self, ext: &str) -> bool {
        TileFormat::from_metadata(ext) == self
            || (self == TileFormat::Unknown && ext.eq_ignore_ascii_case("bin"))
    }

    /// Whether this is a raster image format.
    pub fn is_raster(self) -> bool {
        matches!(self, TileFormat::Png | TileFormat::Jpg | TileFormat::Webp)
    }
}

impl std::fmt::Display for TileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

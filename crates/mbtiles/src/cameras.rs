//! Cameras on the map: the `cameras.json` an operator writes, their live state (set by whoever
//! polls the NVR: `tileserve --nvr`), and the two forms they are served in, GeoJSON and a
//! Mapbox Vector Tile layer. Sans-I/O.
//!
//! ```json
//! {"cameras": [
//!   {"id": "demo", "name": "Lobby", "lon": 12.5683, "lat": 55.6761, "heading": 90, "fov": 60},
//!   {"id": "door", "tileset": "floor", "pixel": [812, 340], "heading": 180}
//! ]}
//! ```
//!
//! - `id`: the camera's name in nvr (1 to 64 bytes, no control characters), unique.
//! - Position: `lon` and `lat` in degrees (WGS 84, within Web Mercator's ±85.0511° of latitude),
//!   or `pixel`, `[x, y]` on a floor plan: pixels at the tileset's maximum zoom (256-pixel tiles)
//!   counted from the top-left corner of the tileset's `bounds` (the world's corner when it has
//!   none); a `pixel` camera names its `tileset`, a lon/lat camera may (it is then drawn on that
//!   tileset only; otherwise on every tileset).
//! - `heading`: degrees clockwise from north, `0 <= heading < 360`; `fov`: the field of view in
//!   degrees, `0 < fov <= 360`, only with a heading.
//!
//! Validation is strict: an unknown member, a missing or doubled position, a value out of range
//! or a duplicate id is an error naming the camera ([`CamerasError`]). The file is at most
//! [`MAX_CAMERAS_FILE`] bytes and [`MAX_CAMERAS`] cameras.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use nvrkit_media::WallTime;

use crate::scheme::TileId;

/// The largest `cameras.json` read (1 MiB).
pub const MAX_CAMERAS_FILE: usize = 1 << 20;
/// The most cameras in one file (10,000).
pub const MAX_CAMERAS: usize = 10_000;
/// The longest camera id (64 bytes).
pub const MAX_ID: usize = 64;
/// The longest display name (256 bytes).
pub const MAX_NAME: usize = 256;
/// Web Mercator's latitude limit.
pub const MAX_LAT: f64 = 85.051_128_78;

/// Why a `cameras.json` is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CamerasError {
    /// Over [`MAX_CAMERAS_FILE`] bytes or [`MAX_CAMERAS`] cameras.
    #[error("over the limit of {MAX_CAMERAS_FILE} bytes or {MAX_CAMERAS} cameras")]
    TooLarge,
    /// Not JSON of the expected shape (serde's message names the line and column).
    #[error("{0}")]
    Json(String),
    /// One camera is wrong.
    #[error("camera {index} ({id:?}): {what}")]
    Camera {
        /// Its index in `cameras`, from 0.
        index: usize,
        /// Its id as written.
        id: String,
        /// What is wrong.
        what: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    cameras: Vec<CameraSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraSpec {
    id: String,
    name: Option<String>,
    lon: Option<f64>,
    lat: Option<f64>,
    pixel: Option<[f64; 2]>,
    tileset: Option<String>,
    heading: Option<f64>,
    fov: Option<f64>,
}

/// Where a camera is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    /// Degrees.
    LonLat {
        /// Longitude.
        lon: f64,
        /// Latitude.
        lat: f64,
    },
    /// Pixels at the tileset's maximum zoom from the top-left of its bounds.
    Pixel {
        /// Right.
        x: f64,
        /// Down.
        y: f64,
    },
}

/// One camera of `cameras.json`, validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Camera {
    /// nvr's camera name.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Where it is.
    pub position: Position,
    /// The tileset it is drawn on (`None`: every tileset; always set for a pixel position).
    pub tileset: Option<String>,
    /// Degrees clockwise from north.
    pub heading: Option<f64>,
    /// Field of view in degrees.
    pub fov: Option<f64>,
}

/// Parses and validates a `cameras.json`.
pub fn parse(bytes: &[u8]) -> Result<Vec<Camera>, CamerasError> {
    if bytes.len() > MAX_CAMERAS_FILE {
        return Err(CamerasError::TooLarge);
    }
    if !nvrkit_net::json_depth_within(bytes, 8) {
        return Err(CamerasError::Json("nested deeper than 8 levels".into()));
    }
    let spec: FileSpec =
        serde_json::from_slice(bytes).map_err(|e| CamerasError::Json(e.to_string()))?;
    if spec.cameras.len() > MAX_CAMERAS {
        return Err(CamerasError::TooLarge);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(spec.cameras.len());
    for (index, c) in spec.cameras.into_iter().enumerate() {
        let err = |what: &str| CamerasError::Camera {
            index,
            id: c.id.chars().take(MAX_ID).collect(),
            what: what.to_string(),
        };
        if c.id.is_empty() || c.id.len() > MAX_ID || c.id.chars().any(char::is_control) {
            return Err(err("id must be 1 to 64 bytes without control characters"));
        }
        if !seen.insert(c.id.clone()) {
            return Err(err("duplicate id"));
        }
        if c.name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NAME || n.chars().any(char::is_control))
        {
            return Err(err(
                "name must be at most 256 bytes without control characters",
            ));
        }
        if c.tileset.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(err("tileset is empty"));
        }
        let position = match (c.lon, c.lat, c.pixel) {
            (Some(lon), Some(lat), None) => {
                if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
                    return Err(err("lon must be within -180..=180"));
                }
                if !(lat.is_finite() && (-MAX_LAT..=MAX_LAT).contains(&lat)) {
                    return Err(err("lat must be within -85.0511..=85.0511 (Web Mercator)"));
                }
                Position::LonLat { lon, lat }
            }
            (None, None, Some([x, y])) => {
                if !(x.is_finite() && y.is_finite() && x >= 0.0 && y >= 0.0) {
                    return Err(err("pixel must be two numbers >= 0"));
                }
                if c.tileset.is_none() {
                    return Err(err(
                        "a pixel position needs the tileset whose maximum zoom it is in",
                    ));
                }
                Position::Pixel { x, y }
            }
            (None, None, None) => return Err(err("needs lon and lat, or pixel")),
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(err("lon and lat go together"));
            }
            _ => return Err(err("give lon and lat, or pixel, not both")),
        };
        if let Some(h) = c.heading
            && !(h.is_finite() && (0.0..360.0).contains(&h))
        {
            return Err(err("heading must be within 0..360 (degrees from north)"));
        }
        if let Some(f) = c.fov {
            if !(f.is_finite() && f > 0.0 && f <= 360.0) {
                return Err(err("fov must be within 0 (exclusive) ..= 360 degrees"));
            }
            if c.heading.is_none() {
                return Err(err("fov needs a heading"));
            }
        }
        out.push(Camera {
            id: c.id,
            name: c.name,
            position,
            tileset: c.tileset,
            heading: c.heading,
            fov: c.fov,
        });
    }
    Ok(out)
}

/// Why an answer of nvr's API is not what [`nvr_states`] reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct NvrError {
    /// Which answer.
    pub what: &'static str,
    /// What is wrong.
    pub why: String,
}

fn parse_array(what: &'static str, body: &[u8]) -> Result<Vec<Value>, NvrError> {
    if !nvrkit_net::json_depth_within(body, 64) {
        return Err(NvrError {
            what,
            why: "JSON nested deeper than 64 levels".into(),
        });
    }
    match serde_json::from_slice(body) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(_) => Err(NvrError {
            what,
            why: "not a JSON array".into(),
        }),
        Err(e) => Err(NvrError {
            what,
            why: format!("not JSON: {e}"),
        }),
    }
}

/// The states of `cameras` from the bodies of nvr's `GET /api/cameras` (online: `connected`
/// true; offline: listed, not connected; unknown: not listed) and `GET /api/events` (alarm: an
/// event whose `cameras` lists it and whose `received_at` is at most `hold` before `now`).
/// Linear in the bodies times the cameras; untrusted input (fuzzed: `cameras_json`).
pub fn nvr_states(
    cameras: &[Camera],
    api_cameras: &[u8],
    api_events: &[u8],
    now: WallTime,
    hold: Duration,
) -> Result<Vec<State>, NvrError> {
    let listed = parse_array("/api/cameras", api_cameras)?;
    let events = parse_array("/api/events", api_events)?;
    let hold_us = i64::try_from(hold.as_micros()).unwrap_or(i64::MAX);
    let recent: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e.get("received_at")
                .and_then(Value::as_str)
                .and_then(|t| WallTime::parse_rfc3339(t).ok())
                .is_some_and(|t| now.micros_since(t) <= hold_us)
        })
        .collect();
    Ok(cameras
        .iter()
        .map(|c| {
            let alarm = recent.iter().any(|e| {
                e.get("cameras")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(&c.id)))
            });
            let entry = listed
                .iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some(&c.id));
            match (alarm, entry) {
                (true, _) => State::Alarm,
                (false, None) => State::Unknown,
                (false, Some(x)) if x.get("connected") == Some(&Value::Bool(true)) => State::Online,
                (false, Some(_)) => State::Offline,
            }
        })
        .collect())
}

/// What the map shows of a tileset, for placing pixel positions: its maximum zoom and bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// The zoom pixel positions are in.
    pub maxzoom: u8,
    /// West, south, east, north (`None`: the whole world).
    pub bounds: Option<[f64; 4]>,
}

fn world_px(lon: f64, lat: f64, z: u8) -> (f64, f64) {
    let n = 256.0 * f64::from(1u32 << z);
    let s = lat.clamp(-MAX_LAT, MAX_LAT).to_radians().sin();
    (
        (lon + 180.0) / 360.0 * n,
        (0.5 - ((1.0 + s) / (1.0 - s)).ln() / (4.0 * std::f64::consts::PI)) * n,
    )
}

fn lon_lat_of(px: f64, py: f64, z: u8) -> (f64, f64) {
    let n = 256.0 * f64::from(1u32 << z);
    let lon = px / n * 360.0 - 180.0;
    let lat = (std::f64::consts::PI * (1.0 - 2.0 * py / n))
        .sinh()
        .atan()
        .to_degrees();
    (lon, lat)
}

impl Camera {
    /// Whether it is drawn on tileset `id`.
    pub fn on(&self, id: &str) -> bool {
        self.tileset.as_deref().is_none_or(|t| t == id)
    }

    /// Longitude and latitude on a tileset (`None` for a pixel outside the world).
    pub fn lon_lat(&self, frame: Frame) -> Option<(f64, f64)> {
        match self.position {
            Position::LonLat { lon, lat } => Some((lon, lat)),
            Position::Pixel { x, y } => {
                let z = frame.maxzoom.min(crate::MAX_ZOOM);
                let (ox, oy) = frame.bounds.map_or((0.0, 0.0), |b| world_px(b[0], b[3], z));
                let (px, py) = (ox + x, oy + y);
                let n = 256.0 * f64::from(1u32 << z);
                (px <= n && py <= n).then(|| lon_lat_of(px, py, z))
            }
        }
    }
}

/// A camera's state as the map shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not known: no NVR polled, the NVR unreachable, or the camera unknown to it.
    #[default]
    Unknown,
    /// Known to the NVR, not connected.
    Offline,
    /// Connected.
    Online,
    /// An event for it within the alarm hold.
    Alarm,
}

impl State {
    /// The lowercase name (`unknown`, `offline`, `online`, `alarm`).
    pub fn name(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Offline => "offline",
            State::Online => "online",
            State::Alarm => "alarm",
        }
    }
}

/// The cameras and their current states, shared between the poller and the router.
#[derive(Debug)]
pub struct Live {
    cameras: Vec<Camera>,
    states: RwLock<Vec<State>>,
}

impl Live {
    /// Every camera in state [`State::Unknown`].
    pub fn new(cameras: Vec<Camera>) -> Live {
        let states = RwLock::new(vec![State::Unknown; cameras.len()]);
        Live { cameras, states }
    }

    /// The cameras.
    pub fn cameras(&self) -> &[Camera] {
        &self.cameras
    }

    /// The states, index for index with [`Live::cameras`].
    pub fn states(&self) -> Vec<State> {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets every state (index for index; missing ones become unknown); whether any changed.
    pub fn set(&self, mut states: Vec<State>) -> bool {
        states.resize(self.cameras.len(), State::Unknown);
        let mut s = self.states.write().unwrap_or_else(|p| p.into_inner());
        let changed = *s != states;
        *s = states;
        changed
    }

    /// The cameras on tileset `id` as a GeoJSON `FeatureCollection` of points, with `id`,
    /// `name`, `state`, `heading` and `fov` as properties.
    pub fn geojson(&self, id: &str, frame: Frame) -> Value {
        let states = self.states();
        let features: Vec<Value> = self
            .cameras
            .iter()
            .zip(states)
            .filter(|(c, _)| c.on(id))
            .filter_map(|(c, s)| {
                let (lon, lat) = c.lon_lat(frame)?;
                Some(json!({
                    "type": "Feature",
                    "id": c.id,
                    "geometry": {"type": "Point", "coordinates": [lon, lat]},
                    "properties": {
                        "id": c.id,
                        "name": c.name,
                        "state": s,
                        "heading": c.heading,
                        "fov": c.fov,
                    },
                }))
            })
            .collect();
        json!({"type": "FeatureCollection", "features": features})
    }

    /// The cameras on tileset `id` that fall in tile `t` as a Mapbox Vector Tile (2.1) with one
    /// layer, `cameras`, extent 4096, one point per camera with the properties of
    /// [`Live::geojson`]. A tile with no camera is a tile with an empty layer.
    pub fn mvt(&self, id: &str, frame: Frame, t: TileId) -> Vec<u8> {
        let states = self.states();
        let z = t.z();
        let (tx, ty) = (f64::from(t.x()), f64::from(t.y_down()));
        let mut layer = crate::mvt::LayerWriter::new("cameras", 4096);
        for (c, s) in self.cameras.iter().zip(states).filter(|(c, _)| c.on(id)) {
            let Some((lon, lat)) = c.lon_lat(frame) else {
                continue;
            };
            let (px, py) = world_px(lon, lat, z);
            let (fx, fy) = (px / 256.0 - tx, py / 256.0 - ty);
            if !((0.0..1.0).contains(&fx) && (0.0..1.0).contains(&fy)) {
                continue;
            }
            let mut props: Vec<(&str, crate::mvt::PropValue<'_>)> = vec![
                ("id", crate::mvt::PropValue::Str(&c.id)),
                ("state", crate::mvt::PropValue::Str(s.name())),
            ];
            if let Some(n) = &c.name {
                props.push(("name", crate::mvt::PropValue::Str(n)));
            }
            if let Some(h) = c.heading {
                props.push(("heading", crate::mvt::PropValue::Double(h)));
            }
            if let Some(f) = c.fov {
                props.push(("fov", crate::mvt::PropValue::Double(f)));
            }
            layer.point((fx * 4096.0) as i32, (fy * 4096.0) as i32, &props);
        }
        layer.into_tile()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_file_parses_and_pixels_land_in_the_tileset() {
        let cams = parse(
            br#"{"cameras": [
                {"id": "demo", "name": "Lobby", "lon": 10, "lat": 50, "heading": 90, "fov": 60},
                {"id": "door", "tileset": "floor", "pixel": [256, 256]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(cams.len(), 2);
        assert!(cams[0].on("anything") && cams[1].on("floor") && !cams[1].on("world"));
        // The middle of a world at zoom 1 (512 px) is 0, 0.
        let (lon, lat) = cams[1]
            .lon_lat(Frame {
                maxzoom: 1,
                bounds: None,
            })
            .unwrap();
        assert!(lon.abs() < 1e-9 && lat.abs() < 1e-9, "{lon} {lat}");
        // From the top-left of bounds [0, -85, 180, 85] at zoom 1: 256 px right of lon 0 is 180.
        let (lon, _) = cams[1]
            .lon_lat(Frame {
                maxzoom: 1,
                bounds: Some([0.0, -85.0, 180.0, MAX_LAT]),
            })
            .unwrap();
        assert!((lon - 180.0).abs() < 1e-9, "{lon}");
    }

    #[test]
    fn every_mistake_is_a_clear_error() {
        for (json, says) in [
            (r#"{"cameras": [{"id": "a"}]}"#, "needs lon and lat"),
            (r#"{"cameras": [{"id": "a", "lon": 1}]}"#, "go together"),
            (
                r#"{"cameras": [{"id": "a", "lon": 1, "lat": 2, "pixel": [1, 2]}]}"#,
                "not both",
            ),
            (
                r#"{"cameras": [{"id": "a", "lon": 181, "lat": 2}]}"#,
                "lon must",
            ),
            (
                r#"{"cameras": [{"id": "a", "lon": 1, "lat": 89}]}"#,
                "lat must",
            ),
            (
                r#"{"cameras": [{"id": "a", "pixel": [1, 2]}]}"#,
                "needs the tileset",
            ),
            (
                r#"{"cameras": [{"id": "a", "pixel": [-1, 2], "tileset": "f"}]}"#,
                "pixel must",
            ),
            (
                r#"{"cameras": [{"id": "a", "lon": 1, "lat": 2, "heading": 360}]}"#,
                "heading",
            ),
            (
                r#"{"cameras": [{"id": "a", "lon": 1, "lat": 2, "fov": 30}]}"#,
                "fov needs",
            ),
            (
                r#"{"cameras": [{"id": "a", "lon": 1, "lat": 2, "heading": 1, "fov": 0}]}"#,
                "fov must",
            ),
            (
                r#"{"cameras": [{"id": "", "lon": 1, "lat": 2}]}"#,
                "id must",
            ),
            (
                r#"{"cameras": [{"id": "a", "lon": 1, "lat": 2}, {"id": "a", "lon": 1, "lat": 2}]}"#,
                "duplicate",
            ),
            (
                r#"{"cameras": [{"id": "a", "lon": 1, "lat": 2, "colour": "red"}]}"#,
                "unknown field",
            ),
            (r#"{"cams": []}"#, "unknown field"),
            (r#"{"cameras": ["#, "EOF"),
        ] {
            let e = parse(json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
        assert!(matches!(
            parse(&vec![b' '; MAX_CAMERAS_FILE + 1]),
            Err(CamerasError::TooLarge)
        ));
    }

    #[test]
    fn states_show_in_geojson_and_in_the_vector_tile() {
        let live = Live::new(
            parse(br#"{"cameras": [{"id": "demo", "lon": 10, "lat": 50, "heading": 90}]}"#)
                .unwrap(),
        );
        let frame = Frame {
            maxzoom: 3,
            bounds: None,
        };
        let g = live.geojson("world", frame);
        assert_eq!(g["features"][0]["properties"]["state"], "unknown");
        assert!(live.set(vec![State::Alarm]));
        assert!(!live.set(vec![State::Alarm]));
        let g = live.geojson("world", frame);
        assert_eq!(g["features"][0]["properties"]["state"], "alarm");
        assert_eq!(g["features"][0]["geometry"]["coordinates"][0], 10.0);
        // Zoom 1: lon 10, lat 50 is in the north-east tile (XYZ 1/1/0, TMS row 1).
        let tile = live.mvt("world", frame, TileId::new(1, 1, 1).unwrap());
        let layers = crate::mvt::layers(&tile).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(
            (layers[0].name.as_str(), layers[0].features),
            ("cameras", 1)
        );
        let empty = live.mvt("world", frame, TileId::new(1, 0, 0).unwrap());
        assert_eq!(crate::mvt::layers(&empty).unwrap()[0].features, 0);
        // A state change changes the tile's bytes (and so its ETag).
        live.set(vec![State::Online]);
        assert_ne!(
            tile,
            live.mvt("world", frame, TileId::new(1, 1, 1).unwrap())
        );
    }
}

#[cfg(test)]
mod nvr_tests {
    use super::*;

    #[test]
    fn online_offline_unknown_and_alarm_within_the_hold() {
        let cams = parse(
            br#"{"cameras": [{"id": "demo", "lon": 0, "lat": 0}, {"id": "yard", "lon": 1, "lat": 1},
                {"id": "gone", "lon": 2, "lat": 2}]}"#,
        )
        .unwrap();
        let api = br#"[{"name": "demo", "connected": true}, {"name": "yard", "connected": false}]"#;
        let now = WallTime::parse_rfc3339("2026-01-01T00:01:00Z").unwrap();
        let hold = Duration::from_secs(30);
        let s = nvr_states(&cams, api, b"[]", now, hold).unwrap();
        assert_eq!(s, [State::Online, State::Offline, State::Unknown]);
        let events = br#"[{"received_at": "2026-01-01T00:00:45Z", "cameras": ["yard"]},
            {"received_at": "2026-01-01T00:00:10Z", "cameras": ["demo"]}]"#;
        let s = nvr_states(&cams, api, events, now, hold).unwrap();
        assert_eq!(s, [State::Online, State::Alarm, State::Unknown]);
        assert!(nvr_states(&cams, b"{}", b"[]", now, hold).is_err());
        assert!(nvr_states(&cams, api, &[b'['; 100], now, hold).is_err());
    }
}

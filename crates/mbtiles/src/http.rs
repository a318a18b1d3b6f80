//! The HTTP layer: an axum [`Router`] over a [`Catalog`]. A thin shell: the URL grammar is
//! [`crate::route`], the coordinates are [`crate::scheme`], the bytes come from
//! [`crate::MbTiles`]; this module adds caching headers, content negotiation and CORS.
//!
//! - Tiles are served as stored. A gzip'd vector tile goes out with `Content-Encoding: gzip` to a
//!   client whose `Accept-Encoding` allows gzip, and decompressed for one that does not; it is
//!   never recompressed. Such responses carry `Vary: Accept-Encoding` and a different strong
//!   ETag per encoding ([RFC 9110 §8.8.3]): `"<hash>-gz"` for the gzip bytes, `"<hash>"` for the
//!   decompressed ones, where `<hash>` is the XXH3-64 of the stored BLOB.
//! - `If-None-Match` is compared with the weak comparison of [RFC 9110 §13.1.2]; a match gives
//!   304 without reading past the BLOB.
//! - UTFGrids ([`crate::grid`]) at the tile URLs with `.grid.json`, JSONP with a checked
//!   `?callback=`; WMTS ([`crate::wmts`]) capabilities, KVP and RESTful `GetTile`, the tiles
//!   going through the same tile path (cache, ETags) as the other schemes.
//! - Missing tile: 404 (or 204, [`MissingTile::NoContent`]); a coordinate outside the grid or a
//!   malformed number: 400; a tileset disabled by a bad file, or a file locked by a writer past
//!   the busy timeout: 503 with `Retry-After: 1`.
//!
//! [RFC 9110 §8.8.3]: https://www.rfc-editor.org/rfc/rfc9110#section-8.8.3
//! [RFC 9110 §13.1.2]: https://www.rfc-editor.org/rfc/rfc9110#section-13.1.2

// The handlers' error path *is* the HTTP response (400, 404, 503…), built once per failed
// request; boxing it to shrink the `Result` would add an allocation for nothing.
#![allow(clippy::result_large_err)]

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::cache::{CachedTile, TileCache};
use crate::catalog::{Catalog, Entry, Tileset};
use crate::format::TileFormat;
use crate::route::{Route, RouteError, encode, parse};
use crate::scheme::{SchemeKind, TileScheme, Xyz, ZxyCoord};
use crate::tilejson::{grid_template, template, tilejson};
use crate::wmts;

/// What to answer for a valid coordinate with no tile in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingTile {
    /// 404 Not Found (the default).
    #[default]
    NotFound,
    /// 204 No Content: some map clients log every 404.
    NoContent,
}

/// Which origins may read tiles from a browser (CORS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cors {
    /// No CORS headers: only same-origin pages can read the tiles.
    None,
    /// `Access-Control-Allow-Origin: *` (the default: tiles are public data).
    #[default]
    Any,
    /// Only these origins (`https://vms.example.com`), echoed back with `Vary: Origin`.
    Origins(Vec<String>),
}

/// Server options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// CORS policy.
    pub cors: Cors,
    /// `Cache-Control` for tiles and TileJSON (`None`: no header).
    pub cache_control: Option<String>,
    /// Answer for a missing tile.
    pub missing: MissingTile,
    /// The base URL written into TileJSON and the catalog (`https://tiles.example.com`); by
    /// default `http://` plus the request's `Host`.
    pub public_url: Option<String>,
    /// Bytes of tiles kept in memory ([`crate::cache`]); 0 reads every tile from its file.
    pub cache_bytes: usize,
    /// Cameras drawn on the tilesets ([`crate::cameras`]): served at
    /// `/{tileset}/cameras.geojson` and `/{tileset}/cameras/{z}/{x}/{y}.pbf`, and drawn by the
    /// preview. Their states are set by the caller ([`crate::cameras::Live::set`]).
    pub cameras: Option<Arc<crate::cameras::Live>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cors: Cors::Any,
            cache_control: Some(Config::DEFAULT_CACHE_CONTROL.into()),
            missing: MissingTile::NotFound,
            public_url: None,
            cache_bytes: Config::DEFAULT_CACHE_BYTES,
            cameras: None,
        }
    }
}

impl Config {
    /// The default `Cache-Control`: clients may keep tiles but must revalidate (a cheap 304 by
    /// ETag), so a replaced file shows up at once.
    pub const DEFAULT_CACHE_CONTROL: &'static str = "no-cache";
    /// The default tile cache: 64 MiB, about 4,000 satellite JPEG tiles of 16 KiB.
    pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;
}

/// Largest decompressed tile we produce for a client without gzip (a guard against gzip bombs):
/// real vector tiles are under 1 MiB, the Mapbox guideline is 500 KB.
const MAX_GUNZIPPED: u64 = 64 << 20;

struct App {
    catalog: Arc<Catalog>,
    config: Config,
    cache_control: Option<HeaderValue>,
    cache: TileCache,
}

/// The tile server's routes (see [`crate::route`] for the paths) over a catalog.
///
/// ```
/// use std::sync::Arc;
/// use nvrkit_mbtiles::{Catalog, http};
/// let catalog = Arc::new(Catalog::new(vec!["maps/".into()], Default::default()));
/// let app: axum::Router = http::router(catalog, http::Config::default());
/// # let _ = app;
/// ```
pub fn router(catalog: Arc<Catalog>, config: Config) -> Router {
    let cache_control = config
        .cache_control
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok());
    let app = Arc::new(App {
        catalog,
        cache: TileCache::new(config.cache_bytes),
        config,
        cache_control,
    });
    Router::new().fallback(handle).with_state(app)
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (method, uri, headers) = (req.method(), req.uri(), req.headers());
    let mut resp = if method == Method::OPTIONS {
        preflight(headers)
    } else if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        r
    } else {
        match parse(uri.path()) {
            Ok(route) => app.dispatch(route, uri.query(), headers),
            Err(RouteError::NotFound) => text(StatusCode::NOT_FOUND, "not found\n"),
            Err(e @ RouteError::BadRequest(_)) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        }
    };
    app.cors(headers, resp.headers_mut());
    resp
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json_response(v: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn preflight(headers: &HeaderMap) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    if let Some(req) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

impl App {
    fn cors(&self, req: &HeaderMap, h: &mut HeaderMap) {
        let allow = match &self.config.cors {
            Cors::None => return,
            Cors::Any => HeaderValue::from_static("*"),
            Cors::Origins(list) => {
                append_vary(h, "Origin");
                match req.get(header::ORIGIN) {
                    Some(o) if list.iter().any(|a| a.as_bytes() == o.as_bytes()) => o.clone(),
                    _ => return,
                }
            }
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag"),
        );
    }

    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.config.public_url {
            return u.trim_end_matches('/').to_string();
        }
        // Only a plausible host[:port] goes into the JSON; anything else falls back.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| nvrkit_net::plausible_host(h))
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    fn entry(&self, id: &str) -> Result<Arc<Tileset>, Response> {
        let entry: Arc<Entry> = self
            .catalog
            .get(id)
            .ok_or_else(|| text(StatusCode::NOT_FOUND, format!("no tileset {id:?}\n")))?;
        match &entry.state {
            Ok(t) => Ok(t.clone()),
            Err(e) => {
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("tileset {id:?} is disabled: {e}\n"),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Err(r)
            }
        }
    }

    fn dispatch(&self, route: Route<'_>, query: Option<&str>, headers: &HeaderMap) -> Response {
        let res = match route {
            Route::Catalog => Ok(self.catalog_page(headers)),
            Route::TileJson { tileset } => self.entry(&tileset).map(|t| {
                let mut r = json_response(&tilejson(&t, &self.base(headers)));
                self.cache(r.headers_mut());
                r
            }),
            Route::Preview { tileset } => self.entry(&tileset).map(|t| {
                let cams = self
                    .config
                    .cameras
                    .as_ref()
                    .is_some_and(|l| l.cameras().iter().any(|c| c.on(&t.id)));
                preview(&t, cams)
            }),
            Route::Cameras { tileset } => self.entry(&tileset).and_then(|t| {
                let live = self.live()?;
                let body = live.geojson(&t.id, frame(&t)).to_string().into_bytes();
                Ok(self.etagged(body, "application/geo+json", headers, false))
            }),
            Route::CameraTile { tileset, nums } => self.entry(&tileset).and_then(|t| {
                let live = self.live()?;
                let id = crate::Xyz
                    .to_tile(crate::ZxyCoord {
                        z: nums[0],
                        x: nums[1],
                        y: nums[2],
                    })
                    .map_err(|e| text(StatusCode::BAD_REQUEST, format!("{e}\n")))?;
                let body = live.mvt(&t.id, frame(&t), id);
                Ok(self.etagged(body, "application/vnd.mapbox-vector-tile", headers, false))
            }),
            Route::Tile {
                tileset,
                scheme,
                nums,
                ext,
            } => self
                .entry(&tileset)
                .and_then(|t| self.tile(&t, scheme, nums, ext, headers)),
            Route::TileInfo { tileset, nums } => {
                self.entry(&tileset).and_then(|t| self.info(&t, nums))
            }
            Route::Grid {
                tileset,
                scheme,
                nums,
            } => self
                .entry(&tileset)
                .and_then(|t| self.grid(&t, scheme, nums, query, headers)),
            Route::WmtsCapabilities { tileset } => {
                self.wmts_capabilities(tileset.as_deref(), headers)
            }
            Route::WmtsKvp => self.wmts_kvp(query, headers),
            Route::WmtsTile {
                tileset,
                matrix_set,
                nums,
                ext,
            } => self.entry(&tileset).and_then(|t| {
                let (scheme, nums) = wmts_resolve(&t, &matrix_set, nums)
                    .map_err(|e| text(e.status, format!("{}\n", e.message)))?;
                self.tile(&t, scheme, nums, ext, headers)
            }),
        };
        res.unwrap_or_else(|r| r)
    }

    fn cache(&self, h: &mut HeaderMap) {
        if let Some(c) = &self.cache_control {
            h.insert(header::CACHE_CONTROL, c.clone());
        }
    }

    fn read(
        &self,
        t: &Tileset,
        id: crate::TileId,
    ) -> Result<Option<crate::reader::Tile>, Response> {
        t.tiles.tile(id).map_err(|e| self.read_error(t, e))
    }

    /// A file's error as a response: 503 with `Retry-After` for a writer's lock, else 500.
    fn read_error(&self, t: &Tileset, e: crate::Error) -> Response {
        if e.is_busy() {
            tracing::info!(tileset = %t.id, "{e}");
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        } else {
            tracing::warn!(tileset = %t.id, "{e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
        }
    }

    fn tile(
        &self,
        t: &Tileset,
        scheme: SchemeKind,
        [a, b, c]: [u32; 3],
        ext: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, Response> {
        let id = scheme
            .to_tile(a, b, c, t.ocularis_maxzoom)
            .map_err(|e| text(StatusCode::BAD_REQUEST, format!("{e}\n")))?;
        if let Some(ext) = ext
            && !t.tiles.format().matches_extension(ext)
        {
            return Err(text(
                StatusCode::NOT_FOUND,
                format!(
                    "tileset {:?} holds {} tiles, not {ext}\n",
                    t.id,
                    t.tiles.format()
                ),
            ));
        }
        let tile = match self.cache.get(t.generation, id) {
            Some(hit) => hit,
            None => {
                let Some(tile) = self.read(t, id)? else {
                    return Ok(self.missing());
                };
                let tile = CachedTile::new(tile);
                self.cache.insert(t.generation, id, tile.clone());
                tile
            }
        };
        let hash = tile.hash;
        let gzip_out = tile.gzip && accepts_gzip(headers);
        let etag = if gzip_out {
            format!("\"{hash:016x}-gz\"")
        } else {
            format!("\"{hash:016x}\"")
        };
        let mut h = self.validator(&etag);
        if tile.gzip {
            append_vary(&mut h, "Accept-Encoding");
        }
        if let Some(r) = not_modified(&h, &etag, headers) {
            return Ok(r);
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(tile.format.content_type()),
        );
        let body = if gzip_out {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            tile.data
        } else if tile.gzip {
            gunzip(&tile.data)
                .map_err(|e| {
                    let e = crate::Error::Gzip {
                        path: t.tiles.path().to_path_buf(),
                        z: id.z(),
                        x: id.x(),
                        y: id.y(),
                        source: e,
                    };
                    tracing::warn!(tileset = %t.id, "{e}");
                    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
                })?
                .into()
        } else {
            tile.data
        };
        let mut r = Response::new(Body::from(body));
        *r.headers_mut() = h;
        Ok(r)
    }

    /// A UTFGrid as JSON, or as JSONP with `?callback=NAME` (NAME checked by
    /// [`crate::grid::valid_callback`], else 400). ETag: the XXH3-64 of the body.
    fn grid(
        &self,
        t: &Tileset,
        scheme: SchemeKind,
        [a, b, c]: [u32; 3],
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, Response> {
        let bad = |e: String| text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        let id = scheme
            .to_tile(a, b, c, t.ocularis_maxzoom)
            .map_err(|e| bad(e.to_string()))?;
        let callback =
            crate::route::query_param(query, "callback").map_err(|e| bad(e.to_string()))?;
        if let Some(cb) = &callback
            && !crate::grid::valid_callback(cb)
        {
            return Err(bad(format!(
                "callback must be 1 to {} characters of A-Z a-z 0-9 _ . $",
                crate::grid::MAX_CALLBACK
            )));
        }
        if !t.tiles.has_grids() {
            return Err(text(
                StatusCode::NOT_FOUND,
                format!("tileset {:?} has no UTFGrids\n", t.id),
            ));
        }
        let json = t.tiles.grid(id).map_err(|e| self.read_error(t, e))?;
        let Some(json) = json else {
            return Ok(self.missing());
        };
        let (body, ctype) = match &callback {
            Some(cb) => (
                crate::grid::jsonp(cb, &json),
                "application/javascript; charset=utf-8",
            ),
            None => (json, "application/json"),
        };
        Ok(self.etagged(body, ctype, headers, true))
    }

    /// The `--cameras` layer, or a 404 saying there is none.
    fn live(&self) -> Result<&crate::cameras::Live, Response> {
        self.config.cameras.as_deref().ok_or_else(|| {
            text(
                StatusCode::NOT_FOUND,
                "no cameras are served (tileserve --cameras)\n",
            )
        })
    }

    /// A body with an `ETag` of its content (so a 304 when it is unchanged) and
    /// `Cache-Control` from the config, or `no-cache` where the body is live state
    /// (`configured` false: cameras).
    fn etagged(
        &self,
        body: Vec<u8>,
        ctype: &'static str,
        headers: &HeaderMap,
        configured: bool,
    ) -> Response {
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
        let mut h = self.validator(&etag);
        if !configured {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        if let Some(r) = not_modified(&h, &etag, headers) {
            return r;
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        let mut r = Response::new(Body::from(body));
        *r.headers_mut() = h;
        r
    }

    /// `/WMTSCapabilities.xml` (every raster tileset) or `/{tileset}/WMTSCapabilities.xml`.
    fn wmts_capabilities(
        &self,
        tileset: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, Response> {
        let layers = match tileset {
            Some(id) => {
                let t = self.entry(id)?;
                vec![wmts::Layer::of(&t).ok_or_else(|| {
                    text(
                        StatusCode::NOT_FOUND,
                        format!(
                            "tileset {id:?} holds {} tiles; WMTS serves images\n",
                            t.tiles.format()
                        ),
                    )
                })?]
            }
            None => self
                .catalog
                .entries()
                .iter()
                .filter_map(|e| e.state.as_ref().ok().and_then(|t| wmts::Layer::of(t)))
                .collect(),
        };
        let doc = wmts::capabilities(&self.base(headers), &layers)
            .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
        let mut r = xml_response(StatusCode::OK, doc);
        self.cache(r.headers_mut());
        Ok(r)
    }

    /// WMTS KVP at `/wmts`: `REQUEST=GetCapabilities` or `GetTile` (WMTS 1.0.0 §7.2.2, §8.2.1);
    /// errors are OWS `ExceptionReport`s with the status codes of WMTS 1.0.0 table 28.
    fn wmts_kvp(&self, query: Option<&str>, headers: &HeaderMap) -> Result<Response, Response> {
        let param = |name: &'static str| {
            crate::route::query_param(query, name)
                .map_err(|e| WmtsError::invalid(name, e.to_string()).into_ows())
        };
        let required = |name: &'static str| {
            param(name)?.ok_or_else(|| {
                WmtsError {
                    status: StatusCode::BAD_REQUEST,
                    code: "MissingParameterValue",
                    locator: name,
                    message: format!("{name} is required"),
                }
                .into_ows()
            })
        };
        if let Some(service) = param("SERVICE")?
            && !service.eq_ignore_ascii_case("WMTS")
        {
            return Err(
                WmtsError::invalid("SERVICE", format!("service {service:?} is not WMTS"))
                    .into_ows(),
            );
        }
        let request = required("REQUEST")?;
        if request.eq_ignore_ascii_case("GetCapabilities") {
            return self.wmts_capabilities(None, headers);
        }
        if !request.eq_ignore_ascii_case("GetTile") {
            return Err(WmtsError {
                status: StatusCode::NOT_IMPLEMENTED,
                code: "OperationNotSupported",
                locator: "REQUEST",
                message: format!("request {request:?}: only GetCapabilities and GetTile"),
            }
            .into_ows());
        }
        let layer = required("LAYER")?;
        if self.catalog.get(&layer).is_none() {
            return Err(WmtsError::invalid("LAYER", format!("no layer {layer:?}")).into_ows());
        }
        let t = self.entry(&layer)?;
        let set = required("TILEMATRIXSET")?;
        let mut nums = [0u32; 3];
        for (n, name) in nums.iter_mut().zip(["TILEMATRIX", "TILEROW", "TILECOL"]) {
            let v = required(name)?;
            *n = crate::route::number(&v).ok_or_else(|| {
                WmtsError::invalid(name, format!("{name} {v:?} is not a number")).into_ows()
            })?;
        }
        if let Some(f) = param("FORMAT")?
            && f != t.tiles.format().content_type()
        {
            return Err(WmtsError::invalid(
                "FORMAT",
                format!(
                    "format {f:?}: this layer is {}",
                    t.tiles.format().content_type()
                ),
            )
            .into_ows());
        }
        // In KVP a parameter naming nothing is a 400 (WMTS 1.0.0 table 28), not the RESTful 404.
        let (scheme, nums) = wmts_resolve(&t, &set, nums).map_err(|mut e| {
            e.status = StatusCode::BAD_REQUEST;
            e.into_ows()
        })?;
        self.tile(&t, scheme, nums, None, headers)
    }

    /// The headers every cacheable answer carries: `ETag` and `Cache-Control`.
    fn validator(&self, etag: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(etag).expect("hex digits and quotes are valid"),
        );
        self.cache(&mut h);
        h
    }

    /// The answer for a valid address with nothing stored there.
    fn missing(&self) -> Response {
        let mut r = match self.config.missing {
            MissingTile::NotFound => text(StatusCode::NOT_FOUND, "no tile here\n"),
            MissingTile::NoContent => StatusCode::NO_CONTENT.into_response(),
        };
        self.cache(r.headers_mut());
        r
    }

    fn info(&self, t: &Tileset, [z, x, y]: [u32; 3]) -> Result<Response, Response> {
        let id = Xyz
            .to_tile(ZxyCoord { z, x, y })
            .map_err(|e| text(StatusCode::BAD_REQUEST, format!("{e}\n")))?;
        let Some(tile) = self.read(t, id)? else {
            return Err(text(StatusCode::NOT_FOUND, "no tile here\n"));
        };
        let raw = if tile.gzip {
            gunzip(&tile.data).ok()
        } else {
            Some(tile.data.to_vec())
        };
        let layers = match (&raw, tile.format) {
            (Some(raw), TileFormat::Pbf) => match crate::mvt::layers(raw) {
                Ok(l) => json!(l),
                Err(e) => json!({ "error": e.to_string() }),
            },
            _ => json!(null),
        };
        Ok(json_response(&json!({
            "tile": { "z": id.z(), "x": id.x(), "y": id.y(), "scheme": "tms" },
            "format": tile.format,
            "gzip": tile.gzip,
            "stored_bytes": tile.data.len(),
            "bytes": raw.as_ref().map(Vec::len),
            "layers": layers,
        })))
    }

    fn catalog_page(&self, headers: &HeaderMap) -> Response {
        let base = self.base(headers);
        let list: Vec<serde_json::Value> = self
            .catalog
            .entries()
            .iter()
            .map(|e| entry_json(e, &base))
            .collect();
        let wants_html = headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        let mut r = if wants_html {
            axum::response::Html(catalog_html(&list)).into_response()
        } else {
            json_response(&json!({ "tilesets": list }))
        };
        append_vary(r.headers_mut(), "Accept");
        r
    }
}

fn entry_json(e: &Entry, base: &str) -> serde_json::Value {
    let id = encode(&e.id);
    let mut v = json!({
        "id": e.id,
        "path": e.path.display().to_string(),
    });
    match &e.state {
        Err(err) => {
            v["state"] = json!("disabled");
            v["error"] = json!(err);
        }
        Ok(t) => {
            let m = t.tiles.metadata();
            let ext = t.tiles.format().extension();
            v["state"] = json!("ok");
            v["name"] = json!(m.name);
            v["format"] = json!(t.tiles.format());
            v["container"] = json!(t.tiles.container());
            if let Some(l) = t.tiles.layout() {
                v["layout"] = json!(l);
            }
            v["minzoom"] = json!(m.minzoom);
            v["maxzoom"] = json!(m.maxzoom);
            v["zoom_range_in_tiles"] = json!(t.tiles.zoom_range());
            v["ocularis_maxzoom"] = json!(t.ocularis_maxzoom);
            v["ocularis_maxzoom_overridden"] = json!(t.ocularis_overridden);
            v["derived"] = json!(m.derived);
            v["tilejson"] = json!(format!("{base}/{id}.json"));
            v["preview"] = json!(format!("{base}/{id}/preview"));
            v["tiles"] = json!({
                "xyz": template(base, &e.id, SchemeKind::Xyz, ext),
                "tms": template(base, &e.id, SchemeKind::Tms, ext),
                "ocularis": template(base, &e.id, SchemeKind::Ocularis, ext),
                "arcgis": template(base, &e.id, SchemeKind::ArcGis, ext),
            });
            if t.tiles.format().is_raster() {
                v["wmts"] = json!(format!("{base}/{id}/{}", crate::route::WMTS_CAPABILITIES));
            }
            if t.tiles.has_grids() {
                v["grids"] = json!({
                    "xyz": grid_template(base, &e.id, SchemeKind::Xyz),
                    "tms": grid_template(base, &e.id, SchemeKind::Tms),
                    "ocularis": grid_template(base, &e.id, SchemeKind::Ocularis),
                    "arcgis": grid_template(base, &e.id, SchemeKind::ArcGis),
                });
            }
        }
    }
    v
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn catalog_html(list: &[serde_json::Value]) -> String {
    let mut rows = String::new();
    for v in list {
        let id = v["id"].as_str().unwrap_or_default();
        let cell = |k: &str| html_escape(&v[k].to_string().replace('"', ""));
        if v["state"] == "ok" {
            let wmts = match v["wmts"].as_str() {
                Some(u) => format!(" · <a href=\"{}\">WMTS</a>", html_escape(u)),
                None => String::new(),
            };
            rows.push_str(&format!(
                "<tr><td><a href=\"/{}/preview\">{}</a></td><td>{}</td><td>{}–{}</td><td><a href=\"/{}.json\">TileJSON</a>{wmts}</td></tr>\n",
                html_escape(&encode(id)),
                html_escape(id),
                cell("format"),
                cell("minzoom"),
                cell("maxzoom"),
                html_escape(&encode(id)),
            ));
        } else {
            rows.push_str(&format!(
                "<tr><td>{}</td><td colspan=3>disabled: {}</td></tr>\n",
                html_escape(id),
                cell("error")
            ));
        }
    }
    format!(
        "<!doctype html><meta charset=utf-8><title>tileserve</title>\
         <style>body{{font:14px sans-serif;margin:2em}}td{{padding:2px 12px}}</style>\
         <h1>Tilesets</h1><table>{rows}</table><p><a href=\"/\" type=application/json>JSON</a></p>"
    )
}

/// What pixel positions of cameras on `t` are relative to: its highest zoom and its bounds.
fn frame(t: &Tileset) -> crate::cameras::Frame {
    let m = t.tiles.metadata();
    crate::cameras::Frame {
        maxzoom: t
            .tiles
            .zoom_range()
            .map(|(_, hi)| hi)
            .or(m.maxzoom)
            .unwrap_or(0),
        bounds: m.bounds,
    }
}

fn preview(t: &Tileset, cameras: bool) -> Response {
    const PAGE: &str = include_str!("preview.html");
    let m = t.tiles.metadata();
    let config = json!({
        "id": t.id,
        "name": m.name.clone().unwrap_or_else(|| t.id.clone()),
        "format": t.tiles.format(),
        "vector": t.tiles.format() == TileFormat::Pbf,
        "grids": t.tiles.has_grids(),
        "minzoom": m.minzoom.unwrap_or(0),
        "maxzoom": m.maxzoom.unwrap_or(0),
        "bounds": m.bounds,
        "center": m.center,
        "ocularis_maxzoom": t.ocularis_maxzoom,
        // Relative, so the page works under any prefix the router is mounted at.
        "base": ".",
        "tilejson": format!("../{}.json", encode(&t.id)),
        "ext": t.tiles.format().extension(),
        "cameras": cameras.then_some("cameras.geojson"),
    });
    // Inside a script element neither `</script` nor `<!--` may appear: `<` occurs in JSON only
    // inside strings, where `\u003c` means the same.
    let config = config.to_string().replace('<', "\\u003c");
    axum::response::Html(PAGE.replace("/*CONFIG*/{}", &config)).into_response()
}

/// Why a WMTS request names no tile.
struct WmtsError {
    status: StatusCode,
    code: &'static str,
    locator: &'static str,
    message: String,
}

impl WmtsError {
    fn invalid(locator: &'static str, message: String) -> WmtsError {
        WmtsError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidParameterValue",
            locator,
            message,
        }
    }

    fn into_ows(self) -> Response {
        match wmts::exception(self.code, Some(self.locator), &self.message) {
            Ok(doc) => xml_response(self.status, doc),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    }
}

/// The scheme and URL-order numbers of a WMTS tile (matrix, row, column) in a tile matrix set
/// of the tileset's.
fn wmts_resolve(
    t: &Tileset,
    set: &str,
    [m, row, col]: [u32; 3],
) -> Result<(SchemeKind, [u32; 3]), WmtsError> {
    let layer = wmts::Layer::of(t).ok_or_else(|| WmtsError {
        status: StatusCode::NOT_FOUND,
        code: "InvalidParameterValue",
        locator: "LAYER",
        message: format!(
            "tileset {:?} holds {} tiles; WMTS serves images",
            t.id,
            t.tiles.format()
        ),
    })?;
    let Some(s) = wmts::MatrixSet::parse(set).filter(|s| layer.has_matrix_set(*s)) else {
        let [a, b] = layer.matrix_sets().map(|s| s.identifier());
        return Err(WmtsError {
            status: StatusCode::NOT_FOUND,
            code: "InvalidParameterValue",
            locator: "TILEMATRIXSET",
            message: format!(
                "no tile matrix set {set:?} for {:?}: it has {a} and {b}",
                t.id
            ),
        });
    };
    let out_of_range = |message: String| WmtsError {
        status: StatusCode::BAD_REQUEST,
        code: "TileOutOfRange",
        locator: "TILEMATRIX",
        message,
    };
    let (scheme, nums) = match s.kind {
        wmts::MatrixSetKind::GoogleMapsCompatible => {
            if s.maxzoom.is_some_and(|z| m > u32::from(z)) {
                return Err(out_of_range(format!("no tile matrix {m} in {set}")));
            }
            (SchemeKind::ArcGis, [m, row, col])
        }
        // Ocularis URLs are level/x/y.
        wmts::MatrixSetKind::Ocularis => (SchemeKind::Ocularis, [m, col, row]),
    };
    scheme
        .to_tile(nums[0], nums[1], nums[2], t.ocularis_maxzoom)
        .map_err(|e| WmtsError {
            locator: match e {
                crate::CoordError::X { .. } => "TILECOL",
                crate::CoordError::Y { .. } => "TILEROW",
                _ => "TILEMATRIX",
            },
            ..out_of_range(e.to_string())
        })?;
    Ok((scheme, nums))
}

fn xml_response(status: StatusCode, doc: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/xml")], doc).into_response()
}

/// A 304 with the headers `h` if the request's `If-None-Match` matches `etag`.
fn not_modified(h: &HeaderMap, etag: &str, req: &HeaderMap) -> Option<Response> {
    let inm = req.get(header::IF_NONE_MATCH)?;
    none_match_hits(inm.as_bytes(), etag.as_bytes()).then(|| {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        *r.headers_mut() = h.clone();
        r
    })
}

fn append_vary(h: &mut HeaderMap, name: &'static str) {
    h.append(header::VARY, HeaderValue::from_static(name));
}

/// Whether `Accept-Encoding` allows gzip ([RFC 9110 §12.5.3]): `gzip` (or `x-gzip`) with a
/// non-zero q, or `*` with a non-zero q when gzip is not listed. No header: identity only, which
/// is what the RFC allows a server to assume for "no preference" in practice (curl without
/// `--compressed` sends none and cannot gunzip).
///
/// [RFC 9110 §12.5.3]: https://www.rfc-editor.org/rfc/rfc9110#section-12.5.3
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
                })
                .next()
                .map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                return q > 0.0;
            }
            if coding == "*" {
                star = Some(q > 0.0);
            }
        }
    }
    star.unwrap_or(false)
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, RFC 9110 §13.1.2: `W/` is
/// ignored on both sides).
pub fn none_match_hits(if_none_match: &[u8], etag: &[u8]) -> bool {
    let strip = |t: &[u8]| -> Vec<u8> {
        let t = t.trim_ascii();
        t.strip_prefix(b"W/").unwrap_or(t).to_vec()
    };
    let etag = strip(etag);
    if if_none_match.trim_ascii() == b"*" {
        return true;
    }
    if_none_match
        .split(|&b| b == b',')
        .any(|t| strip(t) == etag)
}

fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::MultiGzDecoder::new(data)
        .take(MAX_GUNZIPPED + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_GUNZIPPED {
        return Err(std::io::Error::other(
            "decompressed tile larger than 64 MiB",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn accept_encoding_table() {
        let cases = [
            (vec![], false),
            (vec![("accept-encoding", "gzip")], true),
            (
                vec![("accept-encoding", "deflate, gzip;q=1.0, *;q=0.5")],
                true,
            ),
            (vec![("accept-encoding", "gzip;q=0")], false),
            (vec![("accept-encoding", "br, *")], true),
            (vec![("accept-encoding", "*;q=0")], false),
            (vec![("accept-encoding", "identity")], false),
            (vec![("accept-encoding", "GZIP ; q=0.001")], true),
            (vec![("accept-encoding", "gzip;q=abc")], false),
            (
                vec![("accept-encoding", "br"), ("accept-encoding", "x-gzip")],
                true,
            ),
        ];
        for (hs, want) in cases {
            assert_eq!(accepts_gzip(&h(&hs)), want, "{hs:?}");
        }
    }

    #[test]
    fn if_none_match_table() {
        let tag = br#""abc-gz""#;
        assert!(none_match_hits(br#""abc-gz""#, tag));
        assert!(none_match_hits(br#"W/"abc-gz""#, tag));
        assert!(none_match_hits(br#""x", "abc-gz""#, tag));
        assert!(none_match_hits(b"*", tag));
        assert!(!none_match_hits(br#""abc""#, tag));
        assert!(!none_match_hits(b"", tag));
    }

    #[test]
    fn gzip_bomb_is_refused() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..65 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert!(gunzip(&bomb).is_err());
    }
}

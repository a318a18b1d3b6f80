//! `tileserve`: MBTiles and PMTiles over HTTP, a thin shell over `nvrkit_mbtiles::http::router`;
//! `tileserve convert` (src/convert.rs); the `--nvr` camera-state poller (src/nvr.rs).

// A CLI's output is its job: the URLs on stdout, a fatal error on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use nvrkit_cli::units::{parse_bytes, parse_duration};
use nvrkit_mbtiles::http::{Config, Cors, MissingTile};
use nvrkit_mbtiles::tilejson::template;
use nvrkit_mbtiles::{Catalog, SchemeKind, catalog::log_changes};
use nvrkit_net::threads::ServingThreads;

const EXAMPLES: &str = "\
Examples:
  tileserve world.mbtiles
      serve one file at http://127.0.0.1:3000/world/{z}/{x}/{y}.png (XYZ),
      /world/tms/…, /world/ocularis/{level}/{x}/{y}, /world/MapServer/tile/{z}/{y}/{x},
      TileJSON at /world.json and a preview map at /world/preview
  tileserve maps/ --listen 0.0.0.0:8080 --cors https://vms.example.com
      every *.mbtiles in maps/ (files added, replaced or removed are picked up within --poll)
  tileserve floor.mbtiles --ocularis-maxzoom floor=5 --missing 204 --cache-control 'public, max-age=600'
  tileserve world.mbtiles city.pmtiles
      PMTiles v3 files are served beside MBTiles, in the same schemes
  tileserve floor.mbtiles --cameras cameras.json --nvr http://127.0.0.1:8080
      draw the cameras of cameras.json on the preview, coloured by their state in nvr
      (online, offline, alarm for --alarm-hold after an event)
  tileserve convert world.mbtiles world.pmtiles
      write a PMTiles copy of an MBTiles file (and `convert world.pmtiles world.mbtiles` back)";

/// Serve MBTiles and PMTiles files over HTTP: XYZ, TMS, Ocularis and ArcGIS tile URLs, TileJSON 3.0, a JSON
/// catalog at `/` and an HTML preview per tileset.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLES, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// MBTiles or PMTiles files, or directories whose *.mbtiles and *.pmtiles files are served
    /// (the id is the file stem).
    #[arg(required = true, value_name = "FILE|DIR")]
    sources: Vec<PathBuf>,

    /// Address to listen on (port 0: any free port; the URL printed at start shows which).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// Origin allowed to read tiles from a browser (repeatable); `*` for any, `none` for no CORS
    /// headers.
    #[arg(long, value_name = "ORIGIN", default_value = "*")]
    cors: Vec<String>,

    /// Cache-Control header of tiles and TileJSON; `none` for no header. The default makes
    /// clients revalidate by ETag (a 304), so a replaced file shows at once.
    #[arg(long, value_name = "VALUE", default_value = Config::DEFAULT_CACHE_CONTROL)]
    cache_control: String,

    /// Status for a valid tile address with no tile in the file: 404 or 204.
    #[arg(long, value_name = "STATUS", default_value_t = 404)]
    missing: u16,

    /// Ocularis level 0 for tileset ID is this zoom (default: the highest zoom in its tiles).
    /// Repeatable.
    #[arg(long, value_name = "ID=ZOOM")]
    ocularis_maxzoom: Vec<String>,

    /// How often to look at the files for changes (`0`: never).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    poll: Duration,

    /// Base URL written into TileJSON and the catalog (default: http:// and the request's Host).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,

    /// Server threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Tiles kept in memory across all tilesets, e.g. `64M` (`0`: read every tile from its file).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_bytes)]
    cache_size: u64,
    /// The old spelling of --cache-size, in MiB.
    #[arg(long, value_name = "MIB", hide = true, conflicts_with = "cache_size")]
    cache_mb: Option<u64>,

    /// Most connections at once; one more is answered 503.
    #[arg(long, value_name = "N", default_value_t = nvrkit_net::http::Config::DEFAULT_MAX_CONNS)]
    max_conns: usize,
    /// Most connections at once from one client address (IPv6: its /64); default: no cap.
    #[arg(long, value_name = "N")]
    max_conns_per_addr: Option<usize>,
    /// A request must be complete this long after its first byte.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,

    /// Cameras to draw on the maps: a JSON file `{"cameras": [{"id", "lon", "lat" | "pixel",
    /// "tileset", "heading", "fov", "name"}]}` (docs/mbtiles.md), served at
    /// /{tileset}/cameras.geojson and /{tileset}/cameras/{z}/{x}/{y}.pbf.
    #[arg(long, value_name = "FILE")]
    cameras: Option<PathBuf>,

    /// nvr's HTTP API (`http://127.0.0.1:8080`), polled every second for the cameras' state:
    /// online from /api/cameras, alarm from /api/events.
    #[arg(long, value_name = "URL", requires = "cameras")]
    nvr: Option<String>,

    /// With --nvr: a camera shows as alarming this long after its last event.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    alarm_hold: Duration,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Convert MBTiles to PMTiles v3 or back (by the extensions: IN.mbtiles OUT.pmtiles, or
    /// IN.pmtiles OUT.mbtiles). Equal tiles are stored once; OUT must not exist.
    Convert(convert::Args),
    #[command(flatten)]
    Docs(nvrkit_cli::docs::DocsCommand),
}

mod convert;
mod nvr;

fn main() -> ExitCode {
    nvrkit_cli::init_logging();
    let args = Args::parse();
    match &args.command {
        Some(Command::Docs(d)) => return d.run(<Args as clap::CommandFactory>::command()),
        Some(Command::Convert(c)) => return nvrkit_cli::exit("tileserve", convert::run(c)),
        None => {}
    }
    nvrkit_cli::exit("tileserve", run(args))
}

fn config(args: &Args) -> anyhow::Result<Config> {
    let mut config = Config::default();
    config.cors = match args.cors.as_slice() {
        [one] if one == "*" => Cors::Any,
        [one] if one.eq_ignore_ascii_case("none") => Cors::None,
        list => {
            if list
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case("none"))
            {
                bail!("--cors: `*` and `none` cannot be combined with origins");
            }
            Cors::Origins(list.to_vec())
        }
    };
    config.cache_control = match args.cache_control.as_str() {
        "none" => None,
        v => {
            axum::http::HeaderValue::from_str(v)
                .with_context(|| format!("--cache-control {v:?} is not a valid header value"))?;
            Some(v.to_string())
        }
    };
    config.missing = match args.missing {
        404 => MissingTile::NotFound,
        204 => MissingTile::NoContent,
        other => bail!("--missing {other}: use 404 or 204"),
    };
    config.public_url = args.public_url.clone();
    let cache_bytes = match args.cache_mb {
        Some(mib) => mib
            .checked_mul(1 << 20)
            .context("--cache-mb is too large")?,
        None => args.cache_size,
    };
    config.cache_bytes = usize::try_from(cache_bytes).context("--cache-size is too large")?;
    Ok(config)
}

fn overrides(args: &Args) -> anyhow::Result<HashMap<String, u8>> {
    args.ocularis_maxzoom
        .iter()
        .map(|s| {
            let (id, z) = s
                .rsplit_once('=')
                .with_context(|| format!("--ocularis-maxzoom {s:?}: expected ID=ZOOM"))?;
            let z: u8 = z
                .parse()
                .ok()
                .filter(|z| *z <= nvrkit_mbtiles::MAX_ZOOM)
                .with_context(|| format!("--ocularis-maxzoom {s:?}: zoom must be 0..=30"))?;
            Ok((id.to_string(), z))
        })
        .collect()
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let overrides = overrides(&args)?;
    for s in &args.sources {
        if !s.exists() {
            bail!("{}: no such file or directory", s.display());
        }
    }
    let catalog = Arc::new(Catalog::new(args.sources.clone(), overrides));
    let changes = catalog.refresh().context("reading the tilesets")?;
    log_changes(&changes);
    let mut config = config;
    if let Some(path) = &args.cameras {
        let live = Arc::new(cameras(path, &catalog)?);
        if let Some(url) = &args.nvr {
            let base = url.trim_end_matches('/').to_string();
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                bail!("--nvr {url:?}: expected http://HOST:PORT");
            }
            nvr::spawn(live.clone(), base, args.alarm_hold).context("starting the nvr poller")?;
        }
        config.cameras = Some(live);
    }

    // One single-threaded runtime per thread, fed connections round-robin by an acceptor thread
    // (actix's layout). Against one multi-threaded runtime on the 2 shared cores: the same CPU
    // per request, fewer cross-thread wake-ups per request (benches/compare/mbtiles.sh). The
    // router, and so the tile cache, is shared by all threads.
    let threads = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
        .max(1);
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    print_banner(&catalog, addr, &args, &config)?;
    let app = nvrkit_mbtiles::http::router(catalog.clone(), config);
    // One server, and so one connection limiter, for all threads.
    let server = nvrkit_net::http::Server::new(nvrkit_net::http::Config {
        max_conns: args.max_conns,
        max_conns_per_addr: args.max_conns_per_addr,
        request_timeout: args.request_timeout,
        idle_timeout: args.idle_timeout,
    });
    let watched = catalog.clone();
    let poll = args.poll;
    let threads = ServingThreads::start(threads, "http", move |i, rx| {
        let (app, server) = (app.clone(), server.clone());
        let watch = (i == 0 && !poll.is_zero()).then(|| watched.clone());
        async move {
            if let Some(c) = watch {
                c.watch(poll);
            }
            server
                .serve_incoming(Worker { rx }, app, std::future::pending())
                .await;
        }
    })
    .context("starting the server threads")?;
    // This thread accepts, and deals the connections to the serving threads in turn.
    for (n, conn) in listener.incoming().enumerate() {
        match conn {
            Ok(tcp) => {
                let _ = tcp.set_nonblocking(true);
                let peer = tcp.peer_addr().unwrap_or(addr);
                if threads.hand(n, (tcp, peer)).is_err() {
                    // Only a panic ends a serving thread.
                    let _ = threads.join();
                    bail!("a server thread panicked");
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: say so, back off, go on.
                tracing::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(())
}

/// Reads and checks `--cameras FILE`: every tileset a camera names must be served.
fn cameras(
    path: &std::path::Path,
    catalog: &Catalog,
) -> anyhow::Result<nvrkit_mbtiles::cameras::Live> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(nvrkit_mbtiles::cameras::MAX_CAMERAS_FILE as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .with_context(|| format!("--cameras {}", path.display()))?;
    let list = nvrkit_mbtiles::cameras::parse(&bytes)
        .with_context(|| format!("--cameras {}", path.display()))?;
    for c in &list {
        if let Some(t) = &c.tileset
            && catalog.get(t).is_none()
        {
            bail!(
                "--cameras {}: camera {:?} is on tileset {t:?}, which is not served",
                path.display(),
                c.id
            );
        }
    }
    Ok(nvrkit_mbtiles::cameras::Live::new(list))
}

/// A server thread's share of the connections.
struct Worker {
    rx: tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
}

impl nvrkit_net::http::Accept for Worker {
    async fn accept(&mut self) -> Option<(tokio::net::TcpStream, SocketAddr)> {
        loop {
            // None: the acceptor is gone, no more connections, ever.
            let (tcp, peer) = self.rx.recv().await?;
            match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => return Some((tcp, peer)),
                Err(e) => tracing::warn!("{peer}: {e}"),
            }
        }
    }
}

fn print_banner(
    catalog: &Catalog,
    addr: SocketAddr,
    args: &Args,
    config: &Config,
) -> anyhow::Result<()> {
    let base = match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{addr}"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "tileserve listening on {base}/ (catalog: {base}/, WMTS: {base}/{})",
        nvrkit_mbtiles::route::WMTS_CAPABILITIES
    )?;
    writeln!(
        out,
        "  cors: {}; cache-control: {}; missing tile: {}; poll: {:?}; tile cache: {} MiB",
        args.cors.join(" "),
        config.cache_control.as_deref().unwrap_or("none"),
        args.missing,
        args.poll,
        config.cache_bytes >> 20
    )?;
    let entries = catalog.entries();
    if entries.is_empty() {
        writeln!(
            out,
            "  no tilesets yet (directories are watched for *.mbtiles and *.pmtiles)"
        )?;
    }
    for e in entries {
        match &e.state {
            Err(err) => writeln!(out, "  {} DISABLED: {err}", e.id)?,
            Ok(t) => {
                let fmt = t.tiles.format();
                let zooms = t
                    .tiles
                    .zoom_range()
                    .map_or("no tiles".to_string(), |(a, b)| format!("zoom {a}..={b}"));
                writeln!(
                    out,
                    "  {} ({fmt}, {zooms}, ocularis level 0 = zoom {})",
                    e.id, t.ocularis_maxzoom
                )?;
                for s in SchemeKind::ALL {
                    writeln!(
                        out,
                        "    {:<9}{}",
                        s.name(),
                        template(&base, &e.id, s, fmt.extension())
                    )?;
                }
                writeln!(
                    out,
                    "    tilejson {base}/{}.json",
                    nvrkit_mbtiles::route::encode(&e.id)
                )?;
                writeln!(
                    out,
                    "    preview  {base}/{}/preview",
                    nvrkit_mbtiles::route::encode(&e.id)
                )?;
                if t.tiles.has_grids() {
                    writeln!(
                        out,
                        "    utfgrid  {}",
                        nvrkit_mbtiles::tilejson::grid_template(&base, &e.id, SchemeKind::Xyz)
                    )?;
                }
                if let Some(live) = &config.cameras
                    && live.cameras().iter().any(|c| c.on(&e.id))
                {
                    let id = nvrkit_mbtiles::route::encode(&e.id);
                    writeln!(out, "    cameras  {base}/{id}/cameras.geojson")?;
                    writeln!(
                        out,
                        "    cameras  {base}/{id}/cameras/{{z}}/{{x}}/{{y}}.pbf"
                    )?;
                }
                if fmt.is_raster() {
                    writeln!(
                        out,
                        "    wmts     {base}/{}/{}",
                        nvrkit_mbtiles::route::encode(&e.id),
                        nvrkit_mbtiles::route::WMTS_CAPABILITIES
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

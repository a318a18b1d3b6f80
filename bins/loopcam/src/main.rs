//! `loopcam`: a virtual IP camera. Serves MP4 clips as endless, real-time RTSP streams.

// A command-line tool prints its results and errors: the library lint against printing does not
// apply here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use nvrkit_feed::Clip;
use nvrkit_feed::rtsp::auth::Auth;
use nvrkit_feed::server::{Config, Server};
use nvrkit_media::Demuxer;

const EXAMPLES: &str = "\
Examples:
  loopcam                                  serve the embedded sample at rtsp://127.0.0.1:8554/sample
  loopcam clip.mp4                         serve clip.mp4 at rtsp://HOST:8554/clip
  loopcam ../shared/testdata/              serve every MP4 in a directory, one path per file stem
  loopcam --auth admin:secret cam.mp4      require Basic or Digest credentials
  loopcam --listen 127.0.0.1:0 clip.mp4    any free port; the URL printed on stdout says which
  ffplay -rtsp_transport tcp rtsp://127.0.0.1:8554/sample

Each stream's URL is printed alone on a line on stdout (logs go to stderr), so scripts can read them.";

/// A virtual IP camera: MP4 clips as endless, seamless, real-time RTSP streams.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
struct Cli {
    /// MP4 files, or directories of them; the embedded sample when none is given.
    inputs: Vec<PathBuf>,
    /// Where to listen for RTSP.
    #[arg(long, default_value = "0.0.0.0:8554")]
    listen: SocketAddr,
    /// Require these credentials (Basic and Digest), as `user:pass`.
    #[arg(long, value_name = "USER:PASS")]
    auth: Option<String>,
    /// Largest RTP packet in bytes, header included.
    #[arg(long, default_value_t = 1400)]
    mtu: usize,
    /// New clients wait for the next keyframe instead of receiving the current GOP at once.
    #[arg(long)]
    strict_start: bool,
    /// Offer only RTP over TCP (interleaved), no UDP ports.
    #[arg(long)]
    no_udp: bool,
    /// Idle sessions end after this many seconds.
    #[arg(long, default_value_t = 60)]
    session_timeout: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish the loop over RTMP (planned: not in this version).
    Push {
        /// rtmp://server/app/stream
        url: String,
        /// The clip; the embedded sample when left out.
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,mp4_atom=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loopcam: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopcam: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The clips to serve: every input file, every MP4 in every input directory. A clip that cannot
/// be served is reported and skipped.
fn load_clips(inputs: &[PathBuf]) -> anyhow::Result<Vec<Arc<Clip>>> {
    if inputs.is_empty() {
        let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
        return Ok(vec![Clip::load("sample", &demux)?]);
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read directory {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| {
                        e.eq_ignore_ascii_case("mp4") || e.eq_ignore_ascii_case("m4v")
                    })
                })
                .collect();
            found.sort();
            if found.is_empty() {
                tracing::warn!("{}: no .mp4 files", input.display());
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let mut clips = Vec::new();
    let mut names = std::collections::HashSet::new();
    for path in files {
        let name = stem(&path);
        match load_one(&path, &name) {
            Ok(c) if names.insert(name.clone()) => clips.push(c),
            Ok(_) => tracing::warn!(
                "{}: skipped: another clip is already served as /{name}",
                path.display()
            ),
            Err(e) => tracing::warn!("{}: skipped: {e:#}", path.display()),
        }
    }
    if clips.is_empty() {
        bail!("no clip can be served");
    }
    Ok(clips)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace([' ', '/', '?', '#'], "_"))
        .unwrap_or_else(|| "clip".into())
}

fn load_one(path: &Path, name: &str) -> anyhow::Result<Arc<Clip>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let demux = Demuxer::from_bytes(path.display().to_string(), bytes.into())?;
    for s in demux.skipped_tracks() {
        tracing::info!(
            "{}: track {} ({}) not served: {}",
            path.display(),
            s.track_id,
            s.codec,
            s.reason
        );
    }
    Ok(Clip::load(name, &demux)?)
}

/// The host to print for a listen address: the address itself, or 127.0.0.1 for a wildcard.
fn printable_host(listen: SocketAddr) -> String {
    match listen.ip() {
        ip if ip.is_unspecified() => match ip {
            IpAddr::V4(_) => "127.0.0.1".into(),
            IpAddr::V6(_) => "::1".into(),
        },
        ip => ip.to_string(),
    }
}

/// This machine's outward-facing address, for the log (no packet is sent: a UDP connect only
/// picks a route).
fn primary_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    s.local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Push { url, .. }) = &cli.command {
        bail!("`loopcam push {url}`: RTMP publishing is planned for a later version of loopcam");
    }
    let auth = match &cli.auth {
        Some(spec) => Some(Auth::parse(spec).context("--auth wants USER:PASS")?),
        None => None,
    };
    let clips = load_clips(&cli.inputs)?;
    let config = Config {
        listen: cli.listen,
        mtu: cli.mtu.clamp(200, 65_000),
        auth,
        strict_start: cli.strict_start,
        session_timeout: Duration::from_secs(cli.session_timeout.max(5)),
        udp: !cli.no_udp,
        ..Config::default()
    };
    let server = Server::start(config, clips).await?;
    let host = printable_host(cli.listen);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for url in server.urls(&host) {
            writeln!(out, "{url}")?;
        }
        out.flush()?;
    }
    if cli.listen.ip().is_unspecified()
        && let Some(ip) = primary_ip()
    {
        tracing::info!(
            "also reachable from other machines at rtsp://{ip}:{}/…",
            server.local_addr().port()
        );
    }
    if let Some((rtp, rtcp)) = server.udp_ports() {
        tracing::info!(
            "RTSP on {}, RTP/RTCP over UDP from ports {rtp}/{rtcp}",
            server.local_addr()
        );
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down: sending RTCP BYE to every session");
    server.shutdown().await;
    Ok(())
}

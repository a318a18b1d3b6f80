//! `loopcam`: a virtual IP camera. Serves MP4 clips as endless, real-time RTSP streams.

// A command-line tool prints its results and errors: the library lint against printing does not
// apply here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use nvrkit_cli::units::parse_duration;
use nvrkit_feed::Clip;
use nvrkit_feed::TlsSource;
use nvrkit_feed::alarm::{self, Alarm, Dispatcher, Tap, Target};
use nvrkit_feed::onvif::Onvif;
use nvrkit_feed::rtmp::{EnhancedRtmp, Push, PushConfig, RtmpUrl};
use nvrkit_feed::rtsp::auth::Auth;
use nvrkit_feed::server::{Config, Looper, Server};
use nvrkit_feed::snapshot::{Snapshot, load_sidecar, sidecar_path};
use nvrkit_feed::substream::sub_name;
use nvrkit_media::Demuxer;

mod check;

const EXAMPLES: &str = "\
Examples:
  loopcam                                  serve the embedded sample at rtsp://127.0.0.1:8554/sample
  loopcam clip.mp4                         serve clip.mp4 at rtsp://HOST:8554/clip
  loopcam ../shared/testdata/              serve every .mp4/.m4v/.mov in a directory, one path per stem
  loopcam --auth admin:secret cam.mp4      require Basic or Digest credentials
  loopcam --listen 127.0.0.1:0 clip.mp4    any free port; the URL printed on stdout says which
  loopcam --max-conns-per-addr 64 --request-timeout 5s
                                           cap each client address; requests done within 5 s
  loopcam --rtsps-listen 0.0.0.0:8322      RTSPS too (self-signed; its fingerprint is logged)
  loopcam --rtsps-listen 0.0.0.0:8322 --tls-cert cert.pem --tls-key key.pem
  ffprobe -rtsp_transport tcp rtsps://127.0.0.1:8322/sample
  ffplay -rtsp_transport tcp rtsp://127.0.0.1:8554/sample
  loopcam --onvif-listen 127.0.0.1:8000 a.mp4 b.mp4
                                           ONVIF devices at http://127.0.0.1:8000 (a) and :8001 (b)
  loopcam bikes.mp4 --alarm bikes@3.2s=smtp://127.0.0.1:2525
                                           every loop, when the frame at 3.2 s is sent: ONVIF motion
                                           (ON, OFF 1 s later) and a Hikvision-style alarm mail with
                                           the snapshot to camevents on port 2525
  loopcam bikes.mp4 --alarm bikes@0s=onvif --alarm bikes@5s=onvif
                                           ONVIF motion events only, twice a loop
  curl -o a.jpg http://127.0.0.1:8000/snapshot/a.jpg
                                           the JPEG of a's latest keyframe (its GetSnapshotUri)
  loopcam cam.mp4                          with cam.sub.mp4 beside it: one device, profiles main
                                           (rtsp://HOST:8554/cam) and sub (rtsp://HOST:8554/cam/sub)
  ffmpeg -i cam.mp4 -vf scale=640:-2 -c:a copy cam.sub.mp4
                                           make a sub stream that aligns (same frames, same length)
  loopcam push rtmp://127.0.0.1/live/cam clip.mp4
                                           publish the loop to an RTMP server (nginx-rtmp, Wowza…)
  loopcam push rtmp://a/live/cam clip.mp4 --push rtmps://b/live/cam?key=K
                                           the same loop to two servers at once
  loopcam a.mp4 b.mp4 --push 'rtmp://127.0.0.1/live/{name}'
                                           serve RTSP and publish every clip over RTMP as well
  loopcam check clip.mp4 ../shared/testdata/
                                           loop each clip 1,000 times offline and report its seams
  loopcam check --json clips/              the same as one JSON document (exit 1 if one fails)

Fault modes (a camera that misbehaves on purpose; docs/test-rig.md): add a query to any stream URL,
rtsp://HOST:8554/sample?denytcp&stall=10s, or serve aliases from --faults FILE. Durations as every flag.
  denytcp, denyudp           SETUP over that transport is answered 461 Unsupported Transport
  auth=basic|digest          this path asks for credentials in that scheme only: --auth's, or
                             admin:admin without --auth
  stall=10s                  RTP and RTCP stop after 10 s of media; RTSP keeps answering and the
                             session stays alive
  drop=1%                    1 % of RTP packets over UDP are not sent (seeded per session)
  jitter=50ms                each RTP packet over UDP leaves up to 50 ms late, order kept
  bye_at_seam                RTCP BYE at the loop seam, then no more media
  disconnect_every=60s       the connection is closed (no BYE) 60 s after its first faulted request
  session_expires=120s       every request 120 s after SETUP is answered 401 (the Session header
                             announces a timeout no longer, so clients send a keepalive)
  noidr=5s                   no keyframe for 5 s (media time) after each PLAY: the frames between
                             keyframes only
  ts_reset_at_seam           at each seam every track's RTP timestamps start again from RTP-Info's
                             rtptime (what ffmpeg -stream_loop does to a VMS); SSRC and seq run on
  dts_backwards_at_seam      at each seam timestamps step back two video frames (the new loop's
                             first frame one frame before the last), on time again half a loop later
  fps=12.5                   only non-reference frames dropped (H.264 nal_ref_idc 0, H.265 *_N in
                             the top sub-layer), evenly, down to 12.5 fps; a rate the clip cannot
                             reach so is refused (400) with the lowest it reaches
  sps_change_at_seam[=CLIP]  loops alternate with the served clip CLIP (bare: the first other clip
                             that fits): another size, its SPS/PPS in band; same codec and audio
  e.g. loopcam bikes.mp4 small.mp4, then rtsp://HOST:8554/bikes?sps_change_at_seam=small
With a query, the SDP's control URLs are absolute and end with the query, so clients keep it.
A fault file has one alias a line, ALIAS = CLIP?QUERY (# comments), each served as its own path:
  bikes-notcp = bikes?denytcp
  bikes-stall = bikes?stall=10s&session_expires=2m

Sub streams: clip.sub.mp4 beside clip.mp4 is served at /clip/sub and is the second ONVIF profile
(sub) of clip's device, not a device of its own; it must have the same frame rate, frame count and
length as clip.mp4 (its loop stays aligned frame for frame), else loopcam refuses to start.
Snapshots: H.264 clips' keyframes are decoded (OpenH264); an H.265 clip's snapshot is clip.jpg
beside clip.mp4, else its snapshot URL answers 501.

Each stream's URL is printed alone on a line on stdout (logs go to stderr), so scripts can read them.";

/// A virtual IP camera: MP4 clips as endless, seamless, real-time RTSP streams.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
struct Cli {
    /// MP4 or QuickTime (.mov) files, or directories of them; the embedded sample when none is
    /// given.
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
    /// Set TCP_NODELAY on RTSP connections: every frame becomes its own TCP segment even when
    /// the client has not acknowledged the last one. Off by default (half the CPU at hundreds
    /// of clients, no added delay for clients that keep up).
    #[arg(long)]
    tcp_nodelay: bool,
    /// Serving threads (default: one per core), each a runtime of its own serving the
    /// connections it is given round-robin; 1 serves every client from one thread.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Also serve RTSP over TLS (`rtsps://`) here; RTP goes interleaved on the TLS connection.
    /// The IANA port is 322; unprivileged setups use 8322.
    #[arg(long, value_name = "ADDR")]
    rtsps_listen: Option<SocketAddr>,
    /// RTSPS certificate chain (PEM, leaf first); a self-signed certificate when left out.
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "rtsps_listen"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A set-up RTSP session with no keepalive (request, or RTCP over UDP) for this long ends
    /// (at least 5s; a session playing over TCP lives as long as its connection).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    session_timeout: Duration,
    /// Most connections at once, RTSP and RTSPS together; one more is answered 503.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_conns: usize,
    /// Most connections at once from one client address (IPv6: its /64); default: no cap (a
    /// VMS opens many sessions from one address).
    #[arg(long, value_name = "N")]
    max_conns_per_addr: Option<usize>,
    /// An RTSP request (and an RTSPS handshake) must be complete this long after its first
    /// byte.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// A connection with no complete request for this long is closed (a partial request does
    /// not count; one holding a session waits --session-timeout if longer).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// The first ONVIF device's HTTP address: one device per clip, on consecutive ports in
    /// clip-name order, each at http://HOST:PORT/onvif/device_service (a port already taken
    /// is a warning and that clip has no device), with its snapshot at
    /// http://HOST:PORT/snapshot/NAME.jpg; a sub stream (clip.sub.mp4) is the device's second
    /// profile. With --auth, WS-UsernameToken (PasswordDigest) or HTTP Digest is required, and
    /// HTTP Digest on the snapshot URL (Basic only with --snapshot-basic-auth).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8000")]
    onvif_listen: SocketAddr,
    /// Serve no ONVIF devices (and no WS-Discovery).
    #[arg(long)]
    no_onvif: bool,
    /// With --auth, also take HTTP Basic on the snapshot URLs, offered after Digest, for a
    /// client that knows no Digest. Off by default: Basic sends the password in clear over
    /// plain HTTP (it opens RTSP and SOAP too), so a Basic header gets 401 with a Digest
    /// challenge.
    #[arg(long, requires = "auth")]
    snapshot_basic_auth: bool,
    /// Answer directed (unicast) WS-Discovery probes on this UDP address; no multicast group
    /// is joined.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:3702")]
    discovery_listen: SocketAddr,
    /// Answer no WS-Discovery probes (the ONVIF devices stay).
    #[arg(long)]
    no_discovery: bool,
    /// Serve fault aliases from FILE: lines `ALIAS = CLIP?QUERY` (see "Fault modes" below),
    /// each a path of its own playing that clip with those faults.
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// A scripted alarm, `CLIP@POS=onvif` or `CLIP@POS=smtp://HOST:PORT` (repeatable): every
    /// loop, when the pacer sends the video frame presented at POS (a duration into the loop,
    /// `3.2s`), the clip's ONVIF device raises motion (ON, OFF after 1 s or half the loop) on
    /// tns1:RuleEngine/CellMotionDetector/Motion and tns1:VideoSource/MotionAlarm, timed at the
    /// frame's wall clock; `smtp://` also mails a Hikvision-style motion alarm (X-Mailer:
    /// HIKMailer) with the JPEG of the keyframe at or before the alarm frame, named
    /// `CLIP_UTC_lapN_posS_keyK.jpg` after the alarm frame and that keyframe (headers
    /// X-Loopcam-Alarm and X-Loopcam-Snapshot say the same).
    /// A failed mail is a warning (3 attempts); the loop never waits for one.
    #[arg(long = "alarm", value_name = "CLIP@POS=TARGET")]
    alarms: Vec<String>,
    #[command(flatten)]
    push: PushArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run each clip's loop offline (no sockets, as fast as it computes) for many loops and
    /// report, per track, the step at the seam, frames dropped or gaps inserted, the A/V offset
    /// and a verdict. Exits 1 on an overlap, time going backwards, an offset above half an
    /// audio frame, or a clip that cannot be looped; an announced gap (audio shorter than
    /// video) is reported and passes.
    Check(check::Args),
    /// Publish the loop over RTMP (and RTMPS) to a server, without serving RTSP.
    Push {
        #[arg(help = "rtmp[s]://server[:port]/app/stream[?key=…]")]
        url: String,
        /// The clip; the embedded sample when left out.
        file: Option<PathBuf>,
        #[command(flatten)]
        push: PushArgs,
    },
    #[command(flatten)]
    Docs(nvrkit_cli::docs::DocsCommand),
}

/// RTMP publishing options, for `loopcam push` and beside RTSP.
#[derive(Debug, Args)]
struct PushArgs {
    /// Also publish to this RTMP URL (repeatable). Beside RTSP with several clips, put `{name}`
    /// in the URL: one push per clip.
    #[arg(long = "push", value_name = "URL")]
    urls: Vec<String>,
    /// Send H.265 as Enhanced RTMP (`hvc1`) even when the server does not announce it
    /// (node-media-server 4, SRS 6, mediamtx take it without announcing).
    #[arg(long)]
    enhanced_rtmp: bool,
    /// Trust the certificates in this PEM file for rtmps:// (besides the Mozilla roots).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// RTMP time in ms of the first frame (tests of the 32-bit wrap).
    #[arg(long, default_value_t = 0, hide = true)]
    rtmp_start_ms: u32,
}

impl PushArgs {
    fn config(&self, url: &str) -> anyhow::Result<PushConfig> {
        self.configure(PushConfig::new(RtmpUrl::parse(url)?))
    }

    fn configure(&self, mut c: PushConfig) -> anyhow::Result<PushConfig> {
        if self.enhanced_rtmp {
            c.enhanced_rtmp = EnhancedRtmp::Always;
        }
        if let Some(ca) = &self.ca_file {
            c.extra_roots = nvrkit_feed::rtmp::load_pem_certificates(ca)?;
        }
        c.initial_timestamp = self.rtmp_start_ms;
        Ok(c)
    }
}

fn main() -> ExitCode {
    nvrkit_cli::init_logging();
    let cli = Cli::parse();
    if let Some(Command::Docs(d)) = &cli.command {
        return d.run(<Cli as clap::CommandFactory>::command());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loopcam: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    nvrkit_cli::exit("loopcam", runtime.block_on(run(cli)))
}

/// The clips to serve, and the sidecar snapshot JPEGs of the H.265 ones.
struct Clips {
    clips: Vec<Arc<Clip>>,
    sidecars: HashMap<String, Snapshot>,
}

/// The clips to serve: every input file, every MP4 or QuickTime file in every input directory;
/// `clip.sub.mp4` is served as `clip/sub`, the sub stream of `clip.mp4` (also when only
/// `clip.mp4` is named). A clip that cannot be read is reported and skipped; a sub stream that
/// does not align with its main clip stops the start (`Server::start` says why).
fn load_clips(inputs: &[PathBuf]) -> anyhow::Result<Clips> {
    if inputs.is_empty() {
        let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
        return Ok(Clips {
            clips: vec![Clip::load("sample", &demux)?],
            sidecars: HashMap::new(),
        });
    }
    let files = clip_files(inputs)?;
    let mut clips = Vec::new();
    let mut sidecars = HashMap::new();
    let mut names = std::collections::HashSet::new();
    for path in files {
        let name = stem(&path);
        match load_one(&path, &name) {
            Ok(c) if names.insert(name.clone()) => {
                if is_h265(&c) {
                    match load_sidecar(&sidecar_path(&path)) {
                        Ok(Some(s)) => {
                            tracing::info!(
                                "{}: snapshots from {}",
                                path.display(),
                                sidecar_path(&path).display()
                            );
                            sidecars.insert(name.clone(), s);
                        }
                        Ok(None) => tracing::info!(
                            "{}: H.265, so no snapshot (not decoded) unless {} is there",
                            path.display(),
                            sidecar_path(&path).display()
                        ),
                        Err(e) => tracing::warn!("{e}; no snapshot for /{name}"),
                    }
                }
                clips.push(c)
            }
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
    Ok(Clips { clips, sidecars })
}

fn is_h265(clip: &Clip) -> bool {
    clip.tracks()
        .get(clip.master())
        .is_some_and(|t| matches!(t.params, nvrkit_media::CodecParams::H265(_)))
}

/// The clip files of `inputs`: each file, and every MP4 in each directory (sorted).
fn clip_files(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read directory {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| {
                        ["mp4", "m4v", "mov"]
                            .iter()
                            .any(|x| e.eq_ignore_ascii_case(x))
                    })
                })
                .collect();
            found.sort();
            if found.is_empty() {
                tracing::warn!("{}: no .mp4, .m4v or .mov files", input.display());
            }
            files.extend(found);
        } else {
            files.push(input.clone());
            // `clip.mp4` brings `clip.sub.mp4` beside it, its sub stream.
            if let (Some(stem), Some(ext)) = (input.file_stem(), input.extension()) {
                let mut sub = stem.to_os_string();
                sub.push(".sub.");
                sub.push(ext);
                let sub = input.with_file_name(sub);
                if !stem.to_string_lossy().ends_with(".sub") && sub.is_file() {
                    files.push(sub);
                }
            }
        }
    }
    Ok(files)
}

/// The stream name of a clip file: its stem; `clip.sub.mp4` is `clip/sub`.
fn stem(path: &Path) -> String {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace([' ', '/', '?', '#'], "_"))
        .unwrap_or_else(|| "clip".into());
    match name.strip_suffix(".sub") {
        Some(main) if !main.is_empty() => sub_name(main),
        _ => name,
    }
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

/// `loopcam push URL [FILE]`: the loop to one or more RTMP servers, no RTSP.
async fn push_only(url: &str, file: Option<&Path>, args: &PushArgs) -> anyhow::Result<()> {
    let clip = match file {
        Some(path) => load_one(path, &stem(path))?,
        None => load_clips(&[])?.clips.remove(0),
    };
    let mut configs = vec![args.config(url)?];
    for u in &args.urls {
        configs.push(args.config(u)?);
    }
    let looper = Looper::start(clip.clone(), Duration::from_secs(4))?;
    let pushes: Vec<Push> = configs
        .into_iter()
        .map(|c| {
            tracing::info!("pushing {} to {}", clip.name(), c.url);
            Push::start(clip.clone(), looper.ring(), c)
        })
        .collect();
    let result = supervise(pushes).await;
    looper.stop().await;
    result
}

/// Runs until Ctrl-C, or until every push has given up (then fails with the first reason).
async fn supervise(pushes: Vec<Push>) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let all_done = loop {
        tokio::select! {
            r = &mut ctrl_c => {
                r.context("waiting for Ctrl-C")?;
                break false;
            }
            _ = tick.tick() => {
                if !pushes.is_empty() && pushes.iter().all(Push::is_finished) {
                    break true;
                }
            }
        }
    };
    let mut first_err = None;
    for p in pushes {
        let url = p.url().to_string();
        let s = p.stats();
        let r = p.stop().await;
        tracing::info!(
            "{url}: {} frames, {} bytes, {} connections ({} went live), {} skips to a keyframe",
            s.frames,
            s.bytes,
            s.connects,
            s.lives,
            s.lagged
        );
        if let Err(e) = r {
            first_err.get_or_insert(anyhow::anyhow!("{url}: {e}"));
        }
    }
    match first_err {
        Some(e) if all_done => Err(e),
        _ => Ok(()),
    }
}

/// `--push` beside RTSP: each URL for the one clip, or for every clip with `{name}`.
fn pushes_beside(server: &Server, args: &PushArgs) -> anyhow::Result<Vec<Push>> {
    let names = server.names();
    let mut pushes = Vec::new();
    for url in &args.urls {
        for (name, u) in nvrkit_feed::rtmp::url::push_targets(url, &names)? {
            let config = args.configure(PushConfig::new(u))?;
            let (Some(clip), Some(ring)) = (server.clip(&name), server.ring(&name)) else {
                continue;
            };
            tracing::info!("pushing {name} to {}", config.url);
            pushes.push(Push::start(clip, ring, config));
        }
    }
    Ok(pushes)
}

/// The alarm mails' JPEG: the picture of the alarm's keyframe (the one at or before the alarm
/// frame), from the ONVIF device's snapshotter (decoded once per alarm position, kept); an
/// H.265 clip's sidecar JPEG. A clip without snapshots (H.265 without a sidecar) mails without
/// one.
fn snapshots(onvif: &Onvif) -> nvrkit_feed::alarm::JpegSource {
    let by_name: Vec<(String, nvrkit_feed::snapshot::Snapshotter)> = onvif
        .devices()
        .iter()
        .filter_map(|l| {
            l.device
                .snapshot
                .clone()
                .map(|s| (l.device.name.clone(), s))
        })
        .collect();
    let by_name = Arc::new(by_name);
    Arc::new(move |clip: &str, keyframe: usize| {
        let snap = by_name
            .iter()
            .find(|(n, _)| n == clip)
            .map(|(_, s)| s.clone());
        Box::pin(async move {
            let snap = snap?;
            let picture = if snap.sidecar() {
                nvrkit_feed::alarm::Picture::Sidecar
            } else {
                nvrkit_feed::alarm::Picture::Keyframe
            };
            match snap.keyframe(keyframe).await {
                Ok(s) => Some((s.jpeg, picture)),
                Err(e) => {
                    tracing::warn!("alarm snapshot: {e}");
                    None
                }
            }
        })
    })
}

/// Reads `CLIP@POS=onvif` or `CLIP@POS=smtp://HOST:PORT`.
fn parse_alarm(spec: &str) -> anyhow::Result<Alarm> {
    let want = "--alarm wants CLIP@POS=onvif or CLIP@POS=smtp://HOST:PORT";
    let (left, target) = spec
        .rsplit_once('=')
        .with_context(|| format!("{want}: {spec:?}"))?;
    let (clip, pos) = left
        .rsplit_once('@')
        .with_context(|| format!("{want}: {spec:?}"))?;
    if clip.is_empty() {
        bail!("{want}: no clip in {spec:?}");
    }
    let position = parse_duration(pos).map_err(|e| anyhow::anyhow!("--alarm {spec}: {e}"))?;
    let target = if target == "onvif" {
        Target::Onvif
    } else if let Some(hostport) = target.strip_prefix("smtp://") {
        use std::net::ToSocketAddrs as _;
        let hostport = hostport.trim_end_matches('/');
        let addr = hostport
            .to_socket_addrs()
            .with_context(|| format!("--alarm {spec}: cannot resolve {hostport} (HOST:PORT)"))?
            .next()
            .with_context(|| format!("--alarm {spec}: {hostport} has no address"))?;
        Target::Smtp(addr)
    } else {
        bail!("{want}: unknown target {target:?}");
    };
    Ok(Alarm {
        clip: clip.to_owned(),
        position_micros: i64::try_from(position.as_micros()).unwrap_or(i64::MAX),
        target,
    })
}

/// The ONVIF devices of every clip, and the WS-Discovery responder.
async fn start_onvif(
    cli: &Cli,
    server: &Server,
    sidecars: &HashMap<String, Snapshot>,
) -> anyhow::Result<Onvif> {
    let credentials = match &cli.auth {
        Some(spec) => {
            let (u, p) = spec.split_once(':').context("--auth wants USER:PASS")?;
            Some((u.to_owned(), p.to_owned()))
        }
        None => None,
    };
    let config = nvrkit_feed::onvif::Config {
        listen: cli.onvif_listen,
        http: nvrkit_net_http_config(cli),
        credentials,
        discovery_listen: (!cli.no_discovery).then_some(cli.discovery_listen),
        snapshot_basic: cli.snapshot_basic_auth,
    };
    let devices = nvrkit_feed::onvif::devices_with(server, |name| sidecars.get(name).cloned());
    let onvif = Onvif::start(config, devices).await?;
    for l in onvif.devices() {
        let host = printable_host(l.addr);
        let port = l.addr.port();
        let profiles = if l.device.sub.is_some() {
            "profiles main and sub"
        } else {
            "profile main"
        };
        tracing::info!(
            "ONVIF device {} at http://{host}:{port}/onvif/device_service ({profiles}), snapshot http://{host}:{port}/snapshot/{}.jpg",
            l.device.name,
            nvrkit_feed::onvif::service::uri_segment(&l.device.name)
        );
    }
    if let Some(addr) = onvif.discovery_addr() {
        tracing::info!("WS-Discovery: answering directed probes on UDP {addr} (no multicast)");
    }
    Ok(onvif)
}

/// The ONVIF listeners' limits: the RTSP ones (--max-conns and the timeouts).
fn nvrkit_net_http_config(cli: &Cli) -> nvrkit_feed::onvif::HttpConfig {
    nvrkit_feed::onvif::HttpConfig {
        max_conns: cli.max_conns.max(1),
        max_conns_per_addr: cli.max_conns_per_addr.map(|n| n.max(1)),
        request_timeout: cli.request_timeout,
        idle_timeout: cli.idle_timeout,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Check(args)) = &cli.command {
        return check::run(args);
    }
    if let Some(Command::Push { url, file, push }) = &cli.command {
        return push_only(url, file.as_deref(), push).await;
    }
    let auth = match &cli.auth {
        Some(spec) => Some(Auth::parse(spec).context("--auth wants USER:PASS")?),
        None => None,
    };
    let Clips { clips, sidecars } = load_clips(&cli.inputs)?;
    let aliases = match &cli.faults {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the fault file {}", path.display()))?;
            nvrkit_feed::fault::parse_fault_file(&text)
                .with_context(|| format!("fault file {}", path.display()))?
        }
    };
    let alarms = cli
        .alarms
        .iter()
        .map(|s| parse_alarm(s))
        .collect::<anyhow::Result<Vec<Alarm>>>()?;
    for a in &alarms {
        if !clips.iter().any(|c| c.name() == a.clip) {
            bail!("--alarm {}@…: no clip is served as /{}", a.clip, a.clip);
        }
        if cli.no_onvif && a.target == Target::Onvif {
            bail!(
                "--alarm {}@…=onvif needs the ONVIF devices (drop --no-onvif)",
                a.clip
            );
        }
    }
    let (tap, fired) = if alarms.is_empty() {
        (None, None)
    } else {
        let (tap, rx) = Tap::new(alarms.clone());
        (Some(tap), Some(rx))
    };
    let config = Config {
        aliases,
        listen: cli.listen,
        mtu: cli.mtu.clamp(200, 65_000),
        auth,
        strict_start: cli.strict_start,
        session_timeout: cli.session_timeout.max(Duration::from_secs(5)),
        max_conns: cli.max_conns.max(1),
        max_conns_per_addr: cli.max_conns_per_addr.map(|n| n.max(1)),
        request_timeout: cli.request_timeout,
        idle_timeout: cli.idle_timeout,
        udp: !cli.no_udp,
        tcp_nodelay: cli.tcp_nodelay,
        tls_listen: cli.rtsps_listen,
        tls: match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsSource::SelfSigned,
        },
        alarms: tap,
        threads: cli.threads.map_or(Config::default().threads, |n| n.max(1)),
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
        if let Some(addr) = cli.rtsps_listen {
            for url in server.tls_urls(&printable_host(addr)) {
                writeln!(out, "{url}")?;
            }
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
    if let (Some(addr), Some(fp)) = (server.tls_local_addr(), server.tls_fingerprint()) {
        tracing::info!("RTSPS on {addr}, certificate SHA-256 {fp}");
    }
    if let Some((rtp, rtcp)) = server.udp_ports() {
        tracing::info!(
            "RTSP on {}, RTP/RTCP over UDP from ports {rtp}/{rtcp}",
            server.local_addr()
        );
    }
    let onvif = if cli.no_onvif {
        None
    } else {
        Some(start_onvif(&cli, &server, &sidecars).await?)
    };
    let dispatcher = fired.map(|rx| {
        let names = server.names();
        let d = Dispatcher {
            alarms: alarms.clone(),
            periods: names
                .iter()
                .filter_map(|n| server.period_micros(n).map(|p| (n.clone(), p)))
                .collect(),
            hubs: onvif
                .as_ref()
                .map(|o| {
                    names
                        .iter()
                        .filter_map(|n| o.events(n).map(|h| (n.clone(), h)))
                        .collect()
                })
                .unwrap_or_default(),
            jpeg: onvif.as_ref().map(snapshots),
        };
        for a in &alarms {
            tracing::info!(
                "alarm: /{} at {:.6} s every loop → {}",
                a.clip,
                a.position_micros as f64 / 1e6,
                match &a.target {
                    Target::Onvif => "ONVIF motion".to_owned(),
                    Target::Smtp(addr) => format!("ONVIF motion and a mail to smtp://{addr}"),
                }
            );
        }
        alarm::run(d, rx)
    });
    let pushes = pushes_beside(&server, &cli.push)?;
    if pushes.is_empty() {
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    } else {
        // RTSP keeps serving even if every push gives up; only Ctrl-C ends it.
        let r = supervise(pushes).await;
        if let Err(e) = &r {
            tracing::error!("{e:#}");
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
        }
    }
    for name in server.names() {
        if let Some(p) = server.pacing(&name) {
            tracing::info!(
                "/{name}: {} frames paced, lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                p.frames,
                p.p50_us as f64 / 1000.0,
                p.p99_us as f64 / 1000.0,
                p.max_us as f64 / 1000.0
            );
        }
    }
    if let Some(d) = dispatcher {
        d.abort();
    }
    if let Some(o) = onvif {
        o.shutdown().await;
    }
    tracing::info!("shutting down: sending RTCP BYE to every session");
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_specs() {
        let a = parse_alarm("bikes@3.2s=smtp://127.0.0.1:2525").unwrap();
        assert_eq!(a.clip, "bikes");
        assert_eq!(a.position_micros, 3_200_000);
        assert_eq!(a.target, Target::Smtp("127.0.0.1:2525".parse().unwrap()));
        let a = parse_alarm("a@b@1500ms=onvif").unwrap();
        assert_eq!((a.clip.as_str(), a.position_micros), ("a@b", 1_500_000));
        assert_eq!(a.target, Target::Onvif);
        for bad in [
            "bikes=onvif",
            "@1s=onvif",
            "bikes@soon=onvif",
            "bikes@1s=mqtt://x",
            "bikes@1s",
            "bikes@1s=smtp://nowhere",
        ] {
            assert!(parse_alarm(bad).is_err(), "{bad}");
        }
    }
}

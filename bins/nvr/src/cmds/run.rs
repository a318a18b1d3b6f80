//! `nvr` (no subcommand): the recorder. RTSP in, a RAM ring per camera, SMTP (and HTTP) alarms,
//! pre/post-event footage into the store, an HTTP API and page.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use nvrkit_cli::units::{parse_bytes, parse_duration};
use nvrkit_feed::Clip;
use nvrkit_media::Demuxer;
use nvrkit_smtp::client::{AlarmMail, Client, ClientAuth, ClientOptions};
use nvrkit_smtp::{AuthPolicy, ServerConfig};
use nvrkit_store::{Limits, Options, RetentionPolicy, Store};
use tokio::sync::watch;

use nvrkit_recorder::{CameraSource, MapRule, Mode, Recorder, Unmapped};

use crate::http::{self, App, CameraEntry};

/// Arguments of the recorder.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A camera as NAME=rtsp://user:pass@host/path (repeatable). None: a built-in demo camera
    /// (the loop feeder on the embedded sample, over loopback RTSP).
    #[arg(long = "camera", value_name = "NAME=URL")]
    pub cameras: Vec<String>,
    /// A TOML file with `[[camera]]` tables (`name`, `url`, optional `transport`) and a `map`
    /// list of rules, added to the flags' cameras and rules (see `nvr --help`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RTP over TCP (interleaved, the default) or UDP.
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
    pub transport: String,
    /// SMTP listener for camera alarm mails (beyond loopback, e.g. 0.0.0.0:2525 for cameras on
    /// the LAN, only with --smtp-auth or --smtp-no-auth).
    #[arg(
        long,
        value_name = "ADDR",
        alias = "smtp",
        default_value = "127.0.0.1:2525"
    )]
    pub smtp_listen: SocketAddr,
    /// Credentials the SMTP listener requires (repeatable): with any, a camera must AUTH
    /// (PLAIN or LOGIN) before `MAIL`, else `530`. Without: AUTH is optional and any
    /// credentials pass.
    #[arg(long = "smtp-auth", value_name = "USER:PASS")]
    pub smtp_auth: Vec<String>,
    /// Take mail beyond loopback without credentials (say it explicitly): anyone who reaches
    /// the port can raise events and store snapshots.
    #[arg(long)]
    pub smtp_no_auth: bool,
    /// SMTP: the longest a session may live (`0`: no limit).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub conn_lifetime: Duration,
    /// SMTP: inside a mail transfer, the longest silence allowed.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration)]
    pub data_timeout: Duration,
    /// SMTP: after 30 s, a mail transfer must have averaged this rate, e.g. 10KiB/s (`0`: off).
    #[arg(long, value_name = "RATE", default_value = "10KiB/s", value_parser = parse_rate_or_off)]
    pub min_data_rate: u64,
    /// SMTP: mail buffered at once across all sessions; past it `MAIL` gets 452 and cameras
    /// retry.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_bytes)]
    pub max_buffered_mail: u64,
    /// Map events to cameras: FIELD=VALUE:CAMERA with FIELD in channel, from, to, device, camera
    /// (repeatable; tried before the recipient, camera name and sender).
    #[arg(long = "map", value_name = "RULE")]
    pub maps: Vec<MapRule>,
    /// What an event no camera matches does: `log` (listed, records nothing) or `all` (triggers
    /// every camera).
    #[arg(long, default_value = "log", value_parser = ["log", "all"])]
    pub unmapped: String,
    /// Footage kept before an event (the RAM ring holds this plus a margin).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub pre: Duration,
    /// Footage kept after an event (extended by later events).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub post: Duration,
    /// `events`: only around events; `all`: continuously, events tagged.
    #[arg(long, value_enum, default_value = "events")]
    pub record: Mode,
    /// Where the store lives (the directory `segstore --store` reads).
    #[arg(long, value_name = "DIR", alias = "data", default_value = "nvr-data")]
    pub store: PathBuf,
    /// Segment length in the store.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub segment: Duration,
    /// Keep at most this many bytes of footage (500G, 2T); the oldest untagged footage goes
    /// first, then motion, then events.
    #[arg(long, value_parser = parse_bytes)]
    pub max_bytes: Option<u64>,
    /// Delete untagged footage older than this (30d).
    #[arg(long, value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// Delete event footage older than this (default: only when space is needed).
    #[arg(long, value_parser = parse_duration)]
    pub max_age_event: Option<Duration>,
    /// Delete footage while the disk has less free space than this, so it never fills.
    #[arg(long, default_value = "256M", value_parser = parse_bytes)]
    pub min_free: u64,
    /// HTTP API and web page.
    #[arg(
        long,
        value_name = "ADDR",
        alias = "http",
        default_value = "127.0.0.1:8080"
    )]
    pub http_listen: SocketAddr,
    /// Require these credentials (Basic) on the HTTP API.
    #[arg(long, value_name = "USER:PASS")]
    pub http_auth: Option<String>,
    /// Serve HTTP beyond loopback without credentials (say it explicitly).
    #[arg(long)]
    pub http_no_auth: bool,
    /// RTSP restream: each camera at `rtsp://ADDR/<camera>`, any number of viewers over the
    /// camera's one session (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8554")]
    pub rtsp_listen: SocketAddr,
    /// Require these credentials (Basic or Digest) on the RTSP restream.
    #[arg(long, value_name = "USER:PASS")]
    pub rtsp_auth: Option<String>,
    /// Serve the RTSP restream beyond loopback without credentials (say it explicitly).
    #[arg(long)]
    pub rtsp_no_auth: bool,
    /// RTSP restream: most connections at once (viewers, RTSP and its sessions); one more is
    /// answered 503.
    #[arg(long, value_name = "N", default_value_t = nvrkit_feed::server::Config::default().max_conns)]
    pub rtsp_max_conns: usize,
    /// RTSP restream: most connections at once from one client address (IPv6: its /64);
    /// default: no cap (a VMS opens many sessions from one address).
    #[arg(long, value_name = "N")]
    pub rtsp_max_conns_per_addr: Option<usize>,
    /// Also publish each camera over RTMP (repeatable): `{name}` in the URL is the camera's
    /// name (one push per camera; without it, only with one camera). Published once the
    /// camera's tracks are known; published again when they change.
    #[arg(long = "push", value_name = "URL")]
    pub push: Vec<String>,
    /// Send H.265 as Enhanced RTMP (`hvc1`) even when the server does not announce it
    /// (node-media-server 4, SRS 6, mediamtx take it without announcing).
    #[arg(long)]
    pub enhanced_rtmp: bool,
    /// A name the HTTP API answers to besides its own address (repeatable); a request for any
    /// other `Host` gets 421 (against DNS rebinding).
    #[arg(long = "http-host", value_name = "NAME")]
    pub http_hosts: Vec<String>,
    /// HTTP: most connections at once; one more is answered 503.
    #[arg(long, value_name = "N", default_value_t = nvrkit_net::http::Config::DEFAULT_MAX_CONNS)]
    pub max_conns: usize,
    /// HTTP: most connections at once from one client address (IPv6: its /64), so one host
    /// cannot take every connection before auth (`0`: no cap, e.g. behind a reverse proxy).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HTTP_CONNS_PER_ADDR)]
    pub max_conns_per_addr: usize,
    /// HTTP: a request must be complete this long after its first byte.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// HTTP: a keep-alive connection with no request for this long is closed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// HTTP: the largest `/api/export.mp4` built in memory (the store's estimate of the
    /// range); a larger one gets 413 (use `stream=1`, or `segstore export`).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_bytes)]
    pub max_export_size: u64,
    /// Replicate the store to a backup: a directory, or `s3://bucket/prefix` (credentials and
    /// endpoint from the usual AWS environment variables). Events first, then motion, then
    /// continuous footage.
    #[arg(long, value_name = "TARGET")]
    pub replicate_to: Option<String>,
    /// Upstream cap for replication, e.g. 2Mbit, 500kbit, 1MB/s (default: uncapped).
    #[arg(long, value_parser = nvrkit_cli::units::parse_rate, requires = "replicate_to")]
    pub upstream: Option<u64>,
    /// Do not replicate continuous footage without motion or events.
    #[arg(long, requires = "replicate_to")]
    pub skip_no_motion: bool,
    /// Publish events to an MQTT broker, `mqtt[s]://[USER:PASS@]HOST[:PORT]`: JSON on
    /// `nvrkit/<camera>/event`, retained motion ON (an event) / OFF (its range closed),
    /// availability, Home Assistant discovery (docs/mqtt.md).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<nvrkit_mqtt::BrokerUrl>,
    /// Trust the certificates in this PEM file for mqtts:// and rtmps:// (besides the Mozilla
    /// roots): a private CA or a self-signed broker or server.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Demo camera: also e-mail a motion alarm to the NVR this often (e.g. 30s), over real SMTP.
    #[arg(long, value_parser = parse_duration)]
    pub demo_event_every: Option<Duration>,
}

/// Default of `--max-conns-per-addr` on the HTTP API: a browser opens at most 6 connections to
/// a host (and a live view's WebSocket leaves the count once upgraded), so 32 serves a few
/// tabs and scripts from one machine while the other 992 of `--max-conns` stay for others.
const DEFAULT_HTTP_CONNS_PER_ADDR: usize = 32;

/// A rate, or `0` for none.
fn parse_rate_or_off(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    nvrkit_cli::units::parse_rate(text)
}

/// The SMTP listener's settings from the flags: `--smtp-auth` users make AUTH required.
fn smtp_config(args: &Args) -> anyhow::Result<ServerConfig> {
    let mut users = Vec::new();
    for spec in &args.smtp_auth {
        match spec.split_once(':') {
            Some((user, pass)) if !user.is_empty() => {
                users.push((user.to_owned(), pass.to_owned()))
            }
            _ => bail!("--smtp-auth {spec:?}: expected USER:PASS"),
        }
    }
    let mut config = ServerConfig {
        listen: Some(args.smtp_listen),
        data_timeout: args.data_timeout,
        max_lifetime: (!args.conn_lifetime.is_zero()).then_some(args.conn_lifetime),
        mail_budget: args.max_buffered_mail,
        ..ServerConfig::default()
    };
    config.min_data_rate.bytes_per_sec = args.min_data_rate;
    if !users.is_empty() {
        config.session.auth = AuthPolicy::Users(users);
    }
    Ok(config)
}

/// The `--config` file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Cameras.
    #[serde(default)]
    pub camera: Vec<CameraConfig>,
    /// Mapping rules, as `--map` takes them.
    #[serde(default)]
    pub map: Vec<String>,
}

/// One `[[camera]]` of the config file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Its name (the URL path of its clips, the recipient that maps mails to it).
    pub name: String,
    /// Its RTSP URL, credentials included.
    pub url: String,
    /// `tcp` or `udp` (default: `--transport`).
    pub transport: Option<String>,
}

impl ConfigFile {
    /// Reads and checks a config file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let c: ConfigFile = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        for cam in &c.camera {
            if let Some(t) = &cam.transport
                && t != "tcp"
                && t != "udp"
            {
                bail!(
                    "{}: camera {}: transport is tcp or udp, not {t:?}",
                    path.display(),
                    cam.name
                );
            }
        }
        for rule in &c.map {
            rule.parse::<MapRule>()
                .with_context(|| format!("{}: map rule {rule:?}", path.display()))?;
        }
        Ok(c)
    }
}

fn printable(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

/// A listener beyond loopback needs credentials (`--PROTO-auth`) or an explicit `--PROTO-no-auth`:
/// refused before anything is opened.
fn beyond_loopback(
    proto: &str,
    listen: SocketAddr,
    auth: bool,
    no_auth: bool,
) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() && !auth && !no_auth {
        bail!(
            "--{proto}-listen {listen} listens beyond loopback: give --{proto}-auth USER:PASS, or --{proto}-no-auth to serve without credentials"
        );
    }
    Ok(())
}

/// Runs the recorder until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    beyond_loopback(
        "http",
        args.http_listen,
        args.http_auth.is_some(),
        args.http_no_auth,
    )?;
    beyond_loopback(
        "rtsp",
        args.rtsp_listen,
        args.rtsp_auth.is_some(),
        args.rtsp_no_auth,
    )?;
    beyond_loopback(
        "smtp",
        args.smtp_listen,
        !args.smtp_auth.is_empty(),
        args.smtp_no_auth,
    )?;
    let rtsp_auth = match &args.rtsp_auth {
        Some(spec) => Some(
            nvrkit_feed::rtsp::auth::Auth::parse(spec).context("--rtsp-auth wants USER:PASS")?,
        ),
        None => None,
    };
    let smtp_config = smtp_config(&args)?;
    let (stop_tx, stop) = watch::channel(false);

    let file = match &args.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    let mut maps = args.maps.clone();
    for rule in &file.map {
        maps.push(rule.parse()?);
    }
    let mut specs: Vec<(String, String, bool)> = Vec::new();
    for spec in &args.cameras {
        let Some((name, url)) = spec.split_once('=') else {
            bail!("--camera wants NAME=rtsp://…, got {spec:?}");
        };
        specs.push((name.to_owned(), url.to_owned(), args.transport == "udp"));
    }
    for c in &file.camera {
        let udp = c.transport.as_deref().unwrap_or(&args.transport) == "udp";
        specs.push((c.name.clone(), c.url.clone(), udp));
    }

    // The demo camera: the loop feeder on the embedded sample, over real loopback RTSP.
    let mut demo_server = None;
    let mut demo_report = None;
    let mut sources = Vec::new();
    if specs.is_empty() {
        let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
        demo_report = Some(super::probe::describe(
            &demux,
            nvrkit_media::sample().len() as u64,
            "demo camera: the embedded sample clip (nvrkit_media::sample())",
        ));
        let clip = Clip::load("sample", &demux)?;
        let config = nvrkit_feed::server::Config {
            listen: "127.0.0.1:0".parse()?,
            ..Default::default()
        };
        let server = nvrkit_feed::server::Server::start(config, vec![clip]).await?;
        let url = server.urls("127.0.0.1")[0].clone();
        sources.push(CameraSource {
            name: "demo".into(),
            url: url.parse()?,
            udp: args.transport == "udp",
        });
        demo_server = Some(server);
    }
    for (name, url, udp) in specs {
        let url: url::Url = url
            .parse()
            .with_context(|| format!("camera {name}: bad URL"))?;
        sources.push(CameraSource { name, url, udp });
    }
    let mut config = nvrkit_recorder::Config::new(sources);
    config.pre = args.pre;
    config.post = args.post;
    config.mode = args.record;
    config.maps = maps;
    // A dot name: no camera can be called that (nvrkit_store::layout::check_camera).
    config.events_dir = Some(args.store.join(".events"));
    config.unmapped = if args.unmapped == "all" {
        Unmapped::All
    } else {
        Unmapped::Log
    };
    // Refused before the store is opened or anything listens.
    config.validate()?;

    let data = args.store.clone();
    let segment = args.segment;
    let mut limits = Limits::default();
    limits.max_bytes = args.max_bytes;
    limits.max_age = args.max_age;
    limits.max_age_event = args.max_age_event;
    let mut policy = RetentionPolicy::default().overall(limits);
    policy.min_free_bytes = Some(args.min_free);
    let store = tokio::task::spawn_blocking(move || {
        Store::open(
            &data,
            Options::default()
                .segment_duration(segment)
                .retention(policy),
        )
    })
    .await??;
    let recovery = store.recovery();
    if !recovery.sealed.is_empty() {
        tracing::warn!(
            "store: sealed {} segments left open by a crash ({} bytes cut)",
            recovery.sealed.len(),
            recovery.cut_bytes
        );
    }
    let store = Arc::new(store);
    let replication = match &args.replicate_to {
        Some(url) => {
            let spec = nvrkit_replicate::target::TargetSpec::parse(url)
                .with_context(|| format!("--replicate-to {url}"))?;
            let mut options = nvrkit_replicate::Options::default()
                .follow(true)
                .skip_no_motion(args.skip_no_motion);
            if let Some(rate) = args.upstream {
                options = options.upstream(rate);
            }
            let store = store.clone();
            let handle = tokio::task::spawn_blocking(move || {
                nvrkit_replicate::start(&store, &spec, options)
            })
            .await?
            .with_context(|| format!("replication to {url}"))?;
            tracing::info!("replicating to {url}");
            Some(Arc::new(handle))
        }
        None => None,
    };

    let recorder = Recorder::start(config, store.clone())?;
    let running: Vec<CameraEntry> = recorder.cameras().to_vec();
    // The restream and the pushes: each camera's ring relayed with its wall-clock times
    // brought back to arrival (crate::restream), served as it comes under the tracks ingest
    // publishes.
    let mut live = Vec::new();
    let mut relays = Vec::new();
    for c in &running {
        let (source, task) = crate::restream::relay(
            &c.name,
            &c.ring,
            c.state.tracks_watch.subscribe(),
            stop.clone(),
        )?;
        live.push(source);
        relays.push(task);
    }
    let restream = nvrkit_feed::server::Server::start_with(
        restream_config(&args, rtsp_auth),
        Vec::new(),
        live.clone(),
    )
    .await
    .with_context(|| format!("RTSP restream on {}", args.rtsp_listen))?;
    let pushes = pushes(&args, &live)?;
    let rtsp_host = printable(restream.local_addr());
    let names: Vec<String> = running.iter().map(|r| r.name.clone()).collect();
    let mqtt = match &args.mqtt {
        Some(url) => {
            let cameras: Vec<_> = running
                .iter()
                .map(|r| (r.name.clone(), r.recorder.clone()))
                .collect();
            tracing::info!("publishing to {url}");
            let roots = extra_roots(&args)?;
            Some(crate::mqtt::Mqtt::start(
                url.clone(),
                roots,
                &cameras,
                args.record,
                args.post,
            )?)
        }
        None => None,
    };

    // Events: SMTP and HTTP both feed one dispatcher.
    let (smtp, mut smtp_events) = nvrkit_smtp::Server::start(smtp_config)
        .await
        .with_context(|| format!("SMTP on {}", args.smtp_listen))?;
    let smtp_addr = smtp.info().listen.context("SMTP listener")?;
    if let Some(m) = &mqtt {
        let m = m.clone();
        recorder.on_event(Arc::new(move |camera, json| m.event(camera, json)));
    }
    let dispatch_tx = recorder.dispatcher();
    {
        let tx = dispatch_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = smtp_events.recv().await {
                if tx.send(e).await.is_err() {
                    break;
                }
            }
        });
    }

    let app = Arc::new(App {
        cameras: running.clone(),
        events: recorder.events().clone(),
        store: store.clone(),
        dispatch: dispatch_tx.clone(),
        pre_us: args.pre.as_micros() as i64,
        post_us: args.post.as_micros() as i64,
        auth: args.http_auth.clone(),
        replication: replication.clone(),
        last_export: Default::default(),
        max_export_bytes: args.max_export_size,
        live: crate::live::Live::new(crate::live::LiveLimits::default()),
    });
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("HTTP on {}", args.http_listen))?;
    let http_addr = listener.local_addr()?;
    {
        let hosts = nvrkit_net::http::AllowedHosts::new(http_addr, args.http_hosts.clone());
        let router = crate::guard::guarded(http::router(app), hosts);
        let server = nvrkit_net::http::Server::new(nvrkit_net::http::Config {
            max_conns: args.max_conns,
            max_conns_per_addr: (args.max_conns_per_addr > 0).then_some(args.max_conns_per_addr),
            request_timeout: args.request_timeout,
            idle_timeout: args.idle_timeout,
        });
        let mut stop = stop.clone();
        tokio::spawn(async move {
            server
                .serve(listener, router, async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
    }

    // Say what to do next.
    let smtp_host = printable(smtp_addr);
    let http_host = printable(http_addr);
    let first = names.first().cloned().unwrap_or_default();
    {
        let mut out = std::io::stdout().lock();
        if let Some(report) = &demo_report {
            out.write_all(report.as_bytes())?;
        }
        for r in &running {
            writeln!(out, "camera {}: {}", r.name, r.url)?;
            writeln!(out, "rtsp: rtsp://{rtsp_host}/{}", r.name)?;
            for (camera, p) in &pushes {
                if camera == &r.name {
                    writeln!(out, "rtmp push: {}", p.url())?;
                }
            }
        }
        let smtp_auth = if args.smtp_auth.is_empty() {
            ""
        } else {
            " (AUTH required: --smtp-auth)"
        };
        writeln!(out, "smtp: {smtp_host}{smtp_auth}")?;
        writeln!(out, "web: http://{http_host}/")?;
        writeln!(out, "store: {}", args.store.display())?;
        if let Some(url) = &args.mqtt {
            writeln!(
                out,
                "mqtt: {url} (nvrkit/<camera>/event, …/motion, Home Assistant discovery)"
            )?;
        }
        writeln!(out, "trigger an event by e-mail:")?;
        writeln!(
            out,
            "  swaks --server {smtp_host} --from cam@{first} --to {first}@nvr --header 'Subject: Motion Detected' --body 'EVENT TYPE: Motion Detected'{}",
            if args.smtp_auth.is_empty() {
                ""
            } else {
                " --auth-user USER --auth-password PASS"
            }
        )?;
        writeln!(out, "or over HTTP:")?;
        writeln!(
            out,
            "  curl --json '{{\"camera\":\"{first}\",\"kind\":\"motion\"}}' http://{http_host}/api/events{}",
            if args.http_auth.is_some() {
                " --user USER:PASS"
            } else {
                ""
            }
        )?;
        writeln!(
            out,
            "then watch http://{http_host}/ (clips appear {} s after the event)",
            args.post.as_secs()
        )?;
        out.flush()?;
    }

    // The demo camera e-mails its own alarms.
    if let (Some(every), true) = (args.demo_event_every, demo_server.is_some()) {
        let mut stop = stop.clone();
        // With --smtp-auth the demo camera logs in as the first user, like a configured camera.
        let mut options = ClientOptions::default();
        if let Some((user, pass)) = args.smtp_auth.first().and_then(|s| s.split_once(':')) {
            options = options.auth(ClientAuth::Plain, user, pass);
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let mail = AlarmMail::new(
                    "demo@loopcam",
                    "demo@nvr",
                    "IPC: Motion Detected",
                    "EVENT TYPE: Motion Detected\nIPC NAME: demo\n",
                )
                .header("X-Mailer", "HIKMailer");
                let sent = async {
                    let mut c = Client::connect(smtp_addr_for_client(smtp_addr), &options).await?;
                    c.send("demo@loopcam", &["demo@nvr"], &mail.to_bytes())
                        .await?;
                    c.quit().await
                };
                if let Err(e) = sent.await {
                    tracing::warn!("demo camera could not e-mail its alarm: {e}");
                }
            }
        });
    }

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down: flushing open event ranges");
    let _ = stop_tx.send(true);
    recorder.shutdown().await;
    if let Some(m) = &mqtt {
        m.finish().await;
    }
    smtp.shutdown().await;
    for (camera, p) in pushes {
        let url = p.url().to_string();
        let s = p.stats();
        if let Err(e) = p.stop().await {
            tracing::warn!(camera, "push to {url} had given up: {e}");
        }
        tracing::info!(
            camera,
            "{url}: {} frames, {} connections ({} went live, {} for new tracks)",
            s.frames,
            s.connects,
            s.lives,
            s.retracks
        );
    }
    restream.shutdown().await;
    for r in relays {
        let _ = r.await;
    }
    if let Some(r) = replication {
        r.stop();
    }
    if let Some(s) = demo_server {
        s.shutdown().await;
    }
    Ok(())
}

/// The restream's settings from the flags. A viewer starts at the first keyframe the camera
/// sends after it joined (`strict_start`, with the relay of crate::restream), so it plays at
/// live; without, it got the ring's newest GOP at once and played that backlog first, staying
/// up to a GOP behind (figures in docs/architecture.md).
fn restream_config(
    args: &Args,
    auth: Option<nvrkit_feed::rtsp::auth::Auth>,
) -> nvrkit_feed::server::Config {
    nvrkit_feed::server::Config {
        listen: args.rtsp_listen,
        auth,
        strict_start: true,
        max_conns: args.rtsp_max_conns.max(1),
        max_conns_per_addr: args.rtsp_max_conns_per_addr.map(|n| n.max(1)),
        ..Default::default()
    }
}

/// `--ca-file`'s certificates (none without it), for mqtts:// and rtmps://.
fn extra_roots(
    args: &Args,
) -> anyhow::Result<Vec<nvrkit_tls::tokio_rustls::rustls::pki_types::CertificateDer<'static>>> {
    Ok(match &args.ca_file {
        Some(ca) => nvrkit_tls::load_certificates(ca)
            .with_context(|| format!("--ca-file {}", ca.display()))?,
        None => Vec::new(),
    })
}

/// `--push`: each camera published over RTMP from its ring, as the restream serves it.
fn pushes(
    args: &Args,
    live: &[nvrkit_feed::source::LiveSource],
) -> anyhow::Result<Vec<(String, nvrkit_feed::rtmp::Push)>> {
    use nvrkit_feed::rtmp::{EnhancedRtmp, Push, PushConfig, url::push_targets};
    if args.push.is_empty() {
        return Ok(Vec::new());
    }
    let roots = extra_roots(args)?;
    let names: Vec<String> = live.iter().map(|l| l.name().to_owned()).collect();
    let mut out = Vec::new();
    for url in &args.push {
        for (name, u) in push_targets(url, &names).context("--push")? {
            let Some(source) = live.iter().find(|l| l.name() == name) else {
                continue;
            };
            let mut config = PushConfig::new(u);
            config.extra_roots = roots.clone();
            if args.enhanced_rtmp {
                config.enhanced_rtmp = EnhancedRtmp::Always;
            }
            tracing::info!(camera = name, "pushing to {}", config.url);
            out.push((name, Push::start_source(source.clone().into(), config)));
        }
    }
    Ok(out)
}

fn smtp_addr_for_client(addr: SocketAddr) -> SocketAddr {
    printable(addr).parse().unwrap_or(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("nvr").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn smtp_flags_configure_the_listener() {
        let args = parse(&[]).unwrap();
        let c = smtp_config(&args).unwrap();
        assert!(matches!(c.session.auth, AuthPolicy::AcceptAny));
        assert_eq!(c.max_lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(c.min_data_rate.bytes_per_sec, 10 * 1024);
        assert_eq!(c.mail_budget, 1 << 30);

        let args = parse(&[
            "--smtp-auth",
            "cam:secret",
            "--smtp-auth",
            "nvr1:pa:ss",
            "--conn-lifetime",
            "0",
            "--data-timeout",
            "2s",
            "--min-data-rate",
            "0",
            "--max-buffered-mail",
            "64M",
        ])
        .unwrap();
        let c = smtp_config(&args).unwrap();
        match &c.session.auth {
            AuthPolicy::Users(u) => assert_eq!(
                u,
                &[
                    ("cam".to_owned(), "secret".to_owned()),
                    ("nvr1".to_owned(), "pa:ss".to_owned())
                ]
            ),
            other => panic!("--smtp-auth gave {other:?}"),
        }
        assert_eq!(c.max_lifetime, None, "--conn-lifetime 0 is no limit");
        assert_eq!(c.data_timeout, Duration::from_secs(2));
        assert_eq!(c.min_data_rate.bytes_per_sec, 0);
        assert_eq!(c.mail_budget, 64 << 20);

        for bad in ["nocolon", ":pass"] {
            let args = parse(&["--smtp-auth", bad]).unwrap();
            assert!(smtp_config(&args).is_err(), "{bad}");
        }
        assert!(parse(&["--min-data-rate", "fast"]).is_err());
    }

    #[test]
    fn restream_caps_and_pushes_come_from_the_flags() {
        let c = restream_config(&parse(&[]).unwrap(), None);
        let d = nvrkit_feed::server::Config::default();
        assert_eq!((c.max_conns, c.max_conns_per_addr), (d.max_conns, None));
        assert_eq!(c.listen, "127.0.0.1:8554".parse().unwrap());
        let args = parse(&[
            "--rtsp-max-conns",
            "64",
            "--rtsp-max-conns-per-addr",
            "8",
            "--max-conns",
            "5",
        ])
        .unwrap();
        let c = restream_config(&args, None);
        assert_eq!(
            (c.max_conns, c.max_conns_per_addr),
            (64, Some(8)),
            "the restream's own caps, not HTTP's --max-conns"
        );
        assert_eq!(args.max_conns, 5);

        let (_w, ring) = nvrkit_ring::ring(nvrkit_ring::Config::new()).unwrap();
        let (_tx, rx) = watch::channel(None);
        let live = |n: &str| nvrkit_feed::source::LiveSource::new(n, ring.clone(), 0, rx.clone());
        let two = [live("garage"), live("yard")];
        let args = parse(&["--push", "rtmp://127.0.0.1/live/cam"]).unwrap();
        let e = pushes(&args, &two).unwrap_err();
        assert!(format!("{e:#}").contains("put {name} in the URL"), "{e:#}");
    }

    #[test]
    fn config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nvr.toml");
        std::fs::write(
            &p,
            "map = [\"channel=2:garage\"]\n[[camera]]\nname = \"garage\"\nurl = \"rtsp://a:b@10.0.0.5/s1\"\ntransport = \"udp\"\n",
        )
        .unwrap();
        let c = ConfigFile::load(&p).unwrap();
        assert_eq!(c.camera[0].name, "garage");
        assert_eq!(c.map, ["channel=2:garage"]);
        std::fs::write(
            &p,
            "[[camera]]\nname = \"x\"\nurl = \"rtsp://h/\"\ntransport = \"sctp\"\n",
        )
        .unwrap();
        assert!(ConfigFile::load(&p).is_err());
        std::fs::write(&p, "map = [\"colour=red:x\"]\n").unwrap();
        assert!(ConfigFile::load(&p).is_err());
        std::fs::write(&p, "cameras = 3\n").unwrap();
        assert!(ConfigFile::load(&p).is_err(), "unknown keys are refused");
    }
}

//! `camevents`: an SMTP server for IP cameras that prints one JSON event per alarm mail.
//!
//! A thin CLI over `nvrkit-smtp`: the library does the SMTP, TLS and event extraction; this binary
//! parses flags, prints events to stdout, runs `--exec` commands and POSTs to `--webhook`.

// A CLI prints: events to stdout, the served URLs to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod send;
mod sinks;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use nvrkit_cli::units::{parse_bytes, parse_duration, parse_rate};
use nvrkit_smtp::{AuthPolicy, LineEndings, Server, ServerConfig, SnapshotStore, TlsSource};

const EXAMPLES: &str = "\
Examples:
  camevents                                   # SMTP on 0.0.0.0:2525, STARTTLS with a self-signed cert
  camevents --smtps-listen 0.0.0.0:4650       # and implicit TLS (what cameras call SSL) on 4650
  camevents --auth cam:secret --snapshots ./snaps
  camevents --exec 'jq -c .kind >> kinds.log' --webhook http://127.0.0.1:8080/api/events
  camevents --end-after 60s | jq .
  camevents --mqtt mqtt://user:pass@127.0.0.1:1883          # events, motion, Home Assistant discovery
  camevents send --to garage@nvr --attach snapshot.jpg     # send a test alarm mail
  swaks --server 127.0.0.1:2525 --to nvr@x --auth LOGIN --auth-user a --auth-password b";

/// SMTP event server for IP cameras: point a camera's e-mail settings here and get one JSON event
/// per alarm mail on stdout (schema: docs/event-schema.json). Logs go to stderr.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send alarm mails to an SMTP server (a demo camera, or load).
    Send(Box<send::SendArgs>),
    #[command(flatten)]
    Docs(nvrkit_cli::docs::DocsCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Plain SMTP listener (STARTTLS offered unless --no-tls). `none` for no plain listener.
    #[arg(long, default_value = "0.0.0.0:2525")]
    listen: String,
    /// Implicit-TLS listener ("SSL" in camera settings; SMTPS), e.g. 0.0.0.0:4650.
    #[arg(long, value_name = "ADDR", alias = "tls-listen")]
    smtps_listen: Option<SocketAddr>,
    /// PEM certificate chain, leaf first; without it a self-signed certificate is made at start.
    #[arg(long, value_name = "PEM", alias = "cert", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", alias = "key", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// No TLS at all: no STARTTLS, no --smtps-listen.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "smtps_listen"])]
    no_tls: bool,
    /// `any` (accept any credentials, AUTH optional) or USER:PASS (AUTH required). Repeatable.
    #[arg(long, default_value = "any")]
    auth: Vec<String>,
    /// Largest mail accepted, bytes (K, M, G suffixes); larger gets 552 and the session goes on.
    #[arg(long, default_value = "25M", value_parser = parse_bytes)]
    max_size: u64,
    /// Most connections at once; one more gets `421` and is closed.
    #[arg(long, value_name = "N", alias = "max-sessions", default_value_t = 512)]
    max_conns: usize,
    /// Most connections at once from one client address (IPv6: one /64); an NVR mails every
    /// channel from one address.
    #[arg(
        long,
        value_name = "N",
        alias = "max-sessions-per-ip",
        default_value_t = 64
    )]
    max_conns_per_addr: usize,
    /// A command line must be complete this long after its first byte (slowloris defence).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// A session with no complete command for this long is closed (421).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Inside DATA, the longest silence allowed.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration)]
    data_timeout: Duration,
    /// After 30 s, a mail transfer must have averaged this rate, e.g. 10KiB/s (`0`: off).
    #[arg(long, value_name = "RATE", default_value = "10KiB/s", value_parser = parse_rate_or_off)]
    min_data_rate: u64,
    /// The longest a session may live (`0`: no limit).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    conn_lifetime: Duration,
    /// Mail buffered at once across all sessions; past it MAIL gets 452 and cameras retry.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_bytes)]
    max_buffered_mail: u64,
    /// Save JPEG/PNG attachments here (default: kept in memory, only sizes in the JSON).
    #[arg(long)]
    snapshots: Option<PathBuf>,
    /// Run this shell command for each event, with the event JSON on stdin.
    #[arg(long)]
    exec: Option<String>,
    /// Most --exec commands running at once (events beyond them wait in a queue of 1024, then
    /// are dropped for --exec with a warning).
    #[arg(long, default_value_t = 4)]
    exec_concurrency: usize,
    /// An --exec command still running this long after it started is killed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    exec_timeout: Duration,
    /// POST each event's JSON to this URL (http or https), with retries.
    #[arg(long)]
    webhook: Option<String>,
    /// Attempts per webhook POST before the event is dropped for that sink.
    #[arg(long, default_value_t = 5)]
    webhook_attempts: u32,
    /// Each webhook attempt ends this long after it started (8 at once; events beyond them wait
    /// in a queue of 1024, then are dropped for --webhook with a warning).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    webhook_timeout: Duration,
    /// Publish events to an MQTT broker, `mqtt[s]://[USER:PASS@]HOST[:PORT]`: JSON on
    /// `nvrkit/<camera>/event`, retained motion ON/OFF and availability, Home Assistant discovery
    /// (docs/mqtt.md).
    #[arg(long, value_name = "URL")]
    mqtt: Option<nvrkit_mqtt::BrokerUrl>,
    /// Trust the certificates in this PEM file for mqtts:// (besides the Mozilla roots): a
    /// private CA or a self-signed broker.
    #[arg(long, value_name = "PEM", requires = "mqtt")]
    ca_file: Option<PathBuf>,
    /// --mqtt: a camera's motion goes OFF this long after its last alarm (cameras send no
    /// "motion ended" mail), or at its --end-after "end" event if that comes first.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    mqtt_motion_hold: Duration,
    /// Emit an "end" event when a camera sends no mail for this long (e.g. 60s, 2m).
    #[arg(long, value_parser = parse_duration)]
    end_after: Option<Duration>,
    /// Refuse bare-LF line endings (RFC 5321 4.1.1.4) instead of accepting them.
    #[arg(long)]
    strict_line_endings: bool,
    /// Name in the greeting and EHLO reply.
    #[arg(long, default_value = "nvrkit")]
    hostname: String,
}

/// A rate, or `0` for none.
fn parse_rate_or_off(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    parse_rate(text)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Docs(d)) = &args.command {
        return d.run(<Args as clap::CommandFactory>::command());
    }
    nvrkit_cli::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("camevents: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Some(Command::Send(send)) => send::run(*send).await,
            Some(Command::Docs(_)) => Ok(()), // answered before the runtime started
            None => serve(args.serve).await,
        }
    });
    nvrkit_cli::exit("camevents", result)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let listen = if args.listen.eq_ignore_ascii_case("none") {
        None
    } else {
        Some(
            args.listen
                .parse::<SocketAddr>()
                .with_context(|| format!("--listen {}", args.listen))?,
        )
    };
    if listen.is_none() && args.smtps_listen.is_none() {
        bail!("nothing to listen on: give --listen or --smtps-listen");
    }
    // `--auth any` alone accepts anyone; any USER:PASS makes AUTH required for those users.
    let mut users = Vec::new();
    for spec in &args.auth {
        match AuthPolicy::parse(spec) {
            Some(AuthPolicy::Users(mut u)) => users.append(&mut u),
            Some(_) => {}
            None => bail!("--auth {spec:?}: expected `any` or USER:PASS"),
        }
    }
    let auth = if users.is_empty() {
        AuthPolicy::AcceptAny
    } else {
        AuthPolicy::Users(users)
    };
    let mut config = ServerConfig {
        listen,
        tls_listen: args.smtps_listen,
        tls: match (&args.tls_cert, &args.tls_key, args.no_tls) {
            (_, _, true) => TlsSource::Disabled,
            (Some(cert), Some(key), _) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsSource::SelfSigned,
        },
        max_sessions: args.max_conns,
        max_sessions_per_ip: args.max_conns_per_addr,
        snapshots: args
            .snapshots
            .clone()
            .map_or(SnapshotStore::Memory, SnapshotStore::Dir),
        end_after: args.end_after,
        request_timeout: args.request_timeout,
        command_timeout: args.idle_timeout,
        data_timeout: args.data_timeout,
        max_lifetime: (!args.conn_lifetime.is_zero()).then_some(args.conn_lifetime),
        mail_budget: args.max_buffered_mail,
        ..ServerConfig::default()
    };
    config.min_data_rate.bytes_per_sec = args.min_data_rate;
    config.session.hostname = args.hostname.clone();
    config.session.max_message_size =
        usize::try_from(args.max_size).context("--max-size is too large")?;
    config.session.auth = auth.clone();
    if args.strict_line_endings {
        config.session.line_endings = LineEndings::Strict;
    }
    let (server, mut events) = Server::start(config).await?;

    let info = server.info().clone();
    let tls_note = if args.no_tls { "" } else { ", STARTTLS" };
    if let Some(addr) = info.listen {
        eprintln!("camevents: listening on smtp://{addr} (plain{tls_note})");
    }
    if let Some(addr) = info.tls_listen {
        eprintln!("camevents: listening on smtps://{addr} (implicit TLS)");
    }
    if let Some(fp) = &info.fingerprint {
        let what = if info.self_signed {
            "self-signed certificate"
        } else {
            "certificate"
        };
        eprintln!("camevents: {what}, SHA-256 {fp}");
    }
    eprintln!(
        "camevents: auth {}, max size {} bytes, {} connections ({} per address), snapshots {}",
        match &auth {
            AuthPolicy::AcceptAny => "any (optional)".to_owned(),
            AuthPolicy::Users(u) => format!("required ({} user(s))", u.len()),
            _ => "custom".to_owned(),
        },
        args.max_size,
        args.max_conns,
        args.max_conns_per_addr,
        args.snapshots
            .as_ref()
            .map_or("in memory".to_owned(), |d| d.display().to_string()),
    );

    let sinks = sinks::Sinks::new(sinks::SinkOptions {
        exec: args.exec.clone(),
        exec_concurrency: args.exec_concurrency,
        exec_timeout: args.exec_timeout,
        webhook: args.webhook.clone(),
        webhook_attempts: args.webhook_attempts,
        webhook_timeout: args.webhook_timeout,
        mqtt: args.mqtt.clone(),
        ca_file: args.ca_file.clone(),
        mqtt_motion_hold: args.mqtt_motion_hold,
    })?;
    if let Some(url) = &args.mqtt {
        eprintln!("camevents: publishing to {url} (topics nvrkit/<camera>/…)");
    }
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                // One line per event. Events already waiting go out in the same write; the flush
                // comes when none is left, so a consumer never waits for a line.
                // (Stdout is line-buffered: a BufWriter on top makes the batch one write.)
                let mut lock = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
                let mut next = Some(event);
                while let Some(event) = next {
                    let json = event.to_json();
                    writeln!(lock, "{json}").context("writing to stdout")?;
                    sinks.dispatch(&event, json);
                    next = events.try_recv().ok();
                }
                lock.flush().context("writing to stdout")?;
            }
            () = stop_signal() => {
                eprintln!("camevents: stopping");
                break;
            }
        }
    }
    stdout.flush().ok();
    server.shutdown().await;
    sinks.finish().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (systemd, docker stop).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_spellings_still_parse() {
        use clap::Parser as _;
        let args = Args::try_parse_from([
            "camevents",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--tls-listen",
            "127.0.0.1:4650",
            "--max-sessions",
            "7",
            "--max-sessions-per-ip",
            "3",
            "--max-size",
            "25m",
        ])
        .unwrap();
        assert_eq!(args.serve.tls_cert.as_deref(), Some("c.pem".as_ref()));
        assert_eq!(args.serve.max_conns, 7);
        assert_eq!(args.serve.max_conns_per_addr, 3);
        assert_eq!(args.serve.max_size, 25 << 20);
        assert!(args.serve.smtps_listen.is_some());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
    }
}

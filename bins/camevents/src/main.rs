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
use nvrkit_smtp::{AuthPolicy, LineEndings, Server, ServerConfig, SnapshotStore, TlsSource};

const EXAMPLES: &str = "\
Examples:
  camevents                                   # SMTP on 0.0.0.0:2525, STARTTLS with a self-signed cert
  camevents --tls-listen 0.0.0.0:4650         # and implicit TLS (what cameras call SSL) on 4650
  camevents --auth cam:secret --snapshots ./snaps
  camevents --exec 'jq -c .kind >> kinds.log' --webhook http://127.0.0.1:8080/api/events
  camevents --end-after 60s | jq .
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
    Send(send::SendArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Plain SMTP listener (STARTTLS offered unless --no-tls). `none` for no plain listener.
    #[arg(long, default_value = "0.0.0.0:2525")]
    listen: String,
    /// Implicit-TLS listener ("SSL" in camera settings), e.g. 0.0.0.0:4650.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain; without it a self-signed certificate is made at start.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// No TLS at all: no STARTTLS, no --tls-listen.
    #[arg(long, conflicts_with_all = ["cert", "key", "tls_listen"])]
    no_tls: bool,
    /// `any` (accept any credentials, AUTH optional) or USER:PASS (AUTH required). Repeatable.
    #[arg(long, default_value = "any")]
    auth: Vec<String>,
    /// Largest mail accepted, bytes (K, M, G suffixes); larger gets 552 and the session goes on.
    #[arg(long, default_value = "25M", value_parser = parse_size)]
    max_size: usize,
    /// Most sessions at once.
    #[arg(long, default_value_t = 512)]
    max_sessions: usize,
    /// Most sessions at once from one IP address (an NVR mails every channel from one address).
    #[arg(long, default_value_t = 64)]
    max_sessions_per_ip: usize,
    /// Save JPEG/PNG attachments here (default: kept in memory, only sizes in the JSON).
    #[arg(long)]
    snapshots: Option<PathBuf>,
    /// Run this shell command for each event, with the event JSON on stdin.
    #[arg(long)]
    exec: Option<String>,
    /// Most --exec commands running at once.
    #[arg(long, default_value_t = 4)]
    exec_concurrency: usize,
    /// POST each event's JSON to this URL (http or https), with retries.
    #[arg(long)]
    webhook: Option<String>,
    /// Attempts per webhook POST before the event is dropped for that sink.
    #[arg(long, default_value_t = 5)]
    webhook_attempts: u32,
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

fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, mult) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1024),
        Some((i, 'm' | 'M')) => (&text[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&text[..i], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("not a size: {text:?} (e.g. 25M, 500K, 1000000)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {text}"))
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (e.g. 60s, 2m, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
            Some(Command::Send(send)) => send::run(send).await,
            None => serve(args.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camevents: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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
    if listen.is_none() && args.tls_listen.is_none() {
        bail!("nothing to listen on: give --listen or --tls-listen");
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
        tls_listen: args.tls_listen,
        tls: match (&args.cert, &args.key, args.no_tls) {
            (_, _, true) => TlsSource::Disabled,
            (Some(cert), Some(key), _) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsSource::SelfSigned,
        },
        max_sessions: args.max_sessions,
        max_sessions_per_ip: args.max_sessions_per_ip,
        snapshots: args
            .snapshots
            .clone()
            .map_or(SnapshotStore::Memory, SnapshotStore::Dir),
        end_after: args.end_after,
        ..ServerConfig::default()
    };
    config.session.hostname = args.hostname.clone();
    config.session.max_message_size = args.max_size;
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
        "camevents: auth {}, max size {} bytes, {} sessions ({} per IP), snapshots {}",
        match &auth {
            AuthPolicy::AcceptAny => "any (optional)".to_owned(),
            AuthPolicy::Users(u) => format!("required ({} user(s))", u.len()),
            _ => "custom".to_owned(),
        },
        args.max_size,
        args.max_sessions,
        args.max_sessions_per_ip,
        args.snapshots
            .as_ref()
            .map_or("in memory".to_owned(), |d| d.display().to_string()),
    );

    let sinks = sinks::Sinks::new(
        args.exec.clone(),
        args.exec_concurrency,
        args.webhook.clone(),
        args.webhook_attempts,
    );
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
    fn sizes_and_durations() {
        assert_eq!(parse_size("25M"), Ok(25 * 1024 * 1024));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("1y").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
    }
}

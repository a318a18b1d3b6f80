//! `rtsp-load`: N RTSP readers from a few threads, counting RTP without depacketizing, for the
//! benches/compare scripts. A thin shell over `nvrkit_benches::rtsp_load`.

// A CLI's output is its job: the report on stdout, a fatal error on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use nvrkit_benches::rtsp_load::{self, Config, Report, Transport};
use nvrkit_cli::units::parse_duration;

const EXAMPLES: &str = "\
Examples:
  rtsp-load --url rtsp://127.0.0.1:8554/cam --clients 500 --duration 20s --json
      500 RTSP/TCP readers opened at 200 a second, 20 s with all open; JSON on stdout
  rtsp-load --url rtsp://admin:pw@127.0.0.1:8554/cam --transport udp --clients 1000 --threads 2
      UDP, Basic or Digest answered with the URL's user and password
  taskset -c 1 rtsp-load --url rtsp://127.0.0.1:18554/bigbuckbunny --clients 2000 --ramp 500";

/// Open many RTSP sessions (DESCRIBE, SETUP, PLAY; TCP-interleaved or UDP) and count what
/// arrives: RTP sequence continuity, frames (video marker bits), PLAY to the first keyframe,
/// each frame's lateness against its RTP timeline, and the client's own CPU time.
#[derive(Debug, Parser)]
#[command(name = "rtsp-load", version, after_help = EXAMPLES, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<nvrkit_cli::docs::DocsCommand>,

    /// The stream: `rtsp://[user:pass@]host[:port]/path`.
    #[arg(long, required = true)]
    url: Option<String>,

    /// Sessions to open.
    #[arg(long, value_name = "N", default_value_t = 1)]
    clients: usize,

    /// Client threads, each one current-thread runtime owning its share of the sessions.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,

    /// How long every session plays once all are open.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// RTP over the RTSP connection (tcp) or a UDP port pair per stream (udp).
    #[arg(long, value_name = "tcp|udp", default_value = "tcp", value_parser = ["tcp", "udp"])]
    transport: String,

    /// Sessions opened per second.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 200.0)]
    ramp: f64,

    /// Set up the audio stream too (video only by default).
    #[arg(long)]
    audio: bool,

    /// Deadline of each RTSP exchange; media silent this long fails a session.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    /// Print the report as one JSON document (default: a summary).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    nvrkit_cli::init_logging();
    let args = Args::parse();
    if let Some(d) = &args.command {
        return d.run(<Args as clap::CommandFactory>::command());
    }
    nvrkit_cli::exit("rtsp-load", run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(args.ramp > 0.0, "--ramp must be positive");
    let config = Config {
        url: args.url.context("--url is required")?,
        clients: args.clients,
        threads: args.threads.max(1),
        duration: args.duration,
        transport: if args.transport == "udp" {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        ramp: args.ramp,
        audio: args.audio,
        timeout: args.timeout,
    };
    let total = config.ramp_time() + config.duration;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total.as_secs().max(1))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}")
            .expect("a valid template"),
    );
    bar.set_message(format!("{} sessions", config.clients));
    let report = rtsp_load::run_with_progress(&config, |secs| bar.set_position(secs as u64))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn print_summary(r: &Report) {
    let f = |s: &Option<rtsp_load::count::Spread>| match s {
        Some(s) => format!(
            "min {:.1} median {:.1} p99 {:.1} max {:.1}",
            s.min, s.median, s.p99, s.max
        ),
        None => "none".into(),
    };
    println!(
        "{} over {:?}: {}/{} sessions ok, every frame: {}",
        r.url, r.transport, r.ok, r.clients, r.every_frame
    );
    for (e, n) in &r.errors {
        println!("  {n} × {e}");
    }
    println!(
        "packets {} frames {} lost {} reordered {} duplicates {}",
        r.totals.packets, r.totals.frames, r.totals.lost, r.totals.reordered, r.totals.duplicates
    );
    println!("frames per session: {}", f(&r.frames_per_session));
    println!("first keyframe ms:  {}", f(&r.first_key_ms));
    println!(
        "lateness ms: p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
        r.lateness.p50_ms, r.lateness.p99_ms, r.lateness.p999_ms, r.lateness.max_ms
    );
    println!(
        "client CPU: {:.1} % of a core over the run, {:.1} % steady ({:.1} % per 1,000 sessions)",
        r.cpu.pct, r.cpu.steady_pct, r.cpu.steady_pct_per_1000
    );
}

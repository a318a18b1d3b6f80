//! `nvr`: nvrkit's recorder. This version probes MP4 files (`nvr probe`); recording, the
//! embedded demo camera and the SMTP alarm input come in a later version.

// A command-line tool prints its results and errors: the library lint against printing does not
// apply here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmds;

const EXAMPLES: &str = "\
Examples:
  nvr                          describe the embedded sample clip
  nvr probe clip.mp4           tracks, codecs, GOPs, B-frames, and whether the clip loops cleanly
  RUST_LOG=debug nvr probe x.mp4   the same, with the demuxer's debug log on stderr";

/// nvrkit's network video recorder.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Describe an MP4 file: tracks, codecs, resolution, frame rate, GOPs, B-frames, durations,
    /// and whether it loops cleanly.
    Probe(cmds::probe::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mp4_atom=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Probe(args)) => cmds::probe::run(&args),
        None => cmds::probe::run(&cmds::probe::Args::default()).map(|()| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "\nRecording (RTSP ingest, RAM pre-event ring, SMTP alarms, segment store) comes in a \
                 later version of nvr.\nTry `nvr probe FILE.mp4` on a clip of your own."
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nvr: {e:#}");
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

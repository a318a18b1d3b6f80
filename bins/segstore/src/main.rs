//! `segstore`: import, list, export, tag, verify, prune and replicate segment-store footage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod cmds;

const EXAMPLES: &str = "\
Examples:
  segstore import --camera front                     the embedded sample clip, as if recorded just now
  segstore import --camera yard bikes.mp4 --start 2026-11-25T12:00:00Z --loops 6
  segstore ls                                        every camera's recordings
  segstore ls --camera yard --from -1h --segments    the last hour, segment by segment
  segstore export --camera yard --from -10m --to -5m -o clip.mp4
  segstore tag --camera yard --from -2m --to now --tag event
  segstore verify                                    check every segment's length, hash and structure
  segstore retain --max-bytes 500G --max-age 30d --min-free 10G
  segstore replicate --to s3://bucket/site --upstream 2Mbit     events first, resumable
  segstore replicate --to /mnt/nas/cams --skip-no-motion --follow
  segstore verify --remote s3://bucket/site                     spot-check the copies

Every subcommand takes --store DIR (default ./nvr-data, the store `nvr` writes). Times are RFC 3339
(2026-11-25T16:37:03Z), `now`, or relative to now (-10m, -1h30m, -2d). S3 credentials, region and
endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL,
AWS_ALLOW_HTTP unless given as flags.";

/// Imports, lists, exports, tags, verifies, prunes and replicates footage in an nvrkit segment store.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write an MP4 clip into the store as if a camera had recorded it.
    Import(cmds::import::Args),
    /// List cameras, recordings (contiguous footage) or segments.
    Ls(cmds::ls::Args),
    /// Export a time range of one camera to a single MP4 file.
    Export(cmds::export::Args),
    /// Tag (or untag) a time range: event, motion, pinned.
    Tag(cmds::tag::Args),
    /// Check every segment: length and BLAKE3 against its sidecar, MP4 structure, frame counts.
    Verify(cmds::verify::Args),
    /// Delete footage by bytes, age and free space: untagged first, then motion, then events;
    /// never pinned footage.
    Retain(cmds::retain::Args),
    /// Copy the store to a directory or S3-compatible bucket: event footage first, then motion,
    /// then continuous; under an upstream cap; resumable after a crash.
    Replicate(cmds::replicate::Args),
    #[command(flatten)]
    Docs(nvrkit_cli::docs::DocsCommand),
}

// The binary's one line to stderr: the error, with its causes.
#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    nvrkit_cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Docs(d) => return d.run(<Cli as clap::CommandFactory>::command()),
        Command::Import(a) => cmds::import::run(&a),
        Command::Ls(a) => cmds::ls::run(&a),
        Command::Export(a) => cmds::export::run(&a),
        Command::Tag(a) => cmds::tag::run(&a),
        Command::Verify(a) => cmds::verify::run(&a),
        Command::Retain(a) => cmds::retain::run(&a),
        Command::Replicate(a) => cmds::replicate::run(&a),
    };
    nvrkit_cli::exit_with("segstore", result)
}

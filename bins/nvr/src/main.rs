//! `nvr`: nvrkit's recorder. RTSP cameras into RAM rings; camera alarm e-mails (SMTP) or HTTP
//! events turn the footage from before the alarm to after it into clips in the store; an HTTP
//! API and page list events and play their clips. With no camera it records a built-in demo
//! camera. `nvr probe FILE` describes an MP4 file.

// A command-line tool prints its results and errors: the library lint against printing does not
// apply here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmds;
mod guard;
mod http;
mod live;
mod mqtt;
mod restream;

const EXAMPLES: &str = "\
Examples:
  nvr                                          record a built-in demo camera; prints what to send
  nvr --demo-event-every 30s                   ... and let the demo camera e-mail its own alarms
  nvr --camera garage=rtsp://admin:pw@10.0.0.5/stream1 --camera yard=rtsp://10.0.0.6/h264
  nvr --camera garage=rtsp://… --map 'channel=2:garage' --pre 5s --post 30s --record all
  nvr --smtp-listen 0.0.0.0:2525 --smtp-auth cam:secret   take the cameras' alarm mails from the LAN
  nvr --http-listen 0.0.0.0:8080 --http-auth admin:secret   serve the API beyond loopback
  nvr --rtsp-listen 0.0.0.0:8554 --rtsp-auth view:secret   restream rtsp://HOST:8554/<camera>
  nvr --rtsp-max-conns 64 --rtsp-max-conns-per-addr 8   cap the restream's viewers (one more: 503)
  nvr --push 'rtmp://10.0.0.9/live/{name}'   also publish each camera over RTMP, keyed by its name
  nvr --camera yard=rtsp://… --push 'rtmps://live.example.com/app/KEY' --ca-file ca.pem
  nvr --mqtt mqtt://user:pass@127.0.0.1:1883   events, motion and Home Assistant discovery on MQTT
  nvr --config nvr.toml                        cameras and map rules from a file:
                                                 map = [\"channel=2:garage\"]
                                                 [[camera]]
                                                 name = \"garage\"
                                                 url = \"rtsp://admin:pw@10.0.0.5/stream1\"
                                                 transport = \"udp\"   # optional
  nvr probe clip.mp4                           tracks, codecs, GOPs, B-frames, loop cleanliness
  nvr selftest --pre 2s --post 2s --record all  prove a clip holds exactly its frames

Events map to a camera by --map rule, then the recipient's local part (garage@anything), then the
camera or channel name in the mail, then the sender.";

/// nvrkit's network video recorder: RTSP cameras, e-mail alarms, pre/post-event clips.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: cmds::run::Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Describe an MP4 file: tracks, codecs, resolution, frame rate, GOPs, B-frames, durations,
    /// and whether it loops cleanly.
    Probe(cmds::probe::Args),
    /// Prove a recording frame by frame: the demo camera numbers its frames, an alarm is raised
    /// at a known frame, and the stored clip must hold exactly the frames from t - pre to
    /// t + post (none missing, none repeated). Prints the alarm-to-clip latency; exits 1 with a
    /// report when the clip is wrong.
    Selftest(cmds::selftest::Args),
    #[command(flatten)]
    Docs(nvrkit_cli::docs::DocsCommand),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    nvrkit_cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Docs(d)) => return d.run(<Cli as clap::CommandFactory>::command()),
        Some(Command::Probe(args)) => cmds::probe::run(&args),
        Some(Command::Selftest(args)) => {
            runtime().and_then(|rt| rt.block_on(cmds::selftest::run(args)))
        }
        None => runtime().and_then(|rt| rt.block_on(cmds::run::run(cli.run))),
    };
    nvrkit_cli::exit("nvr", result)
}

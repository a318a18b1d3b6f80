//! `segstore import`: write a clip as if a camera had recorded it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nvrkit_media::{Demuxer, WallTime};
use nvrkit_store::{ImportOptions, Options, Store};

use crate::args::{StoreArg, TimeArg, parse_duration, parse_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// The camera to record as.
    #[arg(long)]
    camera: String,
    /// The MP4 or QuickTime .mov file (H.264/H.265 with AAC or G.711). Default: the embedded
    /// 10 s sample clip.
    file: Option<PathBuf>,
    /// Wall time of the first frame. Default: so the clip ends now (with --realtime: starts now).
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    start: Option<TimeArg>,
    /// Play the clip this many times back to back, timestamps continuing.
    #[arg(long, default_value_t = 1)]
    loops: u32,
    /// Write at the pace of the wall clock, like a live camera.
    #[arg(long)]
    realtime: bool,
    /// Target segment length.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    segment: std::time::Duration,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let clip = match &a.file {
        Some(p) => Demuxer::open(p).with_context(|| format!("reading {}", p.display()))?,
        None => Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?,
    };
    let store = Store::open(
        &a.store.store,
        Options::default().segment_duration(a.segment),
    )
    .with_context(|| format!("opening {} for writing", a.store.store.display()))?;
    let total =
        clip.tracks().iter().map(|t| t.frames as u64).sum::<u64>() * u64::from(a.loops.max(1));
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("import [{bar:30}] {pos}/{len} frames {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut opts = ImportOptions::default().loops(a.loops).realtime(a.realtime);
    if let Some(t) = &a.start {
        opts = opts.start(t.resolve(WallTime::now()));
    }
    let report = store
        .import(&a.camera, &clip, &opts, |n| pb.set_position(n))
        .with_context(|| format!("importing {} as camera {}", clip.name(), a.camera))?;
    pb.finish_and_clear();
    tracing::info!(
        camera = a.camera,
        start = %report.start,
        end = %report.end,
        frames = report.frames,
        segments = report.segments,
        "imported {}",
        clip.name()
    );
    Ok(ExitCode::SUCCESS)
}

//! `segstore export`: a time range of one camera to one MP4.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nvrkit_media::WallTime;
use nvrkit_store::{ExportFormat, Store};

use crate::args::{StoreArg, TimeArg, human_bytes, parse_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// The camera.
    #[arg(long)]
    camera: String,
    /// Start of the range (the output starts with the frame on screen then).
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    from: TimeArg,
    /// End of the range.
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    to: TimeArg,
    /// Output file (`-` for stdout).
    #[arg(short, long)]
    output: PathBuf,
    /// Write fragmented MP4 (streams with bounded memory) instead of a faststart MP4.
    #[arg(long)]
    fragmented: bool,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&a.store.store)
        .with_context(|| format!("opening {}", a.store.store.display()))?;
    let now = WallTime::now();
    let (from, to) = (a.from.resolve(now), a.to.resolve(now));
    let format = if a.fragmented {
        ExportFormat::Fragmented
    } else {
        ExportFormat::Mp4
    };
    let export = store
        .export(&a.camera, from, to, format)
        .with_context(|| format!("exporting {} from {from} to {to}", a.camera))?;
    let pb = super::bar(export.estimated_bytes(), "export");
    let mut out: Box<dyn Write> = if a.output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(BufWriter::new(
            File::create(&a.output).with_context(|| format!("creating {}", a.output.display()))?,
        ))
    };
    let n = export
        .write_to(&mut out, |n| pb.set_position(n))
        .with_context(|| format!("writing {}", a.output.display()))?;
    pb.finish_and_clear();
    tracing::info!(camera = a.camera, %from, %to, "wrote {} to {}", human_bytes(n), a.output.display());
    Ok(ExitCode::SUCCESS)
}

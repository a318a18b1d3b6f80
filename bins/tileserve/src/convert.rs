//! `tileserve convert`: MBTiles to PMTiles and back (`nvrkit_mbtiles::convert`), with a
//! progress bar.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use nvrkit_mbtiles::catalog::is_pmtiles;
use nvrkit_mbtiles::{MbTiles, PmTiles, convert};

/// `tileserve convert IN OUT`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  tileserve convert world.mbtiles world.pmtiles
  tileserve convert world.pmtiles world.mbtiles")]
pub struct Args {
    /// The file to read: .mbtiles or .pmtiles.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// The file to write, of the other kind (must not exist).
    #[arg(value_name = "OUT")]
    output: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (from_pm, to_pm) = (is_pmtiles(&args.input), is_pmtiles(&args.output));
    if from_pm == to_pm {
        bail!(
            "convert {} {}: one of IN and OUT must end in .pmtiles, the other in .mbtiles",
            args.input.display(),
            args.output.display()
        );
    }
    if args.output.exists() {
        bail!(
            "{}: already exists (remove it first)",
            args.output.display()
        );
    }
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} tiles {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("{}", args.output.display()));
    let mut progress = |done: u64, total: u64| {
        if bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    };
    let stats = if to_pm {
        let src = MbTiles::open(&args.input).context("reading the input")?;
        convert::mbtiles_to_pmtiles(&src, &args.output, &mut progress)?
    } else {
        let src = PmTiles::open(&args.input).context("reading the input")?;
        convert::pmtiles_to_mbtiles(&src, &args.output, &mut progress)?
    };
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: {} tiles, {} {}",
        args.output.display(),
        stats.tiles,
        stats.written,
        if to_pm { "distinct contents" } else { "rows" }
    )?;
    Ok(())
}

//! `segstore tag`: tag or untag a time range.

use std::process::ExitCode;

use anyhow::Context;
use nvrkit_media::WallTime;
use nvrkit_store::{Options, Store, Tag};

use crate::args::{StoreArg, TimeArg, parse_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// The camera.
    #[arg(long)]
    camera: String,
    /// Start of the range.
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    from: TimeArg,
    /// End of the range.
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    to: TimeArg,
    /// event, motion or pinned.
    #[arg(long)]
    tag: Tag,
    /// A JSON note kept with the tag (an event's description).
    #[arg(long)]
    note: Option<String>,
    /// Remove the tag from the range instead.
    #[arg(long)]
    remove: bool,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::open(&a.store.store, Options::default())
        .with_context(|| format!("opening {} for writing", a.store.store.display()))?;
    let now = WallTime::now();
    let (from, to) = (a.from.resolve(now), a.to.resolve(now));
    if a.remove {
        store.untag(&a.camera, from, to, a.tag)?;
    } else {
        let note = a
            .note
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("--note is not JSON")?;
        store.tag(&a.camera, from, to, a.tag, note)?;
    }
    Ok(ExitCode::SUCCESS)
}

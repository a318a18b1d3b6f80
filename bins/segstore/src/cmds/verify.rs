//! `segstore verify`: check every segment against its sidecar.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use nvrkit_store::Store;

use crate::args::StoreArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// Only this camera.
    #[arg(long)]
    camera: Option<String>,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&a.store.store)
        .with_context(|| format!("opening {}", a.store.store.display()))?;
    let pb = super::bar(store.bytes(a.camera.as_deref()), "verify");
    let problems = store.verify(a.camera.as_deref(), |n| pb.inc(n));
    pb.finish_and_clear();
    let mut out = std::io::stdout().lock();
    for p in &problems {
        writeln!(out, "{}: {}", p.path.display(), p.what)?;
    }
    if problems.is_empty() {
        writeln!(out, "ok: every segment matches its sidecar")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "{} problem(s)", problems.len())?;
        Ok(ExitCode::FAILURE)
    }
}

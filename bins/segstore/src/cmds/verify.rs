//! `segstore verify`: check every segment against its sidecar.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use nvrkit_store::Store;

use crate::args::{S3Args, StoreArg};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// Only this camera.
    #[arg(long)]
    camera: Option<String>,
    /// Check the copies on a replication target instead (s3://BUCKET/SITE or a directory):
    /// sizes, three 64 KiB range reads per object against the local segment, the BLAKE3 of
    /// objects no longer stored locally, and the day manifests.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// With --remote: check every Nth object only.
    #[arg(long, default_value_t = 1, value_name = "N", requires = "remote")]
    sample: u64,
    /// With --remote: read every checked object whole and compare its BLAKE3.
    #[arg(long, requires = "remote")]
    full: bool,
    #[command(flatten)]
    s3: S3Args,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&a.store.store)
        .with_context(|| format!("opening {}", a.store.store.display()))?;
    if let Some(url) = &a.remote {
        return remote(a, &store, url);
    }
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

fn remote(a: &Args, store: &Store, url: &str) -> anyhow::Result<ExitCode> {
    let target = a.s3.target(url)?;
    let pb = indicatif::ProgressBar::new(0);
    let r = nvrkit_replicate::verify_remote(store, &target, a.sample, a.full, |done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })
    .with_context(|| format!("checking {}", target.url()))?;
    pb.finish_and_clear();
    let mut out = std::io::stdout().lock();
    for p in &r.problems {
        writeln!(out, "{p}")?;
    }
    writeln!(
        out,
        "{}: {} segment objects, {} checked ({} range reads, {} read whole); {} segments still queued",
        target.url(),
        r.objects,
        r.checked,
        r.ranges,
        r.hashed,
        r.pending
    )?;
    if r.problems.is_empty() {
        writeln!(out, "ok: every checked copy matches")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "{} problem(s)", r.problems.len())?;
        Ok(ExitCode::FAILURE)
    }
}

//! `segstore retain`: delete footage by bytes, age and free space.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nvrkit_store::{Limits, Options, RetentionPolicy, Store};

use crate::args::{StoreArg, human_bytes, parse_bytes, parse_duration};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// Apply the limits to this camera only (default: the whole store).
    #[arg(long)]
    camera: Option<String>,
    /// Keep at most this many bytes (500G, 2T).
    #[arg(long, value_parser = parse_bytes)]
    max_bytes: Option<u64>,
    /// Delete untagged footage older than this (30d).
    #[arg(long, value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// Delete motion footage older than this (default: --max-age).
    #[arg(long, value_parser = parse_duration)]
    max_age_motion: Option<Duration>,
    /// Delete event footage older than this (default: only when space is needed).
    #[arg(long, value_parser = parse_duration)]
    max_age_event: Option<Duration>,
    /// Delete footage until the file system has this much free space.
    #[arg(long, value_parser = parse_bytes)]
    min_free: Option<u64>,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::open(&a.store.store, Options::default())
        .with_context(|| format!("opening {} for writing", a.store.store.display()))?;
    let mut limits = Limits::default();
    limits.max_bytes = a.max_bytes;
    limits.max_age = a.max_age;
    limits.max_age_motion = a.max_age_motion;
    limits.max_age_event = a.max_age_event;
    let mut policy = match &a.camera {
        Some(c) => RetentionPolicy::default().camera(c, limits),
        None => RetentionPolicy::default().overall(limits),
    };
    policy.min_free_bytes = a.min_free;
    let report = store.retain(&policy)?;
    for d in &report.deleted {
        tracing::info!(camera = d.camera, start = %d.start, reason = ?d.reason, "deleted {}", d.path.display());
    }
    for u in &report.unmet {
        tracing::warn!("not met: {u}");
    }
    tracing::info!(
        "deleted {} segments, {}",
        report.deleted.len(),
        human_bytes(report.freed_bytes())
    );
    Ok(ExitCode::SUCCESS)
}

//! `segstore ls`: cameras, recordings, segments.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use nvrkit_media::WallTime;
use nvrkit_store::{Store, Tag};

use crate::args::{StoreArg, TimeArg, human_bytes, human_duration, parse_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// Only this camera.
    #[arg(long)]
    camera: Option<String>,
    /// From this time (default: the beginning).
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    from: Option<TimeArg>,
    /// Up to this time (default: now and later).
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    to: Option<TimeArg>,
    /// Only footage with this tag (event, motion, pinned).
    #[arg(long)]
    tag: Option<Tag>,
    /// One line per segment instead of per recording.
    #[arg(long)]
    segments: bool,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&a.store.store)
        .with_context(|| format!("opening {}", a.store.store.display()))?;
    let now = WallTime::now();
    let from = a
        .from
        .as_ref()
        .map_or(WallTime::from_micros(i64::MIN / 2), |t| t.resolve(now));
    let to =
        a.to.as_ref()
            .map_or(WallTime::from_micros(i64::MAX / 2), |t| t.resolve(now));
    let mut out = std::io::stdout().lock();
    for p in store.problems() {
        tracing::warn!("{}: {}", p.path.display(), p.what);
    }
    let cameras: Vec<String> = match &a.camera {
        Some(c) => vec![c.clone()],
        None => store.cameras(),
    };
    for camera in cameras {
        writeln!(out, "{camera}  {}", human_bytes(store.bytes(Some(&camera))))?;
        let tags = |t: &std::collections::BTreeSet<Tag>| {
            t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
        };
        if a.segments {
            for s in store.segments(&camera, from, to) {
                if a.tag.is_some_and(|t| !s.tags.contains(&t)) {
                    continue;
                }
                writeln!(
                    out,
                    "  {}  {}  {:>10}  {:>6} frames  {}{}{}{}",
                    s.start,
                    human_duration(s.end.micros_since(s.start)),
                    human_bytes(s.bytes),
                    s.meta.frames(),
                    tags(&s.tags),
                    if s.open { " open" } else { "" },
                    if s.meta.discontinuity {
                        " after-gap"
                    } else {
                        ""
                    },
                    if s.meta.recovered { " recovered" } else { "" },
                )?;
            }
        } else {
            for r in store.recordings(&camera, from, to) {
                if a.tag.is_some_and(|t| !r.tags.contains(&t)) {
                    continue;
                }
                writeln!(
                    out,
                    "  {} .. {}  {}  {} segments  {}  {}",
                    r.start,
                    r.end,
                    human_duration(r.end.micros_since(r.start)),
                    r.segments,
                    human_bytes(r.bytes),
                    tags(&r.tags),
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

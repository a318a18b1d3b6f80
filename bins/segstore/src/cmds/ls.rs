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
    /// One JSON document on stdout instead of lines: `{"cameras": [{"name", "bytes",
    /// "recordings" | "segments": [...]}]}`, times in RFC 3339, sizes in bytes.
    #[arg(long)]
    json: bool,
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
    if a.json {
        let doc = json_listing(&store, &cameras, from, to, a);
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
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

/// `segstore ls --json`: the same listing as one document.
fn json_listing(
    store: &Store,
    cameras: &[String],
    from: WallTime,
    to: WallTime,
    a: &Args,
) -> serde_json::Value {
    let tags = |t: &std::collections::BTreeSet<Tag>| -> Vec<&'static str> {
        t.iter().map(|t| t.as_str()).collect()
    };
    let list: Vec<serde_json::Value> = cameras
        .iter()
        .map(|camera| {
            let mut c = serde_json::json!({
                "name": camera,
                "bytes": store.bytes(Some(camera)),
            });
            if a.segments {
                let segments: Vec<serde_json::Value> = store
                    .segments(camera, from, to)
                    .into_iter()
                    .filter(|s| a.tag.is_none_or(|t| s.tags.contains(&t)))
                    .map(|s| {
                        serde_json::json!({
                            "start": s.start.to_rfc3339(),
                            "end": s.end.to_rfc3339(),
                            "bytes": s.bytes,
                            "frames": s.meta.frames(),
                            "tags": tags(&s.tags),
                            "open": s.open,
                            "after_gap": s.meta.discontinuity,
                            "recovered": s.meta.recovered,
                        })
                    })
                    .collect();
                c["segments"] = segments.into();
            } else {
                let recordings: Vec<serde_json::Value> = store
                    .recordings(camera, from, to)
                    .into_iter()
                    .filter(|r| a.tag.is_none_or(|t| r.tags.contains(&t)))
                    .map(|r| {
                        serde_json::json!({
                            "start": r.start.to_rfc3339(),
                            "end": r.end.to_rfc3339(),
                            "segments": r.segments,
                            "bytes": r.bytes,
                            "tags": tags(&r.tags),
                        })
                    })
                    .collect();
                c["recordings"] = recordings.into();
            }
            c
        })
        .collect();
    serde_json::json!({ "cameras": list })
}

//! `loopcam check FILE|DIR...`: each clip's loop run offline ([`nvrkit_feed::check`]), printed as
//! a table or as one JSON document.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use nvrkit_feed::Clip;
use nvrkit_feed::check::{CheckReport, DEFAULT_LOOPS, TrackCheck, check_clip_with};
use nvrkit_media::{Demuxer, SkippedTrack};
use serde_json::{Value, json};

/// Arguments of `loopcam check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// MP4 files, or directories of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Loops to run per clip.
    #[arg(long, default_value_t = DEFAULT_LOOPS)]
    loops: u32,
    /// Output for scripts: one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// One input's outcome.
struct Checked {
    path: PathBuf,
    skipped: Vec<SkippedTrack>,
    outcome: Result<CheckReport, String>,
    secs: f64,
}

/// Above this many frames in all, a progress bar shows on a terminal.
const BAR_FRAMES: u64 = 2_000_000;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let files = crate::clip_files(&args.inputs)?;
    if files.is_empty() {
        bail!("no clip to check");
    }
    let loaded: Vec<(PathBuf, anyhow::Result<Loaded>)> = files
        .into_iter()
        .map(|p| {
            let r = load(&p);
            (p, r)
        })
        .collect();
    let work: u64 = loaded
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|(c, _)| {
            let per_loop: usize = (0..c.tracks().len()).map(|s| c.frames(s).len()).sum();
            per_loop as u64 * u64::from(args.loops)
        })
        .sum();
    let clips_ok = loaded.iter().filter(|(_, r)| r.is_ok()).count() as u64;
    let bar = if work > BAR_FRAMES {
        indicatif::ProgressBar::new(clips_ok * u64::from(args.loops)).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} loops {msg} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut results = Vec::new();
    let mut base = 0u64;
    for (path, r) in loaded {
        let started = Instant::now();
        let (outcome, skipped) = match r {
            Ok((clip, skipped)) => {
                bar.set_message(clip.name().to_owned());
                let report = check_clip_with(&clip, args.loops, |n| {
                    bar.set_position(base + u64::from(n));
                });
                base += u64::from(args.loops);
                (Ok(report), skipped)
            }
            Err(e) => (Err(format!("{e:#}")), Vec::new()),
        };
        results.push(Checked {
            path,
            skipped,
            outcome,
            secs: started.elapsed().as_secs_f64(),
        });
    }
    bar.finish_and_clear();
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&to_json(&results))?;
        s.push('\n');
        s
    } else {
        table(&results)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let failed: Vec<String> = results
        .iter()
        .filter(|c| !c.outcome.as_ref().is_ok_and(CheckReport::passed))
        .map(|c| c.path.display().to_string())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} clips fail the loop check: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// A clip ready to check, and the tracks it leaves out.
type Loaded = (std::sync::Arc<Clip>, Vec<SkippedTrack>);

fn load(path: &Path) -> anyhow::Result<Loaded> {
    let demux = Demuxer::open(path)?;
    let clip = Clip::load(crate::stem(path), &demux)?;
    Ok((clip, demux.skipped_tracks().to_vec()))
}

fn range(r: Option<(i64, i64)>) -> String {
    match r {
        None => "-".into(),
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a}..{b}"),
    }
}

fn dropped(t: &TrackCheck) -> String {
    let mut s = match t.dropped {
        (0, 0) => String::new(),
        (a, b) if a == b => a.to_string(),
        (a, b) => format!("{a}..{b}"),
    };
    for (n, what) in [
        (t.leading_dropped, "RASL"),
        (t.before_keyframe, "before keyframe"),
    ] {
        if n > 0 {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&format!("{n} {what}"));
        }
    }
    if s.is_empty() { "-".into() } else { s }
}

/// The human-readable report: per clip a verdict line, then one row per track (times in the
/// track's ticks).
fn table(results: &[Checked]) -> String {
    let mut o = String::new();
    for c in results {
        let r = match &c.outcome {
            Err(e) => {
                let _ = writeln!(o, "{}: cannot be looped: {e}\n", c.path.display());
                continue;
            }
            Ok(r) => r,
        };
        let _ = writeln!(
            o,
            "{}: {} ({} loops of {:.3} s, {} frames checked in {:.2} s)",
            c.path.display(),
            r.verdict(),
            r.loops,
            r.period_micros as f64 / 1e6,
            r.frames,
            c.secs
        );
        let after = r
            .tracks
            .iter()
            .find(|t| !t.offsets.is_empty())
            .map(|t| {
                t.offsets
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| "1/10/1000".into());
        let head = [
            "stream".to_owned(),
            "codec".into(),
            "ticks/s".into(),
            "frame".into(),
            "seam step".into(),
            "min step".into(),
            "dropped/loop".into(),
            "gaps".into(),
            format!("offset after {after}"),
            "limit".into(),
            "verdict".into(),
        ];
        let rows: Vec<[String; 11]> = r
            .tracks
            .iter()
            .map(|t| {
                let gaps = if t.gaps == 0 {
                    "-".into()
                } else {
                    format!("{} (≤ {})", t.gaps, t.max_gap)
                };
                let (offsets, limit) = if t.master {
                    ("-".into(), "-".into())
                } else {
                    (
                        t.offsets
                            .iter()
                            .map(|(_, o)| format!("{o:+}"))
                            .collect::<Vec<_>>()
                            .join("/"),
                        format!("±{}", t.offset_limit),
                    )
                };
                [
                    t.stream.to_string(),
                    t.codec.to_owned(),
                    t.timescale.to_string(),
                    t.frame_duration.to_string(),
                    range(t.seam_step),
                    t.min_step.map_or("-".into(), |s| s.to_string()),
                    dropped(t),
                    gaps,
                    offsets,
                    limit,
                    t.verdict.to_string(),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..head.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain(std::iter::once(head[i].chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut l = String::from(" ");
            for (cell, w) in cells.iter().zip(&widths) {
                let pad = w - cell.chars().count();
                l.push_str("  ");
                l.push_str(cell);
                l.push_str(&" ".repeat(pad));
            }
            l.trim_end().to_owned()
        };
        let _ = writeln!(o, "{}", line(&head));
        for row in &rows {
            let _ = writeln!(o, "{}", line(row));
        }
        for s in &c.skipped {
            let _ = writeln!(
                o,
                "  track {} ({} {}): not served: {}",
                s.track_id, s.handler, s.codec, s.reason
            );
        }
        let _ = writeln!(o);
    }
    o
}

fn track_json(t: &TrackCheck) -> Value {
    let pair = |r: Option<(i64, i64)>| r.map(|(a, b)| json!({"min": a, "max": b}));
    json!({
        "stream": t.stream,
        "codec": t.codec,
        "master": t.master,
        "timescale": t.timescale,
        "clip_frames": t.clip_frames,
        "frame_duration": t.frame_duration,
        "seam_step": pair(t.seam_step),
        "min_step": t.min_step,
        "dropped_per_loop": {"min": t.dropped.0, "max": t.dropped.1},
        "leading_pictures_dropped": t.leading_dropped,
        "before_keyframe_dropped": t.before_keyframe,
        "gaps": t.gaps,
        "max_gap": t.max_gap,
        "unannounced_gaps": t.unannounced_gaps,
        "offsets": t.offsets.iter().map(|(n, o)| json!({"after_loops": n, "ticks": o})).collect::<Vec<_>>(),
        "max_offset": t.max_offset,
        "offset_limit": t.offset_limit,
        "overlaps": t.overlaps,
        "backwards": t.backwards,
        "verdict": t.verdict.as_str(),
    })
}

fn to_json(results: &[Checked]) -> Value {
    let clips: Vec<Value> = results
        .iter()
        .map(|c| {
            let skipped: Vec<Value> = c
                .skipped
                .iter()
                .map(|s| json!({"track_id": s.track_id, "codec": s.codec, "reason": s.reason}))
                .collect();
            match &c.outcome {
                Err(e) => json!({
                    "file": c.path.display().to_string(),
                    "passed": false,
                    "error": e,
                }),
                Ok(r) => json!({
                    "file": c.path.display().to_string(),
                    "name": r.name,
                    "passed": r.passed(),
                    "verdict": r.verdict().as_str(),
                    "summary": r.summary(),
                    "loops": r.loops,
                    "period_micros": r.period_micros,
                    "frames": r.frames,
                    "secs": c.secs,
                    "tracks": r.tracks.iter().map(track_json).collect::<Vec<_>>(),
                    "skipped_tracks": skipped,
                }),
            }
        })
        .collect();
    let passed = results
        .iter()
        .all(|c| c.outcome.as_ref().is_ok_and(CheckReport::passed));
    json!({"passed": passed, "clips": clips})
}

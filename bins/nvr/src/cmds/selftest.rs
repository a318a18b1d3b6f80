//! `nvr selftest`: proves a recording frame by frame. The demo camera (the loop feeder on the
//! embedded sample, over loopback RTSP) numbers every video frame with an SEI stamp
//! (`nvrkit_feed::stamp`); the recorder (`nvrkit_recorder::Recorder`, as `nvr` runs it) records
//! it into a store in a temporary directory; an alarm is raised at a known frame; the clip is
//! read back from the store and must hold exactly the frames from `t − pre` to `t + post`: none
//! missing, none repeated, none extra.
//!
//! The boundaries, as the recorder and the store define them: the clip starts at the keyframe
//! at or before `t − pre` (a clip must start decodable, so up to a GOP more than `pre`), and
//! ends with the last frame, in decode order, whose decode time is before `t + post`. The
//! alarm is placed half a frame after the known frame, so no frame sits on either boundary.
//! What the camera sent is taken from the recorder's own input (a reader of the camera's ring,
//! after ingest), so a loss between camera and ring is reported apart from the recording.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nvrkit_cli::units::parse_duration;
use nvrkit_media::{CodecParams, Demuxer, Frame, WallTime};
use nvrkit_recorder::{CameraSource, Mode, Recorder};
use nvrkit_ring::{RecvError, Start};

/// Arguments of `nvr selftest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Footage kept before the alarm.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub pre: Duration,
    /// Footage kept after the alarm.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub post: Duration,
    /// `events`: only around the alarm; `all`: continuously, the alarm tagged.
    #[arg(long, value_enum, default_value = "events")]
    pub record: Mode,
    /// Where the store lives (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// One video frame as the recorder received it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    stamp: Option<u64>,
    keyframe: bool,
    wall: WallTime,
    decode_wall: WallTime,
}

/// What the clip should hold: the stamps `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    first: u64,
    last: u64,
}

/// Finds the expected frames among those received, in decode order: from the keyframe at or
/// before `from` to the last frame decoded before `to`. Errors when the input itself has a gap
/// or an unstamped frame there (then the camera-to-ring path lost something, not the recorder).
fn expected(seen: &[Seen], from: WallTime, to: WallTime) -> anyhow::Result<Expected> {
    let start = seen
        .iter()
        .rposition(|f| f.keyframe && f.wall <= from)
        .context("no keyframe at or before t − pre was received")?;
    let end = seen
        .iter()
        .rposition(|f| f.decode_wall < to)
        .context("no frame before t + post was received")?;
    if end < start || end + 1 == seen.len() {
        bail!("the input does not reach past t + post");
    }
    let stamps: Vec<Option<u64>> = seen[start..=end].iter().map(|f| f.stamp).collect();
    let Some(Some(first)) = stamps.first().copied() else {
        bail!("the camera's frames carry no stamp");
    };
    for (i, s) in stamps.iter().enumerate() {
        if *s != Some(first + i as u64) {
            bail!(
                "the recorder's input itself is not contiguous at frame {i} of the window ({s:?} after {})",
                first + i as u64 - 1
            );
        }
    }
    Ok(Expected {
        first,
        last: first + stamps.len() as u64 - 1,
    })
}

/// What is wrong with a clip, if anything.
#[derive(Debug, Default, PartialEq, Eq)]
struct Problems {
    missing: Vec<u64>,
    repeated: Vec<u64>,
    extra: Vec<u64>,
    unstamped: usize,
    out_of_order: usize,
}

impl Problems {
    fn ok(&self) -> bool {
        *self == Problems::default()
    }
}

/// Checks the stamps of a clip's video frames, in stored order, against `want`.
fn check(got: &[Option<u64>], want: Expected) -> Problems {
    let mut p = Problems::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut last = None;
    for s in got {
        let Some(s) = *s else {
            p.unstamped += 1;
            continue;
        };
        if !(want.first..=want.last).contains(&s) {
            p.extra.push(s);
        } else if !seen.insert(s) {
            p.repeated.push(s);
        }
        if last.is_some_and(|l| s <= l) {
            p.out_of_order += 1;
        }
        last = Some(s);
    }
    p.missing = (want.first..=want.last)
        .filter(|s| !seen.contains(s))
        .collect();
    p
}

/// A list of frame numbers, shortened.
fn brief(v: &[u64]) -> String {
    let shown: Vec<String> = v.iter().take(10).map(u64::to_string).collect();
    let more = if v.len() > 10 {
        format!(" … ({} in all)", v.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// Runs the self-test; an error (exit 1) says what failed.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
    let h265 = matches!(demux.tracks()[0].params, CodecParams::H265(_));
    let clip = nvrkit_feed::Clip::load("sample", &demux)?;
    let camera = nvrkit_feed::server::Server::start(
        nvrkit_feed::server::Config {
            listen: "127.0.0.1:0".parse()?,
            stamp_frames: true,
            ..Default::default()
        },
        vec![clip],
    )
    .await?;
    let url = camera.urls("127.0.0.1")[0].parse()?;
    let temp = match &args.store {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("a temporary store")?),
    };
    let dir = match (&args.store, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_owned(),
        _ => unreachable!("one of them is set"),
    };
    let store = Arc::new(nvrkit_store::Store::open(&dir, Default::default())?);
    let mut config = nvrkit_recorder::Config::new(vec![CameraSource {
        name: "demo".into(),
        url,
        udp: false,
    }]);
    config.pre = args.pre;
    config.post = args.post;
    config.mode = args.record;
    let recorder = Recorder::start(config, store.clone())?;
    let result = test(&args, &recorder, &store, h265).await;
    recorder.shutdown().await;
    camera.shutdown().await;
    let report = result?;
    let mut out = std::io::stdout().lock();
    out.write_all(report.as_bytes())?;
    out.flush()?;
    Ok(())
}

async fn test(
    args: &Args,
    recorder: &Recorder,
    store: &nvrkit_store::Store,
    h265: bool,
) -> anyhow::Result<String> {
    let cam = &recorder.cameras()[0];
    let pre = args.pre.as_micros() as i64;
    let post = args.post.as_micros() as i64;
    // Everything the recorder receives, from the first keyframe on.
    let mut reader = cam.ring.reader(Start::OldestKeyframe);
    let mut seen: Vec<Seen> = Vec::new();
    let guard = Instant::now() + Duration::from_secs(60) + args.pre + args.post;
    let mut next = async |seen: &mut Vec<Seen>| -> anyhow::Result<()> {
        loop {
            let f: Frame = match tokio::time::timeout_at(
                tokio::time::Instant::from_std(guard),
                reader.recv_async(),
            )
            .await
            {
                Err(_) => bail!("hang guard: the demo camera's frames stopped"),
                Ok(Err(RecvError::Lagged { skipped })) => {
                    bail!("the self-test fell {skipped} frames behind the ring")
                }
                Ok(Err(e)) => bail!("the ring: {e}"),
                Ok(Ok(f)) => f,
            };
            if f.stream != 0 {
                continue;
            }
            let (Some(wall), Some(decode_wall)) = (f.wall, f.decode_wall()) else {
                continue;
            };
            seen.push(Seen {
                stamp: nvrkit_feed::stamp::read(&f.data, h265),
                keyframe: f.keyframe,
                wall,
                decode_wall,
            });
            return Ok(());
        }
    };
    // Enough footage for the pre-alarm part, plus a GOP.
    loop {
        next(&mut seen).await?;
        let span = seen[seen.len() - 1].wall.micros_since(seen[0].wall);
        if span >= pre + 1_500_000 {
            break;
        }
    }
    let known = seen[seen.len() - 1];
    let interval = known.wall.micros_since(seen[seen.len() - 2].wall).max(2);
    // Half a frame after the known frame: no frame sits on a boundary.
    let t = known.wall.add_micros(interval / 2);
    let mut event = nvrkit_smtp::CameraEvent::from_short_json(r#"{"camera":"demo"}"#)?;
    event.received_at = t;
    let raised = Instant::now();
    recorder
        .dispatcher()
        .send(event)
        .await
        .context("the dispatcher")?;
    // The clip is there once the recorder has tagged it.
    while cam.recorder.clips.load(Ordering::Relaxed) == 0 {
        if Instant::now() > guard {
            bail!("hang guard: no clip was recorded for the alarm");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tagged = raised.elapsed();
    let first_frame_us = cam.recorder.last_latency_us.load(Ordering::Relaxed);
    // The input past t + post, to know the last frame before it.
    let (from, to) = (t.add_micros(-pre), t.add_micros(post));
    while seen[seen.len() - 1].decode_wall < to {
        next(&mut seen).await?;
    }
    next(&mut seen).await?;
    let want = expected(&seen, from, to)?;
    // The tag can come before the clip's last frames are readable: with `--record all` the
    // store's writer is still filling the fragment that holds them (it is sealed at the next
    // keyframe). A clip whose only fault is a missing tail is read again until that fragment is
    // readable (or the hang guard); any other fault fails at once.
    let (got, p, latency) = loop {
        let got: Vec<Option<u64>> = store
            .frames("demo", from, to)?
            .filter_map(|f| match f {
                Ok(f) if f.stream == 0 => Some(Ok(nvrkit_feed::stamp::read(&f.data, h265))),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        let p = check(&got, want);
        let newest = got.iter().flatten().max().copied();
        let only_tail_missing = p.repeated.is_empty()
            && p.extra.is_empty()
            && p.unstamped == 0
            && p.out_of_order == 0
            && p.missing.iter().all(|&m| newest.is_none_or(|n| m > n));
        if p.ok() || !only_tail_missing || Instant::now() > guard {
            break (got, p, raised.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mode = match args.record {
        Mode::Events => "events",
        Mode::All => "all",
    };
    let mut report = format!(
        "nvr selftest (--record {mode}, --pre {:?}, --post {:?}): alarm at frame {} ({t})\n\
         expected frames {}..={} ({}: from the keyframe at or before t - pre to the last frame decoded before t + post)\n\
         clip: {} video frames\n",
        args.pre,
        args.post,
        known.stamp.map_or("?".into(), |s| s.to_string()),
        want.first,
        want.last,
        want.last - want.first + 1,
        got.len(),
    );
    if !p.ok() {
        for (what, v) in [
            ("missing", &p.missing),
            ("repeated", &p.repeated),
            ("outside the window", &p.extra),
        ] {
            if !v.is_empty() {
                report.push_str(&format!("  {what}: {}\n", brief(v)));
            }
        }
        if p.unstamped > 0 {
            report.push_str(&format!("  frames without a stamp: {}\n", p.unstamped));
        }
        if p.out_of_order > 0 {
            report.push_str(&format!("  frames out of order: {}\n", p.out_of_order));
        }
        bail!("the clip is wrong:\n{report}");
    }
    report.push_str(&format!(
        "ok: every frame, none missing, none repeated\n\
         latency: alarm to whole clip readable {:.2} s (of which --post {:.2} s; tagged after {:.2} s); alarm to first frame written {:.1} ms\n",
        latency.as_secs_f64(),
        args.post.as_secs_f64(),
        tagged.as_secs_f64(),
        first_frame_us as f64 / 1000.0
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Expected = Expected {
        first: 10,
        last: 19,
    };

    #[test]
    fn a_whole_clip_passes() {
        let got: Vec<Option<u64>> = (10..=19).map(Some).collect();
        assert!(check(&got, WANT).ok());
    }

    #[test]
    fn a_missing_frame_is_detected() {
        let got: Vec<Option<u64>> = (10..=19).filter(|&s| s != 14).map(Some).collect();
        let p = check(&got, WANT);
        assert!(!p.ok());
        assert_eq!(p.missing, [14]);
        // Missing at either boundary too.
        let p = check(&(11..=19).map(Some).collect::<Vec<_>>(), WANT);
        assert_eq!(p.missing, [10]);
        let p = check(&(10..=18).map(Some).collect::<Vec<_>>(), WANT);
        assert_eq!(p.missing, [19]);
    }

    #[test]
    fn a_repeated_frame_is_detected() {
        let mut got: Vec<Option<u64>> = (10..=19).map(Some).collect();
        got.insert(5, Some(14));
        let p = check(&got, WANT);
        assert!(!p.ok());
        assert_eq!(p.repeated, [14]);
        assert!(p.missing.is_empty());
    }

    #[test]
    fn extra_unstamped_and_reordered_frames_are_detected() {
        let mut got: Vec<Option<u64>> = (9..=20).map(Some).collect();
        let p = check(&got, WANT);
        assert_eq!(p.extra, [9, 20]);
        got = (10..=19).map(Some).collect();
        got.push(None);
        assert_eq!(check(&got, WANT).unstamped, 1);
        got = (10..=19).map(Some).collect();
        got.swap(3, 4);
        assert_eq!(check(&got, WANT).out_of_order, 1);
    }

    fn seen(stamp: u64, ms: i64, keyframe: bool) -> Seen {
        let w = WallTime::from_micros(1_000_000_000 + ms * 1000);
        Seen {
            stamp: Some(stamp),
            keyframe,
            wall: w,
            decode_wall: w,
        }
    }

    #[test]
    fn the_window_starts_at_the_keyframe_before_t_minus_pre() {
        // 40 ms frames, a keyframe every 10.
        let input: Vec<Seen> = (0..40)
            .map(|i| seen(i, i as i64 * 40, i % 10 == 0))
            .collect();
        let at = |ms: i64| WallTime::from_micros(1_000_000_000 + ms * 1000);
        // t − pre at 500 ms (frame 12.5): keyframe 10; t + post at 1220 ms: frames up to 30.
        let want = expected(&input, at(500), at(1220)).unwrap();
        assert_eq!(
            want,
            Expected {
                first: 10,
                last: 30
            }
        );
        // An input with a gap is reported as such, not blamed on the recorder.
        let mut gap = input.clone();
        gap.remove(20);
        assert!(expected(&gap, at(500), at(1220)).is_err());
    }
}

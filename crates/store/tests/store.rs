//! Integration tests of nvrkit-store: round trips, recovery from truncated and corrupted files,
//! retention order, locking, readers beside a writer, segment cuts.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use nvrkit_media::{Demuxer, Frame, WallTime};
use nvrkit_store::{
    Error, ExportFormat, ImportOptions, Limits, Options, RetentionPolicy, Store, Tag,
};

fn t0() -> WallTime {
    WallTime::parse_rfc3339("2026-11-25T23:59:50Z").unwrap()
}

fn sample() -> Demuxer {
    Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap()
}

fn clip(name: &str) -> Demuxer {
    Demuxer::open(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(name),
    )
    .unwrap()
}

fn opts(secs: u64) -> Options {
    Options::default().segment_duration(Duration::from_secs(secs))
}

fn import(store: &Store, camera: &str, clip: &Demuxer, start: WallTime) {
    store
        .import(camera, clip, &ImportOptions::default().start(start), |_| {})
        .unwrap();
}

fn all_frames(d: &Demuxer) -> Vec<Frame> {
    d.frames().map(Result::unwrap).collect()
}

/// Frames compared without the wall-clock time and the discontinuity flag.
fn key(f: &Frame) -> (usize, i64, i64, bool, bool, Bytes) {
    (
        f.stream,
        f.dts,
        f.pts,
        f.keyframe,
        f.discard,
        f.data.clone(),
    )
}

/// Every file of a store directory, relative.
fn files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn segments_cut_at_keyframes_cross_midnight_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(3)).unwrap();
    let src = sample();
    let t0 = || WallTime::parse_rfc3339("2026-11-25T23:59:55Z").unwrap();
    import(&store, "front", &src, t0());
    let segs = store.segments("front", t0(), t0().add_micros(20_000_000));
    // 1 s GOPs, 3 s target: 3 + 3 + 3 + 1 seconds; the clip starts 5 s before midnight.
    let lens: Vec<i64> = segs
        .iter()
        .map(|s| s.end.micros_since(s.start) / 100_000)
        .collect();
    assert_eq!(lens, vec![30, 30, 30, 10], "{segs:#?}");
    let days: BTreeSet<String> = segs
        .iter()
        .map(|s| {
            s.path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        days,
        BTreeSet::from(["2026-11-25".to_owned(), "2026-11-26".to_owned()])
    );
    // Every segment plays alone and starts with a keyframe carrying its own init segment.
    for s in &segs {
        assert!(!s.open);
        let d = Demuxer::open(&s.path).unwrap();
        assert!(d.is_fragmented());
        assert!(d.samples(0)[0].keyframe);
        assert_eq!(
            s.meta.fragments.len(),
            3.min(d.samples(0).iter().filter(|x| x.keyframe).count())
        );
    }
    // The frames come back as written, in order, across segments.
    let got: Vec<Frame> = store
        .frames("front", t0(), t0().add_micros(20_000_000))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want = all_frames(&src);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(key(g), key(w));
    }
    // Wall times follow media time from the start.
    let first_video = got.iter().find(|f| f.stream == 0).unwrap();
    assert_eq!(first_video.wall, Some(t0()));

    // Reopen: the same index, from the sidecars, then again from the day summary.
    drop(store);
    for _ in 0..2 {
        let again = Store::open(dir.path(), opts(3)).unwrap();
        assert_eq!(
            again.segments("front", t0(), t0().add_micros(20_000_000)),
            segs
        );
        assert!(again.recovery().sealed.is_empty());
        assert!(again.verify(None, |_| {}).is_empty());
    }
    // The day that ended while writing got its summary from the writer; reopening wrote the
    // other.
    assert!(files(dir.path()).contains("front/2026-11-25/summary.json"));
    assert!(files(dir.path()).contains("front/2026-11-26/summary.json"));
}

#[test]
fn export_matches_the_source_frames_over_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(2)).unwrap();
    let src = clip("h264_high_bframes_longaudio.mp4");
    import(&store, "cam", &src, t0());
    let want = all_frames(&src);
    for format in [ExportFormat::Mp4, ExportFormat::Fragmented] {
        // 1.3 s to 3.7 s: starts mid-GOP and spans segments.
        let (from, to) = (t0().add_micros(1_300_000), t0().add_micros(3_700_000));
        let mut out = Vec::new();
        store
            .export("cam", from, to, format)
            .unwrap()
            .write_to(&mut out, |_| {})
            .unwrap();
        let d = Demuxer::from_bytes("export", out.into()).unwrap();
        let got = all_frames(&d);
        // The exported video frames are the source's from the keyframe at or before 1.3 s up to
        // the last decoded before 3.7 s, payload for payload.
        let video_ts = src.tracks()[0].timescale;
        let ms = |v: i64| nvrkit_media::time::rescale(v, video_ts, 1000);
        let pts0 = src.samples(0).iter().find(|s| !s.discard).unwrap().pts;
        let want_video: Vec<&Frame> = {
            let key_at = want
                .iter()
                .filter(|f| f.stream == 0 && f.keyframe && ms(f.pts - pts0) <= 1300)
                .map(|f| f.dts)
                .max()
                .unwrap();
            want.iter()
                .filter(|f| f.stream == 0 && f.dts >= key_at && ms(f.dts - pts0) < 3700)
                .collect()
        };
        let got_video: Vec<&Frame> = got.iter().filter(|f| f.stream == 0).collect();
        assert_eq!(got_video.len(), want_video.len(), "{format:?}");
        for (g, w) in got_video.iter().zip(&want_video) {
            assert_eq!(g.data, w.data);
            assert_eq!(g.keyframe, w.keyframe);
            assert_eq!(g.pts - g.dts, w.pts - w.dts, "{format:?}");
        }
        if format == ExportFormat::Mp4 {
            // Presented: exactly the frames on screen between 1.3 s and 3.7 s.
            let shown: Vec<&&Frame> = got_video.iter().filter(|f| !f.discard).collect();
            let want_shown = want_video
                .iter()
                .filter(|f| {
                    ms(f.pts + i64::from(f.duration) - pts0) > 1300 && ms(f.pts - pts0) < 3700
                })
                .count();
            assert_eq!(shown.len(), want_shown);
            assert!(
                got_video[0].discard,
                "the pre-roll from the keyframe is hidden"
            );
            assert_eq!(
                d.tracks()[0].duration,
                want_shown as i64 * i64::from(want_video[0].duration)
            );
        }
        // Audio: the source's frames that overlap the range, same payloads in order.
        let a_ts = src.tracks()[1].timescale;
        let a_us = |v: i64| {
            nvrkit_media::time::rescale(v, a_ts, 1_000_000)
                - nvrkit_media::time::rescale(pts0, video_ts, 1_000_000)
        };
        let want_audio: Vec<&Frame> = want
            .iter()
            .filter(|f| {
                f.stream == 1
                    && a_us(f.pts + i64::from(f.duration)) > 1_300_000
                    && a_us(f.pts) < 3_700_000
            })
            .collect();
        let got_audio: Vec<&Frame> = got.iter().filter(|f| f.stream == 1).collect();
        assert_eq!(got_audio.len(), want_audio.len(), "{format:?}");
        assert!(
            got_audio
                .iter()
                .zip(&want_audio)
                .all(|(g, w)| g.data == w.data)
        );
    }
}

/// Rewrites a store as a crash could have left it: the newest segment without its sidecar and
/// cut at `cut` bytes.
fn crash_newest_segment(root: &Path, camera: &str, cut: u64) -> PathBuf {
    let store = Store::open_read_only(root).unwrap();
    let newest = store
        .segments(camera, WallTime::EPOCH, WallTime::from_micros(i64::MAX))
        .pop()
        .unwrap();
    drop(store);
    fs::remove_file(newest.path.with_extension("json")).unwrap();
    fs::remove_file(newest.path.parent().unwrap().join("summary.json")).ok();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&newest.path)
        .unwrap();
    f.set_len(cut).unwrap();
    newest.path
}

#[test]
fn recovery_keeps_every_complete_fragment_of_a_truncated_segment() {
    let src = sample();
    let template = tempfile::tempdir().unwrap();
    let full_len = {
        let store = Store::open(template.path(), opts(5)).unwrap();
        import(&store, "c", &src, t0());
        let s = store.segments("c", t0(), t0().add_micros(20_000_000));
        assert_eq!(s.len(), 2);
        s[1].bytes
    };
    let full = Store::open_read_only(template.path()).unwrap().segments(
        "c",
        t0(),
        t0().add_micros(20_000_000),
    )[1]
    .clone();
    let fragments: Vec<u64> = full
        .meta
        .fragments
        .iter()
        .map(|f| f.0)
        .chain([full.bytes])
        .collect();
    // Cut the last segment at every fragment boundary and in between.
    let mut cuts: Vec<u64> = vec![0, 5, 100];
    for w in fragments.windows(2) {
        cuts.extend([w[0], w[0] + 1, (w[0] + w[1]) / 2, w[1] - 1]);
    }
    cuts.push(full_len);
    for cut in cuts {
        let dir = tempfile::tempdir().unwrap();
        for f in files(template.path()) {
            let to = dir.path().join(&f);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(template.path().join(&f), to).unwrap();
        }
        let seg = crash_newest_segment(dir.path(), "c", cut);
        let store = Store::open(dir.path(), opts(5)).unwrap();
        let complete = fragments.iter().skip(1).filter(|&&e| e <= cut).count();
        let segs = store.segments("c", t0(), t0().add_micros(20_000_000));
        if complete == 0 {
            assert_eq!(segs.len(), 1, "cut {cut}");
            assert!(
                !seg.exists(),
                "cut {cut}: a segment with no complete fragment is removed"
            );
            assert_eq!(store.recovery().removed, vec![seg.clone()]);
        } else {
            assert_eq!(segs.len(), 2, "cut {cut}");
            let s = &segs[1];
            assert!(s.meta.recovered);
            assert_eq!(s.meta.fragments.len(), complete, "cut {cut}");
            assert_eq!(s.bytes, fragments[complete], "cut {cut}");
            assert_eq!(fs::metadata(&seg).unwrap().len(), s.bytes);
            assert_eq!(store.recovery().sealed, vec![seg.clone()]);
            // The recovered frames are a prefix of the original ones.
            let d = Demuxer::open(&seg).unwrap();
            assert_eq!(d.dropped_samples(), 0);
            let orig =
                Demuxer::open(template.path().join(seg.strip_prefix(dir.path()).unwrap())).unwrap();
            let (a, b) = (all_frames(&d), all_frames(&orig));
            assert!(a.len() < b.len() || cut == full_len);
            assert!(a.iter().zip(&b).all(|(x, y)| key(x) == key(y)));
            if cut == full_len {
                assert_eq!(s.meta.blake3, full.meta.blake3);
                assert_eq!(s.meta.end_us, full.meta.end_us);
                assert_eq!(s.meta.fragments, full.meta.fragments);
            }
        }
        assert!(store.verify(None, |_| {}).is_empty(), "cut {cut}");
        // No orphans: every segment has its sidecar and vice versa, no temporary files.
        for f in files(dir.path()) {
            assert!(!f.contains(".tmp"), "{f}");
            if let Some(stem) = f.strip_suffix(".mp4") {
                assert!(
                    dir.path().join(format!("{stem}.json")).exists(),
                    "{f} has no sidecar"
                );
            }
        }
    }
}

#[test]
fn corruption_is_reported_by_verify_and_never_panics_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample();
    {
        let store = Store::open(dir.path(), opts(4)).unwrap();
        import(&store, "c", &src, t0());
    }
    let store = Store::open_read_only(dir.path()).unwrap();
    let segs = store.segments("c", t0(), t0().add_micros(20_000_000));
    assert_eq!(segs.len(), 3);
    // Flip a byte in the media data of the first, cut the tail of the second, scribble over
    // the box structure of the third.
    let mut a = fs::read(&segs[0].path).unwrap();
    let n = a.len();
    a[n - 100] ^= 0xff;
    fs::write(&segs[0].path, &a).unwrap();
    let b = fs::read(&segs[1].path).unwrap();
    fs::write(&segs[1].path, &b[..b.len() - 10]).unwrap();
    let mut c = fs::read(&segs[2].path).unwrap();
    for x in c.iter_mut().skip(8).take(64) {
        *x = 0x55;
    }
    fs::write(&segs[2].path, &c).unwrap();
    let problems = store.verify(None, |_| {});
    let bad: BTreeSet<PathBuf> = problems.iter().map(|p| p.path.clone()).collect();
    assert_eq!(
        bad,
        segs.iter().map(|s| s.path.clone()).collect(),
        "{problems:#?}"
    );
    assert!(problems[0].what.contains("BLAKE3"), "{problems:#?}");
    assert!(problems[1].what.contains("bytes on disk"), "{problems:#?}");
    // Readers get errors, not panics, whatever range they ask for.
    for start in [0, 2_000_000, 5_000_000, 9_000_000] {
        let from = t0().add_micros(start);
        for format in [ExportFormat::Mp4, ExportFormat::Fragmented] {
            if let Ok(e) = store.export("c", from, from.add_micros(3_000_000), format) {
                let _ = e.write_to(&mut std::io::sink(), |_| {});
            }
        }
    }
    let r = store.export(
        "c",
        t0().add_micros(4_500_000),
        t0().add_micros(5_000_000),
        ExportFormat::Mp4,
    );
    assert!(
        matches!(
            r.and_then(|e| e.write_to(&mut std::io::sink(), |_| {})),
            Err(Error::Corrupt { .. })
        ),
        "a truncated sealed segment is reported as corrupt"
    );
    // A corrupt sidecar: listed as a problem by a reader, regenerated by a writer.
    fs::write(segs[0].path.with_extension("json"), b"{\"version\":1,").unwrap();
    fs::remove_file(segs[0].path.parent().unwrap().join("summary.json")).ok();
    let ro = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.problems().len(), 1);
    assert_eq!(ro.segments("c", t0(), t0().add_micros(20_000_000)).len(), 2);
    drop(ro);
    let rw = Store::open(dir.path(), opts(4)).unwrap();
    assert_eq!(rw.segments("c", t0(), t0().add_micros(20_000_000)).len(), 3);
}

#[test]
fn one_writer_at_a_time_and_readers_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(60)).unwrap();
    match Store::open(dir.path(), opts(60)) {
        Err(Error::Locked { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()))
        }
        other => panic!("second writer: {other:?}"),
    }
    let src = sample();
    let mut w = store.writer("live", src.tracks()).unwrap();
    assert!(matches!(
        store.writer("live", src.tracks()),
        Err(Error::WriterBusy { .. })
    ));
    // Write 5.5 s of the clip: five complete GOPs on disk, the sixth in memory.
    for f in src.frames() {
        let mut f = f.unwrap();
        if nvrkit_media::time::rescale(f.dts, f.timescale, 1000) >= 5500 {
            break;
        }
        f.wall = Some(t0().add_ticks(f.pts, f.timescale));
        w.push(f).unwrap();
    }
    let reader = Store::open_read_only(dir.path()).unwrap();
    let segs = reader.segments("live", t0(), t0().add_micros(60_000_000));
    assert_eq!(segs.len(), 1);
    assert!(segs[0].open);
    // Five seconds of video (and the audio to its end, a few ms more).
    let end_ms = segs[0].end.micros_since(t0()) / 1000;
    assert!((5000..5050).contains(&end_ms), "{end_ms}");
    // The reader exports what is on disk so far.
    let mut out = Vec::new();
    reader
        .export(
            "live",
            t0().add_micros(1_000_000),
            t0().add_micros(60_000_000),
            ExportFormat::Mp4,
        )
        .unwrap()
        .write_to(&mut out, |_| {})
        .unwrap();
    let d = Demuxer::from_bytes("partial", out.into()).unwrap();
    assert_eq!(d.tracks()[0].duration, 4 * 12800);
    // The writer's own store lists it as open, with its bytes counted.
    assert!(store.bytes(Some("live")) > 0);
    assert!(matches!(
        reader.writer("x", src.tracks()),
        Err(Error::ReadOnly { .. })
    ));
    w.finish().unwrap();
    let segs = store.segments("live", t0(), t0().add_micros(60_000_000));
    assert_eq!(segs.len(), 1);
    assert!(!segs[0].open);
}

#[test]
fn discontinuities_and_new_parameters_start_new_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(60)).unwrap();
    let src = sample();
    let other = clip("h264_main_720p25_aac.mp4");
    let mut w = store.writer("c", src.tracks()).unwrap();
    let frames = all_frames(&src);
    let push_range = |w: &mut nvrkit_store::Writer, lo: i64, hi: i64, shift_us: i64| {
        for f in &frames {
            let ms = nvrkit_media::time::rescale(f.dts, f.timescale, 1000);
            if ms < lo || ms >= hi {
                continue;
            }
            let mut f = f.clone();
            f.wall = Some(t0().add_ticks(f.pts, f.timescale).add_micros(shift_us));
            w.push(f).unwrap();
        }
    };
    push_range(&mut w, 0, 3000, 0);
    // A reconnect: timestamps start over, ten seconds later on the wall clock.
    push_range(&mut w, 0, 2000, 13_000_000);
    assert_eq!(w.sealed_segments(), 1);
    // A keyframe with another SPS (a new resolution) cuts again.
    let new_sps = other.tracks()[0].params.video().unwrap().sps[0].clone();
    let mut k = frames
        .iter()
        .find(|f| f.stream == 0 && f.keyframe && f.dts == 2 * 12800)
        .unwrap()
        .clone();
    let mut data = (new_sps.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(&new_sps);
    let pps = other.tracks()[0].params.video().unwrap().pps[0].clone();
    data.extend_from_slice(&(pps.len() as u32).to_be_bytes());
    data.extend_from_slice(&pps);
    data.extend_from_slice(&k.data);
    k.data = data.into();
    k.wall = None;
    w.push(k).unwrap();
    assert_eq!(w.sealed_segments(), 2);
    assert_eq!(w.tracks()[0].params.video().unwrap().width, 1280);
    w.finish().unwrap();
    let segs = store.segments("c", t0(), t0().add_micros(60_000_000));
    assert_eq!(segs.len(), 3);
    assert!(!segs[0].meta.discontinuity && segs[1].meta.discontinuity);
    assert_eq!(segs[1].start, t0().add_micros(13_000_000));
    assert_eq!(segs[2].meta.tracks[0].width, 1280);
    // The frame without a wall time continues the previous segment's clock.
    assert_eq!(segs[2].start, t0().add_micros(15_000_000));
    let recs = store.recordings("c", t0(), t0().add_micros(60_000_000));
    assert_eq!(recs.len(), 2, "{recs:#?}");
    // An export across the parameter change is refused with the time of the change.
    let r = store
        .export("c", t0(), t0().add_micros(60_000_000), ExportFormat::Mp4)
        .and_then(|e| e.write_to(&mut std::io::sink(), |_| {}));
    assert!(
        matches!(r, Err(Error::ParamsChange { at, .. }) if at == segs[2].start),
        "{r:?}"
    );
}

#[test]
fn retention_deletes_untagged_then_motion_then_events_and_never_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(2)).unwrap();
    let src = sample();
    import(&store, "a", &src, t0());
    import(&store, "b", &src, t0().add_micros(1_000_000));
    let sec = |s: i64| t0().add_micros(s * 1_000_000);
    // Camera a: 5 segments of 2 s. Event on the first, motion on the second, pin the last.
    store
        .tag(
            "a",
            sec(0),
            sec(1),
            Tag::Event,
            Some(serde_json::json!({"why": "test"})),
        )
        .unwrap();
    store.tag("a", sec(2), sec(3), Tag::Motion, None).unwrap();
    store.pin("a", sec(9), sec(10)).unwrap();
    let seg_bytes: Vec<u64> = store
        .segments("a", sec(0), sec(20))
        .iter()
        .map(|s| s.bytes)
        .collect();
    assert_eq!(seg_bytes.len(), 5);
    // Keep about two segments of camera a.
    let policy = RetentionPolicy::default().camera(
        "a",
        Limits::default().max_bytes(seg_bytes[0] + seg_bytes[1] + 1),
    );
    let r = store.retain(&policy).unwrap();
    let gone: Vec<i64> = r
        .deleted
        .iter()
        .map(|d| d.start.micros_since(t0()) / 1_000_000)
        .collect();
    // Untagged 4 s and 6 s go first, then motion (2 s), then the event (0 s); the pinned 8 s
    // segment stays, so the budget is met with it and... the event.
    assert_eq!(gone, vec![4, 6, 2], "{r:#?}");
    let left: Vec<i64> = store
        .segments("a", sec(0), sec(20))
        .iter()
        .map(|s| s.start.micros_since(t0()) / 1_000_000)
        .collect();
    assert_eq!(left, vec![0, 8]);
    // Camera b was not touched; a smaller budget meets the pin and reports it.
    assert_eq!(store.segments("b", sec(0), sec(20)).len(), 5);
    let r = store
        .retain(&RetentionPolicy::default().camera("a", Limits::default().max_bytes(1)))
        .unwrap();
    assert_eq!(r.deleted.len(), 1);
    assert_eq!(r.unmet.len(), 1, "{r:#?}");
    // Unpinning lets it go.
    store.untag("a", sec(0), sec(20), Tag::Pinned).unwrap();
    let r = store
        .retain(&RetentionPolicy::default().camera("a", Limits::default().max_bytes(1)))
        .unwrap();
    assert_eq!(r.deleted.len(), 1);
    // Age across the store: b's footage is older than 1 s at "now" = 30 s after t0.
    let r = store
        .retain_at(
            &RetentionPolicy::default().overall(Limits::default().max_age(Duration::from_secs(1))),
            sec(30),
        )
        .unwrap();
    assert_eq!(r.deleted.len(), 5);
    // Deletions survive a reopen (summaries and sidecars agree), and no file is left behind.
    drop(store);
    let store = Store::open(dir.path(), opts(2)).unwrap();
    assert!(store.segments("a", sec(0), sec(20)).is_empty());
    assert!(store.segments("b", sec(0), sec(20)).is_empty());
    let left = files(dir.path());
    assert!(left.iter().all(|f| !f.ends_with(".mp4")), "{left:?}");
    // The tags are still there.
    assert_eq!(store.tags("a", sec(0), sec(20)).len(), 2);
}

#[test]
fn the_store_wants_its_marker_and_names() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
    assert!(matches!(
        Store::open(dir.path(), opts(60)),
        Err(Error::NotAStore { .. })
    ));
    assert!(matches!(
        Store::open_read_only(dir.path().join("nope")),
        Err(Error::NotAStore { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    let store = Store::open(empty.path(), opts(60)).unwrap();
    let src = sample();
    assert!(matches!(
        store.writer("../x", src.tracks()),
        Err(Error::CameraName { .. })
    ));
    import(&store, "c", &src, t0());
    // The same clip at the same time again: refused, nothing lost.
    let again = store.import("c", &src, &ImportOptions::default().start(t0()), |_| {});
    assert!(matches!(again, Err(Error::Exists { .. })), "{again:?}");
    assert!(store.verify(None, |_| {}).is_empty());
}

#[test]
fn the_replication_queue_is_written_at_seal_and_tag_and_guards_retention() {
    use nvrkit_store::queue::{Journal, Record};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(2)).unwrap();
    let sec = |s: i64| t0().add_micros(s * 1_000_000);
    // No journal yet: sealing writes none.
    import(&store, "a", &sample(), t0());
    assert!(Journal::open(dir.path()).is_none());
    let (j, created) = Journal::create(dir.path()).unwrap();
    assert!(created);
    let target = "/backup".to_string();
    j.append(&[Record::Target {
        target: target.clone(),
    }])
    .unwrap();
    // Now every seal and every tag is queued in the same step.
    import(&store, "b", &sample(), t0());
    store
        .tag("b", sec(2).add_micros(500_000), sec(3), Tag::Event, None)
        .unwrap();
    let state = j.state().unwrap();
    let b: Vec<_> = state.entries.values().filter(|e| e.camera == "b").collect();
    assert_eq!(b.len(), 5);
    assert!(state.entries.values().all(|e| e.camera == "b"));
    for e in &b {
        let segs = store.segments("b", e.start(), e.start().add_micros(1));
        let seg = segs.iter().find(|s| s.start == e.start()).unwrap();
        assert_eq!((e.bytes, &e.blake3), (seg.bytes, &seg.meta.blake3));
    }
    let events: Vec<i64> = b
        .iter()
        .filter(|e| e.tags.contains(&Tag::Event))
        .map(|e| e.start_us)
        .collect();
    assert_eq!(events, vec![sec(2).as_micros()]);
    // Two of b's segments are replicated.
    for e in &b[..2] {
        j.append(&[Record::Done {
            target: target.clone(),
            camera: "b".into(),
            start_us: e.start_us,
        }])
        .unwrap();
    }
    // Age retention deletes only what is replicated (and a's footage, never queued): b's first
    // segment (the second is event footage, kept by age).
    let r = store
        .retain_at(
            &RetentionPolicy::default().overall(Limits::default().max_age(Duration::from_secs(1))),
            sec(30),
        )
        .unwrap();
    let gone_b = r.deleted.iter().filter(|d| d.camera == "b").count();
    assert_eq!((gone_b, r.deleted.len()), (1, 6), "{r:#?}");
    // The free-space guard still deletes pending footage (after the replicated event), and logs
    // it as lost.
    let r = store
        .retain(&RetentionPolicy::default().min_free_bytes(u64::MAX))
        .unwrap();
    let order: Vec<i64> = r.deleted.iter().map(|d| d.start.as_micros()).collect();
    assert_eq!(order, b[1..].iter().map(|e| e.start_us).collect::<Vec<_>>());
    let state = j.state().unwrap();
    assert_eq!(state.lost, 3);
    assert!(state.pending_keys().is_empty());
}

#[test]
fn a_huge_event_note_is_stored_bounded_and_reads_back_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(4)).unwrap();
    let subject = "Motion ".repeat(150_000); // ~1 MiB
    let note = serde_json::json!({"kind": "motion", "subject": subject, "to": ["cam@nvr"]});
    store
        .tag(
            "a",
            t0(),
            t0().add_micros(1_000_000),
            Tag::Event,
            Some(note),
        )
        .unwrap();
    let log = std::fs::read(dir.path().join("a").join("tags.jsonl")).unwrap();
    assert!(
        log.len() <= nvrkit_store::note::MAX_NOTE_BYTES + 256,
        "tags.jsonl holds {} bytes for one event",
        log.len()
    );
    let check = |store: &Store| {
        let tags = store.tags("a", t0(), t0().add_micros(1_000_000));
        assert_eq!(tags.len(), 1);
        let kept = tags[0].note.as_ref().unwrap();
        let s = kept["subject"].as_str().unwrap();
        assert!(s.starts_with("Motion Motion"), "{s}");
        assert!(s.ends_with(nvrkit_store::note::TRUNCATED), "{s}");
        assert_eq!(kept["kind"], "motion");
        assert_eq!(kept["to"][0], "cam@nvr");
    };
    check(&store);
    drop(store);
    // Reopened, the note read from the log is as bounded.
    check(&Store::open(dir.path(), opts(4)).unwrap());

    // A log written before notes were bounded: its note is bounded in memory on open.
    let line = format!(
        "{{\"op\":\"add\",\"tag\":\"event\",\"from_us\":{},\"to_us\":{},\"note\":{{\"subject\":\"{}\"}}}}\n",
        t0().as_micros() + 2_000_000,
        t0().as_micros() + 3_000_000,
        "x".repeat(1 << 20)
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("a").join("tags.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
    drop(f);
    let store = Store::open(dir.path(), opts(4)).unwrap();
    let tags = store.tags("a", t0().add_micros(2_000_000), t0().add_micros(3_000_000));
    let kept = serde_json::to_vec(tags[0].note.as_ref().unwrap()).unwrap();
    assert!(kept.len() <= nvrkit_store::note::MAX_NOTE_BYTES);
}

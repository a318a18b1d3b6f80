//! Per camera: turns events into footage in the store.
//!
//! `--record events`: an event at NVR time `t` starts a ring reader at the keyframe at or before
//! `t − pre` (the ring then follows live with no gap and no duplicate) and writes until `t + post`;
//! an event during a recording extends it, so overlapping events make one range. When the range
//! ends, each of its events is tagged `event` with its JSON. `--record all` writes continuously
//! and only tags.
//!
//! Store writes are blocking file I/O, so each camera's recorder is its own thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvrkit_media::{Frame, WallTime};
use nvrkit_ring::{Ring, Start};
use nvrkit_store::{Store, Tag};

use crate::ingest::CameraState;

/// What to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Mode {
    /// Only around events (pre + post).
    Events,
    /// Everything; events are tagged.
    All,
}

impl std::str::FromStr for Mode {
    type Err = crate::ModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "events" => Ok(Mode::Events),
            "all" => Ok(Mode::All),
            _ => Err(crate::ModeError(s.to_owned())),
        }
    }
}

/// A command to a recorder thread.
#[derive(Debug)]
pub enum Command {
    /// An event for this camera, received at `at` (NVR clock).
    Event {
        /// Receive time.
        at: WallTime,
        /// When it arrived, on the monotonic clock (for the latency figure).
        arrived: Instant,
        /// The event JSON to keep with the tag.
        json: serde_json::Value,
    },
    /// Finish what is open and stop.
    Shutdown,
}

/// Figures the API shows.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Event ranges written and tagged.
    pub clips: AtomicU64,
    /// Frames written.
    pub frames: AtomicU64,
    /// Write errors (a full disk, …).
    pub errors: AtomicU64,
    /// Latency from an event's arrival to its first frame handed to the store, µs (last event).
    pub last_latency_us: AtomicU64,
    /// The range being written now, if any: (from, until).
    pub open: Mutex<Option<(WallTime, Option<WallTime>)>>,
    /// Event ranges closed (with footage or not): `--mqtt` turns motion OFF when it moves.
    pub ranges_closed: AtomicU64,
}

/// Settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Footage kept before an event.
    pub pre: Duration,
    /// Footage kept after an event.
    pub post: Duration,
    /// Events only, or everything.
    pub mode: Mode,
}

struct Active {
    reader: nvrkit_ring::Reader,
    writer: Option<nvrkit_store::Writer>,
    generation: u64,
    /// Stop after the first frame past this (None: never, `--record all`).
    until: Option<WallTime>,
    first: Option<WallTime>,
    last_end: Option<WallTime>,
    /// Events of this range not tagged yet (at most [`MAX_EVENT_TAGS`] + 1 entries).
    events: Vec<RangeEvent>,
    pending_latency: Option<Instant>,
}

/// Events of one open range tagged one by one, each with its note (at most
/// [`nvrkit_store::note::MAX_NOTE_BYTES`]); later ones are merged into one more tag covering
/// them all, with their count: an event storm that keeps a range open costs one entry in
/// memory and one fsync'd tag, not one per event.
const MAX_EVENT_TAGS: usize = 64;

/// An event (or, past [`MAX_EVENT_TAGS`], a run of merged events) of an open range, not tagged yet.
#[derive(Debug, Clone, PartialEq)]
struct RangeEvent {
    /// The first event's time.
    first: WallTime,
    /// The last event's time.
    last: WallTime,
    /// Its note (for a merged run: `{"merged_events": N}`).
    json: serde_json::Value,
    /// Events it stands for.
    count: u64,
}

/// Notes an event of the open range: its own entry, or past [`MAX_EVENT_TAGS`] into one run
/// (the entry after them) that covers every later event.
fn note_event(events: &mut Vec<RangeEvent>, at: WallTime, json: serde_json::Value) {
    if events.len() > MAX_EVENT_TAGS
        && let Some(run) = events.last_mut()
    {
        run.first = run.first.min(at);
        run.last = run.last.max(at);
        run.count += 1;
        run.json = serde_json::json!({ "merged_events": run.count });
        return;
    }
    let json = if events.len() == MAX_EVENT_TAGS {
        serde_json::json!({ "merged_events": 1 })
    } else {
        json
    };
    events.push(RangeEvent {
        first: at,
        last: at,
        json,
        count: 1,
    });
}

/// Runs a recorder until `Shutdown` (or the channel closes).
pub fn run(
    camera: String,
    ring: Ring,
    state: Arc<CameraState>,
    store: Arc<Store>,
    settings: Settings,
    commands: Receiver<Command>,
    stats: Arc<RecorderStats>,
) {
    let pre = settings.pre.as_micros() as i64;
    let post = settings.post.as_micros() as i64;
    let mut active: Option<Active> = None;
    let start = |from: Start, until: Option<WallTime>| Active {
        reader: ring.reader(from),
        writer: None,
        generation: u64::MAX,
        until,
        first: None,
        last_end: None,
        events: Vec::new(),
        pending_latency: None,
    };
    if settings.mode == Mode::All {
        active = Some(start(Start::NewestKeyframe, None));
    }
    loop {
        let cmd = if active.is_some() {
            match commands.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Command::Shutdown),
            }
        } else {
            match commands.recv_timeout(Duration::from_millis(500)) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Command::Shutdown),
            }
        };
        match cmd {
            Some(Command::Shutdown) => {
                if let Some(mut a) = active.take() {
                    // What ingest flushed at shutdown (its held GOP) is in the ring: write it.
                    let deadline = std::time::Instant::now() + Duration::from_secs(2);
                    while std::time::Instant::now() < deadline {
                        match a.reader.recv_timeout(Duration::from_millis(200)) {
                            Ok(f)
                                if a.until
                                    .is_none_or(|u| f.decode_wall().is_none_or(|w| w <= u)) =>
                            {
                                write(&camera, &store, &state, &mut a, f, &stats);
                            }
                            _ => break,
                        }
                    }
                    finish(&camera, &store, a, settings, &stats, true);
                }
                return;
            }
            Some(Command::Event { at, arrived, json }) => {
                let a = active.get_or_insert_with(|| {
                    tracing::info!(camera, "event: recording from {}", at.add_micros(-pre));
                    start(
                        Start::AtOrBefore(at.add_micros(-pre)),
                        Some(at.add_micros(post)),
                    )
                });
                if let Some(u) = a.until.as_mut() {
                    *u = (*u).max(at.add_micros(post));
                }
                // Bounded too: an event storm that keeps a range open merges into one entry.
                note_event(&mut a.events, at, json);
                a.pending_latency.get_or_insert(arrived);
            }
            None => {}
        }
        let Some(a) = active.as_mut() else { continue };
        if let Ok(mut o) = stats.open.lock() {
            *o = Some((a.first.unwrap_or(WallTime::now()), a.until));
        }
        match a.reader.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) => {
                // Decode order: a B-frame presented before `until` may follow a frame
                // presented after it, so the cut is on decode time.
                let past_end = match (a.until, frame.decode_wall()) {
                    (Some(u), Some(w)) => w > u,
                    _ => false,
                };
                if past_end {
                    if let Some(a) = active.take() {
                        finish(&camera, &store, a, settings, &stats, false);
                    }
                    continue;
                }
                write(&camera, &store, &state, a, frame, &stats);
            }
            Err(nvrkit_ring::RecvTimeoutError::Timeout) => {
                // The camera stopped sending: end the range when its time is up.
                let overdue = a
                    .until
                    .is_some_and(|u| WallTime::now().micros_since(u) > 5_000_000);
                if overdue && let Some(a) = active.take() {
                    finish(&camera, &store, a, settings, &stats, false);
                }
            }
            Err(nvrkit_ring::RecvTimeoutError::Lagged { skipped }) => {
                tracing::warn!(
                    camera,
                    skipped,
                    "recorder fell behind the ring; footage lost"
                );
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                if let Some(a) = active.take() {
                    finish(&camera, &store, a, settings, &stats, true);
                }
                return;
            }
        }
        // --record all: tag events whose window has been written.
        if settings.mode == Mode::All
            && let Some(a) = active.as_mut()
            && let Some(end) = a.last_end
        {
            let due: Vec<RangeEvent> = a
                .events
                .extract_if(.., |e| e.last.add_micros(post) <= end)
                .collect();
            for e in due {
                tag(
                    &camera,
                    &store,
                    e.first.add_micros(-pre),
                    e.last.add_micros(post),
                    e.json,
                    &stats,
                );
            }
        }
    }
}

fn write(
    camera: &str,
    store: &Store,
    state: &CameraState,
    a: &mut Active,
    frame: Frame,
    stats: &RecorderStats,
) {
    let generation = state.tracks_generation.load(Ordering::Relaxed);
    if a.generation != generation {
        let tracks = state.tracks.lock().ok().and_then(|t| t.clone());
        let Some(tracks) = tracks else { return };
        let result = match a.writer.as_mut() {
            Some(w) => w.set_tracks(&tracks),
            None => store.writer(camera, &tracks).map(|w| {
                a.writer = Some(w);
            }),
        };
        if let Err(e) = result {
            tracing::error!(camera, "cannot write to the store: {e}");
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        a.generation = generation;
    }
    let Some(w) = a.writer.as_mut() else { return };
    let wall = frame.wall;
    let end = wall.map(|t| t.add_ticks(i64::from(frame.duration), frame.timescale));
    match w.push(frame) {
        Ok(()) => {
            stats.frames.fetch_add(1, Ordering::Relaxed);
            if a.first.is_none() {
                a.first = wall;
            }
            // Frames come in decode order: the range ends where the latest-presented one does.
            a.last_end = a.last_end.max(end);
            if let Some(t0) = a.pending_latency.take() {
                stats
                    .last_latency_us
                    .store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        }
        Err(e) => {
            // A full disk, a frame the muxer refuses: logged, counted, never a crash. The
            // store's own retention runs on its schedule; this footage is lost.
            tracing::error!(camera, "store refused a frame: {e}");
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn finish(
    camera: &str,
    store: &Store,
    a: Active,
    s: Settings,
    stats: &RecorderStats,
    shutdown: bool,
) {
    if let Some(w) = a.writer
        && let Err(e) = w.finish()
    {
        tracing::error!(camera, "closing the recording: {e}");
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(mut o) = stats.open.lock() {
        *o = None;
    }
    stats.ranges_closed.fetch_add(1, Ordering::Relaxed);
    let (Some(first), Some(last)) = (a.first, a.last_end) else {
        if !a.events.is_empty() {
            tracing::warn!(
                camera,
                "event range ended with no footage (is the camera down?)"
            );
        }
        return;
    };
    let pre = s.pre.as_micros() as i64;
    let post = s.post.as_micros() as i64;
    for e in a.events {
        let from = e.first.add_micros(-pre).max(first);
        let to = e.last.add_micros(post).min(last);
        if to > from {
            tag(camera, store, from, to, e.json, stats);
        }
    }
    tracing::info!(
        camera,
        "recorded {} .. {}{}",
        first,
        last,
        if shutdown {
            " (flushed at shutdown)"
        } else {
            ""
        }
    );
}

fn tag(
    camera: &str,
    store: &Store,
    from: WallTime,
    to: WallTime,
    json: serde_json::Value,
    stats: &RecorderStats,
) {
    let note = (!json.is_null()).then_some(json);
    match store.tag(camera, from, to, Tag::Event, note) {
        Ok(()) => {
            stats.clips.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::error!(camera, "tagging {from} .. {to}: {e}");
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;
    use std::collections::BTreeSet;

    /// M9 (review-nvr.md): an event storm in one open range costs [`MAX_EVENT_TAGS`] + 1
    /// entries (and tags), the last covering every later event with their count.
    #[test]
    fn an_event_storm_merges_into_one_run() {
        let base = WallTime::parse_rfc3339("2026-12-03T10:00:00Z").unwrap();
        let mut events = Vec::new();
        for i in 0..100_000 {
            note_event(
                &mut events,
                base.add_micros(i * 10_000),
                serde_json::json!({ "i": i }),
            );
        }
        assert_eq!(events.len(), MAX_EVENT_TAGS + 1);
        assert_eq!(events[0].json["i"], 0, "the first keep their notes");
        let run = events.last().unwrap();
        assert_eq!(run.count, 100_000 - MAX_EVENT_TAGS as u64);
        assert_eq!(run.json["merged_events"], run.count);
        assert_eq!(run.first, base.add_micros(MAX_EVENT_TAGS as i64 * 10_000));
        assert_eq!(run.last, base.add_micros(99_999 * 10_000));
        assert_eq!(events.iter().map(|e| e.count).sum::<u64>(), 100_000);
    }

    /// A B-frame stream (decode order I0 P3 B1 B2 P6 B4 B5 …) cut at `t + post`: every frame
    /// presented up to the cut is stored, although a P-frame presented after it is received
    /// before the B-frames presented before it.
    #[test]
    fn an_event_range_keeps_every_b_frame_presented_before_its_end() {
        let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let video = demux.tracks()[0].clone();
        let source: Vec<Frame> = demux.stream_frames(0).map(|f| f.unwrap()).collect();
        let d = source[1].dts - source[0].dts;
        let ts = source[0].timescale;
        let base = WallTime::now().add_micros(-60_000_000);
        let (mut writer, ring) = nvrkit_ring::ring(nvrkit_ring::Config::new()).unwrap();
        let mut sent = Vec::new();
        for (i, f) in source.iter().take(75).enumerate() {
            let i = i as i64;
            let shown = match i {
                0 => 0,
                _ => 3 * ((i - 1) / 3) + [3, 1, 2][((i - 1) % 3) as usize],
            };
            let mut f = f.clone();
            f.stream = 0;
            f.dts = i * d;
            f.pts = (shown + 1) * d;
            f.keyframe = i == 0;
            f.wall = Some(base.add_ticks(f.pts, ts));
            sent.push(f.wall.unwrap());
            writer.push(f).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Default::default()).unwrap());
        let state = Arc::new(CameraState::default());
        *state.tracks.lock().unwrap() = Some(vec![video]);
        let settings = Settings {
            pre: Duration::from_secs(1),
            post: Duration::from_millis(1010),
            mode: Mode::Events,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(RecorderStats::default());
        let thread = {
            let (store, stats) = (store.clone(), stats.clone());
            std::thread::spawn(move || run("cam".into(), ring, state, store, settings, rx, stats))
        };
        let at = base.add_micros(1_000_000);
        tx.send(Command::Event {
            at,
            arrived: Instant::now(),
            json: serde_json::json!({}),
        })
        .unwrap();
        // The range is long overdue: the recorder ends it at the first frame past its end.
        while stats.clips.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        tx.send(Command::Shutdown).unwrap();
        thread.join().unwrap();

        let until = at.add_micros(1_010_000);
        let stored: BTreeSet<WallTime> = store
            .frames("cam", base, base.add_micros(10_000_000))
            .unwrap()
            .map(|f| f.unwrap().wall.unwrap())
            .collect();
        let want: BTreeSet<WallTime> = sent.into_iter().filter(|&w| w <= until).collect();
        let missing: Vec<_> = want.difference(&stored).collect();
        assert!(missing.is_empty(), "not stored: {missing:?}");
    }
}

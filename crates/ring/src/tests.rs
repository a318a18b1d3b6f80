//! Unit tests: small and deterministic, so that Miri runs them all
//! (`cargo +nightly miri test -p nvrkit-ring --lib`). The stress and property tests are in
//! `tests/ring.rs`, the loom models in `tests/loom.rs`.

use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use nvrkit_media::{Frame, WallTime};

use crate::{Config, ConfigError, PushError, Pushed, RecvError, Start, TryRecvError, Writer, ring};

/// Frame `i` of stream `stream` at `ms` milliseconds, `len` bytes of payload that encode `i`.
fn frame(stream: usize, i: i64, key: bool, ms: i64, len: usize) -> Frame {
    let mut data = vec![(i & 0xff) as u8; len.max(8)];
    data[..8].copy_from_slice(&i.to_be_bytes());
    Frame {
        stream,
        timescale: 1000,
        dts: i,
        pts: i,
        duration: 1,
        wall: Some(WallTime::from_micros(ms * 1000)),
        keyframe: key,
        discard: false,
        discontinuity: false,
        data: Bytes::from(data),
    }
}

/// Video frame `i` at `i` ms, a keyframe every `gop` frames, 100 bytes.
fn video(i: i64, gop: i64) -> Frame {
    frame(0, i, i % gop == 0, i, 100)
}

fn small(max_frames: usize) -> Config {
    Config::new()
        .max_frames(max_frames)
        .spare_slots(2)
        .max_duration(Duration::from_secs(3600))
}

fn drain(r: &mut crate::Reader) -> Vec<Result<i64, TryRecvError>> {
    let mut out = Vec::new();
    loop {
        match r.try_recv() {
            Ok(f) => out.push(Ok(f.dts)),
            Err(TryRecvError::Empty) => return out,
            Err(e @ TryRecvError::Closed) => {
                out.push(Err(e));
                return out;
            }
            Err(e) => out.push(Err(e)),
        }
    }
}

fn push_all(w: &mut Writer, frames: impl IntoIterator<Item = Frame>) {
    for f in frames {
        w.push(f).unwrap();
    }
}

#[test]
fn frames_before_the_first_keyframe_are_not_retained() {
    let (mut w, ring) = ring(small(16)).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    assert_eq!(
        w.push(frame(0, 0, false, 0, 10)),
        Ok(Pushed::AwaitingKeyframe)
    );
    // Audio keyframes do not start a GOP of the video stream.
    assert_eq!(
        w.push(frame(1, 1, true, 0, 10)),
        Ok(Pushed::AwaitingKeyframe)
    );
    assert_eq!(
        w.push(frame(0, 2, true, 0, 10)),
        Ok(Pushed::Retained { seq: 0 })
    );
    assert_eq!(
        w.push(frame(1, 3, true, 0, 10)),
        Ok(Pushed::Retained { seq: 1 })
    );
    assert_eq!(drain(&mut r), vec![Ok(2), Ok(3)]);
    let s = w.stats();
    assert_eq!((s.pushed, s.dropped, s.frames, s.gops), (4, 2, 2, 1));
}

#[test]
fn a_frame_without_wall_time_is_refused_and_changes_nothing() {
    let (mut w, ring) = ring(small(16)).unwrap();
    let mut f = video(0, 4);
    f.wall = None;
    assert_eq!(
        w.push(f),
        Err(PushError::MissingWallTime { stream: 0, dts: 0 })
    );
    assert_eq!(ring.stats().pushed, 0);
    assert_eq!(w.push(video(0, 4)), Ok(Pushed::Retained { seq: 0 }));
}

#[test]
fn config_errors() {
    assert_eq!(
        ring(Config::new().max_frames(0)).err(),
        Some(ConfigError::ZeroFrames)
    );
    assert!(matches!(
        ring(Config::new().max_frames(1 << 30)).err(),
        Some(ConfigError::TooManySlots { .. })
    ));

    assert_eq!(
        Config::new().to_string(),
        "64 MiB, 30 s, 4096 frames, GOPs from stream 0"
    );
}

#[test]
fn eviction_by_frames_is_gop_wise_and_keeps_a_keyframe_first() {
    let (mut w, ring) = ring(small(10)).unwrap();
    push_all(&mut w, (0..23).map(|i| video(i, 4)));
    // 10 frames at most, whole GOPs: keyframes at 0, 4, 8, 12, 16, 20; frames 12..23 are 11,
    // so the oldest is 16.
    let s = ring.stats();
    assert_eq!((s.frames, s.gops), (7, 2));
    let mut r = ring.reader(Start::OldestKeyframe);
    assert_eq!(drain(&mut r), (16..23).map(Ok).collect::<Vec<_>>());
}

#[test]
fn eviction_by_bytes_keeps_at_most_max_of_bound_and_current_gop() {
    let cfg = small(1000).max_bytes(1000);
    let (mut w, ring) = ring(cfg).unwrap();
    for i in 0..200 {
        w.push(frame(0, i, i % 5 == 0, i, 100)).unwrap();
        let s = ring.stats();
        let current_gop = (i % 5 + 1) as u64 * 100;
        assert!(s.bytes <= 1000.max(current_gop), "{s:?}");
        let mut r = ring.reader(Start::OldestKeyframe);
        assert!(r.try_recv().unwrap().keyframe);
    }
    // A GOP bigger than the bound is kept whole while it is being written.
    for i in 200..230 {
        w.push(frame(0, i, i == 200, i, 100)).unwrap();
    }
    assert_eq!(ring.stats().bytes, 3000);
    assert_eq!(ring.stats().gops, 1);
}

#[test]
fn eviction_by_duration_keeps_the_fewest_gops_covering_it() {
    let cfg = small(1000).max_duration(Duration::from_millis(100));
    let (mut w, ring) = ring(cfg).unwrap();
    // A frame each 10 ms, a keyframe each 50 ms.
    for i in 0..100 {
        w.push(frame(0, i, i % 5 == 0, i * 10, 10)).unwrap();
        let s = ring.stats();
        let (oldest, newest) = (s.oldest.unwrap().as_micros(), s.newest.unwrap().as_micros());
        // Covers the duration once there is enough, and exceeds it by less than a GOP.
        if newest >= 100_000 {
            assert!(newest - oldest >= 100_000, "{s:?}");
        }
        assert!(newest - oldest < 150_000, "{s:?}");
    }
}

#[test]
fn a_gop_longer_than_max_frames_is_dropped_until_the_next_keyframe() {
    let (mut w, ring) = ring(small(4)).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    for i in 0..4 {
        assert_eq!(
            w.push(video(i, 100)),
            Ok(Pushed::Retained { seq: i as u64 })
        );
    }
    assert_eq!(drain(&mut r), vec![Ok(0), Ok(1), Ok(2), Ok(3)]);
    let mut late = ring.reader(Start::OldestKeyframe);
    assert_eq!(late.try_recv().map(|f| f.dts), Ok(0));
    // The fifth frame of the GOP does not fit: the GOP goes.
    assert_eq!(w.push(video(4, 100)), Ok(Pushed::AwaitingKeyframe));
    assert_eq!(w.push(video(5, 100)), Ok(Pushed::AwaitingKeyframe));
    assert_eq!(ring.stats().frames, 0);
    assert_eq!(
        w.push(frame(0, 6, true, 6, 10)),
        Ok(Pushed::Retained { seq: 4 })
    );
    // The reader at the end continues at the keyframe; the one inside the GOP lags to it.
    assert_eq!(drain(&mut r), vec![Ok(6)]);
    assert_eq!(
        drain(&mut late),
        vec![Err(TryRecvError::Lagged { skipped: 3 }), Ok(6)]
    );
}

#[test]
fn a_lagging_reader_resumes_at_the_oldest_keyframe_with_the_exact_count() {
    let (mut w, ring) = ring(small(8)).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    push_all(&mut w, (0..3).map(|i| video(i, 4)));
    assert_eq!(drain(&mut r), vec![Ok(0), Ok(1), Ok(2)]);
    push_all(&mut w, (3..14).map(|i| video(i, 4)));
    // Retained: 8..14 (GOPs at 8 and 12). The reader was at 3: 5 frames skipped.
    assert_eq!(
        drain(&mut r),
        [Err(TryRecvError::Lagged { skipped: 5 })]
            .into_iter()
            .chain((8..14).map(Ok))
            .collect::<Vec<_>>()
    );
}

#[test]
fn readers_start_where_asked() {
    let (mut w, ring) = ring(small(64)).unwrap();
    // Empty ring: every start is the first frame to be retained.
    assert_eq!(ring.reader(Start::NewestKeyframe).pending(), 0);
    push_all(&mut w, (0..30).map(|i| video(i, 10)));
    let first = |start| ring.reader(start).try_recv().map(|f| f.dts);
    assert_eq!(first(Start::OldestKeyframe), Ok(0));
    assert_eq!(first(Start::NewestKeyframe), Ok(20));
    let at = |ms: i64| Start::AtOrBefore(WallTime::from_micros(ms * 1000));
    assert_eq!(first(at(-5)), Ok(0)); // before everything: the oldest
    assert_eq!(first(at(0)), Ok(0));
    assert_eq!(first(at(9)), Ok(0));
    assert_eq!(first(at(10)), Ok(10));
    assert_eq!(first(at(19)), Ok(10));
    assert_eq!(first(at(1_000_000)), Ok(20)); // after everything: the newest
}

#[test]
fn a_reader_from_the_past_continues_live_without_gap_or_duplicate() {
    let (mut w, ring) = ring(small(64)).unwrap();
    push_all(&mut w, (0..25).map(|i| video(i, 10)));
    let mut r = ring.reader(Start::AtOrBefore(WallTime::from_micros(15_000)));
    let mut got = drain(&mut r);
    push_all(&mut w, (25..40).map(|i| video(i, 10)));
    got.extend(drain(&mut r));
    w.close();
    got.extend(drain(&mut r));
    let mut expect: Vec<_> = (10..40).map(Ok).collect();
    expect.push(Err(TryRecvError::Closed));
    assert_eq!(got, expect);
}

#[test]
fn snapshot_starts_at_the_keyframe_at_or_before_since() {
    let (mut w, ring) = ring(small(64)).unwrap();
    push_all(&mut w, (0..35).map(|i| video(i, 10)));
    let snap = ring.snapshot(WallTime::from_micros(25_000));
    assert_eq!(snap.first().map(|f| f.dts), Some(20));
    assert_eq!(snap.len(), 15);
    assert!(snap.windows(2).all(|p| p[1].dts == p[0].dts + 1));
    // Payloads are shared, not copied.
    let again = ring.snapshot(WallTime::from_micros(25_000));
    assert_eq!(snap[3].data.as_ptr(), again[3].data.as_ptr());
    assert!(
        ring.snapshot(WallTime::from_micros(-1))
            .first()
            .is_some_and(|f| f.dts == 0)
    );
}

#[test]
fn audio_between_video_keyframes_stays_interleaved() {
    let (mut w, ring) = ring(small(64)).unwrap();
    let mut pushed = Vec::new();
    for i in 0..40 {
        let f = if i % 3 == 2 {
            frame(1, i, true, i, 20) // audio: every frame a keyframe
        } else {
            frame(0, i, i % 12 == 0, i, 100)
        };
        if w.push(f).unwrap() != Pushed::AwaitingKeyframe {
            pushed.push(i);
        }
    }
    let snap = ring.snapshot(WallTime::from_micros(13_000));
    // The newest video keyframe at or before 13 ms is frame 12; audio frame 14 is not a start.
    assert_eq!(snap[0].dts, 12);
    assert_eq!(
        snap.iter().map(|f| f.dts).collect::<Vec<_>>(),
        (12..40).collect::<Vec<_>>()
    );
    assert_eq!(ring.stats().gops, 4);
}

#[test]
fn a_clock_stepping_back_does_not_unsort_the_keyframe_index() {
    let (mut w, ring) = ring(small(64)).unwrap();
    for (i, ms) in [(0, 100), (1, 101), (2, 50), (3, 51), (4, 200), (5, 201)] {
        w.push(frame(0, i, i % 2 == 0, ms, 10)).unwrap();
    }
    // Keyframe 2 (at 50 ms) is indexed at 100 ms, the previous keyframe's time.
    let first = |ms: i64| {
        ring.reader(Start::AtOrBefore(WallTime::from_micros(ms * 1000)))
            .try_recv()
            .map(|f| f.dts)
    };
    assert_eq!(first(60), Ok(0));
    assert_eq!(first(100), Ok(2));
    assert_eq!(first(199), Ok(2));
    assert_eq!(first(200), Ok(4));
}

#[test]
fn a_slot_held_by_a_reader_is_reclaimed_later_without_waiting() {
    let (mut w, ring) = ring(small(4)).unwrap();
    push_all(&mut w, (0..4).map(|i| video(i, 2)));
    // A reader stalled inside frame 0's slot.
    let shared = &ring.shared;
    let id = shared.index[0].load(crate::sync::Ordering::Relaxed) as usize;
    shared.slots[id].pin_for_test();
    // Pushing evicts GOP 0 (frames 0 and 1); frame 0's slot cannot be reused yet.
    push_all(&mut w, (4..6).map(|i| video(i, 2)));
    assert_eq!(w.deferred_slots(), 1);
    assert!(
        shared.slots[id].read(0).is_none(),
        "an evicted frame is not readable"
    );
    shared.slots[id].unpin_for_test();
    push_all(&mut w, (6..7).map(|i| video(i, 2)));
    assert_eq!(w.deferred_slots(), 0);
    assert_eq!(shared.slots[id].pins(), 0);
}

#[test]
fn when_every_slot_is_held_the_writer_drops_rather_than_waits() {
    let (mut w, ring) = ring(small(2).spare_slots(0)).unwrap();
    push_all(&mut w, (0..2).map(|i| video(i, 1)));
    for s in ring.shared.slots.iter() {
        s.pin_for_test();
    }
    assert_eq!(w.push(video(2, 1)), Ok(Pushed::AwaitingKeyframe));
    assert_eq!(ring.stats().frames, 0);
    for s in ring.shared.slots.iter() {
        s.unpin_for_test();
    }
    assert_eq!(w.push(video(3, 1)), Ok(Pushed::Retained { seq: 2 }));
}

#[test]
fn closing_ends_readers_after_they_drain() {
    let (mut w, ring) = ring(small(8)).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    push_all(&mut w, (0..3).map(|i| video(i, 4)));
    drop(w);
    assert!(ring.is_closed());
    assert_eq!(r.recv().map(|f| f.dts), Ok(0));
    assert_eq!(r.recv().map(|f| f.dts), Ok(1));
    assert_eq!(r.recv().map(|f| f.dts), Ok(2));
    assert_eq!(r.recv(), Err(RecvError::Closed));
    assert_eq!(r.try_recv(), Err(TryRecvError::Closed));
    // A reader made after the close still reads what is retained.
    assert_eq!(
        ring.reader(Start::OldestKeyframe).recv().map(|f| f.dts),
        Ok(0)
    );
}

#[test]
fn blocking_readers_are_woken_by_push_and_close() {
    let (mut w, ring) = ring(small(64)).unwrap();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut r = ring.reader(Start::OldestKeyframe);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match r.recv() {
                        Ok(f) => got.push(f.dts),
                        Err(RecvError::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for i in 0..20 {
        w.push(video(i, 5)).unwrap();
        std::thread::yield_now();
    }
    drop(w);
    for r in readers {
        assert_eq!(r.join().unwrap(), (0..20).collect::<Vec<_>>());
    }
}

#[test]
fn recv_timeout_times_out_then_delivers() {
    let (mut w, ring) = ring(small(8)).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    assert_eq!(
        r.recv_timeout(Duration::from_millis(1)),
        Err(crate::RecvTimeoutError::Timeout)
    );
    w.push(video(0, 1)).unwrap();
    assert_eq!(
        r.recv_timeout(Duration::from_millis(1)).map(|f| f.dts),
        Ok(0)
    );
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
    }
}

#[test]
fn async_recv_registers_once_and_is_woken_by_the_push() {
    let (mut w, ring) = ring(small(8)).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    let counter = StdArc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    {
        let mut fut = std::pin::pin!(r.recv_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // Polled twice, stored once: the list holds one clone of the waker.
        assert_eq!(StdArc::strong_count(&counter), 3); // `counter`, `waker`, the list's
        w.push(video(0, 1)).unwrap();
        assert_eq!(counter.0.load(StdOrdering::SeqCst), 1);
        assert_eq!(StdArc::strong_count(&counter), 2); // woken and taken out
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(f)) => assert_eq!(f.dts, 0),
            other => panic!("{other:?}"),
        }
    }
    // With nobody parked, a push wakes nobody.
    w.push(video(1, 1)).unwrap();
    assert_eq!(counter.0.load(StdOrdering::SeqCst), 1);
}

#[test]
fn a_dropped_future_withdraws_its_waker() {
    let (mut w, ring) = ring(small(8)).unwrap();
    let mut r = ring.reader(Start::OldestKeyframe);
    let counter = StdArc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    {
        let mut fut = std::pin::pin!(r.recv_async());
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    // The list no longer holds the waker, and the next push wakes nothing.
    assert_eq!(StdArc::strong_count(&counter), 2); // `counter` and `waker`
    w.push(video(0, 1)).unwrap();
    assert_eq!(counter.0.load(StdOrdering::SeqCst), 0);
}

#[test]
fn a_wake_during_a_registration_is_handed_to_the_registrant() {
    let aw = crate::wait::AtomicWaker::new();
    let counter = StdArc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    aw.register(&waker);
    // A registration in progress (the state a preempted registrant leaves): a take finds
    // nothing and returns at once, without waiting for the registrant.
    aw.begin_register_for_test();
    assert!(aw.take().is_none());
    // The registrant, finishing, sees the wake and wakes its waker itself.
    aw.finish_register_for_test(&waker);
    assert_eq!(counter.0.load(StdOrdering::SeqCst), 1);
    assert!(aw.take().is_none(), "the waker was consumed by that wake");
}

#[test]
fn a_node_is_listed_once_however_often_its_reader_registers() {
    let list = crate::wait::WaitList::new();
    let node = crate::sync::Arc::new(crate::wait::WaitNode::new());
    let counter = StdArc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    for _ in 0..3 {
        list.register(&node, &waker);
    }
    assert_eq!(crate::sync::Arc::strong_count(&node), 2); // ours and the list's
    list.notify();
    assert_eq!(crate::sync::Arc::strong_count(&node), 1);
    assert_eq!(counter.0.load(StdOrdering::SeqCst), 1);
    list.notify();
    assert_eq!(counter.0.load(StdOrdering::SeqCst), 1);
    // Registered again after the wake: listed again. Dropping the list frees the node's
    // reference (Miri and loom would report a leak).
    list.register(&node, &waker);
    drop(list);
    assert_eq!(crate::sync::Arc::strong_count(&node), 1);
}

//! Loom models: one writer and two readers over tiny rings, every interleaving of the ring's
//! atomics explored up to a preemption bound (loom's default, 2 unless LOOM_MAX_PREEMPTIONS says
//! otherwise). Loom also checks every access to the slots' `UnsafeCell`s for races and reports a
//! reader that parks forever as a deadlock.
//!
//! ```sh
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" cargo test -p nvrkit-ring --test loom --release
//! ```
#![cfg(loom)]

use std::time::Duration;

use bytes::Bytes;
use loom::thread;
use nvrkit_media::{Frame, WallTime};
use nvrkit_ring::{Config, RecvError, Start, TryRecvError, ring};

/// Frame `i`, a keyframe every `gop`; the payload repeats `i` so a torn or stale read shows.
fn frame(i: i64, gop: i64) -> Frame {
    Frame {
        stream: 0,
        timescale: 1000,
        dts: i,
        pts: i,
        duration: 1,
        wall: Some(WallTime::from_micros(i * 1000)),
        keyframe: i % gop == 0,
        discard: false,
        discontinuity: false,
        data: Bytes::from(vec![i as u8; 4]),
    }
}

fn tiny(max_frames: usize, spare: usize) -> Config {
    Config::new()
        .max_frames(max_frames)
        .spare_slots(spare)
        .max_duration(Duration::from_secs(60))
}

/// What a reader saw: `Some(dts)` per frame, `None` per lag.
type Seen = Vec<Option<i64>>;

/// Checks a reader's sequence: payload intact, frames in order with no gap between lags, and
/// each run (from the start or a lag) beginning with a keyframe of `gop`.
fn check(seen: &Seen, gop: i64) {
    let mut prev: Option<i64> = None;
    for s in seen {
        match *s {
            None => prev = None,
            Some(dts) => {
                match prev {
                    None => assert_eq!(
                        dts % gop,
                        0,
                        "a run starts at {dts}, not a keyframe: {seen:?}"
                    ),
                    Some(p) => assert_eq!(dts, p + 1, "gap or duplicate: {seen:?}"),
                }
                prev = Some(dts);
            }
        }
    }
}

fn record(seen: &mut Seen, f: &Frame) {
    assert_eq!(f.data.as_ref(), &[f.dts as u8; 4], "torn or stale payload");
    seen.push(Some(f.dts));
}

/// Polls `fut` on this loom thread, parking between polls; its waker unparks the thread.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(loom::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// Runs `f` under loom with at most `preemptions` preemptions per execution (unless
/// LOOM_MAX_PREEMPTIONS says otherwise, for a deeper run by hand). The bound keeps the whole
/// file under a minute on 2 cores: each model notes what its bound catches.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(preemptions);
    }
    b.check(f);
}

#[test]
fn try_recv_while_the_writer_evicts() {
    model(2, || {
        // 2 frames, GOPs of 2, 1 spare slot: the third push evicts GOP 0 under the readers.
        let (mut w, ring) = ring(tiny(2, 1)).unwrap();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let mut r = ring.reader(Start::OldestKeyframe);
                thread::spawn(move || {
                    let mut seen = Seen::new();
                    for _ in 0..3 {
                        match r.try_recv() {
                            Ok(f) => record(&mut seen, &f),
                            Err(TryRecvError::Lagged { skipped }) => {
                                assert!(skipped > 0);
                                seen.push(None);
                            }
                            Err(TryRecvError::Empty) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    seen
                })
            })
            .collect();
        for i in 0..4 {
            w.push(frame(i, 2)).unwrap();
        }
        for r in readers {
            check(&r.join().unwrap(), 2);
        }
    });
}

#[test]
fn blocking_readers_drain_and_close_without_a_lost_wakeup() {
    const READERS: usize = 2;
    model(1, || {
        let (mut w, ring) = ring(tiny(1, 1)).unwrap();
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let mut r = ring.reader(Start::OldestKeyframe);
                thread::spawn(move || {
                    let mut seen = Seen::new();
                    loop {
                        match r.recv() {
                            Ok(f) => record(&mut seen, &f),
                            Err(RecvError::Lagged { .. }) => seen.push(None),
                            Err(RecvError::Closed) => return seen,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        // GOPs of one frame in a one-frame ring: the second push evicts the first frame.
        for i in 0..2 {
            w.push(frame(i, 1)).unwrap();
        }
        drop(w);
        for r in readers {
            let seen = r.join().unwrap();
            check(&seen, 1);
            // Frame 1 is retained to the end, so every reader gets it last.
            assert_eq!(seen.last(), Some(&Some(1)), "{seen:?}");
        }
    });
}

#[test]
fn a_parked_reader_is_woken_by_push_and_by_close() {
    // One reader, so the model affords two preemptions: park racing the push, and the close.
    model(2, || {
        let (mut w, ring) = ring(tiny(1, 1)).unwrap();
        let mut r = ring.reader(Start::OldestKeyframe);
        let t = thread::spawn(move || {
            let first = r.recv().map(|f| f.dts);
            (first, r.recv().map(|f| f.dts))
        });
        w.push(frame(0, 1)).unwrap();
        drop(w);
        assert_eq!(t.join().unwrap(), (Ok(0), Err(RecvError::Closed)));
    });
}

#[test]
fn async_and_blocking_readers_are_woken() {
    model(1, || {
        let (mut w, ring) = ring(tiny(4, 1)).unwrap();
        let mut a = ring.reader(Start::OldestKeyframe);
        let mut b = ring.reader(Start::OldestKeyframe);
        let ta = thread::spawn(move || {
            block_on(async {
                let mut n = 0;
                loop {
                    match a.recv_async().await {
                        Ok(f) => {
                            assert_eq!(f.dts, n);
                            n += 1;
                        }
                        Err(RecvError::Closed) => return n,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        });
        let tb = thread::spawn(move || {
            let mut n = 0;
            while let Ok(f) = b.recv() {
                assert_eq!(f.dts, n);
                n += 1;
            }
            n
        });
        w.push(frame(0, 2)).unwrap();
        w.push(frame(1, 2)).unwrap();
        drop(w);
        assert_eq!(ta.join().unwrap(), 2);
        assert_eq!(tb.join().unwrap(), 2);
    });
}

#[test]
fn snapshot_and_late_join_race_with_eviction() {
    model(2, || {
        let (mut w, ring) = ring(tiny(2, 1)).unwrap();
        w.push(frame(0, 2)).unwrap();
        w.push(frame(1, 2)).unwrap();
        let r1 = ring.clone();
        let snap = thread::spawn(move || r1.snapshot(WallTime::from_micros(1_000)));
        let r2 = ring.clone();
        let join = thread::spawn(move || {
            let mut r = r2.reader(Start::NewestKeyframe);
            let mut seen = Seen::new();
            for _ in 0..2 {
                match r.try_recv() {
                    Ok(f) => record(&mut seen, &f),
                    Err(TryRecvError::Lagged { .. }) => seen.push(None),
                    Err(_) => {}
                }
            }
            seen
        });
        w.push(frame(2, 2)).unwrap();
        w.push(frame(3, 2)).unwrap();
        let snap = snap.join().unwrap();
        let dts: Vec<i64> = snap.iter().map(|f| f.dts).collect();
        assert!(
            dts.is_empty() || dts == [0, 1] || dts == [2] || dts == [2, 3],
            "{dts:?}"
        );
        for f in &snap {
            assert_eq!(f.data.as_ref(), &[f.dts as u8; 4]);
        }
        check(&join.join().unwrap(), 2);
    });
}

#[test]
fn a_reader_inside_an_evicted_slot_never_sees_it_reused() {
    model(2, || {
        // 1 frame, no spare slot: the writer must evict and reuse slots while a reader may be
        // inside one; it drops a frame rather than wait.
        let (mut w, ring) = ring(tiny(1, 1)).unwrap();
        let mut r = ring.reader(Start::OldestKeyframe);
        let t = thread::spawn(move || {
            let mut seen = Seen::new();
            for _ in 0..2 {
                match r.try_recv() {
                    Ok(f) => record(&mut seen, &f),
                    Err(TryRecvError::Lagged { .. }) => seen.push(None),
                    Err(_) => {}
                }
            }
            seen
        });
        for i in 0..3 {
            w.push(frame(i, 1)).unwrap();
        }
        check(&t.join().unwrap(), 1);
    });
}

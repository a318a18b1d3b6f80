//! How many simulated 4 Mbit/s cameras one store keeps up with: N threads, each a camera pushing
//! a 25 fps H.264-like stream (100 kB keyframe each second, 16.7 kB otherwise: 500 kB/s) at the
//! wall clock's pace into its own writer, 10 s segments, for D seconds. A frame counts as late
//! when the writer has not taken it one second after it was due (a recorder's RAM ring would
//! have started to overflow). Prints one line.
//!
//! `cargo run --release -p nvrkit-store --example cameras -- CAMERAS SECONDS [DIR]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use nvrkit_media::{Demuxer, Frame, WallTime};
use nvrkit_store::{Options, Store};

fn nal(kind: u8, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len + 4);
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.push(kind);
    v.extend((1..len).map(|i| (i * 7) as u8));
    v.into()
}

#[allow(clippy::print_stdout)] // reason: an example's report
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cameras: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30);
    let dir = match args.get(3) {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let store = Store::open(
        dir.path(),
        Options::default().segment_duration(Duration::from_secs(10)),
    )
    .unwrap();
    let track = Demuxer::from_bytes("sample", nvrkit_media::sample())
        .unwrap()
        .tracks()[..1]
        .to_vec();
    let (key, inter) = (nal(0x65, 100_000), nal(0x41, 16_666));
    let t0 = WallTime::now();
    let began = Instant::now();
    let threads: Vec<_> = (0..cameras)
        .map(|c| {
            let (store, track, key, inter) =
                (store.clone(), track.clone(), key.clone(), inter.clone());
            std::thread::spawn(move || {
                let mut w = store.writer(&format!("cam{c}"), &track).unwrap();
                let (mut late, mut worst) = (0u64, Duration::ZERO);
                // Cameras start spread over the first second.
                let offset = Duration::from_micros((c as u64 * 1_000_000) / cameras as u64);
                for i in 0..25 * seconds {
                    let due = offset + Duration::from_millis(i as u64 * 40);
                    if let Some(wait) = due.checked_sub(began.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let lag = began.elapsed().saturating_sub(due);
                    worst = worst.max(lag);
                    if lag > Duration::from_secs(1) {
                        late += 1;
                    }
                    w.push(Frame {
                        stream: 0,
                        timescale: 12_800,
                        dts: i * 512,
                        pts: i * 512,
                        duration: 512,
                        wall: Some(t0.add_micros(offset.as_micros() as i64 + i * 40_000)),
                        keyframe: i % 25 == 0,
                        discard: false,
                        discontinuity: false,
                        data: if i % 25 == 0 {
                            key.clone()
                        } else {
                            inter.clone()
                        },
                    })
                    .unwrap();
                }
                w.finish().unwrap();
                (late, worst)
            })
        })
        .collect();
    let (mut late, mut worst) = (0u64, Duration::ZERO);
    for t in threads {
        let (l, w) = t.join().unwrap();
        late += l;
        worst = worst.max(w);
    }
    let wall = began.elapsed();
    let bytes = store.bytes(None);
    let problems = store.verify(None, |_| {});
    println!(
        "{cameras} cameras x {seconds} s: {} MB written in {:.1} s ({:.0} MB/s), frames late by > 1 s: {late}, worst lag {:?}, verify problems: {}",
        bytes / 1_000_000,
        wall.as_secs_f64(),
        bytes as f64 / 1e6 / wall.as_secs_f64(),
        worst,
        problems.len()
    );
}

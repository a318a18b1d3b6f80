//! A lock-free RAM ring of encoded frames ([`nvrkit_media::Frame`]): one writer that never
//! blocks, any number of readers each at its own pace, bounded by bytes, by duration and by
//! frame count, and evicted a whole GOP at a time so that every reader can always decode.
//!
//! It serves two jobs: the NVR's pre-event buffer (the last 30 s of a camera, ready to save when
//! an alarm arrives, from before the alarm until after it) and the fan-out of one stream to many
//! clients, where a slow client must not slow the camera or the others.
//!
//! # Semantics
//! - **One [`Writer`].** [`Writer::push`] never blocks, never waits for a reader, and makes no
//!   syscall unless some reader is parked waiting (then it wakes them), apart from what the
//!   allocator does when an evicted payload is freed. The writer alone evicts.
//! - **GOPs.** A GOP starts at a keyframe of the [video stream](Config::video_stream); frames of
//!   other streams (audio) are kept between, in push order. The writer evicts the oldest whole
//!   GOP, so the oldest retained frame is always a video keyframe. Frames pushed before the first
//!   video keyframe are not retained ([`Pushed::AwaitingKeyframe`]).
//! - **Readers** ([`Reader`]), made at any time from a [`Ring`] handle, start at the newest
//!   keyframe (live join), the oldest retained keyframe, or the keyframe at or before a
//!   wall-clock time ([`Start`]). From there a reader gets every frame in push order, the
//!   retained ones and then the live ones, with no gap and no duplicate.
//! - **Lag.** A reader that falls behind eviction gets [`RecvError::Lagged`]` { skipped }` and
//!   continues at the oldest retained keyframe. It never receives a frame whose keyframe it
//!   missed: every run of frames it receives between two lags starts with a keyframe.
//! - **Receiving**: [`Reader::recv`] parks the thread, [`Reader::recv_async`] is a future for
//!   any async runtime (no runtime dependency), [`Reader::try_recv`] never waits.
//! - **[`Ring::snapshot`]**`(since)`: the frames from the keyframe at or before `since` to now,
//!   as clones (the `Bytes` payloads are shared, not copied), found by binary search of a
//!   keyframe side index.
//! - **Closing**: dropping the writer (or [`Writer::close`]) ends every reader with
//!   [`RecvError::Closed`] once it has read what is retained.
//!
//! # Guarantees, exactly
//! With `B = max_bytes`, `D = max_duration`, `N = max_frames` (see [`Config`]), after every push:
//! - **Bytes**: retained payload bytes ≤ `max(B, bytes of the GOP being written)` (so ≤ `B` plus
//!   the largest GOP). The GOP being written is never evicted for bytes or duration.
//! - **Frames**: retained frames ≤ `N`. A GOP that alone would exceed `N` is dropped whole, and
//!   the ring waits for the next keyframe.
//! - **Duration**: the oldest retained GOP is kept only while the second-oldest starts after
//!   `newest_wall − D`. So, bytes and frames permitting, a snapshot or reader at `now − D` finds a
//!   keyframe at or before it, and the retained span is less than `D` plus one GOP. Wall-clock
//!   times come from [`Frame::wall`](nvrkit_media::Frame::wall), which every pushed frame must
//!   carry; the keyframe index uses each keyframe's time raised to the previous one's, so a clock
//!   stepping backwards cannot unsort it.
//! - **Memory**: payloads are freed when evicted, except that a frame a reader is copying at
//!   that instant is freed by the writer's next push. Slots (about 128 bytes each) are allocated
//!   once: `N + spare_slots`.
//!
//! # How it is built
//! Frames live in slots that a reader pins (one `fetch_add`) while it clones; the writer removes a
//! slot's tag before reusing it and reuses it only once no pin is up, taking another free slot
//! meanwhile, so it never waits. A seqlock would be unsound here: cloning a `Bytes` that is
//! being freed is undefined behaviour. Sequence numbers map to slots through an index; keyframes
//! have a side index of `(seq, wall)` read under a seqlock of atomics. Parked readers are found
//! through a bit in the same atomic word the writer swaps to publish, so the writer needs no
//! lock and no syscall while nobody is parked. All atomics go through a `sync` shim and are
//! model-checked with [loom](https://docs.rs/loom) (`tests/loom.rs`); the unit tests run under
//! Miri.
//!
//! Non-goals: several writers; persistence (the store crate keeps footage); reordering frames
//! (they are retained in push order, which is decode order).
//!
//! # Example: pre-event buffer
//! Keep the last 30 s of a camera; when an alarm arrives, save from 10 s before it to 5 s after.
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use nvrkit_media::{Frame, WallTime};
//! use nvrkit_ring::{Config, RecvError, Start};
//!
//! // 25 fps, a keyframe each second, from t0 on.
//! let t0 = WallTime::from_micros(1_767_268_800_000_000); // 2026-01-01T12:00:00Z
//! let frame = |i: i64| Frame {
//!     stream: 0,
//!     timescale: 90_000,
//!     dts: i * 3_600,
//!     pts: i * 3_600,
//!     duration: 3_600,
//!     wall: Some(t0.add_micros(i * 40_000)),
//!     keyframe: i % 25 == 0,
//!     discard: false,
//!     discontinuity: false,
//!     data: Bytes::from(vec![0u8; 4_000]),
//! };
//! let (mut writer, ring) = nvrkit_ring::ring(
//!     nvrkit_ring::Config::new().max_duration(Duration::from_secs(30)),
//! )?;
//! for i in 0..60 * 25 {
//!     writer.push(frame(i))?;
//! }
//! // 60 s pushed; 30 s (and less than one more GOP) retained.
//! let stats = ring.stats();
//! assert!(stats.frames >= 30 * 25 && stats.frames <= 31 * 25);
//!
//! // The alarm, at t0 + 59.5 s. Everything from the keyframe at or before t0 + 49.5 s:
//! let alarm = t0.add_micros(59_500_000);
//! let pre = ring.snapshot(alarm.add_micros(-10_000_000));
//! assert!(pre[0].keyframe);
//! assert_eq!(pre[0].wall, Some(t0.add_micros(49_000_000)));
//!
//! // Or read from there and keep going live until alarm + 5 s, with no gap and no duplicate.
//! let mut rec = ring.reader(Start::AtOrBefore(alarm.add_micros(-10_000_000)));
//! let mut saved = Vec::new();
//! for i in 60 * 25..65 * 25 {
//!     writer.push(frame(i))?; // elsewhere, the camera keeps pushing
//!     while let Ok(f) = rec.try_recv() {
//!         saved.push(f);
//!     }
//! }
//! assert_eq!(saved.len(), pre.len() + 5 * 25);
//! assert!(saved.windows(2).all(|w| w[1].dts == w[0].dts + 3_600));
//! # drop(writer);
//! # assert_eq!(rec.recv(), Err(RecvError::Closed));
//! # Ok::<(), nvrkit_ring::Error>(())
//! ```
//!
//! # Example: fan-out
//! One camera, many clients on their own threads (or tasks, with `recv_async`), each joining
//! live at the newest keyframe.
//! ```
//! use bytes::Bytes;
//! use nvrkit_media::{Frame, WallTime};
//! use nvrkit_ring::{Config, RecvError, Start};
//!
//! let (mut writer, ring) = nvrkit_ring::ring(Config::new())?;
//! let clients: Vec<_> = (0..4)
//!     .map(|_| {
//!         let mut reader = ring.reader(Start::NewestKeyframe);
//!         std::thread::spawn(move || {
//!             let mut frames = 0;
//!             loop {
//!                 match reader.recv() {
//!                     Ok(_frame) => frames += 1, // packetize and send
//!                     Err(RecvError::Lagged { .. }) => continue, // next is a keyframe
//!                     Err(RecvError::Closed) => return frames,
//!                     Err(e) => panic!("{e}"),
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! for i in 0..100 {
//!     writer.push(Frame {
//!         stream: 0,
//!         timescale: 90_000,
//!         dts: i * 3_600,
//!         pts: i * 3_600,
//!         duration: 3_600,
//!         wall: Some(WallTime::now()),
//!         keyframe: i % 25 == 0,
//!         discard: false,
//!         discontinuity: false,
//!         data: Bytes::from_static(b"\0\0\0\x01\x65"),
//!     })?;
//! }
//! writer.close();
//! for client in clients {
//!     // Each client read the 100 frames (they were all retained: nothing lagged).
//!     assert_eq!(client.join().unwrap(), 100);
//! }
//! # Ok::<(), nvrkit_ring::Error>(())
//! ```

#![deny(missing_docs)]
// Every `unsafe` block says why it is sound; clippy checks that the comment is there.
#![warn(clippy::undocumented_unsafe_blocks)]

mod config;
mod error;
mod reader;
mod shared;
mod slot;
mod sync;
mod wait;
mod writer;

#[cfg(all(test, loom))]
mod loom_wait;
#[cfg(all(test, not(loom)))]
mod tests;

pub use config::Config;
pub use error::{ConfigError, Error, PushError, RecvError, RecvTimeoutError, TryRecvError};
pub use reader::{Reader, Recv};
pub use shared::{Ring, Start, Stats};
pub use writer::{Pushed, Writer};

/// Makes a ring: its one [`Writer`] and a [`Ring`] handle to make readers and snapshots.
///
/// # Errors
/// [`ConfigError`] if `config` asks for no frames or for more slots than a ring can address.
pub fn ring(config: Config) -> Result<(Writer, Ring), ConfigError> {
    let slots = config.slots()?;
    let shared = sync::Arc::new(shared::Shared::new(config, slots)?);
    Ok((Writer::new(shared.clone()), Ring { shared }))
}

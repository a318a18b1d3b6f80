//! Snapshots (feature `snapshot`): a JPEG of the latest keyframe of a clip's live loop, as an
//! IP camera's snapshot URL serves it (ONVIF `GetSnapshotUri`, an alarm mail's attachment).
//!
//! - **H.264**: the newest keyframe in the clip's ring is decoded with OpenH264 (the `openh264`
//!   crate, built from source) and encoded to a 4:2:0 baseline JPEG with `jpeg-encoder`, which
//!   reads the decoder's YUV planes as they are (no RGB round trip).
//! - **H.265**: OpenH264 decodes H.264 only, so the picture is a sidecar JPEG beside the clip
//!   (`clip.jpg` for `clip.mp4`, [`load_sidecar`]) when there is one; without it a request is
//!   refused with [`SnapshotError::NeedsSidecar`] (the HTTP layer answers `501`).
//! - **Once per keyframe**: a [`Snapshotter`] keeps the JPEG of the last keyframe it encoded and
//!   hands every request a clone of the same [`Bytes`] until a newer keyframe is paced.
//!   Encoding is lazy (nothing is decoded while nobody asks) and runs on tokio's blocking pool,
//!   never on the pacer's or an RTSP session's task; at most one decode per clip is in flight
//!   and every request that arrives meanwhile waits for that one.
//!
//! ```no_run
//! use nvrkit_feed::{Clip, server::{Config, Server}, snapshot::Snapshotter};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let demux = nvrkit_media::Demuxer::from_bytes("sample.mp4", nvrkit_media::sample())?;
//! let clip = Clip::load("sample", &demux)?;
//! let server = Server::start(Config::default(), vec![clip.clone()]).await?;
//! let snapshots = Snapshotter::new(&clip, server.ring("sample").unwrap(), None);
//! let jpeg = snapshots.latest_jpeg().await?; // a cheap clone of the cached JPEG
//! assert_eq!(&jpeg[..2], b"\xff\xd8");
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nvrkit_media::{CodecParams, VideoParams};
use nvrkit_ring::{Ring, Start};
use tokio::sync::watch;

use crate::loop_source::Clip;

/// The JPEG quality used (1–100): 85, the quality cameras' snapshot URLs commonly use.
pub const QUALITY: u8 = 85;

/// The largest sidecar JPEG read, in bytes: a 4K snapshot is a few MB.
pub const MAX_SIDECAR_BYTES: u64 = 16 << 20;

/// Why there is no snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The clip has no video track.
    #[error("clip {clip} has no video track")]
    NoVideo {
        /// The clip.
        clip: String,
    },
    /// H.265 (OpenH264 decodes H.264 only) and no sidecar JPEG was given.
    #[error(
        "clip {clip} is H.265, which is not decoded (OpenH264 is H.264 only); put a JPEG beside it as {sidecar} to serve one"
    )]
    NeedsSidecar {
        /// The clip.
        clip: String,
        /// The sidecar's expected file name.
        sidecar: String,
    },
    /// The pacer has not yet put a keyframe in the ring (just after start), or the ring closed.
    #[error("clip {clip}: no keyframe has been sent yet")]
    NoKeyframe {
        /// The clip.
        clip: String,
    },
    /// OpenH264 could not decode the keyframe.
    #[error("clip {clip}: decoding the keyframe at PTS {pts}: {reason}")]
    Decode {
        /// The clip.
        clip: String,
        /// The keyframe's PTS on the loop's timeline.
        pts: i64,
        /// What went wrong.
        reason: String,
    },
    /// The picture could not be encoded as JPEG (e.g. wider than 65,535 pixels).
    #[error("clip {clip}: encoding the JPEG: {reason}")]
    Encode {
        /// The clip.
        clip: String,
        /// What went wrong.
        reason: String,
    },
    /// A sidecar JPEG could not be read or is not a JPEG.
    #[error("{path}: {reason}")]
    Sidecar {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// One encoded snapshot. Cloning it clones a [`Bytes`] (a reference count), not the JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The JPEG file.
    pub jpeg: Bytes,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Names this picture: the keyframe's PTS on the loop's timeline (or 0 for a sidecar), so a
    /// new keyframe has a new tag. The HTTP layer's `ETag`.
    pub tag: i64,
}

/// A picture in YUV 4:2:0 planes, borrowed from the decoder.
struct Yuv420<'a> {
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
    y_stride: usize,
    uv_stride: usize,
    width: u16,
    height: u16,
}

impl jpeg_encoder::ImageBuffer for Yuv420<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, row: u16, buffers: &mut [Vec<u8>; 4]) {
        // Full-resolution rows for the encoder, which subsamples chroma again (2x2): each
        // chroma sample repeated over the four luma samples it covers. The decoder's planes
        // hold at least `stride * rows` bytes; `get` keeps a short plane from panicking.
        let w = usize::from(self.width);
        let r = usize::from(row);
        let y_row = self.y.get(r * self.y_stride..).unwrap_or_default();
        let u_row = self.u.get((r / 2) * self.uv_stride..).unwrap_or_default();
        let v_row = self.v.get((r / 2) * self.uv_stride..).unwrap_or_default();
        for x in 0..w {
            buffers[0].push(y_row.get(x).copied().unwrap_or(16));
            buffers[1].push(u_row.get(x / 2).copied().unwrap_or(128));
            buffers[2].push(v_row.get(x / 2).copied().unwrap_or(128));
        }
    }
}

/// Why [`h264_to_jpeg`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// Decoding failed or gave no picture.
    Decode(String),
    /// Encoding failed.
    Encode(String),
}

/// Decodes one H.264 keyframe (`access_unit`: 4-byte length-prefixed NAL units, as
/// [`nvrkit_media::Frame::data`] holds them) with the stream's parameter sets in `params`, and
/// encodes the picture as a JPEG of `quality` (1–100). Returns the JPEG, width and height.
pub fn h264_to_jpeg(
    params: &VideoParams,
    access_unit: &[u8],
    quality: u8,
) -> Result<(Bytes, u32, u32), ConvertError> {
    use openh264::formats::YUVSource as _;

    let mut annex_b = Vec::with_capacity(access_unit.len() + 256);
    for ps in params.sps.iter().chain(params.pps.iter()) {
        annex_b.extend_from_slice(&[0, 0, 0, 1]);
        annex_b.extend_from_slice(ps);
    }
    let au = nvrkit_media::nal::to_annex_b(access_unit)
        .map_err(|e| ConvertError::Decode(format!("not length-prefixed NAL units: {e}")))?;
    annex_b.extend_from_slice(&au);

    // A fresh decoder per keyframe: an IDR needs no earlier picture, and no state carries
    // over from a picture that failed. Creating one costs well under a millisecond.
    let mut decoder = openh264::decoder::Decoder::new()
        .map_err(|e| ConvertError::Decode(format!("cannot create the decoder: {e}")))?;
    let encode = |pic: &openh264::decoder::DecodedYUV<'_>| {
        let (w, h) = pic.dimensions();
        let (y_stride, uv_stride, _) = pic.strides();
        let (Ok(width), Ok(height)) = (u16::try_from(w), u16::try_from(h)) else {
            return Err(ConvertError::Encode(format!(
                "{w}x{h} is larger than JPEG's 65535x65535"
            )));
        };
        let img = Yuv420 {
            y: pic.y(),
            u: pic.u(),
            v: pic.v(),
            y_stride,
            uv_stride,
            width,
            height,
        };
        let mut out = Vec::with_capacity(w * h / 4);
        let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        enc.encode_image(img)
            .map_err(|e| ConvertError::Encode(e.to_string()))?;
        Ok((Bytes::from(out), u32::from(width), u32::from(height)))
    };
    let decoded = decoder
        .decode(&annex_b)
        .map_err(|e| ConvertError::Decode(e.to_string()))?;
    if let Some(pic) = decoded {
        return encode(&pic);
    }
    let rest = decoder
        .flush_remaining()
        .map_err(|e| ConvertError::Decode(e.to_string()))?;
    match rest.last() {
        Some(pic) => encode(pic),
        None => Err(ConvertError::Decode(
            "the decoder gave no picture for the keyframe".into(),
        )),
    }
}

/// Reads a sidecar JPEG (at most [`MAX_SIDECAR_BYTES`]) and checks that it is one: its SOI
/// marker and the size in its first SOF segment. `Ok(None)` when the file does not exist.
pub fn load_sidecar(path: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    use std::io::Read as _;
    let err = |reason: String| SnapshotError::Sidecar {
        path: path.display().to_string(),
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut data = Vec::new();
    file.take(MAX_SIDECAR_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| err(e.to_string()))?;
    if data.len() as u64 > MAX_SIDECAR_BYTES {
        return Err(err(format!("larger than {MAX_SIDECAR_BYTES} bytes")));
    }
    let (width, height) =
        jpeg_size(&data).ok_or_else(|| err("not a JPEG (no SOI and SOF)".into()))?;
    Ok(Some(Snapshot {
        jpeg: Bytes::from(data),
        width,
        height,
        tag: 0,
    }))
}

/// The width and height in a JPEG's first SOF marker segment (ITU-T T.81 B.2.2), walking the
/// marker segments from SOI; `None` for anything else.
pub fn jpeg_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while *data.get(i)? == 0xFF && *data.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *data.get(i)? != 0xFF {
            return None;
        }
        let marker = *data.get(i + 1)?;
        let len = usize::from(u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u16::from_be_bytes([*data.get(i + 5)?, *data.get(i + 6)?]);
            let w = u16::from_be_bytes([*data.get(i + 7)?, *data.get(i + 8)?]);
            return Some((u32::from(w), u32::from(h)));
        }
        if marker == 0xDA || marker == 0xD9 || len < 2 {
            return None;
        }
        i = i.checked_add(2 + len)?;
    }
}

/// The sidecar file name for a clip file: `clip.jpg` beside `clip.mp4`.
pub fn sidecar_path(clip_file: &Path) -> std::path::PathBuf {
    clip_file.with_extension("jpg")
}

/// What the pictures come from.
#[derive(Debug)]
enum Source {
    H264(VideoParams),
    Sidecar(Snapshot),
    Refused(SnapshotError),
}

type Pending = watch::Receiver<Option<Result<Snapshot, SnapshotError>>>;

#[derive(Debug, Default)]
struct State {
    /// The last picture encoded.
    cached: Option<Snapshot>,
    /// The decode in flight, when there is one.
    pending: Option<Pending>,
    /// The last decode that failed, by the keyframe's PTS: asked again for that keyframe, the
    /// error is answered without decoding again (requests cannot force a decode each).
    failed: Option<(i64, SnapshotError)>,
    /// The pictures of clip keyframes by frame index ([`Snapshotter::keyframe`], what alarm
    /// mails carry), at most [`MAX_KEYFRAMES_KEPT`], the oldest dropped first.
    keyframes: Vec<(usize, Result<Snapshot, SnapshotError>)>,
}

/// The most keyframe pictures [`Snapshotter::keyframe`] keeps per clip (one per alarm
/// position is what alarm mails need).
pub const MAX_KEYFRAMES_KEPT: usize = 16;

#[derive(Debug)]
struct Inner {
    clip: String,
    /// The clip's video stream index.
    video: usize,
    source: Source,
    ring: Ring,
    /// The clip's video keyframes, by index among its video frames (cheap `Bytes` clones).
    keyframes: Vec<(usize, nvrkit_media::Frame)>,
    state: Mutex<State>,
    /// Decodes started, over the handle's life (the tests count them).
    decodes: std::sync::atomic::AtomicU64,
}

/// The snapshots of one clip: a cheap handle (clones share the cache), for the ONVIF snapshot
/// URL and for alarm mails. Two handles are equal when they share the cache.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    inner: Arc<Inner>,
}

impl PartialEq for Snapshotter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Snapshotter {
    /// Snapshots of `clip` as its pacer fills `ring` (the clip's ring in a
    /// [`crate::server::Server`], [`crate::server::Server::ring`]). `sidecar` (see
    /// [`load_sidecar`]) is the picture of an H.265 clip; an H.264 clip's keyframes are decoded
    /// and a sidecar is not used.
    pub fn new(clip: &Clip, ring: Ring, sidecar: Option<Snapshot>) -> Snapshotter {
        let video = clip.master();
        let source = match clip.tracks().get(video).map(|t| &t.params) {
            Some(CodecParams::H264(p)) => Source::H264(p.clone()),
            Some(CodecParams::H265(_)) => match sidecar {
                Some(s) => Source::Sidecar(s),
                None => Source::Refused(SnapshotError::NeedsSidecar {
                    clip: clip.name().to_owned(),
                    sidecar: format!("{}.jpg", clip.name()),
                }),
            },
            _ => Source::Refused(SnapshotError::NoVideo {
                clip: clip.name().to_owned(),
            }),
        };
        let keyframes = clip
            .frames(video)
            .iter()
            .enumerate()
            .filter(|(_, f)| f.keyframe)
            .map(|(i, f)| (i, f.clone()))
            .collect();
        Snapshotter {
            inner: Arc::new(Inner {
                clip: clip.name().to_owned(),
                video,
                source,
                ring,
                keyframes,
                state: Mutex::new(State::default()),
                decodes: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The clip's name.
    pub fn clip(&self) -> &str {
        &self.inner.clip
    }

    /// Whether snapshots can be served at all (an H.264 clip, or H.265 with a sidecar); when
    /// not, the reason.
    pub fn unavailable(&self) -> Option<&SnapshotError> {
        match &self.inner.source {
            Source::Refused(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the pictures are the sidecar JPEG (an H.265 clip) rather than decoded keyframes.
    pub fn sidecar(&self) -> bool {
        matches!(self.inner.source, Source::Sidecar(_))
    }

    /// The picture of the clip's video frame `index` (its index among the clip's video frames,
    /// one loop), which must be a keyframe: what the loop shows at that frame every lap. An
    /// alarm mail carries it (the keyframe at or before the alarm frame), not the newest
    /// keyframe, which a late mail would take from after the alarm. Decoded once on the
    /// blocking pool and kept (see [`MAX_KEYFRAMES_KEPT`]); the sidecar JPEG for an H.265 clip
    /// with one. Its [`Snapshot::tag`] is the frame's PTS in the clip.
    pub async fn keyframe(&self, index: usize) -> Result<Snapshot, SnapshotError> {
        let inner = &self.inner;
        let params = match &inner.source {
            Source::H264(p) => p.clone(),
            Source::Sidecar(s) => return Ok(s.clone()),
            Source::Refused(e) => return Err(e.clone()),
        };
        {
            let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, r)) = st.keyframes.iter().find(|(i, _)| *i == index) {
                return r.clone();
            }
        }
        let Some((_, frame)) = inner.keyframes.iter().find(|(i, _)| *i == index) else {
            return Err(SnapshotError::Decode {
                clip: inner.clip.clone(),
                pts: -1,
                reason: format!("video frame {index} of the clip is not a keyframe"),
            });
        };
        let (job, frame) = (Arc::clone(inner), frame.clone());
        inner
            .decodes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let r = decode(&job.clip, &params, &frame);
            let mut st = job.state.lock().unwrap_or_else(|e| e.into_inner());
            if !st.keyframes.iter().any(|(i, _)| *i == index) {
                if st.keyframes.len() >= MAX_KEYFRAMES_KEPT {
                    drop(st.keyframes.remove(0));
                }
                st.keyframes.push((index, r.clone()));
            }
            r
        })
        .await
        .map_err(|_| SnapshotError::Decode {
            clip: inner.clip.clone(),
            pts: -1,
            reason: "the runtime shut down during the decode".into(),
        })?
    }

    /// The JPEG of the latest keyframe (see [`Snapshotter::latest`]).
    pub async fn latest_jpeg(&self) -> Result<Bytes, SnapshotError> {
        self.latest().await.map(|s| s.jpeg)
    }

    /// The snapshot of the newest keyframe in the ring: the cached one when it is of that
    /// keyframe, else one decode on the blocking pool (shared with every caller that asks
    /// while it runs). A caller that gives up (drops the future) does not stop the decode, and
    /// the next caller gets its result.
    pub async fn latest(&self) -> Result<Snapshot, SnapshotError> {
        let inner = &self.inner;
        let params = match &inner.source {
            Source::H264(p) => p,
            Source::Sidecar(s) => return Ok(s.clone()),
            Source::Refused(e) => return Err(e.clone()),
        };
        let no_keyframe = || SnapshotError::NoKeyframe {
            clip: inner.clip.clone(),
        };
        // A reader at the newest keyframe reads it first; anything else means there is none
        // yet.
        let key = match inner.ring.reader(Start::NewestKeyframe).try_recv() {
            Ok(f) if f.stream == inner.video && f.keyframe => f,
            Ok(_) | Err(_) => return Err(no_keyframe()),
        };
        let key_pts = key.pts;
        let mut pending = {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = &st.cached
                && c.tag == key.pts
            {
                return Ok(c.clone());
            }
            if let Some((pts, e)) = &st.failed
                && *pts == key.pts
            {
                return Err(e.clone());
            }
            match &st.pending {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    st.pending = Some(rx.clone());
                    let job = self.inner.clone();
                    let params = params.clone();
                    job.decodes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::spawn_blocking(move || {
                        let result = decode(&job.clip, &params, &key);
                        let mut st = job.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.pending = None;
                        match &result {
                            Ok(s) => st.cached = Some(s.clone()),
                            Err(e) => st.failed = Some((key.pts, e.clone())),
                        }
                        drop(st);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        // The sender always sends before it is dropped (the decode's panics are caught), so
        // this only fails if the runtime is shutting down.
        let result = pending
            .wait_for(Option::is_some)
            .await
            .map_err(|_| SnapshotError::Decode {
                clip: inner.clip.clone(),
                pts: key_pts,
                reason: "the runtime shut down during the decode".into(),
            })?
            .clone();
        result.unwrap_or_else(|| Err(no_keyframe()))
    }
}

/// Decodes keyframe `key` of `clip` to a [`Snapshot`] tagged with its PTS; a decoder panic is
/// an error. Blocking: run it on the blocking pool.
fn decode(
    clip: &str,
    params: &VideoParams,
    key: &nvrkit_media::Frame,
) -> Result<Snapshot, SnapshotError> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h264_to_jpeg(params, &key.data, QUALITY)
    }))
    .unwrap_or_else(|_| Err(ConvertError::Decode("the decoder panicked".into())));
    match result {
        Ok((jpeg, width, height)) => Ok(Snapshot {
            jpeg,
            width,
            height,
            tag: key.pts,
        }),
        Err(ConvertError::Decode(reason)) => Err(SnapshotError::Decode {
            clip: clip.to_owned(),
            pts: key.pts,
            reason,
        }),
        Err(ConvertError::Encode(reason)) => Err(SnapshotError::Encode {
            clip: clip.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;

    fn sample() -> Arc<Clip> {
        let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        Clip::load("sample", &demux).unwrap()
    }

    #[test]
    fn decodes_a_keyframe_to_a_jpeg_of_the_clip_size() {
        let clip = sample();
        let v = clip.master();
        let CodecParams::H264(params) = &clip.tracks()[v].params else {
            panic!("the sample is H.264");
        };
        let key = clip.frames(v).iter().find(|f| f.keyframe).unwrap();
        let (jpeg, w, h) = h264_to_jpeg(params, &key.data, QUALITY).unwrap();
        assert_eq!((w, h), (params.width, params.height));
        assert_eq!((w, h), (640, 360));
        assert_eq!(jpeg_size(&jpeg), Some((640, 360)));
        assert_eq!(&jpeg[jpeg.len() - 2..], [0xFF, 0xD9]);
        // testsrc2 is colourful: a JPEG of a real picture, not of a flat grey frame.
        assert!(jpeg.len() > 10_000, "{} bytes", jpeg.len());
    }

    #[test]
    fn a_non_keyframe_alone_or_garbage_is_an_error_not_a_panic() {
        let clip = sample();
        let v = clip.master();
        let CodecParams::H264(params) = &clip.tracks()[v].params else {
            panic!("the sample is H.264");
        };
        assert!(h264_to_jpeg(params, b"\x00\x00\x00\x05\x65\x88\x84\x00", QUALITY).is_err());
        assert!(h264_to_jpeg(params, b"\x00\x00\x00\x09\x65", QUALITY).is_err());
    }

    #[test]
    fn jpeg_size_reads_sof_and_refuses_the_rest() {
        assert_eq!(jpeg_size(b""), None);
        assert_eq!(jpeg_size(b"\xff\xd8"), None);
        assert_eq!(jpeg_size(b"\x89PNG"), None);
        // SOI, APP0 of length 4, SOF0 with height 2, width 3.
        let j =
            b"\xff\xd8\xff\xe0\x00\x04\x00\x00\xff\xc0\x00\x0b\x08\x00\x02\x00\x03\x01\x01\x11\x00";
        assert_eq!(jpeg_size(j), Some((3, 2)));
        // A segment length pointing past the end.
        assert_eq!(jpeg_size(b"\xff\xd8\xff\xe0\xff\xff"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_decode_per_keyframe_shared_by_concurrent_callers() {
        let clip = sample();
        let v = clip.master();
        let (mut writer, ring) =
            nvrkit_ring::ring(nvrkit_ring::Config::new().max_frames(64).video_stream(v)).unwrap();
        let s = Snapshotter::new(&clip, ring, None);
        assert!(matches!(
            s.latest().await,
            Err(SnapshotError::NoKeyframe { .. })
        ));
        let mut key = clip.frames(v).iter().find(|f| f.keyframe).unwrap().clone();
        key.wall = Some(nvrkit_media::WallTime::now());
        writer.push(key.clone()).unwrap();
        let all = futures_join(&s, 8).await;
        let first = all[0].clone();
        assert!(all.iter().all(|j| j.jpeg.as_ptr() == first.jpeg.as_ptr()));
        assert_eq!(first.tag, key.pts);
        // The same keyframe again: the cached JPEG, not a new one.
        assert_eq!(s.latest().await.unwrap().jpeg.as_ptr(), first.jpeg.as_ptr());
        // A newer keyframe: a new picture.
        let mut next = key.clone();
        next.pts += 1_000_000;
        next.dts += 1_000_000;
        writer.push(next.clone()).unwrap();
        let second = s.latest().await.unwrap();
        assert_eq!(second.tag, next.pts);
        assert_ne!(second.jpeg.as_ptr(), first.jpeg.as_ptr());
    }

    /// An alarm's keyframe is the clip's frame of that index, whatever the ring has paced since:
    /// the JPEG of frame 25 even when the ring's newest keyframe is a later one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_alarm_keyframe_is_that_frame_not_the_newest() {
        let clip = sample();
        let v = clip.master();
        let CodecParams::H264(params) = &clip.tracks()[v].params else {
            panic!("the sample is H.264");
        };
        let (mut writer, ring) =
            nvrkit_ring::ring(nvrkit_ring::Config::new().max_frames(256).video_stream(v)).unwrap();
        let s = Snapshotter::new(&clip, ring, None);
        // The pacer is past the alarm: frames up to 60 (keyframes 0, 25, 50) are in the ring.
        for f in &clip.frames(v)[..=60] {
            let mut f = f.clone();
            f.wall = Some(nvrkit_media::WallTime::now());
            writer.push(f).unwrap();
        }
        let newest = s.latest().await.unwrap();
        assert_eq!(newest.tag, clip.frames(v)[50].pts);
        let at25 = s.keyframe(25).await.unwrap();
        let (want, _, _) = h264_to_jpeg(params, &clip.frames(v)[25].data, QUALITY).unwrap();
        assert_eq!(at25.jpeg, want, "the picture of frame 25");
        assert_eq!(at25.tag, clip.frames(v)[25].pts);
        assert_ne!(at25.jpeg, newest.jpeg, "not the newest keyframe's");
        // Kept: asked again, no new decode.
        let decodes = s.inner.decodes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            s.keyframe(25).await.unwrap().jpeg.as_ptr(),
            at25.jpeg.as_ptr()
        );
        assert_eq!(
            s.inner.decodes.load(std::sync::atomic::Ordering::Relaxed),
            decodes
        );
        // A frame that is not a keyframe is an error, not a broken picture.
        assert!(matches!(
            s.keyframe(26).await,
            Err(SnapshotError::Decode { .. })
        ));
    }

    /// A keyframe that does not decode is decoded once: asked again, its error is answered
    /// from the cache (each request ran a new decode before).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_keyframe_that_fails_is_decoded_once() {
        let clip = sample();
        let v = clip.master();
        let (mut writer, ring) =
            nvrkit_ring::ring(nvrkit_ring::Config::new().max_frames(64).video_stream(v)).unwrap();
        let s = Snapshotter::new(&clip, ring, None);
        let mut key = clip.frames(v).iter().find(|f| f.keyframe).unwrap().clone();
        key.wall = Some(nvrkit_media::WallTime::now());
        key.data = bytes::Bytes::from_static(&[0, 0, 0, 4, 0x65, 0xff, 0xff, 0xff]);
        writer.push(key).unwrap();
        for _ in 0..3 {
            assert!(matches!(
                s.latest().await,
                Err(SnapshotError::Decode { .. })
            ));
        }
        let decodes = s.inner.decodes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(decodes, 1);
    }

    async fn futures_join(s: &Snapshotter, n: usize) -> Vec<Snapshot> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.latest().await.unwrap() })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[test]
    fn h265_without_a_sidecar_is_refused_with_the_reason() {
        let demux = Demuxer::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/h265_hvc1.mp4"
        ))
        .unwrap();
        let clip = Clip::load("hevc", &demux).unwrap();
        let (_w, ring) = nvrkit_ring::ring(nvrkit_ring::Config::new().max_frames(8)).unwrap();
        let s = Snapshotter::new(&clip, ring.clone(), None);
        let e = s.unavailable().cloned().unwrap();
        assert!(matches!(e, SnapshotError::NeedsSidecar { .. }));
        assert!(e.to_string().contains("hevc.jpg"), "{e}");
        let side = Snapshot {
            jpeg: Bytes::from_static(b"\xff\xd8"),
            width: 1,
            height: 1,
            tag: 0,
        };
        let s = Snapshotter::new(&clip, ring, Some(side.clone()));
        assert!(s.unavailable().is_none());
    }
}

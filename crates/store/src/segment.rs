//! Describing a segment file from its contents: what recovery writes into the sidecar of a
//! segment a crash left open, and what a reader shows for a segment still being written.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use nvrkit_media::{Demuxer, TrackInfo, WallTime};

use crate::error::{Error, Result};
use crate::fragments::Layout;
use crate::meta::{FORMAT_VERSION, SegmentMeta, TrackMeta};

/// The stream that anchors wall time: the first video stream, else the first stream.
pub(crate) fn anchor_stream(tracks: &[TrackInfo]) -> usize {
    tracks.iter().position(|t| t.params.is_video()).unwrap_or(0)
}

pub(crate) fn track_meta(t: &TrackInfo, frames: u64) -> TrackMeta {
    let v = t.params.video();
    TrackMeta {
        codec: t.params.rfc6381(),
        timescale: t.timescale,
        width: v.map_or(0, |v| v.width),
        height: v.map_or(0, |v| v.height),
        frames,
    }
}

/// BLAKE3 of a whole file, hex.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().to_hex().to_string(), n))
}

/// Builds a sidecar for the segment at `path` named by `start`, from its frames. `layout` is
/// the file's box structure; `blake3` is filled in by the caller (empty here).
pub(crate) fn describe(
    path: &Path,
    start: WallTime,
    demux: &Demuxer,
    layout: &Layout,
) -> Result<SegmentMeta> {
    let tracks = demux.tracks();
    let anchor = anchor_stream(tracks);
    let first = demux
        .samples(anchor)
        .first()
        .ok_or_else(|| Error::corrupt(path, "no frames in the anchor stream"))?;
    let mut meta = SegmentMeta {
        version: FORMAT_VERSION,
        start_us: start.as_micros(),
        end_us: start.as_micros(),
        bytes: layout.complete_len,
        blake3: String::new(),
        tracks: tracks
            .iter()
            .map(|t| track_meta(t, demux.samples(t.stream).len() as u64))
            .collect(),
        anchor_stream: anchor as u32,
        anchor_pts: first.pts,
        discontinuity: false,
        recovered: false,
        fragments: Vec::new(),
    };
    let mut end = meta.start_us;
    for t in tracks {
        for s in demux.samples(t.stream) {
            end = end.max(meta.wall_of(s.pts + i64::from(s.duration), t.timescale));
        }
    }
    meta.end_us = end;
    let anchor_samples = demux.samples(anchor);
    let ts = tracks[anchor].timescale;
    let mut k = 0;
    for frag in &layout.fragments {
        while k < anchor_samples.len() && anchor_samples[k].offset < frag.start {
            k += 1;
        }
        if let Some(s) = anchor_samples.get(k).filter(|s| s.offset < frag.end) {
            let w = meta
                .wall_of(s.pts, ts)
                .max(meta.fragments.last().map_or(i64::MIN, |f| f.1));
            meta.fragments.push((frag.start, w));
        }
    }
    Ok(meta)
}

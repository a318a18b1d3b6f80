//! MP4 demuxer: progressive and fragmented ISO BMFF files, timestamps exactly as ffprobe reports
//! them.
//!
//! Box decoding is done by `mp4-atom`; what this module adds is the interpretation that the box
//! parsers leave to the caller, and that decides whether timestamps are right:
//!
//! - one flat sample table per track, built once at open in O(samples) from `stts`, `ctts`,
//!   `stsc`, `stsz`, `stco`/`co64` and `stss` (or from `moof`/`traf`/`trun` with the `tfhd` and
//!   `trex` defaults), with every index checked so no later read can panic;
//! - composition offsets, version 0 and 1 (negative offsets shift DTS as ffmpeg does);
//! - edit lists applied the way ffmpeg's `mov_fix_index` applies them (libavformat/mov.c):
//!   frames before the edit are kept but flagged `discard` with their timestamps rewritten to
//!   run up to the edit start (so a primed AAC packet has PTS −1024), and for video the DTS are
//!   shifted so the first presented PTS is zero (so a B-frame file starts at DTS −2 frames);
//! - fragmented files: `tfdt` decode times, shifted by the first edit (as ffmpeg does for
//!   fragments), and every complete fragment of a truncated file;
//! - video payloads rewritten to 4-byte NAL lengths whatever the `avcC`/`hvcC` length size, and
//!   parameter sets taken from the first keyframe for `avc3`/`hev1` entries that carry none;
//! - QuickTime `.mov` G.711 (`ulaw`/`alaw` sound descriptions, versions 0, 1 and 2), whose
//!   tables list one entry per sample: regrouped into 20 ms frames (160 bytes at 8 kHz mono),
//!   the last one shorter, each frame's payload exactly as long as its duration.

use std::fs::File;
use std::path::Path;

use bytes::Bytes;
use mp4_atom::{Codec, Decode, Mvex, Mvhd, Trak};

use crate::codec::{
    AacParams, CodecParams, G711Law, G711Params, SkippedTrack, TrackInfo, VideoParams,
};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::nal::{self, VideoCodec};

/// Timing and position of one sample, as the demuxer resolved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// Byte offset of the sample data in the file (of its first byte, for a G.711 frame that
    /// spans two chunks).
    pub offset: u64,
    /// Size of the sample data in bytes (before NAL length normalisation).
    pub size: u32,
    /// Decode time in the track timescale.
    pub dts: i64,
    /// Presentation time in the track timescale.
    pub pts: i64,
    /// Duration in the track timescale.
    pub duration: u32,
    /// Random-access point.
    pub keyframe: bool,
    /// Outside the edit list: decode, do not present.
    pub discard: bool,
}

/// Where the file's bytes come from.
#[derive(Debug)]
enum Source {
    Memory(Bytes),
    File(File),
}

impl Source {
    fn read(&self, name: &str, offset: u64, size: usize) -> Result<Bytes> {
        match self {
            Source::Memory(b) => {
                let start = usize::try_from(offset).ok();
                match start.and_then(|s| Some(s..s.checked_add(size)?)) {
                    Some(r) if r.end <= b.len() => Ok(b.slice(r)),
                    _ => Err(Error::Truncated {
                        name: name.to_owned(),
                        what: format!("{size} bytes at offset {offset} are past the end"),
                    }),
                }
            }
            Source::File(f) => {
                let mut buf = vec![0u8; size];
                read_exact_at(f, &mut buf, offset).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        Error::Truncated {
                            name: name.to_owned(),
                            what: format!("{size} bytes at offset {offset} are past the end"),
                        }
                    } else {
                        Error::Io {
                            path: name.into(),
                            source: e,
                        }
                    }
                })?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(f: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// An open MP4 file: its tracks, and random access to every frame.
///
/// Opening reads only the box headers, `moov` and the `moof`s; frame data is read on demand
/// (from the file with positioned reads, or sliced without copying from an in-memory buffer).
/// `Demuxer` is `Sync`: frames may be read from several threads at once.
#[derive(Debug)]
pub struct Demuxer {
    name: String,
    source: Source,
    tracks: Vec<TrackInfo>,
    skipped: Vec<SkippedTrack>,
    samples: Vec<Vec<SampleInfo>>,
    /// Per stream: NAL length size of the source (0 for audio).
    length_size: Vec<u8>,
    /// Per stream: the chunks of a G.711 track, whose frames may span two (empty otherwise).
    g711_runs: Vec<Chunks>,
    /// Every sample of every stream in decode order: (stream, index).
    order: Vec<(u32, u32)>,
    fragmented: bool,
    dropped: usize,
}

/// A sample before edit lists: raw decode time from the tables.
#[derive(Debug, Clone, Copy)]
struct RawSample {
    offset: u64,
    size: u32,
    dts: i64,
    cts: i64,
    duration: u32,
    keyframe: bool,
}

/// An edit, in the track timescale. `media_time == -1` is an empty edit (a delay).
#[derive(Debug, Clone, Copy)]
struct Edit {
    media_time: i64,
    duration: i64,
}

#[derive(Debug)]
struct TrackBuilder {
    track_id: u32,
    timescale: u32,
    params: Option<CodecParams>,
    sample_entry: String,
    length_size: u8,
    is_audio: bool,
    language: Option<String>,
    edits: Vec<Edit>,
    /// The track has a `ctts` box (ffmpeg then takes durations from the frame rate, else from
    /// the next decode time).
    has_ctts: bool,
    /// `mdhd` duration in the track timescale.
    media_duration: i64,
    raw: Vec<RawSample>,
    /// Decode time after the last sample so far (where the next fragment continues).
    next_dts: i64,
    trex: Option<mp4_atom::Trex>,
}

/// Offsets and sizes of the top-level boxes that matter.
#[derive(Debug, Default)]
struct TopLevel {
    moov: Option<(u64, Bytes)>,
    moofs: Vec<(u64, Bytes)>,
}

impl Demuxer {
    /// Opens an MP4 file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Self::with_source(path.display().to_string(), Source::File(file), len)
    }

    /// Opens an MP4 file held in memory. `name` is used in error messages.
    pub fn from_bytes(name: impl Into<String>, data: Bytes) -> Result<Self> {
        let len = data.len() as u64;
        Self::with_source(name.into(), Source::Memory(data), len)
    }

    fn with_source(name: String, source: Source, len: u64) -> Result<Self> {
        let top = scan_top_level(&name, &source, len)?;
        let (moov_offset, moov) = top.moov.ok_or_else(|| {
            if top.moofs.is_empty() && len < 1024 {
                Error::Malformed {
                    name: name.clone(),
                    path: "/".into(),
                    offset: 0,
                    what: "no moov box: not an MP4 file, or a truncated one".into(),
                }
            } else {
                Error::Truncated {
                    name: name.clone(),
                    what: "no moov box (the file was cut before its index was written?)".into(),
                }
            }
        })?;
        let malformed = |path: &str, offset: u64, what: String| Error::Malformed {
            name: name.clone(),
            path: path.to_owned(),
            offset,
            what,
        };

        // Decode moov's children one by one, so one undecodable track is skipped rather than
        // failing the whole file.
        let mut mvhd: Option<Mvhd> = None;
        let mut mvex: Option<Mvex> = None;
        let mut traks: Vec<(u64, std::result::Result<Trak, String>)> = Vec::new();
        for child in children(&moov[8..]).map_err(|e| malformed("moov", moov_offset, e))? {
            let (rel, kind, bytes) = child;
            let at = moov_offset + 8 + rel as u64;
            match &kind {
                b"mvhd" => {
                    mvhd = Some(
                        Mvhd::decode(&mut &bytes[..])
                            .map_err(|e| malformed("moov/mvhd", at, e.to_string()))?,
                    )
                }
                b"mvex" => {
                    mvex = Some(
                        Mvex::decode(&mut &bytes[..])
                            .map_err(|e| malformed("moov/mvex", at, e.to_string()))?,
                    )
                }
                b"trak" => {
                    traks.push((at, Trak::decode(&mut &bytes[..]).map_err(|e| e.to_string())))
                }
                _ => {}
            }
        }
        let movie_timescale = mvhd
            .ok_or_else(|| malformed("moov", moov_offset, "no mvhd box".into()))?
            .timescale;
        let fragmented = mvex.is_some();

        let mut builders: Vec<TrackBuilder> = Vec::new();
        let mut skipped = Vec::new();
        for (i, (at, trak)) in traks.into_iter().enumerate() {
            let path = format!("moov/trak[{i}]");
            let trak = match trak {
                Ok(t) => t,
                Err(e) => {
                    skipped.push(SkippedTrack {
                        track_id: 0,
                        handler: String::new(),
                        codec: String::new(),
                        reason: format!("{path} at offset {at} cannot be decoded: {e}"),
                    });
                    continue;
                }
            };
            match track_builder(&trak, movie_timescale, fragmented, len) {
                Ok(Ok(mut b)) => {
                    b.trex = mvex
                        .as_ref()
                        .and_then(|m| m.trex.iter().find(|t| t.track_id == b.track_id).cloned());
                    builders.push(b);
                }
                Ok(Err(skip)) => skipped.push(skip),
                Err(what) => return Err(malformed(&path, at, what)),
            }
        }

        for (offset, moof) in &top.moofs {
            add_fragment(&mut builders, *offset, moof, len)
                .map_err(|what| malformed("moof", *offset, what))?;
        }

        let mut tracks = Vec::new();
        let mut samples = Vec::new();
        let mut length_size = Vec::new();
        let mut g711_runs = Vec::new();
        let mut dropped = 0;
        for mut b in builders {
            let mut runs = Runs::new();
            if let Some(CodecParams::G711(g)) = &b.params {
                (b.raw, runs) = regroup_g711(&b.raw, g, len);
            }
            let mut s = if fragmented {
                apply_edits_fragmented(&b)
            } else {
                apply_edits(&b)
            };
            let before = s.len();
            // (G.711 frames may span chunks; regroup_g711 dropped what lies past the end.)
            s.retain(|x| !runs.is_empty() || x.offset.saturating_add(u64::from(x.size)) <= len);
            dropped += before - s.len();
            if s.is_empty() {
                skipped.push(SkippedTrack {
                    track_id: b.track_id,
                    handler: if b.is_audio { "soun" } else { "vide" }.into(),
                    codec: b.sample_entry.clone(),
                    reason: "no samples".into(),
                });
                continue;
            }
            let stream = tracks.len();
            let params = match b.params {
                Some(p) => p,
                None => match in_band_parameters(&name, &source, &b, &s)? {
                    Some(p) => p,
                    None => {
                        skipped.push(SkippedTrack {
                            track_id: b.track_id,
                            handler: "vide".into(),
                            codec: b.sample_entry.clone(),
                            reason: "no parameter sets in the sample entry or the first keyframe"
                                .into(),
                        });
                        continue;
                    }
                },
            };
            let presented = s.iter().filter(|x| !x.discard);
            let start = presented.clone().map(|x| x.pts).min().unwrap_or(0);
            let end = presented
                .map(|x| x.pts.saturating_add(i64::from(x.duration)))
                .max()
                .unwrap_or(0);
            tracks.push(TrackInfo {
                stream,
                track_id: b.track_id,
                timescale: b.timescale,
                params,
                sample_entry: b.sample_entry,
                frames: s.len(),
                duration: end.saturating_sub(start),
                language: b.language,
            });
            length_size.push(b.length_size);
            g711_runs.push(Chunks::new(runs));
            samples.push(s);
        }
        if tracks.is_empty() {
            let list: Vec<String> = skipped
                .iter()
                .map(|s| {
                    format!(
                        "track {} ({} {}): {}",
                        s.track_id, s.handler, s.codec, s.reason
                    )
                })
                .collect();
            return Err(Error::Unsupported {
                name,
                what: format!(
                    "no H.264, H.265, AAC or G.711 track with samples{}{}",
                    if list.is_empty() { "" } else { "; " },
                    list.join("; ")
                ),
            });
        }
        let order = decode_order(&tracks, &samples);
        Ok(Demuxer {
            name,
            source,
            tracks,
            skipped,
            samples,
            length_size,
            g711_runs,
            order,
            fragmented,
            dropped,
        })
    }

    /// The name given at open (the path, or the label of an in-memory buffer).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The streams nvrkit reads, in file order; `Frame::stream` indexes this slice.
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// Tracks present in the file but not read, with the reason.
    pub fn skipped_tracks(&self) -> &[SkippedTrack] {
        &self.skipped
    }

    /// True for a fragmented file (`moov/mvex`, samples in `moof`s).
    pub fn is_fragmented(&self) -> bool {
        self.fragmented
    }

    /// Samples left out because their data lies past the end of a truncated file.
    pub fn dropped_samples(&self) -> usize {
        self.dropped
    }

    /// The resolved sample table of `stream`, in decode order (empty for an unknown stream).
    pub fn samples(&self, stream: usize) -> &[SampleInfo] {
        self.samples.get(stream).map_or(&[], Vec::as_slice)
    }

    /// Reads frame `index` of `stream` (decode order).
    pub fn frame(&self, stream: usize, index: usize) -> Result<Frame> {
        let s = self
            .samples
            .get(stream)
            .and_then(|v| v.get(index))
            .ok_or_else(|| Error::Malformed {
                name: self.name.clone(),
                path: format!("stream {stream}"),
                offset: 0,
                what: format!("no sample {index}"),
            })?;
        let track = &self.tracks[stream];
        let chunks = &self.g711_runs[stream];
        let mut data = if chunks.runs.is_empty() {
            self.source.read(&self.name, s.offset, s.size as usize)?
        } else {
            chunks.read(&self.name, &self.source, s.offset, s.size as usize)?
        };
        if track.params.is_video() {
            data = nal::to_four_byte_lengths(data, self.length_size[stream]).map_err(|e| {
                Error::Malformed {
                    name: self.name.clone(),
                    path: format!("stream {stream} sample {index}"),
                    offset: s.offset,
                    what: e.to_string(),
                }
            })?;
        } else if let CodecParams::G711(g) = &track.params {
            // An edit list may end inside the last 20 ms frame: its duration is cut there, and
            // so is its payload, since a receiver plays every byte it gets (an RTP packet cannot
            // say "the last 4 ms are not meant").
            let samples =
                crate::time::rescale(i64::from(s.duration), track.timescale, g.sample_rate);
            let want = u64::try_from(samples)
                .unwrap_or(0)
                .saturating_mul(u64::from(g.bytes_per_sample()));
            if want < data.len() as u64 {
                data.truncate(want as usize);
            }
        }
        Ok(Frame {
            stream,
            timescale: track.timescale,
            dts: s.dts,
            pts: s.pts,
            duration: s.duration,
            wall: None,
            keyframe: s.keyframe,
            discard: s.discard,
            discontinuity: false,
            data,
        })
    }

    /// Every frame of every stream, interleaved in decode-time order (ties: lower stream first).
    pub fn frames(&self) -> impl Iterator<Item = Result<Frame>> + '_ {
        self.order
            .iter()
            .map(|&(s, i)| self.frame(s as usize, i as usize))
    }

    /// Every frame of one stream in decode order.
    pub fn stream_frames(&self, stream: usize) -> impl Iterator<Item = Result<Frame>> + '_ {
        (0..self.samples(stream).len()).map(move |i| self.frame(stream, i))
    }
}

/// Walks the top-level boxes: remembers `moov` and every complete `moof`, skips the rest.
fn scan_top_level(name: &str, source: &Source, len: u64) -> Result<TopLevel> {
    let mut top = TopLevel::default();
    let mut pos = 0u64;
    while pos < len {
        let avail = (len - pos).min(16) as usize;
        if avail < 8 {
            break; // trailing bytes too short for a box header: ignore
        }
        let head = source.read(name, pos, avail)?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        let (size, header) = match size32 {
            0 => (len - pos, 8),
            1 if avail >= 16 => (
                u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")),
                16,
            ),
            1 => break,
            n => (u64::from(n), 8),
        };
        if size < header {
            if top.moov.is_some() {
                break; // garbage after a complete file: keep what we have
            }
            return Err(Error::Malformed {
                name: name.to_owned(),
                path: String::from_utf8_lossy(&kind).into_owned(),
                offset: pos,
                what: format!("box size {size} is smaller than its header"),
            });
        }
        let complete = size <= len - pos;
        match &kind {
            b"moov" | b"moof" if complete => {
                let bytes = source.read(name, pos, usize::try_from(size).unwrap_or(usize::MAX))?;
                let bytes = if header == 16 {
                    // Re-frame with a 32-bit header so the child walk sees a uniform layout.
                    let mut v = Vec::with_capacity(bytes.len() - 8);
                    v.extend_from_slice(&((size - 8) as u32).to_be_bytes());
                    v.extend_from_slice(&kind);
                    v.extend_from_slice(&bytes[16..]);
                    Bytes::from(v)
                } else {
                    bytes
                };
                if &kind == b"moov" {
                    if top.moov.is_none() {
                        top.moov = Some((pos, bytes));
                    }
                } else {
                    top.moofs.push((pos, bytes));
                }
            }
            b"moov" => {
                return Err(Error::Truncated {
                    name: name.to_owned(),
                    what: format!(
                        "moov box at offset {pos} claims {size} bytes, only {} remain",
                        len - pos
                    ),
                });
            }
            _ if !complete => break, // a cut mdat or moof: keep every complete fragment
            _ => {}
        }
        pos += size;
    }
    Ok(top)
}

/// The child boxes of a container body: (offset in body, kind, whole box bytes).
type Child<'a> = (usize, [u8; 4], &'a [u8]);

fn children(body: &[u8]) -> std::result::Result<Vec<Child<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= body.len() {
        let size = u32::from_be_bytes(body[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let kind: [u8; 4] = body[pos + 4..pos + 8].try_into().expect("4 bytes");
        let size = match size {
            0 => body.len() - pos,
            1 => {
                let large = body
                    .get(pos + 8..pos + 16)
                    .ok_or("truncated 64-bit box size")?;
                usize::try_from(u64::from_be_bytes(large.try_into().expect("8 bytes")))
                    .map_err(|_| "box too large")?
            }
            n => n,
        };
        if size < 8 || size > body.len() - pos {
            return Err(format!(
                "child box {} at +{pos} has size {size}, outside its parent",
                String::from_utf8_lossy(&kind)
            ));
        }
        out.push((pos, kind, &body[pos..pos + size]));
        pos += size;
    }
    Ok(out)
}

/// Reads a track's codec and sample table. `Ok(Err(skip))` for a track we do not read; `Err`
/// for a malformed track.
fn track_builder(
    trak: &Trak,
    movie_timescale: u32,
    fragmented: bool,
    file_len: u64,
) -> std::result::Result<std::result::Result<TrackBuilder, SkippedTrack>, String> {
    let track_id = trak.tkhd.track_id;
    let handler = trak.mdia.hdlr.handler.to_string();
    let stbl = &trak.mdia.minf.stbl;
    let codec = stbl.stsd.codecs.first();
    let fourcc = codec.map_or_else(|| "none".to_owned(), codec_fourcc);
    let skip = |reason: &str| {
        Ok(Err(SkippedTrack {
            track_id,
            handler: handler.clone(),
            codec: fourcc.clone(),
            reason: reason.to_owned(),
        }))
    };
    let timescale = trak.mdia.mdhd.timescale;
    if timescale == 0 {
        return Err("mdhd timescale is 0".into());
    }
    let mut length_size = 0;
    let mut is_audio = false;
    let params = match codec {
        Some(Codec::Avc1(c)) => {
            length_size = c.avcc.length_size;
            Some(h264_params(&c.avcc)?)
        }
        Some(Codec::Avc3(c)) => {
            length_size = c.avcc.length_size;
            if c.avcc.sequence_parameter_sets.is_empty() {
                None
            } else {
                Some(h264_params(&c.avcc)?)
            }
        }
        Some(Codec::Hvc1(c)) => {
            length_size = c.hvcc.length_size_minus_one + 1;
            Some(h265_params(&c.hvcc)?)
        }
        Some(Codec::Hev1(c)) => {
            length_size = c.hvcc.length_size_minus_one + 1;
            let (_, sps, _) = hvcc_sets(&c.hvcc);
            if sps.is_empty() {
                None
            } else {
                Some(h265_params(&c.hvcc)?)
            }
        }
        Some(Codec::Mp4a(c)) => {
            is_audio = true;
            let dc = &c.esds.es_desc.dec_config;
            // 0x40: MPEG-4 Audio; 0x66..=0x68: MPEG-2 AAC profiles (ISO/IEC 14496-1 Table 5).
            if !matches!(dc.object_type_indication, 0x40 | 0x66..=0x68) {
                return skip(&format!(
                    "mp4a object type 0x{:02x} is not AAC",
                    dc.object_type_indication
                ));
            }
            let Some(ds) = dc.dec_specific.as_ref().filter(|d| !d.raw.is_empty()) else {
                return Err("AAC esds has no AudioSpecificConfig".into());
            };
            Some(CodecParams::Aac(
                AacParams::parse(Bytes::from(ds.raw.clone())).map_err(|e| e.to_string())?,
            ))
        }
        Some(Codec::Unknown(kind, body)) if g711_law(*kind).is_some() => {
            is_audio = true;
            let law = g711_law(*kind).expect("checked by the guard");
            match g711_params(law, body, timescale) {
                Ok(p) => Some(CodecParams::G711(p)),
                Err(e) => return skip(&e),
            }
        }
        Some(_) | None => {
            let what = match handler.as_str() {
                "vide" => "video codec not supported (H.264 and H.265 are)",
                "soun" => "audio codec not supported (AAC and G.711 are)",
                _ => "not an audio or video track",
            };
            return skip(what);
        }
    };
    if !matches!(length_size, 0..=4) || (!is_audio && length_size == 0) {
        return Err(format!("NAL length size {length_size} is invalid"));
    }
    if !is_audio && length_size == 3 {
        // Allowed by the spec for avcC only in theory; every length size 1, 2 or 4 is handled.
    }

    let edits = match trak.edts.as_ref().and_then(|e| e.elst.as_ref()) {
        Some(elst) => elst
            .entries
            .iter()
            .map(|e| {
                // Bounded so that sums of edits and timestamps cannot overflow: no real edit
                // is longer than 2^60 ticks (36,000 years at 1 MHz).
                const LONGEST: i64 = 1 << 60;
                let duration = if e.segment_duration == 0 && fragmented {
                    LONGEST // "until the end of the media" in a fragmented file
                } else {
                    crate::time::rescale(
                        i64::try_from(e.segment_duration).unwrap_or(LONGEST),
                        movie_timescale,
                        timescale,
                    )
                    .clamp(0, LONGEST)
                };
                Edit {
                    media_time: e
                        .media_time
                        .map_or(-1, |t| i64::try_from(t).unwrap_or(LONGEST).min(LONGEST)),
                    duration,
                }
            })
            .collect(),
        None => Vec::new(),
    };

    let raw = progressive_samples(stbl, file_len)?;
    let next_dts = raw.last().map_or(0, |s| s.dts + i64::from(s.duration));
    let language = Some(trak.mdia.mdhd.language.clone()).filter(|l| !l.is_empty() && l != "und");
    Ok(Ok(TrackBuilder {
        track_id,
        timescale,
        params,
        sample_entry: fourcc,
        length_size,
        is_audio,
        language,
        edits,
        has_ctts: stbl.ctts.is_some(),
        media_duration: i64::try_from(trak.mdia.mdhd.duration).unwrap_or(i64::MAX),
        raw,
        next_dts,
        trex: None,
    }))
}

fn codec_fourcc(c: &Codec) -> String {
    match c {
        Codec::Avc1(_) => "avc1".into(),
        Codec::Avc3(_) => "avc3".into(),
        Codec::Hev1(_) => "hev1".into(),
        Codec::Hvc1(_) => "hvc1".into(),
        Codec::Mp4a(_) => "mp4a".into(),
        Codec::Unknown(f, _) => f.to_string(),
        other => format!("{other:?}")
            .split('(')
            .next()
            .unwrap_or("?")
            .to_lowercase(),
    }
}

fn g711_law(kind: mp4_atom::FourCC) -> Option<G711Law> {
    match &<[u8; 4]>::from(kind) {
        b"ulaw" => Some(G711Law::Mulaw),
        b"alaw" => Some(G711Law::Alaw),
        _ => None,
    }
}

/// The largest channel count accepted for G.711: cameras send mono, ffmpeg writes up to 8.
const G711_MAX_CHANNELS: u16 = 8;

/// Reads a QuickTime sound sample description (QTFF "Sound Sample Descriptions"), the body of a
/// `ulaw`/`alaw` entry after its box header: 6 reserved bytes, the data reference index, then
/// version, revision, vendor, channels, sample size, compression ID, packet size and a 16.16
/// sample rate. Version 1 appends 16 bytes (samples per packet, bytes per packet, per frame,
/// per sample) that G.711 does not need (a sample is one byte per channel); version 2 (what
/// ffmpeg writes above 65,535 Hz) puts fixed values in the version-0 fields and appends the
/// struct size, a float64 sample rate and a 32-bit channel count, then 20 more bytes.
/// `timescale` stands in for a version-0/1 rate of 0.
fn g711_params(
    law: G711Law,
    body: &[u8],
    timescale: u32,
) -> std::result::Result<G711Params, String> {
    let u16_at = |i: usize| body.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let u32_at = |i: usize| {
        body.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let short = || format!("sound description of {} bytes is too short", body.len());
    let version = u16_at(8).ok_or_else(short)?;
    let (rate, channels) = match version {
        0 | 1 => {
            let channels = u16_at(16).ok_or_else(short)?;
            let rate = u32_at(24).ok_or_else(short)? >> 16;
            if version == 1 && body.len() < 44 {
                return Err(short());
            }
            (if rate == 0 { timescale } else { rate }, channels)
        }
        2 => {
            let bits = body
                .get(32..40)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(short)?;
            let rate = f64::from_bits(bits);
            let channels = u32_at(40).ok_or_else(short)?;
            if !(1.0..=f64::from(u32::MAX)).contains(&rate) || rate.fract() != 0.0 {
                return Err(format!(
                    "sound description v2: sample rate {rate} is not a whole number of Hz"
                ));
            }
            (rate as u32, u16::try_from(channels).unwrap_or(u16::MAX))
        }
        v => return Err(format!("sound description version {v} is not 0, 1 or 2")),
    };
    if rate == 0 {
        return Err("sample rate 0".into());
    }
    if channels == 0 || channels > G711_MAX_CHANNELS {
        return Err(format!(
            "{channels} channels (G.711 is read with 1 to {G711_MAX_CHANNELS})"
        ));
    }
    Ok(G711Params {
        law,
        sample_rate: rate,
        channels: channels as u8,
    })
}

/// The file ranges (offset, length) a G.711 track's samples occupy, in decode order and in
/// increasing offsets: one per chunk.
type Runs = Vec<(u64, u64)>;

/// Groups a G.711 track's table into 20 ms frames.
///
/// QuickTime lists uncompressed-style audio one entry per sample (`stsz` size = bytes per
/// sample of all channels, `stts` delta 1): 24,000 entries for 3 s at 8 kHz. Sent like that,
/// RTP would carry one byte per packet. Consecutive entries are merged while they are
/// contiguous on the timeline, up to 20 ms; an entry holding more than 20 ms (a writer that
/// lists whole chunks) is split. A frame may span two chunks (ffmpeg writes 1,024 samples a
/// chunk, 6.4 frames at 8 kHz): its bytes are then read from the [`Runs`] returned beside it.
/// A timeline gap or a chunk earlier in the file than the one before starts a new frame.
///
/// Old QuickTime writers put a size of 1 in `stsz` for every channel count: such entries are
/// taken as one sample of all channels. Entries that lie past the end of the file end the
/// track, so the output never has more frames than the file has bytes. The timescale need not
/// be the sample rate (ffmpeg writes it so): the ticks of each entry are spread over its samples.
fn regroup_g711(raw: &[RawSample], g: &G711Params, file_len: u64) -> (Vec<RawSample>, Runs) {
    let bps = u64::from(g.bytes_per_sample());
    let per_packet = g.samples_in(20);
    let qt_size_one = bps > 1 && raw.iter().all(|s| s.size == 1);
    let mut runs: Runs = Vec::new();
    let mut out: Vec<RawSample> = Vec::new();
    // The run of the table being undone for `qt_size_one`: (table offset, real offset, samples).
    let mut table_run: Option<(u64, u64, u64)> = None;
    let mut cur: Option<(RawSample, u32)> = None; // the frame being built, and its samples
    for s in raw {
        let (offset, samples) = if qt_size_one {
            // The table advanced one byte per sample inside a chunk: recover the real layout.
            let (start, real, n) = match table_run {
                Some((start, real, n)) if s.offset == start.saturating_add(n) => (start, real, n),
                _ => (s.offset, s.offset, 0),
            };
            table_run = Some((start, real, n + 1));
            (real.saturating_add(n.saturating_mul(bps)), 1)
        } else {
            (s.offset, u64::from(s.size) / bps)
        };
        let bytes = samples * bps;
        if samples == 0 {
            continue;
        }
        if offset.saturating_add(bytes) > file_len {
            break;
        }
        let new_run = match runs.last_mut() {
            Some((o, len)) if *o + *len == offset => {
                *len += bytes;
                false
            }
            Some((o, len)) if *o + *len > offset => {
                // Back in the file (or overlapping): a frame must not read across this.
                if let Some((c, _)) = cur.take() {
                    out.push(c);
                }
                true
            }
            _ => true,
        };
        if new_run {
            runs.push((offset, bytes));
        }
        let samples = samples as u32; // at most the entry's size
        let mut done = 0u32;
        while done < samples {
            // Ticks of this entry spread over its samples (exact when a sample is a tick).
            let tick = |k: u32| -> i64 {
                (i128::from(s.duration) * i128::from(k) / i128::from(samples)) as i64
            };
            let at = offset + u64::from(done) * bps;
            let dts = s.dts.saturating_add(tick(done));
            let continues = cur.as_ref().is_some_and(|(c, n)| {
                *n < per_packet && c.dts.saturating_add(i64::from(c.duration)) == dts
            });
            if !continues {
                if let Some((c, _)) = cur.take() {
                    out.push(c);
                }
                cur = Some((
                    RawSample {
                        offset: at,
                        size: 0,
                        dts,
                        cts: 0,
                        duration: 0,
                        keyframe: true,
                    },
                    0,
                ));
            }
            let (c, n) = cur.as_mut().expect("set above");
            let take = (per_packet - *n).min(samples - done);
            let end = s.dts.saturating_add(tick(done + take));
            // At most 20 ms of at most 8 channels at most u32::MAX Hz: fits.
            c.size = c.size.saturating_add(take.saturating_mul(bps as u32));
            c.duration = u32::try_from(end.saturating_sub(c.dts)).unwrap_or(u32::MAX);
            *n += take;
            done += take;
        }
    }
    if let Some((c, _)) = cur {
        out.push(c);
    }
    (out, runs)
}

/// A G.711 track's [`Runs`], with an index by offset to find where a frame starts.
#[derive(Debug, Default)]
struct Chunks {
    /// In decode order: a frame continues from one into the next.
    runs: Runs,
    /// (offset, index in `runs`), sorted by offset.
    by_offset: Vec<(u64, u32)>,
}

impl Chunks {
    fn new(runs: Runs) -> Self {
        let mut by_offset: Vec<(u64, u32)> = runs
            .iter()
            .enumerate()
            .map(|(i, &(o, _))| (o, i as u32))
            .collect();
        by_offset.sort_unstable();
        Chunks { runs, by_offset }
    }

    /// Reads `size` bytes from `offset` on: from the run that holds `offset`, then on through
    /// the runs that follow it in decode order (one slice, not a copy, when the bytes lie in one
    /// run). A damaged file whose chunks overlap reads some chunk's bytes, never out of bounds.
    fn read(&self, name: &str, source: &Source, offset: u64, size: usize) -> Result<Bytes> {
        let missing = || Error::Truncated {
            name: name.to_owned(),
            what: format!("G.711 frame of {size} bytes at offset {offset} runs past its chunks"),
        };
        // The last run starting at or before `offset`, if it holds `offset`.
        let k = self.by_offset.partition_point(|&(o, _)| o <= offset);
        let start = k
            .checked_sub(1)
            .map(|k| self.by_offset[k].1 as usize)
            .filter(|&i| {
                let (o, len) = self.runs[i];
                offset < o.saturating_add(len)
            })
            .ok_or_else(missing)?;
        let mut need = size as u64;
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut i = start;
        while need > 0 {
            let &(o, len) = self.runs.get(i).ok_or_else(missing)?;
            // Inside the first run (checked above), at the start of the others: never past the
            // run's end, and every run holds at least one byte.
            let from = if i == start { offset } else { o };
            let take = (o + len - from).min(need);
            pieces.push(source.read(name, from, take as usize)?);
            need -= take;
            i += 1;
        }
        Ok(match pieces.len() {
            1 => pieces.pop().expect("one piece"),
            _ => Bytes::from(pieces.concat()),
        })
    }
}

fn h264_params(avcc: &mp4_atom::Avcc) -> std::result::Result<CodecParams, String> {
    let sps = avcc
        .sequence_parameter_sets
        .iter()
        .map(|s| Bytes::from(s.clone()))
        .collect();
    let pps = avcc
        .picture_parameter_sets
        .iter()
        .map(|s| Bytes::from(s.clone()))
        .collect();
    VideoParams::h264(sps, pps)
        .map(CodecParams::H264)
        .map_err(|e| format!("avcC: {e}"))
}

type Sets = (Vec<Bytes>, Vec<Bytes>, Vec<Bytes>);

fn hvcc_sets(hvcc: &mp4_atom::Hvcc) -> Sets {
    let mut sets: Sets = Default::default();
    for array in &hvcc.arrays {
        let list = match array.nal_unit_type {
            32 => &mut sets.0,
            33 => &mut sets.1,
            34 => &mut sets.2,
            _ => continue,
        };
        list.extend(array.nalus.iter().map(|n| Bytes::from(n.clone())));
    }
    sets
}

fn h265_params(hvcc: &mp4_atom::Hvcc) -> std::result::Result<CodecParams, String> {
    let (vps, sps, pps) = hvcc_sets(hvcc);
    VideoParams::h265(vps, sps, pps)
        .map(CodecParams::H265)
        .map_err(|e| format!("hvcC: {e}"))
}

/// Builds the raw sample table of a progressive track in one pass.
fn progressive_samples(
    stbl: &mp4_atom::Stbl,
    file_len: u64,
) -> std::result::Result<Vec<RawSample>, String> {
    use mp4_atom::StszSamples;
    let (count, sizes): (usize, Option<&[u32]>) = match &stbl.stsz.samples {
        StszSamples::Identical { count, size } => {
            if *count > 0 && *size == 0 {
                return Err("stsz: constant sample size 0".into());
            }
            (*count as usize, None)
        }
        StszSamples::Different { sizes } => (sizes.len(), Some(sizes)),
    };
    if count == 0 {
        return Ok(Vec::new());
    }
    // Every sample holds at least one byte of the file, so a count beyond the file length is a
    // lie that would only cost memory.
    if count as u64 > file_len {
        return Err(format!(
            "stsz: {count} samples cannot fit in a {file_len}-byte file"
        ));
    }
    let size_of = |i: usize| match (sizes, &stbl.stsz.samples) {
        (Some(s), _) => s[i],
        (None, StszSamples::Identical { size, .. }) => *size,
        (None, _) => 0,
    };

    // stts: durations; a table shorter than stsz limits the track (as ffmpeg does).
    let mut durations = Vec::with_capacity(count);
    for e in &stbl.stts.entries {
        let take = (e.sample_count as usize).min(count - durations.len());
        durations.extend(std::iter::repeat_n(e.sample_delta, take));
        if durations.len() == count {
            break;
        }
    }
    let count = durations.len();

    // stco/co64 + stsc: chunk offsets to sample offsets.
    let chunk_offsets: Vec<u64> = match (&stbl.stco, &stbl.co64) {
        (Some(s), _) => s.entries.iter().map(|&o| u64::from(o)).collect(),
        (None, Some(c)) => c.entries.clone(),
        (None, None) => return Err("stbl has neither stco nor co64".into()),
    };
    let stsc = &stbl.stsc.entries;
    for (i, e) in stsc.iter().enumerate() {
        if e.first_chunk == 0 || (i > 0 && e.first_chunk <= stsc[i - 1].first_chunk) {
            return Err(format!(
                "stsc entry {i}: first_chunk {} is not increasing from 1",
                e.first_chunk
            ));
        }
    }
    let mut offsets = Vec::with_capacity(count);
    let mut entry = 0;
    'chunks: for (c, &chunk_offset) in chunk_offsets.iter().enumerate() {
        let chunk = c as u64 + 1;
        while entry + 1 < stsc.len() && u64::from(stsc[entry + 1].first_chunk) <= chunk {
            entry += 1;
        }
        let Some(e) = stsc.get(entry) else { break };
        if u64::from(e.first_chunk) > chunk {
            continue;
        }
        let mut pos = chunk_offset;
        for _ in 0..e.samples_per_chunk {
            if offsets.len() == count {
                break 'chunks;
            }
            offsets.push(pos);
            pos = pos.saturating_add(u64::from(size_of(offsets.len() - 1)));
        }
    }
    let count = offsets.len();

    let mut cts = vec![0i64; count];
    if let Some(ctts) = &stbl.ctts {
        let mut i = 0;
        for e in &ctts.entries {
            // A version-0 box is unsigned by the spec, but writers put negative offsets in it;
            // ffmpeg reads it as signed 32-bit, and so do we.
            let off = if e.sample_offset > i64::from(i32::MAX) {
                i64::from(e.sample_offset as u32 as i32)
            } else {
                e.sample_offset
            };
            let take = (e.sample_count as usize).min(count - i);
            cts[i..i + take].fill(off);
            i += take;
            if i == count {
                break;
            }
        }
    }

    let mut keyframe = vec![stbl.stss.is_none(); count];
    if let Some(stss) = &stbl.stss {
        for &n in &stss.entries {
            if let Some(k) = (n as usize)
                .checked_sub(1)
                .and_then(|i| keyframe.get_mut(i))
            {
                *k = true;
            }
        }
    }

    let mut out = Vec::with_capacity(count);
    let mut dts = 0i64;
    for i in 0..count {
        out.push(RawSample {
            offset: offsets[i],
            size: size_of(i),
            dts,
            cts: cts[i],
            duration: durations[i],
            keyframe: keyframe[i],
        });
        dts = dts.saturating_add(i64::from(durations[i]));
    }
    Ok(out)
}

/// Appends the samples of one `moof` to the tracks it describes.
fn add_fragment(
    builders: &mut [TrackBuilder],
    moof_offset: u64,
    moof: &[u8],
    file_len: u64,
) -> std::result::Result<(), String> {
    let moof = mp4_atom::Moof::decode(&mut &moof[..]).map_err(|e| e.to_string())?;
    let mut prev_end = moof_offset; // end of the previous traf's data
    for (t, traf) in moof.traf.iter().enumerate() {
        let tfhd = &traf.tfhd;
        let Some(b) = builders.iter_mut().find(|b| b.track_id == tfhd.track_id) else {
            continue; // a track we skip
        };
        let trex = b.trex.clone().unwrap_or_default();
        let base = match tfhd.base_data_offset {
            Some(o) => o,
            None if tfhd.default_base_is_moof || t == 0 => moof_offset,
            None => prev_end,
        };
        if let Some(tfdt) = &traf.tfdt {
            b.next_dts = i64::try_from(tfdt.base_media_decode_time)
                .map_err(|_| "tfdt base_media_decode_time overflows")?;
        }
        let mut pos = base;
        for (r, trun) in traf.trun.iter().enumerate() {
            if let Some(off) = trun.data_offset {
                pos = base
                    .checked_add_signed(i64::from(off))
                    .ok_or("trun data_offset points before the file")?;
            } else if r == 0 {
                pos = base;
            }
            if trun.samples.len() as u64 > file_len {
                return Err(format!(
                    "trun claims {} samples, more than bytes in the file",
                    trun.samples.len()
                ));
            }
            for entry in trun.samples.iter() {
                let duration = entry
                    .duration
                    .or(tfhd.default_sample_duration)
                    .unwrap_or(trex.default_sample_duration);
                let size = entry
                    .size
                    .or(tfhd.default_sample_size)
                    .unwrap_or(trex.default_sample_size);
                let flags = entry
                    .flags
                    .or(tfhd.default_sample_flags)
                    .unwrap_or(trex.default_sample_flags);
                // As for ctts: offsets above i32::MAX come from version-0 boxes whose writer
                // meant them as signed (ffmpeg reads them so).
                let cts = match entry.cts.unwrap_or(0) {
                    c if c > i64::from(i32::MAX) => i64::from(c as u32 as i32),
                    c => c,
                };
                // ISO/IEC 14496-12 §8.8.3.1: bit 16 is sample_is_non_sync_sample.
                let keyframe = b.is_audio || flags & 0x0001_0000 == 0;
                b.raw.push(RawSample {
                    offset: pos,
                    size,
                    dts: b.next_dts,
                    cts,
                    duration,
                    keyframe,
                });
                b.next_dts = b.next_dts.saturating_add(i64::from(duration));
                pos = pos.saturating_add(u64::from(size));
            }
            prev_end = pos;
        }
    }
    Ok(())
}

/// ffmpeg's DTS shift for negative composition offsets (`sc->dts_shift` in mov.c).
fn dts_shift(raw: &[RawSample]) -> i64 {
    raw.iter().map(|s| -s.cts).max().unwrap_or(0).max(0)
}

/// Applies a progressive file's edit list the way ffmpeg's `mov_fix_index` does, so the frames
/// come out with the same PTS, DTS and discard flags ffprobe prints.
fn apply_edits(b: &TrackBuilder) -> Vec<SampleInfo> {
    let shift = dts_shift(&b.raw);
    // Index timestamps: raw decode times minus the shift (mov_build_index).
    let ts: Vec<i64> = b.raw.iter().map(|s| s.dts - shift).collect();
    let mut out = apply_edit_list(b, shift, &ts);
    if !b.has_ctts {
        // mov_read_packet: without ctts a packet lasts until the next index entry; the last one
        // until the stream duration (mdhd, cut to the end of the edit list).
        let end = if b.edits.is_empty() {
            b.media_duration
        } else {
            let edits_end = b
                .edits
                .iter()
                .fold(0i64, |a, e| a.saturating_add(e.duration));
            b.media_duration.min(edits_end)
        };
        for k in 0..out.len() {
            let next = out.get(k + 1).map_or(end, |n| n.dts);
            let d = next.saturating_sub(out[k].dts);
            if d > 0 && d <= i64::from(u32::MAX) {
                out[k].duration = d as u32;
            }
        }
    }
    out
}

fn apply_edit_list(b: &TrackBuilder, shift: i64, ts: &[i64]) -> Vec<SampleInfo> {
    let plain = |s: &RawSample, t: i64| SampleInfo {
        offset: s.offset,
        size: s.size,
        dts: t,
        pts: t.saturating_add(shift).saturating_add(s.cts),
        duration: s.duration,
        keyframe: s.keyframe,
        discard: false,
    };
    if b.edits.is_empty() || b.raw.is_empty() {
        return b.raw.iter().zip(ts).map(|(s, &t)| plain(s, t)).collect();
    }

    let n = b.raw.len();
    let mut out: Vec<SampleInfo> = Vec::with_capacity(n);
    let mut entry_end = 0i64;
    let mut empty_sum = 0i64;
    let mut found_non_empty = false;
    let mut min_corrected_pts: Option<i64> = None;
    for edit in &b.edits {
        let mut counter = entry_end;
        entry_end = entry_end.saturating_add(edit.duration);
        if edit.media_time == -1 {
            if !found_non_empty {
                empty_sum = empty_sum.saturating_add(edit.duration);
            }
            continue;
        }
        let is_first_audio_edit = b.is_audio && !found_non_empty;
        found_non_empty = true;
        let media_time = edit.media_time;
        let edit_end = media_time.saturating_add(edit.duration);
        // Audio decoders need pre-roll: start up to one second before the edit.
        let search = if b.is_audio {
            (media_time - i64::from(b.timescale)).max(ts[0])
        } else {
            media_time
        };
        let mut index = prev_keyframe(b, ts, shift, search);
        let mut start_encountered = false;
        let mut discarded_begin: Vec<i64> = Vec::new();
        let mut found_keyframe_after = false;
        let has_ctts = b.raw.iter().any(|s| s.cts != 0);
        while index < n {
            let s = &b.raw[index];
            let frame_duration = if index + 1 < n {
                ts[index + 1].saturating_sub(ts[index])
            } else {
                edit.duration
            };
            let curr_cts = ts[index].saturating_add(shift).saturating_add(s.cts);
            let mut discard = false;
            if curr_cts < media_time || curr_cts >= edit_end {
                if b.is_audio
                    && curr_cts < media_time
                    && curr_cts.saturating_add(frame_duration) > media_time
                    && is_first_audio_edit
                {
                    // A frame straddling the edit start: kept, and shifted so the edit start
                    // lands at the counter (ffmpeg adds skip_samples for the decoder).
                    counter = counter.saturating_sub(media_time.saturating_sub(curr_cts));
                    if !start_encountered {
                        start_encountered = true;
                        rewrite_discarded(&mut out, counter, &discarded_begin);
                    }
                } else {
                    discard = true;
                    if !start_encountered {
                        discarded_begin.push(frame_duration);
                    }
                }
            } else {
                let corrected = counter.saturating_add(s.cts).saturating_add(shift);
                min_corrected_pts = Some(min_corrected_pts.map_or(corrected, |m| m.min(corrected)));
                if !start_encountered {
                    start_encountered = true;
                    rewrite_discarded(&mut out, counter, &discarded_begin);
                }
            }
            out.push(SampleInfo {
                offset: s.offset,
                size: s.size,
                dts: counter,
                pts: 0, // filled in below
                duration: s.duration,
                keyframe: s.keyframe,
                discard,
            });
            let cts = s.cts;
            if let Some(last) = out.last_mut() {
                last.pts = cts; // temporarily the composition offset
            }
            if start_encountered {
                counter = counter.saturating_add(frame_duration);
            }
            index += 1;
            if curr_cts.saturating_add(frame_duration) >= edit_end && (s.keyframe || b.is_audio) {
                if has_ctts && !b.is_audio && !found_keyframe_after {
                    // There may be trailing B-frames after this keyframe that belong to the edit.
                    found_keyframe_after = true;
                    continue;
                }
                break;
            }
        }
    }
    let mut min_pts = min_corrected_pts.unwrap_or(0) - empty_sum;
    if b.is_audio || min_pts < 0 {
        min_pts = 0;
    }
    for s in &mut out {
        let cts = s.pts;
        s.dts = s.dts.saturating_sub(min_pts);
        s.pts = s.dts.saturating_add(shift).saturating_add(cts);
    }
    out
}

/// ffmpeg's `fix_index_entry_timestamps`: the frames discarded before the edit start get
/// timestamps that run backwards from `end` by their durations, so DTS stay increasing.
fn rewrite_discarded(out: &mut [SampleInfo], end: i64, durations: &[i64]) {
    let mut t = end;
    let n = out.len();
    for (i, d) in durations.iter().rev().enumerate() {
        t -= d;
        if let Some(s) = n.checked_sub(1 + i).and_then(|k| out.get_mut(k)) {
            s.dts = t;
        }
    }
}

/// ffmpeg's `find_prev_closest_index`: the last keyframe whose PTS is at or before `search`
/// (falling back to any frame, then to the first).
fn prev_keyframe(b: &TrackBuilder, ts: &[i64], shift: i64, search: i64) -> usize {
    // Candidates by decode time first (av_index_search_timestamp, backward)...
    let by_dts = ts.partition_point(|&t| t <= search);
    let mut i = by_dts;
    while i > 0 {
        i -= 1;
        let s = &b.raw[i];
        if s.keyframe && ts[i] + shift + s.cts <= search {
            return i;
        }
    }
    // ... then any frame at or before.
    by_dts.saturating_sub(1)
}

/// A fragmented file's edit list, as ffmpeg applies it to fragments: one time offset
/// (`media_time` of the first edit minus an initial empty edit). Frames that end before the edit
/// starts (AAC priming) are flagged `discard`.
fn apply_edits_fragmented(b: &TrackBuilder) -> Vec<SampleInfo> {
    let mut empty = 0i64;
    let mut media_time = 0i64;
    for e in &b.edits {
        if e.media_time == -1 {
            empty = empty.saturating_add(e.duration);
        } else {
            media_time = e.media_time;
            break;
        }
    }
    let offset = media_time.saturating_sub(empty);
    b.raw
        .iter()
        .map(|s| SampleInfo {
            offset: s.offset,
            size: s.size,
            dts: s.dts.saturating_sub(offset),
            pts: s.dts.saturating_add(s.cts).saturating_sub(offset),
            duration: s.duration,
            keyframe: s.keyframe,
            discard: !b.edits.is_empty()
                && s.dts
                    .saturating_add(s.cts)
                    .saturating_add(i64::from(s.duration))
                    <= media_time,
        })
        .collect()
}

/// For `avc3`/`hev1` entries without parameter sets: take them from the first keyframe.
fn in_band_parameters(
    name: &str,
    source: &Source,
    b: &TrackBuilder,
    samples: &[SampleInfo],
) -> Result<Option<CodecParams>> {
    let codec = if b.sample_entry.starts_with("avc") {
        VideoCodec::H264
    } else {
        VideoCodec::H265
    };
    let Some(key) = samples.iter().find(|s| s.keyframe) else {
        return Ok(None);
    };
    let data = source.read(name, key.offset, key.size as usize)?;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    for unit in nal::length_prefixed(&data, b.length_size) {
        let Ok(unit) = unit else { break };
        let list = match (codec, codec.nal_type(unit)) {
            (VideoCodec::H265, 32) => &mut vps,
            (VideoCodec::H264, 7) | (VideoCodec::H265, 33) => &mut sps,
            (VideoCodec::H264, 8) | (VideoCodec::H265, 34) => &mut pps,
            _ => continue,
        };
        list.push(data.slice_ref(unit));
    }
    if sps.is_empty() {
        return Ok(None);
    }
    let params = match codec {
        VideoCodec::H264 => VideoParams::h264(sps, pps).map(CodecParams::H264),
        VideoCodec::H265 => VideoParams::h265(vps, sps, pps).map(CodecParams::H265),
    };
    params.map(Some)
}

/// All samples of all streams in decode-time order; ties go to the lower stream.
fn decode_order(tracks: &[TrackInfo], samples: &[Vec<SampleInfo>]) -> Vec<(u32, u32)> {
    let mut order: Vec<(u32, u32)> = samples
        .iter()
        .enumerate()
        .flat_map(|(s, v)| (0..v.len()).map(move |i| (s as u32, i as u32)))
        .collect();
    order.sort_by(|&(sa, ia), &(sb, ib)| {
        crate::time::cmp_ticks(
            samples[sa as usize][ia as usize].dts,
            tracks[sa as usize].timescale,
            samples[sb as usize][ib as usize].dts,
            tracks[sb as usize].timescale,
        )
        .then(sa.cmp(&sb))
        .then(ia.cmp(&ib))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-0 sound description body: reserved, data reference, version..., channels,
    /// sample size 16, compression 0, packet size 0, 16.16 rate.
    fn v0(channels: u16, rate: u32) -> Vec<u8> {
        let mut b = vec![0u8; 6];
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]); // version 0, revision, vendor
        b.extend_from_slice(&channels.to_be_bytes());
        b.extend_from_slice(&16u16.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&(rate << 16).to_be_bytes());
        b
    }

    #[test]
    fn g711_sound_descriptions_that_cannot_be_read_are_errors() {
        let ok = g711_params(G711Law::Alaw, &v0(1, 8000), 8000).unwrap();
        assert_eq!((ok.sample_rate, ok.channels), (8000, 1));
        assert_eq!(
            g711_params(G711Law::Alaw, &v0(1, 0), 16000)
                .unwrap()
                .sample_rate,
            16000
        );
        assert!(g711_params(G711Law::Alaw, &v0(0, 8000), 8000).is_err());
        assert!(g711_params(G711Law::Alaw, &v0(9, 8000), 8000).is_err());
        assert!(g711_params(G711Law::Alaw, &v0(1, 8000)[..20], 8000).is_err());
        let mut v3 = v0(1, 8000);
        v3[9] = 3;
        assert!(g711_params(G711Law::Alaw, &v3, 8000).is_err());
        let mut v1 = v0(1, 8000);
        v1[9] = 1;
        assert!(
            g711_params(G711Law::Alaw, &v1, 8000).is_err(),
            "v1 without its 16 bytes"
        );
        let mut v2 = v0(3, 1);
        v2[9] = 2;
        v2.extend_from_slice(&72u32.to_be_bytes());
        v2.extend_from_slice(&f64::NAN.to_bits().to_be_bytes());
        v2.extend_from_slice(&1u32.to_be_bytes());
        v2.extend_from_slice(&[0; 20]);
        assert!(g711_params(G711Law::Alaw, &v2, 8000).is_err(), "a NaN rate");
    }

    fn raw(offset: u64, size: u32, dts: i64, duration: u32) -> RawSample {
        RawSample {
            offset,
            size,
            dts,
            cts: 0,
            duration,
            keyframe: true,
        }
    }

    #[test]
    fn g711_entries_of_whole_chunks_are_split_and_chunks_joined() {
        let g = G711Params {
            law: G711Law::Mulaw,
            sample_rate: 8000,
            channels: 1,
        };
        // Two chunks of 250 samples listed as one entry each, with a gap in the file between
        // them: 20 ms frames run across the chunk boundary.
        let (frames, runs) = regroup_g711(
            &[raw(100, 250, 0, 250), raw(1000, 250, 250, 250)],
            &g,
            10_000,
        );
        assert_eq!(runs, vec![(100, 250), (1000, 250)]);
        let shape: Vec<(u64, u32, i64, u32)> = frames
            .iter()
            .map(|f| (f.offset, f.size, f.dts, f.duration))
            .collect();
        assert_eq!(
            shape,
            vec![
                (100, 160, 0, 160),
                (260, 160, 160, 160),
                (1070, 160, 320, 160),
                (1230, 20, 480, 20)
            ]
        );
        let chunks = Chunks::new(runs.clone());
        let source = Source::Memory(Bytes::from(
            (0..10_000u32).map(|i| i as u8).collect::<Vec<_>>(),
        ));
        let second = chunks.read("t", &source, 260, 160).unwrap();
        let want: Vec<u8> = (260..350u32).chain(1000..1070).map(|i| i as u8).collect();
        assert_eq!(second.to_vec(), want);
        assert!(
            chunks.read("t", &source, 1230, 21).is_err(),
            "past the last chunk"
        );
        assert!(
            chunks.read("t", &source, 50, 10).is_err(),
            "before the first"
        );
        assert!(
            chunks.read("t", &source, 400, 10).is_err(),
            "between chunks"
        );
        // Chunks out of order and overlapping (a damaged file): some bytes, never a panic.
        let odd = Chunks::new(vec![(1000, 10), (100, 2000), (500, 1)]);
        for at in [99, 100, 500, 1000, 1005, 2099, 2100] {
            let _ = odd.read("t", &source, at, 3000);
            let _ = odd.read("t", &source, at, 1);
        }
        // Entries past the end of the file end the track.
        let (frames, _) = regroup_g711(
            &[raw(100, 250, 0, 250), raw(9_900, 250, 250, 250)],
            &g,
            10_000,
        );
        assert_eq!(frames.iter().map(|f| f.size).sum::<u32>(), 250);
    }
}

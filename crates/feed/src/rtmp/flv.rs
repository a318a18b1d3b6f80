//! FLV tag bodies built from [`Frame`]s, and the RTMP millisecond clock.
//!
//! RTMP carries FLV tag *bodies* (the tag header's type, size and timestamp travel in the chunk
//! header). Video (FLV spec v10.1 §E.4.3.1): `FrameType<<4 | CodecID`, then for AVC an
//! `AVCPacketType` (0 = AVCDecoderConfigurationRecord, 1 = NAL units) and a signed 24-bit
//! composition time (PTS − DTS in ms), then the NAL units with 4-byte lengths: exactly the
//! layout of [`Frame::data`], so a frame's payload follows its 5-byte header unchanged. H.265 goes
//! as Enhanced RTMP v1 ("ex header"): `0x80 | FrameType<<4 | PacketType`, the FourCC `hvc1`, then
//! an HEVCDecoderConfigurationRecord (SequenceStart) or SI24 composition time + NAL units
//! (CodedFrames). Audio (§E.4.2.1): `0xAF` (AAC, which always claims 44 kHz/16-bit/stereo and
//! means the AudioSpecificConfig), then 0 + AudioSpecificConfig or 1 + one raw AAC frame;
//! G.711 as SoundFormat 7 (A-law) or 8 (μ-law), whose rate is 8 kHz by definition (the rate
//! bits are ignored; ffmpeg's FLV reader sets 8,000 Hz whatever they say), the flags byte then
//! the samples, with no sequence header. FLV has no G.711 at any other rate, nor stereo in
//! ffmpeg's writer: such a track is left out of the push with a warning.
//!
//! [`Timeline`] maps each stream's DTS to RTMP's 32-bit millisecond clock: every stream on one
//! origin (the first frame published), rounded to the nearest millisecond from the exact media
//! time (never accumulated, so rounding never drifts), offset by a configurable start and
//! wrapping modulo 2³², where the chunk layer's extended timestamps take over.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::Atom;
use nvrkit_media::time::rescale;
use nvrkit_media::{CodecParams, Frame, G711Law, G711Params, TrackInfo};
use rml_rtmp::rml_amf0::Amf0Value;

use crate::loop_source::Clip;
use crate::rtmp::error::PushError;

/// FLV CodecID of AVC (FLV spec §E.4.3.1).
const CODEC_AVC: u8 = 7;
/// FLV SoundFormat of AAC (§E.4.2.1).
const SOUND_AAC: u8 = 10;
/// FLV SoundFormat of G.711 A-law (§E.4.2.1).
const SOUND_ALAW: u8 = 7;
/// FLV SoundFormat of G.711 μ-law (§E.4.2.1).
const SOUND_MULAW: u8 = 8;
/// `hvc1`, the Enhanced RTMP FourCC of H.265.
pub const FOURCC_HEVC: [u8; 4] = *b"hvc1";

/// Which RTMP message a tag travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// Message type 9.
    Video,
    /// Message type 8.
    Audio,
    /// Message type 18 (AMF0 data: `@setDataFrame onMetaData`).
    Data,
}

/// One FLV tag ready for the chunk layer: kind, RTMP timestamp (ms, modulo 2³²) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// The message type.
    pub kind: TagKind,
    /// Decode time in RTMP milliseconds.
    pub timestamp: u32,
    /// The tag body (for [`TagKind::Data`], the AMF0 values serialized).
    pub body: Bytes,
    /// True for a video keyframe (where a receiver can start).
    pub keyframe: bool,
}

/// How a stream of the clip is carried.
#[derive(Debug, Clone)]
enum Carriage {
    Avc {
        header: Bytes,
    },
    Hevc {
        header: Bytes,
    },
    Aac {
        header: Bytes,
    },
    /// G.711: the flags byte of every tag; no sequence header.
    G711 {
        flags: u8,
    },
}

/// Turns a clip's frames into FLV tags on one RTMP clock. One per push; it lives across
/// reconnects, so timestamps continue where the last connection stopped.
#[derive(Debug)]
pub struct FlvMapper {
    clip_name: String,
    tracks: Vec<TrackInfo>,
    carriage: Vec<Option<Carriage>>,
    master: usize,
    /// Frames per second and kbit/s for onMetaData.
    rates: Option<Rates>,
    timeline: Timeline,
}

/// How each of `tracks` is carried (indexed by [`TrackInfo::stream`]); `None` for a stream FLV
/// does not carry.
fn carriage(
    name: &str,
    tracks: &[TrackInfo],
    enhanced: bool,
) -> Result<Vec<Option<Carriage>>, PushError> {
    let unsupported = |what: String| PushError::Unsupported {
        clip: name.to_owned(),
        what,
    };
    let streams = tracks.iter().map(|t| t.stream + 1).max().unwrap_or(0);
    let mut carriage = vec![None; streams];
    for t in tracks {
        let c = match &t.params {
            CodecParams::H264(v) => {
                let rec = nvrkit_media::mux::avcc(&v.sps, &v.pps)
                    .map_err(|e| unsupported(format!("H.264 parameter sets: {e}")))?;
                let mut b = vec![(1 << 4) | CODEC_AVC, 0, 0, 0, 0];
                rec.encode_body(&mut b)
                    .map_err(|e| unsupported(format!("avcC: {e}")))?;
                Some(Carriage::Avc { header: b.into() })
            }
            CodecParams::H265(v) => {
                if !enhanced {
                    return Err(unsupported(
                        "H.265 needs Enhanced RTMP (FourCC hvc1), and this server did not \
                         announce it in its connect result; use a server that takes it \
                         (node-media-server 4, SRS 6, mediamtx) and pass --enhanced-rtmp, \
                         or transcode the clip to H.264"
                            .into(),
                    ));
                }
                let rec = nvrkit_media::mux::hvcc(&v.vps, &v.sps, &v.pps)
                    .map_err(|e| unsupported(format!("H.265 parameter sets: {e}")))?;
                // Ex header, keyframe, PacketType SequenceStart, FourCC.
                let mut b = vec![0x80 | (1 << 4)];
                b.extend_from_slice(&FOURCC_HEVC);
                rec.encode_body(&mut b)
                    .map_err(|e| unsupported(format!("hvcC: {e}")))?;
                Some(Carriage::Hevc { header: b.into() })
            }
            CodecParams::Aac(a) => {
                let mut b = BytesMut::with_capacity(2 + a.config.len());
                b.put_slice(&[aac_flags(), 0]);
                b.put_slice(&a.config);
                Some(Carriage::Aac { header: b.freeze() })
            }
            CodecParams::G711(g) => match g711_flags(g) {
                Some(flags) => Some(Carriage::G711 { flags }),
                None => {
                    // Once per connection.
                    tracing::warn!(
                        clip = %name,
                        stream = t.stream,
                        "{} at {} Hz, {} channels has no FLV carriage (G.711 in FLV is \
                         8 kHz mono): the audio track is left out of the push",
                        t.params.name(),
                        g.sample_rate,
                        g.channels
                    );
                    None
                }
            },
            _ => None,
        };
        carriage[t.stream] = c;
    }
    Ok(carriage)
}

/// What onMetaData says of the rates: frames per second and kbit/s. A looped clip's are
/// measured over one loop; a live source's are not known (left out).
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    frame_rate: f64,
    video_kbps: f64,
    audio_kbps: f64,
}

impl FlvMapper {
    /// Prepares the sequence headers of every stream FLV can carry. `enhanced`: the server takes
    /// Enhanced RTMP (`hvc1`); without it an H.265 clip is refused. `initial_timestamp` is the
    /// RTMP time of the first frame published (tests start just below 2³² to cross the wrap).
    pub fn new(clip: &Clip, enhanced: bool, initial_timestamp: u32) -> Result<Self, PushError> {
        let mut m = FlvMapper::for_tracks(
            clip.name(),
            clip.tracks(),
            clip.master(),
            enhanced,
            initial_timestamp,
        )?;
        let period_s = clip.period_micros().max(1) as f64 / 1e6;
        let kbps = |s: usize| {
            let bytes: usize = clip.frames(s).iter().map(|f| f.data.len()).sum();
            (bytes as f64 * 8.0 / 1000.0 / period_s * 10.0).round() / 10.0
        };
        let video = clip.tracks().iter().position(|t| t.params.is_video());
        let audio = (0..m.carriage.len()).find(|&s| {
            matches!(
                m.carriage[s],
                Some(Carriage::Aac { .. } | Carriage::G711 { .. })
            )
        });
        m.rates = Some(Rates {
            frame_rate: video.map_or(0.0, |v| {
                (clip.frames(v).len() as f64 / period_s * 1000.0).round() / 1000.0
            }),
            video_kbps: video.map_or(0.0, kbps),
            audio_kbps: audio.map_or(0.0, kbps),
        });
        Ok(m)
    }

    /// A mapper for a live source's `tracks` (a camera's), named `name`, starting readers on
    /// stream `master`: as [`FlvMapper::new`], with no measured rates in onMetaData.
    pub fn for_tracks(
        name: &str,
        tracks: &[TrackInfo],
        master: usize,
        enhanced: bool,
        initial_timestamp: u32,
    ) -> Result<Self, PushError> {
        let streams = tracks.iter().map(|t| t.stream + 1).max().unwrap_or(0);
        Ok(FlvMapper {
            clip_name: name.to_owned(),
            tracks: tracks.to_vec(),
            carriage: carriage(name, tracks, enhanced)?,
            master,
            rates: None,
            timeline: Timeline::new(streams, initial_timestamp),
        })
    }

    /// Takes new tracks (a camera reconnected with another resolution, other parameter sets,
    /// audio switched on) for the next connection: new sequence headers and onMetaData, the
    /// same clock, so timestamps go on increasing.
    pub fn retrack(
        &mut self,
        tracks: &[TrackInfo],
        master: usize,
        enhanced: bool,
    ) -> Result<(), PushError> {
        self.carriage = carriage(&self.clip_name, tracks, enhanced)?;
        if self.tracks != tracks {
            // Measured over a clip's loop: not for other tracks.
            self.rates = None;
            self.tracks = tracks.to_vec();
        }
        self.master = master;
        let streams = tracks.iter().map(|t| t.stream + 1).max().unwrap_or(0);
        self.timeline.ensure_streams(streams);
        Ok(())
    }

    /// The tracks the sequence headers are made of.
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// The clip's name.
    pub fn clip_name(&self) -> &str {
        &self.clip_name
    }

    /// The stream a receiver starts on: the video (or the only stream).
    pub fn master(&self) -> usize {
        self.master
    }

    /// The clock.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// True when the frame has not been published yet on this push: after a reconnect, frames
    /// at or before the last one sent are skipped, so no receiver sees a timestamp twice.
    pub fn is_new(&self, f: &Frame) -> bool {
        self.timeline.is_new(f)
    }

    /// What opens every connection, at the RTMP time of `first` (a keyframe of the master):
    /// `@setDataFrame onMetaData`, then each stream's sequence header.
    pub fn headers(&mut self, first: &Frame) -> Vec<Tag> {
        let timestamp = self.timeline.peek(first);
        let mut tags = vec![Tag {
            kind: TagKind::Data,
            timestamp,
            body: amf0(&self.metadata()),
            keyframe: false,
        }];
        for c in self.carriage.iter().flatten() {
            let (kind, body) = match c {
                Carriage::Avc { header } | Carriage::Hevc { header } => {
                    (TagKind::Video, header.clone())
                }
                Carriage::Aac { header } => (TagKind::Audio, header.clone()),
                Carriage::G711 { .. } => continue,
            };
            tags.push(Tag {
                kind,
                timestamp,
                body,
                keyframe: false,
            });
        }
        tags
    }

    /// The tag of one frame, or `None` for a stream FLV does not carry or a frame already sent.
    pub fn tag(&mut self, f: &Frame) -> Option<Tag> {
        let carriage = self.carriage.get(f.stream)?.as_ref()?;
        let stamp = self.timeline.stamp(f)?;
        let cts = stamp.composition_ms;
        let (kind, body) = match carriage {
            Carriage::Avc { .. } => {
                let mut b = BytesMut::with_capacity(5 + f.data.len());
                let frame_type = if f.keyframe { 1 } else { 2 };
                b.put_u8((frame_type << 4) | CODEC_AVC);
                b.put_u8(1); // AVC NALU
                put_i24(&mut b, cts);
                b.put_slice(&f.data);
                (TagKind::Video, b.freeze())
            }
            Carriage::Hevc { .. } => {
                let mut b = BytesMut::with_capacity(8 + f.data.len());
                let frame_type = if f.keyframe { 1 } else { 2 };
                b.put_u8(0x80 | (frame_type << 4) | 1); // ex header, CodedFrames
                b.put_slice(&FOURCC_HEVC);
                put_i24(&mut b, cts);
                b.put_slice(&f.data);
                (TagKind::Video, b.freeze())
            }
            Carriage::Aac { .. } => {
                let mut b = BytesMut::with_capacity(2 + f.data.len());
                b.put_slice(&[aac_flags(), 1]);
                b.put_slice(&f.data);
                (TagKind::Audio, b.freeze())
            }
            Carriage::G711 { flags } => {
                let mut b = BytesMut::with_capacity(1 + f.data.len());
                b.put_u8(*flags);
                b.put_slice(&f.data);
                (TagKind::Audio, b.freeze())
            }
        };
        Some(Tag {
            kind,
            timestamp: stamp.dts,
            body,
            keyframe: f.keyframe && kind == TagKind::Video,
        })
    }

    /// `@setDataFrame`, `onMetaData` and the stream properties (FLV spec §E.5).
    pub fn metadata(&self) -> Vec<Amf0Value> {
        use std::collections::HashMap;
        let mut m: HashMap<String, Amf0Value> = HashMap::new();
        let num = |v: f64| Amf0Value::Number(v);
        m.insert("duration".into(), num(0.0)); // live
        m.insert(
            "encoder".into(),
            Amf0Value::Utf8String(concat!("nvrkit loopcam ", env!("CARGO_PKG_VERSION")).into()),
        );
        for t in &self.tracks {
            let c = self.carriage.get(t.stream).and_then(Option::as_ref);
            match (c, &t.params) {
                (Some(Carriage::Avc { .. } | Carriage::Hevc { .. }), p) => {
                    if let Some(v) = p.video() {
                        m.insert("width".into(), num(f64::from(v.width)));
                        m.insert("height".into(), num(f64::from(v.height)));
                    }
                    let id = match c {
                        Some(Carriage::Hevc { .. }) => f64::from(u32::from_be_bytes(FOURCC_HEVC)),
                        _ => f64::from(CODEC_AVC),
                    };
                    m.insert("videocodecid".into(), num(id));
                    if let Some(r) = self.rates {
                        m.insert("framerate".into(), num(r.frame_rate));
                        m.insert("videodatarate".into(), num(r.video_kbps));
                    }
                }
                (Some(Carriage::Aac { .. }), CodecParams::Aac(a)) => {
                    m.insert("audiocodecid".into(), num(f64::from(SOUND_AAC)));
                    m.insert("audiosamplerate".into(), num(f64::from(a.sample_rate)));
                    m.insert("audiosamplesize".into(), num(16.0));
                    m.insert("stereo".into(), Amf0Value::Boolean(a.channels != 1));
                    m.insert("audiochannels".into(), num(f64::from(a.channels)));
                    if let Some(r) = self.rates {
                        m.insert("audiodatarate".into(), num(r.audio_kbps));
                    }
                }
                (Some(Carriage::G711 { flags }), CodecParams::G711(g)) => {
                    m.insert("audiocodecid".into(), num(f64::from(flags >> 4)));
                    m.insert("audiosamplerate".into(), num(f64::from(g.sample_rate)));
                    m.insert("audiosamplesize".into(), num(16.0));
                    m.insert("stereo".into(), Amf0Value::Boolean(false));
                    m.insert("audiochannels".into(), num(1.0));
                    if let Some(r) = self.rates {
                        m.insert("audiodatarate".into(), num(r.audio_kbps));
                    }
                }
                _ => {}
            }
        }
        vec![
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(m),
        ]
    }
}

/// SoundFormat AAC, 44 kHz, 16-bit, stereo: what the FLV spec requires for every AAC stream.
fn aac_flags() -> u8 {
    (SOUND_AAC << 4) | (3 << 2) | (1 << 1) | 1
}

/// The flags byte of a G.711 tag (what ffmpeg's FLV writer puts: SoundRate 0, which G.711
/// ignores, 16-bit as decoded, mono), or `None` where FLV has no carriage for it.
fn g711_flags(g: &G711Params) -> Option<u8> {
    if g.sample_rate != 8000 || g.channels != 1 {
        return None;
    }
    let format = match g.law {
        G711Law::Alaw => SOUND_ALAW,
        G711Law::Mulaw => SOUND_MULAW,
    };
    Some((format << 4) | (1 << 1))
}

fn put_i24(b: &mut BytesMut, v: i32) {
    let v = v.clamp(-(1 << 23), (1 << 23) - 1);
    b.put_slice(&v.to_be_bytes()[1..]);
}

#[allow(clippy::ptr_arg)] // reason: `rml_amf0::serialize` takes a `&Vec`
fn amf0(values: &Vec<Amf0Value>) -> Bytes {
    // Serializing our own numbers, strings and an object cannot fail.
    Bytes::from(rml_rtmp::rml_amf0::serialize(values).unwrap_or_default())
}

/// A frame's place on the RTMP clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Decode time, RTMP ms (modulo 2³²).
    pub dts: u32,
    /// PTS − DTS in ms (the FLV composition time; never negative here).
    pub composition_ms: i32,
}

/// The RTMP clock of one push: each stream's DTS in ms since the first frame published, plus the
/// initial timestamp, modulo 2³².
#[derive(Debug, Clone)]
pub struct Timeline {
    initial: u32,
    /// The first frame's DTS in µs: every stream's zero.
    origin_us: Option<i64>,
    /// Per stream: (exact DTS in its ticks, ms on the unwrapped clock) of the last frame sent.
    last: Vec<Option<(i64, i64)>>,
    /// Frames whose millisecond collided with the previous one's and were moved 1 ms later.
    bumped: u64,
}

impl Timeline {
    /// A clock for `streams` streams whose first frame will be at `initial` ms.
    pub fn new(streams: usize, initial: u32) -> Self {
        Timeline {
            initial,
            origin_us: None,
            last: vec![None; streams],
            bumped: 0,
        }
    }

    /// Frames moved 1 ms later because two frames of one stream fell on the same millisecond
    /// (only for streams faster than 1,000 frames a second).
    pub fn bumped(&self) -> u64 {
        self.bumped
    }

    /// Makes room for `streams` streams (a live source's tracks grew on a reconnect); the
    /// clock and what was sent stay.
    pub fn ensure_streams(&mut self, streams: usize) {
        if self.last.len() < streams {
            self.last.resize(streams, None);
        }
    }

    fn is_new(&self, f: &Frame) -> bool {
        match self.last.get(f.stream).copied().flatten() {
            Some((dts, _)) => f.dts > dts,
            None => true,
        }
    }

    /// Unwrapped ms of `us` µs on this clock.
    fn ms(&self, us: i64) -> i64 {
        let origin = self.origin_us.unwrap_or(us);
        // Nearest millisecond of the exact time since the origin: no accumulated rounding.
        rescale(us - origin, 1_000_000, 1_000) + i64::from(self.initial)
    }

    fn wrap(ms: i64) -> u32 {
        ms.rem_euclid(1 << 32) as u32
    }

    /// The RTMP time `f` would get, without recording it.
    pub fn peek(&self, f: &Frame) -> u32 {
        Self::wrap(self.ms(rescale(f.dts, f.timescale, 1_000_000)))
    }

    /// Places a frame on the clock and records it as sent. `None` when a frame at or before it
    /// was already sent on this stream (a GOP sent again after a reconnect).
    pub fn stamp(&mut self, f: &Frame) -> Option<Stamp> {
        if !self.is_new(f) {
            return None;
        }
        let dts_us = rescale(f.dts, f.timescale, 1_000_000);
        let pts_us = rescale(f.pts, f.timescale, 1_000_000);
        if self.origin_us.is_none() {
            self.origin_us = Some(dts_us);
        }
        let mut dts = self.ms(dts_us);
        let pts = self.ms(pts_us);
        let slot = self.last.get_mut(f.stream)?;
        if let Some((_, prev)) = *slot
            && dts <= prev
        {
            // Two frames on one millisecond: FLV cannot say so; the later one moves on by 1 ms
            // so decode times stay strictly increasing.
            dts = prev + 1;
            self.bumped += 1;
        }
        *slot = Some((f.dts, dts));
        Some(Stamp {
            dts: Self::wrap(dts),
            composition_ms: (pts - dts).clamp(0, (1 << 23) - 1) as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoopSource;
    use nvrkit_media::{Demuxer, WallTime};

    fn clip(path: &str) -> std::sync::Arc<Clip> {
        let p = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        Clip::load("c", &Demuxer::open(&p).unwrap()).unwrap()
    }

    #[test]
    fn avc_sequence_header_is_the_configuration_record() {
        let c = clip("testdata/h264_high_bframes_longaudio.mp4");
        let mut m = FlvMapper::new(&c, false, 0).unwrap();
        let first = LoopSource::new(c.clone(), WallTime::EPOCH).next().unwrap();
        let tags = m.headers(&first);
        assert_eq!(tags[0].kind, TagKind::Data);
        let video = tags.iter().find(|t| t.kind == TagKind::Video).unwrap();
        let b = &video.body;
        // keyframe|AVC, sequence header, composition time 0, configurationVersion 1.
        assert_eq!(&b[..6], &[0x17, 0, 0, 0, 0, 1]);
        let v = c.tracks()[c.master()].params.video().unwrap();
        let sps = &v.sps[0];
        assert_eq!(
            &b[6..9],
            &sps[1..4],
            "profile, compatibility, level from the SPS"
        );
        assert_eq!(b[9], 0xFF, "4-byte NAL lengths");
        assert_eq!(b[10], 0xE0 | 1, "one SPS");
        assert_eq!(usize::from(u16::from_be_bytes([b[11], b[12]])), sps.len());
        assert_eq!(&b[13..13 + sps.len()], &sps[..]);
        let audio = tags.iter().find(|t| t.kind == TagKind::Audio).unwrap();
        let a = c.tracks().iter().find_map(|t| t.params.aac()).unwrap();
        assert_eq!(&audio.body[..2], &[0xAF, 0]);
        assert_eq!(&audio.body[2..], &a.config[..]);
    }

    #[test]
    fn nalu_tags_carry_the_composition_time() {
        let c = clip("testdata/h264_high_bframes_longaudio.mp4");
        let mut m = FlvMapper::new(&c, false, 0).unwrap();
        let mut saw_b = false;
        for f in LoopSource::new(c.clone(), WallTime::EPOCH).take(300) {
            let t = m.tag(&f).unwrap();
            if f.stream == c.master() {
                let cts = i32::from_be_bytes([0, t.body[2], t.body[3], t.body[4]]);
                let want = rescale(f.pts - f.dts, f.timescale, 1000) as i32;
                assert!((cts - want).abs() <= 1, "cts {cts} vs {want}");
                saw_b |= cts == 0 && !f.keyframe || cts > 0;
                assert_eq!(t.body[0] >> 4, if f.keyframe { 1 } else { 2 });
                assert_eq!(&t.body[5..], &f.data[..], "NAL units follow unchanged");
            } else {
                assert_eq!(&t.body[..2], &[0xAF, 1]);
                assert_eq!(&t.body[2..], &f.data[..]);
            }
        }
        assert!(saw_b);
    }

    #[test]
    fn hevc_is_refused_without_enhanced_rtmp_and_sent_as_hvc1_with_it() {
        let c = clip("testdata/h265_hvc1.mp4");
        let e = FlvMapper::new(&c, false, 0).unwrap_err();
        assert!(e.is_permanent());
        assert!(
            e.to_string().contains("clip c") && e.to_string().contains("hvc1"),
            "{e}"
        );
        let mut m = FlvMapper::new(&c, true, 0).unwrap();
        let first = LoopSource::new(c.clone(), WallTime::EPOCH).next().unwrap();
        let h = m.headers(&first);
        let v = h.iter().find(|t| t.kind == TagKind::Video).unwrap();
        assert_eq!(v.body[0], 0x90, "ex header, keyframe, SequenceStart");
        assert_eq!(&v.body[1..5], b"hvc1");
        assert_eq!(v.body[5], 1, "HEVCDecoderConfigurationRecord version");
        let t = m.tag(&first).unwrap();
        assert_eq!(t.body[0], 0x91, "ex header, keyframe, CodedFrames");
        assert_eq!(&t.body[1..5], b"hvc1");
        assert_eq!(&t.body[8..], &first.data[..]);
    }

    /// Runs a clip through the clock for `laps` loops from `initial`, checking that each
    /// stream's RTMP time strictly increases (modulo 2³²) with the frame step across seams.
    fn check_clock(path: &str, initial: u32, laps: i64) -> u64 {
        let c = clip(path);
        let mut tl = Timeline::new(c.tracks().len(), initial);
        let end = laps * c.period_micros();
        let mut last: Vec<Option<u32>> = vec![None; c.tracks().len()];
        let mut video_steps = std::collections::BTreeSet::new();
        let mut wrapped = false;
        for f in LoopSource::new(c.clone(), WallTime::EPOCH)
            .take_while(|f| f.wall.unwrap().as_micros() < end)
        {
            let s = tl.stamp(&f).unwrap();
            if let Some(prev) = last[f.stream] {
                let step = s.dts.wrapping_sub(prev);
                assert!(step > 0 && step < 1000, "stream {} step {step}", f.stream);
                wrapped |= s.dts < prev;
                if f.stream == c.master() {
                    video_steps.insert(step);
                }
            }
            last[f.stream] = Some(s.dts);
        }
        // The video step is the frame step (to 1 ms), seams included.
        let lo = *video_steps.first().unwrap();
        let hi = *video_steps.last().unwrap();
        assert!(hi - lo <= 1, "video steps {video_steps:?}");
        assert_eq!(tl.bumped(), 0);
        u64::from(wrapped)
    }

    #[test]
    fn clock_is_strictly_increasing_across_seams() {
        check_clock("testdata/h264_ntsc_29.97.mp4", 0, 4);
        check_clock("testdata/h264_high_bframes_longaudio.mp4", 0, 4);
    }

    #[test]
    fn clock_wraps_at_two_to_the_32() {
        // Starts 1.5 s below the wrap: the 32-bit clock wraps inside the first loop.
        let wraps = check_clock("testdata/h264_main_720p25_aac.mp4", u32::MAX - 1500, 3);
        assert_eq!(wraps, 1);
    }

    #[test]
    fn frames_sent_before_a_reconnect_are_not_sent_again() {
        let c = clip("testdata/h264_main_720p25_aac.mp4");
        let mut m = FlvMapper::new(&c, false, 0).unwrap();
        let frames: Vec<Frame> = LoopSource::new(c.clone(), WallTime::EPOCH)
            .take(100)
            .collect();
        for f in &frames[..60] {
            assert!(m.tag(f).is_some());
        }
        // A new connection replays the GOP from its keyframe: the frames already sent are
        // dropped, the rest go on with the same clock.
        assert!(
            frames[..60]
                .iter()
                .all(|f| !m.is_new(f) && m.tag(f).is_none())
        );
        assert!(frames[60..].iter().all(|f| m.is_new(f)));
        let t = m.tag(&frames[60]).unwrap();
        assert_eq!(t.timestamp, m.timeline().peek(&frames[60]));
    }

    #[test]
    fn g711_8k_mono_goes_as_sound_format_8_and_16k_stereo_is_left_out() {
        let c = clip("testdata/h264_pcmu8k.mov");
        let mut m = FlvMapper::new(&c, false, 0).unwrap();
        let first = LoopSource::new(c.clone(), WallTime::EPOCH).next().unwrap();
        let h = m.headers(&first);
        assert!(
            h.iter().all(|t| t.kind != TagKind::Audio),
            "G.711 has no sequence header"
        );
        let Amf0Value::Object(meta) = &m.metadata()[2] else {
            panic!("onMetaData object")
        };
        assert_eq!(meta["audiocodecid"], Amf0Value::Number(8.0));
        assert_eq!(meta["audiosamplerate"], Amf0Value::Number(8000.0));
        let mut audio = 0;
        for f in LoopSource::new(c.clone(), WallTime::EPOCH).take(200) {
            let t = m.tag(&f).unwrap();
            if f.stream != c.master() {
                assert_eq!(t.kind, TagKind::Audio);
                assert_eq!(t.body[0], 0x82, "μ-law, 16-bit, mono");
                assert_eq!(&t.body[1..], &f.data[..]);
                audio += 1;
            }
        }
        assert!(audio > 50);
        let g = |law| G711Params {
            law,
            sample_rate: 8000,
            channels: 1,
        };
        assert_eq!(g711_flags(&g(G711Law::Alaw)), Some(0x72));

        let c = clip("testdata/h264_pcma16k_stereo.mov");
        let mut m = FlvMapper::new(&c, false, 0).unwrap();
        let Amf0Value::Object(meta) = &m.metadata()[2] else {
            panic!("onMetaData object")
        };
        assert!(!meta.contains_key("audiocodecid"));
        for f in LoopSource::new(c.clone(), WallTime::EPOCH).take(100) {
            assert_eq!(m.tag(&f).is_some(), f.stream == c.master(), "{f:?}");
        }
    }

    #[test]
    fn sub_millisecond_steps_are_moved_on() {
        let mut tl = Timeline::new(1, 0);
        let f = |dts: i64| Frame {
            stream: 0,
            timescale: 90_000,
            dts,
            pts: dts,
            duration: 45,
            wall: None,
            keyframe: true,
            discard: false,
            discontinuity: false,
            data: Bytes::new(),
        };
        let a = tl.stamp(&f(0)).unwrap().dts;
        let b = tl.stamp(&f(45)).unwrap().dts; // 0.5 ms later: rounds to 1
        let c = tl.stamp(&f(60)).unwrap().dts; // 0.67 ms: rounds to 1 again, moved to 2
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(tl.bumped(), 1);
    }
}

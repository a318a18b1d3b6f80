//! MP4 muxers for H.264, H.265, AAC and G.711: [`FragmentedMuxer`] (an init segment, then one
//! `moof`+`mdat` per GOP, or per video frame for live streaming: [`FragmentedMuxer::per_frame`]) and [`ProgressiveMuxer`] (one `moov` in front of one `mdat`: a
//! "faststart" file).
//!
//! Both are sans-I/O: they return the bytes to write. The sample entries (`avcC`, `hvcC`,
//! `esds`) are built from [`CodecParams`] alone, so frames from RTSP ingest mux the same way as
//! frames from a demuxed file.
//!
//! Timestamps survive the round trip. A fragmented file keeps every frame's decode time in `tfdt`;
//! where a stream starts at a negative DTS (B-frames after an edit list, primed AAC), the offset
//! goes into an edit list (`media_time`), which is how ffmpeg reads fragments back
//! (`time_offset` in libavformat/mov.c). A progressive file rebases each track to start at zero and
//! says where presentation starts with an edit list, with an empty edit for a track that starts
//! later than the others.

use bytes::{Bytes, BytesMut};
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, AvccExt, Co64, Codec, Ctts, CttsEntry, Dinf, Dref, DrefEntry, Edts,
    Elst, ElstEntry, Encode, Esds, FourCC, Ftyp, Hdlr, Hvc1, HvcCArray, Hvcc, Mdhd, Mdia, Mfhd,
    Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Sowt, Stbl, Stco, Stsc, StscEntry, Stsd, Stss, Stsz,
    StszSamples, Stts, SttsEntry, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples,
    Twos, Url, Visual, Vmhd,
};

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor};

use crate::codec::{CodecParams, G711Law, TrackInfo};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::sps::{H264Sps, H265Sps};
use crate::time::rescale;

/// The movie timescale (`mvhd`) of files we write: edit durations are in milliseconds.
const MOVIE_TIMESCALE: u32 = 1000;

/// `sample_flags` of a sync sample: `sample_depends_on = 2` (does not depend on others).
const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: depends on others, `sample_is_non_sync_sample`.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// An audio-only fragmented stream is cut about this often, in seconds.
const AUDIO_FRAGMENT_SECONDS: i64 = 1;

fn mux_err(stream: usize, what: impl Into<String>) -> Error {
    Error::Mux {
        stream,
        what: what.into(),
    }
}

fn enc<T: Encode>(atom: &T, out: &mut Vec<u8>) -> Result<()> {
    atom.encode(out)
        .map_err(|e| mux_err(0, format!("encoding a box: {e}")))
}

/// Builds the `avcC` decoder configuration record from H.264 parameter sets.
pub fn avcc(sps: &[Bytes], pps: &[Bytes]) -> Result<Avcc> {
    let first = sps
        .first()
        .ok_or_else(|| Error::bitstream("H.264", "no SPS"))?;
    let parsed = H264Sps::parse(first)?;
    // ISO/IEC 14496-15 §5.3.3.1: the extension is present for the High profiles.
    let ext = matches!(parsed.profile_idc, 100 | 110 | 122 | 144).then(|| AvccExt {
        chroma_format: parsed.chroma_format_idc,
        bit_depth_luma: parsed.bit_depth_luma,
        bit_depth_chroma: parsed.bit_depth_chroma,
        sequence_parameter_sets_ext: Vec::new(),
    });
    Ok(Avcc {
        configuration_version: 1,
        avc_profile_indication: first[1],
        profile_compatibility: first[2],
        avc_level_indication: first[3],
        length_size: 4,
        sequence_parameter_sets: sps.iter().map(|s| s.to_vec()).collect(),
        picture_parameter_sets: pps.iter().map(|s| s.to_vec()).collect(),
        ext,
    })
}

/// Builds the `hvcC` decoder configuration record from H.265 parameter sets (the profile, tier
/// and level fields come from the first SPS, as ffmpeg's `ff_isom_write_hvcc` does).
pub fn hvcc(vps: &[Bytes], sps: &[Bytes], pps: &[Bytes]) -> Result<Hvcc> {
    let first = sps
        .first()
        .ok_or_else(|| Error::bitstream("H.265", "no SPS"))?;
    let s = H265Sps::parse(first)?;
    let array = |t: u8, list: &[Bytes]| HvcCArray {
        completeness: true,
        nal_unit_type: t,
        nalus: list.iter().map(|n| n.to_vec()).collect(),
    };
    let constraint = s.constraint_indicator_flags.to_be_bytes();
    Ok(Hvcc {
        configuration_version: 1,
        general_profile_space: s.profile_space,
        general_tier_flag: s.tier_flag,
        general_profile_idc: s.profile_idc,
        general_profile_compatibility_flags: s.profile_compatibility_flags.to_be_bytes(),
        general_constraint_indicator_flags: constraint[2..8].try_into().expect("6 bytes"),
        general_level_idc: s.level_idc,
        min_spatial_segmentation_idc: 0,
        parallelism_type: 0,
        chroma_format_idc: s.chroma_format_idc,
        bit_depth_luma_minus8: s.bit_depth_luma - 8,
        bit_depth_chroma_minus8: s.bit_depth_chroma - 8,
        avg_frame_rate: 0,
        constant_frame_rate: 0,
        num_temporal_layers: s.max_sub_layers,
        temporal_id_nested: s.temporal_id_nesting,
        length_size_minus_one: 3,
        arrays: vec![array(32, vps), array(33, sps), array(34, pps)],
    })
}

fn sample_entry(track: &TrackInfo) -> Result<Codec> {
    Ok(match &track.params {
        CodecParams::H264(v) => Codec::Avc1(Avc1 {
            visual: visual(v.width, v.height, track.stream)?,
            avcc: avcc(&v.sps, &v.pps)?,
            ..Default::default()
        }),
        CodecParams::H265(v) => Codec::Hvc1(Hvc1 {
            visual: visual(v.width, v.height, track.stream)?,
            hvcc: hvcc(&v.vps, &v.sps, &v.pps)?,
            ..Default::default()
        }),
        CodecParams::Aac(a) => Codec::Mp4a(Mp4a {
            audio: Audio {
                data_reference_index: 1,
                channel_count: u16::from(a.channels.max(1)),
                sample_size: 16,
                sample_rate: u16::try_from(a.sample_rate).unwrap_or(0).into(),
            },
            esds: Esds {
                es_desc: EsDescriptor {
                    es_id: u16::try_from(track.track_id).unwrap_or(1),
                    dec_config: DecoderConfig {
                        object_type_indication: 0x40, // MPEG-4 Audio
                        stream_type: 5,               // audio stream
                        up_stream: 0,
                        dec_specific: Some(DecoderSpecific {
                            profile: a.object_type,
                            freq_index: 0,
                            chan_conf: a.channels,
                            raw: a.config.to_vec(),
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            btrt: None,
            taic: None,
        }),
        CodecParams::G711(g) => {
            // mp4-atom 0.17 cannot encode a `ulaw`/`alaw` entry, but its `sowt`/`twos` entries
            // are the same version-0 sound description byte for byte: written as those, and
            // renamed in the encoded bytes by `name_g711_entries` (one placeholder per law).
            let audio = Audio {
                data_reference_index: 1,
                channel_count: u16::from(g.channels.max(1)),
                sample_size: 16, // as ffmpeg writes it: the decoded size
                sample_rate: u16::try_from(g.sample_rate)
                    .map_err(|_| {
                        mux_err(
                            track.stream,
                            "G.711 above 65,535 Hz needs a version-2 sound description",
                        )
                    })?
                    .into(),
            };
            match g.law {
                G711Law::Mulaw => Codec::Sowt(Sowt {
                    audio,
                    pcmc: None,
                    chnl: None,
                    btrt: None,
                }),
                G711Law::Alaw => Codec::Twos(Twos {
                    audio,
                    pcmc: None,
                    chnl: None,
                    btrt: None,
                }),
            }
        }
    })
}

/// Renames the placeholder G.711 sample entries of an encoded `moov` (see `sample_entry`):
/// the only entry of an `stsd`, 36 bytes long (a bare version-0 sound description), `sowt` →
/// `ulaw` and `twos` → `alaw`. Nothing else we write has that shape.
fn name_g711_entries(moov: &mut [u8]) {
    const ENTRY_LEN: [u8; 4] = 36u32.to_be_bytes();
    let mut i = 0;
    while let Some(p) = moov[i..].windows(4).position(|w| w == b"stsd") {
        let at = i + p;
        // 'stsd', version and flags 0, one entry, the entry's size and fourcc.
        let entry = at + 12;
        if moov.len() >= entry + 8
            && moov[at + 4..entry] == [0, 0, 0, 0, 0, 0, 0, 1]
            && moov[entry..entry + 4] == ENTRY_LEN
        {
            let fourcc = &mut moov[entry + 4..entry + 8];
            if *fourcc == <[u8; 4]>::from(Sowt::KIND) {
                fourcc.copy_from_slice(b"ulaw");
            } else if *fourcc == <[u8; 4]>::from(Twos::KIND) {
                fourcc.copy_from_slice(b"alaw");
            }
        }
        i = at + 4;
    }
}

fn visual(width: u32, height: u32, stream: usize) -> Result<Visual> {
    let w = u16::try_from(width).map_err(|_| mux_err(stream, "width does not fit MP4"))?;
    let h = u16::try_from(height).map_err(|_| mux_err(stream, "height does not fit MP4"))?;
    Ok(Visual {
        width: w,
        height: h,
        ..Default::default()
    })
}

/// A `trak` with the given sample table and edit list.
fn trak(
    track: &TrackInfo,
    track_id: u32,
    stbl_tables: Stbl,
    edits: Vec<ElstEntry>,
) -> Result<Trak> {
    let video = track.params.video();
    let tkhd = Tkhd {
        track_id,
        enabled: true,
        in_movie: true,
        volume: if video.is_some() {
            0u8.into()
        } else {
            1u8.into()
        },
        width: video.map_or(0, |v| v.width.min(65535) as u16).into(),
        height: video.map_or(0, |v| v.height.min(65535) as u16).into(),
        ..Default::default()
    };
    let handler = if video.is_some() { b"vide" } else { b"soun" };
    let minf = Minf {
        vmhd: video.map(|_| Vmhd::default()),
        smhd: video.is_none().then(Smhd::default),
        dinf: Dinf {
            dref: Dref {
                entries: vec![DrefEntry::Url(Url::default())],
            },
        },
        stbl: Stbl {
            stsd: Stsd {
                codecs: vec![sample_entry(track)?],
            },
            ..stbl_tables
        },
        ..Default::default()
    };
    Ok(Trak {
        tkhd,
        edts: (!edits.is_empty()).then_some(Edts {
            elst: Some(Elst { entries: edits }),
        }),
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.timescale,
                language: track.language.clone().unwrap_or_else(|| "und".into()),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(handler),
                name: if video.is_some() {
                    "VideoHandler"
                } else {
                    "SoundHandler"
                }
                .into(),
            },
            minf,
        },
        ..Default::default()
    })
}

fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Ftyp {
    Ftyp {
        major_brand: FourCC::new(major),
        minor_version: 0x200,
        compatible_brands: compatible.iter().map(|b| FourCC::new(b)).collect(),
    }
}

fn validate_tracks(tracks: &[TrackInfo]) -> Result<()> {
    if tracks.is_empty() {
        return Err(mux_err(0, "no tracks"));
    }
    for (i, t) in tracks.iter().enumerate() {
        if t.timescale == 0 {
            return Err(mux_err(i, "timescale 0"));
        }
        // Building the sample entry checks the parameter sets early.
        sample_entry(t)?;
    }
    Ok(())
}

fn check_frame(tracks: &[TrackInfo], last_dts: &[Option<i64>], f: &Frame) -> Result<()> {
    let t = tracks
        .get(f.stream)
        .ok_or_else(|| mux_err(f.stream, "no such stream"))?;
    if f.timescale != t.timescale {
        return Err(mux_err(
            f.stream,
            format!(
                "frame timescale {} but track timescale {}",
                f.timescale, t.timescale
            ),
        ));
    }
    if let Some(prev) = last_dts[f.stream]
        && f.dts <= prev
    {
        return Err(mux_err(
            f.stream,
            format!("DTS {} does not increase (previous {prev})", f.dts),
        ));
    }
    if u32::try_from(f.data.len()).is_err() {
        return Err(mux_err(f.stream, "frame larger than 4 GiB"));
    }
    Ok(())
}

/// The longest fragment [`FragmentedMuxer::new`] holds: a stream with no keyframe for longer
/// (one IDR then only P-frames: intra refresh, or a hostile camera) is cut here, at a non-sync
/// frame, instead of being held in memory without end.
pub const MAX_FRAGMENT_SECONDS: i64 = 10;

/// The most bytes one fragment holds before it is cut (at the next frame of the first video
/// stream, or at any frame once twice this is pending).
pub const MAX_FRAGMENT_BYTES: usize = 16 << 20;

/// Writes fragmented MP4: an init segment (`ftyp`+`moov`), then a `moof`+`mdat` per GOP of the
/// first video stream (about one per second for audio-only input), cut also after
/// [`MAX_FRAGMENT_SECONDS`] or [`MAX_FRAGMENT_BYTES`] without a keyframe: such a fragment starts
/// with a non-sync frame (its `trun` flags say so), which fMP4 allows; only the first fragment
/// must start at a keyframe (the caller's first video frame).
///
/// The init segment comes out with the first fragment, because the edit lists in it depend on
/// the first frames.
///
/// Every complete fragment of a file cut short (power loss, crash) stays readable:
/// [`crate::Demuxer`] reads all of them.
///
/// [`FragmentedMuxer::per_frame`] cuts before every frame of the first video stream instead,
/// for a live viewer (Media Source Extensions play a fragment as soon as it is appended).
#[derive(Debug)]
pub struct FragmentedMuxer {
    tracks: Vec<TrackInfo>,
    per_frame: bool,
    pending: Vec<Vec<Frame>>,
    /// Bytes of the frames pending.
    pending_bytes: usize,
    last_dts: Vec<Option<i64>>,
    /// Per track: added to every DTS so `tfdt` is never negative; undone by the edit list.
    offset: Vec<Option<i64>>,
    cut_stream: Option<usize>,
    sequence: u32,
    init: Option<Bytes>,
}

impl FragmentedMuxer {
    /// A muxer for these streams; frames carry their index in `tracks` as `Frame::stream`.
    pub fn new(tracks: &[TrackInfo]) -> Result<Self> {
        validate_tracks(tracks)?;
        let n = tracks.len();
        Ok(FragmentedMuxer {
            tracks: tracks.to_vec(),
            per_frame: false,
            pending: vec![Vec::new(); n],
            pending_bytes: 0,
            last_dts: vec![None; n],
            offset: vec![None; n],
            cut_stream: tracks.iter().position(|t| t.params.is_video()),
            sequence: 0,
            init: None,
        })
    }

    /// A muxer that writes one fragment per frame of the first video stream (with the other
    /// streams' frames that arrived meanwhile), for live viewing. A frame comes out when the next
    /// video frame is pushed, so its duration is the exact distance to the next decode time: one
    /// frame interval of latency. The first fragment waits until every stream has sent a frame
    /// (the init segment's edit lists need their first decode times), at most one GOP. Without a
    /// video stream it cuts as [`FragmentedMuxer::new`] does.
    pub fn per_frame(tracks: &[TrackInfo]) -> Result<Self> {
        let mut m = Self::new(tracks)?;
        m.per_frame = true;
        Ok(m)
    }

    /// The init segment (`ftyp` + `moov`), once the first fragment has been produced.
    pub fn init_segment(&self) -> Option<&Bytes> {
        self.init.as_ref()
    }

    /// Adds a frame (decode order within its stream). Returns the bytes to append to the
    /// output: empty, or a completed fragment (preceded by the init segment the first time).
    pub fn push(&mut self, frame: Frame) -> Result<Bytes> {
        check_frame(&self.tracks, &self.last_dts, &frame)?;
        let cut = match self.cut_stream {
            Some(v) => {
                // Per frame, the first cut waits until every stream has a frame (or the next
                // GOP begins): the init segment's edit lists need each stream's first DTS.
                let per_frame = self.per_frame
                    && (self.init.is_some() || self.pending.iter().all(|p| !p.is_empty()));
                // No keyframe for too long, or too many bytes: cut anyway.
                let too_long = self.pending[v].first().is_some_and(|first| {
                    frame.dts.saturating_sub(first.dts)
                        >= MAX_FRAGMENT_SECONDS.saturating_mul(i64::from(frame.timescale))
                });
                let too_big = self.pending_bytes >= MAX_FRAGMENT_BYTES;
                (frame.stream == v
                    && (frame.keyframe || per_frame || too_long || too_big)
                    && !self.pending[v].is_empty())
                    || self.pending_bytes >= 2 * MAX_FRAGMENT_BYTES
            }
            None => self.pending.iter().flatten().next().is_some_and(|first| {
                let span = rescale(frame.dts, frame.timescale, first.timescale) - first.dts;
                span >= AUDIO_FRAGMENT_SECONDS * i64::from(first.timescale)
                    && frame.stream == first.stream
            }),
        };
        let out = if cut { self.fragment()? } else { Bytes::new() };
        self.last_dts[frame.stream] = Some(frame.dts);
        self.pending_bytes += frame.data.len();
        self.pending[frame.stream].push(frame);
        Ok(out)
    }

    /// Writes out what is pending. Returns the remaining bytes (the init segment too, if no
    /// fragment was produced yet).
    pub fn finish(&mut self) -> Result<Bytes> {
        if self.pending.iter().all(Vec::is_empty) {
            if self.init.is_none() {
                let init = self.build_init()?;
                self.init = Some(init.clone());
                return Ok(init);
            }
            return Ok(Bytes::new());
        }
        self.fragment()
    }

    fn build_init(&mut self) -> Result<Bytes> {
        let mut traks = Vec::new();
        let mut trex = Vec::new();
        for (i, t) in self.tracks.iter().enumerate() {
            let id = i as u32 + 1;
            let off = self.offset[i].unwrap_or(0);
            // segment_duration 0 in a fragmented file: the edit lasts to the end of the media.
            let edits = if off > 0 {
                vec![ElstEntry {
                    segment_duration: 0,
                    media_time: Some(off as u64),
                    media_rate: 1i16.into(),
                }]
            } else {
                Vec::new()
            };
            traks.push(trak(t, id, Stbl::default(), edits)?);
            trex.push(Trex {
                track_id: id,
                default_sample_description_index: 1,
                ..Default::default()
            });
        }
        let moov = Moov {
            mvhd: Mvhd {
                timescale: MOVIE_TIMESCALE,
                next_track_id: self.tracks.len() as u32 + 1,
                ..Default::default()
            },
            mvex: Some(Mvex { mehd: None, trex }),
            trak: traks,
            ..Default::default()
        };
        let mut out = Vec::new();
        enc(&ftyp(b"iso6", &[b"iso6", b"iso5", b"mp41"]), &mut out)?;
        let at = out.len();
        enc(&moov, &mut out)?;
        name_g711_entries(&mut out[at..]);
        Ok(Bytes::from(out))
    }

    fn fragment(&mut self) -> Result<Bytes> {
        let mut out = BytesMut::new();
        if self.init.is_none() {
            for (i, frames) in self.pending.iter().enumerate() {
                // The first frames fix each track's offset: negative decode times move to zero.
                let first = frames.first().map_or(0, |f| f.dts);
                self.offset[i] = Some((-first).max(0));
            }
            let init = self.build_init()?;
            out.extend_from_slice(&init);
            self.init = Some(init);
        }
        self.sequence += 1;
        let mut trafs = Vec::new();
        let mut payload_sizes = Vec::new();
        for (i, frames) in self.pending.iter().enumerate() {
            let Some(first) = frames.first() else {
                continue;
            };
            // A track that first appears after the init segment starts at its own offset 0.
            let off = *self.offset[i].get_or_insert(0);
            let base = u64::try_from(first.dts + off)
                .map_err(|_| mux_err(i, "DTS before the stream's first fragment"))?;
            let entries = frames
                .iter()
                .enumerate()
                .map(|(k, f)| {
                    // Durations come from the next DTS so decode times stay exact even when
                    // a frame's own duration field disagrees.
                    let duration = frames
                        .get(k + 1)
                        .map_or(i64::from(f.duration), |n| n.dts - f.dts);
                    TrunEntry {
                        duration: Some(duration.clamp(0, i64::from(u32::MAX)) as u32),
                        size: Some(f.data.len() as u32),
                        flags: Some(if f.keyframe {
                            FLAGS_SYNC
                        } else {
                            FLAGS_NON_SYNC
                        }),
                        cts: Some(f.pts - f.dts),
                    }
                })
                .collect();
            payload_sizes.push(frames.iter().map(|f| f.data.len()).sum::<usize>());
            trafs.push(Traf {
                tfhd: Tfhd {
                    track_id: i as u32 + 1,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: base,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: TrunSamples::Explicit(entries),
                }],
                ..Default::default()
            });
        }
        let mut moof = Moof {
            mfhd: Mfhd {
                sequence_number: self.sequence,
            },
            traf: trafs,
        };
        // Encode once to learn the moof size, then point each trun at its data in the mdat.
        let mut probe = Vec::new();
        enc(&moof, &mut probe)?;
        let mut data_offset = probe.len() + 8;
        for (traf, size) in moof.traf.iter_mut().zip(&payload_sizes) {
            traf.trun[0].data_offset = Some(
                i32::try_from(data_offset).map_err(|_| mux_err(0, "fragment larger than 2 GiB"))?,
            );
            data_offset += size;
        }
        let mut moof_bytes = Vec::with_capacity(probe.len());
        enc(&moof, &mut moof_bytes)?;
        debug_assert_eq!(moof_bytes.len(), probe.len());
        out.extend_from_slice(&moof_bytes);
        let mdat_len: usize = payload_sizes.iter().sum::<usize>() + 8;
        let mdat_len =
            u32::try_from(mdat_len).map_err(|_| mux_err(0, "fragment larger than 4 GiB"))?;
        out.extend_from_slice(&mdat_len.to_be_bytes());
        out.extend_from_slice(b"mdat");
        for frames in &mut self.pending {
            for f in frames.drain(..) {
                out.extend_from_slice(&f.data);
            }
        }
        self.pending_bytes = 0;
        Ok(out.freeze())
    }
}

/// Writes a progressive ("faststart") MP4: `ftyp`, `moov`, then one `mdat`, which any player
/// and editor opens. Frames are held (by reference, not copied) until [`ProgressiveMuxer::finish`].
#[derive(Debug)]
pub struct ProgressiveMuxer {
    tracks: Vec<TrackInfo>,
    frames: Vec<Frame>,
    last_dts: Vec<Option<i64>>,
}

impl ProgressiveMuxer {
    /// A muxer for these streams; frames carry their index in `tracks` as `Frame::stream`.
    pub fn new(tracks: &[TrackInfo]) -> Result<Self> {
        validate_tracks(tracks)?;
        Ok(ProgressiveMuxer {
            tracks: tracks.to_vec(),
            frames: Vec::new(),
            last_dts: vec![None; tracks.len()],
        })
    }

    /// Adds a frame (decode order within its stream; streams interleaved as they should be in
    /// the file).
    pub fn push(&mut self, frame: Frame) -> Result<()> {
        check_frame(&self.tracks, &self.last_dts, &frame)?;
        self.last_dts[frame.stream] = Some(frame.dts);
        self.frames.push(frame);
        Ok(())
    }

    /// The whole file.
    pub fn finish(self) -> Result<Bytes> {
        let n = self.tracks.len();
        let per: Vec<Vec<&Frame>> = (0..n)
            .map(|s| self.frames.iter().filter(|f| f.stream == s).collect())
            .collect();

        // Presentation start of each track, and the earliest of them, in microseconds.
        let starts: Vec<Option<i64>> = per
            .iter()
            .map(|fs| fs.iter().filter(|f| !f.discard).map(|f| f.pts).min())
            .collect();
        let origin_us = starts
            .iter()
            .zip(&self.tracks)
            .filter_map(|(s, t)| s.map(|s| rescale(s, t.timescale, 1_000_000)))
            .min()
            .unwrap_or(0);

        // Chunks: runs of consecutive frames of one track in file order.
        let mut chunks: Vec<Vec<(u64, u32)>> = vec![Vec::new(); n]; // (offset in mdat, samples)
        let mut chunk_runs: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut pos = 0u64;
        let mut prev: Option<usize> = None;
        for f in &self.frames {
            if prev != Some(f.stream) {
                chunks[f.stream].push((pos, 0));
            }
            if let Some(c) = chunks[f.stream].last_mut() {
                c.1 += 1;
            }
            pos += f.data.len() as u64;
            prev = Some(f.stream);
        }
        for (s, c) in chunks.iter().enumerate() {
            chunk_runs[s] = c.iter().map(|&(_, k)| k).collect();
        }

        let build = |mdat_start: u64| -> Result<Moov> {
            let mut traks = Vec::new();
            let mut movie_duration = 0u64;
            for (s, track) in self.tracks.iter().enumerate() {
                let fs = &per[s];
                let Some(first) = fs.first() else {
                    continue;
                };
                let d0 = first.dts;
                let mut stts: Vec<SttsEntry> = Vec::new();
                for (k, f) in fs.iter().enumerate() {
                    let delta = fs
                        .get(k + 1)
                        .map_or(i64::from(f.duration), |n| n.dts - f.dts)
                        .clamp(0, i64::from(u32::MAX)) as u32;
                    match stts.last_mut() {
                        Some(e) if e.sample_delta == delta => e.sample_count += 1,
                        _ => stts.push(SttsEntry {
                            sample_count: 1,
                            sample_delta: delta,
                        }),
                    }
                }
                let mut ctts: Vec<CttsEntry> = Vec::new();
                for f in fs {
                    let off = f.pts - f.dts;
                    match ctts.last_mut() {
                        Some(e) if e.sample_offset == off => e.sample_count += 1,
                        _ => ctts.push(CttsEntry {
                            sample_count: 1,
                            sample_offset: off,
                        }),
                    }
                }
                let has_ctts = ctts.iter().any(|e| e.sample_offset != 0);
                let all_key = fs.iter().all(|f| f.keyframe);
                let stss = (!all_key).then(|| Stss {
                    entries: fs
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.keyframe)
                        .map(|(k, _)| k as u32 + 1)
                        .collect(),
                });
                let mut stsc: Vec<StscEntry> = Vec::new();
                for (c, &k) in chunk_runs[s].iter().enumerate() {
                    if stsc.last().map(|e| e.samples_per_chunk) != Some(k) {
                        stsc.push(StscEntry {
                            first_chunk: c as u32 + 1,
                            samples_per_chunk: k,
                            sample_description_index: 1,
                        });
                    }
                }
                let offsets: Vec<u64> = chunks[s].iter().map(|&(o, _)| o + mdat_start).collect();
                let (stco, co64) = if offsets.last().is_some_and(|&o| o > u64::from(u32::MAX)) {
                    (None, Some(Co64 { entries: offsets }))
                } else {
                    (
                        Some(Stco {
                            entries: offsets.iter().map(|&o| o as u32).collect(),
                        }),
                        None,
                    )
                };
                let tables = Stbl {
                    stts: Stts { entries: stts },
                    ctts: has_ctts.then_some(Ctts { entries: ctts }),
                    stss,
                    stsc: Stsc { entries: stsc },
                    stsz: Stsz {
                        samples: StszSamples::Different {
                            sizes: fs.iter().map(|f| f.data.len() as u32).collect(),
                        },
                    },
                    stco,
                    co64,
                    ..Default::default()
                };
                // The edit: presentation starts at the first presented PTS; a track that starts
                // later than the earliest one gets an empty edit for the difference.
                let presented = fs.iter().filter(|f| !f.discard);
                let start = starts[s].unwrap_or(d0);
                let end = presented.map(|f| f.end_pts()).max().unwrap_or(start);
                let mut edits = Vec::new();
                let delay_us = rescale(start, track.timescale, 1_000_000) - origin_us;
                let delay = rescale(delay_us, 1_000_000, MOVIE_TIMESCALE);
                if delay > 0 {
                    edits.push(ElstEntry {
                        segment_duration: delay as u64,
                        media_time: None,
                        media_rate: 1i16.into(),
                    });
                }
                let span = rescale(end - start, track.timescale, MOVIE_TIMESCALE).max(0) as u64;
                let media_time = start - d0;
                if media_time != 0 || delay > 0 || fs.iter().any(|f| f.discard) {
                    edits.push(ElstEntry {
                        segment_duration: span,
                        media_time: Some(media_time.max(0) as u64),
                        media_rate: 1i16.into(),
                    });
                }
                movie_duration = movie_duration.max(span + delay.max(0) as u64);
                let mut t = trak(track, s as u32 + 1, tables, edits)?;
                t.tkhd.duration = span + delay.max(0) as u64;
                t.mdia.mdhd.duration = fs.last().map_or(0, |l| (l.end_dts() - d0).max(0) as u64);
                traks.push(t);
            }
            Ok(Moov {
                mvhd: Mvhd {
                    timescale: MOVIE_TIMESCALE,
                    duration: movie_duration,
                    next_track_id: n as u32 + 1,
                    ..Default::default()
                },
                trak: traks,
                ..Default::default()
            })
        };

        let mut head = Vec::new();
        enc(
            &ftyp(b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"]),
            &mut head,
        )?;
        // The moov's size depends on the offsets in it: assume 64-bit mdat header room, build
        // with 32-bit offsets, and rebuild once if the first guess moved the data.
        let mdat_payload: u64 = self.frames.iter().map(|f| f.data.len() as u64).sum();
        let large = mdat_payload + 8 > u64::from(u32::MAX);
        let mdat_header = if large { 16 } else { 8 };
        let mut moov_len = 0usize;
        let mut moov_bytes = Vec::new();
        for _ in 0..3 {
            let start = (head.len() + moov_len + mdat_header) as u64;
            moov_bytes.clear();
            enc(&build(start)?, &mut moov_bytes)?;
            if moov_bytes.len() == moov_len {
                break;
            }
            moov_len = moov_bytes.len();
        }
        name_g711_entries(&mut moov_bytes);
        let mut out = BytesMut::with_capacity(
            head.len() + moov_bytes.len() + mdat_header + mdat_payload as usize,
        );
        out.extend_from_slice(&head);
        out.extend_from_slice(&moov_bytes);
        if large {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(b"mdat");
            out.extend_from_slice(&(mdat_payload + 16).to_be_bytes());
        } else {
            out.extend_from_slice(&((mdat_payload + 8) as u32).to_be_bytes());
            out.extend_from_slice(b"mdat");
        }
        for f in &self.frames {
            out.extend_from_slice(&f.data);
        }
        Ok(out.freeze())
    }
}

//! Codec parameters ([`CodecParams`]) and track descriptions ([`TrackInfo`]).

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::nal::VideoCodec;
use crate::sps::{BitReader, H264Sps, H265Sps};

/// Everything a decoder, packetizer or muxer needs to know about a stream besides its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecParams {
    /// H.264 / AVC.
    H264(VideoParams),
    /// H.265 / HEVC.
    H265(VideoParams),
    /// AAC (MPEG-4 Audio), raw access units.
    Aac(AacParams),
    /// G.711 (ITU-T G.711) μ-law or A-law: one byte per sample and channel, interleaved; a
    /// frame is a run of whole samples (20 ms as the demuxer groups them).
    G711(G711Params),
}

/// The companding law of a G.711 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// μ-law (North America, Japan): QuickTime `ulaw`, RTP `PCMU`, FLV SoundFormat 8.
    Mulaw,
    /// A-law (Europe, the rest): QuickTime `alaw`, RTP `PCMA`, FLV SoundFormat 7.
    Alaw,
}

/// Parameters of a G.711 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct G711Params {
    /// μ-law or A-law.
    pub law: G711Law,
    /// Sampling rate in Hz (8,000 for telephony and most cameras).
    pub sample_rate: u32,
    /// Channel count, at least 1; samples of the channels are interleaved.
    pub channels: u8,
}

impl G711Params {
    /// Samples (per channel) in one packet of `millis` milliseconds, at least 1: 160 for 20 ms
    /// at 8 kHz.
    pub fn samples_in(&self, millis: u32) -> u32 {
        (u64::from(self.sample_rate) * u64::from(millis) / 1000).clamp(1, u64::from(u32::MAX))
            as u32
    }

    /// Bytes of one sample of every channel.
    pub fn bytes_per_sample(&self) -> u32 {
        u32::from(self.channels.max(1))
    }

    /// The RTP encoding name (RFC 3551 §4.5.14): `PCMU` or `PCMA`.
    pub fn rtp_name(&self) -> &'static str {
        match self.law {
            G711Law::Mulaw => "PCMU",
            G711Law::Alaw => "PCMA",
        }
    }

    /// The static RTP payload type (RFC 3551 Table 4: 0 for PCMU, 8 for PCMA), which means
    /// 8 kHz mono only; `None` for any other rate or channel count, which needs a dynamic type
    /// and an `rtpmap`.
    pub fn static_payload_type(&self) -> Option<u8> {
        if self.sample_rate != 8000 || self.channels != 1 {
            return None;
        }
        Some(match self.law {
            G711Law::Mulaw => 0,
            G711Law::Alaw => 8,
        })
    }
}

/// Parameters of an H.264 or H.265 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoParams {
    /// Displayed width in pixels, from the SPS.
    pub width: u32,
    /// Displayed height in pixels, from the SPS.
    pub height: u32,
    /// `profile_idc` (H.264) or `general_profile_idc` (H.265).
    pub profile: u8,
    /// `level_idc` (H.264) or `general_level_idc` (H.265).
    pub level: u8,
    /// Video parameter sets (H.265 only), without length prefix or start code.
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
}

/// Parameters of an AAC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacParams {
    /// The AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), as carried in `esds` and in RTSP's
    /// `config=` (RFC 3640).
    pub config: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS).
    pub object_type: u8,
    /// Sampling rate of the core decoder in Hz.
    pub sample_rate: u32,
    /// Channel count (from the channel configuration; 0 means "defined in the stream").
    pub channels: u8,
    /// PCM samples per access unit: 1024, or 960 when `frameLengthFlag` is set.
    pub frame_length: u32,
}

const AAC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

impl AacParams {
    /// Parses an AudioSpecificConfig.
    pub fn parse(config: Bytes) -> Result<Self> {
        const C: &str = "AAC";
        let mut r = BitReader::new(&config, C);
        let object_type = |r: &mut BitReader<'_>| -> Result<u8> {
            let t = r.bits(5)? as u8;
            Ok(if t == 31 { 32 + r.bits(6)? as u8 } else { t })
        };
        let rate = |r: &mut BitReader<'_>| -> Result<u32> {
            let i = r.bits(4)? as usize;
            if i == 15 {
                return Ok(r.bits(24)? as u32);
            }
            AAC_RATES
                .get(i)
                .copied()
                .ok_or_else(|| Error::bitstream(C, format!("reserved samplingFrequencyIndex {i}")))
        };
        let mut aot = object_type(&mut r)?;
        let sample_rate = rate(&mut r)?;
        let channels = r.bits(4)? as u8;
        if aot == 5 || aot == 29 {
            // Explicit SBR/PS signalling: an extension rate, then the core object type.
            rate(&mut r)?;
            aot = object_type(&mut r)?;
        }
        // GASpecificConfig's frameLengthFlag (ISO/IEC 14496-3 §4.4.1): 960-sample frames.
        let has_ga_config = matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23);
        let frame_length = if has_ga_config && r.bit()? { 960 } else { 1024 };
        if sample_rate == 0 {
            return Err(Error::bitstream(C, "sampling rate 0"));
        }
        Ok(AacParams {
            object_type: aot,
            sample_rate,
            channels,
            frame_length,
            config,
        })
    }
}

impl VideoParams {
    /// Builds H.264 parameters from its SPS and PPS NAL units (the first SPS gives the size).
    pub fn h264(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<Self> {
        let first = sps
            .first()
            .ok_or_else(|| Error::bitstream("H.264", "no SPS"))?;
        let parsed = H264Sps::parse(first)?;
        Ok(VideoParams {
            width: parsed.width,
            height: parsed.height,
            profile: parsed.profile_idc,
            level: parsed.level_idc,
            vps: Vec::new(),
            sps,
            pps,
        })
    }

    /// Builds H.265 parameters from its VPS, SPS and PPS NAL units.
    pub fn h265(vps: Vec<Bytes>, sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<Self> {
        let first = sps
            .first()
            .ok_or_else(|| Error::bitstream("H.265", "no SPS"))?;
        let parsed = H265Sps::parse(first)?;
        Ok(VideoParams {
            width: parsed.width,
            height: parsed.height,
            profile: parsed.profile_idc,
            level: parsed.level_idc,
            vps,
            sps,
            pps,
        })
    }

    /// All parameter sets in the order a decoder wants them (VPS, SPS, PPS).
    pub fn parameter_sets(&self) -> impl Iterator<Item = &Bytes> {
        self.vps.iter().chain(&self.sps).chain(&self.pps)
    }
}

impl CodecParams {
    /// The codec name as ffprobe prints it: `h264`, `hevc`, `aac`, `pcm_mulaw`, `pcm_alaw`.
    pub fn name(&self) -> &'static str {
        match self {
            CodecParams::H264(_) => "h264",
            CodecParams::H265(_) => "hevc",
            CodecParams::Aac(_) => "aac",
            CodecParams::G711(g) => match g.law {
                G711Law::Mulaw => "pcm_mulaw",
                G711Law::Alaw => "pcm_alaw",
            },
        }
    }

    /// The video parameters, for a video stream.
    pub fn video(&self) -> Option<&VideoParams> {
        match self {
            CodecParams::H264(v) | CodecParams::H265(v) => Some(v),
            CodecParams::Aac(_) | CodecParams::G711(_) => None,
        }
    }

    /// The G.711 parameters, for a G.711 stream.
    pub fn g711(&self) -> Option<&G711Params> {
        match self {
            CodecParams::G711(g) => Some(g),
            _ => None,
        }
    }

    /// The audio sampling rate, for an audio stream.
    pub fn sample_rate(&self) -> Option<u32> {
        match self {
            CodecParams::Aac(a) => Some(a.sample_rate),
            CodecParams::G711(g) => Some(g.sample_rate),
            _ => None,
        }
    }

    /// The AAC parameters, for an audio stream.
    pub fn aac(&self) -> Option<&AacParams> {
        match self {
            CodecParams::Aac(a) => Some(a),
            _ => None,
        }
    }

    /// The NAL flavour, for a video stream.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        match self {
            CodecParams::H264(_) => Some(VideoCodec::H264),
            CodecParams::H265(_) => Some(VideoCodec::H265),
            CodecParams::Aac(_) | CodecParams::G711(_) => None,
        }
    }

    /// True for H.264 and H.265.
    pub fn is_video(&self) -> bool {
        self.video().is_some()
    }

    /// The RFC 6381 `codecs` string (`avc1.4D401F`, `hvc1.1.6.L93.B0`, `mp4a.40.2`, and the
    /// sample entry `ulaw`/`alaw` for G.711), as used in HLS/DASH manifests and MIME types.
    pub fn rfc6381(&self) -> String {
        match self {
            CodecParams::H264(v) => match v.sps.first() {
                Some(sps) if sps.len() >= 4 => {
                    format!("avc1.{:02X}{:02X}{:02X}", sps[1], sps[2], sps[3])
                }
                _ => "avc1".to_owned(),
            },
            CodecParams::H265(v) => match v.sps.first().map(|s| H265Sps::parse(s)) {
                Some(Ok(s)) => {
                    let space = ["", "A", "B", "C"][usize::from(s.profile_space & 3)];
                    // ISO/IEC 14496-15 Annex E: compatibility flags bit-reversed, in hex.
                    let compat = s.profile_compatibility_flags.reverse_bits();
                    let tier = if s.tier_flag { 'H' } else { 'L' };
                    let mut out = format!(
                        "hvc1.{space}{}.{compat:X}.{tier}{}",
                        s.profile_idc, s.level_idc
                    );
                    let mut constraints: Vec<u8> = s
                        .constraint_indicator_flags
                        .to_be_bytes()
                        .into_iter()
                        .skip(2)
                        .collect();
                    while constraints.last() == Some(&0) {
                        constraints.pop();
                    }
                    for c in constraints {
                        out.push_str(&format!(".{c:X}"));
                    }
                    out
                }
                _ => "hvc1".to_owned(),
            },
            CodecParams::Aac(a) => format!("mp4a.40.{}", a.object_type),
            CodecParams::G711(g) => match g.law {
                G711Law::Mulaw => "ulaw".to_owned(),
                G711Law::Alaw => "alaw".to_owned(),
            },
        }
    }
}

/// One stream of a source (an MP4 track, an RTSP media).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The index frames of this stream carry in [`crate::Frame::stream`].
    pub stream: usize,
    /// The MP4 `track_ID` (or the position in an RTSP SDP).
    pub track_id: u32,
    /// Ticks per second of this stream's timestamps.
    pub timescale: u32,
    /// Codec and its parameters.
    pub params: CodecParams,
    /// The MP4 sample entry (`avc1`, `avc3`, `hvc1`, `hev1`, `mp4a`, `ulaw`, `alaw`).
    pub sample_entry: String,
    /// Number of frames (including discarded ones).
    pub frames: usize,
    /// Presented duration in `timescale` ticks: from the first presented PTS to the end of the
    /// last presented frame (discarded frames do not count).
    pub duration: i64,
    /// ISO 639-2 language code, where the source says.
    pub language: Option<String>,
}

/// A track a source contains but nvrkit does not read (Opus, timed metadata, text...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTrack {
    /// The MP4 `track_ID`.
    pub track_id: u32,
    /// The handler type (`soun`, `meta`, `text`, ...).
    pub handler: String,
    /// The sample entry four-character code (`Opus`, `mett`, ...).
    pub codec: String,
    /// Why it is skipped.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_stereo_48k() {
        let p = AacParams::parse(Bytes::from_static(&[0x11, 0x90])).unwrap();
        assert_eq!(
            (p.object_type, p.sample_rate, p.channels, p.frame_length),
            (2, 48_000, 2, 1024)
        );
        assert_eq!(CodecParams::Aac(p).rfc6381(), "mp4a.40.2");
    }

    #[test]
    fn aac_garbage_is_an_error() {
        assert!(AacParams::parse(Bytes::new()).is_err());
        assert!(AacParams::parse(Bytes::from_static(&[0x17, 0x80])).is_err()); // index 15, no 24 bits
        assert!(AacParams::parse(Bytes::from_static(&[0x16, 0x80])).is_err()); // reserved index 13
    }
}

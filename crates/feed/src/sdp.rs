//! SDP (RFC 8866) session descriptions for DESCRIBE: one media section per stream with the
//! payload format parameters decoders need before the first packet.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use nvrkit_media::{CodecParams, TrackInfo};

/// The RTP payload type of a stream: the static type of G.711 at 8 kHz mono (0 for PCMU, 8
/// for PCMA, RFC 3551 Table 4), else a dynamic one from the stream index (96 + stream,
/// RFC 3551 §6).
pub fn payload_type(track: &TrackInfo) -> u8 {
    match track.params.g711().and_then(|g| g.static_payload_type()) {
        Some(pt) => pt,
        None => 96 + (track.stream % 32) as u8,
    }
}

/// The RTP clock rate of a stream: 90 kHz for video (RFC 6184 §8.2.1, RFC 7798 §7.1), the
/// sampling rate for audio (AAC: RFC 3640 §4.1; G.711: RFC 3551 §4.5.14).
pub fn clock_rate(track: &TrackInfo) -> u32 {
    match track.params.sample_rate() {
        Some(rate) => rate,
        None => nvrkit_media::time::VIDEO_CLOCK_RATE,
    }
}

/// The packet duration announced for G.711 (`a=ptime`): the demuxer's frames are 20 ms, the
/// RFC 3551 §4.5 default.
pub const G711_PTIME_MS: u32 = 20;

/// The control URL suffix of stream `i`, relative to the stream URL.
pub fn control(stream: usize) -> String {
    format!("trackID={stream}")
}

/// The SDP for a stream served at `name`, from `server_ip`.
pub fn describe(name: &str, server_ip: &str, session_id: u64, tracks: &[TrackInfo]) -> String {
    let mut s = String::new();
    let ip_kind = if server_ip.contains(':') {
        "IP6"
    } else {
        "IP4"
    };
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} 1 IN {ip_kind} {server_ip}\r\ns={name}\r\ni=nvrkit loopcam\r\n\
         c=IN {ip_kind} {}\r\nt=0 0\r\na=tool:nvrkit loopcam\r\na=control:*\r\na=range:npt=now-\r\n",
        if ip_kind == "IP6" { "::" } else { "0.0.0.0" }
    );
    for t in tracks {
        let pt = payload_type(t);
        match &t.params {
            CodecParams::H264(v) => {
                let sets: Vec<String> = v.sps.iter().chain(&v.pps).map(|n| B64.encode(n)).collect();
                let pli = v
                    .sps
                    .first()
                    .filter(|s| s.len() >= 4)
                    .map(|s| format!("{:02X}{:02X}{:02X}", s[1], s[2], s[3]))
                    .unwrap_or_else(|| "42E01F".into());
                let _ = write!(
                    s,
                    "m=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\n\
                     a=fmtp:{pt} packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={}\r\n\
                     a=x-dimensions:{},{}\r\n",
                    sets.join(","),
                    v.width,
                    v.height
                );
            }
            CodecParams::H265(v) => {
                let join = |l: &[bytes::Bytes]| {
                    l.iter()
                        .map(|n| B64.encode(n))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let _ = write!(
                    s,
                    "m=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} H265/90000\r\n\
                     a=fmtp:{pt} sprop-vps={};sprop-sps={};sprop-pps={}\r\na=x-dimensions:{},{}\r\n",
                    join(&v.vps),
                    join(&v.sps),
                    join(&v.pps),
                    v.width,
                    v.height
                );
            }
            CodecParams::Aac(a) => {
                let config: String = a.config.iter().map(|b| format!("{b:02X}")).collect();
                let _ = write!(
                    s,
                    "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} MPEG4-GENERIC/{}/{}\r\n\
                     a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
                     indexlength=3;indexdeltalength=3;config={config}\r\n",
                    a.sample_rate,
                    a.channels.max(1)
                );
            }
            CodecParams::G711(g) => {
                let _ = write!(s, "m=audio 0 RTP/AVP {pt}\r\n");
                if g.static_payload_type().is_some() {
                    // Static types need no rtpmap (RFC 3551 §6); it is written for the clients
                    // that look only at rtpmap lines.
                    let _ = write!(s, "a=rtpmap:{pt} {}/8000\r\n", g.rtp_name());
                } else {
                    let _ = write!(
                        s,
                        "a=rtpmap:{pt} {}/{}/{}\r\n",
                        g.rtp_name(),
                        g.sample_rate,
                        g.channels
                    );
                }
                let _ = write!(s, "a=ptime:{G711_PTIME_MS}\r\n");
            }
            _ => continue,
        }
        let _ = write!(s, "a=control:{}\r\n", control(t.stream));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;

    #[test]
    fn sample_sdp_has_what_decoders_need() {
        let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let sdp = describe("sample", "127.0.0.1", 42, d.tracks());
        assert!(
            sdp.starts_with("v=0\r\no=- 42 1 IN IP4 127.0.0.1\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"), "{sdp}");
        assert!(
            sdp.contains("packetization-mode=1;profile-level-id=4D401E;sprop-parameter-sets=Z"),
            "{sdp}"
        );
        assert!(
            sdp.contains("a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains(";config=1190"), "{sdp}");
        assert!(sdp.contains("a=control:trackID=1\r\n"), "{sdp}");
        assert!(sdp.lines().all(|l| !l.is_empty() && l.len() < 1000));
    }

    fn g711_sdp(clip: &str) -> String {
        let path = format!("{}/../../testdata/{clip}", env!("CARGO_MANIFEST_DIR"));
        let d = Demuxer::open(path).unwrap();
        describe("cam", "127.0.0.1", 1, d.tracks())
    }

    #[test]
    fn g711_8k_mono_takes_the_static_payload_type() {
        let sdp = g711_sdp("h264_pcmu8k.mov");
        assert!(
            sdp.contains(
                "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=control:trackID=1\r\n"
            ),
            "{sdp}"
        );
        let d = Demuxer::open(format!(
            "{}/../../testdata/h264_pcmu8k.mov",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(clock_rate(&d.tracks()[1]), 8000);
        assert_eq!(payload_type(&d.tracks()[0]), 96);
    }

    #[test]
    fn g711_other_rates_and_channels_take_a_dynamic_type() {
        let sdp = g711_sdp("h264_pcma16k_stereo.mov");
        assert!(
            sdp.contains("m=audio 0 RTP/AVP 97\r\na=rtpmap:97 PCMA/16000/2\r\na=ptime:20\r\n"),
            "{sdp}"
        );
    }
}

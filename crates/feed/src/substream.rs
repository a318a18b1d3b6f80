//! Main and sub streams: a clip served at `NAME` may have a sub stream served at `NAME/sub`
//! (loopcam loads `clip.sub.mp4` beside `clip.mp4` as `clip/sub`), the low-resolution second
//! profile of one camera, as VMSes record the main stream and show the sub one in grids.
//!
//! The two loops stay aligned frame for frame: a [`crate::server::Server`] starts every loop
//! at the same wall-clock instant, and [`check_aligned`] refuses, at start, a sub clip whose
//! loop period or frame timing differs from its main clip's, so frame `i` of every loop is
//! presented at the same wall-clock time (and carries the same RTCP-mapped timestamp) in both.
//! Nothing is resampled: a sub clip made from the main one with the same frame rate and
//! length (`ffmpeg -i clip.mp4 -vf scale=640:-2 -c:a copy clip.sub.mp4`) aligns.

use std::sync::Arc;

use nvrkit_media::WallTime;

use crate::error::{Error, Result};
use crate::loop_source::{Clip, LoopSource};

/// What a sub stream's name ends with: `NAME/sub`.
pub const SUB_SUFFIX: &str = "/sub";

/// The most a sub clip's frame may be presented before or after the main clip's frame of the
/// same index, in microseconds: the rounding of two timescales (e.g. 12,800 and 90,000 Hz),
/// far below a frame interval.
pub const MAX_SKEW_MICROS: i64 = 1_000;

/// The sub stream name of a main stream.
pub fn sub_name(main: &str) -> String {
    format!("{main}{SUB_SUFFIX}")
}

/// The main stream of a sub stream name (`Some("bikes")` for `bikes/sub`).
pub fn main_of(name: &str) -> Option<&str> {
    name.strip_suffix(SUB_SUFFIX).filter(|m| !m.is_empty())
}

/// Checks that `sub`'s loop is aligned with `main`'s frame for frame: the same loop period (to
/// the microsecond), the same number of video frames a loop, and each video frame presented
/// within [`MAX_SKEW_MICROS`] of the main one of the same index, over two loops (so the seam
/// is checked too). The error names the first mismatch.
pub fn check_aligned(main: &Arc<Clip>, sub: &Arc<Clip>) -> Result<()> {
    let refuse = |what: String| Error::Unusable {
        name: sub.name().to_owned(),
        what: format!(
            "as the sub stream of {}: {what} (make it from the main clip with the same frame rate and length, e.g. ffmpeg -i main.mp4 -vf scale=640:-2 -c:a copy main.sub.mp4)",
            main.name()
        ),
    };
    if main.period_micros() != sub.period_micros() {
        return Err(refuse(format!(
            "its loop period is {} µs, the main clip's {} µs",
            sub.period_micros(),
            main.period_micros()
        )));
    }
    let (mf, sf) = (
        main.frames(main.master()).len(),
        sub.frames(sub.master()).len(),
    );
    if mf != sf {
        return Err(refuse(format!(
            "it has {sf} video frames a loop, the main clip {mf}"
        )));
    }
    // The presentation times the server's loops give the video frames, from one start instant.
    let times = |clip: &Arc<Clip>| {
        let v = clip.master();
        let mut t: Vec<i64> = LoopSource::new(clip.clone(), WallTime::from_micros(0))
            .filter(|f| f.stream == v && !f.discard)
            .take(2 * mf)
            .filter_map(|f| f.wall.map(WallTime::as_micros))
            .collect();
        t.sort_unstable();
        t
    };
    let (mt, st) = (times(main), times(sub));
    if mt.len() != st.len() {
        return Err(refuse(format!(
            "its two loops present {} video frames, the main clip's {}",
            st.len(),
            mt.len()
        )));
    }
    if let Some((i, (m, s))) = mt
        .iter()
        .zip(&st)
        .enumerate()
        .find(|(_, (m, s))| (*m - *s).abs() > MAX_SKEW_MICROS)
    {
        return Err(refuse(format!(
            "its video frame {i} (in presentation order, from the first loop) is presented at {s} µs, the main clip's at {m} µs"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_media::Demuxer;

    fn load(name: &str, file: &str) -> Arc<Clip> {
        let demux = Demuxer::open(format!(
            "{}/../../testdata/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        Clip::load(name, &demux).unwrap()
    }

    #[test]
    fn names() {
        assert_eq!(sub_name("bikes"), "bikes/sub");
        assert_eq!(main_of("bikes/sub"), Some("bikes"));
        assert_eq!(main_of("bikes"), None);
        assert_eq!(main_of("/sub"), None);
    }

    #[test]
    fn the_same_timing_aligns_and_another_is_refused_with_the_mismatch() {
        let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
        let main = Clip::load("sample", &demux).unwrap();
        let sub = Clip::load("sample/sub", &demux).unwrap();
        check_aligned(&main, &sub).unwrap();
        // 29.97 fps against 25 fps.
        let other = load("ntsc/sub", "h264_ntsc_29.97.mp4");
        let e = check_aligned(&main, &other).unwrap_err().to_string();
        assert!(
            e.contains("ntsc/sub") && e.contains("sub stream of sample"),
            "{e}"
        );
        assert!(e.contains("period") || e.contains("frames"), "{e}");
    }
}

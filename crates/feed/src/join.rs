//! [`JoinFilter`]: what a reader that starts at a keyframe must not be sent.
//!
//! With open GOPs (x265's default) a keyframe is an H.265 CRA picture, and the pictures that
//! follow it in decode order but present before it (RASL leading pictures) reference the GOP
//! before, which a reader that joins at the CRA never got: it cannot decode them, and ffprobe
//! sees presentation times before the keyframe's. H.264 streams with recovery points behave
//! the same. A reader that has been reading all along (the loop's own seam, later keyframes)
//! has those references and keeps the leading pictures.

use nvrkit_media::Frame;
use nvrkit_media::time::cmp_ticks;

/// Drops, after each keyframe a reader joins (or resumes) at, the video frames that present
/// before it, until the next keyframe.
///
/// ```
/// use nvrkit_feed::join::JoinFilter;
/// use nvrkit_media::{Demuxer, Frame};
///
/// let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
/// let mut join = JoinFilter::new(0);
/// let sent = demux.frames().map(Result::unwrap).filter(|f| join.keep(f)).count();
/// assert_eq!(sent, demux.frames().count(), "a closed-GOP clip loses nothing");
/// ```
#[derive(Debug, Clone)]
pub struct JoinFilter {
    master: usize,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// The next keyframe of the master is a join point.
    Armed,
    /// Joined at a keyframe presenting at this PTS (ticks, timescale).
    Joined(i64, u32),
    /// Past the join GOP: everything passes.
    Through,
}

impl JoinFilter {
    /// A filter for a reader that starts now: the first keyframe of stream `master` (the
    /// video) it sees is its join point.
    pub fn new(master: usize) -> Self {
        JoinFilter {
            master,
            state: State::Armed,
        }
    }

    /// The stream whose keyframes are join points (the video).
    pub fn master(&self) -> usize {
        self.master
    }

    /// The reader skipped ahead (it lagged and resumes at a keyframe): the next keyframe is a
    /// join point again.
    pub fn rejoin(&mut self) {
        self.state = State::Armed;
    }

    /// Whether to send `f`. Frames of other streams always pass; so does everything before
    /// the first keyframe (a reader that waits for one drops those itself).
    pub fn keep(&mut self, f: &Frame) -> bool {
        if f.stream != self.master {
            return true;
        }
        if f.keyframe {
            self.state = match self.state {
                State::Armed => State::Joined(f.pts, f.timescale),
                _ => State::Through,
            };
            return true;
        }
        match self.state {
            State::Joined(pts, timescale) => cmp_ticks(f.pts, f.timescale, pts, timescale).is_ge(),
            State::Armed | State::Through => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clip, LoopSource};
    use nvrkit_media::{Demuxer, WallTime};

    fn open_gop_video() -> Vec<Frame> {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/h265_open_gop.mp4"
        );
        let clip = Clip::load("open", &Demuxer::open(p).unwrap()).unwrap();
        LoopSource::new(clip, WallTime::EPOCH).take(150).collect()
    }

    /// Joined at the clip's second keyframe (a CRA), its three RASL pictures are dropped; the
    /// next CRA's are kept (the reader has what they reference); after a skip, the CRA it
    /// resumes at loses its RASL pictures again.
    #[test]
    fn drops_the_leading_pictures_of_the_join_keyframe_only() {
        let frames = open_gop_video();
        let keys: Vec<usize> = (0..frames.len()).filter(|&i| frames[i].keyframe).collect();
        assert!(keys.len() >= 4, "{keys:?}");
        let leading = |from: usize, to: usize| {
            frames[from + 1..to]
                .iter()
                .filter(|f| f.pts < frames[from].pts)
                .count()
        };
        assert_eq!(
            leading(keys[1], keys[2]),
            3,
            "a CRA with three RASL pictures"
        );

        let mut join = JoinFilter::new(0);
        let kept: Vec<&Frame> = frames[keys[1]..keys[3]]
            .iter()
            .filter(|f| join.keep(f))
            .collect();
        assert_eq!(kept.len(), keys[3] - keys[1] - 3);
        assert!(kept.iter().all(|f| f.pts >= frames[keys[1]].pts));

        join.rejoin();
        let dropped = frames[keys[3]..].iter().filter(|f| !join.keep(f)).count();
        assert_eq!(
            dropped,
            leading(keys[3], keys.get(4).copied().unwrap_or(frames.len()))
        );
    }

    #[test]
    fn other_streams_and_frames_before_the_first_keyframe_pass() {
        let frames = open_gop_video();
        let mut join = JoinFilter::new(1);
        assert!(
            frames.iter().all(|f| join.keep(f)),
            "stream 0 is not the master here"
        );
        let mut join = JoinFilter::new(0);
        let first_key = frames.iter().position(|f| f.keyframe).unwrap();
        let k = frames[first_key + 1..]
            .iter()
            .position(|f| f.keyframe)
            .unwrap()
            + first_key
            + 1;
        // Started mid-GOP: everything up to the first keyframe passes (the caller waits).
        assert!(frames[k - 5..k].iter().all(|f| join.keep(f)));
    }
}

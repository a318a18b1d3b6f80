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

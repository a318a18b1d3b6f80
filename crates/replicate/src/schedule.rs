//! What to send next: priorities and order, without I/O.
//!
//! - **P0**: event or pinned footage; **P1**: motion; **P2**: continuous (no tag). With
//!   [`Policy::skip_no_motion`] P2 is not sent at all.
//! - Within a priority, **live** footage (queued while the replicator runs) goes before the
//!   **backlog** (queued before it started), live newest-first (the event happening now
//!   matters most), backlog oldest-first (it is the first to be deleted locally).
//! - A P0 arriving while a lower-priority multipart upload is under way preempts it at the
//!   next part boundary; the paused upload resumes later from its persisted parts.

use std::cmp::Reverse;
use std::collections::HashSet;

use nvrkit_store::Tag;
use nvrkit_store::queue::{Entry, QueueState};

/// A segment's priority: lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Event or pinned footage.
    P0 = 0,
    /// Motion.
    P1 = 1,
    /// Continuous footage.
    P2 = 2,
}

impl Priority {
    /// The priority of footage with these tags.
    pub fn of(tags: &std::collections::BTreeSet<Tag>) -> Priority {
        if tags.contains(&Tag::Event) || tags.contains(&Tag::Pinned) {
            Priority::P0
        } else if tags.contains(&Tag::Motion) {
            Priority::P1
        } else {
            Priority::P2
        }
    }

    /// All three, in order.
    pub const ALL: [Priority; 3] = [Priority::P0, Priority::P1, Priority::P2];
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}", *self as u8)
    }
}

/// What the replicator leaves out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Do not send continuous footage (P2: no event, pin or motion tag).
    pub skip_no_motion: bool,
}

/// A segment's place in the order: sort ascending.
pub type OrderKey = (Priority, bool, Reverse<i64>, i64, String);

/// The order key of `e`; `backlog` holds the keys queued before the replicator started.
pub fn order_key(e: &Entry, backlog: &HashSet<(String, i64)>) -> OrderKey {
    let is_backlog = backlog.contains(&(e.camera.clone(), e.start_us));
    let p = Priority::of(&e.tags);
    if is_backlog {
        (p, true, Reverse(0), e.start_us, e.camera.clone())
    } else {
        (p, false, Reverse(e.start_us), 0, e.camera.clone())
    }
}

/// The next segment for `target`, skipping `exclude` (segments that failed in this run).
pub fn next<'a>(
    state: &'a QueueState,
    target: &str,
    policy: Policy,
    backlog: &HashSet<(String, i64)>,
    exclude: &HashSet<(String, i64)>,
) -> Option<&'a Entry> {
    state
        .entries
        .values()
        .filter(|e| !e.finished_for(target) && !exclude.contains(&(e.camera.clone(), e.start_us)))
        .filter(|e| !(policy.skip_no_motion && Priority::of(&e.tags) == Priority::P2))
        .min_by_key(|e| order_key(e, backlog))
}

/// Entries the policy skips for `target` and that are not yet recorded as skipped.
pub fn to_skip<'a>(state: &'a QueueState, target: &str, policy: Policy) -> Vec<&'a Entry> {
    if !policy.skip_no_motion {
        return Vec::new();
    }
    state
        .entries
        .values()
        .filter(|e| !e.finished_for(target) && Priority::of(&e.tags) == Priority::P2)
        .collect()
}

/// Pending segments and bytes per priority for `target`.
pub fn pending(state: &QueueState, target: &str, policy: Policy) -> [(u64, u64); 3] {
    let mut out = [(0, 0); 3];
    for e in state.entries.values().filter(|e| !e.finished_for(target)) {
        let p = Priority::of(&e.tags);
        if policy.skip_no_motion && p == Priority::P2 {
            continue;
        }
        out[p as usize].0 += 1;
        out[p as usize].1 += e.bytes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvrkit_store::queue::Record;

    fn seal(camera: &str, start: i64, tags: &[Tag]) -> Record {
        Record::Seal {
            camera: camera.into(),
            start_us: start,
            end_us: start + 10,
            bytes: 100,
            blake3: "b".repeat(64),
            tags: tags.to_vec(),
        }
    }

    #[test]
    fn order_events_then_motion_then_continuous_live_newest_backlog_oldest() {
        let t = "s3://b";
        let mut state = QueueState::from_records(&[
            Record::Target { target: t.into() },
            seal("a", 100, &[]),
            seal("a", 200, &[Tag::Event]),
            seal("a", 300, &[Tag::Motion]),
            seal("b", 150, &[Tag::Pinned]),
            seal("a", 400, &[]),
        ]);
        let backlog: HashSet<_> = state.entries.keys().cloned().collect();
        // Live footage arrives after the start.
        for r in [
            seal("a", 500, &[Tag::Event]),
            seal("a", 600, &[Tag::Event]),
            seal("a", 700, &[]),
        ] {
            state.apply(&r);
        }
        let none = HashSet::new();
        let mut order = Vec::new();
        while let Some(e) = next(&state, t, Policy::default(), &backlog, &none) {
            order.push((e.camera.clone(), e.start_us));
            let r = Record::Done {
                target: t.into(),
                camera: e.camera.clone(),
                start_us: e.start_us,
            };
            state.apply(&r);
        }
        let want: Vec<(String, i64)> = [
            ("a", 600), // live events, newest first
            ("a", 500),
            ("b", 150), // backlog events (pinned counts), oldest first
            ("a", 200),
            ("a", 300), // motion
            ("a", 700), // live continuous
            ("a", 100), // backlog continuous, oldest first
            ("a", 400),
        ]
        .iter()
        .map(|(c, s)| (c.to_string(), *s))
        .collect();
        assert_eq!(order, want);
    }

    #[test]
    fn skip_no_motion_leaves_continuous_footage_and_a_late_tag_brings_it_back() {
        let t = "/backup";
        let mut state = QueueState::from_records(&[
            Record::Target { target: t.into() },
            seal("a", 100, &[]),
            seal("a", 200, &[Tag::Motion]),
        ]);
        let policy = Policy {
            skip_no_motion: true,
        };
        let none = HashSet::new();
        assert_eq!(pending(&state, t, policy), [(0, 0), (1, 100), (0, 0)]);
        let skip: Vec<i64> = to_skip(&state, t, policy)
            .iter()
            .map(|e| e.start_us)
            .collect();
        assert_eq!(skip, vec![100]);
        state.apply(&Record::Skip {
            target: t.into(),
            camera: "a".into(),
            start_us: 100,
        });
        assert!(to_skip(&state, t, policy).is_empty());
        assert_eq!(next(&state, t, policy, &none, &none).unwrap().start_us, 200);
        // An event tagged later over the skipped segment queues it again, first.
        state.apply(&Record::Tag {
            camera: "a".into(),
            tag: Tag::Event,
            from_us: 90,
            to_us: 105,
        });
        assert_eq!(next(&state, t, policy, &none, &none).unwrap().start_us, 100);
    }
}

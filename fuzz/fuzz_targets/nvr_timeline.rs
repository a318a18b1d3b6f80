//! Arbitrary bytes as the timeline's untrusted query (`nvrkit_store::timeline`): the query
//! string of `/api/recordings?camera&day&tz&gap` read for its day, time zone and merge gap, and
//! the same bytes as a list of recorded spans merged with that gap. No panic; an accepted day
//! is 24 h from a midnight that prints and parses back the same, a gap is whole seconds in
//! range, a refusal's message is short whatever the input; merging keeps every segment and
//! leaves spans in order, further apart than the gap. CI runs it on inputs up to 1 MiB
//! (`nvr_*` in `.ci/run`), where a parse that is not linear fails at `-timeout=5`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_media::WallTime;
use nvrkit_store::timeline::{MAX_MERGE_GAP_S, day_range, merge_gap, merge_spans};
use nvrkit_store::Recording;

fuzz_target!(|data: &[u8]| {
    // axum hands the handler the URI's query as a `&str`.
    let text = String::from_utf8_lossy(data);
    match day_range(&text) {
        Ok(Some((from, to))) => {
            assert_eq!(to.micros_since(from), 24 * 3600 * 1_000_000);
            let printed = from.to_rfc3339();
            assert_eq!(WallTime::parse_rfc3339(&printed).ok(), Some(from), "{printed}");
        }
        Ok(None) => {}
        Err(e) => {
            let message = e.to_string();
            assert!(message.len() < 512, "{message}");
        }
    }
    let gap = match merge_gap(&text) {
        Ok(g) => {
            assert!((0..=MAX_MERGE_GAP_S * 1_000_000).contains(&g) && g % 1_000_000 == 0);
            g
        }
        Err(e) => {
            assert!(e.to_string().len() < 512);
            // Still merge below, with a gap taken from the bytes.
            i64::from(data.first().copied().unwrap_or(0)) * 1_000_000
        }
    };
    // The bytes as spans: each 4 bytes a (pause, length) in seconds before and of a span, so
    // the spans are in time order as the store lists them.
    let mut at = WallTime::parse_rfc3339("2026-12-03T00:00:00Z").unwrap();
    let spans: Vec<Recording> = data
        .chunks_exact(4)
        .map(|c| {
            let pause = i64::from(u16::from_be_bytes([c[0], c[1]]));
            let len = i64::from(u16::from_be_bytes([c[2], c[3]]));
            let start = at.add_micros(pause * 1_000_000);
            let end = start.add_micros(len * 1_000_000);
            at = end;
            Recording {
                start,
                end,
                segments: 1,
                bytes: 1000,
                tags: Default::default(),
            }
        })
        .collect();
    let n = spans.len();
    let merged = merge_spans(spans, gap);
    assert_eq!(merged.iter().map(|r| r.segments).sum::<usize>(), n);
    assert_eq!(merged.iter().map(|r| r.bytes).sum::<u64>(), 1000 * n as u64);
    for w in merged.windows(2) {
        assert!(w[0].start <= w[0].end && w[0].end <= w[1].start);
        if gap > 0 {
            assert!(w[1].start.micros_since(w[0].end) > gap, "a gap left unmerged");
        }
    }
});

//! Arbitrary bytes as what a store reads from disk: a sidecar, a day summary, a tag log, and a
//! segment file as crash recovery sees it (box scan, then the demuxer on the well-formed
//! prefix). Nothing may panic; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_media::Demuxer;
use nvrkit_store::meta::{DaySummary, SegmentMeta, apply_tag_log, parse_tag_log};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SegmentMeta::parse(data) {
        // A sidecar that parses round-trips and its arithmetic cannot overflow.
        assert_eq!(SegmentMeta::parse(&m.to_json()).ok(), Some(m.clone()));
        let _ = m.wall_of(i64::MAX, 1);
        let _ = m.wall_of(i64::MIN, u32::MAX);
    }
    if let Ok(s) = DaySummary::parse(data) {
        assert_eq!(DaySummary::parse(&s.to_json()).ok(), Some(s));
    }
    let (records, valid) = parse_tag_log(data);
    assert!(valid <= data.len());
    let _ = apply_tag_log(&records);

    let layout = nvrkit_store::fragments::scan(data);
    assert!(layout.complete_len <= data.len() as u64);
    assert!(
        layout
            .fragments
            .iter()
            .all(|f| f.start < f.end && f.end <= layout.complete_len)
    );
    if !layout.fragments.is_empty() {
        let prefix = bytes::Bytes::copy_from_slice(&data[..layout.complete_len as usize]);
        if let Ok(d) = Demuxer::from_bytes("fuzz", prefix) {
            for f in d.frames() {
                let _ = f;
            }
        }
    }
});

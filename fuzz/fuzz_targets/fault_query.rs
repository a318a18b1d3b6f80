//! Fault queries and fault files (untrusted: a query comes from any RTSP client). Nothing may
//! panic; a query that parses has a canonical form that parses back to the same set; a URI's
//! query splits off wherever it stands.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_feed::fault::{FaultSet, parse_fault_file};
use nvrkit_feed::rtsp::core::split_query;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(f) = text.parse::<FaultSet>() {
        let canonical = f.to_string();
        let again: FaultSet = canonical.parse().expect("the canonical form parses");
        assert_eq!(again, f, "{canonical:?}");
        assert_eq!(again.to_string(), canonical);
        assert_eq!(f.frame_faults().changes_frames(), f.changes_frames());
    }
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    let (p, q) = split_query(path, Some(query));
    assert!(p.len() <= text.len() + 1 && q.is_some_and(|q| q.len() <= query.len()));
    let _ = parse_fault_file(&text);
});

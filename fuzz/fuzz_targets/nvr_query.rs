//! Arbitrary bytes as nvr's untrusted HTTP query input: the query string of
//! `/api/recordings` and `/api/export.mp4` (`nvrkit_store::query::RangeQuery`), and a
//! `Range: bytes=` header on an export (`byte_range`). No panic; an accepted range is valid, a
//! refusal's message is short whatever the input, and a byte range stays inside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_store::query::{ByteRange, MAX_QUERY_BYTES, QueryError, RangeQuery, byte_range};

fuzz_target!(|data: &[u8]| {
    // axum hands the handler the URI's query as a `&str`.
    let text = String::from_utf8_lossy(data);
    match RangeQuery::parse(&text) {
        Ok(q) => {
            assert!(q.to > q.from);
            assert!(q.span_micros() > 0);
            assert!(nvrkit_store::layout::check_camera(&q.camera).is_ok());
            let _ = q.check_span(3600 * 1_000_000);
            let _ = q.check_span(0);
        }
        Err(e) => {
            if let QueryError::TooLong { len, max } = e {
                assert!(len > max && max == MAX_QUERY_BYTES);
            }
            let message = e.to_string();
            assert!(message.len() < 512, "{message}");
        }
    }
    let totals = [0, 1, 1000, data.len() as u64, u64::MAX];
    for total in totals {
        match byte_range(&text, total) {
            ByteRange::Part { first, last } => assert!(first <= last && last < total),
            ByteRange::Whole | ByteRange::Unsatisfiable => {}
        }
    }
});

//! Arbitrary bytes as the body of nvr's `POST /api/events` (untrusted event JSON): what nvr does
//! with it, without the HTTP server. `CameraEvent::from_untrusted_json` refuses only for the
//! reasons it names; an accepted event, placed on nvr's clock, reads back from its own JSON to
//! the same JSON, and the note nvr keeps of it is within `MAX_NOTE_BYTES`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_media::WallTime;
use nvrkit_smtp::{CameraEvent, Error, MAX_UNTRUSTED_EVENT_DEPTH, MAX_UNTRUSTED_EVENT_JSON};
use nvrkit_store::note::{MAX_NOTE_BYTES, bound};

fuzz_target!(|data: &[u8]| {
    match CameraEvent::from_untrusted_json(data) {
        Ok(mut event) => {
            assert!(data.len() <= MAX_UNTRUSTED_EVENT_JSON);
            // nvr places the event by its own clock, never the sender's.
            event.received_at = WallTime::from_micros(1_700_000_000_000_000);
            let json = event.to_json();
            let back = CameraEvent::from_json(&json).expect("our own JSON reads back");
            assert_eq!(back.to_json(), json);
            let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            let note = bound(&value);
            assert!(serde_json::to_vec(&note).expect("serializes").len() <= MAX_NOTE_BYTES);
        }
        Err(Error::EventJsonTooLarge { len, max }) => {
            assert_eq!((len, max), (data.len(), MAX_UNTRUSTED_EVENT_JSON));
            assert!(len > max);
        }
        Err(Error::EventJsonTooDeep { max }) => {
            assert_eq!(max, MAX_UNTRUSTED_EVENT_DEPTH);
            assert!(!nvrkit_net::json_depth_within(data, max));
        }
        Err(Error::EventJson(_)) => {}
        Err(other) => panic!("unexpected error: {other}"),
    }
});

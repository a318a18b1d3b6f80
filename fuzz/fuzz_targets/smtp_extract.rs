//! Random bytes as an alarm mail: MIME parsing (mail-parser), the vendor profiles, and the event
//! JSON. No panic; the JSON must read back to the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_media::WallTime;
use nvrkit_smtp::{CameraEvent, Message, extract};

fuzz_target!(|data: &[u8]| {
    let message = Message::new("cam@x", vec!["nvr@x".to_owned()], data.to_vec());
    let event = extract(&message, None, WallTime::from_micros(1_700_000_000_000_000));
    let json = event.to_json();
    let back = CameraEvent::from_json(&json).expect("our own JSON reads back");
    assert_eq!(back.to_json(), json);
});

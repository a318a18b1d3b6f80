//! Reolink.
//!
//! Format (tested against the real body in `tests/captures/reolink-motion.eml`, source in
//! `tests/captures/README.md`; the older reconstructed mail is `testdata/reolink.eml`): a text
//! part, base64 on one line, of `Alarm Camera Name:Living Room Camera`, `Alarm Event:Motion
//! Detection` (AI cameras: `Person Detected`, `Vehicle Detected`, `Pet Detected`, as
//! fwestenberg/reolink_dev's SMTP handler matches them), `Alarm Input Channel No.:1`, `Alarm
//! Device Name:Living Room Camera` (no blank after the colon). The capture has no time; the
//! documented format adds `Alarm Start Time(D/M/Y H:M:S)`, which is read when present. Close to
//! Dahua's, so this profile runs first and needs `Alarm Camera Name`.

use super::{Fields, MailView, non_empty};
use crate::event::EventTime;

pub(super) fn read(view: &MailView) -> Option<Fields> {
    let camera = view.field("Alarm Camera Name")?;
    Some(Fields {
        camera: non_empty(camera),
        device: view
            .field("Alarm Device Name")
            .and_then(non_empty)
            .or_else(|| non_empty(camera)),
        kind_text: view.field("Alarm Event").and_then(non_empty),
        channel: view
            .field("Alarm Input Channel No.")
            .or_else(|| view.field("Alarm Input Channel"))
            .and_then(non_empty),
        event_time: view
            .field_prefix("Alarm Start Time")
            .filter(|(_, v)| !v.is_empty())
            .map(|(key, value)| EventTime::parse(value, super::dahua::format_hint(key))),
        ..Fields::default()
    })
}

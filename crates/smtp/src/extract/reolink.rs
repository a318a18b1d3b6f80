//! Reolink.
//!
//! Format (reconstructed, not a capture; test mail `testdata/reolink.eml`): subject "Alarm
//! Message from <camera>", text lines `Alarm Camera Name: Front Porch`, `Alarm Event: Motion
//! Detection` (or `Person`, `Vehicle`), `Alarm Input Channel No.: 1`, `Alarm Start
//! Time(D/M/Y H:M:S): 21/03/2020 12:34:56`; a JPEG named after the camera. Close to Dahua's, so
//! this profile runs first and needs `Alarm Camera Name`. Sources: the issue-5 brief; Reolink
//! community and Home Assistant forum posts quoting these mails.

use super::{Fields, MailView, non_empty};
use crate::event::EventTime;

pub(super) fn read(view: &MailView) -> Option<Fields> {
    let camera = view.field("Alarm Camera Name")?;
    Some(Fields {
        camera: non_empty(camera),
        device: non_empty(camera),
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

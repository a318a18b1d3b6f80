//! Everything else, Axis included: Axis mail text is whatever the installer typed into the action
//! rule, so there is no fixed format to read. The kind comes from keywords in the body's `Event
//! Type`, else the subject, else the body's first lines; the camera's time from a `Time:` line,
//! else the `Date:` header.
//!
//! Swann NVRs (Raysharp firmware, capture `tests/captures/swann-nvr-human.eml`) write `Device
//! Name: NVR8-8580RN`, `Event Type: Human and Vehicle`, `Channel Name [IP-CH1]: Front Yard`,
//! `AlarmType: Human`, `Time: 2024-02-07 13:08:59`: those fields are read when present, without
//! a vendor of their own, since nothing in the mail names the maker.

use super::{Fields, MailView, non_empty};
use crate::event::{EventKind, EventTime};

pub(super) fn read(view: &MailView) -> Fields {
    let kind_text = view.field("Event Type").and_then(non_empty);
    let kind = kind_text
        .as_deref()
        .and_then(EventKind::classify)
        .or_else(|| EventKind::classify(&view.subject))
        .or_else(|| {
            // Only the first lines of the body: a long body mentions everything.
            let head: String = view.text.lines().take(10).collect::<Vec<_>>().join("\n");
            EventKind::classify(&head)
        });
    // `Channel Name [IP-CH1]: Front Yard`: the channel as the NVR numbers it, then its name.
    let (channel, camera) = match view.field_prefix("Channel Name") {
        Some((key, value)) => {
            let channel = key
                .split_once('[')
                .and_then(|(_, rest)| rest.strip_suffix(']'))
                .and_then(non_empty);
            (channel, non_empty(value))
        }
        None => (None, None),
    };
    // A `Time:` line we cannot read loses to the `Date:` header.
    let event_time = view
        .field("Time")
        .map(|time| EventTime::parse(time, None))
        .filter(|t| t.local.is_some())
        .or_else(|| view.date.as_deref().map(EventTime::parse_rfc5322));
    Fields {
        device: view.field("Device Name").and_then(non_empty),
        camera,
        channel,
        kind_text,
        kind,
        event_time,
    }
}

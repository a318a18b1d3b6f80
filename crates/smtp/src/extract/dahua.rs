//! Dahua and Amcrest (and Dahua OEMs: Lorex, IC Realtime, …).
//!
//! Format (reconstructed, not a capture; test mail `testdata/dahua.eml`): subject "IPC Message"
//! or the device name, a text part that is often base64 with a legacy charset (gb2312 on
//! Chinese-firmware units), with lines `Alarm Event: Motion Detection`, `Alarm Input Channel: 2`,
//! `Alarm Start Time(D/M/Y H:M:S): 05/12/2019 09:10:11` (the field order in the key follows the
//! device's date-format setting: `Y-M-D`, `M/D/Y` or `D/M/Y`), `Alarm Device Name`,
//! `Alarm Name`, `IP Address`. Snapshots come as `application/octet-stream` named `*.jpg`.
//! Sources: the issue-5 brief; Amcrest and IP Cam Talk forum posts quoting these mails.

use super::{Fields, MailView, non_empty};
use crate::event::EventTime;

pub(super) fn read(view: &MailView) -> Option<Fields> {
    let event = view.field("Alarm Event")?;
    let time = view.field_prefix("Alarm Start Time");
    let channel = view.field("Alarm Input Channel");
    if time.is_none() && channel.is_none() && view.field("Alarm Device Name").is_none() {
        return None;
    }
    Some(Fields {
        kind_text: non_empty(event),
        channel: channel.and_then(non_empty),
        device: view.field("Alarm Device Name").and_then(non_empty),
        camera: view
            .field("Alarm Channel Name")
            .or_else(|| view.field("Channel Name"))
            .and_then(non_empty),
        event_time: time
            .filter(|(_, v)| !v.is_empty())
            .map(|(key, value)| EventTime::parse(value, format_hint(key))),
        ..Fields::default()
    })
}

/// `Alarm Start Time(D/M/Y H:M:S)` → `D/M/Y H:M:S`.
pub(super) fn format_hint(key: &str) -> Option<&str> {
    let (_, rest) = key.split_once('(')?;
    rest.strip_suffix(')')
}

//! Dahua and Amcrest (and Dahua OEMs: Lorex, IC Realtime, …).
//!
//! Format (tested against real mails in `tests/captures/{amcrest,dahua}-*.eml`, sources in
//! `tests/captures/README.md`; the older reconstructed mail is `testdata/dahua.eml`): subject
//! "IPC Message" (sent as `=?UTF-8?B?SVBDIE1lc3NhZ2U=?=`), boundary `======DAHUA_TECH======`, a
//! text part that is base64 of CRLF lines (in a legacy charset such as gb2312 on
//! Chinese-firmware units), with lines `Alarm Event: Motion Detection` (`Motion Detect`,
//! `Tamper Detect`; EZIP/Imou cameras `Motion Detection Start`), `Alarm Input Channel: 2`
//! (NVRs: `Alarm Input Channel No.: 2` and `Alarm Input Channel Name: IPC`),
//! `Alarm Start Time(D/M/Y H:M:S): 05/12/2019 09:10:11` (the field order in the key follows the
//! device's date-format setting: `Y-M-D`, `M/D/Y` or `D/M/Y`), `Alarm Device Name`,
//! `Alarm Name`, `IP Address`; NVRs may write `Alarm Start Time (D/M/Y H:M:S)`, with a blank.
//! Snapshots come as `application/octet-stream` named like `20180506152840423ch01.jpg`.

use super::{Fields, MailView, non_empty};
use crate::event::EventTime;

pub(super) fn read(view: &MailView) -> Option<Fields> {
    let event = view.field("Alarm Event")?;
    let time = view.field_prefix("Alarm Start Time");
    // IPCs write `Alarm Input Channel: 1`; NVRs `Alarm Input Channel No.: 2` (captures
    // `dahua-nvr-motion.eml`, as Reolink does).
    let channel = view
        .field("Alarm Input Channel")
        .or_else(|| view.field("Alarm Input Channel No."));
    if time.is_none() && channel.is_none() && view.field("Alarm Device Name").is_none() {
        return None;
    }
    Some(Fields {
        kind_text: non_empty(event),
        channel: channel.and_then(non_empty),
        device: view.field("Alarm Device Name").and_then(non_empty),
        // NVRs name the channel's camera: `Alarm Input Channel Name: IPC` (capture
        // `dahua-nvr-motion.eml`); an IPC names only itself (`Alarm Device Name`), so its camera
        // is the recipient, as the other Dahua captures show.
        camera: view
            .field("Alarm Input Channel Name")
            .or_else(|| view.field("Alarm Channel Name"))
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

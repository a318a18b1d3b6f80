//! Hikvision IP cameras, DVRs and NVRs (and OEM rebrands: LTS, Annke, …).
//!
//! Format (tested against real mails in `tests/captures/hikvision-*.eml` and
//! `noname-ipc-motion.eml`, sources in `tests/captures/README.md`; the older reconstructed mails
//! are `testdata/hikvision_*.eml`): `X-Mailer: HIKMailer`, MIME boundary `#BOUNDARY#`, a text/plain
//! part of `KEY: value` lines after "This is an automatically generated e-mail from your IPC."
//! (or NVR/DVR). Keys seen across firmware 5.x: `EVENT TYPE`, `EVENT TIME` as
//! `2015-05-22,14:52:18` (local time, no zone), `IPC NAME`, `IPC S/N`, `CHANNEL NUMBER`,
//! `IPC IP ADDRESS`, and `CHANNEL NAME` when the channel is named (DS-2CD2032-I, 2015). Clones
//! with the same layout write the time day first (`EVENT TIME: 27/12/2021 17:42:19`) and lead
//! the lines with tabs. NVRs and DVRs say `NVR NAME`/`DVR NAME` and `CAMERA NAME(NUM):
//! Garage(A2)`, and their subject ends in "Motion Detected On Channel A2" (`CAMERA NAME(NUM):
//! CAM 2 Garage(A2)` on an "Embedded Net DVR", `D4(D4)` on a "Network Video Recorder" whose mail
//! came through Calipsa's relay without the "automatically generated" line).

use super::{Fields, MailView, non_empty};
use crate::event::EventTime;

pub(super) fn read(view: &MailView) -> Option<Fields> {
    let recognized = view.x_mailer.to_ascii_lowercase().contains("hikmailer")
        || view.boundary.as_deref() == Some("#BOUNDARY#")
        || (view.field("EVENT TYPE").is_some() && view.field("EVENT TIME").is_some());
    if !recognized {
        return None;
    }
    let mut fields = Fields {
        kind_text: view.field("EVENT TYPE").and_then(non_empty),
        // No order hint: Hikvision writes `2015-05-22,14:52:18` (a four-digit year first reads as
        // Y-M-D), but a camera with the same layout (rapi3's "No Name" IPC, captures/README.md)
        // writes `27/12/2021 17:42:19`, day first; with a hint of Y-M-D that was unread.
        event_time: view.field("EVENT TIME").map(|t| EventTime::parse(t, None)),
        ..Fields::default()
    };
    let device = ["IPC NAME", "NVR NAME", "DVR NAME", "DEVICE NAME"]
        .iter()
        .find_map(|k| view.field(k))
        .and_then(non_empty);
    fields.channel = view.field("CHANNEL NUMBER").and_then(non_empty);
    if let Some(value) = view.field("CAMERA NAME(NUM)") {
        // `Garage(A2)`: name, then the channel in parentheses.
        match value.rsplit_once('(') {
            Some((name, rest)) if rest.ends_with(')') => {
                fields.camera = non_empty(name);
                fields.channel = non_empty(&rest[..rest.len() - 1]);
            }
            _ => fields.camera = non_empty(value),
        }
    } else if let Some(name) = view.field("CHANNEL NAME") {
        // An IPC whose channel has its own name (`IPC NAME: ORTO`, `CHANNEL NAME: Orto` in the
        // DS-2CD2032-I capture): the channel name is what the installer called the camera.
        fields.camera = non_empty(name);
    } else if view.field("IPC NAME").is_some() {
        // A camera mailing for itself: the device is the camera.
        fields.camera = device.clone();
    }
    if fields.channel.is_none() {
        // NVR subject: "…Motion Detected On Channel A2".
        let lower = view.subject.to_ascii_lowercase();
        if let Some(at) = lower.rfind("on channel ") {
            fields.channel = view.subject[at + "on channel ".len()..]
                .split_whitespace()
                .next()
                .and_then(non_empty);
        }
    }
    fields.device = device;
    Some(fields)
}

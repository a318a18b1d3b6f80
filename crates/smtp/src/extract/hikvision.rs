//! Hikvision IP cameras, DVRs and NVRs (and OEM rebrands: LTS, Annke, …).
//!
//! Format (reconstructed, not a capture; test mails in `testdata/hikvision_*.eml`, made by
//! `testdata/make_mails.py`): `X-Mailer: HIKMailer`, MIME boundary `#BOUNDARY#`, a text/plain
//! part of `KEY: value` lines after "This is an automatically generated e-mail from your IPC."
//! (or NVR/DVR). Keys seen across firmware 5.x: `EVENT TYPE`, `EVENT TIME` as
//! `2015-05-22,14:52:18` (local time, no zone), `IPC NAME`, `IPC S/N`, `CHANNEL NUMBER`,
//! `IPC IP ADDRESS`. NVRs and DVRs say `NVR NAME`/`DVR NAME` and `CAMERA NAME(NUM):
//! Garage(A2)`, and their subject ends in "Motion Detected On Channel A2". Sources: the issue-5
//! brief; user reports on the IP Cam Talk and Home Assistant forums quoting these mails; the
//! node `simplesmtp` recipes that grep `EVENT TYPE`.

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
        event_time: view
            .field("EVENT TIME")
            .map(|t| EventTime::parse(t, Some("Y-M-D"))),
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

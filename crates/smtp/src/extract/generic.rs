//! Everything else, Axis included: Axis mail text is whatever the installer typed into the action
//! rule, so there is no fixed format to read. The kind comes from keywords in the subject, then
//! the body (the caller does the subject; this adds the body), and the camera's time from the
//! `Date:` header.

use super::{Fields, MailView};
use crate::event::{EventKind, EventTime};

pub(super) fn read(view: &MailView) -> Fields {
    let kind = EventKind::classify(&view.subject).or_else(|| {
        // Only the first lines of the body: a long body mentions everything.
        let head: String = view.text.lines().take(10).collect::<Vec<_>>().join("\n");
        EventKind::classify(&head)
    });
    Fields {
        kind,
        event_time: view.date.as_deref().map(EventTime::parse_rfc5322),
        ..Fields::default()
    }
}

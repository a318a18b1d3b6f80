//! [`CameraEvent`]: what a camera's alarm mail means, and its versioned JSON form.
//!
//! The JSON form (schema version [`SCHEMA_VERSION`], documented in `docs/event-schema.json`) is
//! the one format that `camevents` prints, passes to `--exec` and POSTs to `--webhook`, and that
//! the NVR's `POST /api/events` accepts.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use nvrkit_media::WallTime;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version of the event JSON schema, the `"v"` field.
pub const SCHEMA_VERSION: u32 = 1;

/// The most bytes of event JSON [`CameraEvent::from_untrusted_json`] reads. An event's JSON
/// carries no image bytes (snapshots are named, not included), so a real one is a few hundred
/// bytes to a few KiB.
pub const MAX_UNTRUSTED_EVENT_JSON: usize = 64 * 1024;

/// The deepest nesting of arrays and objects [`CameraEvent::from_untrusted_json`] reads (the
/// schema's deepest value, a snapshot in `snapshots`, is at level 3).
pub const MAX_UNTRUSTED_EVENT_DEPTH: usize = 16;

/// A camera event, from one alarm mail (or the quiet after it: [`EventPhase::End`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CameraEvent {
    /// Start of an alarm (a mail arrived) or its end (no mail for `end_after`).
    pub phase: EventPhase,
    /// The server's clock when DATA ended (UTC). This is what recorders act on: camera clocks
    /// drift and carry no zone.
    pub received_at: WallTime,
    /// Which vendor profile read the mail.
    pub vendor: Vendor,
    /// The sending device's own name (IPC NAME, NVR NAME, Alarm Device Name), if the mail has one.
    pub device: Option<String>,
    /// The camera's name: from the mail body where the vendor puts it, else the local part of
    /// the first recipient (NVRs mail for every channel from one sender, so installers give each
    /// camera its own recipient, as Shinobi and Scrypted expect).
    pub camera: Option<String>,
    /// The channel as the device numbers it (`1`, `A2`, `D3`), if the mail says.
    pub channel: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// The vendor's own words for what happened (`Motion Detected`, `Line Crossing Detection`).
    pub kind_text: Option<String>,
    /// The camera's own timestamp, if the mail has one.
    pub event_time: Option<EventTime>,
    /// The `Subject:` header, decoded.
    pub subject: String,
    /// The `From:` header's address, else the envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// JPEG and PNG attachments.
    pub snapshots: Vec<Snapshot>,
    /// Where the mail came from.
    pub source: Source,
}

/// Start or end of an alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventPhase {
    /// An alarm mail arrived.
    Start,
    /// No alarm mail for this camera arrived for the configured `end_after` (cameras send no
    /// "motion ended" mail).
    End,
}

/// The vendor profile that read a mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Vendor {
    /// Hikvision IP cameras, DVRs and NVRs (and their many OEM rebrands).
    Hikvision,
    /// Dahua and Amcrest (and Dahua OEMs).
    Dahua,
    /// Reolink.
    Reolink,
    /// Anything else: read from the subject and sender. Axis cameras land here: their mail text
    /// is whatever the installer typed into the action rule.
    Generic,
}

impl Vendor {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Hikvision => "hikvision",
            Vendor::Dahua => "dahua",
            Vendor::Reolink => "reolink",
            Vendor::Generic => "generic",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// Motion detection.
    Motion,
    /// Line crossing (tripwire).
    LineCrossing,
    /// Intrusion (region entrance, perimeter).
    Intrusion,
    /// Video loss.
    VideoLoss,
    /// Tampering (lens covered, camera moved, defocus).
    Tamper,
    /// A failed or illegal login on the device.
    IllegalLogin,
    /// An alarm input (I/O contact).
    Io,
    /// A test mail from the camera's settings page.
    Test,
    /// Anything else, with the text that named it.
    Other(String),
}

impl EventKind {
    /// The `kind` string in JSON (`other` for [`EventKind::Other`]).
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Motion => "motion",
            EventKind::LineCrossing => "line_crossing",
            EventKind::Intrusion => "intrusion",
            EventKind::VideoLoss => "video_loss",
            EventKind::Tamper => "tamper",
            EventKind::IllegalLogin => "illegal_login",
            EventKind::Io => "io",
            EventKind::Test => "test",
            EventKind::Other(_) => "other",
        }
    }

    /// Reads the JSON form back; `text` is `kind_text`, the name of an `other` kind.
    pub fn from_json(kind: &str, text: Option<&str>) -> EventKind {
        match kind {
            "motion" => EventKind::Motion,
            "line_crossing" => EventKind::LineCrossing,
            "intrusion" => EventKind::Intrusion,
            "video_loss" => EventKind::VideoLoss,
            "tamper" => EventKind::Tamper,
            "illegal_login" => EventKind::IllegalLogin,
            "io" => EventKind::Io,
            "test" => EventKind::Test,
            "other" => EventKind::Other(text.unwrap_or_default().to_owned()),
            unknown => EventKind::Other(unknown.to_owned()),
        }
    }

    /// Classifies free text (a subject, an `EVENT TYPE:` value) by keyword. Order matters:
    /// "Line Crossing Detection" must not become motion, "Video Tampering" not video loss.
    pub fn classify(text: &str) -> Option<EventKind> {
        let t = text.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
        let kind = if has(&[
            "test mail",
            "test e-mail",
            "test email",
            "testmail",
            "test message",
        ]) {
            EventKind::Test
        } else if has(&[
            "line crossing",
            "linecrossing",
            "line-crossing",
            "tripwire",
            "cross line",
            "crossline",
        ]) {
            EventKind::LineCrossing
        } else if has(&[
            "intrusion",
            "region entrance",
            "region exiting",
            "perimeter",
            "field detection",
        ]) {
            EventKind::Intrusion
        } else if has(&[
            "tamper",
            "video blind",
            "blind",
            "defocus",
            "scene change",
            "masking",
        ]) {
            EventKind::Tamper
        } else if has(&["video loss", "videoloss", "video lost", "signal loss"]) {
            EventKind::VideoLoss
        } else if has(&[
            "illegal login",
            "illegal access",
            "login fail",
            "failed login",
            "invalid login",
        ]) {
            EventKind::IllegalLogin
        } else if has(&[
            "alarm input",
            "alarm in ",
            "local alarm",
            "i/o",
            "external alarm",
            "sensor alarm",
            "input alarm",
        ]) {
            EventKind::Io
        } else if has(&[
            "motion", "md alarm", "movement", "pir", "human", "person", "vehicle", "smart",
        ]) {
            EventKind::Motion
        } else {
            return None;
        };
        Some(kind)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Other(text) => write!(f, "other ({text})"),
            kind => f.write_str(kind.as_str()),
        }
    }
}

/// The camera's own timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventTime {
    /// Exactly as the mail gave it (`2015-05-22,14:52:18`).
    pub text: String,
    /// Best-effort reading as a local date and time with no zone, ISO 8601
    /// (`2015-05-22T14:52:18`); `None` when the text is not a format we know. Cameras send
    /// their local time without a zone, so this is not UTC.
    pub local: Option<String>,
}

impl EventTime {
    /// Keeps `text` and reads it with the known camera formats. `order` is the field order the
    /// mail announced, if any (`D/M/Y` in Dahua's `Alarm Start Time(D/M/Y H:M:S)`).
    pub fn parse(text: &str, order: Option<&str>) -> EventTime {
        EventTime {
            text: text.to_owned(),
            local: crate::extract::parse_local_time(text, order),
        }
    }
}

impl EventTime {
    /// Keeps an RFC 5322 `Date:` header and reads the local time it names (the zone is dropped,
    /// like every other camera time here).
    pub fn parse_rfc5322(text: &str) -> EventTime {
        EventTime {
            text: text.to_owned(),
            local: crate::extract::parse_rfc5322_local(text),
        }
    }
}

/// An image attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The attachment's file name, or one we made up (`snapshot-1.jpg`).
    pub name: String,
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    /// The image bytes (empty in an event decoded from JSON).
    pub data: Bytes,
    /// Where it was saved, when the server saves snapshots to a directory.
    pub path: Option<PathBuf>,
    /// Size in bytes (kept when `data` is not, as in JSON).
    pub size: usize,
}

impl Snapshot {
    /// A snapshot held in memory.
    pub fn new(name: String, content_type: String, data: Bytes) -> Snapshot {
        Snapshot {
            size: data.len(),
            name,
            content_type,
            data,
            path: None,
        }
    }
}

/// Where a mail came from: the connection and the envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Source {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// Its `HELO`/`EHLO` name.
    pub helo: String,
    /// The user it authenticated as.
    pub auth_user: Option<String>,
    /// Whether the session was under TLS.
    pub tls: bool,
    /// The envelope sender.
    pub mail_from: String,
}

#[derive(Serialize, Deserialize)]
struct WireSnapshot {
    name: String,
    content_type: String,
    size: usize,
    path: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct WireEvent {
    v: u32,
    phase: EventPhase,
    received_at: String,
    vendor: Vendor,
    device: Option<String>,
    camera: Option<String>,
    channel: Option<String>,
    kind: String,
    kind_text: Option<String>,
    event_time: Option<EventTime>,
    subject: String,
    from: String,
    to: Vec<String>,
    snapshots: Vec<WireSnapshot>,
    source: Source,
}

impl CameraEvent {
    /// A key that names the camera for end-of-alarm tracking and for the NVR's mapping: the
    /// camera name, else the device, else the sender, plus the channel.
    pub fn camera_key(&self) -> String {
        let who = self
            .camera
            .as_deref()
            .or(self.device.as_deref())
            .unwrap_or(&self.from);
        match &self.channel {
            Some(channel) => format!("{who}#{channel}"),
            None => who.to_owned(),
        }
    }

    /// The event as one line of JSON (schema version [`SCHEMA_VERSION`]), without a newline.
    pub fn to_json(&self) -> String {
        let kind_text = match &self.kind {
            EventKind::Other(text) if self.kind_text.is_none() => Some(text.clone()),
            _ => self.kind_text.clone(),
        };
        let wire = WireEvent {
            v: SCHEMA_VERSION,
            phase: self.phase,
            received_at: self.received_at.to_rfc3339(),
            vendor: self.vendor,
            device: self.device.clone(),
            camera: self.camera.clone(),
            channel: self.channel.clone(),
            kind: self.kind.as_str().to_owned(),
            kind_text,
            event_time: self.event_time.clone(),
            subject: self.subject.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            snapshots: self
                .snapshots
                .iter()
                .map(|s| WireSnapshot {
                    name: s.name.clone(),
                    content_type: s.content_type.clone(),
                    size: s.size,
                    path: s.path.clone(),
                })
                .collect(),
            source: self.source.clone(),
        };
        // Serializing plain strings, numbers and options cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads event JSON from a peer that may be hostile (the NVR's `POST /api/events`): at most
    /// [`MAX_UNTRUSTED_EVENT_JSON`] bytes ([`Error::EventJsonTooLarge`] past it, before anything
    /// is parsed), UTF-8, arrays and objects nested at most [`MAX_UNTRUSTED_EVENT_DEPTH`] deep
    /// ([`Error::EventJsonTooDeep`], found by [`nvrkit_net::json_depth_within`] before serde
    /// sees the input), then [`CameraEvent::from_json`]. Every string is thus bounded by the
    /// byte limit; a caller that keeps or stores the event bounds it further (nvr keeps a note
    /// bounded by `nvrkit_store::note::bound`, as for a mailed event).
    ///
    /// An object without `"v"` is read in the short form, [`CameraEvent::from_short_json`]
    /// (`{"camera": "demo", "kind": "motion"}`), under the same limits.
    pub fn from_untrusted_json(json: &[u8]) -> Result<CameraEvent> {
        if json.len() > MAX_UNTRUSTED_EVENT_JSON {
            return Err(Error::EventJsonTooLarge {
                len: json.len(),
                max: MAX_UNTRUSTED_EVENT_JSON,
            });
        }
        let text = std::str::from_utf8(json)
            .map_err(|e| Error::EventJson(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
        if !nvrkit_net::json_depth_within(json, MAX_UNTRUSTED_EVENT_DEPTH) {
            return Err(Error::EventJsonTooDeep {
                max: MAX_UNTRUSTED_EVENT_DEPTH,
            });
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::EventJson(e.to_string()))?;
        if value.is_object() && value.get("v").is_none() {
            return CameraEvent::from_short_value(value);
        }
        CameraEvent::from_value(value)
    }

    /// Reads the short form a person types: `{"camera": "demo", "kind": "motion"}`, with an
    /// optional `"channel"` and `"kind_text"` and no other key (a typo is refused, not
    /// ignored). `camera` is required, `kind` defaults to `motion`. The event is a
    /// [`EventPhase::Start`] from the [`Vendor::Generic`] profile, received now, with the
    /// camera's name as its subject and `api` as its sender.
    pub fn from_short_json(json: &str) -> Result<CameraEvent> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::EventJson(e.to_string()))?;
        CameraEvent::from_short_value(value)
    }

    fn from_short_value(value: serde_json::Value) -> Result<CameraEvent> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Short {
            camera: String,
            kind: Option<String>,
            kind_text: Option<String>,
            channel: Option<String>,
        }
        let short: Short = serde_json::from_value(value)
            .map_err(|e| Error::EventJson(format!("short form: {e}")))?;
        if short.camera.is_empty() {
            return Err(Error::EventJson("short form: camera is empty".to_owned()));
        }
        let kind = EventKind::from_json(
            short.kind.as_deref().unwrap_or("motion"),
            short.kind_text.as_deref(),
        );
        Ok(CameraEvent {
            phase: EventPhase::Start,
            received_at: WallTime::now(),
            vendor: Vendor::Generic,
            device: None,
            subject: short.camera.clone(),
            camera: Some(short.camera),
            channel: short.channel,
            kind,
            kind_text: short.kind_text,
            event_time: None,
            from: "api".to_owned(),
            to: Vec::new(),
            snapshots: Vec::new(),
            source: Source::default(),
        })
    }

    /// Reads the JSON form. Snapshot bytes are not in JSON: `data` is empty, `size` and `path`
    /// are kept. For input from the network, use [`CameraEvent::from_untrusted_json`].
    pub fn from_json(json: &str) -> Result<CameraEvent> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::EventJson(e.to_string()))?;
        CameraEvent::from_value(value)
    }

    fn from_value(value: serde_json::Value) -> Result<CameraEvent> {
        match value.get("v").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(Error::EventJson(format!(
                    "schema version {v} is not supported (this build reads {SCHEMA_VERSION})"
                )));
            }
            None => return Err(Error::EventJson("no schema version \"v\"".to_owned())),
        }
        let wire: WireEvent =
            serde_json::from_value(value).map_err(|e| Error::EventJson(e.to_string()))?;
        let received_at = WallTime::parse_rfc3339(&wire.received_at)
            .map_err(|e| Error::EventJson(format!("received_at: {e}")))?;
        Ok(CameraEvent {
            phase: wire.phase,
            received_at,
            vendor: wire.vendor,
            device: wire.device,
            camera: wire.camera,
            channel: wire.channel,
            kind: EventKind::from_json(&wire.kind, wire.kind_text.as_deref()),
            kind_text: wire.kind_text,
            event_time: wire.event_time,
            subject: wire.subject,
            from: wire.from,
            to: wire.to,
            snapshots: wire
                .snapshots
                .into_iter()
                .map(|s| Snapshot {
                    name: s.name,
                    content_type: s.content_type,
                    data: Bytes::new(),
                    path: s.path,
                    size: s.size,
                })
                .collect(),
            source: wire.source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"v":1,"phase":"start","received_at":"2026-11-25T12:00:00Z","vendor":"generic","camera":"garage","kind":"motion","subject":"Motion","from":"a@b","to":["garage@nvr"],"snapshots":[{"name":"a.jpg","content_type":"image/jpeg","size":3,"path":null}],"source":{"peer":null,"helo":"x","auth_user":null,"tls":false,"mail_from":"a@b"}}"#;

    #[test]
    fn untrusted_json_within_the_limits_reads_like_from_json() {
        let e = CameraEvent::from_untrusted_json(EVENT.as_bytes()).unwrap();
        assert_eq!(e, CameraEvent::from_json(EVENT).unwrap());
        assert_eq!(e.camera.as_deref(), Some("garage"));
        assert!(nvrkit_net::json_depth_within(EVENT.as_bytes(), 3));
        assert!(!nvrkit_net::json_depth_within(EVENT.as_bytes(), 2));
    }

    #[test]
    fn oversized_untrusted_json_is_refused_naming_the_limit() {
        // `"Motion"` (8 bytes) becomes a subject of `n` bytes, quotes included.
        let with_subject =
            |n: usize| EVENT.replace("\"Motion\"", &format!("\"{}\"", "M".repeat(n - 2)));
        let at_limit = with_subject(MAX_UNTRUSTED_EVENT_JSON - EVENT.len() + 8);
        assert_eq!(at_limit.len(), MAX_UNTRUSTED_EVENT_JSON);
        assert!(CameraEvent::from_untrusted_json(at_limit.as_bytes()).is_ok());
        let over = with_subject(MAX_UNTRUSTED_EVENT_JSON - EVENT.len() + 9);
        let e = CameraEvent::from_untrusted_json(over.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::EventJsonTooLarge {
                    len: 65537,
                    max: MAX_UNTRUSTED_EVENT_JSON
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("limit of 65536 bytes"), "{e}");
    }

    #[test]
    fn deep_or_malformed_untrusted_json_is_refused() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = CameraEvent::from_untrusted_json(deep.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::EventJsonTooDeep {
                    max: MAX_UNTRUSTED_EVENT_DEPTH
                }
            ),
            "{e}"
        );
        // Brackets inside strings (and escaped quotes) do not count.
        let quoted = EVENT.replace("\"Motion\"", &format!("\"\\\"{}\"", "[{".repeat(100)));
        assert!(CameraEvent::from_untrusted_json(quoted.as_bytes()).is_ok());
        let nested = EVENT.replace(
            "\"vendor\"",
            &format!("\"x\":{}1{},\"vendor\"", "[".repeat(20), "]".repeat(20)),
        );
        assert!(matches!(
            CameraEvent::from_untrusted_json(nested.as_bytes()),
            Err(Error::EventJsonTooDeep { .. })
        ));
        for bad in [
            &b"\xff\xfe"[..],
            b"",
            b"{",
            b"null",
            br#"{"v":2}"#,
            br#"{"v":1}"#,
            br#"{}"#,
            br#"{"kind":"motion"}"#,
            br#"{"camera":""}"#,
            br#"{"camera":"demo","kind":"motion","subjcet":"typo"}"#,
            br#"{"camera":7}"#,
        ] {
            assert!(CameraEvent::from_untrusted_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_form_names_a_camera_and_a_kind() {
        let e = CameraEvent::from_untrusted_json(br#"{"camera":"demo","kind":"motion"}"#).unwrap();
        assert_eq!(e.camera.as_deref(), Some("demo"));
        assert_eq!(e.kind, EventKind::Motion);
        assert_eq!(e.phase, EventPhase::Start);
        assert_eq!(e.camera_key(), "demo");
        let e = CameraEvent::from_short_json(r#"{"camera":"gate","channel":"2"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Motion);
        assert_eq!(e.camera_key(), "gate#2");
        let e = CameraEvent::from_untrusted_json(br#"{"camera":"x","kind":"doorbell"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Other("doorbell".into()));
        // Its JSON is the full form, which reads back.
        let back = CameraEvent::from_json(&e.to_json()).unwrap();
        assert_eq!(back.to_json(), e.to_json());
        // The limits hold for the short form too.
        let deep = format!(
            r#"{{"camera":"x","kind":{}1{}}}"#,
            "[".repeat(20),
            "]".repeat(20)
        );
        assert!(matches!(
            CameraEvent::from_untrusted_json(deep.as_bytes()),
            Err(Error::EventJsonTooDeep { .. })
        ));
    }
}

//! Topic names and the Home Assistant discovery payload.
//!
//! Camera names in `camevents` come from mail (a recipient's local part, a name in the body), so
//! a camera's topic segment is made from its name and can never be a wildcard (`+`, `#`), a level
//! separator (`/`), a NUL, a `$` topic or longer than [`MAX_SEGMENT`] bytes.

use serde_json::json;

/// The first level of every state topic: `nvrkit/<camera>/event`.
pub const PREFIX: &str = "nvrkit";

/// Home Assistant's default discovery prefix.
pub const DISCOVERY_PREFIX: &str = "homeassistant";

/// The longest topic segment made from a camera name, in bytes (hash suffix included).
pub const MAX_SEGMENT: usize = 64;

/// The payloads of the motion topic.
pub const MOTION_ON: &str = "ON";
/// The motion topic's "no motion".
pub const MOTION_OFF: &str = "OFF";
/// The payload of an availability topic while the publisher runs.
pub const ONLINE: &str = "online";
/// An availability topic's "not running" (the bridge's MQTT last will).
pub const OFFLINE: &str = "offline";

/// The topic segment for a camera name: ASCII letters, digits, `.`, `_` and `-` are kept,
/// anything else becomes `_`, at most [`MAX_SEGMENT`] bytes. A name that had to change gets a
/// hash of the original appended (`Caméra 1` → `Cam_ra_1-5b3e0c2f`), so two names that differ
/// only in what was replaced still get their own topics. An empty name is `_`.
///
/// ```
/// use nvrkit_mqtt::topic::segment;
/// assert_eq!(segment("garage"), "garage");
/// assert!(segment("a/+/#").starts_with("a____-"));
/// assert_ne!(segment("a/b"), segment("a+b"));
/// ```
pub fn segment(name: &str) -> String {
    clean(name, true)
}

/// The Home Assistant node id for a camera (`[A-Za-z0-9_-]`, as discovery topics need): the
/// [`segment`] rule without `.`.
pub fn node_id(name: &str) -> String {
    format!("nvrkit_{}", clean(name, false))
}

fn clean(name: &str, allow_dot: bool) -> String {
    let keep =
        |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.');
    let mut out: String = name
        .chars()
        .map(|c| if keep(c) { c } else { '_' })
        .collect();
    if out.is_empty() {
        return "_".to_owned();
    }
    if out != name || out.len() > MAX_SEGMENT {
        // 9 bytes of suffix: `-` and 8 hex digits.
        out.truncate(MAX_SEGMENT - 9);
        out.push_str(&format!("-{:08x}", fnv1a(name.as_bytes())));
    }
    out
}

/// FNV-1a, 32 bits: a stable, dependency-free hash (not a defence: only to keep names apart).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The topics of one camera.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CameraTopics {
    /// The camera's name as given (shown as the Home Assistant device name, bounded).
    pub name: String,
    /// Its topic segment ([`segment`]).
    pub segment: String,
    /// `nvrkit/<camera>/event`: each event's JSON, not retained.
    pub event: String,
    /// `nvrkit/<camera>/motion`: `ON` or `OFF`, retained.
    pub motion: String,
    /// `nvrkit/<camera>/availability`: `online` or `offline`, retained.
    pub availability: String,
    /// `homeassistant/binary_sensor/nvrkit_<camera>/motion/config`: the discovery config.
    pub discovery: String,
}

impl CameraTopics {
    /// The topics of the camera called `name`.
    pub fn new(name: &str) -> CameraTopics {
        let segment = segment(name);
        let mut shown = name.to_owned();
        if shown.len() > MAX_SEGMENT {
            let mut cut = MAX_SEGMENT;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
        }
        CameraTopics {
            event: format!("{PREFIX}/{segment}/event"),
            motion: format!("{PREFIX}/{segment}/motion"),
            availability: format!("{PREFIX}/{segment}/availability"),
            discovery: format!(
                "{DISCOVERY_PREFIX}/binary_sensor/{}/motion/config",
                node_id(name)
            ),
            name: shown,
            segment,
        }
    }

    /// The retained Home Assistant discovery config of the camera's motion sensor
    /// (<https://www.home-assistant.io/integrations/binary_sensor.mqtt/>): `device_class`
    /// motion on [`CameraTopics::motion`], available while both `bridge_availability` (the
    /// publisher's own topic, which its MQTT last will sets `offline`) and the camera's
    /// availability say `online`; `program` is the device's model (`nvr`, `camevents`).
    pub fn discovery_payload(&self, bridge_availability: &str, program: &str) -> String {
        let node = node_id(&self.name);
        json!({
            "name": "Motion",
            "unique_id": format!("{node}_motion"),
            "device_class": "motion",
            "state_topic": self.motion,
            "payload_on": MOTION_ON,
            "payload_off": MOTION_OFF,
            "availability": [
                {"topic": bridge_availability},
                {"topic": self.availability},
            ],
            "availability_mode": "all",
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "json_attributes_topic": self.event,
            "device": {
                "identifiers": [node],
                "name": self.name,
                "manufacturer": "nvrkit",
                "model": program,
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
            "origin": {
                "name": "nvrkit",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
        })
        .to_string()
    }
}

/// The publisher's own availability topic, `nvrkit/bridge/<client id>/availability`: four
/// levels, so no camera's (three) can be it.
pub fn bridge_availability(client_id: &str) -> String {
    format!("{PREFIX}/bridge/{}/availability", segment(client_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_never_hold_wildcards_separators_or_nul_and_are_bounded() {
        let hostile = [
            "+", "#", "/", "a/b", "\0", "$SYS", "cam#1", "x+y", " ", "é", "🎥", "..", "",
        ];
        let long = "a".repeat(1000);
        let long_utf8 = "é".repeat(500);
        for name in hostile
            .iter()
            .copied()
            .chain([long.as_str(), long_utf8.as_str()])
        {
            for s in [segment(name), node_id(name)] {
                assert!(
                    !s.is_empty() && s.len() <= MAX_SEGMENT + 7,
                    "{name:?} → {s:?}"
                );
                assert!(
                    !s.contains(['+', '#', '/', '\0', '$', ' ']),
                    "{name:?} → {s:?}"
                );
                assert!(s.is_ascii(), "{name:?} → {s:?}");
            }
            assert!(segment(name).len() <= MAX_SEGMENT);
        }
        assert!(
            node_id("a.b")
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        // Clean names are kept as they are; changed ones stay apart.
        assert_eq!(segment("front-door_2.lan"), "front-door_2.lan");
        assert_eq!(node_id("front-door_2"), "nvrkit_front-door_2");
        assert_ne!(segment("a/b"), segment("a#b"));
        assert_ne!(node_id("a.b"), node_id("a_b"));
        assert_ne!(segment(&long), segment(&format!("{long}b")));
        assert_eq!(segment("a/b"), segment("a/b"), "stable");
    }

    #[test]
    fn camera_topics_and_the_discovery_config() {
        let t = CameraTopics::new("garage");
        assert_eq!(t.event, "nvrkit/garage/event");
        assert_eq!(t.motion, "nvrkit/garage/motion");
        assert_eq!(t.availability, "nvrkit/garage/availability");
        assert_eq!(
            t.discovery,
            "homeassistant/binary_sensor/nvrkit_garage/motion/config"
        );
        let bridge = bridge_availability("nvrkit-nvr");
        assert_eq!(bridge, "nvrkit/bridge/nvrkit-nvr/availability");
        let v: serde_json::Value =
            serde_json::from_str(&t.discovery_payload(&bridge, "nvr")).unwrap();
        assert_eq!(v["device_class"], "motion");
        assert_eq!(v["state_topic"], "nvrkit/garage/motion");
        assert_eq!(v["unique_id"], "nvrkit_garage_motion");
        assert_eq!(v["payload_on"], "ON");
        assert_eq!(v["payload_off"], "OFF");
        assert_eq!(v["availability"][0]["topic"], bridge);
        assert_eq!(v["availability"][1]["topic"], "nvrkit/garage/availability");
        assert_eq!(v["availability_mode"], "all");
        assert_eq!(v["device"]["identifiers"][0], "nvrkit_garage");
        assert_eq!(v["device"]["name"], "garage");
        assert_eq!(v["device"]["model"], "nvr");

        // A hostile name: its topics stay three levels, its name is JSON-escaped and bounded.
        let evil = format!("x\"}}/#/+{}", "é".repeat(100));
        let t = CameraTopics::new(&evil);
        assert_eq!(t.event.split('/').count(), 3, "{}", t.event);
        assert_eq!(t.discovery.split('/').count(), 5, "{}", t.discovery);
        let v: serde_json::Value =
            serde_json::from_str(&t.discovery_payload(&bridge, "camevents")).unwrap();
        let shown = v["device"]["name"].as_str().unwrap();
        assert!(shown.len() <= MAX_SEGMENT && evil.starts_with(shown));
    }
}

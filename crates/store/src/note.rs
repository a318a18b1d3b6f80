//! Bounds on the JSON note kept with a tag (an event's description).
//!
//! A note comes from a device on the camera network: an e-mail's subject, a posted event. Each
//! one is appended to `tags.jsonl` and kept in memory, so it is bounded before it is stored:
//! strings are cut (at a character boundary) and marked with [`TRUNCATED`], arrays, objects and
//! nesting are cut, and a note still longer than [`MAX_NOTE_BYTES`] once serialized is bounded
//! again, tighter, until it fits. Every pass is linear in its input.

use serde_json::{Map, Value};

/// The most bytes a stored note takes, serialized.
pub const MAX_NOTE_BYTES: usize = 4096;
/// What ends a string that was cut.
pub const TRUNCATED: &str = "…[truncated]";

/// One set of limits a pass applies.
#[derive(Clone, Copy)]
struct Caps {
    /// Bytes of a string value, marker included.
    string: usize,
    /// Bytes of an object key.
    key: usize,
    /// Items of an array, fields of an object.
    items: usize,
    /// Nesting depth; deeper values become a marker string.
    depth: usize,
}

/// Ever tighter passes; the last one always fits.
const PASSES: [Caps; 3] = [
    Caps {
        string: 512,
        key: 64,
        items: 32,
        depth: 8,
    },
    Caps {
        string: 96,
        key: 32,
        items: 12,
        depth: 4,
    },
    Caps {
        string: 32,
        key: 16,
        items: 6,
        depth: 2,
    },
];

/// Cuts `s` to at most `max` bytes, the marker included, at a character boundary. A string that
/// fits is returned as it is.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(TRUNCATED.len()).min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + TRUNCATED.len());
    out.push_str(&s[..end]);
    out.push_str(TRUNCATED);
    out
}

fn bound_with(v: &Value, caps: Caps, depth: usize) -> Value {
    match v {
        Value::String(s) => Value::String(truncate(s, caps.string)),
        Value::Array(a) => {
            if depth >= caps.depth {
                return Value::String(TRUNCATED.to_owned());
            }
            // Past the cap, the last kept place says so: a bounded array is within the cap.
            let over = a.len() > caps.items;
            let keep = if over { caps.items - 1 } else { a.len() };
            let mut out: Vec<Value> = a
                .iter()
                .take(keep)
                .map(|x| bound_with(x, caps, depth + 1))
                .collect();
            if over {
                out.push(Value::String(TRUNCATED.to_owned()));
            }
            Value::Array(out)
        }
        Value::Object(o) => {
            if depth >= caps.depth {
                return Value::String(TRUNCATED.to_owned());
            }
            let over = o.len() > caps.items;
            let keep = if over { caps.items - 1 } else { o.len() };
            let mut out = Map::new();
            for (k, x) in o.iter().take(keep) {
                out.insert(truncate(k, caps.key), bound_with(x, caps, depth + 1));
            }
            if over {
                out.insert("truncated".to_owned(), Value::Bool(true));
            }
            Value::Object(out)
        }
        scalar => scalar.clone(),
    }
}

fn serialized_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// `note` bounded: its strings, arrays, objects and depth cut as the module says, and at most
/// [`MAX_NOTE_BYTES`] serialized. A note within every bound comes back unchanged.
pub fn bound(note: &Value) -> Value {
    let mut v = note.clone();
    for caps in PASSES {
        v = bound_with(&v, caps, 0);
        if serialized_len(&v) <= MAX_NOTE_BYTES {
            return v;
        }
    }
    // Unreachable with the last pass's caps (6 fields of 16-byte keys and 32-byte strings, two
    // levels deep, is well under 4 KiB); kept so the bound holds whatever the caps become.
    Value::String(TRUNCATED.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_note_is_kept_as_it_is() {
        let n =
            json!({"kind": "motion", "subject": "Motion Detected", "to": ["garage@nvr"], "v": 1});
        assert_eq!(bound(&n), n);
    }

    #[test]
    fn a_long_subject_is_cut_with_a_marker() {
        let n = json!({"kind": "motion", "subject": "A".repeat(1 << 20)});
        let b = bound(&n);
        let s = b["subject"].as_str().unwrap();
        assert!(s.ends_with(TRUNCATED), "{s}");
        assert!(s.starts_with("AAAA"));
        assert!(s.len() <= 512);
        assert_eq!(b["kind"], "motion");
        assert!(serde_json::to_vec(&b).unwrap().len() <= MAX_NOTE_BYTES);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let s = "é".repeat(100);
        let t = truncate(&s, 51);
        assert!(t.ends_with(TRUNCATED));
        assert!(t.len() <= 51);
        assert!(t.trim_end_matches(TRUNCATED).chars().all(|c| c == 'é'));
        assert_eq!(truncate("short", 51), "short");
        // A cap smaller than the marker still gives the marker, never a panic.
        assert_eq!(truncate("abcdefghijklmnopqrstuvwxyz", 3), TRUNCATED);
    }

    #[test]
    fn many_fields_and_deep_nesting_are_bounded() {
        let wide: Map<String, Value> = (0..10_000)
            .map(|i| (format!("{i}{}", "k".repeat(200)), json!("v".repeat(400))))
            .collect();
        let mut deep = json!("bottom");
        for _ in 0..100 {
            deep = json!([deep]);
        }
        for n in [
            Value::Object(wide),
            deep,
            json!({"to": vec!["x".repeat(500); 5000]}),
        ] {
            let b = bound(&n);
            assert!(
                serde_json::to_vec(&b).unwrap().len() <= MAX_NOTE_BYTES,
                "{b}"
            );
            assert_eq!(bound(&b), b, "bounding is idempotent");
        }
    }
}

//! A bound on AMF0 nesting, checked before the server's commands are parsed.
//!
//! `rml_amf0` parses objects and arrays recursively. A server (or anything that answers on the
//! port) could send `0x03` object markers thousands deep inside one 16 MB message and overflow
//! the stack of the task that parses it, which aborts the whole process rather than failing the
//! one push. So every AMF0 payload from the server is scanned first, without recursion, and
//! refused when it nests deeper than [`MAX_DEPTH`]. Real servers send flat objects: nginx-rtmp,
//! node-media-server, Wowza and ffmpeg nest at most 2 deep in `_result`/`onStatus`.

/// Deepest object/array nesting accepted from a server.
pub const MAX_DEPTH: usize = 32;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;

enum Open {
    /// Object or ECMA array: `(u16 name, value)*` closed by an empty name and 0x09.
    Properties,
    /// Strict array: this many values left.
    Values(u32),
}

/// The deepest nesting of objects and arrays in a sequence of AMF0 values, following the
/// markers `rml_amf0` understands. The scan stops where `rml_amf0` would stop (end of data, an
/// object-end marker in value position, an unknown marker, a truncated value): past that point
/// the parser recurses no further, so the depth seen so far bounds its recursion.
pub fn nesting_depth(data: &[u8]) -> usize {
    let mut pos = 0usize;
    let mut stack: Vec<Open> = Vec::new();
    let mut deepest = 0;
    let take = |pos: &mut usize, n: usize| -> Option<usize> {
        let start = *pos;
        let end = start.checked_add(n)?;
        if end > data.len() {
            return None;
        }
        *pos = end;
        Some(start)
    };
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([data[i], data[i + 1]]));
    loop {
        match stack.last_mut() {
            Some(Open::Properties) => {
                let Some(at) = take(&mut pos, 2) else {
                    return deepest;
                };
                let name = u16_at(at);
                if name == 0 {
                    // An empty name ends the object (the parser errors unless 0x09 follows).
                    if take(&mut pos, 1).is_none() {
                        return deepest;
                    }
                    stack.pop();
                    continue;
                }
                if take(&mut pos, name).is_none() {
                    return deepest;
                }
            }
            Some(Open::Values(0)) => {
                stack.pop();
                continue;
            }
            Some(Open::Values(n)) => *n -= 1,
            None => {}
        }
        let Some(at) = take(&mut pos, 1) else {
            return deepest;
        };
        match data[at] {
            NUMBER => {
                if take(&mut pos, 8).is_none() {
                    return deepest;
                }
            }
            BOOLEAN => {
                if take(&mut pos, 1).is_none() {
                    return deepest;
                }
            }
            STRING => {
                let Some(at) = take(&mut pos, 2) else {
                    return deepest;
                };
                if take(&mut pos, u16_at(at)).is_none() {
                    return deepest;
                }
            }
            NULL | UNDEFINED => {}
            OBJECT => stack.push(Open::Properties),
            ECMA_ARRAY => {
                if take(&mut pos, 4).is_none() {
                    return deepest;
                }
                stack.push(Open::Properties);
            }
            STRICT_ARRAY => {
                let Some(at) = take(&mut pos, 4) else {
                    return deepest;
                };
                let n = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                stack.push(Open::Values(n));
            }
            OBJECT_END => match stack.last() {
                // In value position 0x09 ends the sequence (top level or strict array).
                Some(Open::Values(_)) => {
                    stack.pop();
                }
                _ => return deepest,
            },
            _ => return deepest,
        }
        deepest = deepest.max(stack.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::rml_amf0::{Amf0Value, serialize};
    use std::collections::HashMap;

    fn nest(depth: usize) -> Amf0Value {
        let mut v = Amf0Value::Number(1.0);
        for i in 0..depth {
            v = if i % 2 == 0 {
                Amf0Value::Object(HashMap::from([("k".to_owned(), v)]))
            } else {
                Amf0Value::StrictArray(vec![Amf0Value::Null, v])
            };
        }
        v
    }

    #[test]
    fn depth_of_real_and_nested_values() {
        let result = serialize(&vec![
            Amf0Value::Utf8String("_result".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(HashMap::from([
                (
                    "fmsVer".to_owned(),
                    Amf0Value::Utf8String("FMS/3,0,1,123".into()),
                ),
                ("capabilities".to_owned(), Amf0Value::Number(31.0)),
            ])),
            Amf0Value::Object(HashMap::from([(
                "fourCcList".to_owned(),
                Amf0Value::StrictArray(vec![Amf0Value::Utf8String("hvc1".into())]),
            )])),
        ])
        .unwrap();
        assert_eq!(nesting_depth(&result), 2);
        for d in [0, 1, 5, 33, 200] {
            assert_eq!(
                nesting_depth(&serialize(&vec![nest(d)]).unwrap()),
                d,
                "depth {d}"
            );
        }
    }

    #[test]
    fn hostile_input_is_bounded_without_recursion() {
        // Object markers all the way: each opens an object whose first name is 771 bytes long.
        assert!(nesting_depth(&[OBJECT; 100_000]) > MAX_DEPTH);
        let mut deep = Vec::new();
        for _ in 0..100_000 {
            deep.extend_from_slice(&[0, 1, b'k', OBJECT]);
        }
        let mut v = vec![OBJECT];
        v.extend_from_slice(&deep);
        assert_eq!(nesting_depth(&v), 100_001);
        assert_eq!(nesting_depth(&[STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF]), 1);
        assert_eq!(nesting_depth(&[]), 0);
        assert_eq!(nesting_depth(&[STRING, 0xFF]), 0);
    }
}

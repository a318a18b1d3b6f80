//! Frame stamps: each video frame of a loop numbered by an SEI NAL unit, so a recorder's output
//! can be checked frame by frame against what the camera sent (`nvr selftest`): none missing,
//! none repeated, the right first and last.
//!
//! The stamp is an SEI message `user_data_unregistered` (H.264 §D.1.7 / H.265 §D.2.7: payload
//! type 5, a 16-byte UUID, then our payload: the frame's index as 8 bytes big-endian) in its own
//! NAL unit (H.264 type 6; H.265 prefix SEI, type 39) placed first in the frame, with emulation
//! prevention applied. Decoders ignore user data they do not know, so a stamped stream still
//! plays anywhere. Frames are in MP4 form: NAL units each behind a 4-byte big-endian length.

use bytes::{BufMut, Bytes, BytesMut};

/// The UUID that marks our stamps (random, fixed): `nvrkit frame idx` would be guessable, this
/// is not likely to collide with a camera's own user data.
pub const UUID: [u8; 16] = [
    0x6e, 0x76, 0x72, 0x6b, 0x9c, 0x3e, 0x4d, 0x1a, 0xb5, 0x27, 0x0f, 0x8d, 0x61, 0xe2, 0x53, 0xa4,
];

/// An SEI NAL unit carrying `index`, behind its 4-byte length.
pub fn sei(index: u64, h265: bool) -> Bytes {
    let mut rbsp = Vec::with_capacity(32);
    rbsp.push(5); // payload type: user_data_unregistered
    rbsp.push(24); // payload size: UUID + index
    rbsp.extend_from_slice(&UUID);
    rbsp.extend_from_slice(&index.to_be_bytes());
    rbsp.push(0x80); // rbsp_trailing_bits
    let mut nal = Vec::with_capacity(40);
    if h265 {
        nal.extend_from_slice(&[39 << 1, 1]); // prefix SEI, layer 0, temporal id 1
    } else {
        nal.push(6); // SEI, nal_ref_idc 0
    }
    // Emulation prevention (H.264 §7.4.1): no 00 00 0x (x ≤ 3) inside a NAL unit.
    let mut zeros = 0;
    for &b in &rbsp {
        if zeros >= 2 && b <= 3 {
            nal.push(3);
            zeros = 0;
        }
        nal.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    let mut out = BytesMut::with_capacity(nal.len() + 4);
    out.put_u32(nal.len() as u32);
    out.put_slice(&nal);
    out.freeze()
}

/// `frame` (4-byte length-prefixed NAL units) with the stamp `index` in front.
pub fn stamp(frame: &[u8], index: u64, h265: bool) -> Bytes {
    let sei = sei(index, h265);
    let mut out = BytesMut::with_capacity(sei.len() + frame.len());
    out.put_slice(&sei);
    out.put_slice(frame);
    out.freeze()
}

/// The stamp of a frame in MP4 form, if it has one. Linear in the frame's size; a malformed
/// frame (a length past its end) has none.
pub fn read(frame: &[u8], h265: bool) -> Option<u64> {
    let mut rest = frame;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        // `4 + len` could overflow a 32-bit usize: slice in two steps.
        let nal = rest.get(4..)?.get(..len)?;
        rest = &rest[4..][len..];
        let (is_sei, header) = match (h265, nal.first()) {
            (false, Some(b)) => (b & 0x1f == 6, 1),
            (true, Some(b)) => ((b >> 1) & 0x3f == 39, 2),
            _ => (false, 0),
        };
        if !is_sei || nal.len() < header {
            continue;
        }
        // Undo emulation prevention, then: type 5, size 24, UUID, index.
        let mut rbsp = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in &nal[header..] {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            rbsp.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        if rbsp.len() >= 26 && rbsp[0] == 5 && rbsp[1] == 24 && rbsp[2..18] == UUID {
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&rbsp[18..26]);
            return Some(u64::from_be_bytes(idx));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_back_through_emulation_prevention() {
        let frame = [0, 0, 0, 2, 0x65, 0x88];
        for h265 in [false, true] {
            for index in [0, 1, 2, 3, 255, 256, 0x0000_0300_0001, u64::MAX] {
                let s = stamp(&frame, index, h265);
                assert_eq!(read(&s, h265), Some(index), "{index:#x}");
                assert!(s.ends_with(&frame));
                // No start-code emulation inside the SEI NAL.
                let nal = &s[4..s.len() - frame.len()];
                assert!(!nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2));
            }
        }
        assert_eq!(read(&frame, false), None);
        assert_eq!(read(&[0, 0, 0, 9, 6], false), None, "a length past the end");
        assert_eq!(read(&[], false), None);
    }
}

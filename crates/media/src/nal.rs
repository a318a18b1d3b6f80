//! NAL unit framing: 4-byte length-prefixed (AVCC/HVCC, what [`crate::Frame`] carries) ↔ Annex B
//! start codes (what RTSP `sprop-*` parameters, `.h264` files and decoders fed raw want).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// The Annex B start code nvrkit writes.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Which video codec a NAL unit belongs to (the NAL header differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264 / AVC: 1-byte NAL header, type in the low 5 bits.
    H264,
    /// H.265 / HEVC: 2-byte NAL header, type in bits 1..7 of the first byte.
    H265,
}

impl VideoCodec {
    /// The NAL unit type of `nal` (0 for an empty unit).
    pub fn nal_type(self, nal: &[u8]) -> u8 {
        match (self, nal.first()) {
            (_, None) => 0,
            (VideoCodec::H264, Some(b)) => b & 0x1f,
            (VideoCodec::H265, Some(b)) => (b >> 1) & 0x3f,
        }
    }

    /// True for a parameter set NAL unit (H.264 SPS/PPS; H.265 VPS/SPS/PPS).
    pub fn is_parameter_set(self, nal: &[u8]) -> bool {
        let t = self.nal_type(nal);
        match self {
            VideoCodec::H264 => t == 7 || t == 8,
            VideoCodec::H265 => (32..=34).contains(&t),
        }
    }

    /// True for a NAL unit that starts a random-access picture (H.264 IDR; H.265 IRAP: BLA, IDR,
    /// CRA).
    pub fn is_random_access(self, nal: &[u8]) -> bool {
        let t = self.nal_type(nal);
        match self {
            VideoCodec::H264 => t == 5,
            VideoCodec::H265 => (16..=21).contains(&t),
        }
    }
}

/// Iterates over the NAL units of a length-prefixed payload with `length_size`-byte lengths
/// (1, 2, 3 or 4). Yields an error, then stops, at a length that overruns the payload.
pub fn length_prefixed(data: &[u8], length_size: u8) -> LengthPrefixed<'_> {
    LengthPrefixed {
        rest: data,
        length_size: usize::from(length_size),
    }
}

/// Iterator returned by [`length_prefixed`].
#[derive(Debug, Clone)]
pub struct LengthPrefixed<'a> {
    rest: &'a [u8],
    length_size: usize,
}

impl<'a> Iterator for LengthPrefixed<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let n = self.length_size;
        if !(1..=4).contains(&n) || self.rest.len() < n {
            self.rest = &[];
            return Some(Err(Error::bitstream(
                "NAL",
                format!("truncated {n}-byte NAL length prefix"),
            )));
        }
        let len = self.rest[..n]
            .iter()
            .fold(0usize, |a, &b| a << 8 | usize::from(b));
        let body = &self.rest[n..];
        if len > body.len() {
            let have = body.len();
            self.rest = &[];
            return Some(Err(Error::bitstream(
                "NAL",
                format!("NAL unit of {len} bytes but only {have} left in the frame"),
            )));
        }
        let (nal, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok(nal))
    }
}

/// Rewrites a payload with `length_size`-byte NAL lengths to 4-byte lengths. A payload that
/// already uses 4-byte lengths is returned as is (no copy) after its lengths are checked.
pub fn to_four_byte_lengths(data: Bytes, length_size: u8) -> Result<Bytes> {
    if length_size == 4 {
        for nal in length_prefixed(&data, 4) {
            nal?;
        }
        return Ok(data);
    }
    let mut out = BytesMut::with_capacity(data.len() + data.len() / 8 + 8);
    for nal in length_prefixed(&data, length_size) {
        let nal = nal?;
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    Ok(out.freeze())
}

/// Converts 4-byte length-prefixed NAL units to Annex B (each unit behind `00 00 00 01`).
pub fn to_annex_b(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() + 16);
    for nal in length_prefixed(data, 4) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal?);
    }
    Ok(out)
}

/// Splits an Annex B stream on its 3- or 4-byte start codes. Bytes before the first start code
/// are ignored; trailing zero bytes of a unit (`trailing_zero_8bits`) are dropped.
pub fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| s - 3)
        .chain(std::iter::once(data.len()))
        .collect();
    starts.into_iter().zip(ends).filter_map(move |(s, e)| {
        let mut e = e;
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        (e > s).then(|| &data[s..e])
    })
}

/// Converts an Annex B stream to 4-byte length-prefixed NAL units.
pub fn from_annex_b(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    for nal in annex_b_units(data) {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// Builds a 4-byte length-prefixed payload from NAL units.
pub fn join<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for nal in nals {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_round_trip() {
        let avcc = join([&[0x67u8, 1, 2][..], &[0x68, 3][..], &[0x65, 0, 0, 3, 1][..]]);
        let annexb = to_annex_b(&avcc).unwrap();
        assert_eq!(
            annexb,
            [
                0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0, 0, 3, 1
            ]
        );
        assert_eq!(from_annex_b(&annexb), avcc);
        // 3-byte start codes and trailing zeros are accepted.
        assert_eq!(
            from_annex_b(&[
                0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 0, 0, 3, 1, 0
            ]),
            avcc
        );
    }

    #[test]
    fn length_sizes_are_normalised() {
        let two = Bytes::from_static(&[0, 2, 0x65, 1, 0, 1, 0x41]);
        assert_eq!(
            to_four_byte_lengths(two, 2).unwrap(),
            join([&[0x65u8, 1][..], &[0x41][..]])
        );
        let bad = Bytes::from_static(&[0, 9, 0x65]);
        assert!(to_four_byte_lengths(bad, 2).is_err());
        assert!(to_four_byte_lengths(Bytes::from_static(&[0, 0, 0]), 4).is_err());
    }

    #[test]
    fn nal_types() {
        assert!(VideoCodec::H264.is_random_access(&[0x65]));
        assert!(VideoCodec::H264.is_parameter_set(&[0x67]));
        assert!(VideoCodec::H265.is_random_access(&[0x26, 0x01])); // IDR_W_RADL
        assert!(VideoCodec::H265.is_parameter_set(&[0x40, 0x01])); // VPS
        assert!(!VideoCodec::H265.is_random_access(&[]));
    }
}

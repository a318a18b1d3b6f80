//! Sequence parameter set parsing for H.264 (ITU-T H.264 §7.3.2.1.1) and H.265 (ITU-T H.265
//! §7.3.2.2): picture size, profile, level and the fields an `avcC`/`hvcC` record needs.
//!
//! Only the fields up to the picture size (and, for H.265, the bit depths) are read; the VUI is
//! not needed: frame rates come from timestamps.

use crate::error::{Error, Result};

/// What nvrkit needs from an H.264 SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Sps {
    /// `profile_idc` (66 Baseline, 77 Main, 100 High, …).
    pub profile_idc: u8,
    /// The byte of `constraint_set*_flag`s that follows `profile_idc`.
    pub constraint_flags: u8,
    /// `level_idc` (e.g. 31 for level 3.1).
    pub level_idc: u8,
    /// `chroma_format_idc` (1 = 4:2:0).
    pub chroma_format_idc: u8,
    /// Luma bit depth.
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width in pixels (after cropping).
    pub width: u32,
    /// Displayed height in pixels (after cropping).
    pub height: u32,
}

/// What nvrkit needs from an H.265 SPS (including its `profile_tier_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H265Sps {
    /// `general_profile_space`.
    pub profile_space: u8,
    /// `general_tier_flag`.
    pub tier_flag: bool,
    /// `general_profile_idc` (1 Main, 2 Main 10, …).
    pub profile_idc: u8,
    /// `general_profile_compatibility_flags`.
    pub profile_compatibility_flags: u32,
    /// `general_constraint_indicator_flags` (48 bits, in the low bits).
    pub constraint_indicator_flags: u64,
    /// `general_level_idc` (30 × the level, e.g. 93 for level 3.1).
    pub level_idc: u8,
    /// `sps_max_sub_layers_minus1 + 1`.
    pub max_sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// `chroma_format_idc`.
    pub chroma_format_idc: u8,
    /// Luma bit depth.
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width in pixels (after the conformance window).
    pub width: u32,
    /// Displayed height in pixels (after the conformance window).
    pub height: u32,
}

/// Reads bits MSB-first from an RBSP (a NAL payload with emulation-prevention bytes removed).
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    codec: &'static str,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], codec: &'static str) -> Self {
        BitReader {
            data,
            pos: 0,
            codec,
        }
    }

    fn eof(&self) -> Error {
        Error::bitstream(self.codec, "parameter set ends early")
    }

    pub(crate) fn bit(&mut self) -> Result<bool> {
        let byte = *self.data.get(self.pos / 8).ok_or_else(|| self.eof())?;
        let b = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    /// Reads `n` ≤ 64 bits.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u64> {
        debug_assert!(n <= 64);
        let mut v = 0u64;
        for _ in 0..n {
            v = v << 1 | u64::from(self.bit()?);
        }
        Ok(v)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<()> {
        if self.pos + n > self.data.len() * 8 {
            return Err(self.eof());
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned Exp-Golomb `ue(v)` (§9.1), at most 32 bits of value.
    pub(crate) fn ue(&mut self) -> Result<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(Error::bitstream(
                    self.codec,
                    "Exp-Golomb code longer than 32 bits",
                ));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + rest) as u32)
    }

    /// Signed Exp-Golomb `se(v)`.
    pub(crate) fn se(&mut self) -> Result<i32> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) } as i32)
    }
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`, H.264 §7.4.1) from a NAL unit.
pub fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

fn ue_bounded(r: &mut BitReader<'_>, max: u32, what: &str) -> Result<u32> {
    let v = r.ue()?;
    if v > max {
        return Err(Error::bitstream(
            r.codec,
            format!("{what} = {v} is out of range"),
        ));
    }
    Ok(v)
}

impl H264Sps {
    /// Parses an SPS NAL unit (with its 1-byte NAL header).
    pub fn parse(nal: &[u8]) -> Result<Self> {
        const C: &str = "H.264";
        if nal.first().map(|b| b & 0x1f) != Some(7) {
            return Err(Error::bitstream(C, "not an SPS NAL unit"));
        }
        let data = rbsp(&nal[1..]);
        let mut r = BitReader::new(&data, C);
        let profile_idc = r.bits(8)? as u8;
        let constraint_flags = r.bits(8)? as u8;
        let level_idc = r.bits(8)? as u8;
        ue_bounded(&mut r, 31, "seq_parameter_set_id")?;
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let (mut bit_depth_luma, mut bit_depth_chroma) = (8, 8);
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format_idc = ue_bounded(&mut r, 3, "chroma_format_idc")? as u8;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit()?;
            }
            bit_depth_luma = ue_bounded(&mut r, 6, "bit_depth_luma_minus8")? as u8 + 8;
            bit_depth_chroma = ue_bounded(&mut r, 6, "bit_depth_chroma_minus8")? as u8 + 8;
            r.bit()?; // qpprime_y_zero_transform_bypass_flag
            if r.bit()? {
                // seq_scaling_matrix_present_flag: skip the scaling lists (§7.3.2.1.1.1).
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? {
                        let size = if i < 6 { 16 } else { 64 };
                        let (mut last, mut next) = (8i32, 8i32);
                        for _ in 0..size {
                            if next != 0 {
                                let delta = r.se()?;
                                // In i64: a hostile delta_scale near i32::MAX must not overflow.
                                next = (i64::from(last) + i64::from(delta)).rem_euclid(256) as i32;
                            }
                            if next != 0 {
                                last = next;
                            }
                        }
                    }
                }
            }
        }
        ue_bounded(&mut r, 12, "log2_max_frame_num_minus4")?;
        match ue_bounded(&mut r, 2, "pic_order_cnt_type")? {
            0 => {
                ue_bounded(&mut r, 12, "log2_max_pic_order_cnt_lsb_minus4")?;
            }
            1 => {
                r.bit()?; // delta_pic_order_always_zero_flag
                r.se()?; // offset_for_non_ref_pic
                r.se()?; // offset_for_top_to_bottom_field
                let n = ue_bounded(&mut r, 255, "num_ref_frames_in_pic_order_cnt_cycle")?;
                for _ in 0..n {
                    r.se()?;
                }
            }
            _ => {}
        }
        r.ue()?; // max_num_ref_frames
        r.bit()?; // gaps_in_frame_num_value_allowed_flag
        let width_mbs = ue_bounded(&mut r, 1 << 16, "pic_width_in_mbs_minus1")? + 1;
        let height_units = ue_bounded(&mut r, 1 << 16, "pic_height_in_map_units_minus1")? + 1;
        let frame_mbs_only = r.bit()?;
        if !frame_mbs_only {
            r.bit()?; // mb_adaptive_frame_field_flag
        }
        r.bit()?; // direct_8x8_inference_flag
        let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
        if r.bit()? {
            cl = r.ue()?;
            cr = r.ue()?;
            ct = r.ue()?;
            cb = r.ue()?;
        }
        // Table 6-1: SubWidthC / SubHeightC; ChromaArrayType 0 crops in luma units.
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (sub_w, sub_h): (u64, u64) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let crop_x = sub_w * (u64::from(cl) + u64::from(cr));
        let crop_y = sub_h * field_factor * (u64::from(ct) + u64::from(cb));
        let full_w = u64::from(width_mbs) * 16;
        let full_h = field_factor * u64::from(height_units) * 16;
        if crop_x >= full_w || crop_y >= full_h {
            return Err(Error::bitstream(
                C,
                "frame cropping larger than the picture",
            ));
        }
        Ok(H264Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            width: (full_w - crop_x) as u32,
            height: (full_h - crop_y) as u32,
        })
    }
}

impl H265Sps {
    /// Parses an SPS NAL unit (with its 2-byte NAL header).
    pub fn parse(nal: &[u8]) -> Result<Self> {
        const C: &str = "H.265";
        if nal.len() < 2 || (nal[0] >> 1) & 0x3f != 33 {
            return Err(Error::bitstream(C, "not an SPS NAL unit"));
        }
        let data = rbsp(&nal[2..]);
        let mut r = BitReader::new(&data, C);
        r.bits(4)?; // sps_video_parameter_set_id
        let max_sub_layers_minus1 = r.bits(3)? as u8;
        let temporal_id_nesting = r.bit()?;
        // profile_tier_level(1, sps_max_sub_layers_minus1), §7.3.3.
        let profile_space = r.bits(2)? as u8;
        let tier_flag = r.bit()?;
        let profile_idc = r.bits(5)? as u8;
        let profile_compatibility_flags = r.bits(32)? as u32;
        let constraint_indicator_flags = r.bits(48)?;
        let level_idc = r.bits(8)? as u8;
        let mut present = [(false, false); 8];
        for p in present.iter_mut().take(usize::from(max_sub_layers_minus1)) {
            *p = (r.bit()?, r.bit()?);
        }
        if max_sub_layers_minus1 > 0 {
            r.skip(2 * (8 - usize::from(max_sub_layers_minus1)))?;
        }
        for &(profile, level) in present.iter().take(usize::from(max_sub_layers_minus1)) {
            if profile {
                r.skip(88)?;
            }
            if level {
                r.skip(8)?;
            }
        }
        ue_bounded(&mut r, 15, "sps_seq_parameter_set_id")?;
        let chroma_format_idc = ue_bounded(&mut r, 3, "chroma_format_idc")? as u8;
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        let w = ue_bounded(&mut r, 1 << 16, "pic_width_in_luma_samples")?;
        let h = ue_bounded(&mut r, 1 << 16, "pic_height_in_luma_samples")?;
        let (sub_w, sub_h) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (mut crop_x, mut crop_y) = (0u64, 0u64);
        if r.bit()? {
            let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
            crop_x = sub_w * (u64::from(l) + u64::from(rt));
            crop_y = sub_h * (u64::from(t) + u64::from(b));
        }
        if crop_x >= u64::from(w) || crop_y >= u64::from(h) {
            return Err(Error::bitstream(
                C,
                "conformance window larger than the picture",
            ));
        }
        let bit_depth_luma = ue_bounded(&mut r, 8, "bit_depth_luma_minus8")? as u8 + 8;
        let bit_depth_chroma = ue_bounded(&mut r, 8, "bit_depth_chroma_minus8")? as u8 + 8;
        Ok(H265Sps {
            profile_space,
            tier_flag,
            profile_idc,
            profile_compatibility_flags,
            constraint_indicator_flags,
            level_idc,
            max_sub_layers: max_sub_layers_minus1 + 1,
            temporal_id_nesting,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            width: (u64::from(w) - crop_x) as u32,
            height: (u64::from(h) - crop_y) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_table() {
        // (bits, ue) from H.264 Table 9-2.
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.ue().unwrap(), 0); // 1
        assert_eq!(r.ue().unwrap(), 1); // 010
        assert_eq!(r.ue().unwrap(), 2); // 011
        assert_eq!(r.ue().unwrap(), 3); // 00100
        assert_eq!(r.ue().unwrap(), 4); // 00101
        assert!(r.ue().is_err(), "runs off the end");
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }

    /// Writes bits MSB first, with Exp-Golomb codes.
    struct Bits(Vec<bool>);
    impl Bits {
        fn u(&mut self, n: u32, v: u64) -> &mut Self {
            for i in (0..n).rev() {
                self.0.push(v >> i & 1 == 1);
            }
            self
        }
        fn ue(&mut self, v: u64) -> &mut Self {
            let n = 64 - (v + 1).leading_zeros();
            self.u(n - 1, 0).u(n, v + 1)
        }
        fn se(&mut self, v: i64) -> &mut Self {
            self.ue(if v > 0 {
                (2 * v - 1) as u64
            } else {
                (-2 * v) as u64
            })
        }
        fn bytes(&self) -> Vec<u8> {
            self.0
                .chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |a, (i, b)| a | (u8::from(*b) << (7 - i)))
                })
                .collect()
        }
    }

    #[test]
    fn a_hostile_scaling_list_does_not_overflow() {
        // Regression: delta_scale near i32::MAX overflowed `last + delta`.
        let mut b = Bits(Vec::new());
        b.u(8, 100).u(8, 0).u(8, 40).ue(0); // High profile, level 4.0, sps id 0
        b.ue(1).ue(0).ue(0).u(1, 0); // 4:2:0, 8-bit, no transform bypass
        b.u(1, 1).u(1, 1).se(i64::from(i32::MAX)); // scaling matrix present, list 0 present
        b.u(64, 0);
        let mut nal = vec![0x67];
        nal.extend(b.bytes());
        let _ = H264Sps::parse(&nal);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 7) as u8).collect();
            let mut h264 = vec![0x67];
            h264.extend(&junk);
            let _ = H264Sps::parse(&h264);
            let mut h265 = vec![0x42, 0x01];
            h265.extend(&junk);
            let _ = H265Sps::parse(&h265);
        }
        assert!(H264Sps::parse(&[]).is_err());
        assert!(H265Sps::parse(&[0x42]).is_err());
        let all_zero = [0x67, 0, 0, 0, 0, 0, 0, 0];
        assert!(H264Sps::parse(&all_zero).is_err());
    }
}

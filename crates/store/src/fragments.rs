//! The top-level box structure of a segment file: where the init segment ends and where each
//! complete fragment (`moof` + `mdat`) lies.
//!
//! Recovery uses this to cut an interrupted segment back to its last complete fragment, so the
//! file left behind is well-formed (a box that overruns the file would make players complain).
//! The input is untrusted (whatever a crash or a disk left), so every size is checked and the
//! scan stops, without error, at the first thing that is not a complete box of a segment.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// One complete fragment: a `moof` and the `mdat` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentSpan {
    /// Offset of the `moof` box.
    pub start: u64,
    /// Offset just past the `mdat` box.
    pub end: u64,
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Offset just past `ftyp` + `moov`, when both are complete.
    pub init_end: Option<u64>,
    /// Every complete fragment, in file order.
    pub fragments: Vec<FragmentSpan>,
    /// The length of the file's well-formed prefix: the end of the last complete fragment (or of
    /// the init segment when there is none; 0 when even that is incomplete).
    pub complete_len: u64,
    /// The file's length.
    pub len: u64,
}

impl Layout {
    /// True when the whole file is the init segment plus complete fragments, nothing else.
    pub fn is_clean(&self) -> bool {
        self.init_end.is_some() && !self.fragments.is_empty() && self.complete_len == self.len
    }
}

/// A box header: (type, offset of the box, total size).
fn header(
    read: &mut impl FnMut(u64, &mut [u8]) -> usize,
    pos: u64,
    len: u64,
) -> Option<([u8; 4], u64)> {
    let mut h = [0u8; 16];
    let avail = (len - pos).min(16) as usize;
    if avail < 8 || read(pos, &mut h[..avail]) < avail {
        return None;
    }
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let kind = [h[4], h[5], h[6], h[7]];
    let size = match size32 {
        // "To the end of the file": never written by our muxer; a crash cannot produce it
        // except as garbage, so it ends the scan.
        0 => return None,
        1 => {
            if avail < 16 {
                return None;
            }
            let large = u64::from_be_bytes(h[8..16].try_into().ok()?);
            if large < 16 {
                return None;
            }
            large
        }
        s if s < 8 => return None,
        s => u64::from(s),
    };
    Some((kind, size))
}

/// Scans the top-level boxes of a segment through `read(offset, buf) -> bytes read`.
fn scan_with(mut read: impl FnMut(u64, &mut [u8]) -> usize, len: u64) -> Layout {
    let mut out = Layout {
        len,
        ..Layout::default()
    };
    let mut pos = 0u64;
    let mut seen_ftyp = false;
    let mut pending_moof: Option<u64> = None;
    while pos < len {
        let Some((kind, size)) = header(&mut read, pos, len) else {
            break;
        };
        let Some(end) = pos.checked_add(size).filter(|&e| e <= len) else {
            break; // the box overruns the file: cut here
        };
        match (&kind, out.init_end, pending_moof) {
            (b"ftyp", None, None) if !seen_ftyp && pos == 0 => seen_ftyp = true,
            (b"moov", None, None) if seen_ftyp => {
                out.init_end = Some(end);
                out.complete_len = end;
            }
            (b"moof", Some(_), None) => pending_moof = Some(pos),
            (b"mdat", Some(_), Some(start)) => {
                out.fragments.push(FragmentSpan { start, end });
                out.complete_len = end;
                pending_moof = None;
            }
            _ => break, // not the structure of a segment: the rest is not trusted
        }
        pos = end;
    }
    out
}

/// Scans a segment held in memory.
pub fn scan(data: &[u8]) -> Layout {
    scan_with(
        |pos, buf| {
            let start = pos as usize;
            let n = buf.len().min(data.len().saturating_sub(start));
            buf[..n].copy_from_slice(&data[start..start + n]);
            n
        },
        data.len() as u64,
    )
}

/// Scans a segment file of length `len` (reads only box headers).
pub fn scan_file(file: &File, len: u64) -> Layout {
    scan_with(
        |pos, buf| {
            let mut done = 0;
            while done < buf.len() {
                match file.read_at(&mut buf[done..], pos + done as u64) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => done += n,
                }
            }
            done
        },
        len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], payload: usize) -> Vec<u8> {
        let mut v = ((payload + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.resize(payload + 8, 0xab);
        v
    }

    fn file(parts: &[(&[u8; 4], usize)]) -> Vec<u8> {
        parts.iter().flat_map(|(k, n)| bx(k, *n)).collect()
    }

    #[test]
    fn complete_segment() {
        let f = file(&[
            (b"ftyp", 12),
            (b"moov", 100),
            (b"moof", 50),
            (b"mdat", 1000),
            (b"moof", 50),
            (b"mdat", 10),
        ]);
        let l = scan(&f);
        assert!(l.is_clean());
        assert_eq!(l.init_end, Some(128));
        assert_eq!(l.fragments.len(), 2);
        assert_eq!(l.fragments[1].end, f.len() as u64);
    }

    #[test]
    fn every_cut_keeps_exactly_the_complete_fragments() {
        let f = file(&[
            (b"ftyp", 12),
            (b"moov", 100),
            (b"moof", 50),
            (b"mdat", 300),
            (b"moof", 50),
            (b"mdat", 10),
        ]);
        let first_end = 20 + 108 + 58 + 308;
        for cut in 0..=f.len() {
            let l = scan(&f[..cut]);
            let want = if cut == f.len() {
                2
            } else if cut >= first_end {
                1
            } else {
                0
            };
            assert_eq!(l.fragments.len(), want, "cut at {cut}");
            assert!(l.complete_len <= cut as u64);
            assert_eq!(
                l.is_clean(),
                cut == f.len() || cut == first_end,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn foreign_structure_stops_the_scan() {
        // mdat without moof, moof before moov, a box of size 3, size 0, and a 64-bit size.
        let cases: Vec<Vec<u8>> = vec![
            file(&[(b"ftyp", 12), (b"moov", 10), (b"mdat", 10)]),
            file(&[(b"ftyp", 12), (b"moof", 10), (b"moov", 10)]),
            [
                file(&[(b"ftyp", 12), (b"moov", 10)]),
                vec![0, 0, 0, 3, b'm', b'o', b'o', b'f'],
            ]
            .concat(),
            [
                file(&[(b"ftyp", 12), (b"moov", 10)]),
                vec![0, 0, 0, 0, b'm', b'o', b'o', b'f'],
            ]
            .concat(),
            file(&[(b"moov", 10)]),
        ];
        for (i, c) in cases.iter().enumerate() {
            let l = scan(c);
            assert!(l.fragments.is_empty(), "case {i}");
            assert!(!l.is_clean(), "case {i}");
        }
        let mut large = file(&[(b"ftyp", 12), (b"moov", 10), (b"moof", 4)]);
        large.extend_from_slice(&1u32.to_be_bytes());
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&20u64.to_be_bytes());
        large.extend_from_slice(&[1, 2, 3, 4]);
        assert!(scan(&large).is_clean());
    }
}

//! Time: exact conversions between track timescales, the 90 kHz RTP clock and wall-clock UTC
//! microseconds.
//!
//! Media time is an `i64` count of ticks in a track's timescale (ticks per second). Every conversion
//! here is integer math through `i128`, so a timestamp converted a million times drifts by nothing: a
//! loop of 1,000 × 5.28 s at 12800 Hz lands on exactly 67,584,000 ticks, not "about" that. Wall-clock
//! time is [`WallTime`], UTC microseconds since the Unix epoch, written as RFC 3339 in JSON and URLs.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The RTP clock rate of every video payload format we speak (RFC 6184 §8.2.1, RFC 7798 §7.1).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// Microseconds per second: the timescale of [`WallTime`].
pub const MICROS_PER_SECOND: u32 = 1_000_000;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01), RFC 5905 §6.
const NTP_UNIX_OFFSET_SECS: i64 = 2_208_988_800;

/// Converts `value` ticks at `from` Hz into ticks at `to` Hz, rounding to the nearest tick with
/// ties away from zero (what ffmpeg's `av_rescale` does), saturating at the `i64` range.
///
/// A `from` of zero is treated as 1 so the function is total; callers validate timescales where
/// they enter (the demuxer rejects a zero `mdhd` timescale).
///
/// ```
/// use nvrkit_media::time::rescale;
/// assert_eq!(rescale(512, 12_800, 90_000), 3_600);
/// assert_eq!(rescale(1001, 30_000, 90_000), 3_003);
/// assert_eq!(rescale(-1024, 48_000, 1_000_000), -21_333);
/// ```
pub fn rescale(value: i64, from: u32, to: u32) -> i64 {
    let from = i128::from(from.max(1));
    let num = i128::from(value) * i128::from(to);
    let half = from / 2;
    let q = if num >= 0 {
        (num + half) / from
    } else {
        (num - half) / from
    };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Like [`rescale`] but rounds toward negative infinity: the tick at or before the instant.
///
/// ```
/// use nvrkit_media::time::rescale_floor;
/// assert_eq!(rescale_floor(-1, 48_000, 1_000), -1);
/// assert_eq!(rescale_floor(47, 48_000, 1_000), 0);
/// ```
pub fn rescale_floor(value: i64, from: u32, to: u32) -> i64 {
    let from = i128::from(from.max(1));
    let num = i128::from(value) * i128::from(to);
    num.div_euclid(from)
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Compares two instants given in different timescales exactly (`a` ticks at `a_rate` Hz
/// against `b` ticks at `b_rate` Hz), by cross-multiplying in `i128`: no rounding, so frames of
/// different streams sort the same way every time.
///
/// ```
/// use std::cmp::Ordering;
/// use nvrkit_media::time::cmp_ticks;
/// assert_eq!(cmp_ticks(512, 12_800, 1920, 48_000), Ordering::Equal); // both 40 ms
/// assert_eq!(cmp_ticks(1, 90_000, 1, 48_000), Ordering::Less);
/// ```
pub fn cmp_ticks(a: i64, a_rate: u32, b: i64, b_rate: u32) -> std::cmp::Ordering {
    (i128::from(a) * i128::from(b_rate)).cmp(&(i128::from(b) * i128::from(a_rate)))
}

/// A wall-clock instant: microseconds since 1970-01-01T00:00:00Z (UTC, leap seconds not counted,
/// like Unix time). This is the one wall-clock type of nvrkit; it prints as RFC 3339.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallTime(i64);

/// Why a string is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp ({reason}): {input:?}")]
pub struct ParseTimeError {
    input: String,
    reason: &'static str,
}

impl ParseTimeError {
    /// What is wrong with the input, without quoting it (`"too short"`, `"field out of range"`).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl WallTime {
    /// The Unix epoch.
    pub const EPOCH: WallTime = WallTime(0);

    /// From microseconds since the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        WallTime(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The system clock now.
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    /// From a [`SystemTime`], saturating outside the representable range.
    pub fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => WallTime(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => WallTime(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// As a [`SystemTime`].
    pub fn to_system(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(self.0.unsigned_abs())
        }
    }

    /// This instant plus `ticks` of media time at `timescale` Hz (rounded to the nearest µs).
    pub fn add_ticks(self, ticks: i64, timescale: u32) -> Self {
        WallTime(
            self.0
                .saturating_add(rescale(ticks, timescale, MICROS_PER_SECOND)),
        )
    }

    /// This instant plus `micros` microseconds (saturating).
    pub fn add_micros(self, micros: i64) -> Self {
        WallTime(self.0.saturating_add(micros))
    }

    /// Microseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn micros_since(self, earlier: WallTime) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// As a 64-bit NTP timestamp (RFC 5905 §6: 32 bits of seconds since 1900, 32 bits of
    /// fraction), the clock of RTCP sender reports (RFC 3550 §6.4.1).
    pub fn to_ntp(self) -> u64 {
        let secs = self.0.div_euclid(1_000_000) + NTP_UNIX_OFFSET_SECS;
        let micros = self.0.rem_euclid(1_000_000) as u64;
        // The fraction is micros * 2^32 / 10^6, rounded to nearest.
        let frac = ((micros << 32) + 500_000) / 1_000_000;
        ((secs as u64) << 32).wrapping_add(frac)
    }

    /// From a 64-bit NTP timestamp (era 0, 1900–2036), rounded to the nearest microsecond.
    pub fn from_ntp(ntp: u64) -> Self {
        let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET_SECS;
        let frac = ntp & 0xffff_ffff;
        let micros = ((frac * 1_000_000) + (1 << 31)) >> 32;
        WallTime(secs * 1_000_000 + micros as i64)
    }

    /// RFC 3339 in UTC with microseconds, e.g. `2026-11-25T16:37:03.123456Z`. The fraction is
    /// left out when it is zero, so whole seconds read `2026-11-25T16:37:03Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    /// A compact UTC form for file names and URLs: `20261125T163703.123456Z` (no `:`, which
    /// Windows file systems refuse). [`WallTime::parse_rfc3339`] does not read it; use
    /// [`WallTime::parse_compact`].
    pub fn to_compact(self) -> String {
        let (y, mo, d, h, mi, s, us) = self.civil();
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{us:06}Z")
    }

    /// Reads the form [`WallTime::to_compact`] writes.
    pub fn parse_compact(input: &str) -> Result<Self, ParseTimeError> {
        let err = |reason| ParseTimeError {
            input: input.to_owned(),
            reason,
        };
        let b = input.as_bytes();
        // ASCII first: the fields below are sliced by byte offset (file names reach here).
        if !input.is_ascii() || b.len() != 23 || b[8] != b'T' || b[15] != b'.' || b[22] != b'Z' {
            return Err(err("expected YYYYMMDDTHHMMSS.ffffffZ"));
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, ParseTimeError> {
            let s = &input[r];
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err("non-digit in a number field"));
            }
            s.parse::<i64>().map_err(|_| err("bad number"))
        };
        let fields = (
            num(0..4)?,
            num(4..6)?,
            num(6..8)?,
            num(9..11)?,
            num(11..13)?,
            num(13..15)?,
        );
        let us = num(16..22)?;
        Self::from_fields(fields, us, 0).ok_or_else(|| err("field out of range"))
    }

    /// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t`, `z` and a space for
    /// `T` are accepted as RFC 3339 §5.6 allows). Digits past microseconds are truncated.
    pub fn parse_rfc3339(input: &str) -> Result<Self, ParseTimeError> {
        let err = |reason| ParseTimeError {
            input: input.to_owned(),
            reason,
        };
        let b = input.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let digits = |r: std::ops::Range<usize>| -> Result<i64, ParseTimeError> {
            let s = b.get(r).ok_or_else(|| err("too short"))?;
            if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
                return Err(err("non-digit in a number field"));
            }
            Ok(s.iter().fold(0i64, |a, &c| a * 10 + i64::from(c - b'0')))
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(err("expected HH:MM:SS"));
        }
        let fields = (
            digits(0..4)?,
            digits(5..7)?,
            digits(8..10)?,
            digits(11..13)?,
            digits(14..16)?,
            digits(17..19)?,
        );
        let mut i = 19;
        let mut us = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(err("empty fraction"));
            }
            let frac = &b[start..i];
            for k in 0..6 {
                us = us * 10 + frac.get(k).map_or(0, |&c| i64::from(c - b'0'));
            }
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let hh = digits(i + 1..i + 3)?;
                let mm = digits(i + 4..i + 6)?;
                if hh > 23 || mm > 59 {
                    return Err(err("offset out of range"));
                }
                let s = hh * 3600 + mm * 60;
                if sign == b'+' { s } else { -s }
            }
            _ => return Err(err("expected Z or ±HH:MM after the time")),
        };
        Self::from_fields(fields, us, offset_secs).ok_or_else(|| err("field out of range"))
    }

    fn from_fields(
        (y, mo, d, h, mi, s): (i64, i64, i64, i64, i64, i64),
        us: i64,
        offset_secs: i64,
    ) -> Option<Self> {
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
            return None;
        }
        // A leap second (:60) is read as the last microsecond-accurate instant before the next
        // minute would be wrong; Unix time folds it into :59, and so do we.
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let s = s.min(59);
        let days = days_from_civil(y, mo, d);
        let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
        Some(WallTime(secs.checked_mul(1_000_000)?.checked_add(us)?))
    }

    /// (year, month, day, hour, minute, second, microsecond) in UTC.
    fn civil(self) -> (i64, i64, i64, i64, i64, i64, i64) {
        let secs = self.0.div_euclid(1_000_000);
        let us = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        (y, mo, d, sod / 3600, sod % 3600 / 60, sod % 60, us)
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s, us) = self.civil();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")?;
        if us != 0 {
            write!(f, ".{us:06}")?;
        }
        f.write_str("Z")
    }
}

impl FromStr for WallTime {
    type Err = ParseTimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible Low-Level
/// Date Algorithms", `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rescale_rounds_like_av_rescale() {
        // (value, from, to, expected) — expected values from av_rescale (AV_ROUND_NEAR_INF).
        let table = [
            (0, 12_800, 90_000, 0),
            (1, 3, 2, 1),   // 0.667 -> 1
            (1, 4, 2, 1),   // 0.5 -> 1 (ties away from zero)
            (-1, 4, 2, -1), // -0.5 -> -1
            (3, 4, 1, 1),   // 0.75 -> 1
            (1024, 48_000, 90_000, 1_920),
            (67_584, 12_800, 48_000, 253_440),
        ];
        for (v, from, to, want) in table {
            assert_eq!(rescale(v, from, to), want, "rescale({v}, {from}, {to})");
        }
    }

    #[test]
    fn rescale_saturates_instead_of_overflowing() {
        assert_eq!(rescale(i64::MAX, 1, 90_000), i64::MAX);
        assert_eq!(rescale(i64::MIN, 1, 90_000), i64::MIN);
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(WallTime::EPOCH.to_string(), "1970-01-01T00:00:00Z");
        let t = WallTime::from_micros(1_795_624_623_123_456);
        assert_eq!(t.to_string(), "2026-11-25T16:37:03.123456Z");
        assert_eq!(t.to_compact(), "20261125T163703.123456Z");
        assert_eq!(
            "2026-11-25T17:37:03.123456+01:00".parse::<WallTime>(),
            Ok(t)
        );
        assert_eq!(
            WallTime::parse_rfc3339("2026-11-25t16:37:03.1234567z").unwrap(),
            t,
            "lower-case separators and extra fraction digits"
        );
        assert_eq!(
            WallTime::from_micros(-1).to_string(),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            "2024-02-29T00:00:00Z"
                .parse::<WallTime>()
                .unwrap()
                .as_micros(),
            1_709_164_800_000_000
        );
    }

    #[test]
    fn rfc3339_rejects_garbage() {
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:00:00",
            "2026-11-25T10:00:00+1:00",
            "2026-11-25T10:00:00.Z",
            "２026-11-25T10:00:00Z",
        ] {
            assert!(bad.parse::<WallTime>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn compact_form_rejects_non_ascii_without_panicking() {
        // Regression: a stray file named like a segment with a multi-byte character panicked.
        assert!(WallTime::parse_compact("202é112T163703.123456Z").is_err());
        assert!(WallTime::parse_compact("2026112５T163703.12345Z").is_err());
    }

    #[test]
    fn ntp_round_trips_to_the_microsecond() {
        let t = WallTime::from_micros(1_795_624_623_123_456);
        assert_eq!(WallTime::from_ntp(t.to_ntp()), t);
        // RFC 5905: the Unix epoch is NTP second 2,208,988,800.
        assert_eq!(WallTime::EPOCH.to_ntp(), 2_208_988_800u64 << 32);
    }

    proptest! {
        #[test]
        fn rfc3339_round_trip(us in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
            let t = WallTime::from_micros(us);
            prop_assert_eq!(t.to_string().parse::<WallTime>(), Ok(t));
            prop_assert_eq!(WallTime::parse_compact(&t.to_compact()), Ok(t));
        }

        #[test]
        fn rescale_there_and_back(v in -1i64 << 40..1i64 << 40, from in 1u32..200_000) {
            // Up-scaling to a multiple of the rate and back is exact.
            let up = rescale(v, from, from * 3);
            prop_assert_eq!(up, v * 3);
            prop_assert_eq!(rescale(up, from * 3, from), v);
        }

        #[test]
        fn rescale_is_within_half_a_tick(v in -1i64 << 40..1i64 << 40, from in 1u32..200_000, to in 1u32..200_000) {
            let exact = i128::from(v) * i128::from(to);
            let got = i128::from(rescale(v, from, to)) * i128::from(from);
            prop_assert!((got - exact).abs() * 2 <= i128::from(from));
            let floor = i128::from(rescale_floor(v, from, to)) * i128::from(from);
            prop_assert!(floor <= exact && exact - floor < i128::from(from));
        }

        #[test]
        fn ntp_round_trip(us in 0i64..2_085_978_495_000_000) {
            let t = WallTime::from_micros(us);
            prop_assert_eq!(WallTime::from_ntp(t.to_ntp()), t);
        }
    }
}

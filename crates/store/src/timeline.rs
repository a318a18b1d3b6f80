//! The timeline's query, untrusted input from any HTTP client: a day (`day=YYYY-MM-DD` with
//! `tz=±HH:MM`, default `Z`) as a `[from, to)` range of wall-clock time, and `gap=SECONDS`, the
//! largest gap merged away when a day's recorded spans are drawn on one axis ([`merge_spans`]).
//! Linear in the input's length; every refusal says why in a short message, whatever the input
//! (the `nvr_timeline` fuzz target checks both, on inputs up to 1 MiB). nvr's
//! `/api/recordings` reads it; it lives here, beside [`crate::query`], so the fuzz target does
//! not pull in the recorder's RTSP client.

use crate::Recording;
use nvrkit_media::WallTime;

/// The longest gap `gap=SECONDS` may bridge when merging spans (a day's axis, 1 px ≈ 1 min).
pub const MAX_MERGE_GAP_S: i64 = 3600;

/// `day=YYYY-MM-DD` with an optional `tz=±HH:MM` (default `Z`) in the query string `raw`: that
/// local midnight and 24 h later. `None` without `day`.
///
/// ```
/// use nvrkit_store::timeline::day_range;
/// let (from, to) = day_range("camera=demo&day=2026-12-03&tz=%2B01:00")?.unwrap();
/// assert_eq!(from.to_rfc3339(), "2026-12-02T23:00:00Z");
/// assert_eq!(to.micros_since(from), 24 * 3600 * 1_000_000);
/// assert!(day_range("day=2026-13-03").is_err());
/// # Ok::<(), nvrkit_store::timeline::TimelineError>(())
/// ```
pub fn day_range(raw: &str) -> Result<Option<(WallTime, WallTime)>, TimelineError> {
    let mut day = None;
    let mut tz = None;
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let (slot, name) = match &*k {
            "day" => (&mut day, "day"),
            "tz" => (&mut tz, "tz"),
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(TimelineError::Twice(name));
        }
    }
    let Some(day) = day else { return Ok(None) };
    let tz = tz.unwrap_or_else(|| "Z".into());
    let ok_day = day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let ok_tz = tz == "Z"
        || (tz.len() == 6
            && tz.bytes().enumerate().all(|(i, b)| match i {
                0 => b == b'+' || b == b'-',
                3 => b == b':',
                _ => b.is_ascii_digit(),
            }));
    if !ok_day || !ok_tz {
        return Err(TimelineError::Syntax {
            day: day.chars().take(16).collect(),
            tz: tz.chars().take(8).collect(),
        });
    }
    let from = WallTime::parse_rfc3339(&format!("{day}T00:00:00{tz}")).map_err(|e| {
        TimelineError::Day {
            day: format!("{day}{tz}"),
            reason: e.reason().to_string(),
        }
    })?;
    let to = from.add_micros(24 * 3600 * 1_000_000);
    Ok(Some((from, to)))
}

/// `gap=SECONDS` in the query string `raw`, in µs: 0 without it, refused unless whole seconds
/// from 0 to [`MAX_MERGE_GAP_S`].
///
/// ```
/// use nvrkit_store::timeline::merge_gap;
/// assert_eq!(merge_gap("camera=demo&gap=90")?, 90_000_000);
/// assert_eq!(merge_gap("camera=demo")?, 0);
/// assert!(merge_gap("gap=-1").is_err() && merge_gap("gap=1e3").is_err());
/// # Ok::<(), nvrkit_store::timeline::TimelineError>(())
/// ```
pub fn merge_gap(raw: &str) -> Result<i64, TimelineError> {
    match url::form_urlencoded::parse(raw.as_bytes()).find(|(k, _)| k == "gap") {
        None => Ok(0),
        Some((_, v)) => match v.parse::<i64>() {
            Ok(g) if (0..=MAX_MERGE_GAP_S).contains(&g) => Ok(g * 1_000_000),
            _ => Err(TimelineError::Gap),
        },
    }
}

/// Spans (in time order, as the store lists them) with gaps of at most `gap_us` merged.
pub fn merge_spans(spans: Vec<Recording>, gap_us: i64) -> Vec<Recording> {
    let mut out: Vec<Recording> = Vec::with_capacity(spans.len());
    for r in spans {
        match out.last_mut() {
            Some(last) if gap_us > 0 && r.start.micros_since(last.end) <= gap_us => {
                last.end = last.end.max(r.end);
                last.segments += r.segments;
                last.bytes += r.bytes;
                last.tags.extend(r.tags);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Why a timeline query ([`crate::timeline`]) was refused: the message an HTTP 400 carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimelineError {
    /// `day` or `tz` appears twice.
    #[error("{0} given twice")]
    Twice(&'static str),
    /// `day` is not `YYYY-MM-DD` or `tz` not `Z`/`±HH:MM` (each cut short for the message).
    #[error("day is YYYY-MM-DD and tz is Z or ±HH:MM (got day {day:?}, tz {tz:?})")]
    Syntax {
        /// The first 16 characters of `day`.
        day: String,
        /// The first 8 characters of `tz`.
        tz: String,
    },
    /// The day has the right shape but is no date (month 13, day 32, offset 25:00).
    #[error("day {day}: {reason}")]
    Day {
        /// `day` and `tz` (both of the checked shape, so short).
        day: String,
        /// What the RFC 3339 parser said.
        reason: String,
    },
    /// `gap` is not whole seconds in range.
    #[error("gap is whole seconds, 0 to {}", MAX_MERGE_GAP_S)]
    Gap,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> WallTime {
        WallTime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn a_day_is_local_midnight_to_midnight_and_bad_days_are_refused() {
        assert_eq!(day_range("camera=demo").unwrap(), None);
        let (from, to) = day_range("camera=demo&day=2026-12-03&tz=%2B01:00")
            .unwrap()
            .unwrap();
        assert_eq!(from, t("2026-12-02T23:00:00Z"));
        assert_eq!(to, t("2026-12-03T23:00:00Z"));
        let (from, _) = day_range("day=2026-12-03").unwrap().unwrap();
        assert_eq!(from, t("2026-12-03T00:00:00Z"));
        for bad in [
            "day=2026-12-3",
            "day=2026-13-03",
            "day=2026-12-03&tz=+1",
            "day=2026-12-03&tz=%2B01:00x",
            "day=2026-12-03&day=2026-12-04",
            "day=%FF%FE",
            "day=20261203xx",
        ] {
            assert!(day_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_query_of_150000_pairs_is_read_to_its_end() {
        let q = format!(
            "camera=demo&{}day=2026-12-03&tz=%2B01:00&gap=60",
            "x=%41&".repeat(150_000)
        );
        let (from, _) = day_range(&q).unwrap().unwrap();
        assert_eq!(from, t("2026-12-02T23:00:00Z"));
        assert_eq!(merge_gap(&q).unwrap(), 60_000_000);
    }

    fn span(a: &str, b: &str) -> Recording {
        Recording {
            start: t(a),
            end: t(b),
            segments: 1,
            bytes: 10,
            tags: Default::default(),
        }
    }

    #[test]
    fn spans_closer_than_the_gap_merge() {
        let spans = || {
            vec![
                span("2026-12-03T10:00:00Z", "2026-12-03T10:00:10Z"),
                span("2026-12-03T10:00:13Z", "2026-12-03T10:00:20Z"),
                span("2026-12-03T10:01:00Z", "2026-12-03T10:02:00Z"),
            ]
        };
        assert_eq!(merge_spans(spans(), 0).len(), 3);
        let m = merge_spans(spans(), 5_000_000);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].start, m[0].end),
            (t("2026-12-03T10:00:00Z"), t("2026-12-03T10:00:20Z"))
        );
        assert_eq!((m[0].segments, m[0].bytes), (2, 20));
        assert_eq!(merge_spans(spans(), 60_000_000).len(), 1);
    }
}

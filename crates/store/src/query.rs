//! Untrusted HTTP query input for a store's footage: the `camera`, `from` and `to` of a range
//! (`?camera=garage&from=2026-11-25T12:00:00Z&to=2026-11-25T12:01:00Z`), and the single byte
//! range of a `Range: bytes=` header on an export.
//!
//! Both come from whoever can reach an HTTP API, so both are bounded and linear: a query string
//! over [`MAX_QUERY_BYTES`] or with more than [`MAX_QUERY_PARAMS`] parameters is refused before it
//! is decoded, values are percent-decoded once and must be UTF-8, a parameter the range needs may
//! be given once only, times are RFC 3339 ([`WallTime::parse_rfc3339`], whose arithmetic is
//! checked), the camera is a valid store name ([`crate::layout::check_camera`]), and every value
//! quoted in an error is cut to [`QUOTED_BYTES`]. Nothing here panics on any input (fuzz target
//! `nvr_query`).
//!
//! ```
//! use nvrkit_store::query::{ByteRange, QueryError, RangeQuery, byte_range};
//!
//! let q = RangeQuery::parse("camera=garage&from=2026-11-25T12%3A00%3A00Z&to=2026-11-25T12:01:00Z")?;
//! assert_eq!(q.camera, "garage");
//! assert_eq!(q.span_micros(), 60_000_000);
//! assert!(matches!(RangeQuery::parse("camera=garage"), Err(QueryError::Missing { name: "from" })));
//! assert_eq!(byte_range("bytes=-100", 1000), ByteRange::Part { first: 900, last: 999 });
//! # Ok::<(), QueryError>(())
//! ```

use nvrkit_media::WallTime;

/// The longest query string read, in bytes; a longer one is refused unread.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The most `&`-separated parameters a query string may have.
pub const MAX_QUERY_PARAMS: usize = 32;
/// The longest `Range` header value read; a longer one is ignored (the whole body is served).
pub const MAX_RANGE_HEADER_BYTES: usize = 256;
/// Bytes of an offending value quoted in a [`QueryError`], marker included.
pub const QUOTED_BYTES: usize = 64;

/// Why a query string is refused (an HTTP API answers `400` with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query string is over [`MAX_QUERY_BYTES`].
    #[error("the query string is {len} bytes, over the limit of {max} bytes")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit ([`MAX_QUERY_BYTES`]).
        max: usize,
    },
    /// The query string has more than [`MAX_QUERY_PARAMS`] parameters.
    #[error("the query string has more than {max} parameters")]
    TooManyParams {
        /// The limit ([`MAX_QUERY_PARAMS`]).
        max: usize,
    },
    /// A parameter's name or value is not valid percent-encoded UTF-8.
    #[error("bad percent-encoding in {part:?}: {why}")]
    BadEncoding {
        /// The `name=value` pair, as sent (cut to [`QUOTED_BYTES`]).
        part: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A required parameter is missing.
    #[error("{name}= is required")]
    Missing {
        /// Its name.
        name: &'static str,
    },
    /// A parameter is given more than once.
    #[error("{name}= is given more than once")]
    Repeated {
        /// Its name.
        name: &'static str,
    },
    /// `camera=` is not a valid camera name.
    #[error("camera={value:?}: {why}")]
    BadCamera {
        /// The value (cut to [`QUOTED_BYTES`]).
        value: String,
        /// Why not.
        why: &'static str,
    },
    /// `from=` or `to=` is not an RFC 3339 time.
    #[error("{name}={value:?} is not an RFC 3339 time such as 2026-11-25T12:00:00Z: {why}")]
    BadTime {
        /// `from` or `to`.
        name: &'static str,
        /// The value (cut to [`QUOTED_BYTES`]).
        value: String,
        /// What the parser said.
        why: &'static str,
    },
    /// `to` is not after `from`.
    #[error("to ({to}) must be after from ({from})")]
    Reversed {
        /// The start.
        from: WallTime,
        /// The end.
        to: WallTime,
    },
    /// The range is longer than the caller allows ([`RangeQuery::check_span`]).
    #[error("the range covers {span_secs} s, over the limit of {max_secs} s")]
    TooWide {
        /// Its length, whole seconds.
        span_secs: i64,
        /// The limit, whole seconds.
        max_secs: i64,
    },
}

/// A camera and a time range, from a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// The camera (a valid store name).
    pub camera: String,
    /// The start.
    pub from: WallTime,
    /// The end, after `from`.
    pub to: WallTime,
}

impl RangeQuery {
    /// Reads `camera`, `from` and `to` from a raw query string (what follows `?`, without it;
    /// `""` for none). Other parameters are ignored; the three are required, once each.
    pub fn parse(raw_query: &str) -> Result<RangeQuery, QueryError> {
        let params = Params::parse(raw_query)?;
        let camera = params.once("camera")?;
        crate::layout::check_camera(&camera).map_err(|e| QueryError::BadCamera {
            value: quote(&camera),
            why: match e {
                crate::Error::CameraName { why, .. } => why,
                _ => "not a valid camera name",
            },
        })?;
        let time = |name: &'static str| -> Result<WallTime, QueryError> {
            let value = params.once(name)?;
            WallTime::parse_rfc3339(&value).map_err(|e| QueryError::BadTime {
                name,
                value: quote(&value),
                why: e.reason(),
            })
        };
        let (from, to) = (time("from")?, time("to")?);
        if to <= from {
            return Err(QueryError::Reversed { from, to });
        }
        Ok(RangeQuery { camera, from, to })
    }

    /// Microseconds from `from` to `to` (positive; saturating, though parsed times are years
    /// 0 to 9999 and cannot overflow).
    pub fn span_micros(&self) -> i64 {
        self.to.as_micros().saturating_sub(self.from.as_micros())
    }

    /// Refuses a range longer than `max_micros`.
    pub fn check_span(&self, max_micros: i64) -> Result<(), QueryError> {
        let span = self.span_micros();
        if span > max_micros {
            return Err(QueryError::TooWide {
                span_secs: span / 1_000_000,
                max_secs: max_micros / 1_000_000,
            });
        }
        Ok(())
    }
}

/// The decoded `name=value` pairs of a bounded query string.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: &str) -> Result<Params, QueryError> {
        if raw.len() > MAX_QUERY_BYTES {
            return Err(QueryError::TooLong {
                len: raw.len(),
                max: MAX_QUERY_BYTES,
            });
        }
        let mut out = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            if out.len() == MAX_QUERY_PARAMS {
                return Err(QueryError::TooManyParams {
                    max: MAX_QUERY_PARAMS,
                });
            }
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let bad = |why| QueryError::BadEncoding {
                part: quote(part),
                why,
            };
            out.push((decode(name).map_err(bad)?, decode(value).map_err(bad)?));
        }
        Ok(Params(out))
    }

    /// The value of `name`, which must be there exactly once.
    fn once(&self, name: &'static str) -> Result<String, QueryError> {
        let mut values = self.0.iter().filter(|(n, _)| n == name);
        let value = values.next().ok_or(QueryError::Missing { name })?;
        if values.next().is_some() {
            return Err(QueryError::Repeated { name });
        }
        Ok(value.1.clone())
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX` a
/// byte; the result must be UTF-8.
fn decode(s: &str) -> Result<String, &'static str> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |k: usize| b.get(k).and_then(|c| (*c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err("'%' must be followed by two hex digits");
                };
                // Both digits are below 16, so the byte fits.
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded")
}

/// `s` cut to [`QUOTED_BYTES`] for an error message.
fn quote(s: &str) -> String {
    crate::note::truncate(s, QUOTED_BYTES)
}

/// What a `Range` header asks of a body of a known length (RFC 9110 §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Not one byte range this server serves (several ranges, another unit, a malformed or
    /// invalid range, an over-long header): serve the whole body, `200`.
    Whole,
    /// Bytes `first..=last` of the body, `206`; `first <= last < total`.
    Part {
        /// The first byte.
        first: u64,
        /// The last byte, included.
        last: u64,
    },
    /// A range that starts past the end (or any range of an empty body): `416`.
    Unsatisfiable,
}

/// Reads a `Range` header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for a body of `total`
/// bytes. Numbers are ASCII digits only; one too large for `u64` makes the range invalid, so the
/// whole body is served.
pub fn byte_range(header: &str, total: u64) -> ByteRange {
    if header.len() > MAX_RANGE_HEADER_BYTES {
        return ByteRange::Whole;
    }
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, true) => ByteRange::Whole,
        // The last n bytes.
        (true, false) => match number(b) {
            None => ByteRange::Whole,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if total == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part {
                first: total.saturating_sub(n),
                last: total - 1,
            },
        },
        (false, _) => {
            let Some(first) = number(a) else {
                return ByteRange::Whole;
            };
            let last = if b.is_empty() {
                None
            } else {
                match number(b) {
                    // An invalid range (last before first) is ignored (RFC 9110 §14.1.1).
                    Some(last) if last >= first => Some(last),
                    _ => return ByteRange::Whole,
                }
            };
            if first >= total {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Part {
                first,
                last: last.map_or(total - 1, |l| l.min(total - 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "camera=garage&from=2026-11-25T12:00:00Z&to=2026-11-25T12:01:00Z";

    #[test]
    fn a_range_query_is_read() {
        let q = RangeQuery::parse(OK).unwrap();
        assert_eq!(q.camera, "garage");
        assert_eq!(q.from.to_rfc3339(), "2026-11-25T12:00:00Z");
        assert_eq!(q.span_micros(), 60_000_000);
        assert!(q.check_span(60_000_000).is_ok());
        assert!(matches!(
            q.check_span(59_000_000),
            Err(QueryError::TooWide {
                span_secs: 60,
                max_secs: 59
            })
        ));
        // Percent-encoding, '+' for a space in an offset, other parameters and empty parts.
        let q = RangeQuery::parse(
            "&t=1&camera=gar%61ge&from=2026-11-25T13%3A00%3A00%2B01%3A00&&to=2026-11-25+12:00:01Z",
        )
        .unwrap();
        assert_eq!(q.camera, "garage");
        assert_eq!(q.from.to_rfc3339(), "2026-11-25T12:00:00Z");
        assert_eq!(q.span_micros(), 1_000_000);
    }

    #[test]
    fn bad_range_queries_are_refused_with_their_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "camera= is required"),
            ("camera=garage&to=2026-11-25T12:01:00Z", "from= is required"),
            (
                &format!("{OK}&camera=yard"),
                "camera= is given more than once",
            ),
            ("camera=../etc&from=x&to=y", "camera=\"../etc\""),
            (
                "camera=garage&from=yesterday&to=2026-11-25T12:01:00Z",
                "from=\"yesterday\" is not an RFC 3339 time",
            ),
            (
                "camera=garage&from=99999999999999999999-01-01T00:00:00Z&to=2026-11-25T12:01:00Z",
                "not an RFC 3339 time",
            ),
            (
                "camera=garage&from=2026-11-25T12:01:00Z&to=2026-11-25T12:01:00Z",
                "must be after from",
            ),
            ("camera=gar%zzge", "two hex digits"),
            ("camera=%ff", "not UTF-8"),
            ("camera=%", "two hex digits"),
        ];
        for (query, want) in cases {
            let e = RangeQuery::parse(query).unwrap_err().to_string();
            assert!(e.contains(want), "{query:?}: {e}");
        }
    }

    #[test]
    fn a_hostile_query_is_refused_and_quoted_short() {
        let long = format!("{OK}&pad={}", "a".repeat(MAX_QUERY_BYTES));
        let e = RangeQuery::parse(&long).unwrap_err();
        assert!(
            matches!(
                e,
                QueryError::TooLong {
                    max: MAX_QUERY_BYTES,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("limit of 8192 bytes"));
        let many = "a=1&".repeat(MAX_QUERY_PARAMS + 1);
        assert!(matches!(
            RangeQuery::parse(&many),
            Err(QueryError::TooManyParams { .. })
        ));
        let junk = format!("camera=garage&from={}&to=x", "9".repeat(4000));
        let e = RangeQuery::parse(&junk).unwrap_err().to_string();
        assert!(e.len() < 300, "the value is quoted short: {e}");
        assert!(e.contains(crate::note::TRUNCATED), "{e}");
    }

    #[test]
    fn byte_ranges() {
        use ByteRange::*;
        let part = |first, last| Part { first, last };
        assert_eq!(byte_range("bytes=0-99", 1000), part(0, 99));
        assert_eq!(byte_range("bytes=900-", 1000), part(900, 999));
        assert_eq!(byte_range("bytes=-100", 1000), part(900, 999));
        assert_eq!(byte_range("bytes=-5000", 1000), part(0, 999));
        assert_eq!(byte_range("bytes=0-5000", 1000), part(0, 999));
        assert_eq!(byte_range(" bytes= 5 - 9 ", 1000), part(5, 9));
        assert_eq!(byte_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(byte_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(
            byte_range("bytes=5-3", 1000),
            Whole,
            "an invalid range is ignored"
        );
        assert_eq!(byte_range("bytes=0-1,5-9", 1000), Whole);
        assert_eq!(byte_range("items=0-1", 1000), Whole);
        assert_eq!(byte_range("bytes=-", 1000), Whole);
        assert_eq!(byte_range("bytes=+5-9", 1000), Whole, "digits only");
        assert_eq!(byte_range("bytes=99999999999999999999999-", 1000), Whole);
        assert_eq!(byte_range("bytes=0-99999999999999999999999", 1000), Whole);
        assert_eq!(
            byte_range(&format!("bytes=0-{}", "9".repeat(300)), 1000),
            Whole
        );
        assert_eq!(
            byte_range("bytes=18446744073709551615-", u64::MAX),
            Unsatisfiable
        );
        assert_eq!(
            byte_range("bytes=-18446744073709551615", u64::MAX),
            part(0, u64::MAX - 1)
        );
    }
}

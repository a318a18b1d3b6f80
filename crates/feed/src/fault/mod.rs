//! Fault modes: a camera that misbehaves on purpose, per path, so a VMS can be tested against
//! the camera bugs that break recorders (issue 16). A [`FaultSet`] is read from a URL's query
//! (`rtsp://HOST:8554/bikes?denytcp&noidr=5s`) wherever it appears in a request URI (also after
//! the track part), or from a fault file line (`ALIAS = CLIP?QUERY`, [`parse_fault_file`]).
//!
//! | key | effect |
//! | --- | --- |
//! | `denytcp` / `denyudp` | SETUP over that transport gets `461 Unsupported Transport` |
//! | `auth=basic\|digest` | this path asks for credentials, with that scheme only |
//! | `noidr=5s` | no keyframe for that long after PLAY |
//! | `stall=10s` | media stops that long after PLAY; RTSP keeps answering |
//! | `drop=1%` | that share of RTP packets over UDP is not sent |
//! | `jitter=50ms` | RTP packets over UDP are held up to that long |
//! | `bye_at_seam` | RTCP BYE at the loop seam, then no more media |
//! | `ts_reset_at_seam` | RTP timestamps restart at the seam |
//! | `dts_backwards_at_seam` | decode time steps back at the seam |
//! | `disconnect_every=60s` | the server closes the connection that long after it opened |
//! | `fps=12.5` | non-reference frames dropped down to that rate |
//! | `sps_change_at_seam[=CLIP]` | the next loop comes from a clip of another size |
//! | `session_expires=120s` | `401` to every request that long after SETUP |
//!
//! Durations use the one grammar of every nvrkit flag ([`nvrkit_net::units`]), kept to whole
//! milliseconds. A query is untrusted input: at most [`MAX_QUERY_LEN`] bytes, each key once,
//! an unknown key is an error (a typo must not silently test nothing).
//!
//! ```
//! use nvrkit_feed::fault::FaultSet;
//! let f: FaultSet = "denytcp&noidr=5s&drop=0.5%25".parse()?;
//! assert!(f.deny_tcp);
//! assert_eq!(f.to_string(), "denytcp&noidr=5s&drop=0.5%");
//! assert!(FaultSet::default().is_empty());
//! # Ok::<(), nvrkit_feed::fault::FaultError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub mod frames;
pub mod session;

#[cfg(test)]
mod dialogue_tests;

/// The longest query a fault set is read from, in bytes (all fourteen keys with long values fit
/// in a quarter of it).
pub const MAX_QUERY_LEN: usize = 1024;

/// The longest clip name `sps_change_at_seam=CLIP` accepts.
const MAX_CLIP_NAME: usize = 128;

/// Which authentication scheme a path with `auth=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthScheme {
    /// `Basic` only (RFC 7617): the password in clear, as many cheap cameras do.
    Basic,
    /// `Digest` only (RFC 2617, MD5).
    Digest,
}

/// Where `sps_change_at_seam` takes its next loop from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpsChange {
    /// Bare `sps_change_at_seam`: another served clip whose picture size differs.
    AnyOther,
    /// `sps_change_at_seam=CLIP`: that clip.
    Clip(String),
}

/// A frame rate in thousandths of a frame per second (`fps=12.5` is 12,500), exact so fault
/// sets compare and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MilliFps(pub u32);

/// The faults of one path (or alias). `Default` is no fault: the camera behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FaultSet {
    /// `denytcp`: SETUP with RTP over the RTSP connection is answered 461.
    pub deny_tcp: bool,
    /// `denyudp`: SETUP with RTP over UDP is answered 461.
    pub deny_udp: bool,
    /// `auth=basic|digest`: the path asks for credentials with that scheme only.
    pub auth: Option<AuthScheme>,
    /// `noidr=5s`: no keyframe is sent for that long after PLAY.
    pub no_idr: Option<Duration>,
    /// `stall=10s`: media stops that long after PLAY; the session stays up and RTSP answers.
    pub stall: Option<Duration>,
    /// `drop=1%`: RTP packets over UDP not sent, in parts per million (1 % is 10,000).
    pub drop_ppm: Option<u32>,
    /// `jitter=50ms`: each RTP packet over UDP is held up to that long.
    pub jitter: Option<Duration>,
    /// `bye_at_seam`: RTCP BYE at the loop seam, then no more media.
    pub bye_at_seam: bool,
    /// `ts_reset_at_seam`: RTP timestamps restart at the seam.
    pub ts_reset_at_seam: bool,
    /// `dts_backwards_at_seam`: decode time steps back at the seam.
    pub dts_backwards_at_seam: bool,
    /// `disconnect_every=60s`: the server closes each connection that long after it opened.
    pub disconnect_every: Option<Duration>,
    /// `fps=12.5`: non-reference frames dropped down to that rate.
    pub fps: Option<MilliFps>,
    /// `sps_change_at_seam[=CLIP]`: the next loop comes from a clip of another picture size.
    pub sps_change_at_seam: Option<SpsChange>,
    /// `session_expires=120s`: every request that long after SETUP is answered 401.
    pub session_expires: Option<Duration>,
}

/// A fault query that cannot be used; names the key and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// Longer than [`MAX_QUERY_LEN`].
    #[error("fault query of {0} bytes is longer than {MAX_QUERY_LEN}")]
    TooLong(usize),
    /// Not a fault this server knows.
    #[error("unknown fault {0:?} (faults: {KEYS})")]
    UnknownKey(String),
    /// The same key twice.
    #[error("fault {0:?} given twice")]
    Repeated(&'static str),
    /// A flag given a value, or a key that needs one without it.
    #[error("fault {key:?}: {what}")]
    Value {
        /// The key.
        key: &'static str,
        /// What is wrong with its value.
        what: String,
    },
}

/// The keys, in canonical order (as [`FaultSet`]'s `Display` writes them).
pub const KEYS: &str = "denytcp, denyudp, auth=basic|digest, noidr=DURATION, stall=DURATION, \
drop=PERCENT%, jitter=DURATION, bye_at_seam, ts_reset_at_seam, dts_backwards_at_seam, \
disconnect_every=DURATION, fps=RATE, sps_change_at_seam[=CLIP], session_expires=DURATION";

impl FaultSet {
    /// No fault at all.
    pub fn is_empty(&self) -> bool {
        *self == FaultSet::default()
    }

    /// Whether the set bends the frames themselves (which frames exist, their decode times,
    /// their parameter sets: `fps`, `dts_backwards_at_seam`, `sps_change_at_seam`), so its
    /// sessions need a `LoopSource` and ring of their own; the other faults bend one session's
    /// RTSP dialogue or RTP path and share the clip's ring.
    pub fn changes_frames(&self) -> bool {
        !self.frame_faults().is_empty()
    }

    /// Only the faults that change frames ([`FaultSet::changes_frames`]): the key of the ring a
    /// session reads, so sessions with the same frame faults share one.
    pub fn frame_faults(&self) -> FaultSet {
        FaultSet {
            fps: self.fps,
            dts_backwards_at_seam: self.dts_backwards_at_seam,
            sps_change_at_seam: self.sps_change_at_seam.clone(),
            ..FaultSet::default()
        }
    }

    /// These faults with `over`'s on top: each fault `over` sets replaces this one's (an
    /// alias's faults under the query of a URL naming it).
    pub fn with(&self, over: &FaultSet) -> FaultSet {
        FaultSet {
            deny_tcp: self.deny_tcp || over.deny_tcp,
            deny_udp: self.deny_udp || over.deny_udp,
            auth: over.auth.or(self.auth),
            no_idr: over.no_idr.or(self.no_idr),
            stall: over.stall.or(self.stall),
            drop_ppm: over.drop_ppm.or(self.drop_ppm),
            jitter: over.jitter.or(self.jitter),
            bye_at_seam: self.bye_at_seam || over.bye_at_seam,
            ts_reset_at_seam: self.ts_reset_at_seam || over.ts_reset_at_seam,
            dts_backwards_at_seam: self.dts_backwards_at_seam || over.dts_backwards_at_seam,
            disconnect_every: over.disconnect_every.or(self.disconnect_every),
            fps: over.fps.or(self.fps),
            sps_change_at_seam: over
                .sps_change_at_seam
                .clone()
                .or_else(|| self.sps_change_at_seam.clone()),
            session_expires: over.session_expires.or(self.session_expires),
        }
    }

    /// The fault set of a request URI: its query (wherever it appears: `/bikes?denytcp` and
    /// `/bikes/trackID=0?denytcp` alike), or none. Returns the URI's path without the query.
    pub fn split_uri(path_and_query: &str) -> Result<(&str, FaultSet), FaultError> {
        match path_and_query.split_once('?') {
            None => Ok((path_and_query, FaultSet::default())),
            Some((path, query)) => Ok((path, query.parse()?)),
        }
    }

    fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), FaultError> {
        let (key, seen): (&'static str, bool) = match key {
            "denytcp" => ("denytcp", flag(&mut self.deny_tcp, "denytcp", value)?),
            "denyudp" => ("denyudp", flag(&mut self.deny_udp, "denyudp", value)?),
            "bye_at_seam" => (
                "bye_at_seam",
                flag(&mut self.bye_at_seam, "bye_at_seam", value)?,
            ),
            "ts_reset_at_seam" => (
                "ts_reset_at_seam",
                flag(&mut self.ts_reset_at_seam, "ts_reset_at_seam", value)?,
            ),
            "dts_backwards_at_seam" => (
                "dts_backwards_at_seam",
                flag(
                    &mut self.dts_backwards_at_seam,
                    "dts_backwards_at_seam",
                    value,
                )?,
            ),
            "auth" => {
                let v = needs("auth", value)?;
                let scheme = match v.to_ascii_lowercase().as_str() {
                    "basic" => AuthScheme::Basic,
                    "digest" => AuthScheme::Digest,
                    _ => return Err(bad("auth", format!("{v:?} is not basic or digest"))),
                };
                ("auth", self.auth.replace(scheme).is_some())
            }
            "noidr" => ("noidr", duration(&mut self.no_idr, "noidr", value)?),
            "stall" => ("stall", duration(&mut self.stall, "stall", value)?),
            "jitter" => ("jitter", duration(&mut self.jitter, "jitter", value)?),
            "disconnect_every" => (
                "disconnect_every",
                duration(&mut self.disconnect_every, "disconnect_every", value)?,
            ),
            "session_expires" => (
                "session_expires",
                duration(&mut self.session_expires, "session_expires", value)?,
            ),
            "drop" => {
                let v = needs("drop", value)?;
                let ppm = parse_percent_ppm(v).ok_or_else(|| {
                    bad(
                        "drop",
                        format!("{v:?} is not a share above 0 % and at most 100 %, e.g. 1%"),
                    )
                })?;
                ("drop", self.drop_ppm.replace(ppm).is_some())
            }
            "fps" => {
                let v = needs("fps", value)?;
                let milli = parse_milli(v)
                    .filter(|m| (1..=1_000_000).contains(m))
                    .ok_or_else(|| bad("fps", format!("{v:?} is not a rate above 0, e.g. 12.5")))?;
                ("fps", self.fps.replace(MilliFps(milli)).is_some())
            }
            "sps_change_at_seam" => {
                let change = match value {
                    None => SpsChange::AnyOther,
                    Some(c) if valid_clip_name(c) => SpsChange::Clip(c.to_owned()),
                    Some(c) => {
                        return Err(bad(
                            "sps_change_at_seam",
                            format!(
                                "{c:?} is not a clip name (letters, digits, . _ - /, \
                                 at most {MAX_CLIP_NAME})"
                            ),
                        ));
                    }
                };
                (
                    "sps_change_at_seam",
                    self.sps_change_at_seam.replace(change).is_some(),
                )
            }
            other => return Err(FaultError::UnknownKey(truncated(other))),
        };
        if seen {
            return Err(FaultError::Repeated(key));
        }
        Ok(())
    }
}

impl FromStr for FaultSet {
    type Err = FaultError;

    /// Parses a query (without its `?`): keys joined by `&` (or `;`), `%XX` escapes decoded
    /// (so `drop=1%25` and `drop=1%` both mean 1 %). Empty parts are ignored.
    fn from_str(query: &str) -> Result<Self, FaultError> {
        if query.len() > MAX_QUERY_LEN {
            return Err(FaultError::TooLong(query.len()));
        }
        let mut set = FaultSet::default();
        for part in query.split(['&', ';']) {
            let part = percent_decode(part);
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            set.set(key, value)?;
        }
        Ok(set)
    }
}

impl fmt::Display for FaultSet {
    /// The canonical query: keys in the order of [`KEYS`], joined by `&`, durations in whole
    /// seconds or milliseconds; parsing it gives the same set. Empty for no faults.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut flag = |on: bool, k: &str| {
            if on {
                parts.push(k.to_owned());
            }
        };
        flag(self.deny_tcp, "denytcp");
        flag(self.deny_udp, "denyudp");
        if let Some(a) = self.auth {
            parts.push(match a {
                AuthScheme::Basic => "auth=basic".into(),
                AuthScheme::Digest => "auth=digest".into(),
            });
        }
        let dur = |parts: &mut Vec<String>, k: &str, d: Option<Duration>| {
            if let Some(d) = d {
                parts.push(format!("{k}={}", show_duration(d)));
            }
        };
        dur(&mut parts, "noidr", self.no_idr);
        dur(&mut parts, "stall", self.stall);
        if let Some(ppm) = self.drop_ppm {
            parts.push(format!("drop={}%", show_fixed(ppm, 10_000)));
        }
        dur(&mut parts, "jitter", self.jitter);
        if self.bye_at_seam {
            parts.push("bye_at_seam".into());
        }
        if self.ts_reset_at_seam {
            parts.push("ts_reset_at_seam".into());
        }
        if self.dts_backwards_at_seam {
            parts.push("dts_backwards_at_seam".into());
        }
        dur(&mut parts, "disconnect_every", self.disconnect_every);
        if let Some(MilliFps(m)) = self.fps {
            parts.push(format!("fps={}", show_fixed(m, 1000)));
        }
        match &self.sps_change_at_seam {
            None => {}
            Some(SpsChange::AnyOther) => parts.push("sps_change_at_seam".into()),
            Some(SpsChange::Clip(c)) => parts.push(format!("sps_change_at_seam={c}")),
        }
        dur(&mut parts, "session_expires", self.session_expires);
        f.write_str(&parts.join("&"))
    }
}

fn bad(key: &'static str, what: String) -> FaultError {
    FaultError::Value { key, what }
}

/// A key as an error shows it: at most 64 characters of untrusted input.
fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

fn flag(slot: &mut bool, key: &'static str, value: Option<&str>) -> Result<bool, FaultError> {
    if let Some(v) = value {
        return Err(bad(key, format!("takes no value (got {:?})", truncated(v))));
    }
    Ok(std::mem::replace(slot, true))
}

fn needs<'a>(key: &'static str, value: Option<&'a str>) -> Result<&'a str, FaultError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(key, "needs a value".into())),
    }
}

/// The longest duration a fault takes: a year, so adding it to an instant cannot overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

fn duration(
    slot: &mut Option<Duration>,
    key: &'static str,
    value: Option<&str>,
) -> Result<bool, FaultError> {
    let v = needs(key, value)?;
    let d = nvrkit_net::units::parse_duration(v).map_err(|e| bad(key, e))?;
    if d > MAX_DURATION {
        return Err(bad(key, format!("{v:?} is longer than a year")));
    }
    // Whole milliseconds, so the canonical form reads back the same.
    let d = Duration::from_millis(d.as_millis() as u64);
    if d.is_zero() {
        return Err(bad(key, format!("{v:?} is not above zero")));
    }
    Ok(slot.replace(d).is_some())
}

/// `90s`, `250ms`: the shortest form the duration grammar reads back exactly.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `12500 / 1000` as `12.5`, `10000 / 10000` as `1`.
fn show_fixed(n: u32, one: u32) -> String {
    let (int, frac) = (n / one, n % one);
    if frac == 0 {
        return int.to_string();
    }
    let width = one.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// A decimal number with at most `places` digits after the point, times 10^places.
fn parse_fixed(s: &str, places: u32) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    if frac.len() > places as usize || int.len() > 7 {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    f *= 10u64.pow(places - frac.len() as u32);
    u32::try_from(int * 10u64.pow(places) + f).ok()
}

/// `12.5` → 12,500.
fn parse_milli(s: &str) -> Option<u32> {
    parse_fixed(s, 3)
}

/// `1%` → 10,000 parts per million; above 0 and at most 100 %.
fn parse_percent_ppm(s: &str) -> Option<u32> {
    let n = s.strip_suffix('%')?.trim();
    parse_fixed(n, 4).filter(|p| (1..=1_000_000).contains(p))
}

fn valid_clip_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLIP_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && !s.split('/').any(|p| p.is_empty() || p == "..")
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is (ffmpeg sends
/// `drop=1%` unescaped). Invalid UTF-8 after decoding is replaced.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of a fault file: a path served as `alias` plays `clip` with `faults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The path it is served at.
    pub alias: String,
    /// The clip it plays.
    pub clip: String,
    /// Its faults.
    pub faults: FaultSet,
}

/// A fault file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultFileError {
    /// A line that is not `ALIAS = CLIP?QUERY`.
    #[error("line {line}: {what}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A line whose query is not a fault set.
    #[error("line {line}: {source}")]
    Fault {
        /// 1-based line number.
        line: usize,
        /// The query's error.
        #[source]
        source: FaultError,
    },
    /// Two lines define the same alias.
    #[error("line {line}: alias {alias:?} defined twice")]
    Duplicate {
        /// 1-based line number of the second.
        line: usize,
        /// The alias.
        alias: String,
    },
}

/// Parses a fault file (`loopcam --faults FILE`): one alias a line, `ALIAS = CLIP?QUERY`
/// (`bikes-notcp = bikes?denytcp`), `#` starts a comment, blank lines are ignored. The query
/// is what a URL would carry; the alias is served as its own path, so a VMS can add the same
/// clip several times, each with its fault. Whether `CLIP` exists is the caller's check.
pub fn parse_fault_file(text: &str) -> Result<Vec<Alias>, FaultFileError> {
    let mut out: Vec<Alias> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let syntax = |what: &str| FaultFileError::Syntax {
            line,
            what: what.to_owned(),
        };
        let (alias, target) = l
            .split_once('=')
            .ok_or_else(|| syntax("expected ALIAS = CLIP?QUERY"))?;
        let (alias, target) = (alias.trim(), target.trim());
        if !valid_clip_name(alias) {
            return Err(syntax(
                "the alias must be a path of letters, digits, . _ - / (at most 128)",
            ));
        }
        let (clip, query) = target.split_once('?').unwrap_or((target, ""));
        let clip = clip.trim();
        if !valid_clip_name(clip) {
            return Err(syntax("expected a clip name after '='"));
        }
        let faults = query
            .parse()
            .map_err(|source| FaultFileError::Fault { line, source })?;
        if out.iter().any(|a| a.alias == alias) {
            return Err(FaultFileError::Duplicate {
                line,
                alias: alias.to_owned(),
            });
        }
        out.push(Alias {
            alias: alias.to_owned(),
            clip: clip.to_owned(),
            faults,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<FaultSet, FaultError> {
        q.parse()
    }

    #[test]
    fn every_key_parses_and_reads_back_canonically() {
        let all = "session_expires=2m&denyudp&denytcp&auth=Digest&noidr=5s&stall=10s&drop=1%25\
                   &jitter=50ms&bye_at_seam&ts_reset_at_seam&dts_backwards_at_seam\
                   &disconnect_every=60s&fps=12.5&sps_change_at_seam=other";
        let f = parse(all).unwrap();
        assert_eq!(
            f,
            FaultSet {
                deny_tcp: true,
                deny_udp: true,
                auth: Some(AuthScheme::Digest),
                no_idr: Some(Duration::from_secs(5)),
                stall: Some(Duration::from_secs(10)),
                drop_ppm: Some(10_000),
                jitter: Some(Duration::from_millis(50)),
                bye_at_seam: true,
                ts_reset_at_seam: true,
                dts_backwards_at_seam: true,
                disconnect_every: Some(Duration::from_secs(60)),
                fps: Some(MilliFps(12_500)),
                sps_change_at_seam: Some(SpsChange::Clip("other".into())),
                session_expires: Some(Duration::from_secs(120)),
            }
        );
        let canonical = f.to_string();
        assert_eq!(
            canonical,
            "denytcp&denyudp&auth=digest&noidr=5s&stall=10s&drop=1%&jitter=50ms&bye_at_seam\
             &ts_reset_at_seam&dts_backwards_at_seam&disconnect_every=60s&fps=12.5\
             &sps_change_at_seam=other&session_expires=120s"
        );
        assert_eq!(parse(&canonical).unwrap(), f);
        assert!(f.changes_frames());
    }

    #[test]
    fn values_as_written() {
        let cases: &[(&str, FaultSet)] = &[
            ("", FaultSet::default()),
            ("&&", FaultSet::default()),
            (
                "drop=0.5%",
                FaultSet {
                    drop_ppm: Some(5_000),
                    ..Default::default()
                },
            ),
            (
                "drop=100%",
                FaultSet {
                    drop_ppm: Some(1_000_000),
                    ..Default::default()
                },
            ),
            (
                "fps=25;jitter=1.5s",
                FaultSet {
                    fps: Some(MilliFps(25_000)),
                    jitter: Some(Duration::from_millis(1500)),
                    ..Default::default()
                },
            ),
            (
                "sps_change_at_seam",
                FaultSet {
                    sps_change_at_seam: Some(SpsChange::AnyOther),
                    ..Default::default()
                },
            ),
            (
                "auth=basic&stall=2",
                FaultSet {
                    auth: Some(AuthScheme::Basic),
                    stall: Some(Duration::from_secs(2)),
                    ..Default::default()
                },
            ),
        ];
        for (q, want) in cases {
            let got = parse(q).unwrap();
            assert_eq!(&got, want, "{q:?}");
            assert_eq!(parse(&got.to_string()).unwrap(), got, "{q:?} reads back");
        }
    }

    #[test]
    fn bad_queries_name_the_key_and_value() {
        let cases: &[(&str, &str)] = &[
            ("denytpc", "unknown fault \"denytpc\""),
            ("denytcp&denytcp", "fault \"denytcp\" given twice"),
            ("denytcp=1", "fault \"denytcp\": takes no value"),
            ("noidr", "fault \"noidr\": needs a value"),
            ("noidr=", "fault \"noidr\": needs a value"),
            ("noidr=5x", "fault \"noidr\": \"5x\" is not a duration"),
            ("stall=0s", "fault \"stall\": \"0s\" is not above zero"),
            ("stall=400d", "longer than a year"),
            ("drop=1", "fault \"drop\": \"1\" is not a share"),
            ("drop=0%", "fault \"drop\""),
            ("drop=101%", "fault \"drop\""),
            ("drop=0.00001%", "fault \"drop\""),
            ("fps=0", "fault \"fps\""),
            ("fps=abc", "fault \"fps\": \"abc\""),
            ("fps=1e3", "fault \"fps\""),
            (
                "auth=ntlm",
                "fault \"auth\": \"ntlm\" is not basic or digest",
            ),
            ("sps_change_at_seam=../x", "fault \"sps_change_at_seam\""),
            ("sps_change_at_seam=a b", "fault \"sps_change_at_seam\""),
        ];
        for (q, want) in cases {
            let e = parse(q).unwrap_err().to_string();
            assert!(e.contains(want), "{q:?}: {e}");
        }
        let long = "x".repeat(MAX_QUERY_LEN + 1);
        assert_eq!(parse(&long), Err(FaultError::TooLong(MAX_QUERY_LEN + 1)));
        let e = parse(&"y".repeat(1000)).unwrap_err().to_string();
        assert!(e.len() < 400, "an unknown key is shown truncated: {e}");
    }

    #[test]
    fn percent_escapes_decode_and_stray_percent_signs_stay() {
        assert_eq!(percent_decode("drop=1%25"), "drop=1%");
        assert_eq!(percent_decode("drop=1%"), "drop=1%");
        assert_eq!(percent_decode("%64enytcp"), "denytcp");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn frame_faults_key_the_ring() {
        let session_only =
            parse("denytcp&auth=basic&stall=2s&drop=1%&jitter=5ms&bye_at_seam").unwrap();
        let more =
            parse("disconnect_every=2s&session_expires=3s&noidr=5s&ts_reset_at_seam").unwrap();
        assert!(!session_only.changes_frames() && !more.changes_frames());
        for q in ["fps=12.5", "dts_backwards_at_seam", "sps_change_at_seam"] {
            let f = parse(&format!("denyudp&{q}")).unwrap();
            assert!(f.changes_frames(), "{q}");
            assert_eq!(f.frame_faults(), parse(q).unwrap());
        }
    }

    #[test]
    fn a_query_goes_over_an_alias() {
        let alias = parse("denytcp&stall=10s").unwrap();
        let got = alias.with(&parse("stall=2s&bye_at_seam").unwrap());
        assert_eq!(got.to_string(), "denytcp&stall=2s&bye_at_seam");
        assert_eq!(alias.with(&FaultSet::default()), alias);
    }

    #[test]
    fn uris_split_at_their_query_wherever_it_is() {
        let (p, f) = FaultSet::split_uri("/bikes/trackID=0?denytcp").unwrap();
        assert_eq!((p, f.deny_tcp), ("/bikes/trackID=0", true));
        let (p, f) = FaultSet::split_uri("/bikes").unwrap();
        assert_eq!((p, f.is_empty()), ("/bikes", true));
        assert!(FaultSet::split_uri("/bikes?nope").is_err());
    }

    #[test]
    fn fault_files() {
        let text = "# aliases\n\nbikes-notcp = bikes?denytcp  # TCP refused\n\
                    bikes-slow=bikes?fps=12.5&stall=10s\nplain = bikes\n";
        let a = parse_fault_file(text).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(
            (a[0].alias.as_str(), a[0].clip.as_str()),
            ("bikes-notcp", "bikes")
        );
        assert!(a[0].faults.deny_tcp);
        assert_eq!(a[1].faults.to_string(), "stall=10s&fps=12.5");
        assert!(a[2].faults.is_empty());
        let cases: &[(&str, &str)] = &[
            ("just words", "line 1: expected ALIAS = CLIP?QUERY"),
            ("a = b?nope", "line 1: unknown fault \"nope\""),
            ("a = ?denytcp", "line 1: expected a clip name"),
            ("x y = b", "line 1: the alias must be"),
            ("a = b\n\na = c", "line 3: alias \"a\" defined twice"),
        ];
        for (t, want) in cases {
            let e = parse_fault_file(t).unwrap_err().to_string();
            assert!(e.starts_with(want), "{t:?}: {e}");
        }
    }
}

//! Arguments shared by the subcommands: the store, times, durations, byte sizes.

pub use nvrkit_cli::units::{parse_bytes, parse_duration};
use std::path::PathBuf;

use nvrkit_media::WallTime;

/// `--store DIR`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArg {
    /// The store directory.
    #[arg(long, default_value = "./nvr-data", value_name = "DIR")]
    pub store: PathBuf,
}

/// Where S3 is, when not (only) from the `AWS_*` environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// S3 endpoint URL (MinIO, Garage, R2 …; default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// Allow a plain-http endpoint (default: AWS_ALLOW_HTTP).
    #[arg(long)]
    pub allow_http: bool,
}

impl S3Args {
    /// The target URL with these settings applied.
    pub fn target(&self, url: &str) -> anyhow::Result<nvrkit_replicate::TargetSpec> {
        let mut spec = nvrkit_replicate::TargetSpec::parse(url)?;
        if let nvrkit_replicate::TargetSpec::S3 {
            endpoint,
            region,
            allow_http,
            ..
        } = &mut spec
        {
            endpoint.clone_from(&self.endpoint);
            region.clone_from(&self.region);
            *allow_http = self.allow_http;
        }
        Ok(spec)
    }
}

/// A time as given on the command line, resolved against "now" when used.
#[derive(Debug, Clone)]
pub enum TimeArg {
    /// An absolute time.
    At(WallTime),
    /// Now plus this many µs (negative: in the past).
    Relative(i64),
}

impl TimeArg {
    /// The instant, with `now` for relative forms.
    pub fn resolve(&self, now: WallTime) -> WallTime {
        match self {
            TimeArg::At(t) => *t,
            TimeArg::Relative(us) => now.add_micros(*us),
        }
    }
}

/// Parses `now`, RFC 3339, the compact file-name form, or `-10m` / `+1h30m` relative to now.
pub fn parse_time(s: &str) -> Result<TimeArg, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(TimeArg::Relative(0));
    }
    if let Some(rest) = s.strip_prefix('-') {
        return Ok(TimeArg::Relative(
            -(parse_duration(rest)?.as_micros() as i64),
        ));
    }
    if let Some(rest) = s.strip_prefix('+') {
        return Ok(TimeArg::Relative(parse_duration(rest)?.as_micros() as i64));
    }
    WallTime::parse_rfc3339(s)
        .or_else(|_| WallTime::parse_compact(s))
        .map(TimeArg::At)
        .map_err(|_| {
            format!("{s:?} is not a time: use RFC 3339 (2026-11-25T16:37:03Z), `now`, or -10m")
        })
}

/// Human bytes: `12.3 MiB`.
pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Human duration from µs: `1h02m03s`, `4.52s`.
pub fn human_duration(us: i64) -> String {
    let s = us as f64 / 1e6;
    if s < 60.0 {
        return format!("{s:.2}s");
    }
    let total = us / 1_000_000;
    let (h, m, sec) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else {
        format!("{m}m{sec:02}s")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times() {
        let now = WallTime::parse_rfc3339("2026-11-25T12:00:00Z").unwrap();
        let at = |s: &str| parse_time(s).unwrap().resolve(now).to_rfc3339();
        assert_eq!(at("now"), "2026-11-25T12:00:00Z");
        assert_eq!(at("-10m"), "2026-11-25T11:50:00Z");
        assert_eq!(at("-1h30m"), "2026-11-25T10:30:00Z");
        assert_eq!(at("+2d"), "2026-11-27T12:00:00Z");
        assert_eq!(
            at("2026-11-25T16:37:03.5+01:00"),
            "2026-11-25T15:37:03.500000Z"
        );
        assert_eq!(at("20261125T163703.000000Z"), "2026-11-25T16:37:03Z");
        for bad in ["", "yesterday", "-10x", "-", "2026-13-01T00:00:00Z"] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1y").is_err() && parse_duration("m").is_err());
        assert_eq!(parse_bytes("500M").unwrap(), 500 << 20);
        assert_eq!(parse_bytes("2TiB").unwrap(), 2 << 40);
        assert_eq!(parse_bytes("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_bytes("1.5K").unwrap(), 1536);
        assert!(parse_bytes("-1G").is_err() && parse_bytes("1X").is_err());
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_duration(3_723_000_000), "1h02m03s");
    }
}

//! Sizes, rates and durations as people type them on command lines and in loopcam's fault
//! queries: `500M`, `10G`, `2Mbit`, `90s`, `1h30m`, `7d`, `2.5s`. The one grammar of every nvrkit
//! binary (docs/architecture.md, "CLI vocabulary").

use std::time::Duration;

/// Parses `90` (a bare number is seconds), `90s`, `10m`, `1h30m`, `7d`, `250ms`, and one
/// decimal number with a unit: `2.5s`, `0.5m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration: use 90s, 10m, 1h30m, 7d, 500ms, 2.5s");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = rest.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if rest.contains('.') {
        let (n, unit) = split_number(rest).ok_or_else(err)?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "" | "s" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86_400.0,
            _ => return Err(err()),
        };
        return Duration::try_from_secs_f64(secs).map_err(|_| err());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            "w" => Duration::from_secs(7 * 86_400),
            _ => return Err(err()),
        };
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| err())?)
            .ok_or_else(err)?;
        total = total.checked_add(part).ok_or_else(err)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses `1000`, `500M`, `10G`, `2TiB`, `1.5T` (K, M, G, T are powers of 1024; `KB`, `MB`, `GB`,
/// `TB` powers of 1000).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let err = || format!("{s:?} is not a size: use 500M, 10G, 2T");
    let (n, unit) = split_number(s).ok_or_else(err)?;
    let mult: f64 = match unit {
        "" | "B" => 1.0,
        "K" | "KiB" | "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "M" | "MiB" => 1024f64.powi(2),
        "G" | "GiB" => 1024f64.powi(3),
        "T" | "TiB" => 1024f64.powi(4),
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return Err(err()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(err());
    }
    Ok(v as u64)
}

/// Splits `1.5T`, ` 2 Mbit ` into the leading decimal number and the unit after it (trimmed);
/// `None` when there is no number. Shared by the size, rate and similar parsers.
pub fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Parses a rate: `2Mbit`, `500kbit`, `1Gbit`, `64kbps` (bits per second, powers of 1000), or
/// `1MB/s`, `250kB/s`, `1MiB/s` (bytes per second). Returns bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let err = || format!("{s:?} is not a rate: use 2Mbit, 500kbit, 1MB/s");
    let (n, unit) = split_number(s).ok_or_else(err)?;
    let bits: f64 = match unit.to_ascii_lowercase().as_str() {
        "bit" | "bps" | "bit/s" => 1.0,
        "kbit" | "kbps" | "kbit/s" => 1e3,
        "mbit" | "mbps" | "mbit/s" => 1e6,
        "gbit" | "gbps" | "gbit/s" => 1e9,
        _ => {
            let bytes: f64 = match unit {
                "B/s" => 1.0,
                "kB/s" | "KB/s" => 1e3,
                "MB/s" => 1e6,
                "GB/s" => 1e9,
                "KiB/s" => 1024.0,
                "MiB/s" => 1024.0 * 1024.0,
                "GiB/s" => 1024.0 * 1024.0 * 1024.0,
                _ => return Err(err()),
            };
            8.0 * bytes
        }
    };
    let v = n * bits / 8.0;
    if !v.is_finite() || !(1.0..=1e15).contains(&v) {
        return Err(err());
    }
    Ok(v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("500M"), Ok(500 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("10GB"), Ok(10_000_000_000));
        assert!(
            parse_bytes("-1G").is_err()
                && parse_bytes("1X").is_err()
                && parse_bytes("1e99T").is_err()
        );
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("0.5m"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("1.5x").is_err() && parse_duration("-1.5s").is_err());
        assert!(parse_duration("").is_err() && parse_duration("1 fortnight").is_err());
        assert!(
            parse_duration("99999999999999999999h").is_err(),
            "no overflow panic"
        );
        assert!(
            parse_duration(&"4294967295w".repeat(40000)).is_err(),
            "no overflow panic"
        );
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2Mbit").unwrap(), 250_000);
        assert_eq!(parse_rate("1Mbit").unwrap(), 125_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 62_500);
        assert_eq!(parse_rate("1MB/s").unwrap(), 1_000_000);
        assert_eq!(parse_rate("1MiB/s").unwrap(), 1 << 20);
        assert_eq!(parse_rate("10KiB/s").unwrap(), 10 << 10);
        assert_eq!(parse_rate("1.5 Mbps").unwrap(), 187_500);
        for bad in ["", "fast", "2", "2Mb", "-1Mbit", "0bit"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }
}

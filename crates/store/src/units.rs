//! Sizes and durations as people type them on command lines: `500M`, `10G`, `90s`, `1h30m`,
//! `7d`. Shared by `segstore` and `nvr`.

use std::time::Duration;

/// Parses `90`, `90s`, `10m`, `1h30m`, `7d`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration: use 90s, 10m, 1h30m, 7d");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = rest.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
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
}

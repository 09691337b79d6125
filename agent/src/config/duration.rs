//! Human-friendly durations for environment variables: `500ms`, `1s`, `2m`, `250us`, `1.5s`, or a bare
//! number of seconds.

use std::time::Duration;

/// What [`parse_duration`] accepts, for error messages.
pub const DURATION_SYNTAX: &str =
    "a duration such as 500ms, 1s, 1.5s, 2m, 1h, 1d or 250us (a bare number means seconds)";

/// `"1.5 GiB"` → `(1.5, "GiB")`: a non-negative decimal number and the (trimmed) rest.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Parses a duration; `None` when the text is not one (negative, NaN, unknown unit, overflow).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (value, unit) = number_and_unit(s)?;
    let scale = match unit {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * scale).ok()
}

/// Parses a size: `512MiB`, `2GiB`, `100MB`, `64KiB`, or a bare number of bytes; `None` otherwise.
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    let (value, unit) = number_and_unit(s)?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "pb" => 1e15,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        // The largest retention accepted is 1 PiB: the unit its message names must parse.
        "pib" | "p" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let b = value * scale;
    (0.0..1.8e19).contains(&b).then_some(b as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2 GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("100MB"), Some(100_000_000));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("1PiB"), Some(1 << 50));
        for bad in ["", "lots", "-1GiB", "1e30", "5 parsecs"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "fast", "-1s", "1 parsec", "1e999", "ms", "1..2s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}

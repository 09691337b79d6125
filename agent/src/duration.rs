//! Human-friendly durations for environment variables: `500ms`, `1s`, `2m`, `250us`, `1.5s`, or a bare
//! number of seconds.

use std::time::Duration;

/// What [`parse_duration`] accepts, for error messages.
pub const DURATION_SYNTAX: &str =
    "a duration such as 500ms, 1s, 1.5s, 2m, 1h, 1d or 250us (a bare number means seconds)";

/// Parses a duration; `None` when the text is not one (negative, NaN, unknown unit, overflow).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
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

#[cfg(test)]
mod tests {
    use super::*;

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

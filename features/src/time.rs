//! Timestamps as Unix seconds: parsing the forms CSV files and APIs use, and writing RFC 3339.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// The times Vigil accepts anywhere (CSV rows, labels, the store), Unix seconds: 1970-01-01 to
/// 2999-12-31. A time outside is a unit or typing mistake (milliseconds read as seconds, a stray
/// exponent), not data.
pub const TIME_RANGE: std::ops::RangeInclusive<f64> = 0.0..=32_503_679_999.0;

/// The median interval between consecutive times, seconds: how far apart rows are meant to be (gaps
/// and duplicates do not move a median). `None` when there are fewer than two times or the median is
/// not a positive number (mostly duplicate timestamps): the caller says what to assume instead.
pub fn median_interval(times: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut prev = None;
    let mut dts = Vec::new();
    for t in times {
        if let Some(p) = prev {
            dts.push(t - p);
        }
        prev = Some(t);
    }
    median_of_intervals(dts)
}

/// [`median_interval`] of intervals already taken (rows of several files, each file's own).
pub fn median_of_intervals(mut dts: Vec<f64>) -> Option<f64> {
    dts.sort_unstable_by(f64::total_cmp);
    dts.get(dts.len() / 2)
        .copied()
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// Why `t` is not an acceptable time, if it is not: the one rule every reader of times applies.
pub fn out_of_range(t: f64) -> Option<String> {
    if TIME_RANGE.contains(&t) {
        None
    } else {
        Some(format!(
            "{} is outside 1970 to 2999 (Unix seconds 0 to {:.0})",
            short(t),
            TIME_RANGE.end()
        ))
    }
}

/// A number as a person reads it: plain when it is of a usual size, in scientific notation when it
/// is not (never a 300-digit number).
fn short(t: f64) -> String {
    if t.is_finite() && t.abs() < 1e15 {
        format!("{t}")
    } else {
        format!("{t:e}")
    }
}

/// Parses unix seconds (`1700000000`, `1700000000.5`), RFC 3339 (`2026-11-25T12:00:00Z`,
/// `...+01:00`, fractional seconds) or `YYYY-MM-DD HH:MM:SS[.fff]` taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi) = (num(11..13)?, num(14..16)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let rest = &s[17..];
    let sec_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let sec: f64 = rest[..sec_end].parse().ok()?;
    let zone = &rest[sec_end..];
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z if (z.starts_with('+') || z.starts_with('-')) && z.len() == 6 && &z[3..4] == ":" => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = (z[1..3].parse::<i64>().ok()?, z[4..6].parse::<i64>().ok()?);
            // RFC 3339 offsets are at most 23:59.
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&d)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 - offset) as f64 + sec)
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds as RFC 3339 in UTC with milliseconds (`2026-11-25T12:00:00.250Z`); non-finite
/// values as an empty string.
pub fn format_rfc3339(t: f64) -> String {
    if !t.is_finite() {
        return String::new();
    }
    let ms = (t * 1000.0).round() as i64;
    let (secs, ms) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_ignores_gaps_and_duplicates_and_says_when_it_cannot_tell() {
        // Five-minute rows with a gap, a duplicate and a reset backwards.
        let t = [
            0.0, 300.0, 600.0, 600.0, 900.0, 10_000.0, 10_300.0, 10_600.0, 500.0, 800.0,
        ];
        assert_eq!(median_interval(t), Some(300.0));
        assert_eq!(median_interval([5.0]), None);
        assert_eq!(median_interval(std::iter::empty()), None);
        // Mostly duplicate timestamps: no positive median.
        assert_eq!(median_interval([1.0, 1.0, 1.0, 2.0]), None);
        assert_eq!(median_of_intervals(vec![60.0, 60.0, 3600.0]), Some(60.0));
    }

    #[test]
    fn rfc3339_round_trips() {
        for t in [
            0.0,
            1_795_659_038.164,
            951_782_400.5,
            -86_400.0,
            4_102_444_799.999,
        ] {
            let s = format_rfc3339(t);
            let back = parse_timestamp(&s).unwrap();
            assert!((back - t).abs() < 1e-6, "{t} -> {s} -> {back}");
        }
        assert_eq!(format_rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            parse_timestamp("2026-11-25T13:00:00+01:00"),
            parse_timestamp("2026-11-25T12:00:00Z")
        );
        assert_eq!(parse_timestamp("2026-02-30T00:00:00Z"), None);
        assert_eq!(format_rfc3339(f64::NAN), "");
    }
}

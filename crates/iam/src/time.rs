//! The dates of the `Date*` operators: ISO 8601 (`2024-05-01`, `2024-05-01T12:00:00Z`, with
//! fractions and `±hh:mm` offsets) or seconds since the epoch, as nanoseconds since the epoch.
//! Small enough to write out rather than pull in a date crate.

const NANOS: i128 = 1_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `2024-05-01T12:00:00Z` for seconds since the epoch (the form of `aws:CurrentTime`).
pub fn format_iso8601(epoch_seconds: i64) -> String {
    let (days, secs) = (epoch_seconds.div_euclid(86_400), epoch_seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0, |acc, c| acc * 10 + u32::from(c - b'0')))
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.b.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
}

/// Nanoseconds since the epoch, or `None` when `s` is neither ISO 8601 nor epoch seconds.
pub fn parse_date(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        // 4-digit numbers would be ambiguous with a year, but ISO dates need the `-MM-DD`.
        return s.parse::<i64>().ok().map(|secs| i128::from(secs) * NANOS);
    }
    let mut c = Cursor { b, i: 0 };
    let year = i64::from(c.digits(4)?);
    let month = if c.eat(b'-') { c.digits(2)? } else { return None };
    let day = if c.eat(b'-') { c.digits(2)? } else { return None };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut nanos, mut offset) = (0, 0, 0, 0i128, 0i64);
    if c.eat(b'T') || c.eat(b't') {
        hour = c.digits(2)?;
        if !c.eat(b':') {
            return None;
        }
        minute = c.digits(2)?;
        if c.eat(b':') {
            second = c.digits(2)?;
            if c.eat(b'.') || c.eat(b',') {
                let start = c.i;
                let mut scale = NANOS;
                while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
                    scale /= 10;
                    nanos += i128::from(d - b'0') * scale;
                    c.i += 1;
                }
                if c.i == start {
                    return None;
                }
            }
        }
        match c.peek() {
            None => {}
            Some(b'Z' | b'z') => c.i += 1,
            Some(sign @ (b'+' | b'-')) => {
                c.i += 1;
                let oh = c.digits(2)?;
                c.eat(b':');
                let om = c.digits(2)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = i64::from(oh * 3600 + om * 60);
                offset = if sign == b'+' { off } else { -off };
            }
            Some(_) => return None,
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
    }
    if c.i != b.len() {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    Some(i128::from(secs) * NANOS + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_iso8601_and_epoch() {
        let at = |s: &str| parse_date(s).map(|n| (n / NANOS) as i64);
        assert_eq!(at("1970-01-01"), Some(0));
        assert_eq!(at("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(at("2024-02-29T01:30:00+01:30"), Some(1_709_164_800));
        assert_eq!(at("2024-02-28T22:30-0130"), Some(1_709_164_800));
        assert_eq!(at("1709164800"), Some(1_709_164_800));
        assert_eq!(at("-1"), Some(-1));
        assert_eq!(parse_date("1970-01-01T00:00:00.25Z"), Some(250_000_000));
        for bad in [
            "",
            "-",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "2024-01-01T24:00:00Z",
            "2024-01-01T10",
            "2024-01-01T10:00:00.Z",
            "2024-01-01T10:00:00X",
            "yesterday",
            "2024-01-01T10:00:00+25:00",
            "2024/01/01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_iso8601() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_iso8601(1_709_164_800 + 3661), "2024-02-29T01:01:01Z");
        assert_eq!(format_iso8601(-1), "1969-12-31T23:59:59Z");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(secs in -62_135_596_800i64..253_402_300_799) {
            prop_assert_eq!(parse_date(&format_iso8601(secs)), Some(i128::from(secs) * NANOS));
        }
    }
}

//! RFC 3339 timestamps without a date crate: the log only ever needs UTC
//! with milliseconds out, and dates or RFC 3339 date-times in.

use crate::AuditError;

const MS_PER_DAY: i64 = 86_400_000;

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with
/// milliseconds, e.g. "2026-11-22T06:21:13.123Z".
pub fn format_time(ms: u64) -> String {
    // u64 milliseconds are at most ~2.1e11 days, far inside i64.
    let days = (ms / MS_PER_DAY as u64) as i64;
    let rem = ms % MS_PER_DAY as u64;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Parses a date or an RFC 3339 date-time into milliseconds since the Unix
/// epoch, for command-line filters.
///
/// Accepts "2026-11-22" (midnight UTC), "2026-11-22T06:21:13Z",
/// "2026-11-22T06:21:13.5Z" and offsets such as "2026-11-22T08:21:13+02:00".
/// Fractions finer than a millisecond are truncated. A date-time without a
/// zone is refused rather than guessed, and so are times before 1970.
pub fn parse_time(s: &str) -> Result<u64, AuditError> {
    parse(s.trim()).map_err(|why| {
        AuditError::InvalidTime(format!(
            "{s:?}: {why}; expected a date like 2026-11-22 or an RFC 3339 time like \
             2026-11-22T06:21:13Z or 2026-11-22T06:21:13.5+01:00"
        ))
    })
}

fn parse(s: &str) -> Result<u64, String> {
    let mut p = Cursor {
        b: s.as_bytes(),
        i: 0,
    };
    let year = p.number(4, "year")? as i64;
    p.expect(b'-', "'-' after the year")?;
    let month = p.number(2, "month")?;
    p.expect(b'-', "'-' after the month")?;
    let day = p.number(2, "day")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is out of range"));
    }
    let last_day = days_in_month(year, month);
    if day < 1 || day > last_day {
        return Err(format!(
            "day {day} is out of range for {year:04}-{month:02}, which has {last_day} days"
        ));
    }
    let mut ms = days_from_civil(year, month, day) * MS_PER_DAY;

    if !p.done() {
        // RFC 3339 allows a lowercase 't' and, in its note, a space.
        if !matches!(p.next(), Some(b'T' | b't' | b' ')) {
            return Err("expected 'T' between the date and the time".into());
        }
        let hour = p.number(2, "hour")?;
        p.expect(b':', "':' after the hour")?;
        let minute = p.number(2, "minute")?;
        p.expect(b':', "':' after the minute")?;
        let second = p.number(2, "second")?;
        if hour > 23 {
            return Err(format!("hour {hour} is out of range"));
        }
        if minute > 59 {
            return Err(format!("minute {minute} is out of range"));
        }
        if second > 59 {
            return Err(format!("second {second} is out of range"));
        }
        let mut millis = 0;
        if p.peek() == Some(b'.') {
            p.i += 1;
            let start = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            if p.i == start {
                return Err("expected digits after the decimal point".into());
            }
            for (k, &c) in p.b[start..p.i].iter().take(3).enumerate() {
                millis += i64::from(c - b'0') * [100, 10, 1][k];
            }
        }
        let offset_minutes = match p.next() {
            Some(b'Z' | b'z') => 0,
            Some(sign @ (b'+' | b'-')) => {
                let oh = p.number(2, "offset hours")?;
                p.expect(b':', "':' in the offset")?;
                let om = p.number(2, "offset minutes")?;
                if oh > 23 || om > 59 {
                    return Err(format!("offset {oh:02}:{om:02} is out of range"));
                }
                let total = i64::from(oh * 60 + om);
                if sign == b'+' {
                    total
                } else {
                    -total
                }
            }
            _ => return Err("missing time zone: end with Z or an offset like +01:00".into()),
        };
        if !p.done() {
            return Err("unexpected text after the time zone".into());
        }
        ms += (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1000 + millis
            - offset_minutes * 60_000;
    }
    u64::try_from(ms).map_err(|_| "it is before 1970-01-01T00:00:00Z".to_string())
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<(), String> {
        if self.next() == Some(want) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    /// Exactly `digits` ASCII digits: RFC 3339 fields are fixed-width.
    fn number(&mut self, digits: usize, what: &str) -> Result<u32, String> {
        let field = self
            .b
            .get(self.i..self.i + digits)
            .filter(|f| f.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("expected {digits} digits for the {what}"))?;
        self.i += digits;
        Ok(field.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// The two conversions below count in a calendar whose year starts on
// 1 March, so the leap day is the last day of the year and the month
// lengths from March on follow a fixed pattern (153 days per 5 months);
// 400-year eras of 146097 days make the arithmetic valid for any year.

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468 days separate 0000-03-01 (day 0 of era 0) from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d 2026-11-22T06:21:13Z +%s` says 1795328473.
        assert_eq!(format_time(1_795_328_473_123), "2026-11-22T06:21:13.123Z");
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn civil_conversion_walks_the_calendar_day_by_day() {
        // Compare against a naive walk through every day from 1600 to 2500,
        // which crosses leap years, century exceptions and 400-year leaps.
        let (mut y, mut m, mut d) = (1600i64, 1u32, 1u32);
        let mut n = days_from_civil(1600, 1, 1);
        while y < 2500 {
            assert_eq!(days_from_civil(y, m, d), n, "{y}-{m}-{d}");
            assert_eq!(civil_from_days(n), (y, m, d), "day {n}");
            n += 1;
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn parse_accepts_the_documented_forms() {
        let base = 1_795_328_473_000;
        assert_eq!(parse_time("2026-11-22").unwrap(), 1_795_305_600_000);
        assert_eq!(parse_time("2026-11-22T06:21:13Z").unwrap(), base);
        assert_eq!(parse_time("2026-11-22t06:21:13z").unwrap(), base);
        assert_eq!(parse_time("2026-11-22 06:21:13Z").unwrap(), base);
        assert_eq!(parse_time("2026-11-22T06:21:13.5Z").unwrap(), base + 500);
        assert_eq!(parse_time("2026-11-22T06:21:13.123Z").unwrap(), base + 123);
        assert_eq!(
            parse_time("2026-11-22T06:21:13.123999Z").unwrap(),
            base + 123
        );
        assert_eq!(parse_time("2026-11-22T08:21:13+02:00").unwrap(), base);
        assert_eq!(parse_time("2026-11-22T01:51:13-04:30").unwrap(), base);
        assert_eq!(parse_time("2026-11-22T06:21:13-00:00").unwrap(), base);
        assert_eq!(parse_time(" 2026-11-22T06:21:13Z\n").unwrap(), base);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2024-02-29").unwrap(), 1_709_164_800_000);
        // An offset may carry the instant across midnight and a year end.
        assert_eq!(
            parse_time("2027-01-01T00:30:00+01:00").unwrap(),
            parse_time("2026-12-31T23:30:00Z").unwrap()
        );
    }

    #[test]
    fn format_and_parse_round_trip() {
        let mut ms = 0u64;
        while ms < 7_000_000_000_000 {
            assert_eq!(
                parse_time(&format_time(ms)).unwrap(),
                ms,
                "{}",
                format_time(ms)
            );
            ms += 987_654_321_123 / 1000 + 7;
        }
        assert_eq!(
            parse_time(&format_time(u32::MAX as u64 * 1000)).unwrap(),
            u32::MAX as u64 * 1000
        );
    }

    #[test]
    fn parse_rejects_garbage_with_a_reason() {
        for (bad, why) in [
            ("2026-13-01", "month 13 is out of range"),
            ("2026-00-10", "month 0 is out of range"),
            ("2026-02-29", "day 29 is out of range for 2026-02"),
            ("2026-04-31", "day 31 is out of range"),
            ("yesterday", "expected 4 digits for the year"),
            ("", "expected 4 digits for the year"),
            ("2026-1-01", "expected 2 digits for the month"),
            ("2026/11/22", "expected '-' after the year"),
            ("2026-11-22T06:21:13", "missing time zone"),
            ("2026-11-22T06:21Z", "expected ':' after the minute"),
            ("2026-11-22T24:00:00Z", "hour 24 is out of range"),
            ("2026-11-22T06:60:00Z", "minute 60 is out of range"),
            ("2026-11-22T06:21:60Z", "second 60 is out of range"),
            (
                "2026-11-22T06:21:13.Z",
                "expected digits after the decimal point",
            ),
            ("2026-11-22T06:21:13+0200", "expected ':' in the offset"),
            ("2026-11-22T06:21:13+24:00", "offset 24:00 is out of range"),
            (
                "2026-11-22T06:21:13Zjunk",
                "unexpected text after the time zone",
            ),
            ("2026-11-22X06:21:13Z", "expected 'T'"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("1970-01-01T00:30:00+01:00", "before 1970"),
            ("２026-11-22", "expected 4 digits for the year"),
        ] {
            match parse_time(bad) {
                Err(AuditError::InvalidTime(msg)) => {
                    assert!(msg.contains(why), "{bad:?}: {msg}");
                    assert!(msg.contains("2026-11-22T06:21:13Z"), "{msg}");
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}

//! RFC 3339 timestamps through `jiff`, the one date-time implementation of
//! the workspace: the log writes UTC with milliseconds, and command-line
//! filters read dates or RFC 3339 date-times.

use jiff::civil::Date;
use jiff::{Timestamp, Unit};

use crate::AuditError;

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with
/// milliseconds, e.g. "2026-11-22T06:21:13.123Z". Instants past jiff's
/// range (the end of the year 9999) print as its last millisecond.
pub fn format_time(ms: u64) -> String {
    let t = i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX);
    format!("{t:.3}")
}

/// Parses a date or an RFC 3339 date-time into milliseconds since the Unix
/// epoch, for command-line filters.
///
/// Accepts "2026-11-22" (midnight UTC), "2026-11-22T06:21:13Z",
/// "2026-11-22T06:21:13.5Z" and offsets such as "2026-11-22T08:21:13+02:00"
/// (jiff's ISO 8601 grammar, so "T06:21Z" and basic forms also read).
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
    // A date alone has no time separator; anything longer is a date-time,
    // which must carry its zone (jiff's Timestamp refuses one without).
    let t = if s.contains(['T', 't', ' ']) {
        s.parse::<Timestamp>().map_err(|e| e.to_string())?
    } else {
        s.parse::<Date>()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string())?
    };
    let ms = t
        .round(
            jiff::TimestampRound::new()
                .smallest(Unit::Millisecond)
                .mode(jiff::RoundMode::Trunc),
        )
        .map_err(|e| e.to_string())?
        .as_millisecond();
    u64::try_from(ms).map_err(|_| "it is before 1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d 2026-11-22T06:21:13Z +%s` says 1795328473.
        assert_eq!(format_time(1_795_328_473_123), "2026-11-22T06:21:13.123Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // Past the year 9999 (never a clock reading): jiff's last instant.
        assert_eq!(format_time(u64::MAX), "9999-12-30T22:00:00.999Z");
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
            (
                "2026-13-01",
                "'month' is not in the required range of 1..=12",
            ),
            (
                "2026-00-10",
                "'month' is not in the required range of 1..=12",
            ),
            (
                "2026-02-29",
                "'day' for `2026-02` is invalid, must be in range `1..=28`",
            ),
            (
                "2026-04-31",
                "'day' for `2026-04` is invalid, must be in range `1..=30`",
            ),
            ("yesterday", "four digit integer as year"),
            ("", "expected four digit year"),
            ("2026-1-01", "two digit integer as month"),
            ("2026/11/22", "two digit integer as month"),
            ("2026-11-22T06:21:13", "failed to find offset component"),
            (
                "2026-11-22T24:00:00Z",
                "'hour' is not in the required range of 0..=23",
            ),
            (
                "2026-11-22T06:60:00Z",
                "'minute' is not in the required range of 0..=59",
            ),
            (
                "2026-11-22T06:21:13.Z",
                "did not find any digits after decimal",
            ),
            (
                "2026-11-22T06:21:13Zjunk",
                "unparsed input \"junk\" remains",
            ),
            (
                "2026-11-22X06:21:13Z",
                "unparsed input \"X06:21:13Z\" remains",
            ),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("1969-12-31", "before 1970"),
            ("1970-01-01T00:30:00+01:00", "before 1970"),
            ("２026-11-22", "four digit integer as year"),
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

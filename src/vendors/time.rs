//! Timestamp parsing for the formats vendors use, always to UTC milliseconds.
//!
//! Vendors mix offsets, precisions and layouts (Terra: RFC 3339 with microseconds; Apple Health
//! Auto Export: `2026-11-20 03:14:52 -0800`; WHOOP: `...Z` with millis). The local calendar date
//! is taken from the string itself before any conversion, as Terra's docs require, because
//! converting to UTC first can move a late-evening record to the next day.

use chrono::{DateTime, FixedOffset, NaiveDate};

use super::NormalizeError;

/// RFC 3339 / ISO 8601 with an offset (`2026-11-20T06:49:00.000000-05:00`, `...Z`) to UTC ms.
pub fn rfc3339_to_millis(value: &str) -> Result<i64, NormalizeError> {
    DateTime::parse_from_rfc3339(value)
        .map(|instant| instant.timestamp_millis())
        .map_err(|error| NormalizeError::InvalidValue(format!("timestamp {value:?}: {error}")))
}

/// A Terra time: RFC 3339 with an offset, or — as Terra's schemas allow ("TimeZone info will be
/// provided whenever possible. If absent, the time corresponds to the user's local time",
/// `SleepMetadata`, `DailyMetadata`, `ActivityMetadata`) — a local time without one. Returns UTC
/// ms and whether the offset was known. Without it the local wall-clock time is read *as if it
/// were UTC*: an approximation off by the user's UTC offset (at most ±14 h), which the caller
/// records on the event; the local date stays exact, since it is taken from the string.
pub fn terra_time_to_millis(value: &str) -> Result<(i64, bool), NormalizeError> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(value) {
        return Ok((instant.timestamp_millis(), true));
    }
    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|local| (local.and_utc().timestamp_millis(), false))
        .map_err(|error| NormalizeError::InvalidValue(format!("timestamp {value:?}: {error}")))
}

/// Health Auto Export's `yyyy-MM-dd HH:mm:ss Z` (`2026-11-20 03:14:52 -0800`) to UTC ms.
pub fn hae_to_millis(value: &str) -> Result<i64, NormalizeError> {
    DateTime::<FixedOffset>::parse_from_str(value, "%Y-%m-%d %H:%M:%S %z")
        .map(|instant| instant.timestamp_millis())
        .map_err(|error| NormalizeError::InvalidValue(format!("timestamp {value:?}: {error}")))
}

/// The calendar date written at the start of a timestamp string (`2026-11-20...` ->
/// `2026-11-20`), validated, without timezone conversion.
pub fn date_part(value: &str) -> Result<String, NormalizeError> {
    let date = value.get(..10).unwrap_or(value);
    // Validated, then returned as written (it is already YYYY-MM-DD: no formatting needed).
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map(|_| date.to_owned())
        .map_err(|error| NormalizeError::InvalidValue(format!("date {value:?}: {error}")))
}

/// Midnight UTC of a `YYYY-MM-DD` date, in ms: the instant used for day-level records that carry
/// only a date.
pub fn date_to_millis(value: &str) -> Result<i64, NormalizeError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|date| date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis())
        .map_err(|error| NormalizeError::InvalidValue(format!("date {value:?}: {error}")))
}

/// The calendar date of an RFC 3339 instant as seen at a fixed offset (`-05:00`). For vendors that
/// send UTC times plus a separate offset (WHOOP `timezone_offset`, vendors.md §9), where the date
/// part of the UTC string would be the wrong day for evening records.
pub fn local_date_at_offset(instant: &str, offset: &str) -> Result<String, NormalizeError> {
    let offset: FixedOffset = offset.parse().map_err(|error| NormalizeError::InvalidValue(format!("offset {offset:?}: {error}")))?;
    DateTime::parse_from_rfc3339(instant)
        .map(|parsed| parsed.with_timezone(&offset).format("%Y-%m-%d").to_string())
        .map_err(|error| NormalizeError::InvalidValue(format!("timestamp {instant:?}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terra_microseconds_with_offset() {
        // 2026-11-20T06:49:00-05:00 == 2026-11-20T11:49:00Z
        assert_eq!(rfc3339_to_millis("2026-11-20T06:49:00.000000-05:00").unwrap(), 1_795_175_340_000);
    }

    #[test]
    fn terra_local_times_without_an_offset_are_read_as_utc_and_flagged() {
        assert_eq!(terra_time_to_millis("2026-11-20T06:49:00.000000-05:00").unwrap(), (1_795_175_340_000, true));
        assert_eq!(terra_time_to_millis("2026-11-20T06:49:00.000000").unwrap(), (1_795_157_340_000, false));
        assert_eq!(terra_time_to_millis("2026-11-20T06:49:00").unwrap(), (1_795_157_340_000, false));
        assert!(terra_time_to_millis("2026-11-20").is_err());
        assert_eq!(date_part("2026-11-20T23:49:00.000000").unwrap(), "2026-11-20");
    }

    #[test]
    fn hae_offset_without_colon() {
        // 2026-11-20 03:14:52 -0800 == 2026-11-20T11:14:52Z
        assert_eq!(hae_to_millis("2026-11-20 03:14:52 -0800").unwrap(), 1_795_173_292_000);
        assert_eq!(hae_to_millis("2026-11-20 03:14:52 -0800").unwrap(), rfc3339_to_millis("2026-11-20T11:14:52Z").unwrap());
    }

    #[test]
    fn date_part_ignores_the_offset() {
        assert_eq!(date_part("2026-11-19T23:08:30.000000-05:00").unwrap(), "2026-11-19");
        assert!(date_part("yesterday").is_err());
    }

    #[test]
    fn garbage_is_an_invalid_value() {
        assert!(matches!(rfc3339_to_millis("not a time"), Err(NormalizeError::InvalidValue(_))));
        assert!(matches!(hae_to_millis("2026-11-20T03:14:52Z"), Err(NormalizeError::InvalidValue(_))));
    }

    #[test]
    fn whoop_evening_utc_instant_is_the_previous_local_day() {
        // 04:11Z is 23:11 the evening before at -05:00.
        assert_eq!(local_date_at_offset("2026-11-20T04:11:02.390Z", "-05:00").unwrap(), "2026-11-19");
        assert_eq!(local_date_at_offset("2026-11-20T11:46:49.811Z", "-05:00").unwrap(), "2026-11-20");
        assert!(matches!(local_date_at_offset("2026-11-20T04:11:02Z", "EST"), Err(NormalizeError::InvalidValue(_))));
    }
}

//! Content time and wall-clock helpers shared by every layer (a leaf: depends on nothing in the
//! crate). Content time is microseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock now in microseconds since the epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// RFC 3339 with milliseconds for a content timestamp in µs; empty if out of range.
pub fn rfc3339(micros: i64) -> String {
    match jiff::Timestamp::from_microsecond(micros) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => String::new(),
    }
}

/// An RFC 3339 time (the `at` query parameter), in µs since the epoch.
pub fn parse_time(v: &str) -> Result<i64, String> {
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .map_err(|_| "`at` must be an RFC 3339 time such as 2026-11-26T09:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_the_millisecond() {
        let t = parse_time("2026-11-26T09:00:00.250+01:00").unwrap();
        assert_eq!(rfc3339(t), "2026-11-26T08:00:00.250Z");
        assert!(parse_time("yesterday").is_err());
        assert_eq!(rfc3339(i64::MAX), "");
    }
}

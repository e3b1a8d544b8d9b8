//! Content time and wall-clock helpers shared by every layer (a leaf: depends on nothing in the
//! crate).
//!
//! Content time is kept exactly as samples since the Unix epoch at the source's rate: a source's
//! clock starts on a whole sample of that grid and every frame boundary is a whole sample. Chunks
//! carry it as microseconds rounded down ([`micros_of_sample`]); because a microsecond is shorter
//! than any sample (rates below 1 MHz), the exact sample is recovered from them with
//! [`sample_of_micros`], so the wire keeps its microsecond fields and HLS timestamps stay exact.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock now in microseconds since the epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The content time (µs, rounded down) of sample `sample` at `rate` Hz.
pub fn micros_of_sample(sample: i64, rate: u32) -> i64 {
    let rate = i128::from(rate.max(1));
    (i128::from(sample) * 1_000_000).div_euclid(rate) as i64
}

/// The sample whose content time [`micros_of_sample`] gives `micros`, or the first one after it if
/// no sample does: the inverse on sample boundaries, and never earlier than `micros`.
pub fn sample_of_micros(micros: i64, rate: u32) -> i64 {
    let rate = i128::from(rate.max(1));
    // ceil(micros · rate / 10⁶)
    let n = i128::from(micros) * rate;
    (n.div_euclid(1_000_000) + i128::from(n.rem_euclid(1_000_000) != 0)) as i64
}

/// The 33-bit, 90 kHz MPEG timestamp of sample `sample` at `rate` Hz, rounded to the nearest tick:
/// at rates up to 90 kHz a tick is shorter than a sample, so converting it back with rounding (as demuxers do)
/// lands on that sample, and consecutive segments' timestamps are exactly their samples apart.
pub fn pts90k_of_sample(sample: i64, rate: u32) -> u64 {
    let rate = i128::from(rate.max(1));
    let ticks = (i128::from(sample) * 180_000 + rate).div_euclid(2 * rate);
    ticks.rem_euclid(1 << 33) as u64
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

    #[test]
    fn samples_survive_the_microsecond_wire_and_90k_ticks() {
        // Rates above 90 kHz (AAC only) have samples shorter than a tick and cannot be exact.
        for rate in [8000u32, 11025, 22050, 24000, 32000, 44100, 48000, 64000] {
            let base = 1_764_000_000 * i64::from(rate);
            for s in (base..base + 50_000).step_by(97) {
                let us = micros_of_sample(s, rate);
                assert_eq!(sample_of_micros(us, rate), s, "rate {rate}");
                assert!(us <= micros_of_sample(s + 1, rate));
                // Rounded back to samples (as a demuxer does), a tick count lands on its sample,
                // also after the 33-bit wrap once the distance between two is taken.
                let back = |ticks: u64| {
                    (i128::from(ticks) * i128::from(rate) * 2 + 90_000).div_euclid(180_000)
                };
                let small = s - base;
                assert_eq!(back(pts90k_of_sample(small, rate)), i128::from(small));
                let d = pts90k_of_sample(s + 1152, rate).wrapping_sub(pts90k_of_sample(s, rate))
                    & ((1 << 33) - 1);
                assert!((back(d) - 1152).abs() <= 1, "rate {rate}");
            }
        }
        // Not on a sample: the next sample.
        assert_eq!(sample_of_micros(1, 44100), 1);
        assert_eq!(sample_of_micros(0, 44100), 0);
        assert_eq!(sample_of_micros(-1, 44100), 0);
    }
}

//! Sums the sessions' own counts into the HLS mode's JSON report (all sessions, then per
//! profile).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::session::Stats;

/// The `p` quantile (0..=1) of `v` in milliseconds (sorts it); NaN for none (JSON null).
pub fn quantile(v: &mut [f32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(f32::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i])
}

fn ttfb(mut v: Vec<f32>) -> Value {
    json!({
        "p50": quantile(&mut v, 0.50),
        "p99": quantile(&mut v, 0.99),
        "max": quantile(&mut v, 1.0),
    })
}

/// The report of a group of sessions; `window_seconds` is the length of the measurement window.
pub fn summary(sessions: &[&Stats], window_seconds: f64) -> Value {
    let sum = |f: &dyn Fn(&Stats) -> u64| sessions.iter().map(|s| f(s)).sum::<u64>();
    let session_seconds: f64 = sessions.iter().map(|s| s.seconds).sum();
    let per_session_second = |bytes: u64| {
        if session_seconds > 0.0 {
            bytes as f64 / session_seconds
        } else {
            0.0
        }
    };
    let mut errors = BTreeMap::<String, u64>::new();
    let mut reasons = BTreeMap::<String, u64>::new();
    for s in sessions {
        for (k, v) in &s.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        if let Some(r) = &s.failed {
            *reasons.entry(r.clone()).or_default() += 1;
        }
    }
    let failed = sessions.iter().filter(|s| s.failed.is_some()).count();
    let playlist_bytes = sum(&|s| s.playlist_bytes);
    let segment_bytes = sum(&|s| s.segment_bytes);
    let ttfbs = |f: &dyn Fn(&Stats) -> &Vec<f32>| {
        sessions
            .iter()
            .flat_map(|s| f(s).iter().copied())
            .collect::<Vec<f32>>()
    };
    let window_kbps = |bytes: u64| {
        let session_seconds = window_seconds * sessions.len() as f64;
        if session_seconds > 0.0 {
            bytes as f64 * 8.0 / 1000.0 / session_seconds
        } else {
            0.0
        }
    };
    let window_playlist = sum(&|s| s.window_playlist_bytes);
    let window_segment = sum(&|s| s.window_segment_bytes);
    json!({
        "sessions": sessions.len(),
        "ok": sessions.len() - failed,
        "failed": failed,
        "failure_reasons": reasons,
        "stalls": sum(&|s| u64::from(s.playback.stalls)),
        "stalled_sessions": sessions.iter().filter(|s| s.playback.stalls > 0).count(),
        "stalled_seconds": sessions.iter().map(|s| s.playback.stalled_for).sum::<f64>(),
        "min_buffer_seconds": sessions
            .iter()
            .filter_map(|s| s.min_buffer)
            .min_by(f64::total_cmp),
        "session_seconds": session_seconds,
        "playlist": {
            "requests": sum(&|s| s.playlist_requests),
            "not_modified": sum(&|s| s.playlist_not_modified),
            "bytes": playlist_bytes,
            "bytes_per_session_second": per_session_second(playlist_bytes),
            "ttfb_ms": ttfb(ttfbs(&|s| &s.playlist_ttfb_ms)),
        },
        "segment": {
            "requests": sum(&|s| s.segment_requests),
            "bytes": segment_bytes,
            "bytes_per_session_second": per_session_second(segment_bytes),
            "ttfb_ms": ttfb(ttfbs(&|s| &s.segment_ttfb_ms)),
        },
        "kbps_per_session": per_session_second(playlist_bytes + segment_bytes) * 8.0 / 1000.0,
        "window": {
            "seconds": window_seconds,
            "playlist_bytes": window_playlist,
            "segment_bytes": window_segment,
            "playlist_kbps_per_session": window_kbps(window_playlist),
            "segment_kbps_per_session": window_kbps(window_segment),
            "kbps_per_session": window_kbps(window_playlist + window_segment),
        },
        "errors": errors,
        "reconnects": sum(&|s| s.reconnects),
        "missed_segments": sum(&|s| s.missed_segments),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 1.0), 5.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }
}

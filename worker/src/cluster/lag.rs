//! How far each slave is behind the master, and when that makes it unsynced (sans-IO).
//!
//! A slave's lag is the content time between the master's newest chunk and the newest chunk the
//! slave last reported. A slave that stops reporting (stopped, partitioned) keeps its last
//! report, so its lag grows with the master's audio and it turns unsynced on its own; one
//! silent slave never holds up the check of the others.
//!
//! Reports are up to [`crate::cluster::STATS_INTERVAL`] old, so a burst of audio into the master
//! (a source faster than real time, chunks recovered at start) looks like every slave falling
//! behind until their next report. A slave is unsynced only once its lag has stayed at or over
//! the threshold for [`CONFIRM`], longer than a report takes to arrive.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::core::rewind::RewindBuffer;

/// The original's `slave_unsynced` threshold.
pub const UNSYNCED_AT: Duration = Duration::from_secs(10);
/// How long the lag must stay over [`UNSYNCED_AT`]: two stats reports.
pub const CONFIRM: Duration = Duration::from_secs(4);

/// The lag of a slave whose newest chunk is `slave_seq`, against the master's `buffer`.
pub fn lag(buffer: &RewindBuffer, slave_seq: Option<u64>) -> Duration {
    let Some(tip) = buffer.last() else {
        return Duration::ZERO;
    };
    let slave_end = match slave_seq {
        // Holding nothing yet: as far behind as the whole buffer.
        None => buffer.first().map_or(tip.end(), |c| c.ts),
        Some(seq) if seq >= tip.seq => tip.end(),
        Some(seq) => match buffer.get_from(seq) {
            Some(c) if c.seq == seq => c.end(),
            // Inside a gap: the slave ends where the next chunk begins.
            Some(c) if buffer.first().is_some_and(|f| f.seq < seq) => c.ts,
            // Older than anything the master holds.
            _ => buffer.first().map_or(tip.end(), |c| c.ts),
        },
    };
    Duration::from_micros((tip.end() - slave_end).max(0) as u64)
}

/// A slave crossing the threshold, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Unsynced { replica: String, lag: Duration },
    Synced { replica: String, lag: Duration },
}

/// Where a (slave, stream) pair stands, when it is not simply synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Over the threshold since then, not yet for [`CONFIRM`].
    Behind(Instant),
    Unsynced,
}

/// Which (slave, stream) pairs are behind or unsynced now.
#[derive(Debug, Default)]
pub struct Tracker {
    states: BTreeMap<(String, String), State>,
}

impl Tracker {
    pub fn observe(
        &mut self,
        replica: &str,
        stream: &str,
        lag: Duration,
        now: Instant,
    ) -> Option<Transition> {
        let key = (replica.to_string(), stream.to_string());
        let state = self.states.get(&key).copied();
        if lag < UNSYNCED_AT {
            self.states.remove(&key);
            return (state == Some(State::Unsynced)).then(|| Transition::Synced {
                replica: replica.to_string(),
                lag,
            });
        }
        match state {
            None => {
                self.states.insert(key, State::Behind(now));
                None
            }
            Some(State::Behind(since)) if now.saturating_duration_since(since) >= CONFIRM => {
                self.states.insert(key, State::Unsynced);
                Some(Transition::Unsynced {
                    replica: replica.to_string(),
                    lag,
                })
            }
            Some(_) => None,
        }
    }

    /// Forget a slave that is gone (or a stream that was removed): no event, it is not synced.
    pub fn forget(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.states.retain(|(r, s), _| keep(r, s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chunk::test_chunk;

    /// Chunks of half a second, back to back by seq.
    fn buffer(seqs: &[u64]) -> RewindBuffer {
        let mut b = RewindBuffer::new(Duration::from_secs(3600));
        for &seq in seqs {
            b.push(test_chunk(seq, seq as i64 * 500_000, ""));
        }
        b
    }

    #[test]
    fn lag_is_content_time_behind_the_tip() {
        let b = buffer(&[1, 2, 3, 4, 5, 8, 9, 10]);
        assert_eq!(lag(&b, Some(10)), Duration::ZERO);
        assert_eq!(lag(&b, Some(12)), Duration::ZERO);
        assert_eq!(lag(&b, Some(9)), Duration::from_millis(500));
        assert_eq!(lag(&b, Some(4)), Duration::from_secs(3));
        // In the gap 6..=7: it ends where chunk 8 begins.
        assert_eq!(lag(&b, Some(6)), Duration::from_millis(1500));
        assert_eq!(lag(&b, None), Duration::from_millis(5000));
        assert_eq!(lag(&buffer(&[]), Some(3)), Duration::ZERO);
    }

    #[test]
    fn unsynced_at_10s_for_4s_synced_below() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let secs = Duration::from_secs;
        assert_eq!(t.observe("a", "live", secs(9), at(0)), None);
        // Over the threshold, but not yet for long enough.
        assert_eq!(t.observe("a", "live", secs(10), at(1)), None);
        assert_eq!(t.observe("a", "live", secs(12), at(4)), None);
        assert!(matches!(
            t.observe("a", "live", secs(13), at(5)),
            Some(Transition::Unsynced { .. })
        ));
        assert_eq!(t.observe("a", "live", secs(30), at(6)), None);
        // Another slave is judged on its own.
        assert_eq!(t.observe("b", "live", secs(1), at(6)), None);
        assert!(matches!(
            t.observe("a", "live", secs(2), at(7)),
            Some(Transition::Synced { .. })
        ));
        t.observe("b", "live", secs(60), at(8));
        assert!(matches!(
            t.observe("b", "live", secs(60), at(12)),
            Some(Transition::Unsynced { .. })
        ));
        t.forget(|r, _| r != "b");
        assert_eq!(t.observe("b", "live", secs(60), at(13)), None);
    }

    #[test]
    fn a_burst_into_the_master_is_not_a_slave_falling_behind() {
        // The master took 10 s of audio at once; the slave's next report shows it kept up.
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(t.observe("a", "live", Duration::from_secs(10), at(0)), None);
        assert_eq!(
            t.observe("a", "live", Duration::from_secs(10), at(1000)),
            None
        );
        assert_eq!(t.observe("a", "live", Duration::ZERO, at(2000)), None);
        // And a later lag starts its own count.
        assert_eq!(
            t.observe("a", "live", Duration::from_secs(11), at(3000)),
            None
        );
        assert_eq!(
            t.observe("a", "live", Duration::from_secs(11), at(6000)),
            None
        );
    }
}

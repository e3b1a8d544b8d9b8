//! How far each slave is behind the master, and when that makes it unsynced (sans-IO).
//!
//! A slave's lag is the content time between the master's newest chunk and the newest chunk the
//! slave last reported. A slave that stops reporting (stopped, partitioned) keeps its last
//! report, so its lag grows with the master's audio and it turns unsynced on its own; one
//! silent slave never holds up the check of the others.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::rewind::RewindBuffer;

/// The original's `slave_unsynced` threshold.
pub const UNSYNCED_AT: Duration = Duration::from_secs(10);

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

/// Which (slave, stream) pairs are unsynced now.
#[derive(Debug, Default)]
pub struct Tracker {
    unsynced: BTreeMap<(String, String), ()>,
}

impl Tracker {
    pub fn observe(&mut self, replica: &str, stream: &str, lag: Duration) -> Option<Transition> {
        let key = (replica.to_string(), stream.to_string());
        let was = self.unsynced.contains_key(&key);
        let is = lag >= UNSYNCED_AT;
        match (was, is) {
            (false, true) => {
                self.unsynced.insert(key, ());
                Some(Transition::Unsynced {
                    replica: replica.to_string(),
                    lag,
                })
            }
            (true, false) => {
                self.unsynced.remove(&key);
                Some(Transition::Synced {
                    replica: replica.to_string(),
                    lag,
                })
            }
            _ => None,
        }
    }

    /// Forget a slave that is gone (or a stream that was removed): no event, it is not synced.
    pub fn forget(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.unsynced.retain(|(r, s), _| keep(r, s));
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
    fn unsynced_at_10s_synced_below() {
        let mut t = Tracker::default();
        assert_eq!(t.observe("a", "live", Duration::from_secs(9)), None);
        assert!(matches!(
            t.observe("a", "live", Duration::from_secs(10)),
            Some(Transition::Unsynced { .. })
        ));
        assert_eq!(t.observe("a", "live", Duration::from_secs(30)), None);
        // Another slave is judged on its own.
        assert_eq!(t.observe("b", "live", Duration::from_secs(1)), None);
        assert!(matches!(
            t.observe("a", "live", Duration::from_secs(2)),
            Some(Transition::Synced { .. })
        ));
        t.observe("b", "live", Duration::from_secs(60));
        t.forget(|r, _| r != "b");
        assert!(matches!(
            t.observe("b", "live", Duration::from_secs(60)),
            Some(Transition::Unsynced { .. })
        ));
    }
}

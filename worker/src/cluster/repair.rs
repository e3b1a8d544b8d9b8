//! Which chunks a slave should fetch from the master (sans-IO).
//!
//! A slave's buffer gets gaps in `seq` when NATS loses messages (an outage, a slow
//! subscription, the moment between subscribing and loading the snapshot). Each gap is asked
//! for by range over HTTP. Whatever the master does not return is a *hole*: the master never
//! had it (after a master restart `seq` jumps to the wall clock, leaving a huge empty range) or
//! has evicted it. Holes are remembered so they are not asked for again and again.

use std::time::{Duration, Instant};

/// An inclusive range of sequence numbers.
pub type Range = (u64, u64);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Sorted, disjoint, non-adjacent.
    holes: Vec<Range>,
}

impl Repair {
    #[cfg(test)]
    pub fn holes(&self) -> &[Range] {
        &self.holes
    }

    /// Ranges worth asking for: `gaps` (sorted, as [`crate::core::rewind::RewindBuffer::gaps`]) minus
    /// the known holes, at most `max` of them, oldest first.
    pub fn plan(&self, gaps: &[Range], max: usize) -> Vec<Range> {
        let mut out = vec![];
        for &(from, to) in gaps {
            let mut start = from;
            for &(h_from, h_to) in &self.holes {
                if h_to < start {
                    continue;
                }
                if h_from > to {
                    break;
                }
                if h_from > start {
                    out.push((start, h_from - 1));
                }
                start = match h_to.checked_add(1) {
                    Some(s) => s,
                    None => return truncate(out, max),
                };
                if start > to {
                    break;
                }
            }
            if start <= to {
                out.push((start, to));
            }
            if out.len() >= max {
                break;
            }
        }
        truncate(out, max)
    }

    /// The master answered a request for `asked` with the chunks `got` (sorted): every other
    /// seq of the range is a hole.
    pub fn record(&mut self, asked: Range, got: &[u64]) {
        let (from, to) = asked;
        let mut next = from;
        for &seq in got.iter().filter(|s| (from..=to).contains(*s)) {
            if seq > next {
                self.add_hole((next, seq - 1));
            }
            next = match seq.checked_add(1) {
                Some(n) => n,
                None => return,
            };
        }
        if next <= to {
            self.add_hole((next, to));
        }
    }

    /// Forget holes entirely below `first` (the buffer's oldest chunk): they can no longer be
    /// gaps, and keeping them would grow without bound.
    pub fn forget_before(&mut self, first: u64) {
        self.holes.retain(|&(_, to)| to >= first);
    }

    fn add_hole(&mut self, (from, to): Range) {
        if from > to {
            return;
        }
        self.holes.push((from, to));
        self.holes.sort_unstable();
        let mut merged: Vec<Range> = Vec::with_capacity(self.holes.len());
        for &(f, t) in &self.holes {
            match merged.last_mut() {
                Some(last) if f <= last.1.saturating_add(1) => last.1 = last.1.max(t),
                _ => merged.push((f, t)),
            }
        }
        self.holes = merged;
    }
}

fn truncate(mut v: Vec<Range>, max: usize) -> Vec<Range> {
    v.truncate(max);
    v
}

/// When to ask the master for chunks newer than the newest one held: only while live chunks
/// stop arriving over NATS (NATS down, or the master cannot publish), and then not more often
/// than `every`. An idle source costs one small request per `every`.
#[derive(Debug, Clone)]
pub struct Tail {
    last_arrival: Instant,
    last_poll: Option<Instant>,
}

impl Tail {
    pub fn new(now: Instant) -> Tail {
        Tail {
            last_arrival: now,
            last_poll: None,
        }
    }

    /// A chunk arrived over NATS.
    pub fn arrived(&mut self, now: Instant) {
        self.last_arrival = now;
    }

    /// Whether to poll now; records the poll when it says yes.
    pub fn due(&mut self, now: Instant, stale: Duration, every: Duration) -> bool {
        let quiet = now.saturating_duration_since(self.last_arrival) >= stale;
        let rested = self
            .last_poll
            .is_none_or(|p| now.saturating_duration_since(p) >= every);
        if quiet && rested {
            self.last_poll = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_gaps_until_the_master_says_they_are_holes() {
        let mut r = Repair::default();
        let gaps = vec![(3, 4), (7, 8)];
        assert_eq!(r.plan(&gaps, 10), gaps);
        // The master had 7 but not 8; 3 and 4 both.
        r.record((7, 8), &[7]);
        r.record((3, 4), &[3, 4]);
        assert_eq!(r.holes(), &[(8, 8)]);
        // After inserting what came back, only the hole remains a gap: nothing to ask.
        assert_eq!(r.plan(&[(8, 8)], 10), vec![]);
    }

    #[test]
    fn a_master_restart_jump_is_asked_for_once() {
        let mut r = Repair::default();
        let old_last = 1_700_000_000_000u64 + 500;
        let new_first = 1_700_000_900_000u64;
        let gap = (old_last + 1, new_first - 1);
        assert_eq!(r.plan(&[gap], 10), vec![gap]);
        // The restarted master pulled two of them from another slave.
        r.record(gap, &[old_last + 1, old_last + 2]);
        assert_eq!(r.plan(&[(old_last + 3, new_first - 1)], 10), vec![]);
        assert_eq!(r.holes(), &[(old_last + 3, new_first - 1)]);
    }

    #[test]
    fn holes_split_gaps_and_merge() {
        let mut r = Repair::default();
        r.record((10, 20), &[10, 11, 15, 20]);
        assert_eq!(r.holes(), &[(12, 14), (16, 19)]);
        assert_eq!(r.plan(&[(5, 30)], 10), vec![(5, 11), (15, 15), (20, 30)]);
        assert_eq!(r.plan(&[(5, 30)], 2), vec![(5, 11), (15, 15)]);
        r.record((15, 15), &[]);
        assert_eq!(r.holes(), &[(12, 19)]);
        r.forget_before(13);
        assert_eq!(r.holes(), &[(12, 19)]);
        r.forget_before(20);
        assert_eq!(r.holes(), &[]);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut r = Repair::default();
        r.record((u64::MAX - 1, u64::MAX), &[u64::MAX]);
        assert_eq!(r.holes(), &[(u64::MAX - 1, u64::MAX - 1)]);
        r.record((0, u64::MAX), &[]);
        assert_eq!(r.plan(&[(0, u64::MAX)], 10), vec![]);
        // Chunks outside the asked range are ignored.
        let mut r = Repair::default();
        r.record((5, 6), &[1, 6, 9]);
        assert_eq!(r.holes(), &[(5, 5)]);
    }

    #[test]
    fn tail_polls_only_while_nats_is_quiet() {
        let t0 = Instant::now();
        let mut tail = Tail::new(t0);
        let stale = Duration::from_secs(2);
        let every = Duration::from_secs(1);
        assert!(!tail.due(t0 + Duration::from_secs(1), stale, every));
        assert!(tail.due(t0 + Duration::from_secs(2), stale, every));
        assert!(!tail.due(t0 + Duration::from_millis(2500), stale, every));
        assert!(tail.due(t0 + Duration::from_secs(3), stale, every));
        tail.arrived(t0 + Duration::from_secs(3));
        assert!(!tail.due(t0 + Duration::from_secs(4), stale, every));
    }
}

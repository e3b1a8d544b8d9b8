//! What every retry loop shares (a leaf: depends on nothing in the crate): the backoff between
//! attempts, and logging an error that repeats without flooding the log.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Exponential backoff with jitter, the one every retry loop uses (accepting connections, the
/// fallback relay, Redis, snapshot loads, NATS reconnects): each delay doubles from `min` up to
/// `max`, plus a random part of up to the same again. Without the jitter, peers that failed
/// together retry together: every slave would reload hours of audio in lockstep after a master
/// restart.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
            max,
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // The builder has no attempt limit: the iterator never ends.
        self.delays.next().unwrap_or(self.max)
    }

    /// The last attempt succeeded: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }

    /// The delay before attempt `attempt` (1 = the first retry), for callers that count attempts
    /// themselves (async-nats' reconnect callback).
    pub fn nth_delay(min: Duration, max: Duration, attempt: usize) -> Duration {
        // Doubling reaches any cap we use well within 32 steps; later attempts wait as long.
        let mut b = Backoff::new(min, max);
        (1..attempt.clamp(1, 32)).for_each(|_| {
            b.next_delay();
        });
        b.next_delay()
    }
}

/// Logs an error that repeats (a peer down, a wrong token) when it starts, when its kind
/// changes and then every 30 s, instead of on every retry.
#[derive(Debug, Default)]
pub struct Repeated {
    last: Option<(String, Instant)>,
}

impl Repeated {
    /// Whether to log `kind` now.
    pub fn should_log(&mut self, kind: &str) -> bool {
        let due = match &self.last {
            Some((k, at)) => k != kind || at.elapsed() >= Duration::from_secs(30),
            None => true,
        };
        if due {
            self.last = Some((kind.to_string(), Instant::now()));
        }
        due
    }

    /// The error stopped; true if it had been logged (so "recovered" is worth saying).
    pub fn clear(&mut self) -> bool {
        self.last.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut b = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = (min * 2u32.pow(i as u32)).min(max);
            assert!(
                *d >= base && *d <= base * 2,
                "attempt {i}: {d:?} for base {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= min * 2);
        assert!(Backoff::nth_delay(min, max, 1) <= min * 2);
        assert!(Backoff::nth_delay(min, max, 1_000_000) >= max);
    }

    #[test]
    fn peers_that_fail_together_do_not_retry_together() {
        let (min, max) = (Duration::from_millis(250), Duration::from_secs(10));
        let first: Vec<Duration> = (0..20)
            .map(|_| Backoff::new(min, max).next_delay())
            .collect();
        let spread = first
            .iter()
            .max()
            .unwrap()
            .saturating_sub(*first.iter().min().unwrap());
        assert!(spread > Duration::from_millis(50), "no jitter: {first:?}");
    }

    #[test]
    fn repeated_errors_are_logged_once_per_kind() {
        let mut r = Repeated::default();
        assert!(r.should_log("down"));
        assert!(!r.should_log("down"));
        assert!(r.should_log("unauthorized"));
        assert!(r.clear());
        assert!(!r.clear());
        assert!(r.should_log("down"));
    }
}

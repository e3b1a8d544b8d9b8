//! `stream.listeners.changed`: the stream's listener count, debounced so a station's webhook
//! sees the audience move, not every connect. Each node counts what it knows: a slave its own
//! listeners (its events reach the master over NATS), a master the whole cluster's.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::events::EventKind;
use crate::stream::Stream;

/// At most one event per stream this often.
pub const DEBOUNCE: Duration = Duration::from_secs(10);

/// Pure: which counts to report, at most one per `every`, the latest one when it differs from
/// the last reported.
#[derive(Debug, Clone)]
pub struct Debounce {
    every: Duration,
    reported: u64,
    last_report: Option<Instant>,
}

impl Debounce {
    pub fn new(every: Duration, initial: u64) -> Debounce {
        Debounce {
            every,
            reported: initial,
            last_report: None,
        }
    }

    /// `Some((count, previous))` when `count` is to be reported now.
    pub fn observe(&mut self, count: u64, now: Instant) -> Option<(u64, u64)> {
        if count == self.reported
            || self
                .last_report
                .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return None;
        }
        let previous = self.reported;
        self.reported = count;
        self.last_report = Some(now);
        Some((count, previous))
    }
}

/// Watches one stream's audience, as `count` tells it, until the stream is removed. Runs on
/// every role; the master's count is the cluster's total, a slave's its own.
pub async fn watch(stream: Arc<Stream>, count: impl Fn() -> u64) {
    let mut debounce = Debounce::new(DEBOUNCE, count());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stream.removed.cancelled() => return,
        }
        if let Some((listeners, previous)) = debounce.observe(count(), Instant::now()) {
            stream.emit(EventKind::StreamListenersChanged {
                listeners,
                previous,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reports_changes_at_most_every_10s_with_the_latest_count() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut d = Debounce::new(DEBOUNCE, 0);
        assert_eq!(d.observe(0, at(0)), None);
        assert_eq!(d.observe(1, at(1000)), Some((1, 0)));
        // A burst of connects within the window is reported once, as its latest count.
        assert_eq!(d.observe(5, at(2000)), None);
        assert_eq!(d.observe(9, at(10_999)), None);
        assert_eq!(d.observe(9, at(11_000)), Some((9, 1)));
        // Back to the reported count: nothing to say.
        assert_eq!(d.observe(12, at(12_000)), None);
        assert_eq!(d.observe(9, at(30_000)), None);
        assert_eq!(d.observe(3, at(30_500)), Some((3, 9)));
    }
}

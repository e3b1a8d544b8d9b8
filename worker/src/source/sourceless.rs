//! "No source" alarms: a monitored stream without any source for 30 s raises
//! `stream.sourceless.started`; 30 s with a source again raises `stream.sourceless.ended`.
//!
//! The original fired and cleared on the same 30 s, but a stream that started without a source
//! never alarmed, and a flapping encoder raised one alarm per reconnect. Here the state starts
//! as "has a source" (so a stream created empty alarms after 30 s), and only a full 30 s of the
//! opposite state changes it, so a reconnect within 30 s raises nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::events::EventKind;
use crate::stream::Stream;
use crate::time::{now_micros, rfc3339};

/// How long a stream must be without (or again with) a source before the state changes.
pub const HOLD: Duration = Duration::from_secs(30);

/// The pure state machine, fed with observations and their times.
#[derive(Debug, Clone)]
pub struct Sourceless {
    hold: Duration,
    alarmed: bool,
    /// Since when the observations have contradicted the current state.
    contrary_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Without a source since `since` (that long ago).
    Started { for_: Duration },
    /// A source again; the stream was without one for `lasted`.
    Ended { lasted: Duration },
}

impl Sourceless {
    pub fn new(hold: Duration) -> Sourceless {
        Sourceless {
            hold,
            alarmed: false,
            contrary_since: None,
        }
    }

    #[cfg(test)]
    pub fn alarmed(&self) -> bool {
        self.alarmed
    }

    pub fn observe(&mut self, has_source: bool, now: Instant) -> Option<Change> {
        // The alarm is on while there is no source: `has_source == alarmed` contradicts it.
        if has_source != self.alarmed {
            self.contrary_since = None;
            return None;
        }
        let since = *self.contrary_since.get_or_insert(now);
        let held = now.duration_since(since);
        if held < self.hold {
            return None;
        }
        self.contrary_since = None;
        self.alarmed = !self.alarmed;
        Some(if self.alarmed {
            Change::Started { for_: held }
        } else {
            Change::Ended { lasted: held }
        })
    }
}

/// Watches one stream until it is removed.
pub async fn watch(stream: Arc<Stream>) {
    let mut state = Sourceless::new(HOLD);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut alarm_started: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stream.removed.cancelled() => return,
        }
        if !stream.settings().monitored {
            continue;
        }
        let now = Instant::now();
        match state.observe(!stream.sources().is_empty(), now) {
            Some(Change::Started { for_ }) => {
                tracing::warn!(stream = %stream.key, "No source for {}s.", for_.as_secs());
                alarm_started = Some(now - for_);
                stream.emit(EventKind::StreamSourcelessStarted {
                    since: rfc3339(now_micros() - for_.as_micros() as i64),
                });
            }
            Some(Change::Ended { lasted }) => {
                tracing::info!(stream = %stream.key, "The stream has a source again.");
                let total =
                    alarm_started.map_or(lasted, |t| now.duration_since(t).saturating_sub(lasted));
                alarm_started = None;
                stream.emit(EventKind::StreamSourcelessEnded {
                    sourceless_seconds: total.as_secs_f64(),
                });
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn alarms_after_30s_without_a_source_and_clears_after_30s_with_one() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Sourceless::new(HOLD);
        assert_eq!(s.observe(true, at(0)), None);
        // A reconnect within 30 s raises nothing.
        assert_eq!(s.observe(false, at(10)), None);
        assert_eq!(s.observe(false, at(39)), None);
        assert_eq!(s.observe(true, at(40)), None);
        assert_eq!(s.observe(false, at(50)), None);
        assert_eq!(
            s.observe(false, at(80)),
            Some(Change::Started {
                for_: Duration::from_secs(30)
            })
        );
        assert!(s.alarmed());
        assert_eq!(s.observe(false, at(200)), None);
        // A source for 20 s and gone again does not clear it.
        assert_eq!(s.observe(true, at(210)), None);
        assert_eq!(s.observe(true, at(230)), None);
        assert_eq!(s.observe(false, at(231)), None);
        assert_eq!(s.observe(true, at(300)), None);
        assert_eq!(
            s.observe(true, at(330)),
            Some(Change::Ended {
                lasted: Duration::from_secs(30)
            })
        );
        assert!(!s.alarmed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_created_without_a_source_alarms() {
        let t0 = Instant::now();
        let mut s = Sourceless::new(HOLD);
        assert_eq!(s.observe(false, t0), None);
        assert!(matches!(
            s.observe(false, t0 + HOLD),
            Some(Change::Started { .. })
        ));
    }
}

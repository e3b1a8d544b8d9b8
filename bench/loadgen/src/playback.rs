//! A player's buffer, to tell when it would stall. Playback starts when the first segment has
//! arrived; the buffer is the media fetched so far minus what has played; a segment that arrives
//! after the buffer ran dry is a stall, and playback was paused from the moment it ran dry until
//! that segment arrived. Times are seconds on any clock that only moves forward.

#[derive(Debug, Default)]
pub struct Playback {
    /// Wall time when playback last (re)started, and the media position at that time.
    resumed_at: Option<f64>,
    position_at_resume: f64,
    /// Media seconds fetched so far.
    fetched: f64,
    pub stalls: u32,
    /// Wall seconds spent stalled (waiting for a segment with nothing to play).
    pub stalled_for: f64,
}

impl Playback {
    pub fn started(&self) -> bool {
        self.resumed_at.is_some()
    }

    /// The wall time the buffer runs (or ran) dry, if playback has started.
    fn dry_at(&self) -> Option<f64> {
        self.resumed_at
            .map(|t| t + (self.fetched - self.position_at_resume))
    }

    /// Media seconds buffered ahead of the play position at `now`.
    pub fn buffered(&self, now: f64) -> f64 {
        match self.dry_at() {
            Some(dry) => (dry - now).max(0.0),
            None => self.fetched,
        }
    }

    /// A segment of `duration` seconds arrived at `now`; whether it came too late (a stall).
    pub fn segment(&mut self, now: f64, duration: f64) -> bool {
        let stalled = match self.dry_at() {
            None => {
                self.resumed_at = Some(now);
                false
            }
            Some(dry) if now > dry => {
                self.stalls += 1;
                self.stalled_for += now - dry;
                // Everything fetched has played; playback resumes with this segment.
                self.position_at_resume = self.fetched;
                self.resumed_at = Some(now);
                true
            }
            Some(_) => false,
        };
        self.fetched += duration;
        stalled
    }

    /// A gap segment (`EXT-X-GAP`): players play past it without fetching, so it neither
    /// fills nor drains the buffer; only a started player can skip it.
    pub fn gap(&mut self, duration: f64) {
        if self.started() {
            self.fetched += duration;
        }
    }

    /// The session ends at `now`: a buffer that is dry by then is a stall no segment ended.
    pub fn finish(&mut self, now: f64) {
        if let Some(dry) = self.dry_at()
            && now > dry
        {
            self.stalls += 1;
            self.stalled_for += now - dry;
            self.position_at_resume = self.fetched;
            self.resumed_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_with_one_stall() {
        let mut p = Playback::default();
        assert!(!p.started());
        // t=0: the first 6 s segment; playback starts.
        assert!(!p.segment(0.0, 6.0));
        assert_eq!(p.buffered(0.0), 6.0);
        // t=1: two more: 18 s fetched, 1 s played.
        assert!(!p.segment(0.5, 6.0));
        assert!(!p.segment(1.0, 6.0));
        assert_eq!(p.buffered(1.0), 17.0);
        // t=17.9: just in time (dry at 18).
        assert!(!p.segment(17.9, 6.0));
        assert!((p.buffered(18.0) - 6.0).abs() < 1e-9);
        // Dry at 24; the next segment arrives at 26: a 2 s stall, playback resumes at 26.
        assert!(p.segment(26.0, 6.0));
        assert_eq!(p.stalls, 1);
        assert!((p.stalled_for - 2.0).abs() < 1e-9);
        assert!((p.buffered(26.0) - 6.0).abs() < 1e-9);
        // Paused time is not played: dry again at 32, not 30.
        assert!(!p.segment(31.0, 6.0));
        p.finish(37.0);
        assert_eq!(p.stalls, 1);
        // Nothing more arrives: dry at 38, so ending at 40 is a second stall.
        p.finish(40.0);
        assert_eq!(p.stalls, 2);
    }

    #[test]
    fn gaps_keep_a_started_player_going() {
        let mut p = Playback::default();
        p.gap(6.0);
        assert_eq!(p.buffered(0.0), 0.0);
        p.segment(0.0, 6.0);
        p.gap(6.0);
        assert!(!p.segment(11.0, 6.0));
        p.finish(18.0);
        assert_eq!(p.stalls, 0);
    }
}

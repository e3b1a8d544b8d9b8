//! Dead-air detection over level windows (sans-IO), with hysteresis in level and in time.
//!
//! Audio turns into silence after `trip_after` of windows whose loudest channel stays under
//! `threshold_dbfs`; silence turns back into audio only after `clear_after` of windows whose
//! loudest channel is at or above `clear_dbfs`. The gap between the two levels keeps a noisy
//! line near the threshold from flapping, and the clear delay keeps a click or a cough from
//! ending an alarm (broadcast silence sensors work the same way).

use std::time::Duration;

use super::{WINDOW_MS, Window};

/// Levels are whole dBFS, as silence sensors are set; the defaults are the contract's
/// (`bounds::silence`, where they are explained).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub threshold_dbfs: i16,
    pub clear_dbfs: i16,
    pub trip_after: Duration,
    pub clear_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        use streammachine_contract::bounds::silence as d;
        Settings {
            threshold_dbfs: d::THRESHOLD_DBFS,
            clear_dbfs: d::CLEAR_DBFS,
            trip_after: d::TRIP_AFTER,
            clear_after: d::CLEAR_AFTER,
        }
    }
}

/// A change of state, reported on the window that completes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Silent for `trip_after`; the silence began `silent_for` ago (in content time).
    Started { silent_for: Duration },
    /// Audio again for `clear_after`; the silence lasted `lasted`.
    Ended { lasted: Duration },
}

/// Counts in windows, so the decision is a function of the audio alone, not of wall clocks or
/// of how fast the frames arrive (a source that catches up after a stall is judged the same).
#[derive(Debug, Clone)]
pub struct Detector {
    settings: Settings,
    silent: bool,
    /// Consecutive windows under the threshold (while audio) or since the silence began.
    quiet_windows: u64,
    /// Consecutive windows at or above the clear level while silent.
    loud_windows: u64,
}

fn windows(d: Duration) -> u64 {
    (d.as_millis() as u64).div_ceil(u64::from(WINDOW_MS)).max(1)
}

fn duration(windows: u64) -> Duration {
    Duration::from_millis(windows * u64::from(WINDOW_MS))
}

impl Detector {
    pub fn new(settings: Settings) -> Detector {
        Detector {
            settings,
            silent: false,
            quiet_windows: 0,
            loud_windows: 0,
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Whether the source is in dead air now.
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// Takes the next window of the source.
    pub fn push(&mut self, window: &Window) -> Option<Change> {
        let level = window.loudest_rms_dbfs();
        if self.silent {
            self.quiet_windows += 1;
            if level >= f32::from(self.settings.clear_dbfs) {
                self.loud_windows += 1;
                if self.loud_windows >= windows(self.settings.clear_after) {
                    let lasted = duration(self.quiet_windows - self.loud_windows);
                    self.silent = false;
                    self.quiet_windows = 0;
                    self.loud_windows = 0;
                    return Some(Change::Ended { lasted });
                }
            } else {
                self.loud_windows = 0;
            }
            None
        } else {
            if level < f32::from(self.settings.threshold_dbfs) {
                self.quiet_windows += 1;
                if self.quiet_windows >= windows(self.settings.trip_after) {
                    self.silent = true;
                    self.loud_windows = 0;
                    return Some(Change::Started {
                        silent_for: duration(self.quiet_windows),
                    });
                }
            } else {
                self.quiet_windows = 0;
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ChannelLevel;
    use super::*;

    fn window(dbfs: &[f32]) -> Window {
        Window {
            first_sample: 0,
            channels: dbfs
                .iter()
                .map(|&d| ChannelLevel {
                    rms_dbfs: d,
                    peak_dbfs: d + 3.0,
                })
                .collect(),
        }
    }

    /// Feeds `seconds` of windows at one level and returns the changes with the second they
    /// happened at (counted from the start of this call).
    fn feed(d: &mut Detector, seconds: f32, dbfs: &[f32]) -> Vec<(f32, Change)> {
        let w = window(dbfs);
        (1..=(seconds * 10.0).round() as u32)
            .filter_map(|i| d.push(&w).map(|c| (i as f32 / 10.0, c)))
            .collect()
    }

    #[test]
    fn trips_after_20s_of_silence_and_clears_after_3s_of_audio() {
        let mut d = Detector::new(Settings::default());
        assert!(feed(&mut d, 60.0, &[-20.0, -20.0]).is_empty());
        let started = feed(&mut d, 25.0, &[-70.0, -90.0]);
        assert_eq!(
            started,
            vec![(
                20.0,
                Change::Started {
                    silent_for: Duration::from_secs(20)
                }
            )]
        );
        assert!(d.is_silent());
        let ended = feed(&mut d, 5.0, &[-20.0, -20.0]);
        assert_eq!(
            ended,
            vec![(
                3.0,
                Change::Ended {
                    lasted: Duration::from_secs(25)
                }
            )]
        );
        assert!(!d.is_silent());
    }

    #[test]
    fn audio_on_any_channel_is_audio() {
        let mut d = Detector::new(Settings::default());
        assert!(feed(&mut d, 60.0, &[-120.0, -30.0]).is_empty());
        assert!(!d.is_silent());
    }

    #[test]
    fn short_sounds_do_not_end_silence_and_short_gaps_do_not_start_it() {
        let mut d = Detector::new(Settings::default());
        // 19.9 s of silence, a beat, 19.9 s again: never 20 s in a row.
        feed(&mut d, 19.9, &[-80.0]);
        feed(&mut d, 0.1, &[-10.0]);
        assert!(feed(&mut d, 19.9, &[-80.0]).is_empty());
        assert_eq!(feed(&mut d, 0.1, &[-80.0]).len(), 1);
        // Clicks of 1 s every 2 s never add up to 3 s of audio.
        for _ in 0..10 {
            assert!(feed(&mut d, 1.0, &[-10.0]).is_empty());
            assert!(feed(&mut d, 1.0, &[-80.0]).is_empty());
        }
        assert!(d.is_silent());
    }

    #[test]
    fn levels_between_threshold_and_clear_hold_the_current_state() {
        let mut d = Detector::new(Settings::default());
        // −45 dBFS is not silence while on air...
        assert!(feed(&mut d, 30.0, &[-45.0]).is_empty());
        feed(&mut d, 20.0, &[-80.0]);
        assert!(d.is_silent());
        // ...and not enough audio to clear an alarm.
        assert!(feed(&mut d, 30.0, &[-45.0]).is_empty());
        assert!(d.is_silent());
    }

    #[test]
    fn durations_round_up_to_whole_windows() {
        let mut d = Detector::new(Settings {
            trip_after: Duration::from_millis(250),
            clear_after: Duration::ZERO,
            ..Settings::default()
        });
        let changes = feed(&mut d, 1.0, &[-80.0]);
        assert_eq!(changes[0].0, 0.3);
        assert_eq!(feed(&mut d, 0.1, &[0.0]).len(), 1);
    }
}

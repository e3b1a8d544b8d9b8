//! HLS listeners (sans-IO): an HLS client makes many short requests, so a listener is a session,
//! keyed by `X-Playback-Session-Id` or the `session_id` carried in segment URIs, that starts with
//! its first segment request and ends after a spell without requests. `T` is what a session holds
//! while it lasts (in the server: a listener slot, which keeps it counted).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Sessions<T> {
    idle: Duration,
    live: HashMap<String, (Instant, T)>,
}

impl<T> Sessions<T> {
    pub fn new(idle: Duration) -> Self {
        Sessions {
            idle,
            live: HashMap::new(),
        }
    }

    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Note a request of session `key`. A new session takes what `start` gives it; when `start`
    /// refuses (a listener limit), nothing is recorded and its error is returned.
    pub fn touch<E>(
        &mut self,
        key: &str,
        now: Instant,
        start: impl FnOnce() -> Result<T, E>,
    ) -> Result<bool, E> {
        if let Some((seen, _)) = self.live.get_mut(key) {
            *seen = now;
            return Ok(false);
        }
        let value = start()?;
        self.live.insert(key.to_string(), (now, value));
        Ok(true)
    }

    /// Refresh a session only if it exists (playlist reloads keep a listener alive but do not
    /// start one).
    pub fn refresh(&mut self, key: &str, now: Instant) {
        if let Some((seen, _)) = self.live.get_mut(key) {
            *seen = now;
        }
    }

    /// End sessions idle for longer than the idle time; their values are handed back (to be
    /// dropped outside any lock).
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let idle = self.idle;
        let gone: Vec<String> = self
            .live
            .iter()
            .filter(|(_, (seen, _))| now.saturating_duration_since(*seen) > idle)
            .map(|(k, _)| k.clone())
            .collect();
        gone.into_iter()
            .filter_map(|k| self.live.remove(&k).map(|(_, v)| v))
            .collect()
    }

    /// End every session.
    pub fn clear(&mut self) -> Vec<T> {
        self.live.drain().map(|(_, (_, v))| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_refresh_and_expire() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(30));
        let mut started = 0;
        let mut start = || -> Result<u32, ()> {
            started += 1;
            Ok(started)
        };
        assert_eq!(s.touch("a", t0, &mut start), Ok(true));
        assert_eq!(
            s.touch("a", t0 + Duration::from_secs(10), &mut start),
            Ok(false)
        );
        assert_eq!(
            s.touch("b", t0 + Duration::from_secs(10), &mut start),
            Ok(true)
        );
        s.refresh("c", t0);
        assert_eq!(s.len(), 2);
        assert!(s.expire(t0 + Duration::from_secs(35)).is_empty());
        s.refresh("a", t0 + Duration::from_secs(39));
        assert_eq!(s.expire(t0 + Duration::from_secs(41)), vec![2]);
        assert_eq!(s.len(), 1);
        // A refused start records nothing.
        assert_eq!(s.touch("d", t0, || Err::<u32, _>("full")), Err("full"));
        assert_eq!(s.clear(), vec![1]);
        assert!(s.is_empty());
    }
}

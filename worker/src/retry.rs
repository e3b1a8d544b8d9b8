//! What every retry loop shares (a leaf: depends on nothing in the crate): logging an error that
//! repeats without flooding the log.

use std::time::{Duration, Instant};

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

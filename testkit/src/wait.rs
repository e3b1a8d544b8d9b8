//! Waiting for a condition with a deadline: the test goes on as soon as the condition holds and
//! fails with a message naming what it waited for when the deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`, failing the test after `timeout`. For conditions with
/// no event to wait on (a process's state, an HTTP endpoint, a log line).
#[track_caller]
pub fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = std::panic::Location::caller();
    eventually_at(what.to_owned(), timeout, check, caller)
}

async fn eventually_at<T, F, Fut>(
    what: String,
    timeout: Duration,
    mut check: F,
    caller: &'static std::panic::Location<'static>,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} (at {caller})"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The blocking twin of [`eventually`], for tests without a runtime.
#[track_caller]
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_as_soon_as_the_condition_holds() {
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let v = eventually("the third call", Duration::from_secs(30), || {
            calls += 1;
            let done = calls == 3;
            async move { done.then_some(calls) }
        })
        .await;
        assert_eq!(v, 3);
        assert_eq!(start.elapsed(), POLL * 2);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 1s waiting for nothing")]
    async fn fails_at_the_deadline() {
        eventually("nothing", Duration::from_secs(1), || async { None::<()> }).await;
    }

    #[test]
    fn blocking_variant_returns_the_value() {
        let mut n = 0;
        let v = wait_until("n to reach 2", Duration::from_secs(30), || {
            n += 1;
            (n == 2).then_some(n)
        });
        assert_eq!(v, 2);
    }

    #[test]
    #[should_panic(expected = "waiting for never")]
    fn blocking_variant_fails_at_the_deadline() {
        wait_until("never", Duration::from_millis(100), || None::<()>);
    }
}

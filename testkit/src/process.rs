//! Child processes that die with the test: killed by their own PID when dropped, so a failing
//! test leaves nothing running and never touches a process it did not start.

use std::process::{Child, ExitStatus};
use std::time::Duration;

use crate::wait::wait_until;

/// A child process killed (SIGKILL, by PID) and reaped when dropped.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The child's PID (0 once it was taken out with [`ChildGuard::into_inner`]).
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// The child, no longer guarded.
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("child present")
    }

    /// Mutable access to the child.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child present")
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then waits up to `timeout` for the exit; `None` if it did not exit in time (it
    /// is still killed on drop).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.0.as_mut()?;
        crate::sigterm(child.id());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits (failing the test after `timeout`) for the exit.
    pub async fn terminate_async(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.0.as_mut().expect("child present");
        crate::sigterm(child.id());
        crate::eventually("the child to exit after SIGTERM", timeout, || {
            let status = child.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }

    /// SIGKILL now (a crash), and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            // Child::kill signals this child's own PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (blocking, failing the test after `timeout`) for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.0.as_mut().expect("child present");
        wait_until("the child to exit", timeout, || {
            child.try_wait().ok().flatten()
        })
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn drop_kills_the_child() {
        let guard = ChildGuard::new(Command::new("sleep").arg("600").spawn().expect("sleep"));
        let pid = guard.id();
        drop(guard);
        // Reaped and gone: signalling the PID fails (ESRCH).
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
        assert!(!alive, "pid {pid} survived the drop");
    }

    #[test]
    fn terminate_returns_the_exit_status() {
        let mut guard = ChildGuard::new(Command::new("sleep").arg("600").spawn().expect("sleep"));
        let status = guard.terminate(Duration::from_secs(30)).expect("exited");
        assert!(!status.success());
        assert!(!guard.is_running());
    }
}

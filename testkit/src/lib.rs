//! Test support shared by the end-to-end tests (`tests/`) and the operator's integration tests:
//! free loopback ports, waiting for a condition with a deadline, child processes killed by PID
//! when dropped, `redis-server` and `nats-server` on a free port with their own directory, and
//! finding the workspace's binaries next to the running test.
//!
//! A panic is how a test fails, so these helpers panic with a message naming what went wrong
//! (and what to run to fix it) instead of returning errors.

pub mod bins;
pub mod process;
pub mod service;
pub mod wait;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub use bins::binary;
pub use process::ChildGuard;
pub use service::Service;
pub use wait::{eventually, wait_until};

/// The repository (workspace) root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ lives in the repository")
        .to_path_buf()
}

/// A free TCP port on loopback: bound by the kernel, then released for the caller to bind.
///
/// Another process may take it in between; [`Service`] retries on a new port when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Fails the test (never skips it) when a program the tests need is not installed.
#[track_caller]
pub fn require(program: &str) {
    assert!(
        on_path(program),
        "`{program}` is not installed; run scripts/test.sh (it installs what the tests need)"
    );
}

/// A directory for one test's files, removed when dropped.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temp dir")
}

/// Sends SIGTERM to one process, by PID (never by name).
pub fn sigterm(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGTERM);
}

/// Sends SIGKILL to one process, by PID (never by name).
pub fn sigkill(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGKILL);
}

/// Sends `sig` to the process `pid`; a process that is already gone is not an error.
fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let Ok(pid) = i32::try_from(pid) else { return };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_can_be_bound() {
        let port = free_port();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("surely-no-such-program-streammachine"));
    }
}

//! Helpers shared by the integration tests: where the test tools are and running a command with
//! a deadline. Free ports, waiting with a deadline, child processes killed by PID and
//! `redis-server` come from `streammachine-testkit` (shared with the end-to-end tests).
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use streammachine_testkit::ChildGuard;
pub use streammachine_testkit::repo_root;

const INSTALL_HINT: &str = "run scripts/k8s-tools.sh to install the test tools into .tools/";

/// A tool under `.tools/`; fails the test (never skips it) when the tool is missing.
pub fn tool(relative: &str) -> PathBuf {
    let path = repo_root().join(".tools").join(relative);
    assert!(
        path.is_file(),
        "{} is missing: {INSTALL_HINT}",
        path.display()
    );
    path
}

/// The Helm binary.
pub fn helm() -> PathBuf {
    tool("helm/helm")
}

/// `kubernetes-validate` from the tools venv.
pub fn kubernetes_validate() -> PathBuf {
    tool("venv/bin/kubernetes-validate")
}

/// Python of the tools venv (has kmock).
pub fn venv_python() -> PathBuf {
    tool("venv/bin/python")
}

/// Runs a command to completion with a deadline; panics with its output if it cannot start.
pub fn run(command: &mut Command, timeout: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let guard = ChildGuard::new(child);
    let pid = guard.id();
    // wait_with_output blocks; a watchdog thread kills the process by PID at the deadline.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            // Only the process this test started, by its PID.
            streammachine_testkit::sigkill(pid);
        }
    });
    let output = guard
        .into_inner()
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {command:?}: {e}"));
    let _ = done_tx.send(());
    let _ = watchdog.join();
    output
}

/// Reads lines (on a thread, with a deadline) until one contains `needle`.
pub fn wait_for_line(
    stdout: impl std::io::Read + Send + 'static,
    needle: &str,
    timeout: Duration,
) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(&needle) {
                let _ = tx.send(line);
                // Keep draining so the child never blocks on a full pipe.
                continue;
            }
        }
    });
    rx.recv_timeout(timeout).is_ok()
}

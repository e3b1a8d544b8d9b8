//! Helpers shared by the integration tests: where the repository and the test tools are,
//! child processes that are killed (by PID) when dropped, and waiting with a deadline.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Repository root (the workspace), from this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

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

/// `redis-server` from PATH; fails the test when missing.
pub fn redis_server_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| panic!("redis-server is not installed: {INSTALL_HINT}"))
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
            kill_pid(pid);
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

fn kill_pid(pid: u32) {
    // Only the process this test started, by its PID.
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

/// A child process killed when dropped (so a failing test leaves nothing running).
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The child's PID.
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

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.0.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free TCP port on loopback (bound and released; the caller binds it again right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `condition` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `redis-server` of our own on a free loopback port, without persistence.
pub struct RedisServer {
    /// `redis://127.0.0.1:<port>/0`.
    pub url: String,
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts it and waits until it accepts connections (never the system one on 6379).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The port is picked by us; if another test grabs it in between, redis-server exits
        // and the readiness line never comes, so retry with a new port.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(redis_server_binary())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting redis-server");
            let stdout = child.stdout.take().expect("stdout");
            let guard = ChildGuard::new(child);
            if wait_for_line(
                stdout,
                "Ready to accept connections",
                Duration::from_secs(10),
            ) {
                return Self {
                    url: format!("redis://127.0.0.1:{port}/0"),
                    _process: guard,
                    _dir: dir,
                };
            }
        }
        panic!("redis-server did not start");
    }
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

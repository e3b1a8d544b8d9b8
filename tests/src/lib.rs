//! Test harness for end-to-end tests: the real `streammachine` binary, real ffmpeg as the Icecast
//! encoder and decoder, real redis-server and nats-server, each started on free loopback ports
//! and stopped by PID when the test ends.

pub mod audio;
pub mod cluster;
pub mod listener;
pub mod server;
pub mod services;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// `target/<profile>` of the running test binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_path_buf()
}

/// The `streammachine` binary, built (once per test process) with the same profile as the tests.
pub fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_dir = profile_dir();
            let target = profile_dir.parent().expect("target dir").to_path_buf();
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "streammachine",
                "--bin",
                "streammachine",
            ])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(repo_root());
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "building the streammachine binary failed");
            profile_dir.join("streammachine")
        })
        .clone()
}

/// Fail with a clear message when a program the tests need is missing.
pub fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{program}` is not installed; run scripts/test.sh (it installs what the tests need)"
    );
}

/// Poll `check` until it returns `Some`, failing after `timeout`. For conditions that have no
/// event to wait on (a process's state, an HTTP endpoint).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A directory for one test's files, removed afterwards.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sm-e2e-")
        .tempdir()
        .expect("create temp dir")
}

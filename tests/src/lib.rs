//! Test harness for end-to-end tests: the real `streammachine` binary, real ffmpeg as the Icecast
//! encoder and decoder, real redis-server and nats-server, each started on free loopback ports
//! and stopped by PID when the test ends.

pub mod audio;
pub mod cluster;
/// The SSE reader and webhook receiver of the cluster event tests (a second, simpler take on
/// `events`; to be folded into it).
pub mod cluster_events;
pub mod events;
pub mod listener;
pub mod server;
pub mod services;

use std::path::PathBuf;

/// The `streammachine` binary, built beforehand by `cargo build --workspace --bins` (the test
/// command does) and found next to the test executable, or in `$STREAMMACHINE_BIN_DIR`.
pub fn binary() -> PathBuf {
    streammachine_testkit::binary("streammachine")
}

pub use streammachine_testkit::{eventually, repo_root, require};

/// A directory for one test's files, removed afterwards.
pub fn temp_dir() -> tempfile::TempDir {
    streammachine_testkit::temp_dir("sm-e2e-")
}

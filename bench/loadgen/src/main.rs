//! loadgen: load for a streaming server, reported as JSON on stdout (a summary on stderr).
//!
//!     loadgen listen --url http://127.0.0.1:8000/live --listeners 10000 --rate 2000 --hold 60s
//!     loadgen hls --url http://127.0.0.1:8000/live.m3u8 --sessions 10000 --rate 500 --hold 60s
//!
//! `listen` (ICY/raw listeners) is also the default: `loadgen --url …` works as it always did.

mod encoding;
mod hls;
mod http;
mod listen;
mod playback;
mod playlist;
mod profile;
mod report;
mod session;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Listener and HLS player load against a streaming server")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Long-lived HTTP audio listeners (ICY/raw): TTFB, bytes, gaps between reads.
    Listen(listen::Args),
    /// HLS players (hls.js, AVPlayer, ffmpeg): playlist reloads, segments, stalls.
    Hls(hls::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Older scripts call `loadgen --url …`: that is listener mode.
    let mut argv: Vec<String> = std::env::args().collect();
    if argv
        .get(1)
        .is_some_and(|a| a.starts_with("--") && a != "--help")
    {
        argv.insert(1, "listen".into());
    }
    let cli = Cli::parse_from(argv);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match cli.mode {
        Mode::Listen(args) => listen::run(args).await,
        Mode::Hls(args) => hls::run(args).await,
    }
}

//! HLS mode: N simulated players (see `session`) of a live media playlist, ramped up at a given
//! rate, all held until the same end. Profiles are handed out in turn. Each session binds its
//! own loopback source address (127.0.0.2 and up), so players the server keys by address are
//! told apart and no single address runs out of ephemeral ports.
//!
//!     loadgen hls --url http://127.0.0.1:8000/live.m3u8 --sessions 10000 --rate 500 \
//!         --hold 60s --profiles hlsjs,avplayer,ffmpeg

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

use crate::listen::parse_url;
use crate::profile::Profile;
use crate::report::summary;
use crate::session::{self, Target};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The media playlist, `http://IP:port/path.m3u8` (plain HTTP only).
    #[arg(long)]
    url: String,
    /// Concurrent players.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// New players per second while ramping up.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// How long every player stays after the last one started.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Player profiles, handed out in turn.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "hlsjs,avplayer,ffmpeg"
    )]
    profiles: Vec<Profile>,
    /// The measurement window (`window` in the report) starts this long after the last player
    /// started (past every player's start-up burst) and lasts to the end; at most half the hold.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Give up on a connection or an answer after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Session `i`'s source address: 127.0.0.2 + i, wrapping inside 127.0.0.0/8 (never the network
/// or broadcast address).
fn source_address(i: usize) -> IpAddr {
    const FIRST: u32 = 0x7f00_0002;
    const COUNT: u32 = 0x00ff_fffd;
    IpAddr::V4(Ipv4Addr::from(FIRST + (i as u32 % COUNT)))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (addr, path) = parse_url(&args.url)?;
    if args.sessions == 0 || args.rate == 0 || args.profiles.is_empty() {
        bail!("--sessions, --rate and --profiles must not be zero or empty");
    }
    // Own source addresses only work towards loopback; elsewhere the system picks.
    let bind_own = addr.ip().is_loopback() && addr.is_ipv4();
    let ramp = Duration::from_secs_f64(args.sessions as f64 / args.rate as f64);
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let end = started + ramp + args.hold;
    let warmup = args.warmup.min(args.hold / 2);
    let window_seconds = (args.hold - warmup).as_secs_f64();
    let target = Arc::new(Target {
        addr,
        path,
        window_start: started + ramp + warmup,
        timeout: args.timeout,
    });
    let mut tasks = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        tokio::time::sleep_until(started + interval * i as u32).await;
        let profile = args.profiles[i % args.profiles.len()];
        let target = target.clone();
        let bind = bind_own.then(|| source_address(i));
        tasks.push(tokio::spawn(async move {
            session::run(&target, profile, i, bind, end).await
        }));
    }
    eprintln!(
        "loadgen hls: {} sessions started in {:.1?}",
        args.sessions,
        started.elapsed()
    );
    let mut stats = Vec::with_capacity(tasks.len());
    let mut lost = 0;
    for t in tasks {
        match t.await {
            Ok(s) => stats.push(s),
            Err(_) => lost += 1,
        }
    }
    let all: Vec<_> = stats.iter().collect();
    let mut by_profile = BTreeMap::new();
    for p in &args.profiles {
        let of: Vec<_> = stats.iter().filter(|s| s.profile == *p).collect();
        by_profile.insert(p.name(), summary(&of, window_seconds));
    }
    let mut report = summary(&all, window_seconds);
    report["mode"] = "hls".into();
    report["url"] = args.url.clone().into();
    report["started"] = args.sessions.into();
    report["failed"] = (report["failed"].as_u64().unwrap_or(0) + lost).into();
    report["profiles"] = args.profiles.iter().map(|p| p.name()).collect();
    report["hold_seconds"] = args.hold.as_secs_f64().into();
    report["seconds"] = started.elapsed().as_secs_f64().into();
    report["by_profile"] = serde_json::to_value(by_profile)?;
    let r = &report;
    eprintln!(
        "loadgen hls: {} sessions, ok {}, failed {}, stalls {} in {} sessions; {:.0} kbit/s per session \
         in the window (playlists {:.1}, segments {:.1}); TTFB p99 playlist {:.1} ms, segment {:.1} ms; errors {}; reconnects {}",
        args.sessions,
        r["ok"],
        r["failed"],
        r["stalls"],
        r["stalled_sessions"],
        r["window"]["kbps_per_session"].as_f64().unwrap_or(0.0),
        r["window"]["playlist_kbps_per_session"]
            .as_f64()
            .unwrap_or(0.0),
        r["window"]["segment_kbps_per_session"]
            .as_f64()
            .unwrap_or(0.0),
        r["playlist"]["ttfb_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
        r["segment"]["ttfb_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
        r["errors"],
        r["reconnects"],
    );
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_stay_in_loopback() {
        assert_eq!(source_address(0), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(source_address(300), IpAddr::from([127, 0, 1, 46]));
        assert_eq!(
            source_address(0x00ff_fffc),
            IpAddr::from([127, 255, 255, 254])
        );
        assert_eq!(source_address(0x00ff_fffd), IpAddr::from([127, 0, 0, 2]));
    }
}

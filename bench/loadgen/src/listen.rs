//! Listener mode: many concurrent HTTP (ICY/raw) audio listeners against one URL.
//!
//! Each listener connects, sends a GET, waits for the response head, then reads (and discards)
//! the body until the test ends. Reported: connections refused or failed, time to first body
//! byte (p50/p99/max), bytes received, and stalls (a listener that receives nothing for longer
//! than `--stall`). Output: one JSON object on stdout, a summary on stderr.
//!
//!     loadgen listen --url http://127.0.0.1:8000/live --listeners 10000 --rate 2000 --hold 60s

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `http://host:port/path` (plain HTTP only).
    #[arg(long)]
    url: String,
    /// Concurrent listeners.
    #[arg(long, default_value_t = 1000)]
    listeners: usize,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long every listener stays after the last one connected.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// A listener whose longest wait between two reads exceeds this is counted as `gapped`
    /// (audio arrives about twice a second; a longer gap is a late wake-up, short of a stall).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    gap: Duration,
    /// A gap without data longer than this counts as a stall.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    stall: Duration,
    /// Give up on a connection or response head after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Default)]
struct Totals {
    bytes: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    bad_status: AtomicU64,
    dropped: AtomicU64,
    stalls: AtomicU64,
    stalled_listeners: AtomicU64,
    gapped_listeners: AtomicU64,
    /// The longest wait between two reads of any listener, µs.
    max_gap_us: AtomicU64,
    ok: AtomicU64,
}

pub fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host
        .parse()
        .with_context(|| format!("`{host}` must be an IP:port"))?;
    Ok((
        addr,
        if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    ))
}

enum Outcome {
    Refused,
    Failed,
    BadStatus,
}

/// One listener: returns time to first body byte, or why it failed.
async fn listen(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    args: Arc<Args>,
    end: Instant,
    totals: Arc<Totals>,
) -> Result<Duration, Outcome> {
    let start = Instant::now();
    let mut sock = match tokio::time::timeout(args.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Outcome::Refused);
        }
        _ => return Err(Outcome::Failed),
    };
    if sock.write_all(&request).await.is_err() {
        return Err(Outcome::Failed);
    }
    let mut buf = vec![0u8; 4096];
    let mut head = Vec::new();
    let mut body_start = None;
    // Response head and the first body byte.
    let ttfb = loop {
        let n = match tokio::time::timeout(args.timeout, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(Outcome::Failed),
            Ok(Ok(n)) => n,
        };
        if body_start.is_none() {
            head.extend_from_slice(&buf[..n]);
            if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                if !(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")) {
                    return Err(Outcome::BadStatus);
                }
                body_start = Some(p + 4);
                if head.len() > p + 4 {
                    totals
                        .bytes
                        .fetch_add((head.len() - p - 4) as u64, Ordering::Relaxed);
                    break start.elapsed();
                }
            } else if head.len() > 16 * 1024 {
                return Err(Outcome::BadStatus);
            }
        } else {
            totals.bytes.fetch_add(n as u64, Ordering::Relaxed);
            break start.elapsed();
        }
    };
    drop(head);
    buf.truncate(1024);
    buf.shrink_to_fit();
    // Read until the end of the run, counting gaps.
    let mut stalls = 0;
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let wait = (end - now).min(args.stall);
        match tokio::time::timeout(wait, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                totals.dropped.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(Ok(n)) => {
                totals.bytes.fetch_add(n as u64, Ordering::Relaxed);
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
            }
            Err(_) => {
                if Instant::now() < end && last.elapsed() >= args.stall {
                    stalls += 1;
                    last = Instant::now();
                }
            }
        }
    }
    if longest > args.gap {
        totals.gapped_listeners.fetch_add(1, Ordering::Relaxed);
    }
    totals
        .max_gap_us
        .fetch_max(longest.as_micros() as u64, Ordering::Relaxed);
    if stalls > 0 {
        totals.stalls.fetch_add(stalls, Ordering::Relaxed);
        totals.stalled_listeners.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ttfb)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let (addr, path) = parse_url(&args.url)?;
    if args.listeners == 0 || args.rate == 0 {
        bail!("--listeners and --rate must be positive");
    }
    let request = Arc::new(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: loadgen\r\nIcy-MetaData: 0\r\n\r\n"
        )
        .into_bytes(),
    );
    let totals = Arc::new(Totals::default());
    let ttfbs = Arc::new(Mutex::new(Vec::with_capacity(args.listeners)));
    let ramp = Duration::from_secs_f64(args.listeners as f64 / args.rate as f64);
    let started = Instant::now();
    let end = started + ramp + args.hold;
    let mut tasks = Vec::with_capacity(args.listeners);
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    for i in 0..args.listeners {
        tokio::time::sleep_until(started + interval * i as u32).await;
        let (request, args, totals, ttfbs) =
            (request.clone(), args.clone(), totals.clone(), ttfbs.clone());
        tasks.push(tokio::spawn(async move {
            match listen(addr, request, args, end, totals.clone()).await {
                Ok(t) => {
                    totals.ok.fetch_add(1, Ordering::Relaxed);
                    ttfbs.lock().await.push(t);
                }
                Err(Outcome::Refused) => {
                    totals.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(Outcome::Failed) => {
                    totals.failed.fetch_add(1, Ordering::Relaxed);
                }
                Err(Outcome::BadStatus) => {
                    totals.bad_status.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let connected_in = started.elapsed();
    eprintln!(
        "loadgen: {} listeners started in {:.1?}",
        args.listeners, connected_in
    );
    for t in tasks {
        let _ = t.await;
    }
    let mut ttfb = ttfbs.lock().await.clone();
    ttfb.sort();
    let secs = started.elapsed().as_secs_f64();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "url": args.url,
        "listeners": args.listeners,
        "served": get(&totals.ok),
        "refused": get(&totals.refused),
        "failed": get(&totals.failed),
        "bad_status": get(&totals.bad_status),
        "dropped_by_server": get(&totals.dropped),
        "stalled_listeners": get(&totals.stalled_listeners),
        "stalls": get(&totals.stalls),
        "gapped_listeners": get(&totals.gapped_listeners),
        "max_gap_ms": get(&totals.max_gap_us) as f64 / 1000.0,
        "ttfb_ms": {
            "p50": percentile(&ttfb, 0.50),
            "p99": percentile(&ttfb, 0.99),
            "max": percentile(&ttfb, 1.0),
        },
        "bytes": get(&totals.bytes),
        "seconds": secs,
        "kbps_per_listener": get(&totals.bytes) as f64 * 8.0 / 1000.0 / secs / args.listeners as f64,
    });
    eprintln!(
        "loadgen: served {}/{} (refused {}, failed {}, bad status {}, dropped {}), stalled {}, gap > {:?} {} (longest {:.0} ms), ttfb p99 {:.1} ms",
        get(&totals.ok),
        args.listeners,
        get(&totals.refused),
        get(&totals.failed),
        get(&totals.bad_status),
        get(&totals.dropped),
        get(&totals.stalled_listeners),
        args.gap,
        get(&totals.gapped_listeners),
        get(&totals.max_gap_us) as f64 / 1000.0,
        percentile(&ttfb, 0.99)
    );
    println!("{report}");
    Ok(())
}

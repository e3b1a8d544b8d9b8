//! One simulated HLS player: load the live playlist, start where its player would, fetch each
//! segment once in order, reload the playlist (RFC 8216 6.3.4: after the last segment's
//! duration when it changed, half the target duration when it did not) and fetch what is new,
//! until the run ends. Bad answers are counted, never fatal to the run.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::encoding;
use crate::http::{Conn, Response};
use crate::playback::Playback;
use crate::playlist::Playlist;
use crate::profile::{Player, Profile, Request, resolve};

/// A player gives up (the session fails) after this many failed requests in a row.
const MAX_FAILURES_IN_ROW: u32 = 10;

pub struct Target {
    pub addr: SocketAddr,
    /// From here to the end of the run, bytes are also counted in the window totals.
    pub window_start: Instant,
    /// The media playlist's path, e.g. `/live.m3u8`.
    pub path: String,
    pub timeout: Duration,
}

/// What one session saw.
pub struct Stats {
    pub profile: Profile,
    pub failed: Option<String>,
    pub playback: Playback,
    pub playlist_requests: u64,
    pub playlist_not_modified: u64,
    /// Bytes on the wire (heads included, bodies as sent, so compressed when compressed).
    pub playlist_bytes: u64,
    pub segment_requests: u64,
    pub segment_bytes: u64,
    /// The same, of answers that arrived inside the measurement window (steady state: every
    /// player started and past its start-up burst).
    pub window_playlist_bytes: u64,
    pub window_segment_bytes: u64,
    pub playlist_ttfb_ms: Vec<f32>,
    pub segment_ttfb_ms: Vec<f32>,
    /// By HTTP status, or `transport` / `bad_playlist`.
    pub errors: BTreeMap<String, u64>,
    pub reconnects: u64,
    /// Segments that left the playlist before this player got to them.
    pub missed_segments: u64,
    /// The least media buffered when a segment arrived (after playback started): how close
    /// this player came to a stall.
    pub min_buffer: Option<f64>,
    pub seconds: f64,
}

impl Stats {
    fn new(profile: Profile) -> Stats {
        Stats {
            profile,
            failed: None,
            playback: Playback::default(),
            playlist_requests: 0,
            playlist_not_modified: 0,
            playlist_bytes: 0,
            segment_requests: 0,
            segment_bytes: 0,
            window_playlist_bytes: 0,
            window_segment_bytes: 0,
            playlist_ttfb_ms: vec![],
            segment_ttfb_ms: vec![],
            errors: BTreeMap::new(),
            reconnects: 0,
            missed_segments: 0,
            min_buffer: None,
            seconds: 0.0,
        }
    }

    fn error(&mut self, what: impl Into<String>) {
        *self.errors.entry(what.into()).or_default() += 1;
    }
}

fn ms(d: Duration) -> f32 {
    d.as_secs_f32() * 1000.0
}

fn playlist_of(r: &Response) -> anyhow::Result<Playlist> {
    let body = encoding::decode(r.header("content-encoding"), &r.body)?;
    Playlist::parse(std::str::from_utf8(&body).context("playlist is not UTF-8")?)
}

pub async fn run(
    target: &Target,
    profile: Profile,
    index: usize,
    bind: Option<IpAddr>,
    end: Instant,
) -> Stats {
    let origin = Instant::now();
    let secs = |t: Instant| t.duration_since(origin).as_secs_f64();
    let player = Player::new(profile, target.addr.to_string(), index);
    let mut conn = Conn::new(target.addr, bind, target.timeout);
    let mut st = Stats::new(profile);
    // The next segment to fetch (None until the first playlist chose the start).
    let mut next: Option<u64> = None;
    let mut last_end: Option<u64> = None;
    // The ETag of the last playlist, for the URI it came from.
    let mut etag: Option<(String, String)> = None;
    let (mut can_skip, mut target_duration) = (false, 6.0);
    let mut failures_in_row = 0;
    while Instant::now() < end {
        let loaded_at = Instant::now();
        let path =
            player.playlist_path(&target.path, next.is_some() && can_skip && profile.skips());
        let req = player.request(&Request {
            path: &path,
            etag: etag
                .as_ref()
                .filter(|(p, _)| *p == path)
                .map(|(_, e)| e.as_str()),
        });
        st.playlist_requests += 1;
        // Whether the playlist has new segments; None when the request failed.
        let mut changed = None;
        let mut reload_after = target_duration / 2.0;
        match conn.send(&req).await {
            Err(_) => {
                st.error("transport");
                failures_in_row += 1;
            }
            Ok(r) => {
                st.playlist_ttfb_ms.push(ms(r.ttfb));
                st.playlist_bytes += r.wire_bytes;
                if Instant::now() >= target.window_start {
                    st.window_playlist_bytes += r.wire_bytes;
                }
                match r.status {
                    304 => {
                        st.playlist_not_modified += 1;
                        failures_in_row = 0;
                        changed = Some(false);
                    }
                    200 => match playlist_of(&r) {
                        Ok(p) => {
                            failures_in_row = 0;
                            if let Some(e) = r.header("etag") {
                                etag = Some((path.clone(), e.to_string()));
                            }
                            target_duration = p.target_duration;
                            can_skip = p.can_skip_until.is_some();
                            changed = Some(last_end != Some(p.end_msn()));
                            last_end = Some(p.end_msn());
                            if let Some(last) = p.segments.last() {
                                reload_after = last.duration;
                            }
                            let from = next.or_else(|| profile.start(&p));
                            if let Some(from) = from {
                                let n = fetch_segments(
                                    &mut conn,
                                    &player,
                                    &path,
                                    &p,
                                    from,
                                    target.window_start,
                                    end,
                                    &mut st,
                                    &mut failures_in_row,
                                    &secs,
                                )
                                .await;
                                next = Some(n);
                            }
                        }
                        Err(_) => {
                            st.error("bad_playlist");
                            failures_in_row += 1;
                        }
                    },
                    s => {
                        st.error(s.to_string());
                        failures_in_row += 1;
                    }
                }
            }
        }
        if failures_in_row >= MAX_FAILURES_IN_ROW {
            st.failed = Some(format!("{failures_in_row} failed requests in a row"));
            break;
        }
        if changed != Some(true) {
            reload_after = target_duration / 2.0;
        }
        let at = loaded_at + Duration::from_secs_f64(reload_after.max(0.1));
        tokio::time::sleep_until(at.min(end)).await;
    }
    let now = Instant::now().min(end);
    st.playback.finish(secs(now));
    if st.failed.is_none() && !st.playback.started() {
        st.failed = Some("never started playing".into());
    }
    st.reconnects = conn.reconnects;
    st.seconds = secs(now);
    st
}

/// Fetch the segments of `p` from `from` on, each once, in order; returns the next to fetch.
#[allow(clippy::too_many_arguments)]
async fn fetch_segments(
    conn: &mut Conn,
    player: &Player,
    playlist_path: &str,
    p: &Playlist,
    from: u64,
    window_start: Instant,
    end: Instant,
    st: &mut Stats,
    failures_in_row: &mut u32,
    secs: &impl Fn(Instant) -> f64,
) -> u64 {
    let mut next = from;
    if let Some(first) = p.segments.first()
        && next < first.msn
    {
        st.missed_segments += first.msn - next;
        next = first.msn;
    }
    let start = next;
    for s in p.segments.iter().filter(|s| s.msn >= start) {
        if Instant::now() >= end {
            break;
        }
        next = s.msn + 1;
        if s.gap {
            st.playback.gap(s.duration);
            continue;
        }
        let path = resolve(playlist_path, &s.uri);
        st.segment_requests += 1;
        match conn
            .send(&player.request(&Request {
                path: &path,
                etag: None,
            }))
            .await
        {
            Err(_) => {
                st.error("transport");
                *failures_in_row += 1;
            }
            Ok(r) => {
                st.segment_ttfb_ms.push(ms(r.ttfb));
                st.segment_bytes += r.wire_bytes;
                if Instant::now() >= window_start {
                    st.window_segment_bytes += r.wire_bytes;
                }
                if r.status == 200 {
                    *failures_in_row = 0;
                    let now = secs(Instant::now());
                    if st.playback.started() {
                        let b = st.playback.buffered(now);
                        st.min_buffer = Some(st.min_buffer.map_or(b, |m| m.min(b)));
                    }
                    st.playback.segment(now, s.duration);
                } else {
                    st.error(r.status.to_string());
                    *failures_in_row += 1;
                }
            }
        }
        if *failures_in_row >= MAX_FAILURES_IN_ROW {
            break;
        }
    }
    next
}

//! The cursor on a paused tokio clock: burst from the landing position, real-time pacing (also
//! through a source outage), the lag bound, falling out of the buffer, and how it ends. Time only
//! moves when a test moves it, so every expectation is exact.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{Settings, StreamConfig};
use crate::core::chunk::test_chunk;
use crate::core::rewind::Position;
use crate::metrics::Metrics;

/// Content time of the first chunk (any value: pacing is relative to the landing).
const T0: i64 = 1_800_000_000_000_000;
/// The test chunks are 0.5 s long.
const CHUNK_US: i64 = 500_000;

fn stream(rewind: Duration, burst: Duration, max_lag: Duration) -> Arc<Stream> {
    let config = StreamConfig {
        rewind: Some(rewind),
        burst: Some(burst),
        listener_max_lag: Some(max_lag),
        ..Default::default()
    };
    let settings = Settings::defaults("pw".into()).stream("live", &config);
    Arc::new(Stream::new(
        settings,
        false,
        &Metrics::new(),
        None,
        None,
        Duration::from_millis(500),
    ))
}

/// Append chunks `from..to` (by seq; chunk `n` starts at `T0 + n × 0.5 s`).
fn feed(stream: &Stream, from: u64, to: u64) {
    for n in from..to {
        stream.append(test_chunk(n, T0 + n as i64 * CHUNK_US, "t"));
    }
}

fn cursor(stream: &Arc<Stream>, position: Position, shutdown: &CancellationToken) -> Cursor {
    let burst = stream.settings().burst;
    let landing = stream
        .buffer
        .read(|b| b.land(position, burst))
        .expect("audio in the buffer");
    Cursor::new(stream.clone(), landing, None, shutdown.clone())
}

/// The chunks the cursor hands out right now, without time passing, by seq.
fn ready(cursor: &mut Cursor) -> Result<Vec<u64>, End> {
    let mut seqs = vec![];
    loop {
        let mut out = vec![];
        match cursor.next(&mut out).now_or_never() {
            None => return Ok(seqs),
            Some(Ok(_)) => seqs.push(cursor.seq - 1),
            Some(Err(end)) if seqs.is_empty() => return Err(end),
            Some(Err(_)) => return Ok(seqs),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_live_listener_gets_the_burst_then_each_new_chunk() {
    let s = stream(
        Duration::from_secs(3600),
        Duration::from_secs(10),
        Duration::from_secs(30),
    );
    feed(&s, 0, 120); // 60 s
    let shutdown = CancellationToken::new();
    let mut c = cursor(&s, Position::Live, &shutdown);
    // The last 10 s at once: chunks 100..=119.
    assert_eq!(ready(&mut c).unwrap(), (100..120).collect::<Vec<_>>());
    // Then it waits for the source, however long that takes.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(ready(&mut c).unwrap(), Vec::<u64>::new());
    feed(&s, 120, 121);
    assert_eq!(ready(&mut c).unwrap(), vec![120]);
}

#[tokio::test(start_paused = true)]
async fn a_rewound_listener_is_paced_in_real_time_also_through_a_source_outage() {
    let s = stream(
        Duration::from_secs(3600),
        Duration::from_secs(10),
        Duration::from_secs(30),
    );
    feed(&s, 0, 120); // 60 s; the source then stays silent for the whole test
    let shutdown = CancellationToken::new();
    let mut c = cursor(&s, Position::Offset(Duration::from_secs(30)), &shutdown);
    // 30 s behind live: chunk 60 (at 30 s) first, and the burst reaches 10 s past it.
    assert_eq!(ready(&mut c).unwrap(), (60..=80).collect::<Vec<_>>());
    // Chunk 81 (at 40.5 s) is due half a second later, not a moment sooner.
    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(ready(&mut c).unwrap(), Vec::<u64>::new());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(ready(&mut c).unwrap(), vec![81]);
    // Without new audio the listener keeps playing what the buffer holds, at the same pace.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(ready(&mut c).unwrap(), (82..=91).collect::<Vec<_>>());
    let mut got = vec![];
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(5)).await;
        got.extend(ready(&mut c).unwrap());
    }
    assert_eq!(got, (92..120).collect::<Vec<_>>());
    assert_eq!(
        ready(&mut c).unwrap(),
        Vec::<u64>::new(),
        "then waits for audio"
    );
}

#[tokio::test(start_paused = true)]
async fn an_at_listener_starts_at_the_requested_time() {
    let s = stream(
        Duration::from_secs(3600),
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    feed(&s, 0, 120);
    let shutdown = CancellationToken::new();
    // Between chunk starts: the next chunk, never an earlier one.
    let at = T0 + 20 * CHUNK_US + 1;
    let mut c = cursor(&s, Position::At(at), &shutdown);
    assert_eq!(ready(&mut c).unwrap(), (21..=25).collect::<Vec<_>>());
}

/// The bound is on how long a listener's player has gone without audio: it got its burst at once,
/// so it is cut once it is more than burst + `max_lag` behind the live edge.
#[tokio::test(start_paused = true)]
async fn a_listener_that_stops_reading_is_cut_at_the_lag_bound() {
    let max_lag = Duration::from_secs(30);
    let s = stream(Duration::from_secs(3600), Duration::from_secs(10), max_lag);
    feed(&s, 0, 120);
    let shutdown = CancellationToken::new();
    let mut slow = cursor(&s, Position::Live, &shutdown);
    let mut reader = cursor(&s, Position::Live, &shutdown);
    assert_eq!(ready(&mut slow).unwrap(), (100..120).collect::<Vec<_>>());
    assert_eq!(ready(&mut reader).unwrap(), (100..120).collect::<Vec<_>>());
    // The source goes on in real time; `slow` reads nothing for 39.5 s (burst + 29.5 s).
    let mut next = 120;
    let tick = |n: u64, next: &mut u64| {
        for _ in 0..n {
            feed(&s, *next, *next + 1);
            *next += 1;
        }
    };
    for _ in 0..79 {
        tokio::time::advance(Duration::from_millis(500)).await;
        tick(1, &mut next);
        assert_eq!(
            ready(&mut reader).unwrap(),
            vec![next - 1],
            "a reader keeps up"
        );
    }
    let mut out = vec![];
    assert!(
        slow.next(&mut out).now_or_never().unwrap().is_ok(),
        "still within the bound"
    );
    // 1.5 s later its next chunk is 30.5 s past what its player could have played: cut (and
    // counted by the caller), however much it would now read.
    tokio::time::advance(Duration::from_millis(1500)).await;
    tick(3, &mut next);
    assert_eq!(ready(&mut slow), Err(End::Slow("lagging behind")));
    assert_eq!(
        ready(&mut reader).unwrap(),
        vec![next - 3, next - 2, next - 1]
    );
}

#[tokio::test(start_paused = true)]
async fn a_listener_whose_audio_left_the_buffer_is_cut() {
    let s = stream(
        Duration::from_secs(10),
        Duration::from_secs(2),
        Duration::from_secs(3600),
    );
    feed(&s, 0, 20); // exactly 10 s
    let shutdown = CancellationToken::new();
    let mut c = cursor(&s, Position::Offset(Duration::from_secs(9)), &shutdown);
    assert!(!ready(&mut c).unwrap().is_empty());
    // 20 s more audio: what the listener would play next has been evicted.
    feed(&s, 20, 60);
    assert_eq!(
        ready(&mut c),
        Err(End::Slow("fell out of the rewind buffer"))
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_stream_removal_end_a_waiting_listener() {
    let s = stream(
        Duration::from_secs(3600),
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    feed(&s, 0, 10);
    let shutdown = CancellationToken::new();
    let mut c = cursor(&s, Position::Live, &shutdown);
    ready(&mut c).unwrap();
    let waiting = tokio::spawn(async move {
        let mut out = vec![];
        c.next(&mut out).await
    });
    tokio::task::yield_now().await;
    shutdown.cancel();
    // Shutting down wakes listeners through the buffer (as `App` does for a removed stream).
    s.buffer.wake();
    assert_eq!(waiting.await.unwrap(), Err(End::Shutdown));

    let shutdown = CancellationToken::new();
    let mut c = cursor(&s, Position::Live, &shutdown);
    ready(&mut c).unwrap();
    s.removed.cancel();
    s.buffer.wake();
    let mut out = vec![];
    assert_eq!(c.next(&mut out).await, Err(End::StreamRemoved));
}

//! Events, alerts and dead-air failover end to end: real ffmpeg encoders send audio with digital
//! silence in it; `/api/events`, signed webhooks and `/metrics` report it at the configured
//! delays; failover promotes a standby with audio and never a silent one; failing webhook
//! endpoints are retried without holding up the healthy one; broken input and invalid webhook
//! URLs are handled.
//!
//! Timing is checked in content time. The encoders send at twice real time (`Pace::Rate(2)`),
//! which keeps the suite quick: the detector counts 100 ms windows of content, so a 20 s trip
//! delay is 20 s of audio whatever the wall clock says. The content position when an event
//! arrives is the stream's `buffer_seconds` read right then (chunks are 500 ms, so it may lag by
//! that much), and the event data (`since`, `silent_seconds`) is checked against the fixture.

use std::path::{Path, PathBuf};
use std::time::Duration;

use streammachine::core::codec::Format;
use streammachine::core::icy::IcyReader;
use streammachine_e2e::audio::{
    Encoder, Pace, assert_same_bytes, decode, find, fixture, frame_bytes, tone_and_silence,
};
use streammachine_e2e::events::{Answer, EventStream, Receiver, closed_port_url};
use streammachine_e2e::listener::Listener;
use streammachine_e2e::server::{SOURCE_PASSWORD, Server};
use streammachine_e2e::{binary, eventually, require, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(90);
/// A Standard Webhooks secret (the example in docs/events.md).
const SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3";

fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("streammachine.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn with_config(yaml: &str, env: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let dir = temp_dir();
    let path = write_config(dir.path(), yaml);
    let server = Server::start("standalone", &["--config", path.to_str().unwrap()], env).await;
    (server, dir)
}

/// The value of the series `name{...}` whose labels include every one of `labels`.
async fn gauge(server: &Server, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = server.metrics().await;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (set, value) = rest.strip_prefix('{')?.split_once('}')?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().unwrap())
    })
}

async fn counter(server: &Server, name: &str) -> f64 {
    server.metric(&format!("{name} ")).await
}

async fn source_ids(server: &Server, key: &str) -> Vec<u64> {
    server.status(key).await["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

async fn wait_sources(server: &Server, key: &str, n: usize) -> Vec<u64> {
    eventually(&format!("{n} sources on `{key}`"), T, || async {
        let ids = source_ids(server, key).await;
        (ids.len() == n).then_some(ids)
    })
    .await
}

/// Seconds between two RFC 3339 times.
fn seconds_between(from: &str, to: &str) -> f64 {
    let a = from.parse::<jiff::Timestamp>().unwrap().as_microsecond();
    let b = to.parse::<jiff::Timestamp>().unwrap().as_microsecond();
    (b - a) as f64 / 1e6
}

/// Where the stream's content is now, in seconds since the first frame.
async fn content_position(server: &Server, key: &str) -> f64 {
    server.status(key).await["buffer_seconds"].as_f64().unwrap()
}

#[track_caller]
fn assert_near(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got:.2}, expected {want:.2} ± {tolerance}"
    );
}

/// An ICY listener's audio until `n` audio bytes arrived (metadata blocks removed).
async fn icy_audio(l: &mut Listener, n: usize) -> Vec<u8> {
    let metaint: usize = l
        .header("icy-metaint")
        .expect("icy-metaint")
        .parse()
        .unwrap();
    let mut reader = IcyReader::new(metaint);
    let mut audio = Vec::new();
    let mut seen = 0;
    l.read_until("the ICY listener's audio", T, |wire| {
        audio.extend(reader.push(&wire[seen..]).audio);
        seen = wire.len();
        audio.len() >= n
    })
    .await;
    audio
}

/// ffmpeg playing the stream's HLS playlist live for `seconds`, as mono 16-bit PCM at 44.1 kHz.
fn hls_client(url: String, seconds: u32) -> tokio::task::JoinHandle<(Vec<u8>, String)> {
    require("ffmpeg");
    let child = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&url)
        .args(["-t", &seconds.to_string()])
        .args(["-f", "s16le", "-ac", "1", "-ar", "44100", "pipe:1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ffmpeg");
    let pid = child.id();
    tokio::spawn(async move {
        let run =
            tokio::task::spawn_blocking(move || child.wait_with_output().expect("ffmpeg output"));
        let Ok(out) = tokio::time::timeout(Duration::from_secs(120), run).await else {
            streammachine_testkit::sigkill(pid);
            panic!("the HLS client did not finish in 120 s");
        };
        let out = out.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "ffmpeg (HLS) failed: {stderr}");
        // See hls.rs: ffmpeg 5.1's HLS demuxer notes dts going backwards at segment starts.
        let errors = stderr
            .lines()
            .filter(|l| !l.contains("non monotonically increasing dts"))
            .collect::<Vec<_>>()
            .join("\n");
        (out.stdout, errors)
    })
}

/// The longest run of near-zero samples (|x| ≤ 64, under −54 dBFS) in mono s16le PCM, in s.
fn longest_silence(pcm: &[u8]) -> f64 {
    let (mut best, mut run) = (0usize, 0usize);
    for s in pcm.chunks_exact(2) {
        if i16::from_le_bytes([s[0], s[1]]).unsigned_abs() <= 64 {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best as f64 / 44100.0
}

/// Audio, 25 s of digital silence, audio: `source.silence.started` comes 20 s of content into
/// the silence and `source.silence.ended` 3 s of content into the audio after it, over SSE and
/// over a signed webhook with the same id and data; the silence gauges follow; an ICY listener
/// gets every frame (no gap) and an HLS client plays through the silence.
#[tokio::test]
async fn dead_air_is_reported_by_events_webhooks_and_metrics_while_listeners_play_on() {
    let hook = Receiver::start(Answer::Ok).await;
    let (server, _dir) = with_config(
        &format!(
            "webhooks:\n  - url: {}\n    types: [source.silence.*]\n    secret: {SECRET}\n\
             streams:\n  live:\n    silence:\n      trip_after: 20s\n      clear_after: 3s\n",
            hook.url()
        ),
        &[],
    )
    .await;
    let sse = EventStream::open(&server, "type=source.silence.*&stream=live").await;
    let (before, silence, after) = (12.0, 25.0, 20.0);
    let file = tone_and_silence(
        Format::Mp3,
        &[(before, true), (silence, false), (after, true)],
    );
    let sent = frame_bytes(&file, Format::Mp3);
    let _enc = Encoder::push(
        &file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    server.wait_buffer("live", 0.5, T).await;
    let id = source_ids(&server, "live").await[0];
    let id_label = id.to_string();
    let source_silent = [("stream", "live"), ("source", id_label.as_str())];
    // The burst (30 s) reaches back to the first frame: this listener gets all of it.
    let mut icy = Listener::connect(server.listen, "/live", &[("Icy-MetaData", "1")]).await;
    assert_eq!(icy.status, 200);
    assert_eq!(
        gauge(&server, "streammachine_source_silent", &source_silent).await,
        Some(0.0)
    );
    assert_eq!(
        gauge(
            &server,
            "streammachine_stream_silent",
            &[("stream", "live")]
        )
        .await,
        Some(0.0)
    );
    let reading = tokio::spawn(async move {
        let audio = icy_audio(&mut icy, sent.len()).await;
        (audio, sent)
    });
    // An HLS client starting live (three segments from the end) plays on through the silence.
    server.wait_buffer("live", 26.0, T).await;
    let hls = hls_client(server.url("/live.m3u8"), 40);

    let started = sse
        .wait("source.silence.started", T, |e| {
            e["data"]["source_id"] == id
        })
        .await;
    let at = content_position(&server, "live").await;
    assert_near(
        at,
        before + 20.0,
        1.0,
        "content seconds at source.silence.started",
    );
    let data = &started.event["data"];
    assert_near(
        seconds_between(
            data["since"].as_str().unwrap(),
            started.event["time"].as_str().unwrap(),
        ),
        20.0,
        0.2,
        "`since` before the event (the trip delay)",
    );
    assert!(data["level_dbfs"].as_f64().unwrap() < -50.0, "{data}");
    assert_eq!(started.event["stream"], "live");
    eventually("the silence gauges at 1", T, || async {
        let s = gauge(&server, "streammachine_source_silent", &source_silent).await;
        let st = gauge(
            &server,
            "streammachine_stream_silent",
            &[("stream", "live")],
        )
        .await;
        (s == Some(1.0) && st == Some(1.0)).then_some(())
    })
    .await;

    let ended = sse
        .wait("source.silence.ended", T, |e| e["data"]["source_id"] == id)
        .await;
    let at = content_position(&server, "live").await;
    assert_near(
        at,
        before + silence + 3.0,
        1.0,
        "content seconds at source.silence.ended",
    );
    assert_near(
        ended.event["data"]["silent_seconds"].as_f64().unwrap(),
        silence,
        0.5,
        "silent_seconds",
    );
    eventually("the silence gauges back at 0", T, || async {
        let s = gauge(&server, "streammachine_source_silent", &source_silent).await;
        let st = gauge(
            &server,
            "streammachine_stream_silent",
            &[("stream", "live")],
        )
        .await;
        (s == Some(0.0) && st == Some(0.0)).then_some(())
    })
    .await;
    // Exactly one alarm and one all-clear.
    assert_eq!(sse.of("source.silence.started").len(), 1);
    assert_eq!(sse.of("source.silence.ended").len(), 1);

    // The webhook got both, signed, as CloudEvents, with the SSE events' ids and data.
    let reqs = hook
        .wait_for("two webhook deliveries", T, |r| r.len() >= 2)
        .await;
    assert_eq!(reqs.len(), 2, "one delivery per event");
    for (req, sse_event) in reqs.iter().zip([&started.event, &ended.event]) {
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.header("content-type"),
            Some("application/cloudevents+json")
        );
        assert!(req.signed_with(SECRET), "bad signature: {req:?}");
        assert!(!req.signed_with("whsec_b3RoZXItc2VjcmV0LWtleS0xMjM0"));
        let body = req.json();
        assert_eq!(req.header("webhook-id"), sse_event["id"].as_str());
        assert_eq!(body["id"], sse_event["id"]);
        assert_eq!(
            body["type"],
            format!("io.streammachine.{}", sse_event["type"].as_str().unwrap())
        );
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["subject"], "live");
        assert_eq!(body["data"], sse_event["data"]);
    }

    // Listeners: the ICY one got every frame the encoder sent, in order, and it decodes; the
    // HLS one played 40 s without an error, with the silence (and audio around it) in full.
    let (audio, sent) = reading.await.unwrap();
    assert_same_bytes(
        &audio[..sent.len()],
        &sent,
        "ICY audio vs the encoder's frames",
    );
    let (secs, errors) = decode(&audio, Format::Mp3);
    assert!(errors.is_empty(), "decoder errors: {errors}");
    assert_near(secs, before + silence + after, 0.2, "decoded seconds (ICY)");
    let (pcm, errors) = hls.await.unwrap();
    assert!(errors.trim().is_empty(), "HLS client: {errors}");
    assert_near(
        pcm.len() as f64 / 88200.0,
        40.0,
        0.1,
        "seconds played (HLS)",
    );
    assert_near(longest_silence(&pcm), silence, 0.3, "silence played (HLS)");
    assert!(
        longest_silence(&pcm) < pcm.len() as f64 / 88200.0 - 1.0,
        "audio around the silence"
    );
}

const FAILOVER: &str = "streams:\n  live:\n    silence:\n      trip_after: 4s\n      clear_after: 1s\n      action: failover\n";

/// The live encoder goes silent while a standby sends audio: after the trip delay (4 s of
/// content) the standby is live (`source.promoted`, `by: failover`), and a listener's connection
/// carries on with the standby's audio, decoding throughout.
#[tokio::test]
async fn failover_promotes_a_standby_with_audio_after_the_trip_delay() {
    let (server, _dir) = with_config(FAILOVER, &[]).await;
    let sse = EventStream::open(&server, "type=source.*&stream=live").await;
    let a_file = tone_and_silence(Format::Mp3, &[(3.0, true), (40.0, false)]);
    let a_frames = frame_bytes(&a_file, Format::Mp3);
    let b_file = fixture(Format::Mp3, 60, 31);
    let b_frames = frame_bytes(&b_file, Format::Mp3);
    let _a = Encoder::push(
        &a_file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    server.wait_buffer("live", 0.5, T).await;
    let mut l = Listener::connect(server.listen, "/live", &[]).await;
    let _b = Encoder::push(
        &b_file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    let ids = wait_sources(&server, "live", 2).await;
    let (a, b) = (ids[0], ids[1]);

    let silent = sse
        .wait("source.silence.started", T, |e| e["data"]["source_id"] == a)
        .await;
    let promoted = sse
        .wait("source.promoted", T, |e| e["data"]["source_id"] == b)
        .await;
    let at = content_position(&server, "live").await;
    assert_eq!(promoted.event["data"]["by"], "failover");
    assert!(promoted.at >= silent.at, "promoted before the alarm");
    assert_near(at, 3.0 + 4.0, 1.0, "content seconds at the failover");
    assert_eq!(source_ids(&server, "live").await, [b, a]);
    assert_eq!(sse.of("source.promoted").len(), 1);

    // The listener's connection carries A's tone and silence, then B's audio; all of it decodes.
    let got = l
        .read_until("B's audio on the same connection", T, |got| {
            got.len() > 200_000 && find(&b_frames, &got[got.len() - 4000..]).is_some()
        })
        .await;
    assert!(
        find(&got, &a_frames[16_000..20_000]).is_some(),
        "A's audio came first"
    );
    let (_, errors) = decode(&got, Format::Mp3);
    assert!(errors.is_empty(), "decoder errors: {errors}");
    assert!(!l.closed_within(Duration::from_millis(200)).await);
}

/// Both the live source and the standby are silent: the live one trips, and the silent standby
/// is not promoted however long the dead air lasts; a third source with audio is, passing over
/// the silent one.
#[tokio::test]
async fn failover_never_promotes_a_silent_standby() {
    let (server, _dir) = with_config(FAILOVER, &[]).await;
    let sse = EventStream::open(&server, "type=source.*&stream=live").await;
    let a_file = tone_and_silence(Format::Mp3, &[(2.0, true), (60.0, false)]);
    let b_file = tone_and_silence(Format::Mp3, &[(60.0, false)]);
    let _a = Encoder::push(
        &a_file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    server.wait_buffer("live", 0.5, T).await;
    let mut l = Listener::connect(server.listen, "/live", &[]).await;
    let _b = Encoder::push(
        &b_file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    let ids = wait_sources(&server, "live", 2).await;
    let (a, b) = (ids[0], ids[1]);
    for id in [a, b] {
        sse.wait("source.silence.started", T, |e| {
            e["data"]["source_id"] == id
        })
        .await;
    }
    // Every frame A sends now is a chance to fail over: 6 s more of them.
    let now = content_position(&server, "live").await;
    server.wait_buffer("live", now + 6.0, T).await;
    assert!(
        sse.of("source.promoted").is_empty(),
        "a silent standby was promoted: {:?}",
        sse.of("source.promoted")
    );
    assert_eq!(source_ids(&server, "live").await, [a, b]);

    // A third source with audio is promoted, passing over the silent B.
    let _c = Encoder::push(
        &fixture(Format::Mp3, 60, 32),
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    // (It may be live already when the list is read, so it is the id that is neither A nor B.)
    let ids = wait_sources(&server, "live", 3).await;
    let c = *ids.iter().find(|&&id| id != a && id != b).unwrap();
    let promoted = sse.wait("source.promoted", T, |_| true).await;
    assert_eq!(promoted.event["data"]["source_id"], c);
    assert_eq!(promoted.event["data"]["by"], "failover");
    assert_eq!(source_ids(&server, "live").await[0], c);
    // The listener was never cut off.
    let got = l.read_bytes(100_000, T).await;
    assert_eq!(got.len(), 100_000);
    let (_, errors) = decode(&got, Format::Mp3);
    assert!(errors.is_empty(), "decoder errors: {errors}");
}

/// Four endpoints: a healthy one (checking the signature), one answering 500, one that accepts
/// and never answers, one that is down. The failing ones are retried with growing delays and
/// given up (counted); the healthy one gets every event promptly all the while, and the
/// listener keeps receiving.
#[tokio::test]
async fn failing_webhooks_are_retried_and_do_not_delay_the_healthy_one() {
    let healthy = Receiver::start(Answer::Ok).await;
    let failing = Receiver::start(Answer::Status(500)).await;
    let hanging = Receiver::start(Answer::Hang).await;
    let down = closed_port_url();
    let (server, _dir) = with_config(
        &format!(
            "webhooks:\n  - url: {}\n    secret: {SECRET}\n  - url: {}\n  - url: {}\n  - url: {down}\n\
             streams:\n  live: {{}}\n",
            healthy.url(),
            failing.url(),
            hanging.url()
        ),
        &[
            ("STREAMMACHINE_WEBHOOK_RETRY_FIRST", "200ms"),
            ("STREAMMACHINE_WEBHOOK_GIVE_UP_AFTER", "4s"),
        ],
    )
    .await;
    let sse = EventStream::open(&server, "type=stream.metadata.changed").await;
    let _enc = Encoder::push(
        &fixture(Format::Mp3, 120, 33),
        Format::Mp3,
        &server.source_url("live"),
        Pace::RealTime,
        false,
    );
    server.wait_buffer("live", 1.0, T).await;
    let mut l = Listener::connect(server.listen, "/live", &[]).await;

    // Five title changes, one every 300 ms: each reaches the healthy endpoint within a second
    // of being raised, while the others are stuck retrying their first events.
    for i in 0..5 {
        let r = server
            .http
            .get(server.url(&format!(
                "/admin/metadata?mount=/live&mode=updinfo&song=Song+{i}"
            )))
            .basic_auth("source", Some(SOURCE_PASSWORD))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let raised = sse
            .wait("stream.metadata.changed", T, |e| {
                e["data"]["title"] == format!("Song {i}")
            })
            .await;
        let id = raised.event["id"].as_str().unwrap().to_string();
        let reqs = healthy
            .wait_for(&format!("delivery of {id}"), T, |r| {
                r.iter().any(|q| q.header("webhook-id") == Some(&id))
            })
            .await;
        let req = reqs
            .iter()
            .find(|q| q.header("webhook-id") == Some(&id))
            .unwrap();
        assert!(
            req.at.duration_since(raised.at) < Duration::from_secs(1),
            "delivery of {id} took {:?}",
            req.at.duration_since(raised.at)
        );
        assert!(req.signed_with(SECRET), "bad signature: {req:?}");
        assert_eq!(req.json()["data"]["title"], format!("Song {i}"));
        let got = l.read_bytes(4_000, Duration::from_secs(2)).await;
        assert_eq!(got.len(), 4_000, "the listener stalled");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The 500 endpoint: the first event it was sent, attempted again and again with growing
    // delays (200 ms doubling, plus jitter), until given up after 4 s.
    let reqs = failing
        .wait_for("the first event given up on", T, |r| {
            r.iter()
                .filter_map(|q| q.header("webhook-id"))
                .collect::<std::collections::HashSet<_>>()
                .len()
                >= 2
        })
        .await;
    let first = reqs[0].header("webhook-id").unwrap().to_string();
    let attempts: Vec<_> = reqs
        .iter()
        .filter(|q| q.header("webhook-id") == Some(&first))
        .map(|q| q.at)
        .collect();
    assert!(
        (4..=12).contains(&attempts.len()),
        "{} attempts of one event",
        attempts.len()
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(190), "{gaps:?}");
    assert!(gaps[2] > gaps[0], "the delays grow: {gaps:?}");
    assert!(attempts[attempts.len() - 1] - attempts[0] < Duration::from_secs(4));
    // Signed only where a secret is configured.
    assert!(reqs[0].header("webhook-signature").is_none());
    // The hanging endpoint got the request and never answered.
    assert!(!hanging.requests().is_empty());
    eventually("retries and failures counted", T, || async {
        let retries = counter(&server, "streammachine_webhook_retries_total").await;
        let failures = counter(&server, "streammachine_webhook_failures_total").await;
        // The 500 and the down endpoint give up on each event after 4 s (the hanging one
        // only after its first 10 s attempt, which this does not wait for).
        (retries >= 6.0 && failures >= 3.0).then_some(())
    })
    .await;
    assert!(counter(&server, "streammachine_webhook_deliveries_total").await >= 5.0);
    let got = l.read_bytes(10_001, Duration::from_millis(1500)).await;
    assert!(got.len() > 10_000, "the listener stalled");
}

/// Pseudo-random bytes without MP3 sync words.
fn garbage(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8 & 0x7F
        })
        .collect()
}

/// A source whose first 6 s are broken (frames with valid headers and garbage payloads, garbage
/// bytes between frames) and then has 8 s of real silence: the stream keeps serving, the
/// detector survives the garbage (it still trips on the silence and clears after it) and the
/// server stays up.
#[tokio::test]
async fn frames_that_do_not_decode_do_not_stop_the_detector_or_the_stream() {
    let (server, _dir) = with_config(
        "streams:\n  live:\n    silence:\n      trip_after: 2s\n      clear_after: 1s\n",
        &[],
    )
    .await;
    let sse = EventStream::open(&server, "type=source.silence.*").await;
    let file = tone_and_silence(Format::Mp3, &[(6.0, true), (8.0, false), (20.0, true)]);
    let data = std::fs::read(&file).unwrap();
    let frames = streammachine::core::codec::frames_of(Format::Mp3, &data);
    let mut body = Vec::new();
    let mut broken = 0;
    for (i, f) in frames.iter().enumerate() {
        if i < 230 && i % 4 == 1 {
            // The header stays, the payload is noise.
            body.extend_from_slice(&f.data[..4]);
            body.extend(garbage(f.data.len() - 4, i as u32));
            broken += 1;
        } else {
            body.extend_from_slice(&f.data);
        }
        if i < 230 && i % 10 == 5 {
            body.extend(garbage(60, 7 * i as u32));
        }
    }
    assert!(broken > 50);
    let mut s = TcpStream::connect(server.listen).await.unwrap();
    s.write_all(b"PUT /live HTTP/1.1\r\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\r\nContent-Type: audio/mpeg\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 25];
    s.read_exact(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 100 Continue"));
    // Four times real time (16 kB/s of MP3), from a task that holds the connection open after.
    let sender = tokio::spawn(async move {
        for piece in body.chunks(6_400) {
            s.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    });
    server.wait_buffer("live", 1.0, T).await;
    let mut l = Listener::connect(server.listen, "/live", &[]).await;
    let started = sse.wait("source.silence.started", T, |_| true).await;
    let at = content_position(&server, "live").await;
    assert_near(
        at,
        6.0 + 2.0,
        1.0,
        "content seconds at source.silence.started",
    );
    assert!(started.event["data"]["since"].is_string());
    sse.wait("source.silence.ended", T, |_| true).await;
    let _s = sender.await.unwrap();
    assert_eq!(server.status("live").await["source_connected"], true);
    assert!(
        server.log_lines("Dead-air detection is off").is_empty(),
        "the detector stopped"
    );
    let got = l.read_bytes(50_000, T).await;
    assert_eq!(got.len(), 50_000, "the listener stalled");
    let mut server = server;
    assert!(server.is_running());
}

/// Run the binary with a config file; it must refuse it: (exit status, stderr + stdout).
async fn refused(yaml: &str) -> (std::process::ExitStatus, String) {
    let dir = temp_dir();
    let path = write_config(dir.path(), yaml);
    let child = std::process::Command::new(binary())
        .args(["standalone", "--config", path.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start streammachine");
    let pid = child.id();
    let run = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let Ok(out) = tokio::time::timeout(Duration::from_secs(30), run).await else {
        streammachine_testkit::sigkill(pid);
        panic!("the server started with an invalid config");
    };
    let out = out.unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status, text)
}

#[tokio::test]
async fn invalid_webhook_urls_are_refused_at_startup_with_the_key_named() {
    let (status, text) =
        refused("webhooks:\n  - url: http://127.0.0.1:9/ok\n  - url: not-a-url\n").await;
    assert!(!status.success());
    assert!(
        text.contains("webhooks[1]") && text.contains("url"),
        "{text}"
    );
    let (status, text) =
        refused("streams:\n  live:\n    webhooks:\n      - url: ftp://example.net/hook\n").await;
    assert!(!status.success());
    assert!(text.contains("streams.live.webhooks[0]"), "{text}");
    let (status, text) = refused(
        "streams:\n  live:\n    webhooks:\n      - url: http://127.0.0.1:9/ok\n        secret: short\n",
    )
    .await;
    assert!(!status.success());
    assert!(
        text.contains("streams.live.webhooks[0]") && text.contains("secret"),
        "{text}"
    );
    // The same file with a valid URL starts (the refusals were about the URL).
    let (server, _dir) = with_config(
        "streams:\n  live:\n    webhooks:\n      - url: http://127.0.0.1:9/ok\n",
        &[],
    )
    .await;
    assert!(server.status("live").await.is_object());
}

//! The standalone server end to end: real ffmpeg encoders in, real ffmpeg decoding what comes out.

use std::time::Duration;

use serde_json::json;
use streammachine::core::chunk::Chunk;
use streammachine::core::codec::Format;
use streammachine::core::icy::IcyReader;
use streammachine_e2e::audio::{
    Encoder, Pace, assert_same_bytes, decode, find, fixture, frame_bytes, probe,
};
use streammachine_e2e::listener::Listener;
use streammachine_e2e::server::{SOURCE_PASSWORD, Server};
use streammachine_e2e::{eventually, temp_dir};

const T: Duration = Duration::from_secs(60);

async fn dump(server: &Server, key: &str) -> Vec<Chunk> {
    let r = server
        .admin_get(&format!("/api/streams/{key}/rewind"))
        .await;
    assert!(r.status().is_success());
    let bytes = r.bytes().await.expect("dump body");
    streammachine::core::dump::decode(key, &bytes).expect("valid dump")
}

fn rfc3339(micros: i64) -> String {
    streammachine::time::rfc3339(micros)
}

async fn ingest_and_decode(format: Format, legacy: bool) {
    let server = Server::standalone(&["--stream", "live", "--stream", "news:aac"]).await;
    let key = if format == Format::Mp3 {
        "live"
    } else {
        "news"
    };
    // ffmpeg's legacy SOURCE mode never reads the server's reply, so closing its socket resets
    // the connection and the kernel drops what the server has not read yet: pushed at real time
    // that is a frame or two at the very end, pushed flat out it would be most of the file.
    let (seconds, pace) = if legacy {
        (6, Pace::RealTime)
    } else {
        (20, Pace::Fast)
    };
    let file = fixture(format, seconds, 1);
    let encoder = Encoder::push(&file, format, &server.source_url(key), pace, legacy);
    assert!(encoder.wait(T).await.success(), "ffmpeg reported an error");
    let status = server
        .wait_settled(key, Duration::from_millis(500), T)
        .await;
    let held = status["buffer_bytes"].as_u64().unwrap() as usize;

    // A new listener gets the burst (30 s, more than the whole buffer).
    let mut l = Listener::connect(server.listen, &format!("/{key}"), &[]).await;
    assert_eq!(l.status, 200);
    assert_eq!(l.header("content-type"), Some(format.content_type()));
    let got = l.read_bytes(held, Duration::from_secs(20)).await;
    assert_eq!(got.len(), held);

    // Bytes pass through untouched, and decode as the encoder's audio.
    let sent = frame_bytes(&file, format);
    if legacy {
        assert!(
            got.len() + 2048 > sent.len(),
            "lost more than the reset tail"
        );
        assert_same_bytes(
            &got,
            &sent[..got.len()],
            "served bytes vs the encoder's frames",
        );
    } else {
        assert_same_bytes(&got, &sent, "served bytes vs the encoder's frames");
    }
    let p = probe(&got, format);
    assert_eq!(p.codec, if format == Format::Mp3 { "mp3" } else { "aac" });
    assert_eq!((p.sample_rate, p.channels), (44100, 2));
    let (secs, errors) = decode(&got, format);
    assert!(errors.is_empty(), "decoder errors: {errors}");
    assert!(
        (secs - f64::from(seconds)).abs() < 0.15,
        "decoded {secs} s, expected {seconds} s"
    );
    let codec = status["codec"].as_str().unwrap();
    assert_eq!(
        codec,
        if format == Format::Mp3 {
            "mp3-44100-128-s"
        } else {
            "aac-44100-2-2"
        }
    );
}

#[tokio::test]
async fn mp3_put_source_is_served_and_decodes() {
    ingest_and_decode(Format::Mp3, false).await;
}

#[tokio::test]
async fn mp3_legacy_source_method_is_served_and_decodes() {
    ingest_and_decode(Format::Mp3, true).await;
}

#[tokio::test]
async fn aac_put_source_is_served_and_decodes() {
    ingest_and_decode(Format::Aac, false).await;
}

#[tokio::test]
async fn aac_legacy_source_method_is_served_and_decodes() {
    ingest_and_decode(Format::Aac, true).await;
}

/// Audio bytes and (position, title) of each metadata block.
fn demux_icy(wire: &[u8], metaint: usize) -> (Vec<u8>, Vec<(usize, String)>) {
    let mut r = IcyReader::new(metaint);
    let out = r.push(wire);
    let metas = out
        .metadata
        .into_iter()
        .map(|(at, m)| (at, m.title.unwrap_or_default()))
        .collect();
    (out.audio, metas)
}

#[tokio::test]
async fn icy_titles_change_at_the_audio_position_also_when_rewound() {
    let server = Server::standalone(&["--stream", "live", "--burst", "1s"]).await;
    let file = fixture(Format::Mp3, 60, 2);
    // Twice real time: titles land at content positions, whatever the wall clock says.
    let _enc = Encoder::push(
        &file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    server.wait_buffer("live", 2.0, T).await;
    // Icecast's metadata request, authenticated with the source password.
    let r = server
        .http
        .get(server.url("/admin/metadata?mount=/live&mode=updinfo&song=First+Song"))
        .basic_auth("source", Some(SOURCE_PASSWORD))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Metadata update successful")
    );
    server.wait_buffer("live", 4.5, T).await;
    let r = server
        .admin_post(
            "/api/streams/live/metadata",
            json!({"title": "Artist - Second"}),
        )
        .await;
    assert!(r.status().is_success());
    server.wait_buffer("live", 6.5, T).await;

    let chunks = dump(&server, "live").await;
    // Byte positions (from the oldest chunk) where each title starts.
    let mut changes = vec![];
    let mut pos = 0;
    let mut last = None;
    for c in &chunks {
        if last.as_deref() != Some(c.meta.title.as_str()) {
            changes.push((pos, c.meta.title.clone()));
            last = Some(c.meta.title.clone());
        }
        pos += c.data.len();
    }
    assert_eq!(
        changes.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        vec!["", "First Song", "Artist - Second"]
    );

    // A listener rewound to the start of the buffer.
    let mut l =
        Listener::connect(server.listen, "/live?offset=3600", &[("Icy-MetaData", "1")]).await;
    assert_eq!(l.header("icy-metaint"), Some("16000"));
    assert_eq!(l.header("x-rewind-clamped"), Some("1"));
    let need = changes[2].0 + 3 * 16000;
    let wire = l.read_bytes(need + need / 16000 * 100, T).await;
    let (audio, metas) = demux_icy(&wire, 16000);
    assert_same_bytes(
        &audio[..chunks[0].data.len()],
        &chunks[0].data,
        "start of the rewound stream",
    );
    // Each title is announced by the first metadata block after the audio where it starts.
    for (p, title) in &changes {
        let expected = (p / 16000 + 1) * 16000;
        let seen = metas.iter().find(|(_, t)| t == title).map(|(at, _)| *at);
        assert_eq!(
            seen,
            Some(expected),
            "title `{title}` starting at byte {p}: {metas:?}"
        );
    }
    // Each title is announced once, then empty blocks until the next change.
    assert_eq!(metas.len(), 3, "{metas:?}");

    // A live listener hears the current title first.
    let mut live = Listener::connect(server.listen, "/live", &[("Icy-MetaData", "1")]).await;
    let wire = live.read_bytes(16001 + 4096, T).await;
    let (_, metas) = demux_icy(&wire, 16000);
    assert_eq!(metas[0], (16000, "Artist - Second".to_string()));
}

#[tokio::test]
async fn rewind_offset_pump_and_at_serve_the_bytes_sent_earlier() {
    let server = Server::standalone(&["--stream", "live"]).await;
    let file = fixture(Format::Mp3, 120, 3);
    let frames = frame_bytes(&file, Format::Mp3);
    assert!(
        Encoder::push(
            &file,
            Format::Mp3,
            &server.source_url("live"),
            Pace::Fast,
            false
        )
        .wait(T)
        .await
        .success()
    );
    let status = server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    let held = status["buffer_seconds"].as_f64().unwrap();
    assert!((held - 120.0).abs() < 0.1, "buffer holds {held} s");

    // The pumper: 10 s starting 60 s behind live.
    let r = server.get("/live?pump=10&from=60").await;
    assert_eq!(r.status(), 200);
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let pumped = r.bytes().await.unwrap().to_vec();
    assert_eq!(pumped.len(), len);
    let at = find(&frames, &pumped).expect("pumped bytes are a range of what the encoder sent");
    let frame_secs = 1152.0 / 44100.0;
    let start = (at / 417) as f64 * frame_secs; // 128 kbps frames are 417/418 bytes
    assert!(
        (start - 60.0).abs() < 0.8,
        "pump starts {start} s into the file, expected 60 s"
    );
    let (secs, errors) = decode(&pumped, Format::Mp3);
    assert!(errors.is_empty(), "{errors}");
    assert!((secs - 10.0).abs() < 0.6, "pumped {secs} s");

    // A listener at ?offset=60 starts with exactly those bytes (its burst starts there).
    let mut l = Listener::connect(server.listen, "/live?offset=60", &[]).await;
    let got = l.read_bytes(pumped.len(), T).await;
    assert_same_bytes(&got, &pumped, "?offset=60 vs ?pump=10&from=60");
    let offset: f64 = l.header("x-rewind-offset").unwrap().parse().unwrap();
    assert!((offset - 60.0).abs() < 0.6, "landed {offset} s behind live");

    // ?at= lands on the first chunk at or after the requested time, never before it.
    let chunks = dump(&server, "live").await;
    let k = 40;
    let target = (chunks[k].ts / 1000 + 100) * 1000; // 100 ms into chunk k
    let mut l =
        Listener::connect(server.listen, &format!("/live?at={}", rfc3339(target)), &[]).await;
    assert_eq!(
        l.header("x-rewind-start"),
        Some(rfc3339(chunks[k + 1].ts).as_str())
    );
    let got = l.read_bytes(chunks[k + 1].data.len(), T).await;
    assert_same_bytes(&got, &chunks[k + 1].data, "?at= start");

    // Pump by absolute time too.
    let r = server
        .get(&format!("/live?pump=1&at={}", rfc3339(chunks[10].ts)))
        .await;
    let body = r.bytes().await.unwrap();
    assert_same_bytes(
        &body[..chunks[10].data.len()],
        &chunks[10].data,
        "pump from ?at=",
    );
}

#[tokio::test]
async fn standby_takes_over_and_the_listener_keeps_decoding() {
    let server = Server::standalone(&["--stream", "live"]).await;
    let a_file = fixture(Format::Mp3, 60, 4);
    let b_file = fixture(Format::Mp3, 60, 5);
    let b_frames = frame_bytes(&b_file, Format::Mp3);
    // Twice real time: both stay on air (30 s) for longer than the test needs.
    let a = Encoder::push(
        &a_file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    server.wait_buffer("live", 1.0, T).await;
    let _b = Encoder::push(
        &b_file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    eventually("a standby source", T, || async {
        let s = server.status("live").await;
        (s["sources"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    let mut l = Listener::connect(server.listen, "/live", &[]).await;
    // The burst (a second or more of A) arrives at once.
    let before = l.read_bytes(16_000, T).await;
    assert_eq!(before.len(), 16_000);
    assert!(
        find(&b_frames, &before[before.len() - 2000..]).is_none(),
        "B is not live yet"
    );

    a.kill();
    let s = eventually("the standby to go live", T, || async {
        let s = server.status("live").await;
        (s["sources"].as_array().unwrap().len() == 1).then_some(s)
    })
    .await;
    assert_eq!(s["source_connected"], true);
    server.wait_log("Source disconnected.").await;

    // The same connection carries B's audio now (it keeps receiving until B's frames arrive),
    // and it decodes.
    let after = l
        .read_until("source B's audio on the same connection", T, |got| {
            got.len() > 30_000 && find(&b_frames, &got[got.len() - 4000..]).is_some()
        })
        .await;
    // Where B starts: after the switch every window lies inside B's contiguous audio, before it
    // none does, so a binary search finds the first one (a linear scan is quadratic).
    let in_b = |i: usize| find(&b_frames, &after[i..i + 417]).is_some();
    let b_start = (0..after.len() - 417)
        .collect::<Vec<_>>()
        .partition_point(|&i| !in_b(i));
    assert!(b_start < after.len() - 417, "B's frames in the stream");
    let (_, errors) = decode(&after[b_start..], Format::Mp3);
    assert!(errors.is_empty(), "{errors}");
    // The switch is marked as a discontinuity in the buffer.
    let chunks = dump(&server, "live").await;
    assert!(chunks.iter().skip(1).any(Chunk::is_discontinuity));
}

#[tokio::test]
async fn admin_api_promotes_a_standby_source() {
    let server = Server::standalone(&["--stream", "live"]).await;
    let a = fixture(Format::Mp3, 60, 4);
    let b = fixture(Format::Mp3, 60, 5);
    let b_frames = frame_bytes(&b, Format::Mp3);
    // Twice real time: both stay on air (30 s) for longer than the test needs.
    let _a = Encoder::push(
        &a,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    server.wait_buffer("live", 1.0, T).await;
    let _b = Encoder::push(
        &b,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    let sources = eventually("two sources", T, || async {
        let r = server.admin_get("/api/streams/live/sources").await;
        let v: serde_json::Value = r.json().await.unwrap();
        (v.as_array().unwrap().len() == 2).then_some(v)
    })
    .await;
    let standby = sources[1]["id"].as_u64().unwrap();
    let r = server
        .admin_post(
            &format!("/api/streams/live/sources/{standby}/promote"),
            json!({}),
        )
        .await;
    assert!(r.status().is_success());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v[0]["id"].as_u64(), Some(standby));
    let r = server
        .admin_post("/api/streams/live/sources/999/promote", json!({}))
        .await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    let mut l = Listener::connect(server.listen, "/live?offset=0", &[]).await;
    l.read_until("the promoted source's audio", T, |got| {
        got.len() >= 2000 && find(&b_frames, &got[got.len() - 2000..]).is_some()
    })
    .await;
}

#[tokio::test]
async fn file_fallback_plays_until_an_encoder_connects() {
    let dir = temp_dir();
    let fallback = fixture(Format::Mp3, 10, 6);
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "streams:\n  live:\n    format: mp3\n    fallback: file://{}\n",
            fallback.display()
        ),
    )
    .unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    let s = server.wait_buffer("live", 1.0, T).await;
    assert_eq!(s["sources"][0]["kind"], "fallback");
    let mut l = Listener::connect(server.listen, "/live", &[]).await;
    // Two seconds of audio (the burst holds at least one).
    let got = l.read_bytes(32_000, T).await;
    let (secs, errors) = decode(&got, Format::Mp3);
    assert!(errors.is_empty() && secs > 1.0, "{secs} s, {errors}");
    assert!(
        find(
            &frame_bytes(&fallback, Format::Mp3),
            &got[got.len() - 1000..]
        )
        .is_some()
    );

    // An encoder connects: the fallback yields at once; when it leaves, the fallback resumes.
    let enc = fixture(Format::Mp3, 5, 7);
    let encoder = Encoder::push(
        &enc,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    eventually("the encoder to be live alone", T, || async {
        let s = server.status("live").await;
        let kinds: Vec<String> = s["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["kind"].as_str().unwrap().to_string())
            .collect();
        (kinds == ["encoder"]).then_some(())
    })
    .await;
    assert!(encoder.wait(T).await.success());
    eventually("the fallback to resume", T, || async {
        let s = server.status("live").await;
        (s["sources"][0]["kind"] == "fallback").then_some(())
    })
    .await;
}

#[tokio::test]
async fn relay_fallback_pulls_audio_and_in_band_titles() {
    let upstream = Server::standalone(&["--stream", "live"]).await;
    let file = fixture(Format::Mp3, 60, 8);
    let _enc = Encoder::push(
        &file,
        Format::Mp3,
        &upstream.source_url("live"),
        Pace::RealTime,
        false,
    );
    upstream.wait_buffer("live", 1.0, T).await;
    let dir = temp_dir();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "burst: 2s\nstreams:\n  relay:\n    fallback: {}\n",
            upstream.url("/live")
        ),
    )
    .unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    let s = server.wait_buffer("relay", 1.0, T).await;
    assert_eq!(s["sources"][0]["kind"], "fallback");
    let r = upstream
        .admin_post(
            "/api/streams/live/metadata",
            json!({"title": "Relayed Title"}),
        )
        .await;
    assert!(r.status().is_success());
    eventually("the relayed title", T, || async {
        let s = server.status("relay").await;
        (s["title"] == "Relayed Title").then_some(())
    })
    .await;
    let mut l = Listener::connect(server.listen, "/relay", &[]).await;
    let got = l.read_bytes(16_000, T).await;
    assert_eq!(got.len(), 16_000);
    assert!(find(&frame_bytes(&file, Format::Mp3), &got[got.len() - 1000..]).is_some());
}

#[tokio::test]
async fn dumps_survive_a_restart_and_bad_dumps_are_ignored() {
    let dir = temp_dir();
    let dump_dir = dir.path().to_str().unwrap();
    let mut server = Server::standalone(&["--stream", "live", "--dump-dir", dump_dir]).await;
    let file = fixture(Format::Mp3, 30, 9);
    assert!(
        Encoder::push(
            &file,
            Format::Mp3,
            &server.source_url("live"),
            Pace::Fast,
            false
        )
        .wait(T)
        .await
        .success()
    );
    let before = server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    let pumped = server
        .get("/live?pump=30&from=30")
        .await
        .bytes()
        .await
        .unwrap();
    assert!(server.terminate().await.success());
    assert!(dir.path().join("live.dump").exists());

    let server = Server::standalone(&["--stream", "live", "--dump-dir", dump_dir]).await;
    server.wait_log("Rewind buffer restored from dump.").await;
    let after = server.status("live").await;
    assert_eq!(after["first_seq"], before["first_seq"]);
    assert_eq!(after["last_seq"], before["last_seq"]);
    let again = server
        .get("/live?pump=30&from=30")
        .await
        .bytes()
        .await
        .unwrap();
    assert_same_bytes(&again, &pumped, "rewound audio from before the restart");
    // New audio continues the sequence numbers.
    assert!(
        Encoder::push(
            &fixture(Format::Mp3, 5, 10),
            Format::Mp3,
            &server.source_url("live"),
            Pace::Fast,
            false
        )
        .wait(T)
        .await
        .success()
    );
    let later = server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    assert!(later["last_seq"].as_u64() > before["last_seq"].as_u64());
    drop(server);

    std::fs::write(dir.path().join("live.dump"), b"this is not a dump").unwrap();
    let server = Server::standalone(&["--stream", "live", "--dump-dir", dump_dir]).await;
    server.wait_log("Ignoring unusable rewind dump").await;
    assert_eq!(server.status("live").await["buffer_seconds"], 0.0);
}

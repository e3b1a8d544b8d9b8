//! HLS end to end: real ffmpeg plays our playlists (live, and from `?at=` minutes back), two
//! servers holding the same chunks serve identical playlists and segments, a title change inside
//! a segment is a timed ID3 frame ffprobe reads at the right offset, groups and listener counts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use streammachine::core::chunk::{Chunk, Meta};
use streammachine::core::chunker::Chunker;
use streammachine::core::codec::{Format, frames_of};
use streammachine_e2e::audio::{Encoder, Pace, fixture, frame_bytes};
use streammachine_e2e::server::Server;
use streammachine_e2e::{eventually, require, temp_dir};

const T: Duration = Duration::from_secs(90);
const L: i64 = 6_000_000;

/// Media segments of a playlist (gaps left out): (sequence number, PROGRAM-DATE-TIME in µs,
/// EXTINF, URI).
fn segments(playlist: &str) -> Vec<(u64, i64, f64, String)> {
    let mut msn = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("media sequence");
    let (mut pdt, mut dur, mut gap) = (0, 0.0, false);
    let mut out = vec![];
    for l in playlist.lines() {
        if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = v.parse::<jiff::Timestamp>().unwrap().as_microsecond();
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            dur = v.trim_end_matches(',').parse().unwrap();
        } else if l == "#EXT-X-GAP" {
            gap = true;
        } else if !l.starts_with('#') && !l.is_empty() {
            if !std::mem::take(&mut gap) {
                out.push((msn, pdt, dur, l.to_string()));
            }
            msn += 1;
        }
    }
    out
}

async fn get_text(server: &Server, path: &str) -> String {
    let r = server.get(path).await;
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.text().await.unwrap()
}

/// Run ffmpeg on an HLS URL; (stdout, stderr). Killed if it hangs.
async fn ffmpeg(args: Vec<String>) -> (Vec<u8>, String) {
    require("ffmpeg");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg");
    let pid = child.id();
    let run = tokio::task::spawn_blocking(move || child.wait_with_output().expect("ffmpeg output"));
    let Ok(out) = tokio::time::timeout(Duration::from_secs(120), run).await else {
        // Only the process this test started, by its PID.
        streammachine_testkit::sigkill(pid);
        panic!("ffmpeg did not finish in 120 s");
    };
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    // ffmpeg 5.1's HLS demuxer applies a segment's ID3 timestamp as soon as it has read the
    // segment's first bytes, while the MP3 demuxer still holds a few frames of the previous one
    // (it reads ahead in 1 KiB blocks): those frames get the next segment's timestamps and the
    // muxer notes the dts going backwards. The audio itself is complete and in order (the tests
    // check the bytes), so these notes, and only these, are not counted as errors.
    let errors = stderr
        .lines()
        .filter(|l| !l.contains("non monotonically increasing dts to muxer"))
        .collect::<Vec<_>>()
        .join("\n");
    (out.stdout, errors)
}

async fn live_playback(format: Format) {
    let key = if format == Format::Mp3 {
        "live"
    } else {
        "news"
    };
    let server = Server::standalone(&["--stream", "live", "--stream", "news:aac"]).await;
    let file = fixture(format, 75, 11);
    // Four times real time (content timestamps run ahead of the wall clock, which the server
    // allows): the live edge still moves while ffmpeg plays, in a quarter of the wall time.
    let _enc = Encoder::push(&file, format, &server.source_url(key), Pace::Rate(4), false);
    // Enough for ffmpeg's live start (three segments from the end) plus the partial head slot.
    server.wait_buffer(key, 26.0, T).await;
    let text = get_text(&server, &format!("/{key}.m3u8")).await;
    assert!(segments(&text).len() >= 3, "{text}");
    // 20 s of live playback, decoded to PCM: it keeps up with new segments as they appear.
    let (pcm, errors) = ffmpeg(vec![
        "-i".into(),
        server.url(&format!("/{key}.m3u8")),
        "-t".into(),
        "20".into(),
        "-f".into(),
        "s16le".into(),
        "-ac".into(),
        "2".into(),
        "-ar".into(),
        "44100".into(),
        "pipe:1".into(),
    ])
    .await;
    assert!(errors.trim().is_empty(), "ffmpeg reported: {errors}");
    let secs = pcm.len() as f64 / (44100.0 * 4.0);
    assert!((secs - 20.0).abs() < 0.1, "decoded {secs} s");
    // ffmpeg sends no session id: counted by address and user agent, as one HLS listener.
    let hls = server
        .metric(&format!(
            "streammachine_listeners{{stream=\"{key}\",protocol=\"hls\"}}"
        ))
        .await;
    assert_eq!(hls, 1.0);
    assert_eq!(server.status(key).await["listeners"].as_u64(), Some(1));
}

#[tokio::test]
async fn ffmpeg_plays_the_live_mp3_playlist() {
    live_playback(Format::Mp3).await;
}

#[tokio::test]
async fn ffmpeg_plays_the_live_aac_playlist() {
    live_playback(Format::Aac).await;
}

async fn rewound_playback(format: Format) {
    let key = if format == Format::Mp3 {
        "live"
    } else {
        "news"
    };
    let server = Server::standalone(&["--stream", "live", "--stream", "news:aac"]).await;
    let file = fixture(format, 240, 12);
    let enc = Encoder::push(&file, format, &server.source_url(key), Pace::Fast, false);
    assert!(enc.wait(T).await.success());
    server
        .wait_settled(key, Duration::from_millis(500), T)
        .await;
    let text = get_text(&server, &format!("/{key}.m3u8")).await;
    let segs = segments(&text);
    // Where the audio starts: the oldest chunk (the first listed segment may start later).
    let r = server
        .admin_get(&format!("/api/streams/{key}/rewind"))
        .await;
    let chunks = streammachine::core::dump::decode(key, &r.bytes().await.unwrap()).unwrap();
    let first = chunks[0].ts;
    // Two minutes into the audio, i.e. two minutes behind the live edge.
    let at = first + 120_000_000;
    let at_text = streammachine::time::rfc3339(at);
    let url = server.url(&format!("/{key}.m3u8?at={}", at_text.replace('+', "%2B")));
    let with_start = get_text(&server, &format!("/{key}.m3u8?at={at_text}")).await;
    assert!(
        with_start.contains("#EXT-X-START:TIME-OFFSET="),
        "{with_start}"
    );
    let mux = if format == Format::Mp3 { "mp3" } else { "adts" };
    let mut args: Vec<String> = vec!["-prefer_x_start".into(), "1".into(), "-i".into(), url];
    args.extend(["-t", "20", "-c", "copy"].map(String::from));
    if format == Format::Mp3 {
        args.extend(["-write_xing", "0", "-id3v2_version", "0"].map(String::from));
    }
    args.extend(["-f", mux, "pipe:1"].map(String::from));
    let (audio, errors) = ffmpeg(args).await;
    assert!(errors.trim().is_empty(), "ffmpeg reported: {errors}");
    let frames = frames_of(format, &audio);
    let secs: f64 = frames
        .iter()
        .map(|f| f64::from(f.header.samples()) / f64::from(f.header.sample_rate()))
        .sum();
    assert!((secs - 20.0).abs() < 0.1, "copied {secs} s");
    // Where in the encoder's audio playback began: the segment holding `at`.
    let sent = frame_bytes(&file, format);
    let head = &audio[..4096];
    let pos = sent
        .windows(head.len())
        .position(|w| w == head)
        .expect("output is the encoder's audio");
    // From there on the output is the encoder's audio, frame for frame.
    assert!(
        sent[pos..].starts_with(&audio),
        "the copied audio is not the encoder's audio in order"
    );
    let sent_frames = frames_of(format, &sent[..pos]);
    let started: f64 = sent_frames
        .iter()
        .map(|f| f64::from(f.header.samples()) / f64::from(f.header.sample_rate()))
        .sum();
    let seg = segs.iter().rfind(|s| s.1 <= at).unwrap();
    let seg_offset = (seg.1 - first) as f64 / 1e6;
    assert!(
        (started - seg_offset).abs() < 0.1 && started <= 120.0 && started > 120.0 - 7.0,
        "playback began {started} s into the audio, the segment holding `at` {seg_offset} s"
    );
}

#[tokio::test]
async fn ffmpeg_plays_mp3_from_a_time_minutes_back() {
    rewound_playback(Format::Mp3).await;
}

#[tokio::test]
async fn ffmpeg_plays_aac_from_a_time_minutes_back() {
    rewound_playback(Format::Aac).await;
}

#[tokio::test]
async fn two_servers_with_the_same_chunks_serve_identical_hls() {
    // A starts from a buffer with a title change inside a segment, then an encoder adds audio
    // (a new source: a discontinuity) under a new title.
    let dir_a = temp_dir();
    dump_with_title_change(Format::Mp3, "live", dir_a.path());
    let a = Server::standalone(&[
        "--stream",
        "live",
        "--dump-dir",
        dir_a.path().to_str().unwrap(),
    ])
    .await;
    let r = a
        .admin_post(
            "/api/streams/live/metadata",
            json!({"title": "Artist - Replicated"}),
        )
        .await;
    assert!(r.status().is_success());
    let file = fixture(Format::Mp3, 60, 13);
    let enc = Encoder::push(&file, Format::Mp3, &a.source_url("live"), Pace::Fast, false);
    assert!(enc.wait(T).await.success());
    a.wait_settled("live", Duration::from_millis(500), T).await;

    // The second server restores A's buffer from A's dump.
    let r = a.admin_get("/api/streams/live/rewind").await;
    assert!(r.status().is_success());
    let dump = r.bytes().await.unwrap();
    let dir = temp_dir();
    std::fs::write(dir.path().join("live.dump"), &dump).unwrap();
    let b = Server::standalone(&[
        "--stream",
        "live",
        "--dump-dir",
        dir.path().to_str().unwrap(),
    ])
    .await;
    b.wait_buffer("live", 85.0, T).await;

    let pa = get_text(&a, "/live.m3u8").await;
    let pb = get_text(&b, "/live.m3u8").await;
    if pa != pb {
        std::fs::write("/tmp/pa.m3u8", &pa).unwrap();
        std::fs::write("/tmp/pb.m3u8", &pb).unwrap();
        panic!("playlists differ");
    }
    assert!(pa.contains("#EXT-X-DISCONTINUITY\n"), "{pa}");
    assert!(
        pa.contains("X-TITLE=\"Replicated\",X-ARTIST=\"Artist\""),
        "{pa}"
    );
    let delta_a = get_text(&a, "/live.m3u8?_HLS_skip=YES").await;
    assert_eq!(delta_a, get_text(&b, "/live.m3u8?_HLS_skip=YES").await);
    let segs = segments(&pa);
    assert!(segs.len() >= 12, "{pa}");
    let mut timed = 0;
    for (msn, _, _, uri) in &segs {
        let ra = a.get(&format!("/{uri}")).await;
        let rb = b.get(&format!("/{uri}")).await;
        assert_eq!((ra.status().as_u16(), rb.status().as_u16()), (200, 200));
        assert_eq!(ra.headers().get("etag"), rb.headers().get("etag"));
        assert!(
            ra.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
        let (ba, bb) = (ra.bytes().await.unwrap(), rb.bytes().await.unwrap());
        assert!(ba == bb, "segment {msn} differs between the servers");
        timed += usize::from(ba.windows(6).skip(80).any(|w| w == b"ID3\x04\x00\x00"));
    }
    assert!(timed >= 1, "a segment carries a title change inside it");
    // A conditional request is answered from the ETag.
    let uri = &segs[3].3;
    let etag = a.get(&format!("/{uri}")).await.headers()["etag"].clone();
    let r = a
        .http
        .get(a.url(&format!("/{uri}")))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
}

/// A buffer made here from an ffmpeg-encoded file: content time starts on a segment boundary
/// and the title changes on the first frame 3 s into the second segment.
fn dump_with_title_change(format: Format, key: &str, dir: &Path) -> i64 {
    let file = fixture(format, 30, 14);
    let data = std::fs::read(&file).unwrap();
    let frames = frames_of(format, &data);
    let now = streammachine::time::now_micros();
    let t0 = now - now.rem_euclid(L) - 10 * L;
    let change_at = t0 + L + 3_000_000;
    let meta = |t: &str| {
        Arc::new(Meta {
            title: t.into(),
            url: String::new(),
        })
    };
    let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta("Before"));
    let mut chunks: Vec<Chunk> = vec![];
    let mut samples = 0u64;
    let mut changed = false;
    for f in &frames {
        let t = t0 + (samples * 1_000_000 / u64::from(f.header.sample_rate())) as i64;
        if !changed && t >= change_at {
            chunker.set_meta(meta("The Artist - The Song"), &mut chunks);
            changed = true;
        }
        chunker.push(f, t0, &mut chunks);
        samples += u64::from(f.header.samples());
    }
    chunker.flush(&mut chunks);
    streammachine::core::dump::write_file(dir, key, &chunks).unwrap();
    t0
}

#[derive(Debug)]
struct Packet {
    pts: f64,
    pos: i64,
}

fn ffprobe_json(args: &[&str], file: &Path) -> Value {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("run ffprobe");
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

async fn timed_id3(format: Format) {
    let key = if format == Format::Mp3 {
        "live"
    } else {
        "news"
    };
    let dir = temp_dir();
    let t0 = dump_with_title_change(format, key, dir.path());
    let server = Server::standalone(&[
        "--stream",
        "live",
        "--stream",
        "news:aac",
        "--dump-dir",
        dir.path().to_str().unwrap(),
    ])
    .await;
    let text = get_text(&server, &format!("/{key}.m3u8")).await;
    let msn = (t0 / L + 1) as u64;
    // The playlist announces the title from the frame where it starts.
    let (_, start, _, uri) = segments(&text)
        .into_iter()
        .find(|s| s.0 == msn)
        .expect("the segment with the change is listed");
    assert!(
        text.contains("CLASS=\"io.streammachine.title\"")
            && text.contains("X-TITLE=\"The Song\",X-ARTIST=\"The Artist\""),
        "{text}"
    );
    let body = server.get(&format!("/{uri}")).await.bytes().await.unwrap();
    let work = temp_dir();
    let seg = work.path().join(format!("seg.{}", format.extension()));
    std::fs::write(&seg, &body).unwrap();

    // The tag inside the segment, after the leading timestamp tag.
    let lead = 10 + syncsafe(&body[6..10]);
    let tag_at = lead
        + body[lead..]
            .windows(4)
            .position(|w| w == b"ID3\x04")
            .expect("a timed ID3 tag inside the segment");
    // ffprobe places the audio packet at that byte position 3 s into the segment.
    let probe = ffprobe_json(&["-show_entries", "packet=pts_time,pos"], &seg);
    let packets: Vec<Packet> = probe["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Packet {
            pts: p["pts_time"].as_str().unwrap().parse().unwrap(),
            pos: p["pos"].as_str().unwrap().parse().unwrap(),
        })
        .collect();
    let first = packets[0].pts;
    let at = packets
        .iter()
        .find(|p| p.pos == tag_at as i64)
        .unwrap_or_else(|| panic!("no packet at byte {tag_at}: {packets:?}"));
    let offset = at.pts - first;
    let frame = if format == Format::Mp3 {
        0.0262
    } else {
        0.0233
    };
    assert!(
        offset > 3.0 - frame && offset < 3.0 + frame,
        "timed ID3 at {offset} s into the segment"
    );
    // The segment's own timestamp (first sample) is the segment start.
    assert!((start - (t0 + L)).abs() < 30_000);
    // ffprobe reads the timed tag's frames: TIT2 and TPE1.
    let tail = work.path().join(format!("tail.{}", format.extension()));
    std::fs::write(&tail, &body[tag_at..]).unwrap();
    let tags = ffprobe_json(&["-show_entries", "format_tags"], &tail);
    assert_eq!(tags["format"]["tags"]["title"], "The Song", "{tags}");
    assert_eq!(tags["format"]["tags"]["artist"], "The Artist", "{tags}");
    // And the whole segment decodes.
    let (secs, errors) = streammachine_e2e::audio::decode(&body, format);
    if format == Format::Aac {
        assert!(errors.is_empty(), "{errors}");
    }
    assert!((secs - 6.0).abs() < 0.05, "{secs}");
}

fn syncsafe(b: &[u8]) -> usize {
    b.iter().fold(0, |n, &x| (n << 7) | usize::from(x & 0x7F))
}

#[tokio::test]
async fn mp3_title_change_inside_a_segment_is_a_timed_id3_frame() {
    timed_id3(Format::Mp3).await;
}

#[tokio::test]
async fn aac_title_change_inside_a_segment_is_a_timed_id3_frame() {
    timed_id3(Format::Aac).await;
}

#[tokio::test]
async fn group_playlist_lists_aligned_variants_and_sessions_are_counted() {
    let dir = temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "streams:\n  hi:\n    group: prog\n  lo:\n    format: aac\n    group: prog\n  other: {}\n",
    )
    .unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    let _a = Encoder::push(
        &fixture(Format::Mp3, 60, 15),
        Format::Mp3,
        &server.source_url("hi"),
        Pace::Fast,
        false,
    );
    let _b = Encoder::push(
        &fixture(Format::Aac, 60, 15),
        Format::Aac,
        &server.source_url("lo"),
        Pace::Fast,
        false,
    );
    server.wait_buffer("hi", 50.0, T).await;
    server.wait_buffer("lo", 50.0, T).await;
    let text = get_text(&server, "/sg/prog.m3u8").await;
    let infs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(infs.len(), 2, "{text}");
    assert!(infs[0].contains("CODECS=\"mp4a.40.34\"") && infs[1].contains("CODECS=\"mp4a.40.2\""));
    for inf in &infs {
        let attr = |name: &str| -> u64 {
            inf.split([',', ':'])
                .find_map(|a| a.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        // 128 kbps encodings, plus the ID3 tags.
        let (peak, avg) = (attr("BANDWIDTH"), attr("AVERAGE-BANDWIDTH"));
        assert!((120_000..160_000).contains(&avg), "{inf}");
        assert!(peak >= avg && peak < 200_000, "{inf}");
    }
    let uris: Vec<&str> = text.lines().filter(|l| l.starts_with("../")).collect();
    assert!(uris[0].starts_with("../hi.m3u8?session_id="), "{text}");
    let session = uris[0].split('=').nth(1).unwrap();
    assert_eq!(uris[1], format!("../lo.m3u8?session_id={session}"));
    assert_eq!(server.get("/sg/nope.m3u8").await.status().as_u16(), 404);

    // The variant's segment URIs carry the session; both variants share slot numbers.
    let hi = get_text(&server, &format!("/hi.m3u8?session_id={session}")).await;
    let lo = get_text(&server, "/lo.m3u8").await;
    let (hs, ls) = (segments(&hi), segments(&lo));
    assert!(
        hs[0].3.ends_with(&format!(".mp3?session_id={session}")),
        "{hi}"
    );
    for (msn, pdt, _, _) in hs.iter().chain(&ls) {
        assert_eq!(*msn as i64, pdt.div_euclid(L), "msn is the segment's slot");
    }
    // Two listeners: one by URI session, one by Apple's header; repeated requests count once.
    for _ in 0..3 {
        assert!(
            server
                .get(&format!("/{}", hs[1].3))
                .await
                .status()
                .is_success()
        );
        let r = server
            .http
            .get(server.url(&format!("/{}", ls[1].3)))
            .header(
                "X-Playback-Session-Id",
                "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let series = |k: &str| format!("streammachine_listeners{{stream=\"{k}\",protocol=\"hls\"}}");
    assert_eq!(server.metric(&series("hi")).await, 1.0);
    assert_eq!(server.metric(&series("lo")).await, 1.0);
    let connections = server
        .metric("streammachine_listener_connections_total{stream=\"hi\",protocol=\"hls\"}")
        .await;
    assert_eq!(connections, 1.0);
    // Unknown segments and gaps are 404; a playlist of an unknown stream too.
    assert_eq!(server.get("/hi/seg/1.mp3").await.status().as_u16(), 404);
    assert_eq!(server.get("/nope.m3u8").await.status().as_u16(), 404);
    assert_eq!(
        server.get("/hi.m3u8?window=abc").await.status().as_u16(),
        400
    );
    eventually("playlist answers HEAD", Duration::from_secs(5), || async {
        let r = server.http.head(server.url("/hi.m3u8")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

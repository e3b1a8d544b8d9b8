//! A stream's fallback source: an `http(s)://` stream pulled like a relay (in-band ICY titles
//! included) or a `file://` looped at real time. It plays only while no encoder is connected and
//! yields as soon as one connects.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::core::chunk::Meta;
use crate::core::codec::{Frame, Parser, frames_of};
use crate::core::icy::IcyReader;
use crate::retry::Backoff;
use crate::stream::{SourceInfo, SourceKind, StationInfo, Stream};
use crate::time::now_micros;
use crate::time::rfc3339;

/// How far ahead of real time a looped file may run, so chunks leave at an even pace.
const FILE_LEAD: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Relay input without a single frame for this many bytes is not audio.
const MAX_GARBAGE: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} holds no audio of the stream's format")]
    NotAudio(String),
    #[error("relay request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("relay answered {0}")]
    Status(reqwest::StatusCode),
    #[error("relay stream ended")]
    Ended,
    #[error("relay sent nothing for {0:?}")]
    Stalled(Duration),
}

/// Why a fallback run stopped without an error.
enum Stop {
    EncoderConnected,
    Cancelled,
}

/// Hide credentials in URLs before they reach logs or the admin API.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Feed `stream` from `url` whenever no encoder does, until `cancel` (a child of the stream's
/// token, so removing the stream or shutting down also ends it). `source_timeout` is how long the
/// relay may send nothing before it counts as failed.
pub async fn run(
    stream: Arc<Stream>,
    url: String,
    source_timeout: Duration,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!("fallback", stream = %stream.key, url = %redact(&url));
    async move {
        let Some(mut encoders) = stream.encoders() else {
            return;
        };
        let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
        loop {
            // Wait until no encoder feeds the stream.
            while *encoders.borrow_and_update() > 0 {
                tokio::select! {
                    r = encoders.changed() => if r.is_err() { return },
                    _ = cancel.cancelled() => return,
                }
            }
            let result = if let Some(path) = url.strip_prefix("file://") {
                play_file(&stream, path, &cancel).await
            } else {
                relay(&stream, &url, source_timeout, &cancel).await
            };
            match result {
                Ok(Stop::Cancelled) => return,
                Ok(Stop::EncoderConnected) => {
                    info!("Fallback yields to a connected encoder.");
                    backoff.reset();
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "Fallback source failed.");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
    }
    .instrument(span)
    .await;
}

fn fallback_info(remote: String, station: StationInfo) -> SourceInfo {
    SourceInfo {
        id: 0,
        kind: SourceKind::Fallback,
        remote,
        user_agent: None,
        connected_at: rfc3339(now_micros()),
        codec: None,
        station,
    }
}

struct Registration<'a> {
    stream: &'a Stream,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.stream.remove_source(self.id, "fallback stopped");
    }
}

fn register<'a>(stream: &'a Stream, info: SourceInfo) -> Option<Registration<'a>> {
    let id = stream.add_source(info).ok()?;
    info!(source_id = id, "Fallback source playing.");
    Some(Registration { stream, id })
}

fn encoder_connected(stream: &Stream) -> bool {
    stream.encoders().is_some_and(|rx| *rx.borrow() > 0)
}

async fn play_file(
    stream: &Stream,
    path: &str,
    cancel: &CancellationToken,
) -> Result<Stop, FallbackError> {
    let data = tokio::fs::read(path)
        .await
        .map_err(|source| FallbackError::File {
            path: path.to_string(),
            source,
        })?;
    let format = stream.settings().format;
    let frames = tokio::task::spawn_blocking(move || frames_of(format, &data))
        .await
        .unwrap_or_default();
    if frames.is_empty() {
        return Err(FallbackError::NotAudio(path.to_string()));
    }
    let mut info = fallback_info(format!("file://{path}"), StationInfo::default());
    info.codec = Some(frames[0].header.codec_key());
    let Some(reg) = register(stream, info) else {
        return Ok(Stop::Cancelled);
    };
    let start = Instant::now();
    let mut played = Duration::ZERO;
    let mut batch: Vec<Frame> = Vec::with_capacity(16);
    loop {
        for frame in &frames {
            if cancel.is_cancelled() {
                return Ok(Stop::Cancelled);
            }
            if encoder_connected(stream) {
                return Ok(Stop::EncoderConnected);
            }
            batch.push(frame.clone());
            played += Duration::from_micros(
                u64::from(frame.header.samples()) * 1_000_000
                    / u64::from(frame.header.sample_rate().max(1)),
            );
            if batch.len() == batch.capacity() {
                stream.source_frames(reg.id, &batch);
                batch.clear();
                let due = start + played.saturating_sub(FILE_LEAD);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = cancel.cancelled() => return Ok(Stop::Cancelled),
                }
            }
        }
    }
}

async fn relay(
    stream: &Stream,
    url: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Stop, FallbackError> {
    crate::install_tls_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("StreamMachine/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut resp = tokio::select! {
        r = client.get(url).header("Icy-MetaData", "1").send() => r?,
        _ = cancel.cancelled() => return Ok(Stop::Cancelled),
    };
    if !resp.status().is_success() {
        return Err(FallbackError::Status(resp.status()));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let metaint = header("icy-metaint").and_then(|v| v.parse::<usize>().ok());
    let station = StationInfo {
        name: header("icy-name"),
        description: header("icy-description"),
        genre: header("icy-genre"),
        url: header("icy-url"),
        bitrate: header("icy-br"),
        public: header("icy-pub"),
        audio_info: header("icy-audio-info"),
    };
    let mut icy = metaint.map(IcyReader::new);
    let mut parser = Parser::new(stream.settings().format);
    let mut info = Some(fallback_info(redact(url), station));
    let mut reg: Option<Registration<'_>> = None;
    let mut frames = Vec::with_capacity(64);
    loop {
        if encoder_connected(stream) {
            return Ok(Stop::EncoderConnected);
        }
        let piece = tokio::select! {
            r = tokio::time::timeout(timeout, resp.chunk()) => r,
            _ = cancel.cancelled() => return Ok(Stop::Cancelled),
        };
        let piece = match piece {
            Err(_) => return Err(FallbackError::Stalled(timeout)),
            Ok(r) => r?.ok_or(FallbackError::Ended)?,
        };
        let mut titles = vec![];
        match &mut icy {
            Some(r) => {
                let out = r.push(&piece);
                parser.push(&out.audio);
                titles.extend(out.metadata.into_iter().map(|(_, m)| m));
            }
            None => parser.push(&piece),
        }
        frames.clear();
        while let Some(f) = parser.next_frame() {
            frames.push(f);
        }
        if frames.is_empty() {
            if parser.stats().frames == 0 && parser.stats().garbage_bytes > MAX_GARBAGE {
                return Err(FallbackError::NotAudio(redact(url)));
            }
            continue;
        }
        if reg.is_none() {
            let Some(mut i) = info.take() else {
                return Ok(Stop::Cancelled);
            };
            i.codec = Some(frames[0].header.codec_key());
            reg = register(stream, i);
        }
        let Some(r) = &reg else {
            return Ok(Stop::Cancelled);
        };
        for t in titles {
            if let Some(title) = t.title {
                stream.set_meta_from_source(
                    r.id,
                    Meta {
                        title,
                        url: t.url.unwrap_or_default(),
                    },
                );
            }
        }
        stream.source_frames(r.id, &frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("http://u:p@host:8000/live"),
            "http://***@host:8000/live"
        );
        assert_eq!(redact("http://host/live?a=b@c"), "http://host/live?a=b@c");
        assert_eq!(redact("file:///x.mp3"), "file:///x.mp3");
    }
}

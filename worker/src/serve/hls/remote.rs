//! Group members this process does not serve. On Kubernetes each stream has its own slave pods,
//! yet any of them may be asked for `/sg/<group>.m3u8`: membership comes from the config store
//! (every slave holds the full config) and the codec and bit rate from the master's admin API,
//! cached so a playlist request costs at most one round trip a minute per member.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::debug;

use super::codecs::CodecInfo;
use super::playlist::Variant;
use crate::app::App;

/// How long a member's codec and bit rate are reused.
const TTL: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(2);

/// What the master's `GET /api/streams/{key}` tells about a stream (a subset).
#[derive(Debug, Deserialize)]
struct Status {
    codec: Option<String>,
    buffer_seconds: f64,
    buffer_bytes: u64,
}

/// The variant a status describes: codecs from the codec key, the average bit rate from what the
/// buffer holds (the peak allowed 10 % above it, or the nominal MP3 rate when higher).
fn variant_of(key: &str, status: &Status) -> Option<Variant> {
    let codec = CodecInfo::parse(status.codec.as_deref()?)?;
    let measured = (status.buffer_seconds >= 1.0)
        .then(|| (status.buffer_bytes as f64 * 8.0 / status.buffer_seconds) as u64);
    let average = measured.or(codec.bitrate)?;
    let peak = (average + average / 10).max(codec.bitrate.unwrap_or(0));
    Some(Variant {
        uri: format!("../{key}.m3u8"),
        bandwidth: peak,
        average_bandwidth: average,
        codecs: codec.codecs(),
    })
}

type Cache = Mutex<HashMap<String, (Instant, Option<Variant>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The members of `group` in the config that are not among `local`, as far as the master knows
/// them. Empty unless this is a slave.
pub async fn variants(
    app: &App,
    group: &str,
    local: &[(String, Variant)],
) -> Vec<(String, Variant)> {
    let (Some(master), Some(token), Some(store)) =
        (app.master_url(), app.cluster_token(), app.store())
    else {
        return vec![];
    };
    let configs = store.watch().borrow().clone();
    let Some(configs) = configs else {
        return vec![];
    };
    let members: Vec<String> = configs
        .iter()
        .filter(|(k, c)| c.group.as_deref() == Some(group) && !local.iter().any(|(l, _)| l == *k))
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = vec![];
    for key in members {
        let cached = cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, v)| v.clone());
        let variant = match cached {
            Some(v) => v,
            None => {
                let v = fetch(master, token, &key).await;
                cache()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone(), (Instant::now(), v.clone()));
                v
            }
        };
        if let Some(v) = variant {
            out.push((key, v));
        }
    }
    out
}

async fn fetch(master: &str, token: &str, key: &str) -> Option<Variant> {
    crate::install_tls_provider();
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().ok()?;
    let status: Status = match client
        .get(format!("{master}/api/streams/{key}"))
        .bearer_auth(token)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        Ok(r) => serde_json::from_slice(&r.bytes().await.ok()?).ok()?,
        Err(e) => {
            debug!(stream = %key, error = %e, "Cannot ask the master about a group member.");
            return None;
        }
    };
    variant_of(key, &status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_from_master_status() {
        let mp3 = Status {
            codec: Some("mp3-44100-128-s".into()),
            buffer_seconds: 10.0,
            buffer_bytes: 160_000,
        };
        let v = variant_of("hi", &mp3).unwrap();
        assert_eq!((v.average_bandwidth, v.bandwidth), (128_000, 140_800));
        assert_eq!(v.codecs, "mp4a.40.34");
        assert_eq!(v.uri, "../hi.m3u8");
        let aac = Status {
            codec: Some("aac-44100-2-2".into()),
            buffer_seconds: 0.0,
            buffer_bytes: 0,
        };
        assert!(variant_of("lo", &aac).is_none(), "no bit rate known yet");
        let none = Status {
            codec: None,
            buffer_seconds: 5.0,
            buffer_bytes: 1,
        };
        assert!(variant_of("x", &none).is_none());
    }
}

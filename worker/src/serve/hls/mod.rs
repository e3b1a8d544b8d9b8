//! HLS over the rewind buffer: a DVR window over all of it (the plain playlist lists the live
//! window, `hls_live_window`), replica-consistent, with timed now-playing metadata.
//!
//! * [`index`] derives segments from content time (`floor(ts / L)`), so every replica holding the
//!   same chunks lists the same media sequence numbers and serves the same bytes; any pod can
//!   answer any request, no sticky sessions.
//! * [`segment`] builds packed-audio segments (ID3 `PRIV` timestamp, timed `TIT2`/`TPE1`).
//! * [`playlist`] renders media playlists (full, `?window=`, `?at=`, `_HLS_skip` delta updates) and
//!   group multivariant playlists.
//! * [`compress`] negotiates `Accept-Encoding` and compresses playlists (gzip, brotli), once per
//!   playlist version for the cached ones.
//! * [`sessions`] counts HLS listeners; [`serve`] is the HTTP glue and the per-stream caches.
//!
//! URIs: `/<stream>.m3u8`, `/<stream>/seg/<msn>.<mp3|aac>`, `/sg/<group>.m3u8`.

pub mod codecs;
pub mod compress;
pub(crate) mod direct;
pub mod id3;
pub mod index;
pub mod playlist;
pub mod remote;
pub mod segment;
pub mod serve;
pub mod sessions;

pub use serve::{StreamHls, group_playlist, group_variants, media_playlist, segment_route};

#[cfg(test)]
mod tests;

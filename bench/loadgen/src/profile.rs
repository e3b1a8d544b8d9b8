//! How each kind of player asks for a live HLS stream: headers, session ids, delta updates,
//! compression and where it starts. Pure: builds request heads, decides nothing at run time.

use std::hash::{BuildHasher, Hasher, RandomState};

use crate::encoding::ACCEPT_GZIP;
use crate::playlist::Playlist;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Profile {
    /// hls.js in a browser: a `session_id` query the server carries into segment URIs, delta
    /// updates, gzip, conditional reloads (the browser's cache revalidates with the ETag).
    Hlsjs,
    /// Apple's AVPlayer: `X-Playback-Session-Id` on every request, delta updates, gzip.
    Avplayer,
    /// ffmpeg's HLS demuxer: no session id, full reloads, no compression; the server can only
    /// tell it apart by client address and user agent.
    Ffmpeg,
    /// ffmpeg as above but taking gzip (what the worst player costs once playlists compress).
    FfmpegGzip,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Hlsjs => "hlsjs",
            Profile::Avplayer => "avplayer",
            Profile::Ffmpeg => "ffmpeg",
            Profile::FfmpegGzip => "ffmpeg-gzip",
        }
    }

    fn user_agent(self) -> &'static str {
        match self {
            Profile::Hlsjs => {
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
            }
            Profile::Avplayer => {
                "AppleCoreMedia/1.0.0.21E236 (iPhone; U; CPU OS 17_4 like Mac OS X; en_us)"
            }
            Profile::Ffmpeg | Profile::FfmpegGzip => "Lavf/59.27.100",
        }
    }

    fn gzip(self) -> bool {
        !matches!(self, Profile::Ffmpeg)
    }

    /// Sends `_HLS_skip=YES` on reloads when the server offers delta updates.
    pub fn skips(self) -> bool {
        matches!(self, Profile::Hlsjs | Profile::Avplayer)
    }

    /// Revalidates playlists with `If-None-Match`.
    pub fn conditional(self) -> bool {
        matches!(self, Profile::Hlsjs | Profile::Avplayer)
    }

    /// The first segment to play of a live playlist.
    pub fn start(self, p: &Playlist) -> Option<u64> {
        match self {
            Profile::Hlsjs | Profile::Avplayer => p.live_start_browser(),
            Profile::Ffmpeg | Profile::FfmpegGzip => p.live_start_ffmpeg(),
        }
    }
}

/// One simulated player's identity.
pub struct Player {
    pub profile: Profile,
    host: String,
    /// hls.js: in the playlist URI; AVPlayer: in a header.
    session_id: Option<String>,
}

/// A request for one player.
pub struct Request<'a> {
    pub path: &'a str,
    pub etag: Option<&'a str>,
}

impl Player {
    pub fn new(profile: Profile, host: String, index: usize) -> Player {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(index);
        let (a, b) = (h.finish(), {
            h.write_u8(1);
            h.finish()
        });
        let session_id = match profile {
            Profile::Hlsjs => Some(format!("lg{index}-{a:08x}")),
            // Shaped like the UUID AVPlayer sends.
            Profile::Avplayer => Some(format!(
                "{:08X}-{:04X}-4{:03X}-8{:03X}-{:012X}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                b >> 52,
                b & 0xffff_ffff_ffff
            )),
            Profile::Ffmpeg | Profile::FfmpegGzip => None,
        };
        Player {
            profile,
            host,
            session_id,
        }
    }

    /// The playlist's path and query: hls.js carries its session id there.
    pub fn playlist_path(&self, path: &str, skip: bool) -> String {
        let mut query = vec![];
        if let (Profile::Hlsjs, Some(id)) = (self.profile, &self.session_id) {
            query.push(format!("session_id={id}"));
        }
        if skip {
            query.push("_HLS_skip=YES".to_string());
        }
        if query.is_empty() {
            return path.to_string();
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}{}", query.join("&"))
    }

    /// A complete GET request head.
    pub fn request(&self, r: &Request) -> Vec<u8> {
        let mut s = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: */*\r\n",
            r.path,
            self.host,
            self.profile.user_agent()
        );
        if self.profile.gzip() {
            s.push_str(&format!("Accept-Encoding: {ACCEPT_GZIP}\r\n"));
        }
        if let (Profile::Avplayer, Some(id)) = (self.profile, &self.session_id) {
            s.push_str(&format!("X-Playback-Session-Id: {id}\r\n"));
        }
        if let Some(e) = r.etag.filter(|_| self.profile.conditional()) {
            s.push_str(&format!("If-None-Match: {e}\r\n"));
        }
        s.push_str("Connection: keep-alive\r\n\r\n");
        s.into_bytes()
    }
}

/// `uri` as listed in the playlist at `playlist_path`, as a path on the same server.
pub fn resolve(playlist_path: &str, uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or_else(|| "/".to_string(), |i| rest[i..].to_string());
    }
    if uri.starts_with('/') {
        return uri.to_string();
    }
    let path = playlist_path.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{dir}{uri}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(p: &Player, r: &Request) -> String {
        String::from_utf8(p.request(r)).unwrap()
    }

    #[test]
    fn profiles_ask_like_their_players() {
        let plain = Request {
            path: "/live.m3u8",
            etag: Some("\"e\""),
        };
        let js = Player::new(Profile::Hlsjs, "h".into(), 7);
        assert!(
            js.playlist_path("/live.m3u8", true)
                .starts_with("/live.m3u8?session_id=lg7-")
        );
        assert!(
            js.playlist_path("/live.m3u8", true)
                .ends_with("&_HLS_skip=YES")
        );
        let h = head(&js, &plain);
        assert!(h.contains("Accept-Encoding: gzip\r\n") && h.contains("If-None-Match: \"e\""));
        assert!(!h.contains("X-Playback-Session-Id"));

        let apple = Player::new(Profile::Avplayer, "h".into(), 7);
        assert_eq!(
            apple.playlist_path("/live.m3u8", true),
            "/live.m3u8?_HLS_skip=YES"
        );
        let h = head(&apple, &plain);
        let id = h
            .lines()
            .find_map(|l| l.strip_prefix("X-Playback-Session-Id: "))
            .unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);

        let ff = Player::new(Profile::Ffmpeg, "h".into(), 7);
        assert_eq!(ff.playlist_path("/live.m3u8", false), "/live.m3u8");
        let h = head(&ff, &plain);
        assert!(h.contains("User-Agent: Lavf/59.27.100\r\n"));
        assert!(!h.contains("Accept-Encoding") && !h.contains("If-None-Match"));
        assert!(!Profile::Ffmpeg.skips() && Profile::Avplayer.skips());
        assert!(
            head(&Player::new(Profile::FfmpegGzip, "h".into(), 1), &plain)
                .contains("Accept-Encoding: gzip")
        );
    }

    #[test]
    fn resolves_segment_uris() {
        assert_eq!(
            resolve("/live.m3u8?session_id=a", "live/seg/1.mp3?session_id=a"),
            "/live/seg/1.mp3?session_id=a"
        );
        assert_eq!(resolve("/a/b.m3u8", "seg/1.mp3"), "/a/seg/1.mp3");
        assert_eq!(resolve("/a/b.m3u8", "/x/1.mp3"), "/x/1.mp3");
        assert_eq!(resolve("/b.m3u8", "http://127.0.0.1:8/x/1.mp3"), "/x/1.mp3");
    }
}

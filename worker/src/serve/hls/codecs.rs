//! What a codec key (`mp3-44100-128-s`, `aac-44100-2-2`) tells a multivariant playlist: the
//! RFC 6381 `CODECS` string and, for MP3, the nominal bitrate (sans-IO).

use crate::core::codec::Format;

/// The parts of a codec key that matter to HLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecInfo {
    pub format: Format,
    pub sample_rate: u32,
    /// Nominal bits per second (MP3 keys carry it; AAC keys do not).
    pub bitrate: Option<u64>,
    /// MPEG-4 audio object type (AAC only).
    pub object_type: Option<u8>,
}

impl CodecInfo {
    pub fn parse(key: &str) -> Option<CodecInfo> {
        let mut parts = key.split('-');
        let kind = parts.next()?;
        let sample_rate = parts.next()?.parse().ok()?;
        match kind {
            "mp3" => Some(CodecInfo {
                format: Format::Mp3,
                sample_rate,
                bitrate: parts.next()?.parse::<u64>().ok().map(|k| k * 1000),
                object_type: None,
            }),
            "aac" => Some(CodecInfo {
                format: Format::Aac,
                sample_rate,
                bitrate: None,
                object_type: parts.next()?.parse().ok(),
            }),
            _ => None,
        }
    }

    /// `CODECS` attribute value: MP3 is MPEG-4 audio object type 34 (Layer III), AAC its own
    /// object type (2 LC, 5 HE-AAC, 29 HE-AACv2).
    pub fn codecs(&self) -> String {
        match self.format {
            Format::Mp3 => "mp4a.40.34".to_string(),
            Format::Aac => format!("mp4a.40.{}", self.object_type.unwrap_or(2)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let mp3 = CodecInfo::parse("mp3-44100-128-s").unwrap();
        assert_eq!(mp3.codecs(), "mp4a.40.34");
        assert_eq!(mp3.bitrate, Some(128_000));
        let aac = CodecInfo::parse("aac-48000-5-2").unwrap();
        assert_eq!(aac.codecs(), "mp4a.40.5");
        assert_eq!(aac.bitrate, None);
        assert_eq!(
            CodecInfo::parse("aac-44100-29-2").unwrap().codecs(),
            "mp4a.40.29"
        );
        for bad in ["", "ogg-44100", "mp3", "mp3-x-128", "aac-44100"] {
            assert!(CodecInfo::parse(bad).is_none(), "{bad}");
        }
    }
}

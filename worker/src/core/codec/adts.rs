//! ADTS (Audio Data Transport Stream) AAC frame headers.

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type (profile + 1): 2 = AAC LC.
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
    pub frame_len: usize,
    pub samples: u32,
    pub header_len: usize,
}

impl AdtsHeader {
    pub fn parse(b: &[u8]) -> Option<AdtsHeader> {
        if b.len() < 7 || b[0] != 0xFF || b[1] & 0xF6 != 0xF0 {
            return None;
        }
        let protection_absent = b[1] & 1 == 1;
        let object_type = (b[2] >> 6) + 1;
        let rate_index = usize::from((b[2] >> 2) & 0x0F);
        let sample_rate = *SAMPLE_RATES.get(rate_index)?;
        let channels = ((b[2] & 1) << 2) | (b[3] >> 6);
        let frame_len =
            (usize::from(b[3] & 3) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5);
        let header_len = if protection_absent { 7 } else { 9 };
        if frame_len <= header_len {
            return None;
        }
        let blocks = u32::from(b[6] & 3) + 1;
        Some(AdtsHeader {
            object_type,
            sample_rate,
            channels,
            frame_len,
            samples: 1024 * blocks,
            header_len,
        })
    }

    pub fn codec_key(&self) -> String {
        format!(
            "aac-{}-{}-{}",
            self.sample_rate, self.object_type, self.channels
        )
    }

    pub fn same_stream(&self, other: &AdtsHeader) -> bool {
        self.object_type == other.object_type
            && self.sample_rate == other.sample_rate
            && self.channels == other.channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_stereo() {
        let h = AdtsHeader::parse(&[0xFF, 0xF1, 0x50, 0x80, 0x2E, 0x7F, 0xFC]).unwrap();
        assert_eq!(h.object_type, 2);
        assert_eq!(h.sample_rate, 44100);
        assert_eq!(h.channels, 2);
        assert_eq!(h.frame_len, 371);
        assert_eq!(h.codec_key(), "aac-44100-2-2");
    }

    #[test]
    fn rejects_mp3_and_bad_rates() {
        assert!(AdtsHeader::parse(&[0xFF, 0xFB, 0x90, 0x64, 0, 0, 0]).is_none());
        assert!(AdtsHeader::parse(&[0xFF, 0xF1, 0x7C, 0x80, 0x2E, 0x7F, 0xFC]).is_none());
        // Frame length shorter than its own header.
        assert!(AdtsHeader::parse(&[0xFF, 0xF1, 0x50, 0x80, 0x00, 0x1F, 0xFC]).is_none());
    }
}

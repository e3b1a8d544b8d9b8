//! MPEG audio frame headers (MPEG-1, MPEG-2, MPEG-2.5; layers I, II, III).

/// kbps by [version row][layer row][index]; index 0 (free format) and 15 (bad) are rejected.
const BITRATES_V1: [[u16; 15]; 3] = [
    [
        0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ], // layer I
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ], // layer II
    [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ], // layer III
];
const BITRATES_V2: [[u16; 15]; 2] = [
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ], // layer I
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160], // layers II, III
];
const SAMPLE_RATES_V1: [u32; 3] = [44100, 48000, 32000];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpegVersion {
    V1,
    V2,
    V25,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpegHeader {
    pub version: MpegVersion,
    /// 1, 2 or 3.
    pub layer: u8,
    pub bitrate_kbps: u16,
    pub sample_rate: u32,
    pub padding: bool,
    /// 0 stereo, 1 joint stereo, 2 dual channel, 3 mono.
    pub mode: u8,
    pub samples: u32,
    pub frame_len: usize,
}

impl MpegHeader {
    pub fn parse(b: &[u8]) -> Option<MpegHeader> {
        if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
            return None;
        }
        let version = match (b[1] >> 3) & 3 {
            0 => MpegVersion::V25,
            2 => MpegVersion::V2,
            3 => MpegVersion::V1,
            _ => return None,
        };
        let layer = match (b[1] >> 1) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let bitrate_index = usize::from(b[2] >> 4);
        let rate_index = usize::from((b[2] >> 2) & 3);
        if bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 || b[3] & 3 == 2 {
            return None;
        }
        let bitrate_kbps = match version {
            MpegVersion::V1 => BITRATES_V1[usize::from(layer - 1)][bitrate_index],
            _ => BITRATES_V2[usize::from(layer != 1)][bitrate_index],
        };
        let sample_rate = match version {
            MpegVersion::V1 => SAMPLE_RATES_V1[rate_index],
            MpegVersion::V2 => SAMPLE_RATES_V1[rate_index] / 2,
            MpegVersion::V25 => SAMPLE_RATES_V1[rate_index] / 4,
        };
        let padding = b[2] & 0x02 != 0;
        let samples = match (layer, version) {
            (1, _) => 384,
            (2, _) | (3, MpegVersion::V1) => 1152,
            _ => 576,
        };
        let bitrate = u64::from(bitrate_kbps) * 1000;
        let frame_len = if layer == 1 {
            ((12 * bitrate / u64::from(sample_rate)) as usize + usize::from(padding)) * 4
        } else {
            (u64::from(samples) / 8 * bitrate / u64::from(sample_rate)) as usize
                + usize::from(padding)
        };
        Some(MpegHeader {
            version,
            layer,
            bitrate_kbps,
            sample_rate,
            padding,
            mode: b[3] >> 6,
            samples,
            frame_len,
        })
    }

    pub fn channels(&self) -> u8 {
        if self.mode == 3 { 1 } else { 2 }
    }

    pub fn codec_key(&self) -> String {
        let stereo = if self.mode <= 1 { "s" } else { "m" };
        format!("mp3-{}-{}-{}", self.sample_rate, self.bitrate_kbps, stereo)
    }

    /// Frames of one encoding share version, layer, rate and channel count; bitrate may vary (VBR).
    pub fn same_stream(&self, other: &MpegHeader) -> bool {
        self.version == other.version
            && self.layer == other.layer
            && self.sample_rate == other.sample_rate
            && self.channels() == other.channels()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_match_the_standard_tables() {
        // MPEG-1 layer III 128 kbps 44.1 kHz: 417 bytes, 418 padded.
        let h = MpegHeader::parse(&[0xFF, 0xFB, 0x90, 0x64]).unwrap();
        assert_eq!((h.frame_len, h.samples, h.layer), (417, 1152, 3));
        let h = MpegHeader::parse(&[0xFF, 0xFB, 0x92, 0x64]).unwrap();
        assert_eq!(h.frame_len, 418);
        // MPEG-2 layer III 64 kbps 22.05 kHz mono: 576 samples, 72*64000/22050 = 208 bytes.
        let h = MpegHeader::parse(&[0xFF, 0xF3, 0x80, 0xC4]).unwrap();
        assert_eq!((h.sample_rate, h.samples, h.frame_len), (22050, 576, 208));
        assert_eq!(h.codec_key(), "mp3-22050-64-m");
        // MPEG-2.5 layer III 8 kbps 8 kHz.
        let h = MpegHeader::parse(&[0xFF, 0xE3, 0x18, 0xC4]).unwrap();
        assert_eq!(
            (h.version, h.sample_rate, h.frame_len),
            (MpegVersion::V25, 8000, 72)
        );
        // MPEG-1 layer II 192 kbps 48 kHz: 144*192000/48000 = 576.
        let h = MpegHeader::parse(&[0xFF, 0xFD, 0xA4, 0x00]).unwrap();
        assert_eq!((h.layer, h.frame_len), (2, 576));
        // MPEG-1 layer I 384 kbps 44.1 kHz: (12*384000/44100)*4 = 416.
        let h = MpegHeader::parse(&[0xFF, 0xFF, 0xC0, 0x00]).unwrap();
        assert_eq!((h.layer, h.samples, h.frame_len), (1, 384, 416));
    }

    #[test]
    fn invalid_headers_are_rejected() {
        for bad in [
            [0xFF, 0xFB, 0x00, 0x64], // free format
            [0xFF, 0xFB, 0xF0, 0x64], // bad bitrate
            [0xFF, 0xFB, 0x9C, 0x64], // reserved rate
            [0xFF, 0xF9, 0x90, 0x64], // reserved layer
            [0xFF, 0xEB, 0x90, 0x64], // reserved version
            [0xFF, 0xFB, 0x90, 0x66], // reserved emphasis
            [0xFE, 0xFB, 0x90, 0x64], // no sync
        ] {
            assert!(MpegHeader::parse(&bad).is_none(), "{bad:x?}");
        }
        assert!(MpegHeader::parse(&[0xFF, 0xFB]).is_none());
    }
}
